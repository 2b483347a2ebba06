"""What names a model in a run table: its condition's labels, carried as data (order and colour
come from them, never from parsing the display name)."""

from __future__ import annotations

import pandas as pd

LABELS = ("condition", "family", "lmbda", "n", "variant")
"""The labels every model of a condition carries into its rows: ``condition`` (the display
name), ``family`` (the rule's registry name), ``lmbda`` (BP(λ)'s λ, else NaN), ``n`` (TBPTT's or
SG's window, else NaN) and ``variant`` (:data:`DEFAULT_VARIANT`, or what differs)."""
DEFAULT_VARIANT = "default"
"""The ``variant`` of a rule as named; the others say what differs (BP(λ) on the official
code's LSTM: ``"faithful"``; MDGL's cell-type approximation: ``"cell_type"``)."""
CELL_TYPE = "cell_type"
"""The ``variant`` of MDGL's cell-type approximation (its one-hop weights averaged over the
network's cell types)."""
FAMILY_ORDER = ("bp_lambda", "oracle", "bptt", "sg", "tbptt", "mdgl", "eprop", "rflo")
"""BP(λ), then the exact ones, then the truncated ones, then Liu et al.'s rules from the most
to the least of the gradient they keep."""
TRUNCATED = ("tbptt", "sg")
"""The families that cut the backward pass at a window n (the rivals of BP(λ) in the claims)."""
POOLS = {"Liu et al.'s rules": ("bptt", "eprop", "rflo", "mdgl"),
         "BP(λ), SG(n), TBPTT(n)": ("bp_lambda", "sg", "tbptt")}  # fmt: skip
"""The pools of rules notebook 05 draws its correlations from (and its figures draw a row
each), by family: Liu et al.'s rules as they pooled them, the BPTT-window and synthetic-gradient
rules in a pool of their own, so that a rule equal to another
(:data:`~bplambda.experiments.generalisation_stats.IDENTITIES`) is never counted twice; the
oracle (BPTT) is in neither."""


def conditions(table: pd.DataFrame) -> pd.DataFrame:
    """The conditions of ``table`` (one row each, with their labels :data:`LABELS`) in house
    order: by family (:data:`FAMILY_ORDER`), then λ or window n, then the rule as named before
    its variants (BP(λ) on the faithful LSTM, MDGL's cell-type approximation)."""
    missing = [c for c in LABELS if c not in table.columns]
    if missing:
        raise ValueError(f"the table has no {missing} columns; keep a condition's labels "
                         f"{list(LABELS)} in the tables that show or order conditions")  # fmt: skip
    unique = table[list(LABELS)].drop_duplicates("condition")
    key = pd.DataFrame({
        "family": unique.family.map(
            lambda f: FAMILY_ORDER.index(f) if f in FAMILY_ORDER else len(FAMILY_ORDER)),
        "number": unique.lmbda.fillna(unique.n).fillna(0.0),
        "variant": unique.variant != DEFAULT_VARIANT,
        "name": unique.variant,
    })  # fmt: skip
    return unique.loc[key.sort_values(list(key.columns), kind="stable").index].reset_index(
        drop=True
    )


def condition_order(table: pd.DataFrame) -> list[str]:
    """The condition names of ``table`` in house order (:func:`conditions`)."""
    return conditions(table).condition.tolist()


def in_condition_order(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` (keyed by ``condition``) in house order, with the labels of
    its conditions from ``table`` (the run table they were computed from) where it lacks them."""
    labelled = with_labels(frame, table)
    rank = {name: i for i, name in enumerate(condition_order(labelled))}
    return labelled.sort_values("condition", key=lambda c: c.map(rank), kind="stable").reset_index(
        drop=True
    )


def with_labels(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the condition labels (:data:`LABELS`) it lacks, from ``table``."""
    missing = [c for c in LABELS if c not in frame.columns]
    if not missing:
        return frame
    labels = table[list(LABELS)].drop_duplicates("condition")
    return frame.merge(labels[["condition", *missing]], on="condition", how="left")


def named(frame: pd.DataFrame, **where: object) -> str | None:
    """The condition of ``frame`` whose labels equal ``where`` (e.g. ``family="bp_lambda",
    lmbda=1.0, variant="default"``), or ``None`` where it has none; two would be ambiguous."""
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column] == value
    found = frame.condition[mask].unique()
    if len(found) > 1:
        raise ValueError(f"labels {where} name several conditions: {list(found)}")
    return str(found[0]) if len(found) else None
