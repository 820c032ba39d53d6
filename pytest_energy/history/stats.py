"""The significance test of the compare verdict: a one-sided Mann-Whitney U test.

Rank based, so one outlier window (a background job) cannot make a difference
significant the way it can in a t-test, and it needs no normality. Its price: with
few trials it cannot reach small p values at all (5 vs 5: p >= 1/252 = 0.004; 3 vs 3:
p >= 0.05), which the comparison says instead of silently passing. Standard library
only: the plugin must not pull in SciPy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

SIGNIFICANCE_TEST = "one-sided Mann-Whitney U on per-trial values (exact up to 24 trials)"
EXACT_MAX_TRIALS = 24  # above this many trials in both runs together, a normal approximation


@dataclass(frozen=True)
class UTest:
    """Result of a two-sample Mann-Whitney U test of ``current`` against ``baseline``.

    ``u`` counts the pairs where the current value is larger (ties count 1/2);
    ``p_greater`` is the one-sided p value for "current is larger" (a regression when
    larger is worse), ``p_less`` for "current is smaller".
    """

    u: float
    p_greater: float
    p_less: float
    exact: bool


def _midranks(pooled: Sequence[float]) -> list[float]:
    """Ranks from 1, tied values sharing the mean of their ranks."""
    order = sorted(range(len(pooled)), key=lambda i: pooled[i])
    ranks = [0.0] * len(pooled)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and pooled[order[j + 1]] == pooled[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        i = j + 1
    return ranks


@functools.lru_cache(maxsize=256)
def _rank_sum_counts(scores: tuple[int, ...], m: int) -> tuple[dict[int, int], int]:
    """How many size-``m`` subsets of ``scores`` have each sum (the exact null law).

    Scores are doubled midranks, so ties are handled exactly (conditional on the tie
    pattern). Returns the counts and their total, C(len(scores), m).
    """
    ways: list[dict[int, int]] = [{} for _ in range(m + 1)]
    ways[0][0] = 1
    for score in scores:
        for k in range(m, 0, -1):
            below = ways[k - 1]
            if not below:
                continue
            row = ways[k]
            for total, count in below.items():
                row[total + score] = row.get(total + score, 0) + count
    return ways[m], math.comb(len(scores), m)


def mann_whitney(baseline: Sequence[float], current: Sequence[float]) -> UTest:
    """One-sided Mann-Whitney U p values in both directions (stdlib only).

    Exact permutation law of the rank sum (ties by midranks) up to
    ``EXACT_MAX_TRIALS`` values in all, else the normal approximation with tie and
    continuity corrections.
    """
    n, m = len(baseline), len(current)
    if n == 0 or m == 0:
        return UTest(math.nan, 1.0, 1.0, exact=True)
    pooled = list(baseline) + list(current)
    ranks = _midranks(pooled)
    rank_sum = sum(ranks[n:])
    u = rank_sum - m * (m + 1) / 2
    if n + m <= EXACT_MAX_TRIALS:
        return _exact(ranks, rank_sum, m, u)
    return _approximate(pooled, rank_sum, n, m, u)


def _exact(ranks: Sequence[float], rank_sum: float, m: int, u: float) -> UTest:
    """Both tails from the exact null law of the current run's rank sum."""
    scores = tuple(sorted(round(2 * r) for r in ranks))
    counts, total = _rank_sum_counts(scores, m)
    observed = round(2 * rank_sum)
    greater = sum(c for s, c in counts.items() if s >= observed)
    less = sum(c for s, c in counts.items() if s <= observed)
    return UTest(u, greater / total, less / total, exact=True)


def _approximate(pooled: Sequence[float], rank_sum: float, n: int, m: int, u: float) -> UTest:
    """Both tails from the normal approximation, with tie and continuity corrections."""
    big_n = n + m
    mean = m * (big_n + 1) / 2
    ties = _tie_term(pooled)
    variance = n * m / 12 * ((big_n + 1) - ties / (big_n * (big_n - 1)))
    if variance <= 0:
        return UTest(u, 1.0, 1.0, exact=False)
    sd = math.sqrt(variance)
    z_greater = (rank_sum - mean - 0.5) / sd
    z_less = (rank_sum - mean + 0.5) / sd
    return UTest(u, _upper_tail(z_greater), 1.0 - _upper_tail(z_less), exact=False)


def _tie_term(values: Sequence[float]) -> float:
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return float(sum(t**3 - t for t in counts.values()))


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def smallest_p(n: int, m: int) -> float:
    """The smallest one-sided p the exact U test can give with ``n`` vs ``m`` values."""
    if n == 0 or m == 0:
        return 1.0
    return 1.0 / math.comb(n + m, n)
