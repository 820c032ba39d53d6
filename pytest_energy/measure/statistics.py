"""Per-plan statistics: how the trials of a result become per-call energy.

The two plans read their windows differently. Plain windows each hold whole calls, so
a window's energy / calls is an estimate and the median over windows is robust. The
phase-aligned plan's windows are aliased by design (each samples one phase of the
calls); only their pool over whole phase sets is an estimate, as mean power over the
counted steps times the mean call duration. Each plan therefore has one strategy here
that computes every statistic of a result at once (:class:`EnergyStats`), and
:class:`~pytest_energy.measure.results.EnergyResult` never branches on the plan.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pytest_energy.entry import Plan
from pytest_energy.measure.sampling import (
    Accuracy,
    accuracy_from_blocks,
    accuracy_from_sets,
    cyclic_weights,
)

if TYPE_CHECKING:
    from pytest_energy.measure.results import EnergyResult, Trial

MIN_WEIGHED = 3
"""Blocks a phase set needs before its samples are weighed by where they fell (two
samples on a circle always weigh half each)."""
SET_VALUES_FROM = 5
"""Phase-aligned results report one value per whole phase set from this many sets on,
else one per window: a regression test needs several values, and three sets can never
be significant."""


@dataclass(frozen=True)
class EnergyStats:
    """Every energy statistic of a valid result, computed once by its plan's strategy.

    ``values``: the per-call energy of each trial (or phase set) the spread and the
    regression tests use; ``idle_values``: the idle energy per call behind each of them
    (zero without an idle baseline).
    """

    values: list[float]
    idle_values: list[float]
    joules_per_call: float
    joules_per_item: float | None
    dynamic_joules_per_call: float | None
    spread: dict[str, float | None]
    by_domain: dict[str, float]
    watts: float | None
    accuracy: Accuracy


class PlanStatistics(Protocol):
    """How one plan turns a result's trials into statistics."""

    def usable(self, result: EnergyResult) -> list[Trial]:
        """The trials the estimate rests on (none: the result has no estimate)."""
        ...

    def compute(self, result: EnergyResult) -> EnergyStats:
        """The statistics of a valid result."""
        ...


def _idle_watts(result: EnergyResult) -> float:
    return sum((result.idle_watts or {}).get(d, 0.0) for d in result.domains)


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    mean = statistics.fmean(values)
    cv: float | None = (statistics.stdev(values) / mean
                        if len(values) > 1 and mean > 0 else None)
    return {"min": min(values), "max": max(values), "cv": cv}


def _ratio(numerator: float, denominator: float | None) -> float | None:
    """``numerator / denominator``, ``None`` when the denominator is missing or zero."""
    return numerator / denominator if denominator else None


def _dynamic_median(result: EnergyResult, values: list[float],
                    idle_values: list[float]) -> float | None:
    if result.idle_watts is None:
        return None
    return statistics.median([v - i for v, i in zip(values, idle_values, strict=True)])


class WindowStatistics:
    """Plain windows: the median over windows of window energy / calls."""

    def usable(self, result: EnergyResult) -> list[Trial]:
        return list(result.trials)

    def compute(self, result: EnergyResult) -> EnergyStats:
        counted = [t for t in result.trials if t.calls > 0]
        values = [t.joules_per_call for t in counted]
        idle = _idle_watts(result)
        idle_values = [idle * t.window_s / t.calls for t in counted]
        seconds = sum(t.window_s for t in result.trials)
        return EnergyStats(
            values=values, idle_values=idle_values,
            joules_per_call=statistics.median(values),
            joules_per_item=self._per_item(result),
            dynamic_joules_per_call=_dynamic_median(result, values, idle_values),
            spread=_spread(values),
            by_domain={domain: statistics.median(t.joules.get(domain, 0.0) / t.calls
                                                 for t in result.trials)
                       for domain in result.domains},
            watts=_ratio(sum(t.total_joules for t in result.trials), seconds),
            accuracy=self._accuracy(values),
        )

    @staticmethod
    def _accuracy(values: list[float]) -> Accuracy:
        """Windows are independent repeats: their spread is the error bar."""
        relative = accuracy_from_sets(values)
        if relative is None:
            return Accuracy(None, "one window, nothing to compare it with")
        return Accuracy(relative, f"spread of {len(values)} windows")

    @staticmethod
    def _per_item(result: EnergyResult) -> float | None:
        """Median over windows of window energy / items in the window (``None`` when a
        window's items are unknown)."""
        per_item = []
        for trial in result.trials:
            items = trial.items if trial.items is not None else (
                result.items_per_call * trial.calls if result.items_per_call else None)
            if not items:
                return None
            per_item.append(trial.total_joules / items)
        return statistics.median(per_item)


def whole_set_groups(trials: Sequence[Trial]) -> list[list[Trial]]:
    """The blocks of each phase set all of whose blocks are among ``trials``."""
    groups: dict[int, list[Trial]] = {}
    sizes: dict[int, int] = {}
    for trial in trials:
        if trial.phase_set is not None:
            groups.setdefault(trial.phase_set[0], []).append(trial)
            sizes[trial.phase_set[0]] = trial.phase_set[1]
    return [group for index, group in groups.items() if len(group) >= sizes[index]]


