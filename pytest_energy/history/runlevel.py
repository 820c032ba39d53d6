"""Judging a run against the last K baseline runs with the run-level noise model.

This is the gate's verdict (see :mod:`pytest_energy.history.noise` for the model): one
value per test and run, the run's common shift separated from each test's own
movement, Holm across the tests, and, where every run measured it, values taken
relative to the reference workload (:mod:`pytest_energy.measure.reference`), which
removes the machine's drift from the common shift. It produces the same
:class:`~pytest_energy.history.compare.TestComparison` records as the trial-level
comparison, so the tables, the JSON and the markdown read them unchanged, plus the
common shift.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.history.compare import (
    CompareStatus,
    CompareVerdict,
    MetricComparison,
    TestComparison,
    disturbance,
)
from pytest_energy.history.machine import meter_difference, meters_match
from pytest_energy.history.metrics import METRICS, Threshold, default_thresholds
from pytest_energy.history.noise import COMMON_SHIFT, MIN_BASELINE_RUNS, Movement, judge_run

REFERENCE = "(reference workload)"
RULE = ("worse beyond {thresholds} and beyond the run-to-run spread of {runs} baseline "
        "run(s) (Student's t; Holm across tests, the common shift apart; alpha {alpha:g})")


@dataclass(frozen=True)
class BaselineRun:
    """One baseline run: its entries, their meter identities and its reference value."""

    entries: Sequence[Entry]
    meter_ids: Mapping[str, str] = field(default_factory=dict)
    reference: float | None = None

    @functools.cached_property
    def by_nodeid(self) -> dict[str, Entry]:
        """The entries by test id: lookups stay linear in the suite's size."""
        return {entry.nodeid: entry for entry in self.entries}


@dataclass
class RunVerdict:
    """The comparisons, the run's common shift per metric, and what could be judged."""

    comparisons: list[TestComparison]
    shifts: list[dict[str, Any]]
    baseline_runs: int
    reference_used: bool
    note: str | None = None
    # tests whose measured noise hides their threshold: {nodeid, metric, detectable,
    # threshold} (a regression just beyond the threshold could not fail there)
    undetectable: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shift_regressed(self) -> bool:
        return any(shift["verdict"] == CompareVerdict.REGRESSED.value for shift in self.shifts)


def reference_value(machine: Mapping[str, Any], like: Mapping[str, Any] | None = None
                    ) -> float | None:
    """The reference workload's J/call recorded with a run; None when absent, or when
    it is not the same workload measured by the same meter as ``like``'s (values of
    another workload or meter say nothing about this one)."""
    reference = machine.get("reference")
    if not isinstance(reference, Mapping):
        return None
    if like is not None:
        other = like.get("reference")
        if not isinstance(other, Mapping) or any(
                reference.get(key) != other.get(key) for key in ("workload", "meter")):
            return None
    value = reference.get("joules_per_call")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _values(entries: Sequence[Entry], metric: str) -> dict[str, float]:
    found = {}
    for entry in entries:
        value = METRICS[metric].value(entry) if entry.is_measured else None
        if value is not None and value > 0 and math.isfinite(value):
            found[entry.nodeid] = value
    return found


def _relative_thresholds(thresholds: Sequence[Threshold], means: Mapping[str, float]
                         ) -> dict[str, float]:
    """Each test's smallest relative threshold (an absolute one over the baseline mean)."""
    return {name: min(t.relative if t.relative is not None
                      else (t.absolute or 0.0) / mean for t in thresholds)
            for name, mean in means.items()}


def _status(entry: Entry, runs: Sequence[BaselineRun], current_ids: Mapping[str, str]
            ) -> tuple[CompareStatus, str | None]:
    if not entry.is_measured:
        return CompareStatus.NOT_MEASURED, "not measured in this run"
    measured = [run for run in runs if (base := run.by_nodeid.get(entry.nodeid)) is not None
                and base.is_measured]
    if len(measured) < 2:
        return CompareStatus.NEW, (f"measured in {len(measured)} of the {len(runs)} "
                                   "baseline runs (2 needed)")
    old_id, new_id = measured[0].meter_ids.get(entry.nodeid), current_ids.get(entry.nodeid)
    if old_id is not None and new_id is not None and not meters_match(old_id, new_id):
        return CompareStatus.NOT_COMPARABLE, meter_difference(old_id, new_id)
    return CompareStatus.COMPARED, None


