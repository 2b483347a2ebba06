"""The training loop: Adam or SGD per parameter group, one step per batch, a tidy table.

Seeds are stacked (see :mod:`bplambda.stacking`): ``K`` models train together as one batched
model, and every logged row names its seed. A model whose loss or gradients stop being finite,
or whose loss exceeds ``divergence_threshold``, is marked diverged at that batch: its
parameters stop changing, its rows stop, and the other models go on untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from bplambda.bp_lambda import true_future_gradients
from bplambda.cells import Cell, with_compiled_step
from bplambda.device import resolve_device, resolve_dtype, upload
from bplambda.metrics import signal_alignments, update_alignment
from bplambda.outputs import ParamGroups, RuleOutput
from bplambda.readout import SequenceTargets
from bplambda.regularisation import with_l2_gradient
from bplambda.resume import ResumeFile
from bplambda.rules import Rule, true_gradients
from bplambda.stacking import init_stacked_network
from bplambda.tasks.base import Task

DEFAULT_LR = {"rnn": 1e-3, "readout": 1e-3, "synthesiser": 1e-4}
COMPILED_RULES = ("bptt", "tbptt", "sg")
"""The rules whose step ``TrainConfig(compile_step=True)`` compiles: autograd differentiates
their unrolled steps, all in one grad mode."""
OPTIMISERS = ("adam", "sgd")
COLUMNS = ["model", "seed", "diverged", "diverged_at", "batch", "t", "metric", "value"]
UNDEFINED_WHERE_NAN = ("alignment_synthetic", "alignment_signal", "alignment_applied")
"""Cosines are NaN where they are undefined (the true gradient is zero at the terminal step;
the synthetic gradient is not applied there): such rows are dropped; every other non-finite
value (a diverging loss) is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    ``lr``: a learning rate per parameter group (0 freezes a group); every group the rule
    trains (``rule.trains``) needs one, groups it does not train are ignored. ``optimiser``:
    ``"adam"`` (betas/eps default to the official code's Adam (0.9, 0.98), 1e-9) or ``"sgd"``
    (plain SGD, as Liu et al.), or one per group (``{"rnn": "sgd", "readout": "sgd",
    "synthesiser": "adam"}``; a group not named gets Adam). ``l2``: the gradient of
    ``l2·½‖W‖²`` over the weight matrices of ``"rnn"`` and ``"readout"`` (not biases; Liu et
    al.: 1e-2) is added to every rule's update alike (:mod:`bplambda.regularisation`); the
    logged loss stays the task loss.
    ``track_alignment`` logs the per-step cosine between the rule's future signal (and the
    synthesiser's output) and the true future gradient, and that gradient's batch-mean norm;
    ``track_update_alignment`` logs the cosine between the RNN update and BPTT's (an extra
    BPTT pass per logged batch).
    ``update_every_step`` applies an optimiser step at every time step (Algorithm 1; only
    ``bp_lambda`` with ``implementation="online"``). ``compile_step``: fuse the cell's step
    with ``torch.compile`` for the rules of :data:`COMPILED_RULES` (where it pays; the others
    run as they are, see :func:`~bplambda.cells.with_compiled_step`). ``divergence_threshold``:
    a model whose batch loss exceeds it (or whose loss or gradients are not finite) is frozen as
    diverged.
    """

    num_batches: int
    lr: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_LR))
    optimiser: str | Mapping[str, str] = "adam"
    l2: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    log_every: int = 1
    track_alignment: bool = False
    track_update_alignment: bool = False
    update_every_step: bool = False
    compile_step: bool = False
    divergence_threshold: float = math.inf
    progress: bool = True

    def __post_init__(self) -> None:
        if self.num_batches < 1 or self.log_every < 1:
            raise ValueError(
                f"num_batches={self.num_batches} and log_every={self.log_every} must be >= 1"
            )
        for group, lr in self.lr.items():
            if not np.isfinite(lr) or lr < 0:
                raise ValueError(f"lr[{group!r}]={lr!r} is invalid; pass a learning rate >= 0")
        if not np.isfinite(self.l2) or self.l2 < 0:
            raise ValueError(f"l2={self.l2!r} is invalid; pass an L2 coefficient >= 0")
        if not self.divergence_threshold > 0:
            raise ValueError(
                f"divergence_threshold={self.divergence_threshold!r} is invalid; pass a number > 0"
            )
        kinds = [self.optimiser] if isinstance(self.optimiser, str) else self.optimiser.values()
        if any(kind not in OPTIMISERS for kind in kinds):
            raise ValueError(
                f"optimiser={self.optimiser!r} is unknown; choose one of {list(OPTIMISERS)} "
                "(or a dict naming one per group, e.g. {'synthesiser': 'adam'})"
            )

    def optimiser_of(self, group: str) -> str:
        """The optimiser kind of ``group``: ``optimiser`` itself, or its entry for the group
        (``"adam"`` where a dict does not name the group)."""
        if isinstance(self.optimiser, str):
            return self.optimiser
        return self.optimiser.get(group, "adam")


@dataclass
class TrainResult:
    """The trained (stacked) parameters and the tidy metrics table (columns ``COLUMNS``)."""

    params: ParamGroups
    table: pd.DataFrame
    diverged_at: list[int | None]
    """Per model, the batch at which it diverged, or ``None``."""
    seconds: float = 0.0
    """Wall time of the whole run, evaluations included, summed over its resumptions."""


def _optimisers(
    params: ParamGroups, rule: Rule, config: TrainConfig
) -> list[torch.optim.Optimizer]:
    """The optimisers over the groups the rule trains (one per optimiser kind), each group
    with its own learning rate."""
    missing = [group for group in rule.trains if group not in config.lr]
    if missing:
        raise ValueError(
            f"rule {rule.name!r} trains the groups {list(rule.trains)} but lr has no rate for "
            f"{missing}; pass e.g. lr={{..., {missing[0]!r}: 0.0}} (0 freezes a group)"
        )
    by_kind: dict[str, list[dict]] = {}
    for group in rule.trains:
        if config.lr[group] > 0:
            by_kind.setdefault(config.optimiser_of(group), []).append(
                {"params": list(params[group].values()), "lr": config.lr[group], "name": group}
            )
    return [
        torch.optim.SGD(groups)
        if kind == "sgd"
        else torch.optim.Adam(groups, betas=config.betas, eps=config.eps)
        for kind, groups in by_kind.items()
    ]


def _per_model(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(K,)`` mask shaped to broadcast over a stacked tensor ``(K, ...)``."""
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


