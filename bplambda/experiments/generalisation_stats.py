"""Notebook 05's statistics over its runs: the matched training-loss level and who reaches it,
the pools the correlations count each rule in once, the rules known to compute the same update,
the runs left out of the pools, and the λ_max-gap correlations."""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bplambda.analysis import by_run
from bplambda.labels import CELL_TYPE, DEFAULT_VARIANT, POOLS
from bplambda.tasks.liu import CHANCE_LOSS, LIU_TASKS
from bplambda.verdicts import correlation, permutation_spearman_p

GAPS = ("gap_test_loss", "gap_test_error", "gap_test_noisy_loss", "gap_test_noisy_error")
RUN = ["task", "condition", "family", "seed"]  # names a model, no NaN in it
CORRELATION_COLUMNS = ["task", "scope", "unit", "x", "y", "n", "spearman_r", "spearman_p",
                       "pearson_r", "pearson_p"]  # fmt: skip


LEARNS = 0.8
"""A run learns when its lowest checkpoint training loss is at most this fraction of its loss
at iteration 0 or, on a classification task, of chance (:data:`CHANCE_LOSS`), whichever is lower:
a classifier can start far above chance (seq-MNIST medium: up to 4.15 against ln 10 = 2.30),
and falling to chance is not learning."""


def matched_loss(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Per task, the common training-loss ``level`` of the runs that learn (:data:`LEARNS`):
    the largest of their lowest checkpoint losses, so every learning run reaches it; per run
    that reaches it, the checkpointed metrics at its first checkpoint at or below it
    (``batch``: that checkpoint). Runs that never learn (or diverged) do not set the level
    and stay out; :func:`matched_runs` lists them all."""
    runs = matched_runs(checkpoints)
    reached = runs[runs.reached].set_index(["task", "condition", "seed"])
    keys = pd.MultiIndex.from_frame(checkpoints[["task", "condition", "seed"]])
    at = reached.batch.reindex(keys).to_numpy()
    matched = checkpoints[checkpoints.batch.to_numpy() == at]
    return matched.merge(runs[["task", "level"]].drop_duplicates(), on="task")


def matched_runs(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Per run (task, condition, seed): its training loss at iteration 0 and its lowest,
    whether it ``learns`` (:data:`LEARNS`: against the lower of its start and chance), the
    task's matched ``level`` (the largest lowest loss among learning runs), whether it
    ``reached`` it and at which checkpoint ``batch``."""
    loss = checkpoints[(checkpoints.metric == "train_loss")
                       & ~checkpoints.diverged.astype(bool)].sort_values("batch")  # fmt: skip
    by_run = loss.groupby(["task", "condition", "seed"])
    runs = pd.concat([by_run.value.first().rename("initial_loss"),
                      by_run.value.min().rename("lowest_loss")], axis=1).reset_index()  # fmt: skip
    reference = np.fmin(runs.initial_loss, runs.task.map(CHANCE_LOSS))  # no chance: NaN
    runs["learns"] = runs.lowest_loss <= LEARNS * reference
    level = runs[runs.learns].groupby("task").lowest_loss.max().rename("level")
    runs = runs.merge(level, on="task", how="left")
    runs["reached"] = runs.learns & (runs.lowest_loss <= runs.level)
    first = loss.merge(runs[["task", "level"]].drop_duplicates(), on="task")
    first = first[first.value <= first.level].groupby(["task", "condition", "seed"]).batch.min()
    return runs.merge(first.rename("batch").reset_index(), how="left")


@dataclass(frozen=True)
class Identity:
    """Two conditions that compute the same update on ``tasks``, and why (by family and
    window ``n``: conditions are data, not labels)."""

    family: str
    equals: tuple[str, int | None]
    tasks: tuple[str, ...]
    why: str


IDENTITIES = (
    Identity("oracle", ("bptt", None), LIU_TASKS,
             "the oracle's future signal is the exact one: its update is BPTT's"),
    Identity("eprop", ("tbptt", 1), ("seq_mnist",),
             "without a leak (α = 0) e-prop's eligibility trace is the one-step derivative and "
             "its learning signal the immediate one: its update is TBPTT(1)'s"),
    Identity("mdgl", ("tbptt", 2), ("seq_mnist",),
             "without a leak (α = 0) and with the loss at the last step only, MDGL's one-hop "
             "signal is the one step back TBPTT(2) takes: its update is TBPTT(2)'s"),
)  # fmt: skip
"""Between the rules as named (``variant`` the default): MDGL-type averages its one-hop weights,
so it equals no other rule."""


def _condition_means(final: pd.DataFrame) -> pd.DataFrame:
    """Per task and condition (with its family, window ``n`` and variant): the mean over seeds
    of every final metric, a column each."""
    keys = ["task", "condition", "family", "n", "variant", "metric"]
    return final.groupby(keys, dropna=False)["value"].mean().unstack("metric").reset_index()


def _side_by_side(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Two conditions' mean final λ_max and test error, a column per metric and condition."""
    return {f"{m} ({c})": r.get(m, np.nan) for m in ("lambda_max", "test_error")
            for c, r in ((a.condition, a), (b.condition, b))}  # fmt: skip


def identities(final: pd.DataFrame) -> pd.DataFrame:
    """Per task and :data:`IDENTITIES` pair present (default variants only): both conditions'
    mean final λ_max and test error over seeds side by side, and why they are equal."""
    wide = _condition_means(final[final.variant == DEFAULT_VARIANT])
    rows = []
    for identity, (task, at) in itertools.product(IDENTITIES, wide.groupby("task")):
        family, n = identity.equals
        one = at[at.family == identity.family]
        other = at[(at.family == family) & (at.n.isna() if n is None else at.n == n)]
        if task not in identity.tasks or one.empty or other.empty:
            continue
        a, b = one.iloc[0], other.iloc[0]
        rows.append({"task": task, "condition": a.condition, "equals": b.condition,
                     **_side_by_side(a, b), "why": identity.why})  # fmt: skip
    return pd.DataFrame(rows)


NO_CELL_TYPES = "no cell types without Dale's law (≈ e-prop)"
"""Why MDGL-type is left out of the pools on a task whose network has no cell types: its two
blocks of sign-free weights average to ≈ 0, so it is ≈ e-prop (not exactly: not an identity)."""


def untyped(final: pd.DataFrame, typed: Collection[str]) -> pd.Series:
    """Per row of ``final``: whether it is MDGL's cell-type variant on a task not in ``typed``
    (the tasks whose network has cell types, :func:`~bplambda.tasks.liu.has_cell_types`)."""
    return (final.variant == CELL_TYPE) & ~final.task.isin(list(typed))


def unpooled(final: pd.DataFrame, typed: Collection[str]) -> pd.DataFrame:
    """Per task not in ``typed`` where MDGL-type ran: its mean final λ_max and test error
    beside e-prop's, and why it stays out of the pools (:data:`NO_CELL_TYPES`); it stays in
    every other table."""
    wide = _condition_means(final[untyped(final, typed) | (final.family == "eprop")])
    rows = []
    for task, at in wide.groupby("task"):
        eprop = at[(at.family == "eprop") & (at.variant == DEFAULT_VARIANT)]
        for _, typeless in at[at.variant == CELL_TYPE].iterrows():
            beside = {} if eprop.empty else _side_by_side(typeless, eprop.iloc[0])
            rows.append({"task": task, "condition": typeless.condition, **beside,
                         "why": NO_CELL_TYPES})  # fmt: skip
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["task", "condition", "why"])


def correlations(final: pd.DataFrame, typed: Collection[str], x: str = "lambda_max"
                 ) -> pd.DataFrame:  # fmt: skip
    """Spearman and Pearson correlation (r, p, n) between each model's final ``x`` and every
    gap, per task: in each pool of :data:`POOLS` over its (condition, seed) runs (``unit``
    ``"runs"``, as Liu et al. pooled them) and over its conditions' means across seeds
    (``"condition means"``: the test that respects the grouping, seeds of one rule being no
    independent evidence of the relation between rules; its Spearman p from an exact
    permutation of the conditions, :func:`~bplambda.verdicts.permutation_spearman_p`), and
    over each condition's seeds (``scope``: the condition, ``unit`` ``"seeds"``). At least 4
    units each; diverged or non-finite runs are left out. MDGL-type counts in a pool only on
    the ``typed`` tasks, whose network has cell types (:func:`unpooled`: elsewhere it is
    ≈ e-prop, which the pool would count twice); its own seeds are still reported."""
    wide = by_run(final, RUN).replace([np.inf, -np.inf], np.nan)
    outside = final[untyped(final, typed)]
    rows = []
    for (task, at_task), gap in itertools.product(wide.groupby("task"), GAPS):
        if gap not in at_task:
            continue
        runs = at_task[["condition", "family", x, gap]].dropna()
        left_out = runs.condition.isin(outside.condition[outside.task == task])
        scopes = []
        for pool, families in POOLS.items():
            pooled = runs[runs.family.isin(families) & ~left_out]
            scopes += [
                (pool, "runs", pooled),
                (pool, "condition means", pooled.groupby("condition")[[x, gap]].mean()),
            ]
        scopes += [(condition, "seeds", found) for condition, found in runs.groupby("condition")]
        for scope, unit, pair in scopes:
            if len(pair) < 4 or pair[x].nunique() < 2 or pair[gap].nunique() < 2:
                continue
            found = correlation(pair[x], pair[gap])
            if unit == "condition means":
                found["spearman_p"] = permutation_spearman_p(pair[x], pair[gap])
            rows.append({"task": task, "scope": scope, "unit": unit, "x": x, "y": gap, **found})
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
