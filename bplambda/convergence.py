"""Notebook 05's λ_max solves that missed their tolerance, said once per run.

Every checkpoint solves for λ_max in each stacked model; where some model hits the solver's
``curvature_iterations`` a :class:`~bplambda.curvature.ConvergenceWarning` used to print, so
an executed notebook held dozens of near-identical warnings. The flag of each solve is kept in
the checkpoints table (metric :data:`FLAG`, 1 = converged); :func:`convergence_summary` turns
it into the one line the notebook prints.
"""

from __future__ import annotations

import math

import pandas as pd

FLAG = "lambda_max_converged"
VALUE = "lambda_max"
CHECKPOINT = ["task", "batch"]


def _solves(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """One row per solve (model × checkpoint): its key columns, ``converged`` (bool) and
    ``finite`` (whether its λ_max is a number: a diverged net stops the solver at once)."""
    key = [c for c in checkpoints.columns if c not in ("metric", "value")]
    flags = checkpoints[checkpoints.metric == FLAG].rename(columns={"value": "converged"})
    values = checkpoints[checkpoints.metric == VALUE].rename(columns={"value": VALUE})
    solves = flags.drop(columns="metric").merge(values.drop(columns="metric"), on=key, how="left")
    return solves.assign(converged=solves.converged == 1, finite=solves[VALUE].map(math.isfinite))


def _models(missed: pd.DataFrame, named: int) -> str:
    names = [f"{c} seed {s}" for c, s in zip(missed.condition, missed.seed)]
    return ", ".join(names[:named] + (["…"] if len(names) > named else []))


def convergence_summary(
    checkpoints: pd.DataFrame, max_iter: int, checkpoints_shown: int = 3, models_named: int = 4
) -> str:
    """One line: how many of the run's checkpoint solves did not converge within ``max_iter``
    HVPs, how many of those had a non-finite λ_max (a diverged net), and the first
    ``checkpoints_shown`` checkpoints with a miss as "task at batch b: k of n models (the
    first ``models_named`` of them)".

    checkpoints: notebook 05's long checkpoints table (columns ``task``, ``condition``,
    ``seed``, ``batch``, ``metric``, ``value`` and the condition's other key columns), with
    the metrics :data:`FLAG` and :data:`VALUE`."""
    solves = _solves(checkpoints)
    head = f"λ_max at the checkpoints: {len(solves)} solves of at most {max_iter} HVPs"
    missed = solves[~solves.converged]
    if missed.empty:
        return f"{head}, every one converged."
    broken = int((~missed.finite).sum())
    why = f" ({broken} of them not finite: a diverged net)" if broken else ""
    where = []
    for (task, batch), rows in solves.groupby(CHECKPOINT, sort=True):
        miss = rows[~rows.converged]
        if len(miss):
            where.append(f"{task} at batch {batch}: {len(miss)} of {len(rows)} models "
                         f"({_models(miss, models_named)})")  # fmt: skip
    more = len(where) - checkpoints_shown
    tail = f"; and {more} more checkpoint{'s' * (more > 1)}" if more > 0 else ""
    return (f"{head}, {len(missed)} did not converge{why}: " + "; ".join(where[:checkpoints_shown])
            + f"{tail}. Each solve's flag: `{FLAG}` in checkpoints.csv.")  # fmt: skip