def _apply(
    optimisers: list[torch.optim.Optimizer],
    params: ParamGroups,
    grads: ParamGroups,
    active: torch.Tensor,
) -> None:
    """One step of every optimiser for the ``active`` models ``(K,)``; the others keep their
    parameters exactly (their gradients are zeroed, and Adam's momentum step is undone)."""
    frozen = []
    for optimiser in optimisers:
        for group in optimiser.param_groups:
            for name, value in grads.get(group["name"], {}).items():
                param = params[group["name"]][name]
                keep = _per_model(active, param)
                param.grad = torch.where(keep, value, 0.0)
                frozen.append((param, keep, param.detach().clone()))
    for optimiser in optimisers:
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
    with torch.no_grad():
        for param, keep, before in frozen:
            param.copy_(torch.where(keep, param, before))


def _healthy(out: RuleOutput, threshold: float) -> torch.Tensor:
    """``(K,)``: loss finite and ``<= threshold``, every gradient finite (no host sync)."""
    ok = torch.isfinite(out.loss) & (out.loss <= threshold)
    for group in out.grads.values():
        for value in group.values():
            ok &= torch.isfinite(value.reshape(len(ok), -1)).all(dim=1)
    return ok


def _rows(
    seeds: Sequence[int], batch: int, metric: str, values: torch.Tensor, diverged_at: np.ndarray
) -> pd.DataFrame:
    """Long rows from ``values: (K,)`` (sequence-level, ``t = -1``) or ``(T, K)`` (per step,
    ``t = 1 … T``); ``model`` is the index into the stack, ``seed`` its seed. A model that
    diverged before ``batch`` (``diverged_at``, ``-1``: never) has no rows; undefined cosines
    (NaN) are dropped, every other value is kept, finite or not."""
    v = values.detach().cpu().double().numpy()
    steps = 1 if v.ndim == 1 else v.shape[0]
    t = np.full(v.shape, -1) if v.ndim == 1 else np.repeat(np.arange(1, steps + 1), v.shape[1])
    at = np.tile(diverged_at, steps)
    frame = pd.DataFrame(
        {
            "model": np.tile(np.arange(len(seeds)), steps),
            "seed": np.tile(np.asarray(seeds), steps),
            "diverged": at >= 0,
            "diverged_at": np.where(at >= 0, at, np.nan),
            "batch": batch,
            "t": t,
            "metric": metric,
            "value": v.reshape(-1),
        }
    )
    keep = (at < 0) | (at >= batch)
    if metric in UNDEFINED_WHERE_NAN:
        keep &= ~np.isnan(frame["value"].to_numpy())
    return frame[keep]


