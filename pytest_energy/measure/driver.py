"""The driver: runs measured code under the test's plan and fills its result.

The measuring loop is the hot path of the plugin: per call it takes two clock
readings and (for GPU meters) one device sync, nothing else. Meter reads happen only
at window boundaries. Exceptions from the measured code propagate unchanged; meter
failures become :class:`~pytest_energy.meters.base.MeterError` with the cause.

The driver holds the device lock, runs the warm-up and the settle stage, then hands
the code to the first plan that can measure it (:class:`MeasurementPlan`): the
phase-aligned plan for coarse stepped counters, plain windows otherwise or when the
counter's steps cannot be found. It never branches on the plan itself.
"""

from __future__ import annotations

import contextlib
import random
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from pytest_energy.entry import Plan
from pytest_energy.measure.aligned import ALIGNED_MIN_PERIOD_S, AlignedWindows
from pytest_energy.measure.busy import CpuSample, cpu_sample, cpu_usage
from pytest_energy.measure.reader import MeterReader, combined_sync
from pytest_energy.measure.results import EnergyResult, Measured, Trial
from pytest_energy.measure.settle import settle
from pytest_energy.measure.windows import (
    AutoWindows,
    FixedWindows,
    add_window,
    default_max_time,
    make_plan,
    plural,
)
from pytest_energy.meters.base import Meter, capabilities
from pytest_energy.meters.guard import DEFAULT_READ_TIMEOUT_S
from pytest_energy.meters.locks import exclusive, lock_keys, record_wait

# Idle power per meter and when it was measured (meters live for the session).
_IDLE_WATTS: weakref.WeakKeyDictionary[Any, tuple[dict[str, float], int]] = (
    weakref.WeakKeyDictionary())
IDLE_UPDATES = 10
IDLE_MIN_S, IDLE_MAX_S = 0.05, 1.0
IDLE_MAX_AGE_S = 30.0
"""Idle power is measured again when older than this: a device warms up over a session,
and a stale idle baseline skews every dynamic energy after it."""
IDLE_DRIFT_WARNING = 0.05


def note_accuracy(result: EnergyResult) -> None:
    """A phase-aligned reading whose error bar is wide, or could not be checked, says so
    among its warnings (plain windows show their spread and judge it by max_cv)."""
    accuracy = result.accuracy
    if accuracy is not None and result.plan is Plan.PHASE_ALIGNED and accuracy.doubtful:
        result.warnings.append(accuracy.text())


class MeasurementPlan(Protocol):
    """One way to lay out a test's measured windows."""

    def measure(self, fn: Callable[[], Any], result: EnergyResult) -> Measured | None:
        """Run the windows, adding one trial per window to ``result``; ``None`` when
        this plan cannot measure with this meter (the next plan runs)."""
        ...


