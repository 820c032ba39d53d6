"""One meter as the measuring loops see it: guarded reads, checked deltas, the clock.

Every plan reads the meter through a :class:`MeterReader`, so a third-party meter that
raises, returns nonsense or jumps becomes a :class:`~pytest_energy.meters.base.MeterError`
naming the cause in one place, and the plugin never turns a failed read into a number.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable
from typing import Any

from pytest_energy.measure.antialias import default_guard
from pytest_energy.measure.grid import StepGrid, measure_grid
from pytest_energy.meters.base import Meter, MeterError
from pytest_energy.meters.guard import guard_for

# Counter step period of each meter, timed once per session (meters live for the session).
_STEP_PERIOD: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
PERIOD_INTERVALS = 10


def step_resolution(period_s: float) -> float:
    """How precisely a counter step must be seen to anchor the grid: half the plan's
    guard; a slower read is skipped for the next step."""
    return default_guard(period_s) / 2


def _both(first: Callable[[], Any], second: Callable[[], Any]) -> Callable[[], None]:
    def sync() -> None:
        first()
        second()
    return sync


def combined_sync(*syncs: Callable[[], Any] | None) -> Callable[[], Any] | None:
    """One callable for the meter's and the test's syncs (``None`` when there is none)."""
    present = [s for s in syncs if callable(s)]
    if not present:
        return None
    return present[0] if len(present) == 1 else _both(present[0], present[1])


class MeterReader:
    """Reads one meter for the measuring loops.

    ``clock`` returns nanoseconds (``time.perf_counter_ns`` outside tests); ``sync``
    waits for queued device work, run right before reads that close a window.
    """

    def __init__(self, meter: Meter, *, read_timeout_s: float, clock: Callable[[], int],
                 sync: Callable[[], Any] | None, max_watts: float | None) -> None:
        self.meter = meter
        self.clock = clock
        self.sync = sync
        self._guard = guard_for(meter, read_timeout_s)
        self._max_watts = max_watts

    @property
    def update_period_s(self) -> float:
        return float(self.meter.update_period_s)

    def seconds(self) -> float:
        """The clock in seconds (the phase-aligned plan's unit)."""
        return self.clock() / 1e9

    def synced(self) -> None:
        if self.sync is not None:
            self.sync()

    def read(self) -> dict[str, float]:
        """Read the meter, turning any failure or nonsense into a MeterError."""
        try:
            values = self._guard.read()
        except MeterError:
            raise
        except Exception as exc:  # a third-party meter may raise anything
            raise MeterError(
                f"meter {self.meter.name!r} failed to read: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(values, dict) or not values:
            raise MeterError(
                f"meter {self.meter.name!r} returned {values!r} from read(); expected a "
                "non-empty dict of cumulative joules per domain"
            )
        for domain, joules in values.items():
            if isinstance(joules, bool) or not isinstance(joules, (int, float)) or not (
                math.isfinite(joules)
            ):
                raise MeterError(
                    f"meter {self.meter.name!r} returned {joules!r} for domain {domain!r}; "
                    "expected a finite number of joules"
                )
        return values

    def deltas(self, before: dict[str, float], after: dict[str, float],
               window_s: float) -> dict[str, float]:
        """Energy per domain between two reads ``window_s`` apart; a counter that went
        backwards or jumped makes the window unmeasurable (MeterError)."""
        deltas: dict[str, float] = {}
        for domain, start in before.items():
            if domain not in after:
                raise MeterError(f"meter {self.meter.name!r} stopped reporting domain {domain!r}")
            delta = after[domain] - start
            if delta < 0:
                raise MeterError(
                    f"meter {self.meter.name!r} went backwards on {domain} "
                    f"({start:.6g} J -> {after[domain]:.6g} J): counter reset or wrap; "
                    "this window cannot be measured"
                )
            self._check_plausible(domain, delta, window_s)
            deltas[domain] = delta
        return deltas

    def _check_plausible(self, domain: str, delta: float, window_s: float) -> None:
        # A counter that jumps (reset to garbage, a unit bug) shows up as power no
        # single device can draw; such a window is not a measurement.
        limit = self._max_watts
        if limit is not None and window_s > 0 and delta / window_s > limit:
            raise MeterError(
                f"meter {self.meter.name!r} jumped on {domain}: {delta:.6g} J in "
                f"{window_s * 1e3:.3g} ms is {delta / window_s:.3g} W, more than the "
                f"{limit:.0f} W one device can draw (counter reset or unit "
                "error); this window cannot be measured"
            )

    # ----- the step grid of a coarse counter -------------------------------------------
    def _first_domain(self) -> Callable[[], float]:
        domain = self.meter.domains()[0]
        return lambda: self.read()[domain]

    def find_grid(self) -> StepGrid | None:
        """The counter's step grid now: the session's period, anchored at a step seen
        precisely (waits up to 3 periods); ``None`` when the counter does not step."""
        period = self.step_period()
        if period is None:
            return None
        return measure_grid(self._first_domain(), self.seconds, period_s=period,
                            timeout_s=3 * period, max_resolution_s=step_resolution(period))

    def step_period(self) -> float | None:
        """The counter's real step period, timed over ``PERIOD_INTERVALS`` steps once per
        meter (the plan needs it to ~0.1%; the nominal period is not that exact)."""
        known = _STEP_PERIOD.get(self.meter)
        if known is not None:
            return known
        grid = measure_grid(self._first_domain(), self.seconds, intervals=PERIOD_INTERVALS,
                            timeout_s=3 * self.update_period_s,
                            max_resolution_s=step_resolution(self.update_period_s))
        if grid is None or not grid.period_s > 0:
            return None
        with contextlib.suppress(TypeError):
            _STEP_PERIOD[self.meter] = grid.period_s
        return grid.period_s
