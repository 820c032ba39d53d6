"""Where each block of the phase-aligned plan goes: pauses, lead-ins and phase sets.

The plan (:mod:`pytest_energy.measure.antialias`) says how many blocks and of which
shape; this module places them on the counter's step grid
(:mod:`pytest_energy.measure.grid`) one after another, so that each phase set's sensor
windows cover every part of the calls. Pure arithmetic, no I/O: the measuring loop
(:mod:`pytest_energy.measure.aligned`) sleeps, calls and reads.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from pytest_energy.measure.antialias import SET_CAP, AntialiasPlan, set_size
from pytest_energy.measure.grid import StepGrid


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
        self._size = _short_set_size(plan, call_s)
        rotation = van_der_corput(self.set_index) + self.shift
        self._remaining = [(i + rotation) / self._size % 1.0 for i in range(self._size)]

    def _replan(self, call_s: float) -> AntialiasPlan | None:
        """The plan to abandon the current set for, if the measured ``call_s`` calls
        for one: the calls changed mode (a stall, a recompile), or the first block's
        timing asks for another mode or set size than the warm-up's estimate did."""
        if not self._remaining:
            return None
        short = call_s < self.plan.period_s - 2 * self.plan.guard_s
        if short != (self.plan.mode == "short"):
            return self.plan.replanned(call_s)
        if self._handed != 2 or call_s == self.plan.call_s:
            return None
        fresh = self.plan.replanned(call_s)
        if (fresh.mode, fresh.set_size) != (self.plan.mode, self._size) or (
                fresh.mode == "short" and _short_set_size(fresh, call_s) != self._size):
            return fresh
        return None

    def next_block(self, grid: StepGrid, now_s: float, call_s: float) -> NextBlock:
        """The next block (its set and phase consumed), starting no earlier than
        ``now_s``, for calls lasting ``call_s``.

        The first block also calibrates: when the calls it timed call for another mode
        or set size than the warm-up's estimate did, the first set is abandoned (its
        block is left out of the estimate once a later set is whole)."""
        self._handed += 1
        fresh = self._replan(call_s)
        if fresh is not None:
            self.plan, self._remaining = fresh, []
        if not self._remaining:
            self._new_set(call_s)
        scale = call_s if self.plan.mode == "short" else 1.0
        options = [place_block(self.plan, grid, now_s, phase * scale, call_s)
                   for phase in self._remaining]
        best = min(range(len(options)), key=lambda i: (options[i].start_s, i))
        del self._remaining[best]
        return options[best]._replace(phase_set=self.set_index, set_size=self._size)


def _short_set_size(plan: AntialiasPlan, call_s: float) -> int:
    """The phases a short-call set needs for calls of ``call_s``, capped by the blocks
    the plan can run."""
    return set_size(plan.set_window_s, call_s, cap=min(SET_CAP, max(1, plan.blocks)))


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


