"""The pieces of a phase-aligned block: the measured function run in whole units, the
shape of a test's blocks, and where a block goes on the counter's step grid.

Pure arithmetic but for :class:`Units`, which calls the measured code; the loop that
uses them is :mod:`pytest_energy.measure.aligned`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.measure.grid import StepGrid
from pytest_energy.measure.reader import MeterReader

DEGENERATE_MARGIN = 1.2
"""Guards between a unit boundary and a step when units are whole periods long."""


@dataclass
class Units:
    """The measured function run in whole units of ``group`` calls, timed per call."""

    fn: Callable[[], Any]
    reader: MeterReader
    group: int = 1
    calls: int = 0
    value: Any = None
    latencies: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # clock (ns) when each call began

    def call(self) -> int:
        """One timed call; returns the clock (ns) when it ended."""
        clock, sync = self.reader.clock, self.reader.sync
        start = clock()
        self.value = self.fn()
        if sync is not None:
            sync()
        end = clock()
        self.latencies.append(end - start)
        self.starts.append(start)
        self.calls += 1
        return end

    def clear(self) -> None:
        """Forget the timed calls (a block's own calls are timed afresh)."""
        self.latencies.clear()
        self.starts.clear()

    def unit(self) -> int:
        """One whole unit; returns the clock (ns) when its last call ended."""
        end = 0
        for _ in range(self.group):
            end = self.call()
        return end

    def until(self, time_s: float) -> None:
        """Whole units until the clock reaches ``time_s`` (at least one unit), judged on
        the last call's own end time: no clock read of its own between calls."""
        limit_ns = time_s * 1e9
        while self.unit() < limit_ns:
            pass

    def align(self) -> int:
        """Calls to the next unit boundary (between blocks, unmeasured)."""
        extra = -self.calls % self.group
        for _ in range(extra):
            self.call()
        return extra


@dataclass(frozen=True)
class Shape:
    """How this test's blocks look."""

    unit_s: float
    group: int
    long: bool
    set_size: int
    steps: int
    clean_before_s: float
    residual: float = 0.0
    irregular: bool = False
    spacing_s: float = 0.0  # long units: how far apart a block's samples lie in a unit



def place_block(shape: Shape, grid: StepGrid, guard_s: float, now_s: float,
                phase: float) -> tuple[float, float | None]:
    """Where a block at ``phase`` (a fraction) starts, no earlier than ``now_s``, and
    until when it leads in (``None``: a clean start, the reference read right before
    the first call)."""
    period, now = grid.period_s, now_s + guard_s
    if shape.long:  # the first step falls `phase` of a spacing after the start
        offset = _long_offset(shape, period, guard_s, phase)
        step = grid.next_step(now + offset)
        return step - offset, step + guard_s
    offset = phase * shape.unit_s  # the counted step this far into a unit
    step = grid.next_step(now)
    for _ in range(3 + math.ceil(shape.unit_s / period)):
        clean = earliest(max(now, step - period + guard_s), step - shape.clean_before_s
                         - guard_s, step - offset, shape.unit_s)
        if clean is not None:
            return clean, None
        lead = earliest(max(now, step - period), step, step + period - offset, shape.unit_s)
        if lead is not None:
            return lead, step + guard_s
        step += period
    return now, grid.next_step(now) + guard_s


def _long_offset(shape: Shape, period: float, guard_s: float, phase: float) -> float:
    """How far after a long block's start its first step falls. Units of whole periods
    keep their boundaries (where reads go) at one place against the steps: the steps
    are then kept clear of them."""
    drift = shape.unit_s % period
    if min(drift, period - drift) >= DEGENERATE_MARGIN * guard_s:
        return phase * shape.spacing_s
    margin = min(DEGENERATE_MARGIN * guard_s, shape.spacing_s / 4)
    return margin + phase * (shape.spacing_s - 2 * margin)


def step_position(step_s: float, starts_ns: list[int], latencies_ns: list[int],
                  group: int) -> float | None:
    """Where a counter step fell within its unit (a fraction), from the calls' own
    timing; the calls began on a unit boundary. ``None`` when no whole unit of them
    holds the step. Calls that ran longer or shorter than the unit's mean move the step
    from its planned phase: this is where the sensor actually sampled."""
    step_ns = step_s * 1e9
    for first in range(0, len(starts_ns) - group + 1, group):
        begin = starts_ns[first]
        end = starts_ns[first + group - 1] + latencies_ns[first + group - 1]
        if begin <= step_ns < end:
            return (step_ns - begin) / (end - begin)
    return None


def unit_seconds(durations: list[float], group: int) -> float:
    """The unit's duration: the mean over its whole repeats (a leftover partial group
    would weigh one kind of call twice)."""
    whole = len(durations) // group * group
    used = durations[:whole] if whole else durations
    return max(statistics.fmean(used) * group, 1e-6)


def calibration_s(latencies_ns: list[int]) -> list[float]:
    return [ns / 1e9 for ns in latencies_ns]


def earliest(low: float, high: float, anchor: float, modulus: float) -> float | None:
    """The earliest t in [low, high] with t == anchor (mod modulus), if any."""
    t = anchor + math.ceil((low - anchor) / modulus) * modulus
    t = max(t, low)
    return t if t <= high else None


