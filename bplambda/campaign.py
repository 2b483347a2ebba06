"""Where the paper-budget campaign stands: ``results/paper/CAMPAIGN.md``, shard by shard.

The campaign runs the ``paper`` profiles as serial sweeps (:mod:`bplambda.sweep`), each
notebook's from its own pinned commit (the latest code when that notebook's part started),
over several sittings and machines. Its plan, ``results/paper/campaign.json``, names per
notebook that commit and the sweep, with an estimate of every shard's hours made before it
started and what that estimate rests on:

    {"notebooks": {"03_sequential_mnist": {"commit": "<sha>", "command": "<the sweep>",
                                           "estimates_basis": "<how they were made>",
                                           "estimates_h": {"bptt": 1.2},
                                           "order": ["bptt", ...],
                                           "order_basis": "<why that order>"}}}

Each key is a sweep's folder under the campaign's, named after its notebook; a second sweep
of one notebook (a side run at another setting, to test what a finding depends on) lives in a
folder named otherwise, such as ``side/05_bp_lambda_synthesiser_1e-4`` (outside the folders
the results summary gathers), and names its notebook: ``"notebook": "05_..."``.
``command`` runs the sweep from a worktree at that commit (``$OLDPWD``: the project folder);
a saved state resumes only under the source that wrote it. ``order`` (optional) names the
shards in the order to run them, those that decide a claim first
(:mod:`bplambda.campaign_queue` runs them in that order, a shard at a time per core). The
report reads each shard's saved states (:mod:`bplambda.resume`: the batches done and the wall
time so far of every condition, finished or not) and says, per shard: its commit, status,
progress, wall time, the time left at its own pace so far, and the estimate made before it
started; per notebook, the core-hours spent and left (:func:`hours_left`).

    python -m bplambda.campaign [results/paper]
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from bplambda.paths import project_path, project_root

PLAN = "campaign.json"
REPORT = "CAMPAIGN.md"
CORES = 2
"""The campaign's processes at once: one single-threaded process per core of the machine."""


@dataclass(frozen=True)
class ShardProgress:
    """One shard of a sweep: ``done``/``total`` training batches summed over its conditions,
    the wall ``seconds`` they took (over every sitting), whether its run finished (its raw
    tables written), and its ``rules`` (from its parameters; empty where they are not
    known): shards of the same rules cost alike."""

    notebook: str
    name: str
    done: int
    total: int
    seconds: float
    finished: bool
    rules: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        if self.finished:
            return "finished"
        return "started" if self.done else "not started"

    @property
    def seconds_left(self) -> float | None:
        """At the shard's own pace so far; ``None`` before its first saved state."""
        if self.finished:
            return 0.0
        return self.seconds * (self.total - self.done) / self.done if self.done else None


def batches_per_condition(notebook: str, parameters: dict, profile: str) -> list[int]:
    """The training batches of each condition a shard of ``notebook`` runs: its experiment's
    ``training_batches`` (the notebooks the campaign follows have one)."""
    from bplambda.experiments import EXPERIMENTS

    module = EXPERIMENTS[notebook]
    if not hasattr(module, "training_batches"):
        raise ValueError(f"the campaign does not follow {notebook!r}: its experiment counts no "
                         f"training batches; it follows 03, 04 and 05")  # fmt: skip
    return module.training_batches(module.config(profile, **parameters))


def shard_progress(sweep: Path, shard: dict, notebook: str, profile: str) -> ShardProgress:
    """A shard's progress from its folder's ``state/`` files and ``raw/`` tables (finished:
    every run table written, :func:`~bplambda.experiments.options.trained`, as a merge reads
    it)."""
    from bplambda.experiments import EXPERIMENTS
    from bplambda.experiments.options import trained

    folder = sweep / shard["folder"]
    per_condition = batches_per_condition(notebook, shard["parameters"], profile)
    done, seconds = 0, 0.0
    state = folder / "state"
    for path in sorted(state.glob("*.pt")) if state.exists() else []:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        finished = path.name.endswith(".done.pt")
        done += max(per_condition) if finished else int(saved["batch"])
        seconds += float(saved["seconds"])
    finished = trained(folder, EXPERIMENTS[notebook])
    total = sum(per_condition)
    return ShardProgress(notebook, shard["name"], total if finished else done, total, seconds,
                         finished, tuple(shard["parameters"].get("rules", ())))  # fmt: skip


