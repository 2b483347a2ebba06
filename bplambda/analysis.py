"""From run tables to the numbers a report states: reductions over steps, batches and seeds.

Plotting and the experiments' tables and claims use these without importing any training
code. A run table has the columns of :data:`bplambda.experiments.runs.TABLE_COLUMNS`: one row
per observation (``t = -1``: a sequence-level value). Final values of the alignment experiments
are the mean over the last epoch's logged batches, with the last batch beside them; a verdict
computed on both is kept only where both agree (:func:`both_finals`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bplambda.device import resolve_device
from bplambda.provenance import provenance_line
from bplambda.results import markdown_table
from bplambda.resume import NOT_IN_KEY
from bplambda.verdicts import both_ways, interval, interval_kind, mean_ci

ALIGNMENT = "alignment_synthetic"  # g(s_t) at every state
APPLIED = "alignment_applied"  # g(s_t) where the rule applies it: the fair SG-vs-BP(λ) basis
SIGNAL = "alignment_signal"  # the future part of the learning signal the RNN receives
ALIGNMENTS = (ALIGNMENT, APPLIED, SIGNAL)
FINALS = ("value", "last_batch")  # last-epoch mean, last logged batch
FINAL_NAMES = ("last-epoch mean", "last batch")


def bp_label(lmbda: float) -> str:
    """The condition name of BP(λ): ``"BP(0.5)"``."""
    return f"BP({lmbda:g})"


MEASURES = ("batch", "t", "metric", "value")


def labels(table: pd.DataFrame) -> list[str]:
    """The columns that name a model (condition, family, λ, n, T, seed, divergence, and any
    extra such as the toy sweep's ``rho``): every column but the measurement ones."""
    return [c for c in table.columns if c not in MEASURES]


def mean_over_steps(table: pd.DataFrame) -> pd.DataFrame:
    """Per-step metrics averaged over ``t < T`` (the terminal step has no future gradient);
    sequence-level metrics (``t = -1``) pass through. One row per seed, batch and metric."""
    per_step = table[(table.t >= 1) & (table.t < table["T"])]
    keys = labels(table)
    averaged = per_step.groupby([*keys, "batch", "metric"], dropna=False, as_index=False)[
        "value"
    ].mean()
    averaged["t"] = -1
    sequence_level = table[table.t == -1]
    return pd.concat([sequence_level, averaged[table.columns]], ignore_index=True)


def by_run(final: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per run (the ``keys`` that name it), one column per metric of ``value``."""
    return final.pivot_table(index=list(keys), columns="metric", values="value").reset_index()


def _condition_keys(table: pd.DataFrame) -> list[str]:
    return [c for c in ("condition", "T", "rho") if c in table.columns]


def final_batch(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each condition's last logged batch.

    A diverged model has no rows there (they stop at its divergence): it is represented by its
    own last rows, moved to that batch with ``value`` NaN, so that :func:`summarise` counts it
    as diverged instead of silently dropping it, and never averages its values.
    """
    keys = _condition_keys(table)
    last = table.groupby(keys, dropna=False)["batch"].transform("max")
    final = table[table.batch == last]
    diverged = table[table.diverged & (table.batch < last)]
    own_last = diverged.groupby([*keys, "seed"], dropna=False)["batch"].transform("max")
    placeholders = diverged[diverged.batch == own_last].assign(value=np.nan)
    placeholders["batch"] = last[placeholders.index]
    return pd.concat([final, placeholders], ignore_index=True)


def final_values(by_batch: pd.DataFrame, window: int) -> pd.DataFrame:
    """Each model's final value of every sequence-level metric, two ways: ``value``, the mean
    over its logged batches within the last ``window`` batches (the last epoch: one noisy batch
    does not decide), and ``last_batch``, the value at the last logged batch. Diverged models
    keep a row with both NaN (counted apart by :func:`summarise`)."""
    final = final_batch(by_batch)
    keys = labels(by_batch)
    cut = by_batch.groupby(_condition_keys(by_batch), dropna=False)["batch"].transform("max")
    recent = by_batch[by_batch.batch > cut - window]
    epoch = recent.groupby([*keys, "metric"], dropna=False, as_index=False)["value"].mean()
    final = final.rename(columns={"value": "last_batch"}).drop(columns=["t"])
    final = final.merge(epoch, on=[*keys, "metric"], how="left")
    final.loc[final.diverged.astype(bool), ["value", "last_batch"]] = np.nan
    return final


def summarise(final: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean and interval over seeds of ``value`` per group, diverged models counted apart.

    Columns: the ``by`` keys, ``mean``, ``low``, ``high``, ``interval`` (what [low, high] is:
    ``"95% CI"``, a percentile bootstrap, or ``"range"``, the seeds' min–max, with ≤ 3 seeds),
    ``seeds`` (finite values of models that did not diverge: what the mean is over) and
    ``diverged`` (models that diverged; their values never enter the mean).
    """
    rows = []
    for key, group in final.groupby(list(by), dropna=False, sort=True):
        healthy = group[~group.diverged.astype(bool)] if "diverged" in group else group
        mean, low, high = mean_ci(healthy.value.to_numpy())
        diverged = group.seed.nunique() - healthy.seed.nunique() if "seed" in group else 0
        seeds = int(healthy.value.notna().sum())
        rows.append({**dict(zip(by, key)), "mean": mean, "low": low, "high": high,
                     "interval": interval_kind(seeds), "seeds": seeds,
                     "diverged": diverged})  # fmt: skip
    return pd.DataFrame(rows)


def summarise_finals(finals: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``summarise`` of the last-epoch means, with the last batch's mean beside them."""
    summary = summarise(finals, by)
    last = summarise(finals.assign(value=finals.last_batch), by)
    return summary.assign(last_batch_mean=last["mean"].to_numpy())


def best_condition(means: pd.Series, lowest: bool = False) -> str:
    """The condition (``means``' index) with the highest mean, or the lowest; where every mean
    is NaN (each of their models diverged) the first, whose comparison then reads "not
    testable" rather than failing the report."""
    if means.isna().all():
        return str(means.index[0])
    return str(means.idxmin() if lowest else means.idxmax())


def rows_where(frame: pd.DataFrame, **where: object) -> pd.Series:
    """The rows whose columns equal the given values (``None`` matches NaN)."""
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column].isna() if value is None else frame[column] == value
    return mask


def per_seed(finals: pd.DataFrame, column: str = "value", **where: object) -> pd.Series:
    """One final value per seed (NaN for a diverged model: never averaged), indexed by seed."""
    rows = finals[rows_where(finals, **where)].set_index("seed").sort_index()
    values = rows[column].astype(float)
    return values.where(~rows.diverged.astype(bool)) if "diverged" in rows else values


def interval_text(
    values: pd.Series, finals: pd.DataFrame | None = None, digits: int = 2, **where: object
) -> str:
    """``mean [low, high] (kind, n seeds)`` to ``digits`` decimals and, where models diverged,
    ``k/n diverged``."""
    text = interval(values.to_numpy()).text(digits)
    if finals is not None:
        mask = rows_where(finals, **where)
        diverged = int(finals[mask].diverged.sum())
        text += f"; {diverged}/{int(mask.sum())} diverged" if diverged else ""
    return text


def both_finals(check: Callable[[str], str]) -> str:
    """``check(column)`` on the last-epoch mean and on the last batch, kept where they agree."""
    return both_ways(*(check(column) for column in FINALS), names=FINAL_NAMES)


def summary_markdown(
    title: str,
    cfg: object,
    table: pd.DataFrame,
    notes: str = "",
    runs: pd.DataFrame | None = None,
    run_keys: Sequence[str] = ("condition",),
    step: str = "batch",
) -> str:
    """The notebook's ``summary.md``: profile, settings, key table, which models of the run
    table ``runs`` diverged and at which ``step`` (:func:`divergence_note`, conditions named
    by ``run_keys``), notes and where it came from
    (:func:`~bplambda.provenance.provenance_line`).

    The settings are those that decide the result: not where it runs or is written, nor the
    shard plumbing (a merge's shard folders are machine paths); the experiment's own first,
    then those every config shares. A merge names its shards by folder (which seeds of which
    rules went in: a merge of the finished shards only may hold fewer than the settings list)."""
    hidden = (*NOT_IN_KEY, "device", "profile", "data_dir")
    own = type(cfg).__dict__.get("__annotations__", {})
    ordered = sorted(vars(cfg).items(), key=lambda item: item[0] not in own)  # stable
    settings = ", ".join(f"{k}={v}" for k, v in ordered if k not in hidden)
    device = resolve_device(cfg.device)
    shards = ", ".join(Path(folder).name for folder in getattr(cfg, "merge_from", ()))
    merged = f"Merged from the run tables of the shards {shards}." if shards else ""
    return "\n\n".join(
        part for part in [
            f"**{title}** (profile `{cfg.profile}`, device `{device}`)",
            f"Settings: {settings}.",
            merged,
            markdown_table(table),
            "" if runs is None else divergence_note(runs, run_keys, step),
            notes,
            provenance_line(cfg),
        ] if part
    )  # fmt: skip


def divergence_note(
    runs: pd.DataFrame, keys: Sequence[str] = ("condition",), step: str = "batch"
) -> str:
    """For a summary: per condition (the run table's ``keys``, ``condition`` among them: with
    a seed they name a model) that had any, how many of its seeds diverged and at which
    ``step`` each did (``diverged_at``); empty where none did. A diverged model is frozen there
    and left out of every mean, so a mean over the others says nothing of how often a rule
    fails: this says it in words, which a ``diverged`` count in a table does not (nor when)."""
    if "diverged_at" not in runs or not runs["diverged"].astype(bool).any():
        return ""
    keys = list(keys)
    models = runs.drop_duplicates([*keys, "seed"])
    parts = []
    for key, group in models.groupby(keys, sort=False, dropna=False):
        gone = group[group["diverged"].astype(bool)].sort_values("seed")
        if gone.empty:
            continue
        named = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        where = ", ".join(f"{k} {v}" if k != "task" else str(v)
                          for k, v in named.items() if k != "condition")  # fmt: skip
        at = ", ".join(f"seed {int(seed)} at {step} {int(batch):,}"
                       for seed, batch in zip(gone["seed"], gone["diverged_at"]))  # fmt: skip
        name = f"{named['condition']} ({where})" if where else str(named["condition"])
        parts.append(f"{name}: {len(gone)} of {group['seed'].nunique()} seeds ({at})")
    return ("Diverged (the loss passed the divergence threshold; the model was frozen there and "
            "is left out of every mean): " + "; ".join(parts) + ".")  # fmt: skip


def still_improving(improving: pd.DataFrame) -> str:
    """``"still improving: k/n conditions"`` from per-model flags (columns ``condition``,
    ``improving``): a condition counts where most of its seeds were still improving when the
    budget ran out, so its verdict describes a point on the way, not where the rule ends up;
    empty where none was."""
    per_condition = improving.groupby("condition")["improving"].mean() > 0.5
    count = int(per_condition.sum())
    return f"still improving: {count}/{len(per_condition)} conditions" if count else ""
