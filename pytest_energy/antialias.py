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
3. **Stratified phases.** A short pause before each block moves the calls' phase
   relative to the sensor's sampling instants; the phases of the blocks are spread
   evenly (stratified, visited in golden-ratio order so every prefix is spread too)
   over one call (calls shorter than the period) or one period (longer calls), and
   all counted samples are pooled with equal weight. Averaging samples whose phases
   cover the structure evenly cancels the aliasing; a median over blocks would not.

A measuring loop uses it like this (``read`` = one domain's cumulative joules; the
period timed once per device and session with ``measure_grid(read, clock)``)::

    grid = measure_grid(read, clock, period_s=period)     # once per test, device idle
    plan = choose_plan(grid.period_s, call_s=warmup_latency_s, budget_s=2.0,
                       shift=random.random())
    readings, deadline, call_s = [], t0 + 2.0, warmup_latency_s
    for i in range(plan.blocks):
        start, reference, finish = next_block(plan, grid, clock(), i, call_s)
        if i and finish > deadline:
            break
        # idle (spin/sleep) until start; then run calls until clock() >= reference
        t_ref = clock(); before = read()
        end, min_calls = block_end(plan, grid, t_ref)
        # run calls until clock() >= end and at least min_calls ran (n calls, timed)
        t_end = clock(); after = read()
        readings.append(BlockReading(after - before, t_ref, t_end, n, sum_of_latencies))
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
    just before the read that first returned it. The step happened in
    ``(time_s - resolution_s, time_s]`` (``resolution_s``: time between the last two
    polls)."""

    value: float
    time_s: float
    resolution_s: float


def wait_for_step(read: Callable[[], float], clock: Callable[[], float], *,
                  timeout_s: float, sleep: Callable[[float], None] | None = None,
                  poll_s: float = 0.0) -> Step | None:
    """Poll ``read()`` until its value changes; ``None`` after ``timeout_s`` without a
    change (a counter that never moves, e.g. an idle meter at mJ resolution).

    Spins in a tight loop unless ``sleep`` and ``poll_s`` are given. Call it when the
    measured device is idle or between calls: a step is only seen at a poll.
    """
    first = read()
    previous = clock()
    deadline = previous + timeout_s
    while True:
        if sleep is not None and poll_s > 0:
            sleep(poll_s)
        now = clock()
        value = read()
        if value != first:
            return Step(value, now, now - previous)
        if now >= deadline:
            return None
        previous = now


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
                 timeout_s: float | None = None) -> StepGrid | None:
    """Find the counter's step grid by polling (the device should be idle).

    With ``period_s`` given, one step is enough (cost: up to one period). Otherwise
    ``intervals`` + 1 steps are timed and the period is their mean interval (cost up to
    ``intervals + 1`` periods; do it once per device and session and pass the result as
    ``period_s`` afterwards). ``None`` if the counter did not step within ``timeout_s``
    (default: 3 x ``period_s``, or 1 s).
    """
    limit = timeout_s if timeout_s is not None else (3 * period_s if period_s else 1.0)
    first = wait_for_step(read, clock, timeout_s=limit)
    if first is None:
        return None
    if period_s is not None:
        return StepGrid(first.time_s, period_s)
    last = first
    for _ in range(max(1, intervals)):
        step = wait_for_step(read, clock, timeout_s=limit)
        if step is None:
            return None
        last = step
    return StepGrid(last.time_s, (last.time_s - first.time_s) / max(1, intervals))


# ----- the plan -------------------------------------------------------------------------
@dataclass(frozen=True)
class AntialiasPlan:
    """How to measure one test: ``blocks`` blocks, block ``i`` at phase ``phases_s[i]``.

    A block is a run of back-to-back calls between two counter reads; the counter steps
    counted between the reads are the block's samples of the call's power. The phase
    places those samples inside the calls:

    * ``mode == "short"`` (calls shorter than a period): each block counts
      ``steps_per_block`` steps; the phase is the time from the start of a call to the
      first counted step, modulo one call, over ``[0, call_s)``.
    * ``mode == "long"``: each block counts the steps inside ``calls_per_block`` calls;
      the phase is the time from the first counted call's start to the first step,
      over ``(0, period_s)``; the steps then fall at every point of the call evenly.

    The first read of a block is taken right before its first call when the next
    counter step is at least ``clean_before_s`` away (sensor window + guard: the
    sensor's sample behind that step then lies inside the block); otherwise calls run
    through a lead-in until ``guard_s`` after that step and the read follows.
    ``expected_s``: planned measuring time, one period for :func:`measure_grid`
    included.
    """

    mode: Literal["short", "long"]
    period_s: float
    call_s: float
    blocks: int
    phases_s: tuple[float, ...]
    phase_span_s: float
    clean_before_s: float
    steps_per_block: int
    calls_per_block: int
    guard_s: float
    expected_s: float


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


def _fit(available: float, each: float) -> int:
    """How many of ``each`` fit in ``available`` (float-safe)."""
    return max(0, math.floor(available / each + 1e-9))


def choose_plan(period_s: float, call_s: float, *, budget_s: float = 2.0,
                sensor_window_s: float | None = None, shift: float = 0.0,
                sequence: Sequence_ = "stratified", guard_s: float | None = None,
                max_blocks: int = 64) -> AntialiasPlan:
    """The plan for a counter stepping every ``period_s`` and calls of about ``call_s``
    (the warm-up call's latency).

    ``sensor_window_s``: how much of each period the sensor averages, when known (A100
    and H100: 25 ms of 100; Volta: 10 of 20); ``None`` assumes the worst (the whole
    period), which costs a lead-in per block. ``shift``: rotation of the phase set, a
    random number in [0, 1) per test. The plan fits ``budget_s`` (grid search included)
    except that it always has at least one block of one call.
    """
    if not period_s > 0 or not call_s > 0 or not budget_s > 0:
        raise ValueError("period_s, call_s and budget_s must be > 0")
    window = period_s if sensor_window_s is None else min(period_s, sensor_window_s)
    guard = guard_s if guard_s is not None else max(2e-4, 0.01 * period_s)
    clean_before = window + guard
    available = budget_s - period_s  # measure_grid waits up to one period
    mode: Literal["short", "long"]
    if call_s < period_s - 2 * guard:
        mode, span, steps, calls = "short", call_s, 1, 0
        lead = _short_lead_in_fraction(period_s, call_s, clean_before, guard)
        per_block = period_s * (1.0 + lead)
        blocks = int(max(1, min(max_blocks, _fit(available, per_block))))
        offsets = phase_offsets(blocks, span, sequence=sequence, shift=shift)
    else:
        mode, span, steps, calls = "long", period_s - 2 * guard, 0, 1
        lead = min(1.0, max(0.0, (clean_before - guard) / span))
        per_block = 0.5 * period_s + call_s * (1.0 + lead)
        blocks = int(min(max_blocks, _fit(available, per_block)))
        if blocks >= 2:
            offsets = [guard + o for o in phase_offsets(blocks, span, sequence=sequence,
                                                        shift=shift)]
        else:
            # no room for lead-ins: start right after a step, where the first read is
            # clean for any sensor window up to the period (less a guard)
            span = 0.0
            clean_before = 0.0
            per_block = 0.5 * period_s + call_s
            blocks = int(max(1, min(max_blocks, _fit(available, per_block))))
            offsets = [period_s - guard] * blocks
    return AntialiasPlan(mode=mode, period_s=period_s, call_s=call_s, blocks=blocks,
                         phases_s=tuple(offsets), phase_span_s=span,
                         clean_before_s=clean_before, steps_per_block=steps,
                         calls_per_block=calls, guard_s=guard,
                         expected_s=period_s + blocks * per_block)


def _earliest(low: float, high: float, anchor: float, modulus: float) -> float | None:
    """The earliest t in [low, high] with t == anchor (mod modulus), if any."""
    t = anchor + math.ceil((low - anchor) / modulus) * modulus
    return t if t <= high else None


class NextBlock(NamedTuple):
    """Where the next block goes: idle until ``start_s``; run calls (the lead-in) until
    the clock reaches ``reference_s`` if it is later; take the first read. ``finish_s``
    is when the block will be over at the latest (for the time budget)."""

    start_s: float
    reference_s: float
    finish_s: float


def next_block(plan: AntialiasPlan, grid: StepGrid, now_s: float, index: int,
               call_s: float | None = None) -> NextBlock:
    """Where block ``index`` goes, starting no earlier than ``now_s``.

    ``call_s``: the latest measured call duration (default ``plan.call_s``, the
    warm-up's): short-call phases are fractions of a call and long calls' lead-ins end
    after whole calls.
    """
    call = plan.call_s if call_s is None else call_s
    start, reference = _place(plan, grid, now_s, plan.phases_s[index % len(plan.phases_s)],
                              call)
    lead_calls = math.ceil((reference - start) / call - 1e-9) if reference > start else 0
    first_read = start + lead_calls * call
    end, calls = block_end(plan, grid, first_read)
    return NextBlock(start, reference, max(end + call, first_read + calls * call))


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
    # short: the first counted step falls `phase` (mod one call) after a call's start;
    # the phases were planned on the warm-up's estimate of a call, rescale them
    phase *= call / plan.call_s
    step = grid.next_step(now_s)
    while True:
        clean = _earliest(max(now_s, step - period), step - plan.clean_before_s,
                          step - phase, call)
        if clean is not None:
            return clean, clean
        # lead-in: the counted step is the one after `step`
        lead = _earliest(max(now_s, step - period), step, step + period - phase, call)
        if lead is not None:
            return lead, step + guard
        step += period


def block_end(plan: AntialiasPlan, grid: StepGrid, reference_s: float) -> tuple[float, int]:
    """``(time, calls)``: after the first read at ``reference_s``, run calls until the
    clock is at or past ``time`` and at least ``calls`` ran, then read again."""
    if plan.mode == "long":
        return reference_s, max(1, plan.calls_per_block)
    end = grid.last_step(reference_s) + plan.steps_per_block * grid.period_s + plan.guard_s
    return end, 1


@dataclass(frozen=True)
class BlockReading:
    """What one block measured: counter ``joules`` between the reads at ``start_s`` and
    ``end_s`` (clock just before each read), the ``calls`` between them and, optionally,
    ``busy_s``, the sum of those calls' latencies (default: ``end_s - start_s``)."""

    joules: float
    start_s: float
    end_s: float
    calls: int
    busy_s: float | None = None


def per_call_energy(readings: Sequence[BlockReading], grid: StepGrid) -> float | None:
    """Energy of one call: the blocks' counter joules over their counted steps x period
    (the mean power of the calls, every counted sample weighing the same) times the mean
    call duration. ``None`` when no block spans a counter step."""
    joules = 0.0
    steps = 0
    seconds = 0.0
    calls = 0
    for r in readings:
        counted = grid.steps_between(r.start_s, r.end_s)
        if counted < 1 or r.calls < 1:
            continue
        joules += r.joules
        steps += counted
        seconds += r.busy_s if r.busy_s is not None else r.end_s - r.start_s
        calls += r.calls
    if steps == 0:
        return None
    return joules / (steps * grid.period_s) * seconds / calls
