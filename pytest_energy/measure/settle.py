"""Warm-up until power stops rising (``--energy-warmup-settle``).

A GPU ramps its clocks and power for up to a few hundred ms after idling: measuring
during the ramp reads low. The settle stage runs the code in back-to-back windows until
a window's power is within ``SETTLE_TOLERANCE`` of (or below) the window that ended
``SETTLE_LOOKBACK_S`` or one counter period earlier, at most ``max_s``; the windows
count as warm-up. Stopping on "not rising" ends early on noise rather than running
long; still rising at the cap is reported in the result's warnings.

Windows span ``SETTLE_UPDATES`` counter updates (at least ``SETTLE_MIN_S``); a coarse
stepped counter (NVML) gets windows that end just after its next step, the steps
inside counted on its grid (timed as for the aligned plan), so the window's power is
exact for the steps it counts (one sensor sample each: aliased, but a ramp still shows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.measure.grid import StepGrid
from pytest_energy.measure.reader import MeterReader, default_guard
from pytest_energy.measure.results import EnergyResult

UNSETTLED_WARNING = "power not settled:"
SETTLE_TOLERANCE = 0.03  # power up by more than this over the lookback: still rising
SETTLE_LOOKBACK_S = 0.05  # ... compared with the window this long before (or a period)
SETTLE_UPDATES = 10  # continuous meters: a settle window spans this many counter updates
SETTLE_MIN_S = 0.01


@dataclass
class _Ramp:
    """The settle windows' power so far, and when each window ended (clock ns)."""

    lookback_ns: int
    watts: list[float] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def add(self, watts: float, end_ns: int) -> None:
        self.watts.append(watts)
        self.ends.append(end_ns)

    def flat(self) -> bool:
        """Whether the latest window is no longer rising: compared with the latest
        window that ended a lookback earlier (a rise per unit of time, whatever the
        window length)."""
        if not self.ends:
            return False
        earlier = [i for i, end in enumerate(self.ends[:-1])
                   if end <= self.ends[-1] - self.lookback_ns]
        return bool(earlier) and self.watts[-1] <= self.watts[earlier[-1]] * (
            1 + SETTLE_TOLERANCE)

    def still_rising(self) -> bool:
        return len(self.watts) >= 2 and self.watts[-1] > self.watts[0] * (1 + SETTLE_TOLERANCE)


class _Settler:
    """Settle windows on one meter: fixed-length windows, or windows that end just
    after the next step of a stepped counter's ``grid``."""

    def __init__(self, reader: MeterReader, grid: StepGrid | None, period_s: float) -> None:
        self.reader = reader
        self.grid = grid
        self.period_s = period_s
        self.window_ns = int(max(SETTLE_MIN_S, SETTLE_UPDATES * reader.update_period_s) * 1e9)
        self.guard_s = default_guard(period_s)

    def until_ns(self, start_ns: int) -> int:
        """When the window opened at ``start_ns`` should close."""
        if self.grid is None:
            return start_ns + self.window_ns
        return int((self.grid.next_step(start_ns / 1e9) + self.guard_s) * 1e9)

    def watts(self, joules: float, start_ns: int, end_ns: int) -> float | None:
        """The window's power (per counted step on a grid); ``None`` when it cannot
        tell (a window cut short by the deadline may count no step)."""
        if self.grid is not None:
            steps = self.grid.steps_between(start_ns / 1e9, end_ns / 1e9)
            return joules / (steps * self.period_s) if steps >= 1 else None
        seconds = (end_ns - start_ns) / 1e9
        return joules / seconds if seconds > 0 else None


def _calls_until(fn: Callable[[], Any], reader: MeterReader, until_ns: int) -> tuple[Any, int]:
    """Run calls (at least one) until the clock reaches ``until_ns``."""
    calls = 0
    while True:
        value = fn()
        reader.synced()
        calls += 1
        if reader.clock() >= until_ns:
            return value, calls


def settle(fn: Callable[[], Any], reader: MeterReader, result: EnergyResult, *,
           max_s: float, stepped: bool) -> Any:
    """Run ``fn`` until the device's power stops rising (see the module doc); returns
    its last value. ``stepped``: the counter steps coarsely (the aligned plan's meters);
    when its steps cannot be found, nothing runs (the plan then says so)."""
    period = reader.update_period_s
    grid: StepGrid | None = None
    if stepped and period > 0:
        grid = reader.find_grid()
        if grid is None:
            return None
        period = grid.period_s
    settler = _Settler(reader, grid, period)
    begin = reader.clock()
    deadline = begin + int(max_s * 1e9)
    ramp = _Ramp(lookback_ns=int(max(SETTLE_LOOKBACK_S, period) * 1e9 * 0.999))
    value: Any = None
    reader.synced()
    last, last_at = reader.read(), reader.clock()
    while True:
        start_value, start_at = last, last_at
        value, calls = _calls_until(fn, reader, min(settler.until_ns(start_at), deadline))
        last, last_at = reader.read(), reader.clock()
        result.warmup_calls += calls
        seconds = (last_at - start_at) / 1e9
        joules = sum(reader.deltas(start_value, last, max(seconds, 1e-9)).values())
        watts = settler.watts(joules, start_at, last_at)
        if watts is not None:
            ramp.add(watts, last_at)
        if ramp.flat() or reader.clock() >= deadline:
            break
    _report(result, ramp, settled=ramp.flat(), seconds=(reader.clock() - begin) / 1e9)
    return value


def _report(result: EnergyResult, ramp: _Ramp, *, settled: bool, seconds: float) -> None:
    result.settle_watts = ramp.watts
    result.settled = settled
    result.settle_s = seconds
    if not settled and ramp.still_rising():
        shown = ", ".join(f"{w:.3g}" for w in ramp.watts[-4:])
        result.warnings.append(
            f"{UNSETTLED_WARNING} power was still rising after {result.settle_s:.2g} s "
            f"of warm-up (last windows: {shown} W): the measurement may read low; "
            "raise energy_warmup_settle")
