"""Planning against aliasing with part-time power sensors. Pure arithmetic, no I/O.

The problem: NVML's total-energy counter on A100/H100 steps every ~100 ms by
``average power x 100 ms``, the average taken over only 25 ms of the 100 (Volta: 10 of
20 ms; Turing: the whole period). A window of back-to-back calls whose power has
structure at the sensor's time scale (10 ms busy + 40 ms idle per call) is sampled at
the same point of that structure every period: the result depends on the phase, up to
+-50%. Window ends that fall between counter steps add a quantisation error of up to
one period per end.

The remedy planned here (measured by ``bench/accuracy.py``):

1. **Know the counter's grid** (:mod:`pytest_energy.measure.grid`): every counter step
   time is known, so the steps inside any interval are counted exactly and no window
   end is quantised.
2. **Blocks, power per counted step.** Each block is a run of back-to-back calls with
   two counter reads inside it; both reads sit just after counter steps (or the first
   right before the block starts, when that is provably clean). The sensor samples
   behind the counted steps then lie entirely inside the run of calls, so
   ``joules / (steps x period)`` is the run's mean power, times the mean call period
   gives the energy of one call.
3. **Phase sets that cover the calls.** A short pause before each block moves the
   calls relative to the sensor's sampling instants. A sensor that averages the last
   ``W`` of every period sees, per counted step, the window ``[step - W, step]`` of
   the calls. The blocks come in *sets* whose windows together cover every point of
   a call equally often (:func:`set_size`, placed by
   :class:`~pytest_energy.measure.schedule.PhaseSchedule`): for calls shorter than the
   period, phases spaced evenly over one call, as many as make the windows wrap the
   call a whole number of times (25 ms windows over 50 ms calls: 2); for longer calls,
   ``period / W`` phases whose windows tile the period (A100/H100: 4), each block one
   call started so that its first read needs no lead-in call. Only whole sets are
   pooled (:func:`in_complete_sets`), every counted sample with equal weight: sampling
   every part of the calls equally cancels the aliasing; spreading the phases merely
   evenly (or a median over blocks) leaves a residue that for calls near the period
   was 7-12% at p95 in ``bench/accuracy.py``.
4. **Cover before stopping.** A long call on a part-time sensor needs ``period / W``
   calls for one set (4 s for 1 s calls on an A100); with ``cover`` (the plugin's
   default when no max_time was set) the first set is finished even past the budget,
   and the result says so; otherwise a partial set is reported as such.

Limits: the sensor window must be known for long calls (published for A100/H100;
unknown windows get lead-in calls and sets sized for a quarter period); guards of
about 1% of the period at each window end stay unsampled (~0.5% error on the bench's
pulsed calls); a long call that is no whole number of periods leaves the end of its
last, partial period unsampled (10-17% on 105-120 ms pulsed calls, 4-10% at 190-370 ms;
the aligned plan warns, see :func:`unsampled_tail_s`). A fix would run blocks of several
back-to-back calls whose counted steps fall at ``(k * period - shift) mod call``, with
shifts chosen so those positions are evenly spaced at a divisor of the window (e.g.
110 ms calls: 11 steps 10 ms apart, twice, shifted by 5 ms), generalising both modes;
not built yet. The loop that uses this module, written out without the plugin, is in
``bench/antialias_loop.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

SET_CAP = 16
"""Most blocks in one phase set (the search for a set size stops there)."""
SET_TOLERANCE = 0.005
"""Coverage imbalance accepted without searching for a larger set (0.5%)."""
CLEAN_MARGIN = 0.25
"""Margin before a clean long-call block's first counted sample, in guards."""
UNKNOWN_WINDOW_SPLIT = 4
"""With the sensor window unknown, sets are sized as if it were a quarter of the period:
exact for windows of 1/4, 1/2 and all of it (A100/H100, Volta, full-time sensors)."""


