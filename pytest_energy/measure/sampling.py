"""Where the stepped-counter plan puts its samples, and how sure its estimate is. Pure.

A part-time sensor (NVML on A100/H100: the mean power of the last 25 ms of every
100 ms) samples the calls only where its windows fall. The plan runs *blocks* of
back-to-back calls and counts whole counter steps inside them; each counted step is a
sample of the calls' power at one position of the workload. The estimate is unbiased
when those positions are spread evenly over the workload's cycle; this module decides
how:

* **The unit.** The cycle is a *unit* of ``group`` consecutive calls: one call for
  regular calls, two for calls that alternate short and long, ten for nine short calls
  and a long one (:func:`detect_group`, from the calls' own durations). Blocks start on
  unit boundaries.
* **Short units** (shorter than the counter period): one counted step per block, its
  position within a unit set by the pause before the block; a *phase set* spreads the
  positions of its blocks evenly over the unit (:func:`set_size`).
* **Long units**: each block counts ``steps`` steps over ``units`` whole units with
  ``steps * period`` as close to ``units * unit`` as the time allows (:func:`lattice`):
  step positions then drift through every part of the unit, the end of the call
  included, which one step per call never reaches.
* **Spread sets.** Every set is rotated by a random fraction, uniform on its own, so
  each set is an unbiased estimate and the spread between sets an error bar
  (:func:`accuracy_from_sets`); successive sets draw their rotations from different
  strata (:func:`set_rotations`), so a few sets cannot all land on one flat stretch of
  the workload and agree by chance. With fewer than two whole sets the spread of
  neighbouring blocks stands in (:func:`accuracy_from_blocks`). A set's samples weigh
  their share of the unit where jittered calls moved them (:func:`cyclic_weights`).
  Measuring goes on
  until the bar is well inside the limit (:attr:`Accuracy.settled`), not merely
  inside it.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_energy.history.tdist import t_critical

SET_CAP = 16
"""Most blocks in one phase set."""
SET_TOLERANCE = 0.005
"""Coverage imbalance accepted without searching for a larger set (0.5%)."""
MAX_GROUP = 12
"""Longest repeating pattern of calls looked for."""
PATTERN_MATCH = 0.2
"""A group size is the workload's pattern when calls that far apart differ this much
less than calls do in general."""
IRREGULAR_CV = 0.08
"""Call durations varying more than this (CV) with no repeating pattern: irregular."""
LATTICE_RESIDUAL = 0.01
"""Lattice spans are chosen to miss at most this share of the span."""
EXACT_LATTICE = 0.002
"""A span within this share of a whole number of periods counts as an exact lattice."""
LATTICE_COVERAGE_TOLERANCE = 0.2
"""Long-unit sets: the random first sample makes any set unbiased; a set only needs to
cover the spacing roughly evenly to keep the spread small."""
MAX_LATTICE_UNITS = 40
TWO_SET_FACTOR = 6.3
ACCURACY_LIMIT = 0.05
"""A result whose 95% uncertainty is wider than this (relative) is flagged."""


def detect_group(durations: Sequence[float]) -> int:
    """The number of consecutive calls that repeat as a unit (1 for regular calls): the
    smallest ``g`` such that each call lasts about as long as the call ``g`` before it,
    while calls in general differ (a pattern, not random sizes). Needs two cycles; 1
    when none is found."""
    n = len(durations)
    if n < 4 or _cv(durations) <= 0.05:
        return 1
    typical = _mean_difference(durations)
    for group in range(2, min(MAX_GROUP, n // 2) + 1):
        lagged = statistics.fmean(abs(durations[i] - durations[i + group])
                                  for i in range(n - group))
        if lagged <= PATTERN_MATCH * typical:
            return group
    return 1


def _mean_difference(values: Sequence[float]) -> float:
    """Mean absolute difference over all pairs (how much calls differ in general)."""
    n = len(values)
    ordered = sorted(values)
    # sum over pairs of |x_i - x_j| from the sorted order, in O(n log n)
    total = sum((2 * i - n + 1) * x for i, x in enumerate(ordered))
    return 2 * total / (n * (n - 1))


def _cv(values: Sequence[float]) -> float:
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if len(values) > 1 and mean > 0 else 0.0


def irregular(durations: Sequence[float], group: int) -> bool:
    """Whether units vary in length with no pattern (GC pauses, random sizes): the plan
    then stays unbiased by its random phases, and the error bar comes from the blocks."""
    if len(durations) < 2 * group + 1:
        return False
    sums = [sum(durations[i:i + group]) for i in range(0, len(durations) - group + 1, group)]
    return _cv(sums) > IRREGULAR_CV


def coverage_imbalance(blocks: int, window_s: float, span_s: float) -> float:
    """How unevenly ``blocks`` sensor windows of ``window_s`` at evenly spaced phases
    cover a cyclic ``span_s``: 0 when every point is covered equally often."""
    if blocks < 1 or not window_s > 0 or not span_s > 0:
        raise ValueError("need blocks >= 1, window_s > 0 and span_s > 0")
    cover = blocks * window_s / span_s
    return abs(cover - round(cover)) / cover


def set_size(window_s: float, span_s: float, *, cap: int = SET_CAP,
             tolerance: float = SET_TOLERANCE) -> int:
    """The fewest evenly spaced phases (at most ``cap``) whose sensor windows cover a
    cyclic ``span_s`` evenly (within ``tolerance``), else the most even under ``cap``."""
    best, best_size = math.inf, 1
    for size in range(1, max(1, cap) + 1):
        imbalance = coverage_imbalance(size, window_s, span_s)
        if imbalance <= tolerance:
            return size
        if imbalance < best - 1e-12:
            best, best_size = imbalance, size
    return best_size


@dataclass(frozen=True)
class Lattice:
    """A long-unit block: ``units`` units back to back counting ``steps`` steps, whose
    sample positions within a unit lie ``spacing_s`` apart; ``residual``: the share of
    the span sampled once more (or less) than the rest (0 when ``steps * period ==
    units * unit``); ``set_size``: blocks per phase set, their first samples spread
    over one spacing so that the sensor windows cover it evenly."""

    units: int
    steps: int
    residual: float
    spacing_s: float
    set_size: int

    def seconds(self, unit_s: float, period_s: float) -> float:
        """Two whole sets of blocks, each with a pause and a lead-in."""
        return 2 * self.set_size * (self.units * unit_s + unit_s + 1.5 * period_s)


def _lattice(period_s: float, unit_s: float, units: int, window_s: float) -> Lattice:
    """``units`` units and the whole steps nearest their span. A whole number of
    periods puts the samples on an even lattice of the unit: the blocks' first samples
    then need to cover only one lattice spacing. Otherwise they cover a whole period
    (every sample then falls uniformly over a period, and the span's remainder is
    sampled once more or less than the rest: ``residual``): their windows then tile
    the period, whatever structure the calls have below it."""
    span = units * unit_s
    steps = max(1, round(span / period_s))
    residual = abs(steps * period_s - span) / span
    if residual <= EXACT_LATTICE:
        spacing = unit_s / (steps // math.gcd(steps, units))
        return Lattice(units, steps, residual, spacing,
                       set_size(window_s, spacing, cap=4, tolerance=LATTICE_COVERAGE_TOLERANCE))
    return Lattice(units, steps, residual, period_s,
                   set_size(window_s, period_s, cap=4, tolerance=LATTICE_COVERAGE_TOLERANCE))


def lattice(period_s: float, unit_s: float, window_s: float, room_s: float) -> Lattice:
    """The block shape for units of a period or longer: among the spans whose two phase
    sets fit ``room_s``, the quickest within :data:`LATTICE_RESIDUAL` of a whole number
    of periods, else the closest fit (one unit when none fits)."""
    shapes = [_lattice(period_s, unit_s, units, window_s)
              for units in range(1, MAX_LATTICE_UNITS + 1)]
    fitting = [shapes[0], *(s for s in shapes[1:] if s.seconds(unit_s, period_s) <= room_s)]
    exact = [shape for shape in fitting if shape.residual <= LATTICE_RESIDUAL]
    if exact:
        return min(exact, key=lambda shape: shape.seconds(unit_s, period_s))
    # inexact: a longer span only if it is clearly closer (more, shorter blocks at
    # independent phases average better than one long block of clustered samples)
    least = min(shape.residual for shape in fitting)
    return next(shape for shape in fitting if shape.residual <= 1.5 * least)


ROTATION_STRATA = 4
"""Successive phase sets take their rotations from this many strata of the spacing, one
each, in random order (then again): the sets' phases cannot all bunch up."""