def hours_left(progress: list[ShardProgress], estimates_h: dict[str, float]) -> float | None:
    """A notebook's core-hours left: a started shard's at its own pace so far, a shard not
    started at its estimate before start times the ratio of measured to estimated time of the
    finished shards of its rules (of all finished shards while none of its rules has finished;
    the estimate alone while none has); ``None`` where a shard has neither pace nor estimate."""
    finished = [p for p in progress if p.finished and p.name in estimates_h]

    def scale(shards: list[ShardProgress]) -> float | None:
        if not shards:
            return None
        return sum(p.seconds for p in shards) / 3600 / sum(estimates_h[p.name] for p in shards)

    pooled = scale(finished) or 1.0
    left = 0.0
    for p in progress:
        if p.done:
            left += p.seconds_left / 3600
        elif p.name in estimates_h:
            alike = [f for f in finished if p.rules and f.rules == p.rules]
            left += estimates_h[p.name] * (scale(alike) or pooled)
        else:
            return None
    return left


def hours(seconds: float | None) -> str:
    """``"1.5 h"``, or minutes under an hour; ``"–"`` for unknown."""
    if seconds is None:
        return "–"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def campaign_progress(root: Path) -> dict[str, list[ShardProgress]]:
    """Each sweep of the plan under ``root`` (by folder, in the plan's order): its shards'
    progress (:func:`notebook_progress`), read once for a report and whatever follows it."""
    plan = json.loads((root / PLAN).read_text())["notebooks"]
    return {folder: notebook_progress(root / folder, notebook_of(folder, entry), entry)
            for folder, entry in plan.items()}  # fmt: skip


def report(root: Path, progress: dict[str, list[ShardProgress]] | None = None) -> str:
    """The markdown of ``CAMPAIGN.md`` for the campaign under ``root`` (``results/paper``),
    from ``progress`` (:func:`campaign_progress`, read here where not given)."""
    plan = json.loads((root / PLAN).read_text())
    progress = campaign_progress(root) if progress is None else progress
    lines = [
        "# The paper-budget campaign",
        "",
        "Each notebook runs from its own pinned commit (column `commit`): run it from a "
        "worktree at that commit, where its saved states resume (they are keyed by the "
        "source). Generated by `python -m bplambda.campaign`.",
        "",
        "| notebook | commit | shard | status | progress (batches) | wall time | "
        "time left (est.) | estimate before start |",
        "|---|---|---|---|---|---|---|---|",
    ]
    basis, to_continue, totals = [], [], []
    for folder, entry in plan["notebooks"].items():
        shards = progress[folder]
        lines += [_row(folder, entry, p) for p in shards]
        totals.append(_total(folder, shards, entry.get("estimates_h", {})))
        unfinished = unfinished_in_order(folder, shards, entry.get("order", []))
        to_continue += _to_continue(folder, entry, root / folder, unfinished)
        if "estimates_basis" in entry:
            basis.append(f"- {folder}: {entry['estimates_basis']}")
        if "order_basis" in entry:
            basis.append(f"- {folder}, the order to run its shards: {entry['order_basis']}")
    return "\n".join([*lines, "", "Per notebook, in core-hours (one single-threaded process "
                      "per core; a started shard's time left is at its own pace so far, which "
                      "underestimates where its cost grows as it trains, as notebook 04's "
                      "curriculum lengthens its sequences):", "", *totals, "",
                      "Estimates before start, and the order of shards, made from:", "",
                      *basis, "",
                      f"To go on, from the project folder after `make setup data`: "
                      f"`campaign_queue` runs the unfinished shards below in this order, {CORES} "
                      f"single-threaded processes at once (each takes the next shard when its "
                      f"last one ends), each from a worktree at its notebook's commit (made where "
                      f"missing), where the sweep resumes it from its saved state; Ctrl-C (or "
                      f"SIGTERM) ends each running shard after its next save; `--commit` commits "
                      f"each shard's folder with this report as the shard ends:", "", "```bash",
                      *to_continue,
                      ".venv/bin/python -m bplambda.campaign_queue results/paper --commit",
                      "```"]
                     ) + "\n"  # fmt: skip