def coverage_imbalance(blocks: int, window_s: float, span_s: float) -> float:
    """How unevenly ``blocks`` sensor windows of ``window_s`` at evenly spaced phases
    cover a cyclic ``span_s`` (a call, or the counter period): the windows cover it
    ``blocks * window_s / span_s`` times over; points are covered the floor or the ceiling
    of that, and the relative difference is the imbalance (0: perfectly even)."""
    if blocks < 1 or not window_s > 0 or not span_s > 0:
        raise ValueError("need blocks >= 1, window_s > 0 and span_s > 0")
    cover = blocks * window_s / span_s
    return abs(cover - round(cover)) / cover


def set_size(window_s: float, span_s: float, *, cap: int = SET_CAP,
             tolerance: float = SET_TOLERANCE) -> int:
    """The fewest evenly spaced phases (at most ``cap``) whose sensor windows cover a
    cyclic ``span_s`` evenly (within ``tolerance``), else the most even under ``cap``.

    Examples: a 25 ms window over 50 ms calls: 2 phases (each call point sampled once);
    over 30 ms calls: 6; over 1 ms calls: 1 (every window spans 25 whole calls)."""
    best, best_size = math.inf, 1
    for size in range(1, max(1, cap) + 1):
        imbalance = coverage_imbalance(size, window_s, span_s)
        if imbalance <= tolerance:
            return size
        if imbalance < best - 1e-12:
            best, best_size = imbalance, size
    return best_size


@dataclass(frozen=True)
class AntialiasPlan:
    """How to measure one test: blocks in *phase sets*.

    A block is a run of back-to-back calls between two counter reads; the counter steps
    counted between the reads are the block's samples of the calls' power, each the
    average over the sensor's window (the last ``window_s`` of the period, when known).
    The block's *phase* places those samples inside the calls:

    * ``mode == "short"`` (calls shorter than a period): each block counts
      ``steps_per_block`` step(s); the phase is the time from the start of a call to
      the counted step, within one call. A *set* is ``set_size`` phases spread evenly
      over the call so that their sensor windows cover every point of the call equally
      often (:func:`set_size`); later sets are rotated by a van der Corput fraction of
      the spacing.
    * ``mode == "long"``: each block is one call (plus a lead-in call when needed); the
      phase is the time from the call's start to the first counted step, in ``(0,
      period_s]``; the counted steps follow every period. With the sensor window known
      and a whole fraction of the period (A100/H100: 25 of 100 ms), a set is the
      ``period / window`` phases whose windows tile the period, all *clean*: the first
      read is taken right before the call and every counted window lies inside it, so
      no lead-in call is needed. Otherwise sets of four phases with a lead-in each.

    Only complete sets cover the calls evenly: the estimate pools the blocks of the
    complete sets (:func:`in_complete_sets`). ``blocks``: the planned number
    (whole sets that fit the budget; with ``cover``, at least one whole set, even over
    budget). ``clean_before_s``: a block's first read may be taken right before its
    first call when the counted step is at least this far away. ``expected_s``: the
    planned measuring time, one period for :func:`measure_grid` included;
    ``set_s``: the time one set takes.
    """

    mode: Literal["short", "long"]
    period_s: float
    call_s: float
    window_s: float | None
    set_window_s: float
    set_size: int
    blocks: int
    clean_before_s: float
    steps_per_block: int
    calls_per_block: int
    guard_s: float
    set_s: float
    expected_s: float
    long_phases_s: tuple[float, ...] = ()
    budget_s: float = 2.0
    cover: bool = False

    @property
    def covered(self) -> bool:
        """Whether the plan runs at least one whole set (over budget if need be)."""
        return self.blocks >= self.set_size

    def replanned(self, call_s: float) -> AntialiasPlan:
        """The same plan for calls measured at ``call_s``."""
        return choose_plan(self.period_s, call_s, budget_s=self.budget_s,
                           sensor_window_s=self.window_s, guard_s=self.guard_s,
                           cover=self.cover)


