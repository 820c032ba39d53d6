"""Planning against aliasing with part-time power sensors. Pure arithmetic, no I/O.

The problem: NVML's total-energy counter on A100/H100 steps every ~100 ms by
``average power x 100 ms``, the average taken over only 25 ms of the 100 (Volta: 10 of
20 ms; Turing: the whole period). A window of back-to-back calls whose power has
structure at the sensor's time scale (10 ms busy + 40 ms idle per call) is sampled at
the same point of that structure every period: the result depends on the phase, up to
+-50%. Window ends that fall between counter steps add a quantisation error of up to
one period per end.

The remedy planned here (measured by ``bench/accuracy.py``):

1. **Know the counter's grid.** :func:`measure_grid` spins on the counter until it
   steps (and optionally once more, to measure the period): afterwards every counter
   step time is known (:class:`StepGrid`), so the number of steps inside any interval
   is known exactly and no window end is quantised.
2. **Blocks, power per counted step.** Each block is a run of back-to-back calls with
   two counter reads inside it; both reads sit just after counter steps (or the first
   right before the block starts, when that is provably clean). The sensor samples
   behind the counted steps then lie entirely inside the run of calls, so
   ``joules / (steps x period)`` is the run's mean power, times the mean call period
   gives the energy of one call (:func:`per_call_energy`).
3. **Phase sets that cover the calls.** A short pause before each block moves the
   calls relative to the sensor's sampling instants. A sensor that averages the last
   ``W`` of every period sees, per counted step, the window ``[step - W, step]`` of
   the calls. The blocks come in *sets* whose windows together cover every point of
   a call equally often (:class:`PhaseSchedule`, :func:`set_size`): for calls shorter
   than the period, phases spaced evenly over one call, as many as make the windows
   wrap the call a whole number of times (25 ms windows over 50 ms calls: 2); for
   longer calls, ``period / W`` phases whose windows tile the period (A100/H100: 4),
   each block one call started so that its first read needs no lead-in call. Only
   whole sets are pooled (:func:`in_complete_sets`), every counted sample with equal
   weight: sampling every part of the calls equally cancels the aliasing; spreading
   the phases merely evenly (or a median over blocks) leaves a residue that for
   calls near the period was 7-12% at p95 in ``bench/accuracy.py``.
4. **Cover before stopping.** A long call on a part-time sensor needs ``period / W``
   calls for one set (4 s for 1 s calls on an A100); with ``cover`` (the plugin's
   default when no max_time was set) the first set is finished even past the budget,
   and the result says so; otherwise a partial set is reported as such.

Limits: the sensor window must be known for long calls (published for A100/H100;
unknown windows get lead-in calls and sets sized for a quarter period); guards of
about 1% of the period at each window end stay unsampled (~0.5% error on the bench's
pulsed calls); a long call that is no whole number of periods leaves the end of its
last, partial period unsampled (10-17% on 105-120 ms pulsed calls, 4-10% at 190-370 ms;
``Measurer`` warns). A fix would run blocks of several back-to-back calls whose counted
steps fall at ``(k * period - shift) mod call``, with shifts chosen so those positions
are evenly spaced at a divisor of the window (e.g. 110 ms calls: 11 steps 10 ms apart,
twice, shifted by 5 ms), generalising both modes; not built yet.

A measuring loop uses it like this (``read`` = one domain's cumulative joules; the
period timed once per device and session with ``measure_grid(read, clock)``)::

    grid = measure_grid(read, clock, period_s=period)     # once per test, device idle
    plan = choose_plan(grid.period_s, call_s=warmup_latency_s, budget_s=2.0,
                       sensor_window_s=meter_window_or_None)
    schedule = PhaseSchedule(plan, shift=random.random())
    readings, call_s = [], warmup_latency_s
    deadline = t0 + max(2.0, plan.expected_s)             # cover: one whole set at least
    while True:
        block = schedule.next_block(grid, clock(), call_s)
        whole = complete_sets([(r.phase_set, r.set_size) for r in readings])
        if readings and block.finish_s > deadline and whole:
            break
        # idle (spin/sleep) until block.start_s; run calls until clock() >= reference_s
        t_ref = clock(); before = read()
        end, min_calls = block_end(schedule.plan, grid, t_ref)
        # run calls until clock() >= end and at least min_calls ran (n calls, timed)
        t_end = clock(); after = read()
        readings.append(BlockReading(after - before, t_ref, t_end, n, sum_of_latencies,
                                     block.phase_set, block.set_size))
        call_s = sum_of_latencies / n
    joules_per_call = per_call_energy(readings, grid)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
"""Fractional golden ratio: the additive recurrence ``frac(i * GOLDEN)`` is the most
evenly spread one-dimensional sequence whatever its length."""

Sequence_ = Literal["stratified", "golden", "vdc"]


# ----- low-discrepancy offsets ---------------------------------------------------------
def van_der_corput(index: int, base: int = 2) -> float:
    """The ``index``-th element (from 0) of the van der Corput sequence in ``base``:
    the digits of ``index`` mirrored behind the radix point (0, 1/2, 1/4, 3/4, ...)."""
    if index < 0 or base < 2:
        raise ValueError("need index >= 0 and base >= 2")
    value, denom = 0.0, 1.0
    while index:
        index, digit = divmod(index, base)
        denom *= base
        value += digit / denom
    return value


def phase_offsets(count: int, span_s: float, *, sequence: Sequence_ = "stratified",
                  shift: float = 0.0) -> list[float]:
    """``count`` offsets in ``[0, span_s)``, spread evenly over the span.

    ``"stratified"``: one offset per stratum ``span_s / count``, exactly evenly spaced,
    visited in golden-ratio order so that any prefix is spread too (a loop cut short by
    its time budget keeps a good set). ``"golden"``: ``frac(i * GOLDEN)``. ``"vdc"``:
    base-2 van der Corput. ``shift`` (fraction of the span, use a random number per
    test) rotates the whole set, so that no phase is systematically favoured.
    """
    if count < 0 or not span_s >= 0:
        raise ValueError("need count >= 0 and span_s >= 0")
    if sequence == "stratified":
        order = sorted(range(count), key=lambda i: (i * GOLDEN) % 1.0)
        fractions = [i / count for i in order]  # order[j]: the j-th stratum to visit
    elif sequence == "golden":
        fractions = [(i * GOLDEN) % 1.0 for i in range(count)]
    elif sequence == "vdc":
        fractions = [van_der_corput(i) for i in range(count)]
    else:
        raise ValueError(f"unknown sequence {sequence!r}")
    return [((f + shift) % 1.0) * span_s for f in fractions]


# ----- the counter's step grid ----------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """A counter step seen by polling: the new ``value``, and ``time_s``, the clock read
    just after the read that first returned it. The step happened in
    ``(time_s - resolution_s, time_s]`` (``resolution_s``: from the clock before the
    previous read to the clock after this one; a slow read widens it)."""

    value: float
    time_s: float
    resolution_s: float

    @property
    def midpoint_s(self) -> float:
        """The middle of the interval the step lies in (unbiased, for timing periods)."""
        return self.time_s - self.resolution_s / 2


def wait_for_step(read: Callable[[], float], clock: Callable[[], float], *,
                  timeout_s: float, sleep: Callable[[float], None] | None = None,
                  poll_s: float = 0.0) -> Step | None:
    """Poll ``read()`` until its value changes; ``None`` after ``timeout_s`` without a
    change (a counter that never moves, e.g. an idle meter at mJ resolution).

    Spins in a tight loop unless ``sleep`` and ``poll_s`` are given. Call it when the
    measured device is idle or between calls: a step is only seen at a poll. The clock
    is read on both sides of every read, so a slow read (a preempted thread, a busy
    driver) shows as a wide ``resolution_s`` instead of a wrong step time.
    """
    previous = clock()
    first = read()
    deadline = previous + timeout_s
    while True:
        if sleep is not None and poll_s > 0:
            sleep(poll_s)
        before = clock()
        value = read()
        after = clock()
        if value != first:
            return Step(value, after, after - previous)
        if after >= deadline:
            return None
        previous = before


@dataclass(frozen=True)
class StepGrid:
    """Counter steps at ``ref_s + k * period_s`` (clock seconds) for every integer k."""

    ref_s: float
    period_s: float

    def __post_init__(self) -> None:
        if not self.period_s > 0:
            raise ValueError("period_s must be > 0")

    def _index(self, t: float) -> int:
        # a time within a nanosecond-ish of a step counts as at the step
        return math.floor((t - self.ref_s) / self.period_s + 1e-9)

    def last_step(self, t: float) -> float:
        """The latest step at or before ``t``."""
        return self.ref_s + self._index(t) * self.period_s

    def next_step(self, t: float) -> float:
        """The first step strictly after ``t``."""
        return self.ref_s + (self._index(t) + 1) * self.period_s

    def steps_between(self, start_s: float, end_s: float) -> int:
        """Steps in ``(start_s, end_s]``: what a counter read at ``end_s`` has counted
        beyond one read at ``start_s``."""
        return max(0, self._index(end_s) - self._index(start_s))

    def phase(self, t: float) -> float:
        """Time since the last step, in ``[0, period_s)``."""
        return (t - self.ref_s) % self.period_s


def measure_grid(read: Callable[[], float], clock: Callable[[], float], *,
                 period_s: float | None = None, intervals: int = 1,
                 timeout_s: float | None = None,
                 max_resolution_s: float | None = None) -> StepGrid | None:
    """Find the counter's step grid by polling (the device should be idle).

    With ``period_s`` given, one step is enough (cost: up to one period). Otherwise
    ``intervals`` + 1 steps are timed and the period is the mean interval between their
    midpoints (cost up to ``intervals + 1`` periods; do it once per device and session
    and pass the result as ``period_s`` afterwards). A step seen less precisely than
    ``max_resolution_s`` (a slow read) is not used: polling goes on to the next one.
    The grid is anchored at the latest time the step can have happened, so reads
    planned "just after a step" are never early. ``None`` if no usable step came within
    ``timeout_s`` (default: 3 x ``period_s``, or 1 s) of the last one.
    """
    limit = timeout_s if timeout_s is not None else (3 * period_s if period_s else 1.0)

    def precise_step() -> Step | None:
        deadline = clock() + limit
        best: Step | None = None
        while True:
            step = wait_for_step(read, clock, timeout_s=max(0.0, deadline - clock()))
            if step is None:
                return best
            if max_resolution_s is None or step.resolution_s <= max_resolution_s:
                return step
            if best is None or step.resolution_s < best.resolution_s:
                best = step
            if clock() >= deadline:
                return best  # every read was slow: the most precise step seen

    if period_s is not None:
        first = precise_step()
        return None if first is None else StepGrid(first.time_s, period_s)
    # consecutive steps; the period from the first and last precise ones
    steps: list[Step] = []
    for _ in range(max(1, intervals) + 1):
        step = wait_for_step(read, clock, timeout_s=limit)
        if step is None:
            return None
        steps.append(step)
    precise = [i for i, step in enumerate(steps)
               if max_resolution_s is None or step.resolution_s <= max_resolution_s]
    i, j = (precise[0], precise[-1]) if len(precise) >= 2 else (0, len(steps) - 1)
    period = (steps[j].midpoint_s - steps[i].midpoint_s) / (j - i)
    if not period > 0:
        return None
    anchor = steps[-1] if (len(steps) - 1) in precise else precise_step()
    return None if anchor is None else StepGrid(anchor.time_s, period)


# ----- the plan -------------------------------------------------------------------------
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
    complete sets (:func:`complete_set_readings`). ``blocks``: the planned number
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
    mode: Literal["short", "long"]
    long_phases: tuple[float, ...] = ()
    if call_s < period_s - 2 * guard:
        mode, steps, calls = "short", 1, 0
        clean_before = (window if window is not None else period_s) + guard
        lead = _short_lead_in_fraction(period_s, call_s, clean_before, guard)
        per_block = period_s * (1.0 + lead)
        fit = max(1, min(max_blocks, _fit(available, per_block)))
        size = set_size(sizing_window, call_s, cap=min(SET_CAP, fit))
    else:
        mode, steps, calls = "long", 0, 1
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
            long_phases = tuple(high if size == 1 else low + i * (high - low) / (size - 1)
                                for i in range(size))
            per_block = call_s + period_s / (size + 1)
        else:
            clean_before = period_s + guard  # every block gets a lead-in call
            size = UNKNOWN_WINDOW_SPLIT
            per_block = 2 * call_s + 0.5 * period_s
            cover = False  # coverage unknowable: fit the budget
            if _fit(available, per_block) < 2:
                # no room for lead-ins: one block started right after a step, where the
                # first read is clean for any sensor window up to the period (less a
                # guard)
                clean_before, size = 0.0, 1
                long_phases = (period_s - guard,)
                per_block = 0.5 * period_s + call_s
    set_s = size * per_block
    sets = _fit(available, set_s)
    if sets >= 1:
        blocks = max(1, min(sets, max_blocks // size)) * size
    elif cover:
        blocks = size
    else:
        blocks = max(1, min(size, _fit(available, per_block)))
    return AntialiasPlan(mode=mode, period_s=period_s, call_s=call_s, window_s=window,
                         set_window_s=sizing_window, set_size=size, blocks=blocks,
                         clean_before_s=clean_before, steps_per_block=steps,
                         calls_per_block=calls, guard_s=guard, set_s=set_s,
                         expected_s=period_s + blocks * per_block, long_phases_s=long_phases,
                         budget_s=budget_s, cover=cover)


def _earliest(low: float, high: float, anchor: float, modulus: float) -> float | None:
    """The earliest t in [low, high] with t == anchor (mod modulus), if any."""
    t = anchor + math.ceil((low - anchor) / modulus) * modulus
    t = max(t, low)  # rounding may land a hair before low
    return t if t <= high else None


class NextBlock(NamedTuple):
    """Where the next block goes: idle until ``start_s``; run calls (the lead-in) until
    the clock reaches ``reference_s`` if it is later; take the first read. ``finish_s``
    is when the block will be over at the latest (for the time budget); ``phase_s`` the
    block's phase, ``phase_set`` the index of its set and ``set_size`` that set's size."""

    start_s: float
    reference_s: float
    finish_s: float
    phase_s: float = 0.0
    phase_set: int = 0
    set_size: int = 1


def place_block(plan: AntialiasPlan, grid: StepGrid, now_s: float, phase_s: float,
                call_s: float | None = None) -> NextBlock:
    """Where a block at ``phase_s`` goes, starting no earlier than ``now_s``.

    ``call_s``: the latest measured call duration (default ``plan.call_s``, the
    warm-up's); short-call phases are times within a call of that duration.
    """
    call = plan.call_s if call_s is None else call_s
    start, reference = _place(plan, grid, now_s, phase_s, call)
    lead_calls = math.ceil((reference - start) / call - 1e-9) if reference > start else 0
    first_read = start + lead_calls * call
    end, calls = block_end(plan, grid, first_read)
    return NextBlock(start, reference, max(end + call, first_read + calls * call), phase_s)


class PhaseSchedule:
    """Hands out the blocks of a plan, one phase set after another.

    Within a set, the next block is the remaining phase that can start first (the
    shortest pause). Short-call sets are sized and spaced on the latest measured call
    duration when they begin, so a warm-up call that misjudged the duration spoils at
    most the first set. ``shift`` (a random number in [0, 1) per test) rotates the
    phases, so that no point of a call is systematically favoured.
    """

    def __init__(self, plan: AntialiasPlan, *, shift: float = 0.0) -> None:
        self.plan = plan
        self.shift = shift % 1.0
        self.set_index = -1
        self._remaining: list[float] = []  # fractions (short: of a call; long: seconds)
        self._size = plan.set_size
        self._handed = 0

    def _new_set(self, call_s: float) -> None:
        self.set_index += 1
        if self.set_index > 0 and abs(call_s / self.plan.call_s - 1.0) > 1e-3:
            self.plan = self.plan.replanned(call_s)  # short or long, on measured calls
        plan = self.plan
        if plan.mode == "long":
            if plan.long_phases_s:  # clean tiling: fixed phases, nothing to rotate
                self._size = len(plan.long_phases_s)
                self._remaining = list(plan.long_phases_s)
                return
            span = plan.period_s - 2 * plan.guard_s
            self._size = plan.set_size
            rotation = van_der_corput(self.set_index) + self.shift
            self._remaining = [plan.guard_s + ((i + rotation) / self._size % 1.0) * span
                               for i in range(self._size)]
            return
        fit = max(1, plan.blocks)
        self._size = set_size(plan.set_window_s, call_s, cap=min(SET_CAP, fit))
        rotation = van_der_corput(self.set_index) + self.shift
        self._remaining = [(i + rotation) / self._size % 1.0 for i in range(self._size)]

    def next_block(self, grid: StepGrid, now_s: float, call_s: float) -> NextBlock:
        """The next block (its set and phase consumed), starting no earlier than
        ``now_s``, for calls lasting ``call_s``.

        The first block also calibrates: when the calls it timed call for another mode
        or set size than the warm-up's estimate did, the first set is abandoned (its
        block is left out of the estimate once a later set is whole)."""
        self._handed += 1
        short = call_s < self.plan.period_s - 2 * self.plan.guard_s
        if self._remaining and short != (self.plan.mode == "short"):
            # the calls changed mode (a stall, a recompile): this set cannot be finished
            self.plan, self._remaining = self.plan.replanned(call_s), []
        if self._handed == 2 and self._remaining and call_s != self.plan.call_s:
            fresh = self.plan.replanned(call_s)
            if (fresh.mode, fresh.set_size) != (self.plan.mode, self._size) or (
                    fresh.mode == "short" and set_size(fresh.set_window_s, call_s,
                                                       cap=min(SET_CAP, max(1, fresh.blocks)))
                    != self._size):
                self.plan, self._remaining = fresh, []
        if not self._remaining:
            self._new_set(call_s)
        scale = call_s if self.plan.mode == "short" else 1.0
        options = [place_block(self.plan, grid, now_s, phase * scale, call_s)
                   for phase in self._remaining]
        best = min(range(len(options)), key=lambda i: (options[i].start_s, i))
        del self._remaining[best]
        return options[best]._replace(phase_set=self.set_index, set_size=self._size)


def _place(plan: AntialiasPlan, grid: StepGrid, now_s: float, phase: float,
           call: float) -> tuple[float, float]:
    period, guard = grid.period_s, plan.guard_s
    if plan.mode == "long":
        if phase >= plan.clean_before_s:  # clean: the first counted step `phase` after start
            start = now_s + (-phase - grid.phase(now_s)) % period
            return start, start
        # lead-in of m calls past the first step: the step after it comes `phase` later
        for m in range(1, 2 + math.ceil(period / call)):
            start = now_s + (-phase - m * call - grid.phase(now_s)) % period
            reference = grid.next_step(start) + guard
            if start + m * call >= reference and start + (m - 1) * call < reference:
                return start, reference
        start = now_s + (-phase - call - grid.phase(now_s)) % period
        return start, grid.next_step(start) + guard
    # short: the counted step falls `phase` (mod one call) after a call's start
    step = grid.next_step(now_s)
    # a call shorter than the period finds a start within a few periods; one that has
    # grown longer (the schedule replans at the next block) may find none: bounded
    for _ in range(3 + math.ceil(call / period)):
        clean = _earliest(max(now_s, step - period), step - plan.clean_before_s,
                          step - phase, call)
        if clean is not None:
            return clean, clean
        # lead-in: the counted step is the one after `step`
        lead = _earliest(max(now_s, step - period), step, step + period - phase, call)
        if lead is not None:
            return lead, step + guard
        step += period
    # no start on this phase: calls right away, read just after the next step
    return now_s, grid.next_step(now_s) + guard


def block_end(plan: AntialiasPlan, grid: StepGrid, reference_s: float) -> tuple[float, int]:
    """``(time, calls)``: after the first read at ``reference_s``, run calls until the
    clock is at or past ``time`` and at least ``calls`` ran, then read again."""
    if plan.mode == "long":
        # one call, or more when a call ends before the step its phase planned (calls a
        # little under the period): a block always counts a step
        return grid.next_step(reference_s) + plan.guard_s, max(1, plan.calls_per_block)
    end = grid.last_step(reference_s) + plan.steps_per_block * grid.period_s + plan.guard_s
    return end, 1


@dataclass(frozen=True)
class BlockReading:
    """What one block measured: counter ``joules`` between the reads at ``start_s`` and
    ``end_s`` (clock just before each read), the ``calls`` between them and, optionally,
    ``busy_s``, the sum of those calls' latencies (default: ``end_s - start_s``), and
    the block's ``phase_set`` and that set's ``set_size`` (:class:`PhaseSchedule`)."""

    joules: float
    start_s: float
    end_s: float
    calls: int
    busy_s: float | None = None
    phase_set: int | None = None
    set_size: int = 1


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


def per_call_energy(readings: Sequence[BlockReading], grid: StepGrid) -> float | None:
    """Energy of one call: the blocks' counter joules over their counted steps x period
    (the mean power of the calls, every counted sample weighing the same) times the mean
    call duration, over the blocks of whole phase sets (:func:`in_complete_sets`).
    ``None`` when no block spans a counter step."""
    keep = in_complete_sets([(r.phase_set, r.set_size) for r in readings])
    joules = 0.0
    steps = 0
    seconds = 0.0
    calls = 0
    for r, kept in zip(readings, keep, strict=True):
        counted = grid.steps_between(r.start_s, r.end_s)
        if not kept or counted < 1 or r.calls < 1:
            continue
        joules += r.joules
        steps += counted
        seconds += r.busy_s if r.busy_s is not None else r.end_s - r.start_s
        calls += r.calls
    if steps == 0:
        return None
    return joules / (steps * grid.period_s) * seconds / calls
