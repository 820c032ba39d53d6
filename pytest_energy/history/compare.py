"""Comparing a run with one baseline run, trial by trial: one verdict per test and metric.

Everything here is a pure function of :class:`~pytest_energy.entry.Entry` objects. It is
the gate's comparison **for information** when the baseline holds fewer than 3 runs
(then nothing fails: see :mod:`pytest_energy.history.gate_compare`); from 3 runs on the
run-level model of :mod:`pytest_energy.history.runlevel` decides, producing the same
records, so the tables, the JSON and the markdown read both alike.

The trial rule: a test is *worse* on a metric when the change of its median exceeds a
threshold (``joules:10%``, ``joules:+0.5``, see :mod:`pytest_energy.history.metrics`)
and a one-sided exact Mann-Whitney U test on the per-trial values gives p <= alpha
(:mod:`pytest_energy.history.stats`). Within-run trials say nothing about the drift
between runs, which is why this rule alone never fails a build.

A test is compared only when both runs measured it validly (:attr:`Entry.is_measured`)
with the same meter (see :mod:`pytest_energy.history.machine`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.entry import Entry, JsonEnum
from pytest_energy.history.machine import meter_difference, meters_match
from pytest_energy.history.metrics import (
    DEFAULT_ALPHA,
    METRICS,
    Threshold,
    default_thresholds,
)
from pytest_energy.history.stats import UTest, mann_whitney, smallest_p
from pytest_energy.report.cells import plain_table


class CompareVerdict(JsonEnum):
    """How one metric of one test changed, as the JSON report spells it."""

    REGRESSED = "regressed"
    WORSE_CONTAMINATED = "worse, contaminated"  # a regression measured under contention
    IMPROVED = "improved"
    WORSE_NS = "worse, not significant"
    BETTER_NS = "better, not significant"
    UNCHANGED = "unchanged"
    NO_DATA = "no data"


class CompareStatus(JsonEnum):
    """Whether a test could be compared at all, as the JSON report spells it."""

    COMPARED = "compared"
    NEW = "new"
    NOT_COMPARABLE = "not comparable"
    NOT_MEASURED = "not measured"
    GONE = "gone"


# A test's verdict: its worst metric verdict, or why it was not compared.
TestVerdict = CompareVerdict | CompareStatus

# Worst first: a test's verdict is the first of these any of its metrics got.
_METRIC_ORDER = (CompareVerdict.REGRESSED, CompareVerdict.WORSE_CONTAMINATED,
                 CompareVerdict.IMPROVED, CompareVerdict.WORSE_NS, CompareVerdict.BETTER_NS,
                 CompareVerdict.UNCHANGED)
NOTABLE = _METRIC_ORDER[:-1]
VERDICT_ORDER: tuple[TestVerdict, ...] = (
    *_METRIC_ORDER, CompareStatus.NEW, CompareStatus.NOT_COMPARABLE,
    CompareStatus.NOT_MEASURED, CompareStatus.GONE, CompareVerdict.NO_DATA)
TABLE_HEADERS = ["test", "metric", "baseline", "this run", "change", "p (trials)", "verdict"]


@dataclass
class MetricComparison:
    """One metric of one test: both values, the change and its significance."""

    metric: str
    baseline: float | None
    current: float | None
    n_baseline: int
    n_current: int
    p_regress: float | None = None
    p_improve: float | None = None
    verdict: CompareVerdict = CompareVerdict.NO_DATA
    exceeded: list[str] = field(default_factory=list)  # thresholds passed (either way)
    note: str | None = None
    # run-level comparisons (history.runlevel): n_baseline counts runs, not trials
    detectable: float | None = None  # smallest relative regression that could fail here
    own_change_rel: float | None = None  # the change beside the run's common shift

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def change_rel(self) -> float | None:
        if self.baseline is None or self.current is None or self.baseline == 0:
            return None
        return (self.current - self.baseline) / self.baseline

    @property
    def p_value(self) -> float | None:
        """The p value in the direction of the change."""
        change = self.change
        if change is None:
            return None
        return self.p_regress if change >= 0 else self.p_improve

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "baseline": self.baseline, "current": self.current,
            "change": self.change, "change_rel": self.change_rel,
            "p_regress": self.p_regress, "p_improve": self.p_improve,
            "p_value": self.p_value, "n_baseline": self.n_baseline, "n_current": self.n_current,
            "verdict": self.verdict.value, "thresholds": list(self.exceeded), "note": self.note,
            "detectable": self.detectable, "own_change_rel": self.own_change_rel,
        }


def compare_values(metric: str, baseline: float | None, current: float | None,
                   baseline_trials: Sequence[float], current_trials: Sequence[float],
                   thresholds: Sequence[Threshold], alpha: float) -> MetricComparison:
    """The verdict for one metric: threshold AND one-sided U test (see module doc)."""
    result = MetricComparison(metric, baseline, current, len(baseline_trials),
                              len(current_trials))
    if baseline is None or current is None:
        result.note = "not measured in " + ("the baseline" if baseline is None else "this run")
        return result
    test = mann_whitney(baseline_trials, current_trials)
    result.p_regress, result.p_improve = test.p_greater, test.p_less
    worse, better = _beyond(thresholds, baseline, current)
    result.exceeded = worse or better
    result.verdict = _verdict(bool(worse), bool(better), test, alpha)
    if worse or better:
        result.note = _too_few_trials(len(baseline_trials), len(current_trials), alpha)
    return result


def _beyond(thresholds: Sequence[Threshold], baseline: float, current: float
            ) -> tuple[list[str], list[str]]:
    """The thresholds the change passes for the worse, and for the better."""
    return ([t.text for t in thresholds if t.exceeded(baseline, current)],
            [t.text for t in thresholds if t.bettered(baseline, current)])


def _verdict(worse: bool, better: bool, test: UTest, alpha: float) -> CompareVerdict:
    """Beyond a threshold AND significant in that direction; else how close it came."""
    if worse:
        return CompareVerdict.REGRESSED if test.p_greater <= alpha else CompareVerdict.WORSE_NS
    if better:
        return CompareVerdict.IMPROVED if test.p_less <= alpha else CompareVerdict.BETTER_NS
    return CompareVerdict.UNCHANGED


def _too_few_trials(n: int, m: int, alpha: float,
                    reasons: Sequence[str | None] = ()) -> str | None:
    """Say so when ``n`` vs ``m`` trials can never be significant at ``alpha``, and
    name the setting that gives more. ``--energy-trials`` changes nothing for long
    calls, whose trials are cut to fit max_time: ``reasons`` (the entries'
    ``trials_reason``, which names the setting that decided) picks the advice; without
    them both settings are named."""
    floor = smallest_p(n, m)
    if floor <= alpha:
        return None
    max_time = "--energy-max-time, ini energy_max_time or max_time= on the marker"
    choices = (  # (what a trials_reason names, the advice)
        ("max_time", "the trials were cut to fit the measuring time: raise max_time "
                     f"({max_time}) for at least 5 trials"),
        ("raise rounds", "explicit rounds give one call per trial: raise rounds to at "
                         "least 5, or leave them auto"),
        ("--energy-trials", "run at least 5 trials (--energy-trials)"),
    )
    known = [reason for reason in reasons if reason]
    advice = next((text for needle, text in choices
                   if any(needle in reason for reason in known)),
                  "run at least 5 trials: --energy-trials, or for long calls, whose trials "
                  f"are cut to fit the measuring time, a longer max_time ({max_time})")
    return (f"{n} vs {m} trials cannot be significant at alpha={alpha:g} (smallest p "
            f"{floor:.3g}); {advice}")


@dataclass
class TestComparison:
    """One test against its baseline entry."""

    __test__ = False  # not a pytest test class

    nodeid: str
    status: CompareStatus
    metrics: list[MetricComparison] = field(default_factory=list)
    reason: str | None = None

    @property
    def verdict(self) -> TestVerdict:
        """The worst verdict of its metrics, else why it was not compared."""
        verdicts = [m.verdict for m in self.metrics]
        for verdict in _METRIC_ORDER:
            if verdict in verdicts:
                return verdict
        return self.status if self.status != CompareStatus.COMPARED else CompareVerdict.NO_DATA

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "status": self.status.value,
                "verdict": self.verdict.value, "reason": self.reason,
                "metrics": [m.to_dict() for m in self.metrics]}


@dataclass(frozen=True)
class _Judge:
    """The settings of one comparison, applied test by test."""

    names: Sequence[str]  # the metrics compared
    thresholds: Sequence[Threshold]  # the thresholds reported (default ones when none)
    alpha: float
    baseline_meters: Mapping[str, str]
    current_meters: Mapping[str, str]

    def compare(self, entry: Entry, base: Entry | None) -> TestComparison:
        nodeid = entry.nodeid
        if not entry.is_measured:
            return TestComparison(nodeid, CompareStatus.NOT_MEASURED,
                                  reason="not measured in this run")
        if base is None:
            return TestComparison(nodeid, CompareStatus.NEW, reason="no result in the baseline")
        if not base.is_measured:
            return TestComparison(nodeid, CompareStatus.NEW,
                                  reason="not measured in the baseline")
        old_id, new_id = self.baseline_meters.get(nodeid), self.current_meters.get(nodeid)
        if old_id is not None and new_id is not None and not meters_match(old_id, new_id):
            return TestComparison(nodeid, CompareStatus.NOT_COMPARABLE,
                                  reason=meter_difference(old_id, new_id))
        return TestComparison(nodeid, CompareStatus.COMPARED,
                              [self._metric(name, base, entry) for name in self.names])

    def _metric(self, name: str, base: Entry, entry: Entry) -> MetricComparison:
        metric = METRICS[name]
        result = compare_values(
            name, metric.value(base), metric.value(entry), metric.trial_values(base),
            metric.trial_values(entry), [t for t in self.thresholds if t.metric == name],
            self.alpha)
        disturbed = disturbance(base, entry)
        if disturbed is not None and result.verdict == CompareVerdict.REGRESSED:
            # Another process drew power or CPU time during the windows: not evidence
            # enough to fail (a busy neighbour must never fail a passing change).
            result.verdict = CompareVerdict.WORSE_CONTAMINATED
            result.note = disturbed
        return result


def disturbance(base: Entry | None, entry: Entry) -> str | None:
    """Why a regression of this test is no evidence (the note of a ``worse,
    contaminated`` verdict): other processes on the device, or a busy machine, while
    either side was measured (``base`` None: this run alone). None when both were
    measured undisturbed."""
    sides = [(label, e) for label, e in (("the baseline", base), ("this run", entry))
             if e is not None]
    contaminated = [label for label, e in sides if e.contaminated]
    if contaminated:
        return (f"measured under contention in {' and '.join(contaminated)}; "
                "not failing on it, rerun on a quiet machine")
    return _busy_note(sides)


def _busy_note(sides: Sequence[tuple[str, Entry]]) -> str | None:
    """``inconclusive: machine busy in this run (other processes used ...)``."""
    busy = [(label, cause) for label, e in sides for cause in e.busy_causes]
    if not busy:
        return None
    where = " and ".join(dict.fromkeys(label for label, _ in busy))
    return (f"inconclusive: machine busy in {where} ({busy[0][1]}); not failing on it, "
            "rerun on a quiet machine")


def compare_entries(baseline: Iterable[Entry], current: Iterable[Entry],
                    thresholds: Sequence[Threshold], alpha: float = DEFAULT_ALPHA, *,
                    baseline_meters: Mapping[str, str] | None = None,
                    current_meters: Mapping[str, str] | None = None) -> list[TestComparison]:
    """Compare every test of ``current`` with the same nodeid in ``baseline``.

    ``*_meters`` map nodeid to a meter identity (see
    :func:`~pytest_energy.history.machine.meter_identity`); a test whose identity
    differs is "not comparable" (and says what differs). The metrics compared are
    those named by the thresholds (joules when there are none).
    """
    judge = _Judge(names=list(dict.fromkeys(t.metric for t in thresholds)) or ["joules"],
                   thresholds=list(thresholds) or list(default_thresholds()), alpha=alpha,
                   baseline_meters=baseline_meters or {}, current_meters=current_meters or {})
    old = {e.nodeid: e for e in baseline}
    results = [judge.compare(entry, old.pop(entry.nodeid, None)) for entry in current]
    results.extend(TestComparison(nodeid, CompareStatus.GONE,
                                  reason="in the baseline, not in this run") for nodeid in old)
    return results


# ----- text: the gate's terminal summary and pytest-energy compare ------------------------------


def _verdict_text(metric: MetricComparison) -> str:
    """``REGRESSED (joules:10%); a note``: shouting only what fails a build."""
    verdict = metric.verdict
    text = str(verdict).upper() if verdict == CompareVerdict.REGRESSED else str(verdict)
    if metric.exceeded:
        text += f" ({','.join(metric.exceeded)})"
    if metric.note:
        text += f"; {metric.note}"
    return text


def _metric_row(nodeid: str, metric: MetricComparison) -> list[str]:
    shown = METRICS[metric.metric]
    rel, p = metric.change_rel, metric.p_value
    return [nodeid, shown.label, shown.format(metric.baseline), shown.format(metric.current),
            "-" if rel is None else f"{rel * 100:+.1f}%",
            "-" if p is None else f"{p:.3g} ({_sample(metric)})",
            _verdict_text(metric)]


def _sample(metric: MetricComparison) -> str:
    """What the p value was computed from: baseline runs, or trials of both runs."""
    if metric.detectable is not None:
        return f"{metric.n_baseline} runs"
    return f"{metric.n_baseline} vs {metric.n_current}"


def comparison_rows(comparisons: Iterable[TestComparison], *, notable_only: bool = True
                    ) -> list[list[str]]:
    """Rows for a text table (terminal summary and CLI): one per compared metric.

    ``notable_only`` keeps regressions, improvements and changes beyond a threshold
    that are not significant; unchanged metrics are then only counted.
    """
    rows = []
    for comparison in comparisons:
        if not comparison.metrics and not notable_only:
            rows.append([comparison.nodeid, "-", "-", "-", "-", "-",
                         f"{comparison.status.value}: {comparison.reason}"])
        rows.extend(_metric_row(comparison.nodeid, metric) for metric in comparison.metrics
                    if not notable_only or metric.verdict in NOTABLE)
    return rows


def count_verdicts(comparisons: Iterable[TestComparison]) -> dict[str, int]:
    """How many tests got each verdict, worst first (a stable order for people)."""
    counts: dict[TestVerdict, int] = {}
    for comparison in comparisons:
        counts[comparison.verdict] = counts.get(comparison.verdict, 0) + 1
    rank = {verdict: i for i, verdict in enumerate(VERDICT_ORDER)}
    ordered = sorted(counts.items(), key=lambda kv: rank.get(kv[0], len(rank)))
    return {verdict.value: n for verdict, n in ordered}


def counts_text(counts: Mapping[str, int]) -> str:
    """``1 regressed, 3 unchanged``: the counts line of the summaries and junitxml."""
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())


def comparison_summary(comparisons: Sequence[TestComparison], *, notable_only: bool = True,
                       nothing: str = "") -> list[str]:
    """The table of notable changes and the ``compared:`` counts line.

    The gate's terminal summary and ``pytest-energy compare`` print exactly this;
    ``nothing`` is what the counts line says when no test was there to count.
    """
    rows = comparison_rows(comparisons, notable_only=notable_only)
    lines = plain_table(TABLE_HEADERS, rows).splitlines() if rows else []
    lines.append("compared: " + (counts_text(count_verdicts(comparisons)) or nothing))
    return lines


def with_status(comparisons: Iterable[TestComparison], status: CompareStatus
                ) -> list[TestComparison]:
    """The comparisons of one status, e.g. those actually compared."""
    return [c for c in comparisons if c.status == status]


def with_verdict(comparisons: Iterable[TestComparison], verdict: TestVerdict) -> list[str]:
    """The nodeids of the tests with one verdict (``REGRESSED``: what fails a build)."""
    return [c.nodeid for c in comparisons if c.verdict == verdict]