def _short_lead_in_fraction(period: float, call: float, clean_before: float,
                            guard: float) -> float:
    """Expected fraction of short-mode blocks that need a lead-in: a block ends about
    ``guard + u`` (u < one call) after a step; the next starts within one call, so its
    time to the next step is uniform over one call below ``period - guard - u``."""
    points = 16
    total = 0.0
    for i in range(points):
        top = period - guard - (i + 0.5) / points * call
        total += min(1.0, max(0.0, (clean_before - (top - call)) / call))
    return total / points


def default_guard(period_s: float) -> float:
    """Margin kept after a counter step before a read counts as "after" it: 1% of the
    period, at least 0.2 ms (timing errors of the grid and of sleeps)."""
    return max(2e-4, 0.01 * period_s)


def unsampled_tail_s(plan: AntialiasPlan, call_s: float) -> float:
    """How much of each call a clean long-call set never samples: the end of the call's
    last, partial period after the last window that ends inside the call (0 when the
    call is a whole number of periods, or for other plans)."""
    phases = plan.long_phases_s
    if plan.mode != "long" or len(phases) < 2 or call_s <= plan.period_s:
        return 0.0
    rem = call_s % plan.period_s
    return rem - max((p for p in phases if p <= rem), default=0.0)


def _fit(available: float, each: float) -> int:
    """How many of ``each`` fit in ``available`` (float-safe)."""
    return max(0, math.floor(available / each + 1e-9))


def _whole_ratio(period_s: float, window_s: float) -> int | None:
    """``period / window`` when it is (within 2%) a whole number, else ``None``."""
    ratio = period_s / window_s
    whole = round(ratio)
    return whole if whole >= 1 and abs(ratio - whole) <= 0.02 * whole else None

class _Shape(NamedTuple):
    """How one block of a plan looks, before the budget decides how many run."""

    mode: Literal["short", "long"]
    steps_per_block: int
    calls_per_block: int
    clean_before_s: float
    set_size: int
    per_block_s: float
    long_phases_s: tuple[float, ...] = ()
    coverable: bool = True  # False: the coverage is unknowable, so the plan fits the budget


def _short_shape(period_s: float, call_s: float, window: float | None, guard: float,
                 sizing_window: float, available: float, max_blocks: int) -> _Shape:
    """Calls shorter than a period: blocks of one counted step each."""
    clean_before = (window if window is not None else period_s) + guard
    lead = _short_lead_in_fraction(period_s, call_s, clean_before, guard)
    per_block = period_s * (1.0 + lead)
    fit = max(1, min(max_blocks, _fit(available, per_block)))
    size = set_size(sizing_window, call_s, cap=min(SET_CAP, fit))
    return _Shape("short", 1, 0, clean_before, size, per_block)


def _long_shape(period_s: float, call_s: float, window: float | None, guard: float,
                available: float) -> _Shape:
    """Calls of a period or longer: blocks of one call (and a lead-in where needed)."""
    ratio = None if window is None else _whole_ratio(period_s, window)
    if window is not None and ratio is not None and window + guard <= period_s - guard:
        # clean sets: phases from the window (plus a small margin: a late start puts
        # a proportionally small part of a pause into one sample) to a guard before
        # the period's end (a read before the step would count a sample of the
        # pause: the dangerous side), evenly; their windows tile the period but for
        # the guard and margin
        clean_before = window + CLEAN_MARGIN * guard
        low, high = clean_before, period_s - guard
        size = ratio
        phases = tuple(high if size == 1 else low + i * (high - low) / (size - 1)
                       for i in range(size))
        return _Shape("long", 0, 1, clean_before, size, call_s + period_s / (size + 1),
                      phases)
    per_block = 2 * call_s + 0.5 * period_s
    if _fit(available, per_block) >= 2:  # every block gets a lead-in call
        return _Shape("long", 0, 1, period_s + guard, UNKNOWN_WINDOW_SPLIT, per_block,
                      coverable=False)
    # no room for lead-ins: one block started right after a step, where the first read
    # is clean for any sensor window up to the period (less a guard)
    return _Shape("long", 0, 1, 0.0, 1, 0.5 * period_s + call_s, (period_s - guard,),
                  coverable=False)