def _verdict(movement: Movement, threshold: float, alpha: float, family: int
             ) -> CompareVerdict:
    if movement.regressed:
        return CompareVerdict.REGRESSED
    if movement.change >= threshold:
        return CompareVerdict.WORSE_NS
    if movement.change <= -threshold:
        improved = 1.0 - movement.p_value <= alpha / max(1, family)
        return CompareVerdict.IMPROVED if improved else CompareVerdict.BETTER_NS
    return CompareVerdict.UNCHANGED


def _metric(name: str, movement: Movement, baseline: float, current: float, runs: int,
            threshold: float, thresholds: Sequence[Threshold], alpha: float, family: int,
            disturbed: str | None) -> MetricComparison:
    verdict = _verdict(movement, threshold, alpha, family)
    note = (f"own change {movement.change * 100:+.1f}% beside the run's common shift; "
            f"detects >= {movement.detectable * 100:.0f}% here")
    if disturbed is not None and verdict == CompareVerdict.REGRESSED:
        verdict, note = CompareVerdict.WORSE_CONTAMINATED, disturbed
    exceeded = [t.text for t in thresholds if abs(movement.change) >= threshold]
    return MetricComparison(name, baseline, current, runs, 1, p_regress=movement.p_value,
                            p_improve=1.0 - movement.p_value, verdict=verdict,
                            exceeded=exceeded, note=note, detectable=movement.detectable,
                            own_change_rel=movement.change)


def _shift_record(name: str, movement: Movement, reference: bool, disturbed: str | None
                  ) -> dict[str, Any]:
    """The run's common shift; a busy or contended run's shift is never a regression (a
    busy neighbour slows every test at once)."""
    verdict = CompareVerdict.REGRESSED if movement.regressed else CompareVerdict.UNCHANGED
    if disturbed is not None and movement.regressed:
        verdict = CompareVerdict.WORSE_CONTAMINATED
    return {"metric": name, "change_rel": movement.change, "p_value": movement.p_value,
            "detectable": movement.detectable, "verdict": verdict.value,
            "relative_to_reference": reference,
            "note": disturbed if verdict == CompareVerdict.WORSE_CONTAMINATED else None}


def _standard_error(entry: Entry) -> float:
    """The relative standard error of an entry's median J/call, from its trials' CV
    (the median of n values has about 1.25 x the mean's standard error)."""
    spread, values = entry.joules_spread, len(entry.trials)
    if spread is None or spread.cv is None or values < 2:
        return 0.0
    return 1.2533 * spread.cv / math.sqrt(values)


def _excess_noise(entry: Entry, bases: Sequence[Entry]) -> float:
    """How much noisier this run's value is than the baseline runs' typical value (their
    own noise is already in the run-to-run spread): 0 for a run as quiet as they were."""
    typical = statistics.median([_standard_error(b) for b in bases]) if bases else 0.0
    return math.sqrt(max(0.0, _standard_error(entry) ** 2 - typical ** 2))


def _geometric_means(per_run: Sequence[Mapping[str, float]], tests: Iterable[str]
                     ) -> dict[str, float]:
    """Each test's geometric mean over the baseline runs that measured it (two or more)."""
    means = {}
    for test in tests:
        logs = [math.log(run[test]) for run in per_run if test in run]
        if len(logs) >= 2:
            means[test] = math.exp(statistics.fmean(logs))
    return means


