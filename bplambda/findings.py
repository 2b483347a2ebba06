"""A notebook's closing words, "What this run shows", written from its own claims table.

Typed by hand, a notebook's conclusion would hold for one profile and one run only; generated
from the claims (``claims.csv``, columns :data:`~bplambda.results.CLAIM_COLUMNS`) it says what
whichever profile ran found. Nothing is recomputed or reworded: each claim keeps its verdict
and its effect (the ``bplambda`` column) exactly as the table has them.
"""

from __future__ import annotations

import re

import pandas as pd

HEADING = "## What this run shows"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _literal(text: object) -> str:
    """``text`` as Markdown that renders as itself (``n*(T)``, ``alignment_applied`` or
    ``< BP(1)`` would otherwise turn into emphasis or HTML)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _present(value: object) -> bool:
    return not pd.isna(value) and str(value).strip() != ""


def what_this_run_shows(claims: pd.DataFrame) -> str:
    """Markdown: :data:`HEADING`, then per experiment (in the table's order) one bullet per
    claim: the claim, its verdict, the measured effect and, where the row has one, its
    ``still_improving`` note (the budget ended before those conditions settled).

    claims: one row per claim, with columns ``experiment``, ``claim``, ``verdict`` and
    ``bplambda``; ``still_improving`` is optional (a notebook that does not assess it leaves
    it out)."""
    if claims.empty:
        return f"{HEADING}\n\nThis run checked no claim."
    notes = claims.get("still_improving", pd.Series("", index=claims.index))
    parts = [HEADING]
    for experiment, rows in claims.groupby("experiment", sort=False):
        bullets = []
        for index, row in rows.iterrows():
            bullet = (f"- **{_literal(row['claim'])}**: *{_literal(row['verdict'])}*. "
                      f"Measured: {_literal(row['bplambda'])}.")  # fmt: skip
            if _present(notes[index]):
                bullet += f" **{_literal(notes[index])}**."
            bullets.append(bullet)
        parts += [f"### {_literal(experiment)}", "\n".join(bullets)]
    return "\n\n".join(parts)