def _planned_blocks(shape: _Shape, available: float, cover: bool, max_blocks: int) -> int:
    """Whole sets that fit ``available``; with ``cover``, one whole set at least;
    otherwise what fits, at least one block."""
    size = shape.set_size
    sets = _fit(available, size * shape.per_block_s)
    if sets >= 1:
        return max(1, min(sets, max_blocks // size)) * size
    if cover:
        return size
    return max(1, min(size, _fit(available, shape.per_block_s)))


def choose_plan(period_s: float, call_s: float, *, budget_s: float = 2.0,
                sensor_window_s: float | None = None, guard_s: float | None = None,
                cover: bool = True, max_blocks: int = 64) -> AntialiasPlan:
    """The plan for a counter stepping every ``period_s`` and calls of about ``call_s``
    (the warm-up call's latency).

    ``sensor_window_s``: how much of each period the sensor averages, when known (A100
    and H100: 25 ms of 100); ``None`` assumes the worst for clean reads (the whole
    period: a lead-in per block) and sizes the sets for a quarter period. ``cover``:
    plan one whole set even when it does not fit ``budget_s`` (a partial set leaves
    part of every call unsampled); otherwise the plan fits the budget, with at least
    one block of one call.
    """
    if not period_s > 0 or not call_s > 0 or not budget_s > 0:
        raise ValueError("period_s, call_s and budget_s must be > 0")
    window = None if sensor_window_s is None else min(period_s, sensor_window_s)
    guard = guard_s if guard_s is not None else default_guard(period_s)
    sizing_window = window if window is not None else period_s / UNKNOWN_WINDOW_SPLIT
    available = budget_s - period_s  # measure_grid waits up to one period
    if call_s < period_s - 2 * guard:
        shape = _short_shape(period_s, call_s, window, guard, sizing_window, available,
                             max_blocks)
    else:
        shape = _long_shape(period_s, call_s, window, guard, available)
    cover = cover and shape.coverable
    blocks = _planned_blocks(shape, available, cover, max_blocks)
    return AntialiasPlan(mode=shape.mode, period_s=period_s, call_s=call_s, window_s=window,
                         set_window_s=sizing_window, set_size=shape.set_size, blocks=blocks,
                         clean_before_s=shape.clean_before_s,
                         steps_per_block=shape.steps_per_block,
                         calls_per_block=shape.calls_per_block, guard_s=guard,
                         set_s=shape.set_size * shape.per_block_s,
                         expected_s=period_s + blocks * shape.per_block_s,
                         long_phases_s=shape.long_phases_s, budget_s=budget_s, cover=cover)


def _whole_sets(sets: Sequence[tuple[int | None, int]]) -> set[int]:
    """The indices of the phase sets all of whose blocks are among ``sets``."""
    counts: dict[int, int] = {}
    sizes: dict[int, int] = {}
    for index, size in sets:
        if index is not None:
            counts[index] = counts.get(index, 0) + 1
            sizes[index] = max(sizes.get(index, 0), size)
    return {index for index, count in counts.items() if count >= sizes[index]}


def in_complete_sets(sets: Sequence[tuple[int | None, int]]) -> list[bool]:
    """For blocks given as ``(phase_set, set_size)``: which ones to pool. Only whole
    sets cover the calls evenly, so the blocks of an unfinished set are left out, unless
    no set is whole (then every block counts: partial coverage, to be reported). Blocks
    without a set (``None``) always count."""
    whole = _whole_sets(sets)
    if not whole:
        return [True] * len(sets)
    return [index is None or index in whole for index, _ in sets]


def complete_sets(sets: Sequence[tuple[int | None, int]]) -> int:
    """How many phase sets are whole among blocks given as ``(phase_set, set_size)``."""
    return len(_whole_sets(sets))

