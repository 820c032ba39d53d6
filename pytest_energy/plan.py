"""How many calls to run, and how to split them into measured windows.

An energy counter that changes every ``update_period_s`` cannot resolve a window much
shorter than that period, so each window (trial) must span many updates. Per-call
energy is then window energy / calls in the window, taken over several trials so the
spread is known. This module is pure arithmetic so it can be tested exhaustively.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A window should span at least this many counter updates for a useful reading.
UPDATES_PER_WINDOW = 10
# Even a continuous meter (update period 0) gets windows of at least this length, so the
# cost of the two meter reads and of the loop stays small against the measured code.
MIN_WINDOW_FLOOR_S = 0.002


def min_window_s(update_period_s: float) -> float:
    """Shortest window that gives a trustworthy reading for a meter with this period."""
    return max(MIN_WINDOW_FLOOR_S, UPDATES_PER_WINDOW * max(0.0, update_period_s))


@dataclass(frozen=True)
class Plan:
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


DEFAULT_MAX_TIME_S = 1.0
STEPPED_MAX_TIME_S = 2.0


def default_max_time(update_period_s: float) -> float:
    """Measuring time per test when the user set none: 1 s, or 2 s for counters that
    step at 50 ms or slower (NVML), whose phase-aligned plan needs ~20 steps for <= 5%."""
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


def make_plan(*, warmup: int, rounds: int, trials: int) -> Plan:
    """The fixed plan for explicit ``rounds`` (auto plans are sized while measuring: the
    first window runs calls until it lasts :func:`window_target_s`, and the other
    trials repeat its call count)."""
    return Plan(warmup, split_rounds(rounds, trials))
