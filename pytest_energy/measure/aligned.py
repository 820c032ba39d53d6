"""The phase-aligned plan: windows that start and end right after counter steps.

For coarse stepped counters (NVML's total energy). The windows come in phase sets that
sample every part of the calls evenly (the arithmetic is in
:mod:`pytest_energy.measure.antialias` and :mod:`pytest_energy.measure.schedule`);
this module runs them: it sleeps to each block's phase, runs the lead-in and the
measured calls, reads the counter, and says what the result cannot vouch for.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_energy.entry import Plan
from pytest_energy.measure.antialias import (
    AntialiasPlan,
    choose_plan,
    complete_sets,
    unsampled_tail_s,
)
from pytest_energy.measure.grid import StepGrid
from pytest_energy.measure.reader import MeterReader
from pytest_energy.measure.results import EnergyResult, Measured, Trial
from pytest_energy.measure.schedule import NextBlock, PhaseSchedule, block_end
from pytest_energy.measure.windows import (
    TrialCount,
    budget_text,
    plural,
    raise_max_time,
    record_trials,
    seconds_text,
)

ALIGNED_MIN_PERIOD_S = 0.005  # counters stepping faster get plain windows
PARTIAL_COVERAGE = "partial sensor coverage:"
MULTI_DEVICE_WARNING = "several devices:"
UNSAMPLED_TAIL_WARNING = "unsampled call tail:"
UNSAMPLED_TAIL_SHARE = 0.02
MAX_ALIGNED_BLOCKS = 256  # a safety net: plans hold at most 64 blocks plus a set


def _ms(seconds: float | None) -> str:
    return "an unknown part" if seconds is None else f"{seconds * 1e3:.3g} ms"


def add_block(result: EnergyResult, trial: Trial, meter_name: str) -> None:
    """Record an aligned window: short by design, so only a window that counted steps
    but no energy is suspect."""
    result.trials.append(trial)
    steps = trial.counted_steps or 0
    if steps > 0 and trial.total_joules <= 0 and result.invalid_reason is None:
        result.invalid_reason = (
            f"meter {meter_name!r} stepped {steps} time(s) "
            "during a window but reported no energy")


def aligned_trials(windows: int, whole_sets: int, plan: AntialiasPlan, *, asked: int | None,
                   max_time_s: float, default_max_time: bool = False) -> TrialCount:
    """Why the aligned plan gave ``windows`` trials: whole phase sets sized to the
    measuring time (the trials setting does not size them), so fewer windows than
    asked is a cut by max_time, and more sets need a longer one."""
    layout = (f"{plural(windows, 'window')} in {plural(whole_sets, 'whole phase set')} of "
              f"{plan.set_size}, phase-aligned to the {seconds_text(plan.period_s)} counter")
    budget = budget_text(max_time_s, default_max_time)
    if asked is None or windows >= asked:
        return TrialCount(windows, windows if asked is None else asked,
                          f"{layout}, sized to {budget}")
    seconds = plan.period_s + math.ceil(asked / plan.set_size) * plan.set_s
    return TrialCount(windows, asked, f"{windows} of {asked} trials: {layout}, sized to "
                                      f"{budget} ({raise_max_time(asked, seconds)})",
                      cut_by_time=True)


@dataclass
class _Run:
    """One aligned run's state: the grid, the schedule and the latest call estimate."""

    grid: StepGrid
    schedule: PhaseSchedule
    estimate_s: float
    begin_s: float
    first_trial: int

    def sets(self, result: EnergyResult) -> list[tuple[int | None, int]]:
        """This run's blocks, by phase set."""
        return [t.phase_set or (None, 1) for t in result.trials[self.first_trial:]]


