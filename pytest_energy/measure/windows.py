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
from pytest_energy.measure.reader import INSTANT_READ_S, MeterReader
from pytest_energy.measure.results import EnergyResult, Measured, Trial
from pytest_energy.units import format_duration_ms

# A window should span at least this many counter updates for a useful reading.
UPDATES_PER_WINDOW = 10
# Even a continuous meter (update period 0) gets windows of at least this length, so the
# cost of the two meter reads and of the loop stays small against the measured code.
MIN_WINDOW_FLOOR_S = 0.002
DEFAULT_MAX_TIME_S = 1.0
STEPPED_MAX_TIME_S = 2.0
COARSE_WARNING = "coarse windows:"
COARSE_FRACTION = 0.5  # warn when a window is shorter than this share of the minimum
MIN_DEFAULT_TRIALS = 3
STRETCH_FACTOR = 3.0
"""With the default max_time, windows of long calls may take up to this many times it,
for MIN_DEFAULT_TRIALS trials (a spread needs several; one 500 ms call per second gave
one)."""
READ_LATENCY_FACTOR = 50
"""Auto windows last at least this many meter reads, so read timing stays negligible."""
SLOW_READ_WARNING = "slow meter reads:"
SLOW_READ_SHARE = 0.02
"""Warn when a window's reads took more than this share of it."""
# A suggested max_time leaves this much room over the asked trials' windows: windows of
# the same call count vary by a few percent, and one short of the budget costs a trial.
MAX_TIME_MARGIN = 1.1


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


# ----- how many trials, and why ---------------------------------------------------------
@dataclass(frozen=True)
class TrialCount:
    """How many trials (windows) a plan gives of the ``asked`` ones, and why, in one
    sentence for the reports. A cut nobody sees makes a regression gate that can never
    fail look like one that passes, and advice to raise ``--energy-trials`` changes
    nothing when the measuring time is what ran out: the reason names the setting that
    decided. ``cut_by_time``: fewer than asked because ``max_time`` was spent, which
    the result also carries as a warning."""

    got: int
    asked: int
    reason: str
    cut_by_time: bool = False


