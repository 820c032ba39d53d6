"""The plain-windows plan: how many calls to run, and how to split them into windows.

An energy counter that changes every ``update_period_s`` cannot resolve a window much
shorter than that period, so each window (trial) must span many updates. Per-call
energy is then window energy / calls in the window, taken over several trials so the
spread is known. The sizing functions are pure arithmetic so they can be tested
exhaustively; :class:`FixedWindows` and :class:`AutoWindows` run them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_energy.entry import Plan
from pytest_energy.measure.reader import MeterReader
from pytest_energy.measure.results import EnergyResult, Measured, Trial

# A window should span at least this many counter updates for a useful reading.
UPDATES_PER_WINDOW = 10
# Even a continuous meter (update period 0) gets windows of at least this length, so the
# cost of the two meter reads and of the loop stays small against the measured code.
MIN_WINDOW_FLOOR_S = 0.002
DEFAULT_MAX_TIME_S = 1.0
STEPPED_MAX_TIME_S = 2.0
COARSE_WARNING = "coarse windows:"
COARSE_FRACTION = 0.5  # warn when a window is shorter than this share of the minimum


def min_window_s(update_period_s: float) -> float:
    """Shortest window that gives a trustworthy reading for a meter with this period."""
    return max(MIN_WINDOW_FLOOR_S, UPDATES_PER_WINDOW * max(0.0, update_period_s))


@dataclass(frozen=True)
class FixedPlan:
    """A fixed measurement plan: ``warmup`` unmeasured calls, then one window per trial."""

    warmup: int
    calls_per_trial: tuple[int, ...]

    @property
    def measured_calls(self) -> int:
        return sum(self.calls_per_trial)

    @property
    def total_calls(self) -> int:
        return self.warmup + self.measured_calls


def split_rounds(rounds: int, trials: int) -> tuple[int, ...]:
    """Split an explicit number of measured calls as evenly as possible over the trials.

    Never more calls than ``rounds``: with fewer rounds than trials, there are fewer
    trials (one call each).
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    trials = max(1, min(trials, rounds))
    base, extra = divmod(rounds, trials)
    return tuple(base + 1 if i < extra else base for i in range(trials))


def default_max_time(update_period_s: float) -> float:
    """Measuring time per test when the user set none: longer for counters that step
    at 50 ms or slower (NVML), whose phase-aligned plan needs ~20 steps for <= 5%."""
    return STEPPED_MAX_TIME_S if update_period_s >= 0.05 else DEFAULT_MAX_TIME_S


def window_target_s(update_period_s: float, *, trials: int, max_time_s: float) -> float:
    """How long the first (calibrating) window of an auto plan should last.

    Long enough to span the meter's updates, short enough that ``trials`` such windows
    fit in ``max_time_s``. When the two conflict, ``max_time_s`` wins and the result
    carries a warning that its windows are coarse.
    """
    return min(min_window_s(update_period_s), max_time_s / max(1, trials))


def remaining_trials(first_window_s: float, *, trials: int, max_time_s: float) -> int:
    """Trials to run after the calibrating one, each with the same number of calls.

    A slow call (whose first window already used much of ``max_time_s``) gets fewer
    trials; at least the calibrating trial always runs.
    """
    if first_window_s <= 0:
        return trials - 1
    fit = math.floor(max_time_s / first_window_s) - 1
    return max(0, min(trials - 1, fit))


def make_plan(*, warmup: int, rounds: int, trials: int) -> FixedPlan:
    """The fixed plan for explicit ``rounds`` (auto plans are sized while measuring: the
    first window runs calls until it lasts :func:`window_target_s`, and the other
    trials repeat its call count)."""
    return FixedPlan(warmup, split_rounds(rounds, trials))


# ----- measuring ----------------------------------------------------------------------
def run_window(fn: Callable[[], Any], calls: int, reader: MeterReader,
               min_duration_s: float = 0.0) -> tuple[Any, Trial]:
    """One measured window of ``calls`` calls, or, with ``min_duration_s``, of as many
    calls as it takes to last that long (the calibrating window). The loop takes two
    clock readings and one sync per call, nothing else: it is the plugin's hot path."""
    clock, sync = reader.clock, reader.sync
    latencies: list[int] = []
    value: Any = None
    min_ns = int(min_duration_s * 1e9)
    reader.synced()
    before = reader.read()
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
    after = reader.read()
    return value, Trial(calls=done, window_s=window_ns / 1e9,
                        joules=reader.deltas(before, after, window_ns / 1e9),
                        latencies_ns=latencies)


def add_window(result: EnergyResult, trial: Trial, reader: MeterReader) -> None:
    """Record a plain window: no energy makes the result invalid (below the counter's
    resolution), and a window well short of the recommendation warns, once per test
    (windows of the same call count vary by a few percent)."""
    result.trials.append(trial)
    name, period = reader.meter.name, reader.update_period_s
    if trial.total_joules <= 0 and result.invalid_reason is None:
        result.invalid_reason = (
            f"meter {name!r} saw no energy over a {trial.window_s * 1e3:.3g} ms "
            f"window (counter update period {period * 1e3:.3g} ms): "
            "the window is below the counter's resolution; raise rounds or max_time"
        )
    needed = min_window_s(period)
    if period > 0 and trial.window_s < COARSE_FRACTION * needed and not any(
            w.startswith(COARSE_WARNING) for w in result.warnings):
        result.warnings.append(
            f"{COARSE_WARNING} a {trial.window_s * 1e3:.3g} ms window spans "
            f"{trial.window_s / period:.1f} updates of the {period * 1e3:.3g} ms counter "
            f"(recommended >= {needed / period:.0f}): per-call energy is coarse; raise "
            "rounds or max_time"
        )


@dataclass(frozen=True)
class FixedWindows:
    """Explicit ``rounds``: the calls split over the trials, one window each."""

    reader: MeterReader
    plan: FixedPlan
    name = Plan.WINDOWS

    def measure(self, fn: Callable[[], Any], result: EnergyResult) -> Measured:
        value: Any = None
        for calls in self.plan.calls_per_trial:
            value, trial = run_window(fn, calls, self.reader)
            add_window(result, trial, self.reader)
        return Measured(value)


@dataclass(frozen=True)
class AutoWindows:
    """Auto rounds: the first window runs calls until it spans enough meter updates,
    and the other trials repeat its call count within ``max_time_s``: calibrating on a
    real window, not on a possibly cold warm-up call."""

    reader: MeterReader
    trials: int
    max_time_s: float
    name = Plan.WINDOWS

    def measure(self, fn: Callable[[], Any], result: EnergyResult) -> Measured:
        target = window_target_s(self.reader.update_period_s, trials=self.trials,
                                 max_time_s=self.max_time_s)
        value, first = run_window(fn, 1, self.reader, min_duration_s=target)
        add_window(result, first, self.reader)
        more = remaining_trials(first.window_s, trials=self.trials, max_time_s=self.max_time_s)
        for _ in range(more):
            value, trial = run_window(fn, first.calls, self.reader)
            add_window(result, trial, self.reader)
        return Measured(value)