def set_rotations(rng: random.Random) -> list[float]:
    """Rotations (fractions of a set's spacing) for the next :data:`ROTATION_STRATA`
    phase sets: one uniform point in each stratum, strata in random order. Each set's
    rotation is uniform on its own, so every set stays an unbiased estimate, and the
    sets are spread: independent rotations once put four single-block sets within 12%
    of each other, all on one flat stretch of a pulsed workload, and their identical
    values claimed a precision they did not have. Within a stratum the point is random,
    so the sets' spread still measures their error (conservatively)."""
    strata = list(range(ROTATION_STRATA))
    rng.shuffle(strata)
    return [(stratum + rng.random()) / ROTATION_STRATA for stratum in strata]


def set_phases(size: int, rotation: float) -> list[float]:
    """One phase set: ``size`` fractions evenly spaced over [0, 1), shifted together by
    ``rotation`` of their spacing, so each block's phase is uniform when the rotation is
    (an unbiased sample) and the set's are stratified (a precise one)."""
    return [(i + rotation) / size for i in range(size)]


def cyclic_weights(positions: Sequence[float]) -> list[float]:
    """Each position's share of a cyclic [0, 1): half the gap to each neighbour (equal
    shares for evenly spaced positions). Weighing samples by it integrates a profile
    sampled at uneven positions; equal weights would count a stretch twice where
    jittered calls bunched a set's samples, and miss one where they spread."""
    order = sorted(range(len(positions)), key=lambda i: positions[i] % 1.0)
    ordered = [positions[i] % 1.0 for i in order]
    weights = [0.0] * len(positions)
    for rank, index in enumerate(order):
        before = ordered[rank] - ordered[rank - 1]
        after = ordered[(rank + 1) % len(ordered)] - ordered[rank]
        weights[index] = (before % 1.0 + after % 1.0) / 2
    return weights if len(positions) > 1 else [1.0]


