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


def auto_calls_per_trial(call_s: float, *, trials: int, window_s: float,
                         max_time_s: float) -> tuple[int, ...]:
    """Size the trials for a call that takes ``call_s`` seconds.

    Each window gets enough calls to last ``window_s``; the total measuring time is
    capped at ``max_time_s`` by first shortening windows, then dropping trials (at least
    one trial of one call always runs).
    """
    call_s = max(call_s, 1e-9)
    per_trial = max(1, math.ceil(window_s / call_s))
    budget_calls = max(1, math.floor(max_time_s / call_s))
    if per_trial * trials > budget_calls:
        per_trial = max(1, budget_calls // trials)
    if per_trial * trials > budget_calls:
        trials = max(1, budget_calls // per_trial)
    return (per_trial,) * max(1, trials)


def make_plan(*, warmup: int, rounds: int | None, trials: int, call_s: float | None,
              update_period_s: float, max_time_s: float) -> Plan:
    """The plan for one test. ``call_s`` is the measured duration of one call (from
    warm-up); it is only needed when ``rounds`` is None (auto)."""
    if rounds is not None:
        return Plan(warmup, split_rounds(rounds, trials))
    if call_s is None:
        raise ValueError("auto rounds need a call duration")
    return Plan(
        warmup,
        auto_calls_per_trial(call_s, trials=trials, window_s=min_window_s(update_period_s),
                             max_time_s=max_time_s),
    )
