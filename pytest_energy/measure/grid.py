"""The step grid of a coarse energy counter, found by polling. Pure logic, no I/O.

NVML's total-energy counter changes in steps (every ~100 ms on A100/H100). Once one
step has been seen precisely and the period is known, every later step time is known
(:class:`StepGrid`): the phase-aligned plan (:mod:`pytest_energy.measure.aligned`)
then reads the counter just after steps, so no window end is quantised, and counts the
steps inside any window exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


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


@dataclass(frozen=True)
class _Poller:
    """Polls one counter for steps, keeping only those seen precisely enough."""

    read: Callable[[], float]
    clock: Callable[[], float]
    limit_s: float
    max_resolution_s: float | None
    patience_s: float | None = None  # then the most precise step seen will do

    def precise(self, step: Step) -> bool:
        return self.max_resolution_s is None or step.resolution_s <= self.max_resolution_s

    def next_step(self) -> Step | None:
        return wait_for_step(self.read, self.clock, timeout_s=self.limit_s)

    def precise_step(self) -> Step | None:
        """The first step seen precisely within ``limit_s`` (or ``patience_s``, when a
        step was seen); if every read was slow, the most precise step seen; ``None``
        when the counter did not step."""
        start = self.clock()
        deadline = start + self.limit_s
        patience = deadline if self.patience_s is None else start + self.patience_s
        best: Step | None = None
        while True:
            step = wait_for_step(self.read, self.clock,
                                 timeout_s=max(0.0, deadline - self.clock()))
            if step is None:
                return best
            if self.precise(step):
                return step
            if best is None or step.resolution_s < best.resolution_s:
                best = step
            if self.clock() >= min(deadline, patience):
                return best


def precise_step(read: Callable[[], float], clock: Callable[[], float], *,
                 timeout_s: float, max_resolution_s: float | None,
                 patience_s: float | None = None) -> Step | None:
    """The first counter step seen within ``max_resolution_s`` (a step seen across a
    slow read is passed over for the next), within ``timeout_s``; if every read was
    slow, the most precise step seen (after ``patience_s`` already); ``None`` when the
    counter did not step."""
    return _Poller(read, clock, timeout_s, max_resolution_s, patience_s).precise_step()


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
    poller = _Poller(read, clock, limit, max_resolution_s)
    if period_s is not None:
        first = poller.precise_step()
        return None if first is None else StepGrid(first.time_s, period_s)
    return _timed_grid(poller, max(1, intervals) + 1)


def _timed_grid(poller: _Poller, count: int) -> StepGrid | None:
    """The grid from ``count`` consecutive steps: the period from the first and last
    precise ones, anchored at the last step if precise (else at the next precise one)."""
    steps: list[Step] = []
    for _ in range(count):
        step = poller.next_step()
        if step is None:
            return None
        steps.append(step)
    precise = [i for i, step in enumerate(steps) if poller.precise(step)]
    i, j = (precise[0], precise[-1]) if len(precise) >= 2 else (0, len(steps) - 1)
    period = (steps[j].midpoint_s - steps[i].midpoint_s) / (j - i)
    if not period > 0:
        return None
    anchor = steps[-1] if (len(steps) - 1) in precise else poller.precise_step()
    return None if anchor is None else StepGrid(anchor.time_s, period)
