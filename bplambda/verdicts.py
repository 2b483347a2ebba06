"""Verdicts that the statistics carry: intervals over seeds, and claims decided only where they
separate. Pure numpy: the analysis and plots use it without importing any training code.

A claim "A < B < C" is **reproduced** when every consecutive pair's 95% intervals separate in
the claimed direction, **NOT reproduced** when some pair separates the other way, and
**inconclusive (n seeds)** otherwise (**not testable** where a side has no value at all).
With n ≤ 3 seeds a percentile-bootstrap "interval" is the range of the seeds (min–max), and is
labelled so; a separation of 2-seed ranges decides nothing (two seeds separate by chance far
too often) and is reported as **indicative (2 seeds; …)**.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bplambda.wording import counted

RANGE_ONLY = 3
"""With this many seeds or fewer, the bootstrap interval is the min–max range of the seeds (the
chance that every resample is the lowest seed, (1/n)^n, exceeds 2.5% up to n = 3)."""
INDICATIVE_ONLY = 2
"""With this many seeds or fewer, separated ranges make a verdict only indicative."""

# two-sided 95% Student-t quantiles by degrees of freedom (for a mean ± sd reported elsewhere)
T_QUANTILE_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
                 8: 2.306, 9: 2.262, 10: 2.228}  # fmt: skip


def interval_kind(n: int) -> str:
    """What a bootstrap interval over ``n`` seeds is: ``"range"`` (the seeds' min–max) up to
    :data:`RANGE_ONLY` seeds, else ``"95% CI"``."""
    return "range" if n <= RANGE_ONLY else "95% CI"


@dataclass(frozen=True)
class Interval:
    """Mean over seeds and its 95% interval; ``n`` finite values."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n == 0:
            return "n/a"
        return (f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] "
                f"({interval_kind(self.n)}, {counted(self.n, 'seeds')})")  # fmt: skip


def mean_ci(
    values: Sequence[float], seed: int = 0, resamples: int = 2000
) -> tuple[float, float, float]:
    """Mean and a 95% percentile-bootstrap interval over seeds (as seaborn's error bands);
    non-finite values are left out."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (np.nan, np.nan, np.nan)
    if len(v) == 1:
        return (v[0], v[0], v[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(v, size=(resamples, len(v)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (v.mean(), low, high)


def interval(values: Sequence[float]) -> Interval:
    v = np.asarray(values, dtype=float)
    return Interval(*mean_ci(v), n=int(np.isfinite(v).sum()))


def reported_interval(mean: float, sd: float, n: int, resolution: float = 0.01) -> Interval:
    """The 95% t-interval of a mean reported elsewhere as ``mean ± sd`` over ``n`` seeds,
    widened by half the reporting ``resolution`` (``1.00 ± 0.00`` given to two decimals is
    anything in [0.995, 1.005], not exactly 1)."""
    half = T_QUANTILE_95[n - 1] * sd / np.sqrt(n) if n > 1 else 0.0
    half += resolution / 2
    return Interval(mean, mean - half, mean + half, n)


def separated(a: Interval, b: Interval) -> int:
    """+1 if ``a``'s interval lies wholly above ``b``'s, −1 if below, 0 if they overlap (or a
    side has no value)."""
    if a.n == 0 or b.n == 0:
        return 0
    if a.low > b.high:
        return 1
    if a.high < b.low:
        return -1
    return 0


def _undecided(fewest: int) -> str:
    """The verdict where intervals overlap, with the fewest seeds on a side; a side with no
    value at all (e.g. no seed reached the matched loss) leaves nothing to test."""
    if fewest == 0:
        return "not testable (no seed on one side)"
    return f"inconclusive ({counted(fewest, 'seeds')})"


def _decided(verdict: str, intervals: Sequence[Interval]) -> str:
    """A verdict whose intervals separate, said with what it rests on: ranges of ≤ 3 seeds are
    named, and ≤ 2 seeds make it only indicative."""
    fewest = min(i.n for i in intervals)
    if fewest <= INDICATIVE_ONLY:
        return f"indicative ({counted(fewest, 'seeds')}; ranges: {verdict})"
    return verdict + (f" (on {fewest}-seed ranges)" if fewest <= RANGE_ONLY else "")


def increasing(values: Sequence[Sequence[float]]) -> str:
    """Verdict on "mean(values[0]) < mean(values[1]) < …" (one array of per-seed values each)."""
    intervals = [interval(v) for v in values]
    signs = [separated(b, a) for a, b in zip(intervals, intervals[1:])]
    if any(s < 0 for s in signs):
        return _decided("NOT reproduced", intervals)
    if all(s > 0 for s in signs):
        return _decided("reproduced", intervals)
    return _undecided(min(i.n for i in intervals))


def all_positive(differences: Sequence[Sequence[float]]) -> str:
    """Verdict on "every mean difference is above 0" (one array of paired per-seed differences
    each, e.g. one per sequence length)."""
    intervals = [interval(d) for d in differences]
    if any(i.high < 0 for i in intervals if i.n):
        return _decided("NOT reproduced", intervals)
    if intervals and all(i.n and i.low > 0 for i in intervals):
        return _decided("reproduced", intervals)
    return _undecided(min((i.n for i in intervals), default=0))


def consistent(ours: Sequence[float], theirs: Interval) -> str:
    """Our values against a reported mean ± sd: do the 95% intervals overlap?"""
    mine = interval(ours)
    if separated(mine, theirs) == 0:
        return "consistent (intervals overlap)"
    return f"differs ({'higher' if mine.mean > theirs.mean else 'lower'}; intervals separate)"


def finding(a: Sequence[float], b: Sequence[float], name_a: str, name_b: str) -> str:
    """A difference we report (not a claim of the paper): only where the intervals separate."""
    ia, ib = interval(a), interval(b)
    sign = separated(ia, ib)
    if sign == 0:
        return _undecided(min(ia.n, ib.n))
    return _decided(f"finding: {name_a} {'>' if sign > 0 else '<'} {name_b}", [ia, ib])


def both_ways(primary: str, secondary: str, names: tuple[str, str]) -> str:
    """One verdict from two definitions of the same number (e.g. the last-epoch mean and the
    last batch): kept where they agree, else inconclusive, saying what each gave."""
    if primary == secondary:
        return primary
    return f"inconclusive ({names[0]}: {primary}; {names[1]}: {secondary})"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Interval of the mean of ``a − b`` over seeds (paired: the same seed is the same network
    in both conditions); pairs with a non-finite side are left out."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return interval(diff)


def variance_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """``var(a)/var(b)`` over seeds (NaNs left out) and its 95% F-interval
    (normal seeds assumed); NaNs where either has fewer than 2 values or ``b`` does not vary."""
    from scipy import stats

    a, b = _present(a), _present(b)
    if len(a) < 2 or len(b) < 2 or b.var(ddof=1) == 0:
        return np.nan, np.nan, np.nan
    ratio = a.var(ddof=1) / b.var(ddof=1)
    low_q, high_q = stats.f.ppf([0.975, 0.025], len(a) - 1, len(b) - 1)
    return ratio, ratio / low_q, ratio / high_q


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Spearman's and Pearson's r and their p-values between paired values, and ``n``."""
    from scipy import stats

    spearman, pearson = stats.spearmanr(x, y), stats.pearsonr(x, y)
    return {"n": len(x), "spearman_r": spearman.statistic, "spearman_p": spearman.pvalue,
            "pearson_r": pearson.statistic, "pearson_p": pearson.pvalue}  # fmt: skip


