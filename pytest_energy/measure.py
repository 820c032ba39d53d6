"""Running measured code under a plan and turning meter readings into a result.

The measuring loop is the hot path of the plugin: per call it takes two clock
readings and (for GPU meters) one device sync, nothing else. Meter reads happen only
at window boundaries. Exceptions from the measured code propagate unchanged; meter
failures become :class:`~pytest_energy.meters.base.MeterError` with the cause.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pytest_energy.isolation import exclusive, lock_keys
from pytest_energy.meters.base import Meter, MeterError
from pytest_energy.meters.guard import DEFAULT_READ_TIMEOUT_S, guard_for
from pytest_energy.plan import (
    default_max_time,
    make_plan,
    min_window_s,
    remaining_trials,
    window_target_s,
)
from pytest_energy.results import EnergyResult, Trial

if TYPE_CHECKING:
    from pytest_energy.antialias import StepGrid


def _both(first: Callable[[], Any], second: Callable[[], Any]) -> Callable[[], None]:
    def sync() -> None:
        first()
        second()
    return sync


# Idle power per meter, measured once per session (meters live for the session).
_IDLE_WATTS: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()
IDLE_UPDATES = 10
IDLE_MIN_S, IDLE_MAX_S = 0.05, 1.0


# Counter step period of each meter, timed once per session (the plan needs it to ~0.1%).
_STEP_PERIOD: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
ALIGNED_MIN_PERIOD_S = 0.005
PERIOD_INTERVALS = 10


def _step_resolution(period_s: float) -> float:
    """How precisely a counter step must be seen to anchor the grid: half the plan's
    guard; a slower read is skipped for the next step."""
    from pytest_energy.antialias import default_guard

    return default_guard(period_s) / 2


COARSE_WARNING = "coarse windows:"
PARTIAL_COVERAGE = "partial sensor coverage:"
MULTI_DEVICE_WARNING = "several devices:"
UNSAMPLED_TAIL_WARNING = "unsampled call tail:"
UNSAMPLED_TAIL_SHARE = 0.02
UNSETTLED_WARNING = "power not settled:"
SETTLE_TOLERANCE = 0.03  # power up by more than this over the lookback: still rising
SETTLE_LOOKBACK_S = 0.05  # ... compared with the window this long before (or a period)
SETTLE_UPDATES = 10  # continuous meters: a settle window spans this many counter updates
SETTLE_MIN_S = 0.01
MAX_ALIGNED_BLOCKS = 256  # a safety net: plans hold at most 64 blocks plus a set


def _ms(seconds: float | None) -> str:
    return "an unknown part" if seconds is None else f"{seconds * 1e3:.3g} ms"

# No single domain (a GPU board, a CPU package) draws this much; an 8-GPU node is ~10 kW.
MAX_PLAUSIBLE_WATTS = 100_000.0
COARSE_FRACTION = 0.5


class Measurer:
    """Measures callables or blocks with one meter, for one test."""

    def __init__(self, meter: Meter, *, device: str, meter_note: str | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns,
                 isolate: bool = True, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
                 sync: Callable[[], Any] | None = None, idle_baseline: bool = False,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None, settle_max_s: float = 0.0) -> None:
        self.meter = meter
        self._guard = guard_for(meter, read_timeout_s)
        # Optional meter attribute; None disables the check (simulated meters).
        self._max_watts: float | None = getattr(meter, "max_plausible_watts",
                                                MAX_PLAUSIBLE_WATTS)
        self.device = device
        self.meter_note = meter_note
        self._clock = clock
        self._lock_keys = lock_keys(meter, device) if isolate else []
        meter_sync = getattr(meter, "sync", None)
        syncs = [s for s in (meter_sync, sync) if callable(s)]
        self._sync: Callable[[], Any] | None = (
            None if not syncs else syncs[0] if len(syncs) == 1 else _both(*syncs))
        self._idle_baseline = idle_baseline and not meter.estimated
        # warm-up until power stops rising: hardware meters only (a model has no ramp)
        self._settle_max_s = settle_max_s if not meter.estimated else 0.0
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Counters that step at a coarse period (NVML's total energy) get the
        # phase-aligned plan; meters opt in with ``stepped_counter = True``.
        self._aligned = bool(getattr(meter, "stepped_counter", False)) and (
            meter.update_period_s >= ALIGNED_MIN_PERIOD_S)

    def new_result(self, items_per_call: float | None = None) -> EnergyResult:
        return EnergyResult(
            meter=str(self.meter.name),
            estimated=bool(self.meter.estimated),
            domains=list(self.meter.domains()),
            device=self.device,
            items_per_call=items_per_call,
            update_period_s=float(self.meter.update_period_s),
            meter_note=self.meter_note,
        )

    # ----- meter access -------------------------------------------------------------
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

    def _deltas(self, before: dict[str, float], after: dict[str, float],
                window_s: float) -> dict[str, float]:
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
            deltas[domain] = delta
        return deltas

    def _synced(self) -> None:
        if self._sync is not None:
            self._sync()

    # ----- windows ------------------------------------------------------------------
    def _window(self, fn: Callable[[], Any], calls: int, result: EnergyResult,
                min_duration_s: float = 0.0) -> Any:
        """One measured window of ``calls`` calls, or, with ``min_duration_s``, of as
        many calls as it takes to last that long (the calibrating window)."""
        clock, sync = self._clock, self._sync
        latencies: list[int] = []
        value: Any = None
        min_ns = int(min_duration_s * 1e9)
        self._synced()
        before = self.read()
        window_start = clock()
        done = 0
        while True:
            start = clock()
            value = fn()
            if sync is not None:
                sync()
            end = clock()
            latencies.append(end - start)
            done += 1
            if done >= calls and end - window_start >= min_ns:
                break
        window_ns = clock() - window_start
        after = self.read()
        self._add_trial(result, Trial(calls=done, window_s=window_ns / 1e9,
                                      joules=self._deltas(before, after, window_ns / 1e9),
                                      latencies_ns=latencies))
        return value

    def _add_trial(self, result: EnergyResult, trial: Trial) -> None:
        result.trials.append(trial)
        if trial.counted_steps is not None:  # phase-aligned: short windows by design
            if trial.counted_steps > 0 and trial.total_joules <= 0 and (
                    result.invalid_reason is None):
                result.invalid_reason = (
                    f"meter {self.meter.name!r} stepped {trial.counted_steps} time(s) "
                    "during a window but reported no energy")
            return
        if trial.total_joules <= 0 and result.invalid_reason is None:
            result.invalid_reason = (
                f"meter {self.meter.name!r} saw no energy over a {trial.window_s * 1e3:.3g} ms "
                f"window (counter update period {self.meter.update_period_s * 1e3:.3g} ms): "
                "the window is below the counter's resolution; raise rounds or max_time"
            )
        period = self.meter.update_period_s
        needed = min_window_s(period)
        # Windows of the same call count vary by a few percent; warn only when a window
        # is well short of the recommendation, and once per test.
        if period > 0 and trial.window_s < COARSE_FRACTION * needed and not any(
                w.startswith(COARSE_WARNING) for w in result.warnings):
            result.warnings.append(
                f"{COARSE_WARNING} a {trial.window_s * 1e3:.3g} ms window spans "
                f"{trial.window_s / period:.1f} updates of the {period * 1e3:.3g} ms counter "
                f"(recommended >= {needed / period:.0f}): per-call energy is coarse; raise "
                "rounds or max_time"
            )

    def run(self, fn: Callable[[], Any], *, warmup: int, rounds: int | None, trials: int,
            max_time_s: float | None, items_per_call: float | None = None,
            result: EnergyResult | None = None) -> tuple[Any, EnergyResult]:
        """Run ``fn`` ``warmup`` + measured times; return its last value and the result.

        Explicit ``rounds`` are split over the trials, never exceeding them. With
        ``rounds=None`` (auto) the first window runs calls until it spans enough meter
        updates (see :mod:`pytest_energy.plan`), and the other trials repeat its call
        count within ``max_time_s``: calibrating on a real window, not on a possibly
        cold warm-up call. The result object is filled as trials complete, so a caller
        holding it sees partial data if the code or the meter fails midway.
        """
        result = result if result is not None else self.new_result(items_per_call)
        cover = max_time_s is None  # the default may stretch to cover the sensor
        if max_time_s is None:
            max_time_s = default_max_time(self.meter.update_period_s)
        with self._isolated(result):
            return self._run(fn, warmup=warmup, rounds=rounds, trials=trials,
                             max_time_s=max_time_s, cover=cover, result=result), result

    @contextmanager
    def _isolated(self, result: EnergyResult) -> Iterator[None]:
        """Hold the device locks (see :mod:`pytest_energy.isolation`); note any wait."""
        if not self._lock_keys:
            yield
            return
        with exclusive(self._lock_keys) as info:
            result.lock_wait_s += info["waited_s"]
            yield

    def _prepare(self, result: EnergyResult) -> None:
        """Before measuring (under the device lock): the device's conditions (other
        processes, MIG, module-scope readings) and, once per session, its idle power."""
        conditions = getattr(self.meter, "conditions", None)
        if callable(conditions):
            try:
                found = [str(c) for c in conditions()]
            except Exception as exc:  # diagnostics must not break a measurement
                found = [f"unknown: could not check device conditions: {exc}"]
            result.conditions.extend(c for c in found if c not in result.conditions)
        if self._idle_baseline:
            result.idle_watts = self.idle_watts()

    def idle_watts(self) -> dict[str, float]:
        """Idle power per domain, measured once per meter per session with nothing
        running in this process: ``IDLE_UPDATES`` counter updates, 0.05-1 s."""
        known = _IDLE_WATTS.get(self.meter)
        if known is not None:
            return known
        duration = min(IDLE_MAX_S, max(IDLE_MIN_S, IDLE_UPDATES * self.meter.update_period_s))
        self._synced()
        before = self.read()
        start = self._clock()
        time.sleep(duration)
        after = self.read()
        seconds = (self._clock() - start) / 1e9
        watts = {d: j / seconds for d, j in self._deltas(before, after, seconds).items()}
        with contextlib.suppress(TypeError):  # meters that cannot be weakly referenced
            _IDLE_WATTS[self.meter] = watts
        return watts

    def _run(self, fn: Callable[[], Any], *, warmup: int, rounds: int | None, trials: int,
             max_time_s: float, cover: bool, result: EnergyResult) -> Any:
        self._prepare(result)
        value: Any = None
        for _ in range(warmup):
            value = fn()
            self._synced()
            result.warmup_calls += 1
        if rounds is None and self._settle_max_s > 0:
            value = self._settle(fn, result)
        if rounds is None and self._aligned:
            aligned = self._run_aligned(fn, max_time_s=max_time_s, cover=cover,
                                        result=result)
            if aligned is not None:
                return aligned[0]
        if rounds is not None:
            for calls in make_plan(warmup=warmup, rounds=rounds, trials=trials).calls_per_trial:
                value = self._window(fn, calls, result)
            return value
        target = window_target_s(self.meter.update_period_s, trials=trials,
                                 max_time_s=max_time_s)
        value = self._window(fn, 1, result, min_duration_s=target)
        first = result.trials[-1]
        for _ in range(remaining_trials(first.window_s, trials=trials, max_time_s=max_time_s)):
            value = self._window(fn, first.calls, result)
        return value

    # ----- warm-up until power stops rising ------------------------------------------
    def _settle(self, fn: Callable[[], Any], result: EnergyResult) -> Any:
        """Run the code in back-to-back windows until the device's power stops rising
        (a window within ``SETTLE_TOLERANCE`` of, or below, the window that ended
        ``SETTLE_LOOKBACK_S`` or one counter period earlier), at most ``settle_max_s``;
        the windows count as warm-up. A GPU ramps its clocks and power
        for up to a few hundred ms after idling: measuring during the ramp reads low.

        Windows span ``SETTLE_UPDATES`` counter updates (at least ``SETTLE_MIN_S``); a
        coarse stepped counter (NVML) gets windows that end just after its next step,
        the steps inside counted on its grid (timed as for the aligned plan), so the
        window's power is exact for the steps it counts (one sensor sample each:
        aliased, but a ramp still shows).
        Stopping on "not rising" ends early on noise rather than running long; still
        rising at the cap is reported in the result's warnings.
        """
        from pytest_energy.antialias import default_guard

        period = self.meter.update_period_s
        window = max(SETTLE_MIN_S, SETTLE_UPDATES * period)
        grid: StepGrid | None = None
        if self._aligned and period > 0:
            # a stepped counter: windows from a read to just after the next step, the
            # steps in between counted on the counter's grid (exact for any call length)
            grid = self._find_grid()
            if grid is None:
                return None  # no steps to count: the plan below says so
            period = grid.period_s
        guard_s = default_guard(period)
        begin = self._clock()
        deadline = begin + int(self._settle_max_s * 1e9)
        value: Any = None
        watts: list[float] = []
        ends: list[int] = []
        lookback_ns = int(max(SETTLE_LOOKBACK_S, period) * 1e9 * 0.999)
        settled = False
        self._synced()
        last = self.read()
        last_at = self._clock()
        while True:
            start_value, start_at = last, last_at
            until_ns = (int((grid.next_step(start_at / 1e9) + guard_s) * 1e9)
                        if grid is not None else start_at + int(window * 1e9))
            calls = 0
            while True:
                value = fn()
                self._synced()
                calls += 1
                if self._clock() >= min(until_ns, deadline):
                    break
            last, last_at = self.read(), self._clock()
            result.warmup_calls += calls
            seconds = (last_at - start_at) / 1e9
            joules = sum(self._deltas(start_value, last, max(seconds, 1e-9)).values())
            if grid is not None:
                steps = grid.steps_between(start_at / 1e9, last_at / 1e9)
                if steps >= 1:  # a window cut short by the deadline may count none
                    watts.append(joules / (steps * period))
                    ends.append(last_at)
            elif seconds > 0:
                watts.append(joules / seconds)
                ends.append(last_at)
            # compare with the latest window that ended a lookback earlier: a rise
            # measured per unit of time, whatever the window length
            earlier = [i for i, end in enumerate(ends[:-1]) if end <= ends[-1] - lookback_ns]
            if earlier and watts[-1] <= watts[earlier[-1]] * (1 + SETTLE_TOLERANCE):
                settled = True
                break
            if self._clock() >= deadline:
                break
        result.settle_watts = watts
        result.settled = settled
        result.settle_s = (self._clock() - begin) / 1e9
        if not settled and len(watts) >= 2 and watts[-1] > watts[0] * (1 + SETTLE_TOLERANCE):
            shown = ", ".join(f"{w:.3g}" for w in watts[-4:])
            result.warnings.append(
                f"{UNSETTLED_WARNING} power was still rising after {result.settle_s:.2g} s "
                f"of warm-up (last windows: {shown} W): the measurement may read low; "
                "raise energy_warmup_settle")
        return value

    # ----- the phase-aligned plan (coarse stepped counters, e.g. NVML) -----------------
    def _seconds(self) -> float:
        return self._clock() / 1e9

    def _first_domain(self) -> Callable[[], float]:
        domain = self.meter.domains()[0]
        return lambda: self.read()[domain]

    def _find_grid(self) -> StepGrid | None:
        """The counter's step grid now: the session's period, anchored at a step seen
        precisely (waits up to 3 periods); ``None`` when the counter does not step."""
        from pytest_energy.antialias import measure_grid

        period = self.step_period()
        if period is None:
            return None
        return measure_grid(self._first_domain(), self._seconds, period_s=period,
                            timeout_s=3 * period, max_resolution_s=_step_resolution(period))

    def step_period(self) -> float | None:
        """The counter's real step period, timed over 10 steps once per meter."""
        from pytest_energy.antialias import measure_grid

        known = _STEP_PERIOD.get(self.meter)
        if known is not None:
            return known
        grid = measure_grid(self._first_domain(), self._seconds, intervals=PERIOD_INTERVALS,
                            timeout_s=3 * self.meter.update_period_s,
                            max_resolution_s=_step_resolution(self.meter.update_period_s))
        if grid is None or not grid.period_s > 0:
            return None
        with contextlib.suppress(TypeError):
            _STEP_PERIOD[self.meter] = grid.period_s
        return grid.period_s

    def _run_aligned(self, fn: Callable[[], Any], *, max_time_s: float, cover: bool,
                     result: EnergyResult) -> tuple[Any] | None:
        """Windows that start and end right after counter steps, in phase sets that
        sample every part of the calls evenly (see :mod:`pytest_energy.antialias`);
        ``None`` when the counter's steps cannot be found (then the ordinary plan runs).

        ``cover``: finish the first whole phase set even past ``max_time_s`` (the
        default when the user set no max_time); otherwise stop at ``max_time_s`` and
        warn when no set is whole.
        """
        from pytest_energy.antialias import (
            PhaseSchedule,
            block_end,
            choose_plan,
            complete_sets,
            unsampled_tail_s,
        )

        clock, sync = self._seconds, self._sync
        start = self._clock()
        value = fn()  # one timed call sizes the plan (counted as warm-up)
        self._synced()
        result.warmup_calls += 1
        call_s = max((self._clock() - start) / 1e9, 1e-6)
        grid = self._find_grid()
        if grid is None:
            result.warnings.append(
                f"the {self.meter.name} counter did not step within "
                f"{3 * self.meter.update_period_s:.3g} s: measured with plain windows")
            return None
        period = grid.period_s
        window = getattr(self.meter, "sensor_window_s", None)
        plan = choose_plan(period, call_s, budget_s=max_time_s, cover=cover,
                           sensor_window_s=window if isinstance(window, float) else None)
        schedule = PhaseSchedule(plan, shift=self._rng.random())
        result.plan, result.step_period_s = "phase-aligned", period
        result.sensor_window_s = plan.window_s
        domains = self.meter.domains()
        if len(domains) > 1:
            result.warnings.append(
                f"{MULTI_DEVICE_WARNING} windows follow the counter of {domains[0]}; "
                f"{', '.join(domains[1:])} step on their own grids, so their share carries "
                "up to a counter step of quantisation per window; measure one GPU per "
                "test (device='cuda:N') for the best accuracy")
        begin = clock()
        estimate = call_s
        first_trial = len(result.trials)

        def sets() -> list[tuple[int | None, int]]:  # this run's blocks, by phase set
            return [t.phase_set or (None, 1) for t in result.trials[first_trial:]]

        while True:
            placed = schedule.next_block(grid, clock(), estimate)
            over = placed.finish_s > begin + max_time_s
            covering = cover and schedule.plan.cover  # unknown windows: no cover promise
            done = sets()
            if done and over and (not covering or complete_sets(done) >= 1):
                break
            if len(done) >= MAX_ALIGNED_BLOCKS:
                break
            pause = placed.start_s - clock()
            if pause > 0:
                self._sleep(pause)
            # lead-in (only where planned: a clock a hair short of a clean start after
            # the sleep must not cost a call): puts the window at its phase
            while placed.reference_s > placed.start_s and clock() < placed.reference_s:
                value = fn()
                if sync is not None:
                    sync()
                result.lead_in_calls += 1
            t_ref = clock()
            before = self.read()
            end, minimum = block_end(schedule.plan, grid, t_ref)
            latencies: list[int] = []
            while True:
                call_start = self._clock()
                value = fn()
                if sync is not None:
                    sync()
                call_end = self._clock()
                latencies.append(call_end - call_start)
                if call_end / 1e9 >= end and len(latencies) >= minimum:
                    break
            t_end = clock()
            after = self.read()
            self._add_trial(result, Trial(
                calls=len(latencies), window_s=t_end - t_ref,
                joules=self._deltas(before, after, t_end - t_ref), latencies_ns=latencies,
                counted_steps=grid.steps_between(t_ref, t_end),
                phase_set=(placed.phase_set, placed.set_size)))
            estimate = max(sum(latencies) / len(latencies) / 1e9, 1e-6)
        spent = clock() - begin
        plan = schedule.plan  # as replanned on the measured calls
        if not any(t.counted_steps for t in result.trials):
            result.invalid_reason = (
                f"no window spanned a step of the {period * 1e3:.3g} ms {self.meter.name} "
                "counter: raise max_time")
        elif complete_sets(done := sets()) == 0 and plan.window_s is not None and (
                plan.window_s < period * 0.98):  # a known part-time sensor left partly blind
            result.warnings.append(
                f"{PARTIAL_COVERAGE} {len(done)} of the {done[0][1]} phases the sensor needs "
                f"to see every part of a call ran within max_time {max_time_s:g} s; calls "
                "with power structure finer than the counter period may be misjudged; "
                f"raise max_time to about {plan.set_s + period:.2g} s")
        elif (unsampled := unsampled_tail_s(plan, estimate)) > UNSAMPLED_TAIL_SHARE * estimate:
            # long calls that are no whole number of periods: the end of each call's
            # last, partial period falls between the sensor's windows
            # (bench/accuracy.py --calls 110: 17% off for pulsed power there)
            result.warnings.append(
                f"{UNSAMPLED_TAIL_WARNING} the last {unsampled * 1e3:.3g} ms of each "
                f"{estimate * 1e3:.3g} ms call ({unsampled / estimate:.0%}) fall between "
                f"the sensor's windows (the call is no whole number of {period * 1e3:.3g} "
                "ms counter periods); if the power differs there, the energy per call is "
                "off by a similar or larger share")
        if cover and spent > max_time_s * 1.05 and result.valid:
            result.warnings.append(
                f"measured {spent:.2g} s, over the {max_time_s:g} s default max_time, to "
                f"sample every part of a {estimate * 1e3:.3g} ms call (the sensor "
                f"averages {_ms(plan.window_s)} of every {period * 1e3:.3g} ms); set "
                "max_time to cap it")
        return (value,)

    @contextmanager
    def block(self, result: EnergyResult, items: float | None = None) -> Iterator[None]:
        """Measure the body of a ``with`` block once, as one trial of one call."""
        with self._isolated(result):
            self._prepare(result)
            yield from self._block(result, items)

    def _block(self, result: EnergyResult, items: float | None) -> Iterator[None]:
        self._synced()
        before = self.read()
        start = self._clock()
        yield
        self._synced()
        elapsed = self._clock() - start
        after = self.read()
        trial = Trial(calls=1, window_s=elapsed / 1e9,
                      joules=self._deltas(before, after, elapsed / 1e9),
                      latencies_ns=[elapsed], items=items)
        self._add_trial(result, trial)
