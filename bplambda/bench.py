"""`make bench`: per-step time and peak memory of every rule's update, the stacking gains,
the time of whole grids, and the Liu et al. study's rules and curvature tools.

Every rule of the BP(λ) study (BPTT, TBPTT(5), SG(5), BP(1) as ``online`` eligibility traces,
Algorithm 1, and as the exact forward view ``lambda_return``, the oracle) at the paper's
sequential-MNIST size (LSTM 30, B = 50, T = 28) and copy-repeat size (LSTM 100, B = 100).
Each case runs in a fresh subprocess so that its peak resident memory (above the process's
state before the measured call) is its own. A case whose predicted memory does not fit is not
run; its predicted need is reported instead.

Against a peer (``--peer`` alone): BPTT, TBPTT(5), SG(5), the oracle and BP(1) per batch
over the plain ``nn.LSTM`` forward and backward loop a user would write, at both sizes, one
model and a stack (5 at seq-MNIST, 3 at copy-repeat), 1 and 2 threads, with the fused LSTM
kernel and with the hand-written step.

Whole grids as the notebooks run them (data, rule, optimiser, logging): one epoch of the
seq-MNIST ``paper`` grid with the TBPTT(n) and SG(n) window grids stacked and with one window
per condition; and seconds per 1,000 copy-repeat updates at T = 33 (every model held at level
(5, 5)).

The second study's size (rate RNN N = 128, B = 256, T = 28, seq-MNIST rows): the time of one
training step (one batch) of every rule, one Hessian-vector product (both methods) and one
λ_max (both solvers, relative tolerance 1e-4). And notebook 05's own costs at its ``paper``
profile on seq-MNIST, per condition with its 10 seeds stacked and with one seed: seconds per
training iteration and the parts of a checkpoint (evaluation, Hessian build, seconds per HVP),
from which its campaign's shards are sized (``--generalisation``: only these).

    python -m bplambda.bench [--output results/bench/bench.csv] [--device auto] [--peer]
        [--generalisation]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from bplambda.cells import Cell, MaskedCell, make_cell
from bplambda.device import resolve_device
from bplambda.experiments.conditions import Condition
from bplambda.labels import TRUNCATED
from bplambda.outputs import ParamGroups
from bplambda.readout import SequenceTargets
from bplambda.rules import make_rule
from bplambda.stacking import init_network
from bplambda.tasks.base import Task
from bplambda.tasks.copy_repeat import CopyRepeatTask
from bplambda.train import TrainConfig


@dataclass(frozen=True)
class Case:
    size: str
    method: str  # a key of RULE_CASES
    hidden: int
    batch: int
    input_size: int
    output_size: int
    seq_len: int
    repeats: int


SIZES = {
    # name: (hidden, batch, input, output, T for lambda_return/bptt, T for online)
    "seq_mnist": (30, 50, 28, 10, 28, 28),
    "copy_repeat": (100, 100, 10, 9, 33, 3),
}


RULE_CASES = {
    # method: (rule name, options); BP(λ) in both implementations, the paper's seq-MNIST γ, s
    "bptt": ("bptt", {}),
    "tbptt": ("tbptt", {"window": 5}),
    "sg": ("sg", {"window": 5, "gamma": 0.9, "scale": 0.1}),
    "lambda_return": ("bp_lambda", {"lmbda": 1.0, "gamma": 0.9, "scale": 0.1}),
    "online": ("bp_lambda", {"lmbda": 1.0, "gamma": 0.9, "scale": 0.1,
                             "implementation": "online"}),
    "oracle": ("oracle", {}),
}  # fmt: skip


def cases() -> list[Case]:
    result = []
    for size, (hidden, batch, inputs, outputs, T, T_online) in SIZES.items():
        for method in RULE_CASES:
            seq_len = T_online if method == "online" else T
            repeats = 1 if (method == "online" and size == "copy_repeat") else 10
            result.append(Case(size, method, hidden, batch, inputs, outputs, seq_len, repeats))
    return result


def trace_bytes(case: Case, dtype_bytes: int = 4) -> int:
    """Memory of one eligibility trace ``(B, S, S, S+1)`` with S = 2H (LSTM)."""
    S = 2 * case.hidden
    return case.batch * S * S * (S + 1) * dtype_bytes


def _problem(case: Case, device: torch.device, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(0)
    cell = make_cell("lstm", case.input_size, case.hidden)
    params = init_network(cell, case.output_size, 0, dtype, device, _rule("lambda_return"))
    params["synthesiser"] = {
        k: 0.01 * torch.randn(v.shape, generator=g, dtype=dtype).to(device)
        for k, v in params["synthesiser"].items()
    }
    inputs = torch.rand(case.seq_len, case.batch, case.input_size, generator=g, dtype=dtype)
    labels = torch.randint(0, case.output_size, (case.seq_len, case.batch), generator=g)
    weights = torch.zeros(case.seq_len, dtype=dtype)
    weights[-1] = 1
    targets = SequenceTargets(labels.to(device), weights.to(device), "cross_entropy")
    return cell, params, inputs.to(device), targets


def _rule(method: str):
    name, options = RULE_CASES[method]
    return make_rule(name, **options)


def run_case(case: Case, device: torch.device) -> dict:
    """Time one case in this process (best of ``repeats`` after a warm-up call); peak memory
    above the state before the first call."""
    cell, params, inputs, targets = _problem(case, device)
    rule = _rule(case.method)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if case.repeats > 1:  # warm-up: first-call allocations and kernel selection
        rule.gradients(cell, params, inputs, targets)
    times = []
    for _ in range(case.repeats):
        start = time.perf_counter()
        rule.gradients(cell, params, inputs, targets)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return {"per_step_ms": 1e3 * min(times) / case.seq_len, "peak_mb": peak_mb}


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _in_subprocess(case: Case, device: torch.device) -> dict:
    code = (
        "import json, sys, torch; from bplambda.bench import Case, run_case; "
        "case = Case(**json.loads(sys.argv[1])); "
        "print(json.dumps(run_case(case, torch.device(sys.argv[2]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(asdict(case)), str(device)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def update_difference(device: torch.device) -> float:
    """Relative difference between the online and λ-return synthesiser updates (seq-MNIST
    size, float64): the two implementations must agree to rounding error."""
    case = next(c for c in cases() if c.size == "seq_mnist" and c.method == "online")
    cell, params, inputs, targets = _problem(case, device, torch.float64)
    a = _rule("online").gradients(cell, params, inputs, targets).grads["synthesiser"]
    b = _rule("lambda_return").gradients(cell, params, inputs, targets).grads["synthesiser"]
    return max(((a[k] - b[k]).norm() / b[k].norm()).item() for k in a)


def stacking_speedup(
    device: torch.device, seq_lens: tuple[int, ...] = (10, 60), num_batches: int = 100
) -> pd.DataFrame:
    """The λ sweep's BP(λ) grid (11 λ × 5 seeds, toy task) trained as one stacked model vs one
    model at a time, ``num_batches`` batches each; seconds per 1,000 batches."""
    from bplambda.experiments import lambda_sweeps
    from bplambda.experiments.conditions import bp_lambda_condition
    from bplambda.tasks.toy import ToyTask
    from bplambda.train import TrainConfig, train

    cfg = lambda_sweeps.config("quick")
    config = TrainConfig(num_batches=num_batches,
                         lr={"rnn": 0, "readout": 0, "synthesiser": cfg.lr_synthesiser},
                         track_alignment=True,
                         log_every=cfg.log_every, progress=False)  # fmt: skip
    cell = make_cell("linear_rnn", 10, cfg.hidden_size)
    rows = []
    warm_up = replace(config, num_batches=5)
    for T in seq_lens:
        task = ToyTask(seq_len=T)
        grid = bp_lambda_condition(cfg.lambdas, cfg.seeds, cfg.gamma)
        train(cell, grid.rule, task, warm_up, seeds=grid.seeds, device=device)
        start = time.perf_counter()
        train(cell, grid.rule, task, config, seeds=grid.seeds, device=device)
        stacked = time.perf_counter() - start
        start = time.perf_counter()
        for lmbda, seed in zip(grid.rule.lmbda, grid.seeds):
            rule = make_rule("bp_lambda", lmbda=lmbda, gamma=cfg.gamma)
            train(cell, rule, task, config, seeds=[seed], device=device)
        one_by_one = time.perf_counter() - start
        scale = 1000 / num_batches
        rows.append({"T": T, "models": len(grid.seeds), "stacked_s_per_1000": stacked * scale,
                     "one_at_a_time_s_per_1000": one_by_one * scale,
                     "speedup": one_by_one / stacked})  # fmt: skip
    return pd.DataFrame(rows)


def _seconds_per_batch(
    condition: Condition, cell: Cell, task: Task, config: TrainConfig, device: torch.device
) -> tuple[float, ParamGroups]:
    """Wall seconds per training batch of one condition (its models stacked, as the
    notebooks run it: data, rule, optimiser and logging), after a 3-batch warm-up; and the
    trained parameters."""
    from bplambda.train import train

    run = functools.partial(train, cell, condition.rule, task, seeds=condition.seeds,
                            device=device)  # fmt: skip
    run(replace(config, num_batches=3))
    start = time.perf_counter()
    result = run(config)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / config.num_batches, result.params


def _split_windows(pairs: list[tuple[Condition, str]], seeds) -> list[tuple[Condition, str]]:
    """The same grid with every TBPTT(n) and SG(n) window as its own condition (as before
    window grids were stacked)."""
    from bplambda.experiments.conditions import window_condition

    split = []
    for condition, cell_name in pairs:
        family = condition.labels[0]["family"]
        if family in TRUNCATED:
            options = {k: getattr(condition.rule, k) for k in ("gamma", "scale")
                       if hasattr(condition.rule, k)}  # fmt: skip
            windows = dict.fromkeys(label["n"] for label in condition.labels)
            split += [(window_condition(family, [int(n)], seeds, **options), cell_name)
                      for n in windows]  # fmt: skip
        else:
            split.append((condition, cell_name))
    return split


def _names(condition: Condition) -> str:
    return ", ".join(dict.fromkeys(label["condition"] for label in condition.labels))


def seq_mnist_grid_epoch(
    device: torch.device, batches: int = 40, eval_images: int = 5_000
) -> pd.DataFrame:
    """Seconds for one epoch of notebook 03's ``paper`` grid (every rule × 5 seeds, windows
    1-5, λ ∈ {0, 0.5, 1} in both LSTM modes), per condition: ``batches`` training batches
    scaled to the epoch's 960, plus one evaluation pass over ``eval_images`` random images
    scaled to the epoch's 70,000 (train, validation and test sets). ``variant``:
    ``stacked`` (the notebook: a window grid is one stacked model) or ``one window per
    condition``. Random images: the time does not depend on the pixels."""
    from bplambda.evaluate import classification_metrics
    from bplambda.experiments import sequential_mnist
    from bplambda.experiments.grids import grid_conditions
    from bplambda.tasks.mnist import SequentialMNIST

    defaults = {
        f.name: f.default for f in fields(sequential_mnist.Config) if f.default is not MISSING
    }
    cfg = SimpleNamespace(**{**defaults, **sequential_mnist.DEFAULTS["paper"]})
    g = torch.Generator().manual_seed(0)
    images = torch.rand(eval_images, 28, 28, generator=g)
    labels = torch.randint(0, 10, (eval_images,), generator=g)
    task = SequentialMNIST(images, labels, cfg.batch_size)
    per_epoch_batches, per_epoch_images = 48_000 // cfg.batch_size, 70_000
    config = TrainConfig(num_batches=batches,
                         lr={"rnn": cfg.lr, "readout": cfg.lr, "synthesiser": cfg.lr},
                         log_every=cfg.log_every, progress=False)  # fmt: skip
    stacked = grid_conditions(cfg)
    rows = []
    variants = {"stacked": stacked, "one window per condition": _split_windows(stacked, cfg.seeds)}
    for variant, pairs in variants.items():
        for condition, cell_name in pairs:
            if variant != "stacked" and condition.labels[0]["family"] not in TRUNCATED:
                continue  # the same condition as stacked
            print(f"  seq-MNIST grid ({variant}): {_names(condition)}", flush=True)
            cell = make_cell(cell_name, task.input_size, cfg.hidden_size)
            per_batch, params = _seconds_per_batch(condition, cell, task, config, device)
            start = time.perf_counter()
            classification_metrics(cell, params, images.to(device), labels.to(device))
            evaluation = (time.perf_counter() - start) * per_epoch_images / eval_images
            rows.append({"variant": variant, "conditions": _names(condition),
                         "family": condition.labels[0]["family"], "models": len(condition.seeds),
                         "train_s_per_epoch": per_batch * per_epoch_batches,
                         "eval_s_per_epoch": evaluation})  # fmt: skip
    table = pd.DataFrame(rows)
    table["s_per_epoch"] = table.train_s_per_epoch + table.eval_s_per_epoch
    return table


def copy_repeat_per_1000(
    device: torch.device,
    updates: int = 20,
    level: tuple[int, int] = (5, 5),
    profile: str = "quick",
    **overrides: object,
) -> pd.DataFrame:
    """Seconds per 1,000 updates of notebook 04's conditions with every model held at one
    curriculum ``level`` ((5, 5): T = 33; LSTM 100, batch 100 at every profile but smoke),
    one row per stacked condition. Default grid: ``quick`` with 3 seeds (BPTT, TBPTT(5),
    SG(5), BP(0.5) and BP(1) stacked); ``profile`` and ``overrides`` (``seeds``, ``windows``,
    ``lambdas``, ``rules``) measure another, e.g. the paper campaign's shards."""
    from bplambda.experiments import copy_repeat_curriculum
    from bplambda.experiments.grids import grid_conditions

    cfg = copy_repeat_curriculum.config(profile, **{"seeds": (0, 1, 2), **overrides})
    task = CopyRepeatTask(cfg.batch_size, threshold_bits=0.0, start=level)
    config = TrainConfig(num_batches=updates,
                         lr={"rnn": cfg.lr, "readout": cfg.lr, "synthesiser": cfg.lr_synthesiser},
                         log_every=cfg.log_every, progress=False)  # fmt: skip
    rows = []
    for condition, cell_name in grid_conditions(cfg):
        print(f"  copy-repeat T={task.seq_len}: {_names(condition)}", flush=True)
        cell = MaskedCell(make_cell(cell_name, task.input_size - 1, cfg.hidden_size))
        per_update, _ = _seconds_per_batch(condition, cell, task, config, device)
        rows.append({"conditions": _names(condition), "models": len(condition.seeds),
                     "T": task.seq_len, "s_per_1000_updates": 1000 * per_update})  # fmt: skip
    return pd.DataFrame(rows)