class AlignedStatistics:
    """Phase-aligned blocks, pooled: the calls' mean power over every counted step
    (each sensor sample weighs the same) times the mean call duration. Every block's
    phase is random on its own, so every block counts; whole phase sets, each an
    independent estimate, give the error bar (else neighbouring blocks do)."""

    def usable(self, result: EnergyResult) -> list[Trial]:
        """The blocks that counted a step, of whole phase sets only when any set is
        whole (a partial set would weigh some phases twice against the error bar the
        whole sets give)."""
        counted = [t for t in result.trials if t.calls > 0 and t.counted_steps]
        whole = [t for group in whole_set_groups(counted) for t in group]
        return whole or counted

    @staticmethod
    def _weights(trials: Sequence[Trial]) -> list[float] | None:
        """Each sample's share of the unit, for a phase set whose blocks each say where
        their one step fell (``None``: every counted step weighs the same). Jittered
        calls move samples off their planned phases, and equal weights then count some
        stretch of the calls twice: every set of a test once read 6% low, its samples
        bunched on the same side of a power edge."""
        positions = [t.position for t in trials
                     if t.counted_steps == 1 and t.position is not None]
        if len(trials) < MIN_WEIGHED or len(positions) < len(trials):
            return None
        return cyclic_weights(positions)

    def _power(self, result: EnergyResult, trials: Sequence[Trial]) -> float:
        """The calls' mean power over the counted steps of ``trials`` (one phase set,
        or the pool)."""
        period = result.step_period_s
        assert period is not None
        weights = self._weights(trials)
        if weights is not None:
            return sum(w * t.total_joules for w, t in zip(weights, trials, strict=True)) / period
        return self._power_pooled(result, trials)

    @staticmethod
    def _power_pooled(result: EnergyResult, trials: Sequence[Trial]) -> float:
        assert result.step_period_s is not None
        steps = sum(t.counted_steps or 0 for t in trials)
        return sum(t.total_joules for t in trials) / (steps * result.step_period_s)

    @staticmethod
    def _call_seconds(trials: Sequence[Trial]) -> float:
        return sum(sum(t.latencies_ns) for t in trials) / 1e9 / sum(t.calls for t in trials)

    def _per_call(self, result: EnergyResult, trials: list[Trial],
                  sets: list[list[Trial]]) -> float:
        """The estimate: the mean power of every counted step times the mean call time;
        sets weighed by where their samples fell are averaged instead (the pool has no
        one weighing: each set's samples tile the unit on their own)."""
        if any(self._weights(group) is not None for group in sets):
            power = statistics.fmean(self._power(result, group) for group in sets)
        else:
            power = self._power_pooled(result, trials)
        return power * self._call_seconds(trials)

    def _pooled(self, result: EnergyResult, trials: Sequence[Trial]) -> float:
        return self._power(result, trials) * self._call_seconds(trials)

    def _idle_per_call(self, idle: float, trials: Sequence[Trial]) -> float:
        """Idle energy of one call: the estimate covers the calls' busy time only."""
        return idle * self._call_seconds(trials)

    def compute(self, result: EnergyResult) -> EnergyStats:
        trials = self.usable(result)
        sets = whole_set_groups(trials)
        set_values = [self._pooled(result, group) for group in sets]
        groups, values = self._values(result, trials, sets, set_values)
        idle = _idle_watts(result)
        per_call = self._per_call(result, trials, sets)
        energy = sum(t.total_joules for t in trials)
        steps = sum(t.counted_steps or 0 for t in trials)
        accuracy = self.accuracy(result, trials, set_values)
        spread = _spread(values)
        spread["cv"] = None if accuracy.relative is None else accuracy.relative / 2
        return EnergyStats(
            values=values,
            idle_values=[self._idle_per_call(idle, group) for group in groups],
            joules_per_call=per_call,
            joules_per_item=_ratio(per_call, result.items_per_call),
            dynamic_joules_per_call=(None if result.idle_watts is None else
                                     per_call - self._idle_per_call(idle, trials)),
            spread=spread,
            by_domain=self._by_domain(result, trials, per_call, energy),
            watts=(_ratio(energy, steps * result.step_period_s)
                   if result.step_period_s is not None else None),
            accuracy=accuracy,
        )

    def _values(self, result: EnergyResult, trials: list[Trial], sets: list[list[Trial]],
                set_values: list[float]) -> tuple[list[list[Trial]], list[float]]:
        """The trials behind each value, and the values: one per whole set when there
        are enough, else one per block (wider, but several values)."""
        if len(sets) >= SET_VALUES_FROM:
            return sets, set_values
        return [[t] for t in trials], [self._pooled(result, [t]) for t in trials]

    def accuracy(self, result: EnergyResult, trials: list[Trial],
                 set_values: list[float]) -> Accuracy:
        """The error bar: from the whole phase sets' values (independent, each
        stratified) when there are two or more, else from neighbouring blocks in phase
        order; plus the lattice's systematic share."""
        extra = result.sampling_residual
        if len(set_values) >= 2:
            return Accuracy(accuracy_from_sets(set_values, extra),
                            f"{len(set_values)} whole phase sets")
        ordered = sorted(trials, key=lambda t: t.phase if t.phase is not None else 0.0)
        relative = accuracy_from_blocks([self._pooled(result, [t]) for t in ordered], extra)
        if relative is None:
            return Accuracy(None, "one block, nothing to compare it with")
        return Accuracy(relative, f"{len(trials)} blocks at independent phases")

    @staticmethod
    def _by_domain(result: EnergyResult, trials: list[Trial], per_call: float,
                   energy: float) -> dict[str, float]:
        """The pooled estimate, split by each domain's share of the energy."""
        return {d: per_call * sum(t.joules.get(d, 0.0) for t in trials) / energy
                if energy > 0 else 0.0 for d in result.domains}


STATISTICS: dict[Plan, PlanStatistics] = {
    Plan.WINDOWS: WindowStatistics(),
    Plan.PHASE_ALIGNED: AlignedStatistics(),
}