EXACT_PERMUTATIONS_UP_TO = 8
"""Up to this many units :func:`permutation_spearman_p` counts every pairing."""


def smallest_permutation_p(n: int, draws: int = 20_000) -> float:
    """The smallest p :func:`permutation_spearman_p` can give for ``n`` untied units: exact, only
    the observed pairing and its reverse reach the observed |r| (2/n!: 4 units, 0.083, so no
    test at 0.05 can reject); drawn, the observed pairing alone (1/(draws + 1))."""
    if n <= EXACT_PERMUTATIONS_UP_TO:
        return min(1.0, 2 / math.factorial(n))
    return 1 / (draws + 1)


def permutation_spearman_p(x: Sequence[float], y: Sequence[float], draws: int = 20_000) -> float:
    """Two-sided p-value of Spearman's r between paired values under random pairing: exact over
        all ``n!`` pairings for ``n <= 8``, else from ``draws`` random ones (seeded, repeatable; the
    observed pairing counted among them).
        For a handful of units (e.g. one mean per rule) where the asymptotic p is unreliable."""
    from scipy import stats

    ranks_x, ranks_y = stats.rankdata(x), stats.rankdata(y)
    observed = abs(np.corrcoef(ranks_x, ranks_y)[0, 1])
    n = len(ranks_y)
    if n <= EXACT_PERMUTATIONS_UP_TO:
        pairings = np.array(list(itertools.permutations(ranks_y)))
    else:
        generator = np.random.default_rng(0)
        pairings = np.array([generator.permutation(ranks_y) for _ in range(draws)])
    centred_x = ranks_x - ranks_x.mean()
    centred = pairings - pairings.mean(axis=1, keepdims=True)
    r = centred @ centred_x / (np.linalg.norm(centred, axis=1) * np.linalg.norm(centred_x))
    hits = int(np.sum(np.abs(r) >= observed - 1e-12))
    return hits / len(pairings) if n <= EXACT_PERMUTATIONS_UP_TO else (hits + 1) / (draws + 1)


def _present(values: Sequence[float]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]