class AlignedWindows:
    """Windows that start and end right after counter steps, in phase sets; measures
    nothing (``None``) when the counter's steps cannot be found, so plain windows run.

    ``cover``: finish the first whole phase set even past ``max_time_s`` (the default
    when the user set no max_time); otherwise stop at ``max_time_s`` and warn when no
    set is whole. ``trials``: the trials asked (``None``: no judgement of the count).
    """

    def __init__(self, reader: MeterReader, *, max_time_s: float, cover: bool,
                 sensor_window_s: float | None, sleep: Callable[[float], None],
                 rng: random.Random, trials: int | None = None) -> None:
        self.reader = reader
        self.trials = trials
        self.max_time_s = max_time_s
        self.cover = cover
        self.sensor_window_s = sensor_window_s
        self._sleep = sleep
        self._rng = rng

    @property
    def _name(self) -> str:
        return str(self.reader.meter.name)

    def measure(self, fn: Callable[[], Any], result: EnergyResult) -> Measured | None:
        reader = self.reader
        start = reader.clock()
        value = fn()  # one timed call sizes the plan (counted as warm-up)
        reader.synced()
        result.warmup_calls += 1
        call_s = max((reader.clock() - start) / 1e9, 1e-6)
        grid = reader.find_grid()
        if grid is None:
            result.warnings.append(
                f"the {self._name} counter did not step within "
                f"{3 * reader.meter.update_period_s:.3g} s: measured with plain windows")
            return None
        run = self._start(grid, call_s, result)
        while (placed := self._next(run, result)) is not None:
            value = self._block(fn, run, placed, result)
        self._judge(run, result, spent=reader.seconds() - run.begin_s)
        done = run.sets(result)
        record_trials(result, aligned_trials(
            len(done), complete_sets(done), run.schedule.plan, asked=self.trials,
            max_time_s=self.max_time_s, default_max_time=self.cover))
        return Measured(value)

    def _start(self, grid: StepGrid, call_s: float, result: EnergyResult) -> _Run:
        plan = choose_plan(grid.period_s, call_s, budget_s=self.max_time_s, cover=self.cover,
                           sensor_window_s=self.sensor_window_s)
        schedule = PhaseSchedule(plan, shift=self._rng.random())
        result.plan, result.step_period_s = Plan.PHASE_ALIGNED, grid.period_s
        result.sensor_window_s = plan.window_s
        domains = self.reader.meter.domains()
        if len(domains) > 1:
            result.warnings.append(
                f"{MULTI_DEVICE_WARNING} windows follow the counter of {domains[0]}; "
                f"{', '.join(domains[1:])} step on their own grids, so their share carries "
                "up to a counter step of quantisation per window; measure one GPU per "
                "test (device='cuda:N') for the best accuracy")
        return _Run(grid, schedule, call_s, self.reader.seconds(), len(result.trials))

    def _next(self, run: _Run, result: EnergyResult) -> NextBlock | None:
        """The next block, or ``None`` when the run is over: past ``max_time_s`` with
        (when covering) a whole set done, or at the safety net."""
        placed = run.schedule.next_block(run.grid, self.reader.seconds(), run.estimate_s)
        over = placed.finish_s > run.begin_s + self.max_time_s
        covering = self.cover and run.schedule.plan.cover  # unknown windows: no promise
        done = run.sets(result)
        if done and over and (not covering or complete_sets(done) >= 1):
            return None
        return None if len(done) >= MAX_ALIGNED_BLOCKS else placed

    def _block(self, fn: Callable[[], Any], run: _Run, placed: NextBlock,
               result: EnergyResult) -> Any:
        """Pause to the block's phase, run its lead-in and its measured calls."""
        reader, clock, sync = self.reader, self.reader.seconds, self.reader.sync
        pause = placed.start_s - clock()
        if pause > 0:
            self._sleep(pause)
        # lead-in (only where planned: a clock a hair short of a clean start after
        # the sleep must not cost a call): puts the window at its phase
        while placed.reference_s > placed.start_s and clock() < placed.reference_s:
            fn()
            if sync is not None:
                sync()
            result.lead_in_calls += 1
        t_ref = clock()
        before = reader.read()
        end, minimum = block_end(run.schedule.plan, run.grid, t_ref)
        latencies: list[int] = []
        while True:
            call_start = reader.clock()
            value = fn()
            if sync is not None:
                sync()
            call_end = reader.clock()
            latencies.append(call_end - call_start)
            if call_end / 1e9 >= end and len(latencies) >= minimum:
                break
        t_end = clock()
        after = reader.read()
        add_block(result, Trial(
            calls=len(latencies), window_s=t_end - t_ref,
            joules=reader.deltas(before, after, t_end - t_ref), latencies_ns=latencies,
            counted_steps=run.grid.steps_between(t_ref, t_end),
            phase_set=(placed.phase_set, placed.set_size)), self._name)
        run.estimate_s = max(sum(latencies) / len(latencies) / 1e9, 1e-6)
        return value

    def _judge(self, run: _Run, result: EnergyResult, spent: float) -> None:
        """What the run cannot vouch for: no counted step (invalid), a partial phase
        set, an unsampled call tail, or time spent past the default max_time."""
        plan = run.schedule.plan  # as replanned on the measured calls
        period, estimate = run.grid.period_s, run.estimate_s
        if not any(t.counted_steps for t in result.trials):
            result.invalid_reason = (
                f"no window spanned a step of the {period * 1e3:.3g} ms {self._name} "
                "counter: raise max_time")
        elif complete_sets(done := run.sets(result)) == 0 and plan.window_s is not None and (
                plan.window_s < period * 0.98):  # a known part-time sensor left partly blind
            result.warnings.append(
                f"{PARTIAL_COVERAGE} {len(done)} of the {done[0][1]} phases the sensor needs "
                f"to see every part of a call ran within max_time {self.max_time_s:g} s; "
                "calls with power structure finer than the counter period may be "
                f"misjudged; raise max_time to about {plan.set_s + period:.2g} s")
        elif (unsampled := unsampled_tail_s(plan, estimate)) > UNSAMPLED_TAIL_SHARE * estimate:
            result.warnings.append(_tail_warning(unsampled, estimate, period))
        if self.cover and spent > self.max_time_s * 1.05 and result.valid:
            result.warnings.append(
                _over_time_warning(plan.window_s, period, spent, self.max_time_s, estimate))


def _tail_warning(unsampled: float, estimate: float, period: float) -> str:
    """Long calls that are no whole number of periods: the end of each call's last,
    partial period falls between the sensor's windows (``bench/accuracy.py --calls
    110`` shows the error for pulsed power there)."""
    return (
        f"{UNSAMPLED_TAIL_WARNING} the last {unsampled * 1e3:.3g} ms of each "
        f"{estimate * 1e3:.3g} ms call ({unsampled / estimate:.0%}) fall between "
        f"the sensor's windows (the call is no whole number of {period * 1e3:.3g} "
        "ms counter periods); if the power differs there, the energy per call is "
        "off by a similar or larger share")


def _over_time_warning(window_s: float | None, period: float, spent: float,
                       max_time_s: float, estimate: float) -> str:
    return (
        f"measured {spent:.2g} s, over the {max_time_s:g} s default max_time, to "
        f"sample every part of a {estimate * 1e3:.3g} ms call (the sensor "
        f"averages {_ms(window_s)} of every {period * 1e3:.3g} ms); set "
        "max_time to cap it")
