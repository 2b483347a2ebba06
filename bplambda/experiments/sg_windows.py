"""Which chunk boundaries of an n-step SG model bootstrap, and what that does to the
comparison with BP(λ) on the toy task (notebooks 01 and 02).

SG(n) applies g at the last state of every chunk but the final one; the target it learns
there is n steps of BPTT and then γ^n g at the next chunk's end, or the exact future gradient
where that next chunk is the sequence's last (g(s_T) := 0). A window whose only boundary is
the last one (two chunks or fewer, n ≥ T/2) never bootstraps: it is BPTT over the whole
sequence in disguise, not the comparison the paper is about. Steps ``t`` are the tables'
(1-based: g applied at ``t`` is g(s_t) entering the chunk that starts there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bplambda.analysis import ALIGNMENT, SIGNAL
from bplambda.rules.truncated import chunk_starts
from bplambda.verdicts import interval, separated


def bootstrapped_steps(T: int, n: int) -> list[int]:
    """The steps where SG(n) applies g and its target bootstraps from another g."""
    return chunk_starts(T, n)[1:-1]


def exact_steps(T: int, n: int) -> list[int]:
    """The step where SG(n) applies g with an exact target (the last boundary), if any."""
    return chunk_starts(T, n)[1:][-1:]


def bootstraps(T: int, n: int) -> bool:
    """Whether SG(n) over T steps has at least one bootstrapped boundary."""
    return bool(bootstrapped_steps(T, n))


def window_table(windows: Sequence[int], seq_lens: Sequence[int]) -> pd.DataFrame:
    """Per (n, T): the boundaries where g is applied, how many bootstrap, which are exact, and
    ``bootstraps`` (False: the window is degenerate at that T)."""
    return pd.DataFrame([{
        "n": n, "T": T, "boundaries": len(chunk_starts(T, n)) - 1,
        "bootstrapped": len(bootstrapped_steps(T, n)),
        "bootstrapped_steps": " ".join(map(str, bootstrapped_steps(T, n))),
        "exact_steps": " ".join(map(str, exact_steps(T, n))),
        "bootstraps": bootstraps(T, n),
    } for T in seq_lens for n in windows])  # fmt: skip


def degenerate_note(windows: Sequence[int], seq_lens: Sequence[int]) -> str:
    """The summaries' label for the windows that bootstrap nothing at some T (they stay in the
    tables but are no SG comparison), e.g. ``"... SG(5) at T = 10; SG(10) at T = 10, 20."``;
    empty where every window bootstraps at every T."""
    found = [(n, [T for T in seq_lens if not bootstraps(T, n)]) for n in windows]
    listed = "; ".join(f"SG({n}) at T = {', '.join(map(str, lengths))}"
                       for n, lengths in found if lengths)  # fmt: skip
    return (
        f"No boundary bootstraps (exact targets only, n ≥ T/2; kept in the tables, left out "
        f'of every "best SG"): {listed}.'
        if listed
        else ""
    )


def at_boundaries(per_step: pd.DataFrame, bp: str, window: int, T: int) -> pd.DataFrame:
    """Per seed: g's alignment (all states' metric :data:`ALIGNMENT`) at SG(``window``)'s
    bootstrapped boundaries, for SG(``window``) and for the BP(λ) condition ``bp`` at the same
    steps, and their difference (``bp − sg``). ``per_step``: one row per condition (with its
    ``family`` and ``n``), seed and step (``t``), ``value`` its mean over the last epoch's
    logged batches, for one T and ρ. The same seed is the same fixed RNN and the same
    batches, so the states are the same."""
    steps = bootstrapped_steps(T, window)
    rows = per_step[(per_step.metric == ALIGNMENT) & per_step.t.isin(steps)]
    sg = rows[(rows.family == "sg") & (rows.n == window)].groupby("seed").value.mean()
    other = rows[rows.condition == bp].groupby("seed").value.mean()
    paired = pd.concat({"sg": sg, "bp": other}, axis=1).dropna()
    return paired.assign(difference=paired.bp - paired.sg).reset_index()


def smallest_matching_window(
    finals: pd.DataFrame, bp: str, windows: Sequence[int]
) -> tuple[float, float]:
    """n*: the smallest window whose SG(n) learning signal (:data:`SIGNAL`, per seed) matches
    ``bp``'s, as bounds from the 95% intervals (ranges with ≤ 3 seeds) over seeds: ``low``,
    the first n whose interval is not separated below ``bp``'s (n* could be this small);
    ``high``, the first n whose interval is not separated from ``bp``'s and whose mean reaches
    ``bp``'s (n* is at most this). ``inf`` where no window up to ``max(windows)`` does; NaN
    where ``bp`` has no value (every seed diverged), so there is nothing to match.
    ``finals``: one T and ρ, ``condition``/``family``/``n``/``metric``/``seed``/``value``."""
    signal = finals[finals.metric == SIGNAL]
    target = interval(signal[signal.condition == bp].value.dropna().to_numpy())
    if target.n == 0:
        return np.nan, np.nan
    low = high = np.inf
    for n in sorted(windows):
        mine = interval(signal[(signal.family == "sg") & (signal.n == n)].value.to_numpy())
        if mine.n == 0:
            continue
        if low == np.inf and separated(mine, target) >= 0:
            low = n
        if high == np.inf and separated(mine, target) >= 0 and mine.mean >= target.mean:
            high = n
    return low, high


def grows(short: tuple[float, float], long: tuple[float, float]) -> str:
    """Verdict on "n* grows with T" from n*'s bounds at the shortest and longest T."""
    if np.isnan(short[0]) or np.isnan(long[0]):
        return "not testable (no seed of BP(1) at one T)"
    if short[0] == np.inf:
        return "inconclusive (no window matches BP(1) even at the shortest T)"
    if long[0] > short[1]:
        return "reproduced (n* grows with T)"
    if long[1] <= short[0]:
        return "NOT reproduced (n* does not grow with T)"
    return "inconclusive (n*'s bounds overlap)"