def plural(count: int, word: str) -> str:
    """``1 call``, ``3 calls``."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def seconds_text(seconds: float) -> str:
    """``2.65 s``, ``251 ms``: how the reasons print durations."""
    return format_duration_ms(seconds * 1e3)


def budget_text(max_time_s: float, is_default: bool) -> str:
    """The measuring time as the reasons name it (the user's setting, or the default)."""
    if is_default:
        return f"the {seconds_text(max_time_s)} default max_time"
    return f"max_time={seconds_text(max_time_s)}"


def suggest_max_time(seconds: float) -> float:
    """A max_time (two significant digits, rounded up) that holds ``seconds`` of
    windows with :data:`MAX_TIME_MARGIN` to spare: ``13.25`` -> ``15``."""
    needed = max(seconds, 1e-3) * MAX_TIME_MARGIN
    scale = 10.0 ** (1 - math.floor(math.log10(needed)))
    return math.ceil(round(needed * scale, 6)) / scale


def raise_max_time(asked: int, seconds: float) -> str:
    """The advice for trials cut by the measuring time: ``--energy-trials`` cannot help
    there, only a longer max_time can (the marker keyword, the option or the ini)."""
    value = seconds_text(suggest_max_time(seconds))
    return (f'raise max_time for {asked} trials, e.g. max_time="{value}" on the marker, '
            "--energy-max-time or ini energy_max_time")


def fixed_trials(plan: FixedPlan, asked: int) -> TrialCount:
    """Why explicit ``rounds`` gave the plan's trials: the rounds split over the asked
    trials, or fewer rounds than trials (one call each; what the user set, no warning)."""
    got, rounds = len(plan.calls_per_trial), plan.measured_calls
    if got >= asked:
        sizes = sorted(set(plan.calls_per_trial))
        calls = "call" if sizes == [1] else "calls"
        each = "-".join(str(n) for n in sizes)
        return TrialCount(got, asked, f"{plural(got, 'trial')} of {each} {calls}, as asked "
                                      f"(trials={asked}, --energy-trials; rounds={rounds})")
    return TrialCount(got, asked, f"{got} of {asked} trials: rounds={rounds} gives one call "
                                  "per trial (raise rounds, or leave it auto, for more)")


def _why_cut(got: int, calls: int, window_s: float, max_time_s: float, budget: str) -> str:
    """What filled the measuring time: one long call, or windows of calls."""
    window = seconds_text(window_s)
    if calls == 1 and got == 1:
        if window_s >= max_time_s:
            return f"one {window} call exceeds {budget}"
        return f"one {window} call leaves no room for a second window in {budget}"
    if calls == 1:
        return f"calls of {window} fill {budget} in {got} windows of 1 call"
    return f"windows of {calls} calls ({window}) fill {budget} in {plural(got, 'window')}"


def auto_trials(first_window_s: float, first_calls: int, *, trials: int, max_time_s: float,
                default_max_time: bool = False) -> TrialCount:
    """The auto plan's decision after its calibrating window (``first_calls`` calls in
    ``first_window_s``): :func:`remaining_trials` more windows of the same calls, and
    why. With defaults (5 trials, max_time 1 s) a 250 ms call gets 3 trials, a 500 ms
    call 1 and a 2.65 s call 1: the reason says so and names max_time."""
    got = 1 + remaining_trials(first_window_s, trials=trials, max_time_s=max_time_s)
    if got >= trials:
        return TrialCount(got, trials, f"{plural(got, 'trial')} of "
                                       f"{plural(first_calls, 'call')}, as asked "
                                       f"(trials={trials}, --energy-trials)")
    why = _why_cut(got, first_calls, first_window_s, max_time_s,
                   budget_text(max_time_s, default_max_time))
    advice = raise_max_time(trials, trials * first_window_s)
    return TrialCount(got, trials, f"{got} of {trials} trials: {why} ({advice})",
                      cut_by_time=True)


def stretched(count: TrialCount, default_s: float, budget_s: float) -> TrialCount:
    """The trial count of a default max_time stretched for long calls, saying so."""
    note = (f" (the {seconds_text(default_s)} default max_time stretched to "
            f"{seconds_text(budget_s)} for at least {MIN_DEFAULT_TRIALS} trials of "
            f"model-sized calls; at most {STRETCH_FACTOR:g}x; set max_time to choose)")
    return TrialCount(count.got, count.asked, count.reason + note, count.cut_by_time)


def record_trials(result: EnergyResult, count: TrialCount) -> None:
    """Keep the reason on the result; a cut by the measuring time is also a warning."""
    result.trials_reason = count.reason
    if count.cut_by_time and count.reason not in result.warnings:
        result.warnings.append(count.reason)


# ----- measuring ----------------------------------------------------------------------
def run_window(fn: Callable[[], Any], calls: int, reader: MeterReader,
               min_duration_s: float = 0.0) -> tuple[Any, Trial]:
    """One measured window of at least ``calls`` calls lasting at least
    ``min_duration_s``. The loop takes two clock readings and one sync per call,
    nothing else: it is the plugin's hot path.

    Each read is bracketed by the clock, so a slow read's own time is not counted as
    the calls' energy (:meth:`MeterReader.calls_energy`)."""
    clock, sync = reader.clock, reader.sync
    latencies: list[int] = []
    value: Any = None
    min_ns = int(min_duration_s * 1e9)
    reader.synced()
    before = reader.bracketed_read()
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
    window_s = (clock() - window_start) / 1e9
    after = reader.bracketed_read()
    return value, Trial(calls=done, window_s=window_s,
                        joules=reader.calls_energy(before, after, window_s),
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
    _warn_slow_reads(result, trial, reader)
    needed = min_window_s(period)
    if period > 0 and trial.window_s < COARSE_FRACTION * needed and not any(
            w.startswith(COARSE_WARNING) for w in result.warnings):
        result.warnings.append(
            f"{COARSE_WARNING} a {trial.window_s * 1e3:.3g} ms window spans "
            f"{trial.window_s / period:.1f} updates of the {period * 1e3:.3g} ms counter "
            f"(recommended >= {needed / period:.0f}): per-call energy is coarse; raise "
            "rounds or max_time"
        )


def _warn_slow_reads(result: EnergyResult, trial: Trial, reader: MeterReader) -> None:
    """Once per test: the meter's reads take a noticeable share of a window."""
    typical = reader.typical_read_s
    slow = typical >= INSTANT_READ_S and typical > SLOW_READ_SHARE * trial.window_s
    if slow and not any(w.startswith(SLOW_READ_WARNING) for w in result.warnings):
        result.warnings.append(
            f"{SLOW_READ_WARNING} a {reader.meter.name} read takes {typical * 1e3:.3g} ms "
            f"against a {trial.window_s * 1e3:.3g} ms window; the energy the counter "
            "gained while being read is left out, but the meter's timing inside a read "
            f"is unknown: raise rounds or max_time for windows >= {READ_LATENCY_FACTOR}x "
            "the read time")


@dataclass(frozen=True)
class FixedWindows:
    """Explicit ``rounds``: the calls split over the trials, one window each."""

    reader: MeterReader
    plan: FixedPlan
    trials: int | None = None  # the trials asked (None: as many as the plan has)
    name = Plan.WINDOWS

    def measure(self, fn: Callable[[], Any], result: EnergyResult) -> Measured:
        value: Any = None
        for calls in self.plan.calls_per_trial:
            self.reader.tick()
            value, trial = run_window(fn, calls, self.reader)
            add_window(result, trial, self.reader)
        asked = len(self.plan.calls_per_trial) if self.trials is None else self.trials
        record_trials(result, fixed_trials(self.plan, asked))
        return Measured(value)


@dataclass(frozen=True)
class AutoWindows:
    """Auto rounds: the first window runs calls until it spans enough meter updates,
    and the other trials repeat its call count within ``max_time_s``: calibrating on a
    real window, not on a possibly cold warm-up call."""

    reader: MeterReader
    trials: int
    max_time_s: float
    max_time_default: bool = False  # max_time is the default (the reasons say so)
    name = Plan.WINDOWS

    def measure(self, fn: Callable[[], Any], result: EnergyResult) -> Measured:
        target = window_target_s(self.reader.update_period_s, trials=self.trials,
                                 max_time_s=self.max_time_s)
        # long enough that read timing is negligible, within the measuring time
        target = max(target, min(READ_LATENCY_FACTOR * self._read_latency(),
                                 self.max_time_s / max(1, self.trials)))
        value, first = run_window(fn, 1, self.reader, min_duration_s=target)
        add_window(result, first, self.reader)
        count = auto_trials(first.window_s, first.calls, trials=self.trials,
                            max_time_s=self.max_time_s, default_max_time=self.max_time_default)
        budget = self._budget(first.window_s)
        longer = auto_trials(first.window_s, first.calls, trials=self.trials,
                             max_time_s=budget)
        if longer.got > count.got:  # stretch only where it buys trials
            count = stretched(longer, self.max_time_s, budget)
        for _ in range(count.got - 1):
            # the calibrated calls, and never shorter than the minimum: a calibrating
            # window that preemption slowed must not make the others short
            self.reader.tick()
            value, trial = run_window(fn, first.calls, self.reader, min_duration_s=target)
            add_window(result, trial, self.reader)
        record_trials(result, count)
        return Measured(value)

    def _budget(self, first_window_s: float) -> float:
        """The measuring time: ``max_time``, or, when it is the default and model-sized
        calls would get fewer than :data:`MIN_DEFAULT_TRIALS` windows, enough for them,
        up to :data:`STRETCH_FACTOR` times the default (a documented cap)."""
        needed = MIN_DEFAULT_TRIALS * first_window_s * MAX_TIME_MARGIN
        if not self.max_time_default or needed <= self.max_time_s:
            return self.max_time_s
        return min(needed, STRETCH_FACTOR * self.max_time_s)

    def _read_latency(self) -> float:
        """How long one meter read typically takes here (two more reads timed)."""
        self.reader.bracketed_read()
        self.reader.bracketed_read()
        return self.reader.typical_read_s
