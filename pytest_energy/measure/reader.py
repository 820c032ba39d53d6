"""One meter as the measuring loops see it: guarded reads, checked deltas, the clock.

Every plan reads the meter through a :class:`MeterReader`, so a third-party meter that
raises, returns nonsense or jumps becomes a :class:`~pytest_energy.meters.base.MeterError`
naming the cause in one place, and the plugin never turns a failed read into a number.
"""

from __future__ import annotations

import collections
import contextlib
import math
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from pytest_energy.measure.grid import Step, StepGrid, measure_grid, precise_step
from pytest_energy.meters.base import Meter, MeterError
from pytest_energy.meters.guard import guard_for

# Counter step period of each meter, timed once per session (meters live for the session).
_STEP_PERIOD: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_PERIOD_CHECKED: weakref.WeakSet[Any] = weakref.WeakSet()
PERIOD_INTERVALS = 10
READ_HISTORY = 16
STEPPED_PERIOD_S = 0.005  # coarser counters may not move between two reads
INSTANT_READ_S = 5e-3
"""Meter reads quicker than this are taken as instants (see MeterReader.calls_energy)."""
JUDGED_READS = 8
"""A meter is judged slow to read only on at least this many timed reads."""


POLL_PATIENCE_PERIODS = 1.5
"""A re-anchoring poll takes the most precise step seen after this many periods."""


def default_guard(period_s: float) -> float:
    """Margin kept between a read and an expected counter step: 1% of the period, at
    least 0.2 ms (timing errors of the grid and of sleeps)."""
    return max(2e-4, 0.01 * period_s)


class Reading(NamedTuple):
    """A meter read bracketed by the clock: the counter was sampled somewhere in
    ``[before_s, after_s]``."""

    before_s: float
    values: dict[str, float]
    after_s: float

    @property
    def mid_s(self) -> float:
        return (self.before_s + self.after_s) / 2

    @property
    def took_s(self) -> float:
        return self.after_s - self.before_s


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
        self._read_times: collections.deque[float] = collections.deque(maxlen=READ_HISTORY)
        self._rates: dict[str, float] | None = None
        self.progress: Callable[[float], None] | None = None  # seconds since measuring began
        self.began_s = 0.0

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

    def bracketed_read(self) -> Reading:
        """A read with a clock reading on each side (the counter's instant lies between)."""
        before = self.seconds()
        values = self.read()
        reading = Reading(before, values, self.seconds())
        self._read_times.append(reading.took_s)
        return reading

    def tick(self) -> None:
        """Between windows (never inside one): tell the progress callback how long the
        measurement has run, so a long one shows life on the terminal."""
        if self.progress is not None:
            self.progress(self.seconds() - self.began_s)

    @property
    def typical_read_s(self) -> float:
        """The meter's own read latency: the quickest of the latest reads. A busy
        machine only ever makes a read slower (eight test processes on two cores had
        most reads preempted, and their median called a 10 us meter slow), while a meter
        whose reads are slow is slow every time."""
        return min(self._read_times, default=0.0)

    def calls_energy(self, before: Reading, after: Reading,
                     window_s: float) -> dict[str, float]:
        """Energy per domain of calls that ran for ``window_s`` between two bracketed
        reads. Each read is placed at its midpoint, so the counter moved over the
        midpoints' span: the calls' window plus half of each read. When reads take
        time (a network meter, a busy driver) and the counter grows while reading, the
        energy accrued over the reads' share of the span is taken out (a meter whose
        read takes 50 ms does not add 50 ms of power to every window). The growth while
        reading is measured, not assumed: a counter that only moves with the calls
        loses nothing."""
        spanned = max(after.mid_s - before.mid_s, window_s, 1e-9)
        counted = self.deltas(before.values, after.values, spanned)
        reads_s = spanned - window_s
        if self.update_period_s >= STEPPED_PERIOD_S or not self._reads_take_time():
            return counted
        rates = self._reading_rates()
        return {d: max(0.0, j - rates.get(d, 0.0) * reads_s) for d, j in counted.items()}

    def _reads_take_time(self) -> bool:
        """Whether the meter's reads take :data:`INSTANT_READ_S` or more, judged on at
        least :data:`JUDGED_READS` timed reads (more are taken, once, when fewer were):
        on a busy machine the first two reads of a test may both be preempted."""
        if self.typical_read_s < INSTANT_READ_S:
            return False
        for _ in range(JUDGED_READS - len(self._read_times)):
            self.bracketed_read()
        return self.typical_read_s >= INSTANT_READ_S

    def _reading_rates(self) -> dict[str, float]:
        """How fast the counter grows while the meter is being read, per domain: two
        reads back to back, nothing else running (once per test)."""
        if self._rates is None:
            first = self.bracketed_read()
            second = self.bracketed_read()
            span = max(second.mid_s - first.mid_s, 1e-9)
            self._rates = {d: j / span for d, j in
                           self.deltas(first.values, second.values, span).items()}
        return self._rates

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

    def poll_step(self, period_s: float) -> Step | None:
        """A fresh step seen precisely (see :func:`~pytest_energy.measure.grid.precise_step`),
        within three periods; ``None`` when the counter does not step. Reads that are
        all slow blur every step alike: after a period and a half the most precise one
        seen will do (the tracker's guard widens with it), instead of three periods of
        waiting at every re-anchoring."""
        return precise_step(self._first_domain(), self.seconds, timeout_s=3 * period_s,
                            max_resolution_s=step_resolution(period_s),
                            patience_s=POLL_PATIENCE_PERIODS * period_s)

    def remember_period(self, period_s: float) -> None:
        """Replace the session's period estimate (refitted from a test's own steps)."""
        with contextlib.suppress(TypeError):
            _STEP_PERIOD[self.meter] = period_s
            _PERIOD_CHECKED.add(self.meter)

    @property
    def period_checked(self) -> bool:
        """Whether a test has refitted the session's period from its own steps (the
        first estimate, timed by polling, may be off under CPU contention)."""
        try:
            return self.meter in _PERIOD_CHECKED
        except TypeError:
            return False

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