def _log(
    cell: Cell,
    params: ParamGroups,
    inputs: torch.Tensor,
    targets: SequenceTargets,
    out: RuleOutput,
    seeds: Sequence[int],
    batch: int,
    config: TrainConfig,
    diverged_at: np.ndarray,
) -> list[pd.DataFrame]:
    """A logged batch's rows: the loss, and the alignments ``config`` asks for."""

    def rows(metric: str, values: torch.Tensor) -> pd.DataFrame:
        return _rows(seeds, batch, metric, values, diverged_at)

    frames = [rows("loss", out.loss)]
    if config.track_alignment:
        with torch.no_grad():
            true = true_future_gradients(
                cell.exact(), params["rnn"], inputs, out.states, out.immediate
            )
        for metric, values in signal_alignments(out, true).items():
            frames.append(rows(metric, values))
        frames.append(rows("future_gradient_norm", true.norm(dim=-1).mean(-1)))
    if config.track_update_alignment:
        reference = true_gradients(cell, params, inputs, targets)["rnn"]
        cos = update_alignment(out.grads["rnn"], reference, cell.param_ndim)
        frames.append(rows("update_alignment", cos))
    return frames


@dataclass(frozen=True)
class Evaluation:
    """``evaluate(params) -> {name: (K,) tensor}`` run after every ``every`` optimiser steps
    (0: only after the last), and with ``at_start`` also before the first (``batch`` 0: the
    initial network), e.g. validation and test error; its rows are logged under those names,
    with ``batch`` the number of batches trained."""

    evaluate: Callable[[ParamGroups], dict[str, torch.Tensor]]
    every: int = 0
    at_start: bool = False

    def due(self, done: int, total: int) -> bool:
        return (self.every > 0 and done % self.every == 0) or done == total

    def count(self, total: int) -> int:
        """How many times a run of ``total`` batches evaluates."""
        return self.at_start + sum(self.due(done, total) for done in range(1, total + 1))