def notebook_of(folder: str, entry: dict) -> str:
    """The notebook whose sweep the plan's ``folder`` holds: its own name, unless the entry
    names another (a side run's)."""
    return entry.get("notebook", folder)


def notebook_progress(sweep: Path, notebook: str, entry: dict) -> list[ShardProgress]:
    """Each shard's progress, in sweep order; a notebook whose sweep has not started (no
    ``sweep.json``) lists the shards of its estimates, none begun."""
    if not (sweep / "sweep.json").exists():
        return [ShardProgress(notebook, name, 0, 0, 0.0, False)
                for name in entry.get("estimates_h", {})]  # fmt: skip
    record = json.loads((sweep / "sweep.json").read_text())
    return [shard_progress(sweep, shard, notebook, record["profile"])
            for shard in record["shards"]]  # fmt: skip


def unfinished_in_order(folder: str, progress: list[ShardProgress], order: list[str]) -> list[str]:
    """The unfinished shards of the plan's sweep ``folder`` in its ``order``, those it does not
    name after (in sweep order); an ``order`` naming something not a shard of the sweep is
    refused."""
    unknown = [name for name in order if name not in {p.name for p in progress}]
    if unknown:
        raise ValueError(f"campaign.json: {folder}'s order names {unknown}, which are not its "
                         f"shards; name only shards of its sweep")  # fmt: skip
    rank = {name: i for i, name in enumerate(order)}
    unfinished = [p.name for p in progress if not p.finished]
    return sorted(unfinished, key=lambda name: rank.get(name, len(order)))


def _row(folder: str, entry: dict, p: ShardProgress) -> str:
    """One shard's table row; progress "–" before its sweep has started."""
    estimate = entry.get("estimates_h", {}).get(p.name)
    progress = f"{p.done:,} / {p.total:,} ({100 * p.done / p.total:.0f}%)" if p.total else "–"
    return (f"| {folder} | `{entry['commit']}` | {p.name} | {p.status} | {progress} | "
            f"{hours(p.seconds)} | {hours(p.seconds_left)} | "
            f"{hours(estimate and estimate * 3600)} |")  # fmt: skip


def _total(folder: str, progress: list[ShardProgress], estimates_h: dict[str, float]) -> str:
    """A sweep's line under the table: shards finished, core-hours spent and left."""
    finished = sum(p.finished for p in progress)
    spent = sum(p.seconds for p in progress) / 3600
    left = hours_left(progress, estimates_h)
    return (
        f"- {folder}: {finished} of {len(progress)} shards finished, {spent:.1f} spent, "
        f"{'unknown' if left is None else f'about {left:.1f}'} left"
    )


def worktree_path(commit: str) -> Path:
    """Where a notebook pinned at ``commit`` runs: ``../campaign-<commit>`` beside the project."""
    return project_root().parent / f"campaign-{commit}"


def _to_continue(folder: str, entry: dict, sweep: Path, unfinished: list[str]) -> list[str]:
    """What is left of the plan's sweep ``folder``: its unfinished shards in the order the
    queue runs them and the worktree they run from, or the command that merges the sweep once
    none is left."""
    if not unfinished:
        merged = os.path.relpath(sweep, project_root())
        return [f".venv/bin/python -m bplambda.sweep merge {merged}  # all shards done"]
    worktree = os.path.relpath(worktree_path(entry["commit"]), project_root())
    return [f"# {folder}, from {worktree}: {' '.join(unfinished)}"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = project_path(argv[0] if argv else "results/paper")
    if not (root / PLAN).exists():
        print(f"campaign: {root} holds no {PLAN}; pass the campaign's folder", file=sys.stderr)
        return 2
    (root / REPORT).write_text(report(root))
    print(f"written {root / REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