# ----- the error bar ---------------------------------------------------------------------
@dataclass(frozen=True)
class Accuracy:
    """How sure an energy estimate is: ``relative``, the half-width of its ~95%
    interval as a share of the estimate (``None``: not checked), and ``basis``, what the
    interval rests on."""

    relative: float | None
    basis: str

    @property
    def checked(self) -> bool:
        return self.relative is not None

    @property
    def doubtful(self) -> bool:
        """Not checked, or wider than :data:`ACCURACY_LIMIT`."""
        return self.relative is None or self.relative > ACCURACY_LIMIT

    @property
    def settled(self) -> bool:
        """Narrow enough to stop measuring: within half of :data:`ACCURACY_LIMIT`.
        Stopping the moment a bar first dips under the limit itself would pick the
        bars that are narrow by chance (each new set is another draw), and the few
        results then off by more than the limit would go unflagged."""
        return self.relative is not None and self.relative <= ACCURACY_LIMIT / 2

    def text(self) -> str:
        if self.relative is None:
            return f"accuracy not checked: {self.basis}"
        return f"accuracy +-{self.relative:.1%} (95%, {self.basis})"

    def to_dict(self) -> dict[str, object]:
        return {"checked": self.checked, "relative": self.relative, "basis": self.basis}


def _t95(df: int) -> float:
    return t_critical(0.025, df)


def accuracy_from_sets(values: Sequence[float], extra: float = 0.0) -> float | None:
    """The ~95% half-width (relative) of the mean of independent estimates ``values``
    (whole phase sets), combined with a systematic share ``extra``; ``None`` for fewer
    than two. Two sets give one degree of freedom, whose 95% t-factor (12.7) would flag
    nearly every result: they get :data:`TWO_SET_FACTOR` instead (the 90% factor)."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if not mean > 0:
        return None
    factor = TWO_SET_FACTOR if len(values) == 2 else _t95(len(values) - 1)
    spread = factor * statistics.stdev(values) / math.sqrt(len(values))
    return math.hypot(spread / mean, extra)


def accuracy_from_blocks(ordered: Sequence[float], extra: float = 0.0) -> float | None:
    """The 95% half-width (relative) of the mean of block samples given in phase order,
    by collapsed strata: neighbouring blocks are paired, and each pair's difference
    estimates the variance of its stratum (a smooth power profile gives small
    differences, random structure large ones); ``None`` for fewer than two blocks."""
    pairs = [(ordered[i], ordered[i + 1]) for i in range(0, len(ordered) - 1, 2)]
    if not pairs:
        return None
    mean = statistics.fmean(ordered)
    if not mean > 0:
        return None
    variance = sum((a - b) ** 2 for a, b in pairs) / 4 / len(pairs) ** 2
    spread = _t95(len(pairs)) * math.sqrt(variance)
    return math.hypot(spread / mean, extra)
