"""How report texts state a count: "1 seed", "2 seeds" (a smoke run has one of many things)."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, a regular plural ("seeds", "epochs"), in the singular where ``n`` is
    1; thousands separated as the budgets are written: ``counted(1, "seeds") == "1 seed"``,
    ``counted(1000, "iterations") == "1,000 iterations"``."""
    return f"{n:,} {noun.removesuffix('s') if n == 1 else noun}"