class _Run:
    """One run's state (parameters, optimisers, data streams, divergence, logged rows) and the
    steps of its loop, each a method: :meth:`update`, :meth:`mark_divergence`, :meth:`log`,
    :meth:`evaluate`, :meth:`save`."""

    def __init__(
        self,
        cell: Cell,
        task: Task,
        config: TrainConfig,
        seeds: list[int],
        params: ParamGroups,
        optimisers: list[torch.optim.Optimizer],
        resume: ResumeFile | None,
        device: torch.device,
    ) -> None:
        self.cell, self.task, self.config, self.seeds = cell, task, config, seeds
        self.params, self.optimisers, self.resume = params, optimisers, resume
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]  # one each
        self.diverged_at = torch.full((len(seeds),), -1, dtype=torch.long, device=device)
        """``(K,)`` batch of divergence, -1: never (kept on the device)."""
        self.frames: list[pd.DataFrame] = []
        self.start, self.seconds_before = 0, 0.0
        saved = resume.load() if resume is not None else None
        if saved is not None:
            self.start, self.seconds_before = saved["batch"], saved["seconds"]
            self.diverged_at = _restore(saved, params, optimisers, self.generators, task).to(device)
            self.frames.append(pd.DataFrame(saved["rows"], columns=COLUMNS))
        self.started = time.perf_counter()

    def seconds(self) -> float:
        """Wall time of the run so far, summed over its resumptions."""
        return self.seconds_before + time.perf_counter() - self.started

    def status(self) -> np.ndarray:
        """``diverged_at`` on the host (a device sync)."""
        return self.diverged_at.cpu().numpy()

    def update(self, grads: ParamGroups) -> None:
        """One optimiser step (with the L2 term) for the models that have not diverged, then
        the cell's constraints (Dale's law) put back."""
        _apply(
            self.optimisers, self.params, with_l2_gradient(grads, self.params, self.config.l2),
            self.diverged_at < 0,
        )  # fmt: skip
        self.cell.constrain(self.params["rnn"])

    def mark_divergence(self, out: RuleOutput, batch: int) -> None:
        """Mark the models whose batch went unhealthy at ``batch`` (on the device, no sync)."""
        newly = ~_healthy(out, self.config.divergence_threshold) & (self.diverged_at < 0)
        self.diverged_at = torch.where(newly, batch, self.diverged_at)

    def log(
        self, batch: int, inputs: torch.Tensor, targets: SequenceTargets, out: RuleOutput
    ) -> bool:
        """Log the batch's rows and the task's metrics; ``True`` once every model diverged."""
        status = self.status()
        self.frames.extend(
            _log(self.cell, self.params, inputs, targets, out, self.seeds, batch, self.config,
                 status)
        )  # fmt: skip
        self.frames.extend(
            _rows(self.seeds, batch, name, value, status)
            for name, value in self.task.metrics().items()
        )  # e.g. a curriculum's level, before it advances
        return bool((status >= 0).all())

    def evaluate(self, evaluation: Evaluation, done: int) -> None:
        """Log ``evaluation``'s rows after ``done`` batches."""
        status = self.status()
        self.frames.extend(
            _rows(self.seeds, done, name, value, status)
            for name, value in evaluation.evaluate(self.params).items()
        )

    def save(self, done: int) -> None:
        """Save everything the run needs to go on after ``done`` batches (see
        :func:`_restore`)."""
        assert self.resume is not None
        rows = pd.concat(self.frames, ignore_index=True) if self.frames else (
            pd.DataFrame(columns=COLUMNS))  # fmt: skip
        self.resume.save({
            "batch": done, "seconds": self.seconds(), "params": self.params,
            "optimisers": [o.state_dict() for o in self.optimisers],
            "generators": [g.get_state() for g in self.generators],
            "diverged_at": self.diverged_at, "task": self.task.state_dict(),
            "rows": rows[COLUMNS].to_dict("list"),
        })  # fmt: skip

    def result(self) -> TrainResult:
        """The table, each model's final divergence status on all its rows."""
        final = self.status()
        table = pd.concat(self.frames, ignore_index=True)[COLUMNS]
        table["diverged"] = final[table.model.to_numpy()] >= 0
        table["diverged_at"] = np.where(table.diverged, final[table.model.to_numpy()], np.nan)
        diverged_at = [int(b) if b >= 0 else None for b in final]
        return TrainResult(self.params, table, diverged_at, self.seconds())