class _RunJudge:
    """One metric at a time over the compared tests."""

    def __init__(self, runs: Sequence[BaselineRun], entries: Sequence[Entry],
                 current_reference: float | None, thresholds: Sequence[Threshold],
                 alpha: float) -> None:
        self.runs, self.entries, self.alpha = runs, entries, alpha
        self.thresholds = list(thresholds) or list(default_thresholds())
        self.reference = current_reference if current_reference is not None and all(
            run.reference is not None for run in runs) else None
        self.by_test: dict[str, list[MetricComparison]] = {}
        self.shifts: list[dict[str, Any]] = []
        self.undetectable: list[dict[str, Any]] = []

    def _values(self, name: str, compared: Sequence[str]
                ) -> tuple[list[dict[str, float]], dict[str, float], dict[str, float]]:
        """Per baseline run and for this run, each compared test's value; and each
        test's baseline mean (geometric), for tests measured in two runs or more."""
        per_run = [_values(run.entries, name) for run in self.runs]
        now = {k: v for k, v in _values(self.entries, name).items() if k in compared}
        means = _geometric_means(per_run, now)
        if self.reference is not None:
            for run, values in zip(self.runs, per_run, strict=True):
                values[REFERENCE] = run.reference or 0.0
            now[REFERENCE] = self.reference
        return per_run, now, means

    def _bases(self, nodeid: str) -> list[Entry]:
        return [base for run in self.runs if (base := run.by_nodeid.get(nodeid)) is not None]

    def _note_undetectable(self, metric: str, movement: Movement, threshold: float) -> None:
        if movement.detectable > threshold * 1.0001:
            self.undetectable.append({"nodeid": movement.name, "metric": metric,
                                      "detectable": movement.detectable,
                                      "threshold": threshold})

    def _run_disturbed(self) -> str | None:
        """Why this run's common shift is no evidence: any test of it measured while
        the machine was busy or the device contended."""
        return next((d for d in (disturbance(None, e) for e in self.entries) if d), None)

    def _disturbed(self, entry: Entry) -> str | None:
        return next((d for d in (disturbance(b, entry) for b in self._bases(entry.nodeid))
                     if d), None)

    def judge(self, name: str, compared: Sequence[str]) -> None:
        thresholds = [t for t in self.thresholds if t.metric == name]
        if not thresholds:
            return
        per_run, now, means = self._values(name, compared)
        relative = _relative_thresholds(thresholds, means)
        entries = {e.nodeid: e for e in self.entries}
        noise = {t: _excess_noise(entries[t], self._bases(t)) for t in means} if name in (
            "joules", "joules_per_item") else {}
        verdict = judge_run(per_run, now, threshold=relative, alpha=self.alpha,
                            reference=REFERENCE if self.reference is not None else None,
                            current_noise=noise)
        for movement in verdict.movements:
            if movement.name == COMMON_SHIFT:
                self.shifts.append(_shift_record(name, movement, self.reference is not None,
                                                 self._run_disturbed()))
                continue
            self._note_undetectable(name, movement, relative[movement.name])
            self.by_test.setdefault(movement.name, []).append(_metric(
                name, movement, means[movement.name], now[movement.name], len(self.runs),
                relative[movement.name], thresholds, self.alpha, max(1, len(means)),
                self._disturbed(entries[movement.name])))


def judge_runs(runs: Sequence[BaselineRun], entries: Sequence[Entry],
               thresholds: Sequence[Threshold], alpha: float, *,
               current_meters: Mapping[str, str] | None = None,
               current_reference: float | None = None) -> RunVerdict:
    """Compare every test of this run (``entries``) with the baseline ``runs``."""
    statuses = {e.nodeid: _status(e, runs, current_meters or {}) for e in entries}
    if len(runs) < MIN_BASELINE_RUNS:
        return RunVerdict(_comparisons(entries, statuses, {}), [], len(runs), False,
                          note=too_few_runs(len(runs)))
    compared = [n for n, status in statuses.items() if status[0] == CompareStatus.COMPARED]
    judge = _RunJudge(runs, entries, current_reference, thresholds, alpha)
    for name in dict.fromkeys(t.metric for t in judge.thresholds):
        judge.judge(name, compared)
    comparisons = _comparisons(entries, statuses, judge.by_test) + _gone(runs[0], entries)
    return RunVerdict(comparisons, judge.shifts, len(runs), judge.reference is not None,
                      undetectable=judge.undetectable)


def _gone(newest: BaselineRun, entries: Sequence[Entry]) -> list[TestComparison]:
    """Tests of the newest baseline run that this run no longer has."""
    gone = sorted({e.nodeid for e in newest.entries} - {e.nodeid for e in entries})
    return [TestComparison(n, CompareStatus.GONE, reason="in the baseline, not in this run")
            for n in gone]


def _comparisons(entries: Sequence[Entry],
                 statuses: Mapping[str, tuple[CompareStatus, str | None]],
                 metrics: Mapping[str, list[MetricComparison]]) -> list[TestComparison]:
    return [TestComparison(e.nodeid, statuses[e.nodeid][0], metrics.get(e.nodeid, []),
                           statuses[e.nodeid][1]) for e in entries]


def too_few_runs(runs: int) -> str:
    """What a baseline of fewer than MIN_BASELINE_RUNS runs can and cannot tell."""
    return (f"the baseline holds {runs} run{'s' if runs != 1 else ''}; failing needs at least "
            f"{MIN_BASELINE_RUNS} saved under the same name on this machine (whole runs on a "
            "shared machine move far beyond the trials' spread), so changes are reported, "
            "never failed: save more runs with --energy-save=NAME")