def _seconds(call) -> float:
    """Wall seconds of one ``call()``."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _checkpoint_costs(
    cell: Cell, task: Task, cfg, params: ParamGroups, eval_examples: int, solver_steps: int
) -> dict[str, float]:
    """One of notebook 05's checkpoints (:func:`~bplambda.sharpness.checkpoint_metrics`) in
    parts, on ``params`` (its ``K`` stacked models): the generalisation metrics on
    ``eval_examples`` per split scaled to ``cfg.eval_size`` (the evaluation is linear in the
    examples, 2,000 at a time); the Hessian graph build on the curvature batch and the
    solver's seconds per HVP (``cfg.checkpoint_solver``, ``solver_steps`` iterations: a
    solve's count depends on the trained network, which a short run does not reach); and
    the same in float64 with Lanczos, the end-of-run curvature's solves
    (:func:`~bplambda.sharpness.final_curvature`, there on a batch of the training size)."""
    from bplambda.curvature import ConvergenceWarning, lanczos, network_hessian
    from bplambda.device import resolve_dtype
    from bplambda.evaluate import generalisation
    from bplambda.sharpness import SOLVERS, shared_batch

    K = len(params["readout"]["bias"])
    device = params["readout"]["bias"].device
    evaluation = _seconds(
        lambda: generalisation(cell, params, task, eval_examples, cfg.eval_seed)
    ) * cfg.eval_size / eval_examples  # fmt: skip
    costs = {"s_evaluation": evaluation}
    solves = {"": (resolve_dtype(cfg.dtype), SOLVERS[cfg.checkpoint_solver]),
              "_float64": (torch.float64, functools.partial(lanczos, which="LA"))}  # fmt: skip
    for suffix, (dtype, solve) in solves.items():
        cast = {g: {k: v.detach().to(dtype) for k, v in group.items()}
                for g, group in params.items()}  # fmt: skip
        batch = shared_batch(task.evaluation_set("train", cfg.curvature_batch, cfg.eval_seed),
                             device, dtype, K)  # fmt: skip
        start = time.perf_counter()
        op = network_hessian(cell, cast, *batch, l2=cfg.l2)
        costs[f"s_hessian_build{suffix}"] = time.perf_counter() - start
        with warnings.catch_warnings():  # rtol 0: exactly solver_steps HVPs, unconverged
            warnings.simplefilter("ignore", ConvergenceWarning)
            solving = _seconds(
                lambda op=op, solve=solve: solve(op, max_iter=solver_steps, rtol=0.0)
            )
        costs[f"s_per_hvp{suffix}"] = solving / solver_steps
    return costs


def generalisation_costs(
    device: torch.device,
    profile: str = "paper",
    task_name: str = "seq_mnist",
    seed_counts: tuple[int, ...] | None = None,
    iterations: int = 3,
    eval_examples: int = 1000,
    solver_steps: int = 2,
    **overrides: object,
) -> pd.DataFrame:
    """What one run of notebook 05 costs on ``task_name`` at ``profile``, per condition (its
    models stacked as the notebook stacks them: seeds × windows or λ values), with the first
    ``n`` seeds for every ``n`` of ``seed_counts`` (None: all of the profile's, and one):

    - ``s_per_iteration``: one training batch as :func:`~bplambda.experiments.generalisation.run`
      trains it (data, rule, L2, SGD, divergence check; unlogged), ``iterations`` of them after
      a one-batch warm-up;
    - per checkpoint: ``s_logged_batch_extra`` (a logged batch's alignments beyond an
      unlogged batch; the run logs as many batches as it has checkpoints: batch 0, every
      ``checkpoint_every``, the last) and :func:`_checkpoint_costs`, measured once per number
      of stacked ``models`` (they do not depend on the rule);
    - ``s_task``: building the task and its cell (data loading), once per condition;
    - ``iterations`` and ``checkpoints`` of one run of the condition at this profile.

    A checkpoint then costs ``s_logged_batch_extra + s_evaluation + s_hessian_build +
    hvps·s_per_hvp``, the end of the run about ``s_hessian_build_float64 + hvps·
    s_per_hvp_float64`` (Lanczos to 1e-6 within 200 HVPs, power iteration within
    ``curvature_iterations``), with ``hvps`` the solves' counts, which only the runs show.
    ``overrides`` go to the config (``rules``, ``windows``, ...)."""
    from bplambda.experiments import generalisation
    from bplambda.tasks.liu import liu_task
    from bplambda.train import train

    base = generalisation.config(profile, tasks=(task_name,), progress=False, **overrides)
    seed_counts = seed_counts or (len(base.seeds), 1)
    start = time.perf_counter()
    task, cell = liu_task(task_name, base)
    loading = time.perf_counter() - start
    checkpoints: dict[int, dict[str, float]] = {}
    rows = []
    for count in seed_counts:
        cfg = replace(base, seeds=base.seeds[:count])
        tracked = replace(generalisation.training(cfg), progress=False)
        unlogged = replace(tracked, track_alignment=False, track_update_alignment=False)
        schedule = generalisation.checkpoint_schedule(cfg, lambda params: {})  # only counted
        for condition in generalisation.liu_conditions(cfg):
            print(f"  notebook 05 {task_name}, {count} seed(s): {_names(condition)}", flush=True)

            def run(config: TrainConfig, batches: int, condition=condition):
                return train(cell, condition.rule, task, replace(config, num_batches=batches),
                             seeds=condition.seeds, device=device)  # fmt: skip

            run(unlogged, 1)  # warm-up: first-call allocations
            logged = _seconds(lambda run=run, tracked=tracked: run(tracked, 1))
            start = time.perf_counter()
            params = run(unlogged, iterations).params
            per_iteration = (time.perf_counter() - start) / iterations
            models = len(condition.seeds)
            if models not in checkpoints:
                checkpoints[models] = _checkpoint_costs(cell, task, cfg, params, eval_examples,
                                                        solver_steps)  # fmt: skip
            total = generalisation.iterations_of(condition, cfg)
            rows.append({"task": task_name, "conditions": _names(condition),
                         "family": condition.labels[0]["family"], "seeds": count,
                         "models": models, "s_per_iteration": per_iteration,
                         "s_logged_batch_extra": logged - per_iteration,
                         **checkpoints[models], "s_task": loading, "iterations": total,
                         "checkpoints": schedule.count(total)})  # fmt: skip
    return pd.DataFrame(rows).assign(device=str(device), threads=torch.get_num_threads())


def show_generalisation_costs(table: pd.DataFrame) -> str:
    """:func:`generalisation_costs` as printed: seconds per iteration and the parts of a
    checkpoint, one row per condition and number of seeds."""
    shown = ["conditions", "seeds", "models", "s_per_iteration", "s_logged_batch_extra",
             "s_evaluation", "s_hessian_build", "s_per_hvp", "s_per_hvp_float64", "iterations",
             "checkpoints"]  # fmt: skip
    first = table.iloc[0]
    return (f"\nnotebook 05 on {first.task}, seconds (threads {first.threads}):\n"
            + table[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))  # fmt: skip


LIU_SIZE = {"hidden": 128, "batch": 256, "input_size": 28, "output_size": 10, "seq_len": 28}
LIU_RULES = {
    "BPTT": ("bptt", {}),
    "e-prop": ("eprop", {}),
    "RFLO": ("rflo", {}),
    "MDGL": ("mdgl", {}),
    "MDGL (cell type)": ("mdgl", {"variant": "cell_type"}),
    "TBPTT(1)": ("tbptt", {"window": 1}),
    "BP(1)": ("bp_lambda", {"lmbda": 1.0, "scale": 0.1}),
}


def _best_seconds(call, repeats: int, device: torch.device) -> float:
    """Best wall time of ``call()`` over ``repeats`` runs after one warm-up run."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def liu_bench(device: torch.device, repeats: int = 5) -> pd.DataFrame:
    """Seconds per training step of every rule of :data:`LIU_RULES`, per HVP and per λ_max,
    at :data:`LIU_SIZE` (float32, one model)."""
    from bplambda.curvature import lanczos, network_hessian, power_iteration
    from bplambda.stacking import init_stacked_network

    n = LIU_SIZE
    g = torch.Generator().manual_seed(0)
    cell = make_cell("rate_rnn", n["input_size"], n["hidden"])
    inputs = torch.rand(n["seq_len"], 1, n["batch"], n["input_size"], generator=g).to(device)
    labels = torch.randint(0, n["output_size"], (n["seq_len"], 1, n["batch"]), generator=g)
    weights = torch.zeros(n["seq_len"])
    weights[-1] = 1
    targets = SequenceTargets(labels, weights, "cross_entropy").to(device, torch.float32)
    rows = []
    for label, (name, options) in LIU_RULES.items():
        rule = make_rule(name, **options)
        params = init_stacked_network(cell, n["output_size"], [0], torch.float32, device, rule)
        seconds = _best_seconds(
            lambda rule=rule, params=params: rule.gradients(cell, params, inputs, targets),
            repeats, device,
        )  # fmt: skip
        rows.append({"what": f"training step: {label}", "seconds": seconds, "hvps": None})
    params = init_stacked_network(cell, n["output_size"], [0], torch.float32, device)
    for method in ("double_backward", "forward_over_reverse"):
        op = network_hessian(cell, params, inputs, targets, l2=1e-2, method=method)
        v = torch.randn(op.model_shape + op.shape, generator=g).to(device)
        seconds = _best_seconds(lambda op=op, v=v: op(v), repeats, device)
        rows.append({"what": f"one HVP: {method}", "hvps": 1, "seconds": seconds})
    solvers = {"power iteration": power_iteration, "Lanczos": lanczos}
    for label, solve in solvers.items():

        def measure(solve=solve):
            op = network_hessian(cell, params, inputs, targets, l2=1e-2)
            return solve(op, rtol=1e-4)

        result = measure()
        rows.append({"what": f"λ_max: {label} (graph build included)",
                     "seconds": _best_seconds(measure, 1, device),
                     "hvps": int(result.iterations.max()),
                     "value": float(result.eigenvalue.max())})  # fmt: skip
    return pd.DataFrame(rows).assign(device=str(device), **n)


PEER_SIZES = {
    # name: (hidden, batch, input, output, T, models stacked, loss)
    "seq_mnist": (30, 50, 28, 10, 28, 5, "cross_entropy"),
    "copy_repeat": (100, 100, 10, 9, 33, 3, "bce"),
}
PEER_RULES = ("bptt", "tbptt", "sg", "oracle", "lambda_return")
"""The rules of :data:`RULE_CASES` set against the plain ``nn.LSTM`` loop (BP(1) as its
λ-return implementation)."""


def _peer_problem(size: tuple, models: int, device: torch.device):
    """A stacked problem of ``models`` models and the same one as ``nn.LSTM`` modules: the
    loss on the last step (cross-entropy, seq-MNIST) or on the last two thirds (BCE, as
    copy-repeat scores its recall)."""
    hidden, batch, n_in, n_out, T, _, loss = size
    g = torch.Generator().manual_seed(0)
    cell = make_cell("lstm", n_in, hidden)
    nets = [init_network(cell, n_out, seed, torch.float32, device, _rule("lambda_return"))
            for seed in range(models)]  # fmt: skip
    params = {group: {k: torch.stack([n[group][k] for n in nets]) for k in nets[0][group]}
              for group in nets[0]}  # fmt: skip
    params["synthesiser"] = {k: 0.01 * torch.randn(v.shape, generator=g).to(device)
                             for k, v in params["synthesiser"].items()}  # fmt: skip
    inputs = torch.rand(T, models, batch, n_in, generator=g).to(device)
    first = T - 1 if loss == "cross_entropy" else T // 3
    weights = torch.zeros(T)
    weights[first:] = 1 / (T - first)
    if loss == "cross_entropy":
        values = torch.randint(0, n_out, (T, models, batch), generator=g).to(device)
    else:
        values = torch.randint(0, 2, (T, models, batch, n_out), generator=g).float().to(device)
    targets = SequenceTargets(values, weights.to(device), loss)
    lstms = [torch.nn.LSTM(n_in, hidden).to(device) for _ in range(models)]
    linears = [torch.nn.Linear(hidden, n_out).to(device) for _ in range(models)]
    own = [inputs[:, k].contiguous() for k in range(models)]

    def peer() -> None:
        """What a user writes: nn.LSTM, a Linear readout on the scored steps, the loss,
        ``.backward()``, model after model."""
        for k in range(models):
            out = linears[k](lstms[k](own[k])[0][first:])
            if loss == "cross_entropy":
                value = torch.nn.functional.cross_entropy(out[-1], values[-1, k])
            else:
                value = torch.nn.functional.binary_cross_entropy_with_logits(out, values[first:, k])
            value.backward()

    return cell, params, inputs, targets, peer


def _peer_rows(spec: tuple, models: int, device: torch.device, repeats: int) -> list[dict]:
    """One size and stack: the loop's time and every rule's, with each kernel it has."""
    cell, params, inputs, targets, peer = _peer_problem(spec, models, device)
    peer_s = _best_seconds(peer, repeats, device)
    rows = []
    for method in PEER_RULES:
        name, options = RULE_CASES[method]
        for kernel in ("reference",) if name == "bp_lambda" else ("auto", "reference"):
            rule = make_rule(name, **options, **({} if name == "bp_lambda" else {"kernel": kernel}))
            seconds = _best_seconds(
                lambda rule=rule: rule.gradients(cell, params, inputs, targets), repeats, device
            )
            rows.append({"models": models, "method": method, "kernel": kernel,
                         "ms": 1e3 * seconds, "peer_ms": 1e3 * peer_s,
                         "ratio": seconds / peer_s})  # fmt: skip
    return rows


def peer_table(
    device: torch.device,
    sizes: dict[str, tuple] = PEER_SIZES,
    threads: tuple[int, ...] = (1, 2),
    repeats: int = 10,
) -> pd.DataFrame:
    """Every rule of :data:`PEER_RULES` per batch against the plain ``nn.LSTM`` forward and
    backward loop over the same models (``ratio``: rule over loop, measured side by side in
    one run), one model and the size's stack, with the fused kernel (``kernel="auto"``) and
    the hand-written step (``"reference"``; BP(λ) has only the latter), at each number of
    ``threads``."""
    rows = []
    before = torch.get_num_threads()
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for size, spec in sizes.items():
                for models in dict.fromkeys((1, spec[5])):
                    rows += [{"size": size, "threads": n_threads, **row}
                             for row in _peer_rows(spec, models, device, repeats)]  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return pd.DataFrame(rows)


def show_peer_table(table: pd.DataFrame) -> str:
    """The ratios, one column per number of threads, and the loop's own ms per batch."""
    ratios = table.pivot_table(index=["size", "models", "method", "kernel"], columns="threads",
                               values="ratio", sort=False)  # fmt: skip
    ratios.columns = [f"ratio, {n} thread{'s' * (n > 1)}" for n in ratios.columns]
    loop = table.pivot_table(index=["size", "models"], columns="threads", values="peer_ms",
                             sort=False)  # fmt: skip
    loop.columns = [f"nn.LSTM loop ms, {n} thread{'s' * (n > 1)}" for n in loop.columns]
    fmt = {"float_format": lambda v: f"{v:.2f}"}
    return f"{ratios.to_string(**fmt)}\n\n{loop.to_string(**fmt)}"


def _sync_sites(run) -> Counter:
    """``Counter`` of ``file:line`` of every host sync (CUDA stream synchronisation) that
    ``run()`` makes, as ``torch.cuda.set_sync_debug_mode("warn")`` reports them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                   if "synchroniz" in str(w.message))  # fmt: skip


def sync_check(device: torch.device, batches: int = 10) -> pd.DataFrame:
    """Host syncs per training batch of every rule as :func:`~bplambda.train.train` runs it
    (data, rule, divergence check, optimiser; 2 seeds stacked) on a CUDA device, where each one
    serialises the GPU. Batches the loop logs sync on purpose (the log is read on the host), so
    a run of ``batches`` batches that logs only its first and last is compared with a run of
    2: the difference over ``batches - 2`` is the count per unlogged batch, and ``sites``
    where they happen. Problems: seq-MNIST and copy-repeat (curriculum) sizes of the BP(λ)
    study with every rule of :data:`RULE_CASES` (copy-repeat without ``online``, which takes
    no front-padded stacks), and the rate RNN with :data:`LIU_RULES` on seq-MNIST rows,
    pattern generation and delayed match (notebook 05's tasks, shorter)."""
    from bplambda.tasks.delayed_match import DelayedMatch
    from bplambda.tasks.mnist import SequentialMNIST
    from bplambda.tasks.pattern_generation import PatternGeneration
    from bplambda.train import train

    g = torch.Generator().manual_seed(0)
    mnist = SequentialMNIST(torch.rand(500, 28, 28, generator=g),
                            torch.randint(0, 10, (500,), generator=g), batch_size=50)  # fmt: skip
    copy = CopyRepeatTask(100)
    problems = {
        "seq_mnist": (mnist, make_cell("lstm", 28, 30), RULE_CASES),
        "copy_repeat": (
            copy,
            MaskedCell(make_cell("lstm", copy.input_size - 1, 100)),
            {k: v for k, v in RULE_CASES.items() if k != "online"},
        ),  # no masks
        "rate_rnn": (mnist, make_cell("rate_rnn", 28, LIU_SIZE["hidden"]), LIU_RULES),
        "pattern_generation": (
            PatternGeneration(seq_len=200),
            make_cell("rate_rnn", 100, LIU_SIZE["hidden"]),
            LIU_RULES,
        ),
        "delayed_match": (
            DelayedMatch(delay=100, cue_len=50, batch_size=32),
            make_cell("rate_rnn", 2, LIU_SIZE["hidden"]),
            LIU_RULES,
        ),
    }
    rows = []
    for problem, (task, cell, rules) in problems.items():
        for label, (name, options) in rules.items():
            rule = make_rule(name, **options)
            config = TrainConfig(num_batches=batches, log_every=10 * batches, progress=False)

            def run(n: int, rule=rule, task=task, cell=cell, config=config) -> None:
                train(cell, rule, task, replace(config, num_batches=n), seeds=[0, 1],
                      device=device)  # fmt: skip

            run(2)  # warm-up: first-call allocations and kernel selection
            logged_only, whole = _sync_sites(lambda: run(2)), _sync_sites(lambda: run(batches))
            unlogged = whole - logged_only
            rows.append({"problem": problem, "rule": label,
                         "syncs_per_batch": sum(unlogged.values()) / (batches - 2),
                         "sites": "; ".join(f"{site} x{count}" for site, count in
                                            unlogged.most_common())})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="results/bench/bench.csv")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--sync-check",
        action="store_true",
        help="only count the host syncs per training batch (CUDA only)",
    )
    parser.add_argument(
        "--peer",
        action="store_true",
        help="only the rules against the plain nn.LSTM loop (1 and 2 threads)",
    )
    parser.add_argument(
        "--generalisation",
        action="store_true",
        help="only notebook 05's paper costs on seq-MNIST (per iteration and checkpoint)",
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.generalisation:
        table = generalisation_costs(device)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(args.output).with_name("generalisation_costs.csv"), index=False)
        print(show_generalisation_costs(table))
        return table
    if args.peer:
        table = peer_table(device)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(args.output).with_name("peer.csv"), index=False)
        print("rules per batch against the nn.LSTM forward+backward loop (ratio < 1: faster):")
        print(show_peer_table(table))
        return table
    if args.sync_check:
        if device.type != "cuda":
            parser.error(f"--sync-check counts host syncs on a CUDA device, not {device}; "
                         "run it with --device cuda where a GPU is")  # fmt: skip
        table = sync_check(device)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(args.output).with_name("sync_check.csv"), index=False)
        with pd.option_context("display.width", 200, "display.max_colwidth", 120):
            print(table.to_string(index=False))
        return table
    rows = []
    for case in cases():
        need = 3 * trace_bytes(case) if case.method == "online" else 0
        row = {**asdict(case), "device": str(device), "trace_mb": trace_bytes(case) / 2**20}
        if need > 0.6 * _available_bytes(device):
            row.update(
                per_step_ms=float("nan"),
                peak_mb=float("nan"),
                note=f"not run: needs about {need / 2**30:.1f} GiB",
            )
        else:
            print(f"running {case.size:12s} {case.method:14s} T={case.seq_len} ...", flush=True)
            row.update(_in_subprocess(case, device), note="")
        rows.append(row)
    table = pd.DataFrame(rows)
    for _, group in table.groupby("size"):
        online = group.loc[group.method == "online", "per_step_ms"].iloc[0]
        fast = group.loc[group.method == "lambda_return", "per_step_ms"].iloc[0]
        table.loc[group.index, "online_over_lambda_return"] = online / fast
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output, index=False)
    diff = update_difference(device)

    def written(name: str, result: pd.DataFrame) -> pd.DataFrame:
        """``result``, saved as it comes (a run cut short keeps what it measured)."""
        result.to_csv(Path(args.output).with_name(f"{name}.csv"), index=False)
        return result

    peer = written("peer", peer_table(device))
    stacking = written("stacking", stacking_speedup(device))
    liu = written("liu", liu_bench(device))
    grid = written("seq_mnist_grid", seq_mnist_grid_epoch(device))
    copy = written("copy_repeat", copy_repeat_per_1000(device))
    costs = written("generalisation_costs", generalisation_costs(device))
    shown = [
        "size",
        "method",
        "seq_len",
        "batch",
        "hidden",
        "per_step_ms",
        "peak_mb",
        "trace_mb",
        "online_over_lambda_return",
        "note",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(
        f"\nonline vs lambda_return synthesiser update, seq-MNIST size, float64: "
        f"max relative difference {diff:.2e}"
    )
    print("\nrules per batch against the nn.LSTM forward+backward loop (ratio < 1: faster):")
    print(show_peer_table(peer))
    print("\nλ-sweep grid (toy task, BP(λ), 11 λ × 5 seeds): stacked vs one model at a time")
    print(stacking.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\nseq-MNIST paper grid (every rule × 5 seeds), seconds per epoch:")
    print(grid.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    stacked = grid.variant == "stacked"
    shared = grid[stacked & ~grid.family.isin(TRUNCATED)].s_per_epoch.sum()
    print(f"one epoch of the whole grid: {grid[stacked].s_per_epoch.sum() / 60:.2f} min with "
          f"window grids stacked, {(shared + grid[~stacked].s_per_epoch.sum()) / 60:.2f} min "
          "with one window per condition")  # fmt: skip
    print("\ncopy-repeat at one level (3 seeds, LSTM 100, batch 100):")
    print(copy.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(show_generalisation_costs(costs))
    print(f"\nLiu et al. study, rate RNN {LIU_SIZE}, float32:")
    print(liu[["what", "seconds", "hvps", "value"]].to_string(index=False,
          float_format=lambda v: f"{v:.4g}"))  # fmt: skip
    print(
        f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
        f"written to {args.output}"
    )
    return table


if __name__ == "__main__":
    main()
