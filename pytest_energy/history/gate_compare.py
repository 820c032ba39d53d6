"""The gate's comparison: load the baseline runs, judge this run, decide.

The baseline is a history, not one run: the newest ``--energy-baseline-runs`` runs saved
under the compared name (for ``latest``: on this machine), complete runs only. From
:data:`~pytest_energy.history.noise.MIN_BASELINE_RUNS` runs on, the run-level model of
:mod:`pytest_energy.history.runlevel` decides. Below that the run-to-run spread was
not measured, so the trial-level comparison with the newest run is shown for
information and nothing fails (a gate must not fail on a model of noise it has not
measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.history.compare import (
    CompareStatus,
    CompareVerdict,
    TestComparison,
    compare_entries,
    count_verdicts,
    with_status,
    with_verdict,
)
from pytest_energy.history.metrics import Threshold, format_thresholds
from pytest_energy.history.noise import COMMON_SHIFT, MIN_BASELINE_RUNS
from pytest_energy.history.runlevel import (
    RULE,
    BaselineRun,
    judge_runs,
    reference_value,
    too_few_runs,
)
from pytest_energy.history.runs import RunInfo
from pytest_energy.history.store import HistoryStore

TEST = "Student's t on run-level values (common shift apart, Holm across tests)"
WHOLE_RUN = "whole run"  # how a regressed common shift is named among the regressions
SHOWN = 5  # tests named in the "noise hides the threshold" line


@dataclass
class Decision:
    """What the comparison found, ready for the gate's JSON result."""

    comparisons: list[TestComparison]
    result: dict[str, Any] = field(default_factory=dict)
    regressed: list[str] = field(default_factory=list)
    message: str | None = None  # a warning for the summary (too few baseline runs)
    refused: str | None = None  # every test's meter differs from the baseline's


def baseline_runs(storage: HistoryStore, newest: RunInfo, ref: str, k: int) -> list[RunInfo]:
    """The runs that form the baseline: the run itself for an id, else the newest
    ``k`` complete runs of its name (or, for ``latest``, of this machine)."""
    if ref.isdigit():
        return [newest]
    name = None if ref == "latest" else newest.name
    return storage.runs(fingerprint=newest.fingerprint, name=name, limit=k,
                        complete_only=True) or [newest]


def load(storage: HistoryStore, runs: Sequence[RunInfo], machine: Mapping[str, Any]
         ) -> list[BaselineRun]:
    """Each baseline run's entries, meter identities and reference value (kept only
    when it is the same workload and meter as this run's, in ``machine``)."""
    return [BaselineRun(storage.entries(run.id), storage.meter_identities(run.id),
                        reference_value(run.machine, machine)) for run in runs]


def decide(runs: Sequence[BaselineRun], entries: Sequence[Entry], machine: Mapping[str, Any],
           meter_ids: Mapping[str, str], thresholds: Sequence[Threshold], alpha: float,
           newest_label: str) -> Decision:
    """Judge ``entries`` against the baseline ``runs`` (newest first)."""
    if len(runs) < MIN_BASELINE_RUNS:
        return _informative(runs[0], entries, meter_ids, thresholds, alpha, len(runs),
                            newest_label)
    verdict = judge_runs(runs, entries, thresholds, alpha, current_meters=meter_ids,
                         current_reference=reference_value(machine))
    decision = Decision(verdict.comparisons)
    _fill(decision, newest_label)
    decision.regressed += [WHOLE_RUN] if verdict.shift_regressed else []
    rule = (RULE.format(thresholds=format_thresholds(thresholds), runs=verdict.baseline_runs,
                        alpha=alpha) if thresholds else "report only (--energy-compare-fail=none)")
    decision.result.update(baseline_runs=verdict.baseline_runs, shifts=verdict.shifts,
                           reference_used=verdict.reference_used, rule=rule, test=TEST,
                           undetectable=verdict.undetectable)
    return decision


def _fill(decision: Decision, newest_label: str) -> None:
    comparisons = decision.comparisons
    compared = with_status(comparisons, CompareStatus.COMPARED)
    refused = with_status(comparisons, CompareStatus.NOT_COMPARABLE)
    if refused and not compared:
        decision.refused = f"baseline {newest_label}: {refused[0].reason}"
    decision.regressed = with_verdict(compared, CompareVerdict.REGRESSED)
    decision.result.update(
        tests=[c.to_dict() for c in comparisons], counts=count_verdicts(comparisons),
        improvements=with_verdict(compared, CompareVerdict.IMPROVED))


def _informative(newest: BaselineRun, entries: Sequence[Entry], meter_ids: Mapping[str, str],
                 thresholds: Sequence[Threshold], alpha: float, count: int,
                 newest_label: str) -> Decision:
    """Too few baseline runs: the trial-level comparison with the newest, failing
    nothing (a regression there is shown as "worse, not significant" with why)."""
    comparisons = compare_entries(newest.entries, entries, thresholds, alpha,
                                  baseline_meters=newest.meter_ids, current_meters=meter_ids)
    note = f"not failed: {count} baseline run(s), {MIN_BASELINE_RUNS} needed"
    for comparison in comparisons:
        comparison.metrics = [
            replace(m, verdict=CompareVerdict.WORSE_NS, note=note)
            if m.verdict == CompareVerdict.REGRESSED else m for m in comparison.metrics]
    decision = Decision(comparisons, message=f"energy compare: {too_few_runs(count)}")
    _fill(decision, newest_label)
    decision.result.update(baseline_runs=count, shifts=[], reference_used=False,
                           rule=f"report only: {count} baseline run(s), at least "
                                f"{MIN_BASELINE_RUNS} needed before anything fails")
    return decision


def shift_lines(result: Mapping[str, Any]) -> list[str]:
    """``common shift of the run: joules +12.0% (p 0.2, detects >= 35%)`` per metric,
    then the tests whose noise hides their threshold."""
    lines = _undetectable_lines(result.get("undetectable") or [])
    for shift in result.get("shifts") or []:
        against = " against the reference workload" if shift["relative_to_reference"] else ""
        note = f"; {shift['note']}" if shift.get("note") else ""
        lines.append(f"{COMMON_SHIFT[1:-1]}{against}: {shift['metric']} "
                     f"{shift['change_rel'] * 100:+.1f}% (p {shift['p_value']:.3g}, detects "
                     f">= {shift['detectable'] * 100:.0f}%; {shift['verdict']}{note})")
    return lines


def _undetectable_lines(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line naming the tests too noisy for their threshold (the noisiest first)."""
    if not found:
        return []
    worst = sorted(found, key=lambda u: -u["detectable"])
    named = ", ".join(f"{u['nodeid']} {u['metric']} detects >= {u['detectable'] * 100:.0f}% "
                      f"(threshold {u['threshold'] * 100:.0f}%)" for u in worst[:SHOWN])
    more = f" and {len(worst) - SHOWN} more" if len(worst) > SHOWN else ""
    return [f"noise hides the threshold for {len(worst)} test(s): {named}{more}; save more "
            "baseline runs or measure longer (max_time) to see smaller regressions"]