def train(
    cell: Cell,
    rule: Rule,
    task: Task,
    config: TrainConfig,
    seeds: int | Sequence[int] = 0,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float32",
    params: ParamGroups | None = None,
    description: str | None = None,
    evaluation: Evaluation | None = None,
    resume: ResumeFile | None = None,
) -> TrainResult:
    """Train ``len(seeds)`` models of ``cell`` with ``rule`` on ``task`` as one batched model.

    Model ``k`` is initialised from ``seeds[k]`` and draws its data from its own generator
    seeded by ``seeds[k]``: the same seed sees the same data in every stack and condition.
    ``params`` (stacked, ``K`` leading) replaces the initialisation. ``evaluation``: see
    :class:`Evaluation`.

    Divergence (see the module docstring) is checked on the device every batch; the host
    learns of it at the next logged batch, and the run stops early once every model diverged.
    The table's ``diverged`` and ``diverged_at`` give each model's final status on all its rows.

    ``resume`` (:mod:`bplambda.resume`): the full training state is saved there as the
    run goes, and a run started with a saved state of the same key goes on from it, to the
    same result as an uninterrupted run. The caller removes the state once it has the result.
    """
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    if config.update_every_step and getattr(rule, "implementation", None) != "online":
        raise ValueError(
            "update_every_step=True needs make_rule('bp_lambda', implementation='online'); "
            f"got rule {rule.name!r}"
        )
    task = task.to(device)  # its data where the model is: no upload per batch
    task.reset()  # the previous run's epoch order or curriculum level
    if config.compile_step and rule.name in COMPILED_RULES:
        cell = with_compiled_step(cell)
    if params is None:
        params = init_stacked_network(cell, task.output_size, seeds, dtype, device, rule)
    run = _Run(cell, task, config, seeds, params, _optimisers(params, rule, config), resume, device)
    on_step = run.update if config.update_every_step else None
    bar = tqdm(
        range(run.start, config.num_batches), desc=description or rule.name,
        disable=not config.progress, initial=run.start, total=config.num_batches,
    )  # fmt: skip
    if evaluation is not None and evaluation.at_start and run.start == 0:
        run.evaluate(evaluation, 0)
    for batch in bar:
        inputs, targets = task.sample(run.generators)
        inputs, targets = upload(inputs, device, dtype), targets.to(device, dtype)
        out = rule.gradients(cell, params, inputs, targets, on_step=on_step)
        run.mark_divergence(out, batch)
        if batch % config.log_every == 0 or batch == config.num_batches - 1:
            if run.log(batch, inputs, targets, out):
                break
            bar.set_postfix(loss=f"{out.loss.mean().item():.4g}")  # the host waits here anyway
        task.observe(torch.where(run.diverged_at < 0, out.loss, torch.inf))
        if not config.update_every_step:
            run.update(out.grads)
        done = batch + 1
        if evaluation is not None and evaluation.due(done, config.num_batches):
            run.evaluate(evaluation, done)
        if resume is not None and done < config.num_batches and resume.due():
            run.save(done)
    bar.close()
    return run.result()


def _restore(
    saved: dict,
    params: ParamGroups,
    optimisers: list[torch.optim.Optimizer],
    generators: list[torch.Generator],
    task: Task,
) -> torch.Tensor:
    """Put a saved training state back in place (parameters copied into the tensors the
    optimisers hold); returns the saved ``diverged_at`` ``(K,)``."""
    with torch.no_grad():
        for group, values in saved["params"].items():
            for name, value in values.items():
                params[group][name].copy_(value)
    for optimiser, state in zip(optimisers, saved["optimisers"], strict=True):
        optimiser.load_state_dict(state)
    for generator, state in zip(generators, saved["generators"], strict=True):
        generator.set_state(state)
    if saved["task"]:
        task.load_state_dict(saved["task"])
    return saved["diverged_at"]