class Measurer:
    """Measures callables or blocks with one meter, for one test."""

    def __init__(self, meter: Meter, *, device: str, meter_note: str | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns,
                 isolate: bool = True, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
                 sync: Callable[[], Any] | None = None, idle_baseline: bool = False,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None, settle_max_s: float = 0.0,
                 cpu_probe: Callable[[], CpuSample | None] = cpu_sample,
                 progress: Callable[[float], None] | None = None) -> None:
        self.meter = meter
        self._caps = capabilities(meter)
        self.device = device
        self.meter_note = meter_note
        self._reader = MeterReader(meter, read_timeout_s=read_timeout_s, clock=clock,
                                   sync=combined_sync(self._caps.sync, sync),
                                   max_watts=self._caps.max_plausible_watts)
        self._reader.progress = progress  # told the seconds measured, between windows
        self._lock_keys = lock_keys(meter, device) if isolate else []
        self._idle_baseline = idle_baseline and not meter.estimated
        # warm-up until power stops rising: hardware meters only (a model has no ramp)
        self._settle_max_s = settle_max_s if not meter.estimated else 0.0
        self._sleep = sleep
        self._rng = rng or random.Random()
        # other processes' CPU time around each measured part (see measure.busy)
        self._cpu_probe = cpu_probe
        # Counters that step at a coarse period (NVML's total energy) get the
        # phase-aligned plan; meters opt in with ``stepped_counter = True``.
        self._stepped = self._caps.stepped_counter and (
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
            power_limit_w=self._power_limits(),
        )

    def _power_limits(self) -> dict[str, float | None] | None:
        """The meter's power limits, read once per result (``None`` when undeclared)."""
        limits = self._caps.power_limits_w
        if limits is None:
            return None
        try:
            return {str(d): None if w is None else float(w) for d, w in limits().items()}
        except Exception:  # a diagnostic must not break a measurement
            return None

    def read(self) -> dict[str, float]:
        """Read the meter, turning any failure or nonsense into a MeterError."""
        return self._reader.read()

    # ----- running ------------------------------------------------------------------
    def run(self, fn: Callable[[], Any], *, warmup: int, rounds: int | None, trials: int,
            max_time_s: float | None, items_per_call: float | None = None,
            result: EnergyResult | None = None) -> tuple[Any, EnergyResult]:
        """Run ``fn`` ``warmup`` + measured times; return its last value and the result.

        Explicit ``rounds`` are split over the trials, never exceeding them. With
        ``rounds=None`` (auto) the plan sizes the windows while measuring (see
        :mod:`pytest_energy.measure.windows`). The result object is filled as trials
        complete, so a caller holding it sees partial data if the code or the meter
        fails midway.
        """
        result = result if result is not None else self.new_result(items_per_call)
        cover = max_time_s is None  # the default may stretch to cover the sensor
        if max_time_s is None:
            max_time_s = default_max_time(self.meter.update_period_s)
        with self._isolated(result):
            self._reader.began_s = self._reader.seconds()
            self._prepare(result)
            value = self._warm_up(fn, warmup, result)
            if rounds is None and self._settle_max_s > 0:
                value = settle(fn, self._reader, result, max_s=self._settle_max_s,
                               stepped=self._stepped)
            with self._watched(result):
                for plan in self._plans(warmup=warmup, rounds=rounds, trials=trials,
                                        max_time_s=max_time_s, cover=cover):
                    measured = plan.measure(fn, result)
                    if measured is not None:
                        note_accuracy(result)
                        return measured.value, result
        return value, result  # no plan measured (the last one always does)

    def _plans(self, *, warmup: int, rounds: int | None, trials: int, max_time_s: float,
               cover: bool) -> list[MeasurementPlan]:
        """The plans to try, in order: explicit rounds get fixed windows; auto rounds
        get the phase-aligned plan on a stepped counter, then auto-sized windows."""
        if rounds is not None:
            return [FixedWindows(self._reader, make_plan(warmup=warmup, rounds=rounds,
                                                         trials=trials), trials=trials)]
        auto = AutoWindows(self._reader, trials=trials, max_time_s=max_time_s,
                           max_time_default=cover)
        if not self._stepped:
            return [auto]
        aligned = AlignedWindows(self._reader, max_time_s=max_time_s, cover=cover,
                                 sensor_window_s=self._caps.sensor_window_s,
                                 sleep=self._sleep, rng=self._rng, trials=trials)
        return [aligned, auto]

    def _warm_up(self, fn: Callable[[], Any], warmup: int, result: EnergyResult) -> Any:
        value: Any = None
        for _ in range(warmup):
            value = fn()
            self._reader.synced()
            result.warmup_calls += 1
        return value

    @contextmanager
    def _watched(self, result: EnergyResult) -> Iterator[None]:
        """Sample the machine's CPU counters around the measured part: whether other
        processes kept it busy (a few /proc reads, never inside a window)."""
        start = self._cpu_probe()
        try:
            yield
        finally:
            result.add_cpu_usage(cpu_usage(start, self._cpu_probe()))

    @contextmanager
    def _isolated(self, result: EnergyResult) -> Iterator[None]:
        """Hold the device locks (see :mod:`pytest_energy.meters.locks`); note any wait.
        Also without keys (a per-process meter): the lock layer refuses a nested
        measurement either way."""
        with exclusive(self._lock_keys) as info:
            result.lock_wait_s += info.waited_s
            record_wait(result.warnings, result.lock_wait_s, info)
            yield

    def _prepare(self, result: EnergyResult) -> None:
        """Before measuring (under the device lock): the device's conditions (other
        processes, MIG, module-scope readings) and, once per session, its idle power."""
        conditions = self._caps.conditions
        if conditions is not None:
            try:
                found = [str(c) for c in conditions()]
            except Exception as exc:  # diagnostics must not break a measurement
                found = [f"unknown: could not check device conditions: {exc}"]
            result.conditions.extend(c for c in found if c not in result.conditions)
        if self._idle_baseline:
            result.idle_watts = self.idle_watts(result.warnings)

    def idle_watts(self, warnings: list[str] | None = None) -> dict[str, float]:
        """Idle power per domain with nothing running in this process, over
        ``IDLE_UPDATES`` counter updates (within ``IDLE_MIN_S`` and ``IDLE_MAX_S``): the
        baseline of the dynamic energy. Measured again once older than
        ``IDLE_MAX_AGE_S``; a drift beyond ``IDLE_DRIFT_WARNING`` is noted in
        ``warnings``."""
        known = _IDLE_WATTS.get(self.meter)
        now = self._reader.clock()
        if known is not None and (now - known[1]) / 1e9 < IDLE_MAX_AGE_S:
            return known[0]
        watts = self._measure_idle()
        if known is not None and warnings is not None:
            before, after = sum(known[0].values()), sum(watts.values())
            if before > 0 and abs(after / before - 1) > IDLE_DRIFT_WARNING:
                warnings.append(
                    f"idle power drifted {after / before - 1:+.0%} ({before:.3g} W -> "
                    f"{after:.3g} W) over {(now - known[1]) / 1e9:.0f} s: the dynamic "
                    "energy uses the fresh value")
        with contextlib.suppress(TypeError):  # meters that cannot be weakly referenced
            _IDLE_WATTS[self.meter] = (watts, self._reader.clock())
        return watts

    def _measure_idle(self) -> dict[str, float]:
        reader = self._reader
        duration = min(IDLE_MAX_S, max(IDLE_MIN_S, IDLE_UPDATES * self.meter.update_period_s))
        reader.synced()
        before = reader.bracketed_read()
        self._sleep(duration)
        after = reader.bracketed_read()
        seconds = max(after.mid_s - before.mid_s, 1e-9)
        return {d: j / seconds
                for d, j in reader.deltas(before.values, after.values, seconds).items()}

    # ----- a with-block ---------------------------------------------------------------
    @contextmanager
    def block(self, result: EnergyResult, items: float | None = None) -> Iterator[None]:
        """Measure the body of a ``with`` block once, as one trial of one call."""
        with self._isolated(result):
            self._prepare(result)
            with self._watched(result):
                yield from self._block(result, items)

    def _block(self, result: EnergyResult, items: float | None) -> Iterator[None]:
        reader = self._reader
        reader.synced()
        before = reader.bracketed_read()
        start = reader.clock()
        yield
        reader.synced()
        elapsed = reader.clock() - start
        after = reader.bracketed_read()
        seconds = elapsed / 1e9
        trial = Trial(calls=1, window_s=seconds,
                      joules=reader.calls_energy(before, after, seconds),
                      latencies_ns=[elapsed], items=items)
        add_window(result, trial, reader)
        result.trials_reason = (f"{plural(len(result.trials), 'trial')}: one per "
                                "energy.measure() block")
