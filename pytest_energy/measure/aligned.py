"""The phase-aligned plan: blocks of calls whose counted counter steps sample the
workload evenly, for coarse stepped counters (NVML's total energy).

Where the samples go is decided in :mod:`pytest_energy.measure.sampling`; the counter's
step times come from :mod:`pytest_energy.measure.tracker`. This module runs it:

1. **Calibrate.** Timed calls (counted as warm-up) give the call durations: regular,
   a repeating pattern (a *unit* of several calls), or irregular.
2. **Blocks.** Each block pauses to its phase, runs whole units back to back, reads the
   counter (the *reference*), runs units past the steps it counts, and reads again.
   Every counted step's sensor window then lies inside the calls, whatever the
   window's length: short units read before the first call only where the step is at
   least twice the declared sensor window away (else calls run first, a *lead-in*);
   long units always lead in. A read within a guard of a step is ambiguous and is
   taken again after one more unit.
3. **Stop** after the budget; a default max_time stretches, up to
   :data:`~pytest_energy.measure.windows.STRETCH_FACTOR` times it (at most
   :data:`HARD_CAP_S`) and never past that, until :data:`SETS_BEFORE_STOPPING` whole
   phase sets agree well inside the accuracy limit (the check needs at least two
   independent estimates, and two can agree by chance).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.entry import Plan
from pytest_energy.measure.blocks import (
    Shape,
    Units,
    calibration_s,
    place_block,
    step_position,
    unit_seconds,
)
from pytest_energy.measure.reader import MeterReader, Reading
from pytest_energy.measure.results import EnergyResult, Measured, Trial
from pytest_energy.measure.sampling import (
    detect_group,
    irregular,
    lattice,
    set_phases,
    set_rotations,
    set_size,
)
from pytest_energy.measure.statistics import whole_set_groups
from pytest_energy.measure.tracker import StepTracker
from pytest_energy.measure.windows import (
    STRETCH_FACTOR,
    TrialCount,
    budget_text,
    plural,
    record_trials,
)

ALIGNED_MIN_PERIOD_S = 0.005  # counters stepping faster get plain windows
PARTIAL_COVERAGE = "partial sensor coverage:"
MULTI_DEVICE_WARNING = "several devices:"
CALIBRATION_S = 0.25
"""Calls are timed for about this long before the plan is chosen (pattern detection)."""
CALIBRATION_MAX_S = 0.6
CALIBRATION_CALLS = 36
HARD_CAP_S = 8.0
"""A default max_time stretches to STRETCH_FACTOR times itself, at most this long, to
get two whole phase sets."""
MAX_BLOCKS = 256
SETS_BEFORE_STOPPING = 4
"""Whole phase sets before measuring may stop short of the cap: a bar from two sets
rests on one degree of freedom, and two sets that agreed by chance (0.1% apart, both 8%
off jittered calls) once stopped a test at 3 s under a bar of +-0.1%."""
AMBIGUOUS_RETRIES = 4
IRREGULAR_STEPS = 5
UNKNOWN_WINDOW_SPLIT = 4  # sets are sized as if an unknown window were 1/4 of the period


@dataclass
class _Run:
    tracker: StepTracker
    shape: Shape
    begin_s: float
    budget_s: float
    cap_s: float
    rng: random.Random
    phases: list[float] = field(default_factory=list)
    rotations: list[float] = field(default_factory=list)
    set_index: int = -1
    last_block_s: float = 0.0
    shaped_period_s: float = 0.0  # the period the shape was chosen for
    missed: int = 0  # blocks dropped because an expected step did not come

    def next_phase(self) -> tuple[float, int, int]:
        if not self.phases:
            self.set_index += 1
            if not self.rotations:
                self.rotations = set_rotations(self.rng)
            self.phases = set_phases(self.shape.set_size, self.rotations.pop())
        return self.phases.pop(0), self.set_index, self.shape.set_size

    @property
    def between_sets(self) -> bool:
        return not self.phases


class AlignedWindows:
    """Blocks of calls sampled by a stepped counter (see the module doc); measures
    nothing (``None``) when the counter's steps cannot be found, so plain windows run.

    ``cover``: max_time is the default, and may stretch to get two whole phase sets.
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
        # the counter's grid first: the session's first test also times its period,
        # a one-off cost left out of the test's measuring time
        grid = reader.find_grid()
        if grid is None:
            result.warnings.append(
                f"the {self._name} counter did not step within "
                f"{3 * reader.meter.update_period_s:.3g} s: measured with plain windows")
            return None
        begin = reader.seconds()
        units = Units(fn, reader)
        self._calibrate(units)
        result.warmup_calls += units.calls
        calibration = list(units.latencies)
        units.clear()
        tracker = StepTracker.start(reader, grid)
        if not reader.period_checked and not tracker.refresh(force=True):
            return None  # a second step, some periods later, corrects the period
        run = self._start(tracker, calibration, begin, result)
        units.group = run.shape.group
        while self._more(run, result):
            reader.tick()
            result.lead_in_calls += units.align()
            if run.between_sets:
                self._reshape(run, result, calibration_s(calibration), begin)
            if not self._block(units, run, result):
                break
        tracker.save_period()
        result.step_period_s = tracker.period_s
        self._judge(run, result, spent=reader.seconds() - begin)
        return Measured(units.value)

    # ----- set-up -----------------------------------------------------------------------
    def _calibrate(self, units: Units) -> None:
        """Timed calls until their durations say what the workload looks like."""
        start = self.reader.seconds()
        while True:
            units.call()
            elapsed = self.reader.seconds() - start
            durations = units.latencies
            regular = len(durations) >= 4 and statistics.pstdev(durations) <= (
                0.05 * statistics.fmean(durations))
            if elapsed >= CALIBRATION_MAX_S or len(durations) >= CALIBRATION_CALLS or (
                    elapsed >= CALIBRATION_S and (regular or len(durations) < 3)):
                return

    def _start(self, tracker: StepTracker, calibration: list[int], begin: float,
               result: EnergyResult) -> _Run:
        period = tracker.period_s
        seconds = calibration_s(calibration)
        group = detect_group(seconds)
        unit = unit_seconds(seconds, group)
        budget = self.max_time_s
        cap = min(STRETCH_FACTOR * budget, max(budget, HARD_CAP_S)) if self.cover else budget
        shape = self._shape(period, unit, group, seconds, cap - (self.reader.seconds() - begin))
        result.plan, result.step_period_s = Plan.PHASE_ALIGNED, period
        result.sensor_window_s = self.sensor_window_s
        result.sampling_residual = shape.residual
        domains = self.reader.meter.domains()
        if len(domains) > 1:
            result.warnings.append(
                f"{MULTI_DEVICE_WARNING} windows follow the counter of {domains[0]}; "
                f"{', '.join(domains[1:])} step on their own grids, so their share carries "
                "up to a counter step of quantisation per window; measure one GPU per "
                "test (device='cuda:N') for the best accuracy")
        return _Run(tracker, shape, begin, budget, cap, self._rng, shaped_period_s=period)

    def _shape(self, period: float, unit: float, group: int, seconds: list[float],
               room_s: float) -> Shape:
        declared = self.sensor_window_s
        window = period / UNKNOWN_WINDOW_SPLIT if declared is None else min(declared, period)
        # a clean first read needs the counted step's window inside the calls: trust a
        # declared window only with a margin of two (an unlisted sensor may be wider)
        clean = period if declared is None else min(period, 2 * declared)
        odd = irregular(seconds, group)
        if odd:  # no pattern to align to: long blocks whose samples fall far from
            # their start (a renewal process just started is not yet typical). Where
            # the samples land is then random whatever the phase: each block is an
            # independent estimate (a set of one), and the error bar comes from all of
            # them (sets of two once agreed by chance while their blocks did not)
            return Shape(unit, group, True, 1, IRREGULAR_STEPS, period, 0.0, odd, period)
        if unit < period:
            blocks = max(2, int(room_s / (2 * period)))
            size = set_size(window, unit, cap=max(1, min(16, blocks // 3)))
            return Shape(unit, group, False, size, 1, clean, irregular=odd)
        # each block's samples drift through the unit, ``spacing`` apart; a set spreads
        # the blocks' first samples over one spacing
        shape = lattice(period, unit, window, room_s)
        return Shape(unit, group, True, shape.set_size, shape.steps, period,
                      shape.residual, odd, shape.spacing_s)

    def _reshape(self, run: _Run, result: EnergyResult, calibration: list[float],
                 begin: float) -> None:
        """Between sets: when the test's own steps corrected the session's period, or
        its blocks timed the unit differently from the calibration, choose the shape
        again (the lattice of long units depends on both)."""
        period = run.tracker.period_s
        unit = _timed_unit(run, result)
        if abs(period / run.shaped_period_s - 1) <= 1e-3 and abs(
                unit / run.shape.unit_s - 1) <= 2e-3:
            return
        shape = self._shape(period, unit, run.shape.group, calibration,
                            run.cap_s - (self.reader.seconds() - begin))
        run.shape = _alike_sets(run.shape, shape)
        run.shaped_period_s = period

    # ----- the loop ---------------------------------------------------------------------
    def _more(self, run: _Run, result: EnergyResult) -> bool:
        """Whether another block runs: until the budget; with a default max_time, on
        until enough whole sets give a settled error bar (well inside the limit);
        never past the cap (a block that would end past it does not start)."""
        now = self.reader.seconds() - run.begin_s
        blocks = [t for t in result.trials if t.phase_set is not None]
        if self._at_limit(run, len(blocks), now):
            return False
        if now < run.budget_s or not blocks:
            return True
        if not self.cover:
            return False
        if not run.between_sets or len(whole_set_groups(blocks)) < SETS_BEFORE_STOPPING:
            return True  # finish the set (its blocks count only when whole), get enough
        accuracy = result.accuracy
        return accuracy is not None and not accuracy.settled

    @staticmethod
    def _at_limit(run: _Run, blocks: int, now: float) -> bool:
        """The safety net on blocks, or the next block would end past the cap."""
        tried = blocks + run.missed
        estimate = run.last_block_s or (run.shape.steps + 2) * run.tracker.period_s + (
            run.shape.unit_s)
        return tried >= MAX_BLOCKS or (tried > 0 and now + estimate > run.cap_s)

    def _block(self, units: Units, run: _Run, result: EnergyResult) -> bool:
        """One block; ``False`` when the counter stopped stepping."""
        reader, shape = self.reader, run.shape
        started = reader.seconds()
        tracker = run.tracker
        if not tracker.refresh():
            result.warnings.append(f"the {self._name} counter stopped stepping while "
                                   "measuring: the result rests on fewer blocks")
            return False
        phase, set_index, size = run.next_phase()
        start, lead_until = place_block(run.shape, run.tracker.grid, run.tracker.guard_s,
                                        reader.seconds(), phase)
        pause = start - reader.seconds()
        if pause > 0:
            self._sleep(pause)
        units.clear()
        if lead_until is not None:
            units.until(lead_until)
        ref = self._unambiguous_read(units, run)
        first = tracker.grid.next_step(ref.after_s if ref else reader.seconds())
        units.until(first + (shape.steps - 1) * tracker.period_s + tracker.guard_s)
        end = self._unambiguous_read(units, run)
        run.last_block_s = reader.seconds() - started
        if ref is not None and end is not None:
            window = end.before_s - ref.after_s
            steps = tracker.grid.steps_between(ref.after_s, end.before_s)
            joules = reader.deltas(ref.values, end.values, window)
            if not steps or sum(joules.values()) > 0:
                position = _position(shape, steps, first, units)
                result.trials.append(Trial(
                    calls=len(units.latencies), window_s=window, joules=joules,
                    latencies_ns=list(units.latencies), counted_steps=steps,
                    phase_set=(set_index, size), phase=phase, position=position))
                return True
        _not_a_sample(run, phase, reads_landed_on_steps=ref is None or end is None)
        return True

    def _unambiguous_read(self, units: Units, run: _Run) -> Reading | None:
        """A bracketed read with no step within a guard of it (else one more unit and
        again; ``None`` when reads keep landing on steps): whether a step is counted
        never hangs on a read's timing."""
        tracker = run.tracker
        for _ in range(AMBIGUOUS_RETRIES):
            reading = self.reader.bracketed_read()
            if tracker.grid.steps_between(reading.before_s - tracker.guard_s,
                                          reading.after_s + tracker.guard_s) == 0:
                return reading
            units.unit()
        return None

    # ----- the verdict on the run -----------------------------------------------------
    def _judge(self, run: _Run, result: EnergyResult, spent: float) -> None:
        blocks = [t for t in result.trials if t.phase_set is not None]
        result.invalid_reason = result.invalid_reason or self._invalid(run, blocks)
        if not any(t.counted_steps for t in blocks):
            return
        whole = len(whole_set_groups(blocks))
        record_trials(result, TrialCount(len(blocks), len(blocks) if self.trials is None
                                         else self.trials,
                                         self._reason(run, len(blocks), whole, spent)))
        if whole == 0 and blocks:
            result.warnings.append(
                f"{PARTIAL_COVERAGE} {len(blocks)} of the {run.shape.set_size} phases the "
                "sensor needs to see every part of a call ran; the accuracy rests on the "
                "blocks' spread; raise max_time")

    def _invalid(self, run: _Run, blocks: list[Trial]) -> str | None:
        """Why the blocks give no number (``None``: they do)."""
        if not any(t.counted_steps for t in blocks):
            return (f"no window spanned a step of the {run.tracker.period_s * 1e3:.3g} ms "
                    f"{self._name} counter: raise max_time")
        return None

    def _reason(self, run: _Run, blocks: int, whole: int, spent: float) -> str:
        """Why the test got the blocks it got, in one sentence."""
        layout = (f"{plural(blocks, 'block')} in {plural(whole, 'whole phase set')} "
                  f"of {run.shape.set_size}, phase-aligned to the "
                  f"{run.tracker.period_s * 1e3:.3g} ms counter")
        if run.missed:
            layout += (f" ({plural(run.missed, 'block')} not counted: a read landed on a "
                       "counter step, or a step wandered from where it was expected)")
        budget = budget_text(self.max_time_s, self.cover)
        if spent > run.budget_s * 1.05:
            return (f"{layout}, measured {spent:.2g} s (over {budget} for two whole sets "
                    f"and a checked accuracy, capped at {run.cap_s:.2g} s)")
        return f"{layout}, measured {spent:.2g} s, sized to {budget}"


def _not_a_sample(run: _Run, phase: float, *, reads_landed_on_steps: bool) -> None:
    """A block that gave no sample. Reads that kept landing on steps: the phase put
    the step where every read falls (a unit as long as the period, its step on a unit
    boundary), so its set is given up and the next one, at another rotation, starts;
    the guard stays (widening it once made most phases ambiguous and a whole test gave
    no number). The expected step did not come: it wandered past the read, so widen
    the guard, re-anchor, and measure the phase again."""
    run.missed += 1
    if reads_landed_on_steps:
        run.phases.clear()
    else:
        run.tracker.missed()
        run.phases.insert(0, phase)


def _position(shape: Shape, steps: int, step_s: float, units: Units) -> float | None:
    """Where a short unit's one counted step fell, by the calls' own timing."""
    if steps != 1 or shape.long:
        return None
    return step_position(step_s, units.starts, units.latencies, shape.group)


def _timed_unit(run: _Run, result: EnergyResult) -> float:
    """The unit's duration as the blocks so far timed it (the shape's until then)."""
    blocks = [t for t in result.trials if t.phase_set is not None]
    calls = sum(t.calls for t in blocks)
    if calls < 2 * run.shape.group:
        return run.shape.unit_s
    return sum(sum(t.latencies_ns) for t in blocks) / 1e9 / calls * run.shape.group


def _alike_sets(old: Shape, new: Shape) -> Shape:
    """Short units keep their set size when re-timed: it stratifies phases over the
    unit, and a unit a little longer or shorter needs no other one. Sets of one size
    stay alike estimates; the shrinking time left once gave sets of 9, 7, 5 and then
    1 block, and the lone block swamped the error bar."""
    if new.long or old.long or new.irregular != old.irregular:
        return new
    return dataclasses.replace(new, set_size=old.set_size)
