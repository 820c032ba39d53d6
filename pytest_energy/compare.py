"""Comparing a run with a baseline: thresholds, significance and machine fingerprints.

Everything here is a pure function of report entries (see :mod:`pytest_energy.state`)
so the plugin, the ``pytest-energy`` CLI and ``bench/verdicts.py`` share one verdict.

**The rule.** A test *regressed* on a metric when both hold:

1. the change of the metric's median exceeds a threshold (``joules:10%`` relative,
   ``joules:+0.5`` absolute), and
2. the difference is significant given both runs' trial spread: a **one-sided exact
   Mann-Whitney U test** on the per-trial values (J/call of each window, ...) gives
   p <= alpha (default 0.01).

Why both: the threshold alone fails on noisy machines (a 10% threshold with CV 10% per
trial would fail an unchanged test about one run in six); the test alone fails on
tiny, real but irrelevant changes, and at alpha = 0.01 it still fails about one
unchanged test in a hundred. Together, with 5 trials per run and CV 3%, an unchanged
test fails about once in 10^5 runs and a 20% regression is detected in more than 99.9%
of runs (``python bench/verdicts.py``). The U test is rank based: one outlier window
(a background job) cannot make a difference significant the way it can in a t-test,
and it needs no normality. Its price: with few trials it cannot reach small p values
at all (5 vs 5: p >= 1/252 = 0.004; 3 vs 3: p >= 0.05), which the comparison says
instead of silently passing.

**Fingerprints.** A baseline is only meaningful on the same hardware and meter. The
machine fingerprint hashes the stable hardware facts (OS, architecture, CPU model, CPU
count) and leaves out what changes between identical machines or between runs on one
machine: the hostname (CI runners get a new one per job), clocks, temperatures, kernel
and Python versions. Per test, the meter identity (meter name, estimated or not,
domains, GPU model names, RAPL zones, the estimate meter's watts per core) must match
too; GPU UUIDs and PCI ids are left out so that two runners with the same GPU model
compare. Differences that may explain a change without making the runs incomparable
(kernel, Python, GPU driver, power limit) are reported as notes.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import platform
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.errors import EnergyConfigError

DEFAULT_FAIL = "joules:10%"
DEFAULT_ALPHA = 0.01
SIGNIFICANCE_TEST = "one-sided Mann-Whitney U on per-trial values (exact up to 24 trials)"
EXACT_MAX_TRIALS = 24  # above this many trials in both runs together, a normal approximation

# ----- metrics --------------------------------------------------------------------------


def _trial_joules_per_call(entry: Mapping[str, Any], trial: Mapping[str, Any]) -> float | None:
    calls = trial.get("calls") or 0
    joules = trial.get("joules") or {}
    if calls <= 0 or not joules:
        return None
    return float(sum(joules.values())) / calls


def _trial_joules_per_item(entry: Mapping[str, Any], trial: Mapping[str, Any]) -> float | None:
    items = trial.get("items")
    if items is None and entry.get("items"):
        items = float(entry["items"]) * (trial.get("calls") or 0)
    joules = trial.get("joules") or {}
    if not items or not joules:
        return None
    return float(sum(joules.values())) / float(items)


def _trial_latency(entry: Mapping[str, Any], trial: Mapping[str, Any]) -> float | None:
    value = trial.get("latency_ms_median")
    return None if value is None else float(value)


def _entry_latency(entry: Mapping[str, Any]) -> float | None:
    latency = entry.get("latency_ms") or {}
    value = latency.get("median") if isinstance(latency, Mapping) else None
    return None if value is None else float(value)


def _entry_float(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    def get(entry: Mapping[str, Any]) -> float | None:
        value = entry.get(key)
        return None if value is None else float(value)

    return get


@dataclass(frozen=True)
class Metric:
    """A compared quantity: its headline value per test and its value per trial."""

    name: str
    unit: str  # "J" or "ms": the unit of an absolute threshold
    label: str
    value: Callable[[Mapping[str, Any]], float | None]
    per_trial: Callable[[Mapping[str, Any], Mapping[str, Any]], float | None]

    def trial_values(self, entry: Mapping[str, Any]) -> list[float]:
        values = []
        for trial in entry.get("trials") or []:
            value = self.per_trial(entry, trial)
            if value is not None and math.isfinite(value):
                values.append(value)
        return values

    def format(self, value: float | None) -> str:
        from pytest_energy.units import format_duration_ms, format_energy

        if value is None:
            return "-"
        if self.unit == "ms":
            return format_duration_ms(value)
        return format_energy(value)


METRICS: dict[str, Metric] = {
    "joules": Metric("joules", "J", "J/call", _entry_float("joules_per_call"),
                     _trial_joules_per_call),
    "joules_per_item": Metric("joules_per_item", "J", "J/item", _entry_float("joules_per_item"),
                              _trial_joules_per_item),
    "latency_ms": Metric("latency_ms", "ms", "latency", _entry_latency, _trial_latency),
}

# ----- thresholds (--energy-compare-fail) ------------------------------------------------

_EXPR = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.+?)\s*$")
FAIL_HELP = ("comma-separated METRIC:N% (relative) or METRIC:+X (absolute, J or ms, units "
             "allowed: joules:+50mJ, latency_ms:+2ms); metrics: " + ", ".join(METRICS)
             + "; or none (compare and report, never fail)")


@dataclass(frozen=True)
class Threshold:
    """``joules:10%`` (relative=0.10) or ``joules:+0.5`` (absolute=0.5 J)."""

    metric: str
    relative: float | None = None
    absolute: float | None = None

    @property
    def text(self) -> str:
        if self.relative is not None:
            return f"{self.metric}:{self.relative * 100:g}%"
        return f"{self.metric}:+{self.absolute:g}"

    def exceeded(self, baseline: float, current: float) -> bool:
        """True when ``current`` is worse than ``baseline`` by more than the threshold."""
        if self.relative is not None:
            return baseline > 0 and (current - baseline) / baseline > self.relative
        assert self.absolute is not None
        return current - baseline > self.absolute

    def bettered(self, baseline: float, current: float) -> bool:
        """True when ``current`` is better than ``baseline`` by more than the threshold."""
        return self.exceeded(current, baseline) if self.relative is None else (
            baseline > 0 and (baseline - current) / baseline > self.relative)


def parse_compare_fail(value: object, *, argument: str = "compare_fail") -> tuple[Threshold, ...]:
    """Parse ``--energy-compare-fail``: ``joules:10%,latency_ms:+2ms`` or ``none``.

    Shared by the plugin option and ``pytest-energy compare --fail``. An empty tuple
    means "compare and report, never fail".
    """
    if isinstance(value, (tuple, list)) and all(isinstance(t, Threshold) for t in value):
        return tuple(value)
    if not isinstance(value, str) or not value.strip():
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected {FAIL_HELP}")
    if value.strip().lower() in ("none", "off", "no", "false", "0"):
        return ()
    thresholds: list[Threshold] = []
    for part in value.split(","):
        if not part.strip():
            raise EnergyConfigError(
                f"{argument}={value!r} is not valid: empty expression between commas")
        thresholds.append(_parse_one(part, value, argument))
    return tuple(thresholds)


def _parse_one(part: str, whole: str, argument: str) -> Threshold:
    from pytest_energy.units import parse_duration_ms, parse_energy

    match = _EXPR.match(part)
    if not match:
        raise EnergyConfigError(
            f"{argument}={whole!r} is not valid: {part.strip()!r} is not METRIC:LIMIT; "
            f"expected {FAIL_HELP}")
    name, limit = match.group(1).lower(), match.group(2)
    if name not in METRICS:
        close = difflib.get_close_matches(name, list(METRICS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EnergyConfigError(
            f"{argument}={whole!r} is not valid: unknown metric {name!r}{hint}; "
            f"use one of {', '.join(METRICS)}")
    metric = METRICS[name]
    if limit.endswith("%"):
        try:
            percent = float(limit[:-1])
        except ValueError:
            percent = math.nan
        if not (math.isfinite(percent) and percent > 0):
            raise EnergyConfigError(
                f"{argument}={whole!r} is not valid: {part.strip()!r} needs a percentage "
                "> 0, e.g. joules:10%")
        return Threshold(name, relative=percent / 100.0)
    if limit.startswith("+"):
        parse = parse_duration_ms if metric.unit == "ms" else parse_energy
        try:
            amount = parse(limit[1:].strip(), argument=f"{name} threshold")
        except EnergyConfigError as exc:
            raise EnergyConfigError(f"{argument}={whole!r} is not valid: {exc}") from None
        return Threshold(name, absolute=amount)
    raise EnergyConfigError(
        f"{argument}={whole!r} is not valid: {part.strip()!r}: write {name}:10% for a "
        f"relative threshold or {name}:+0.5 for an absolute one (in {metric.unit})")


def format_thresholds(thresholds: Sequence[Threshold]) -> str:
    return ",".join(t.text for t in thresholds) or "none"


def parse_alpha(value: object, *, argument: str = "compare_alpha") -> float:
    """Significance level of the U test: a number in (0, 0.5]."""
    try:
        alpha = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        alpha = math.nan
    if isinstance(value, bool) or not (0 < alpha <= 0.5):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a significance level in (0, 0.5], "
            f"e.g. {DEFAULT_ALPHA}")
    return alpha


# ----- Mann-Whitney U ---------------------------------------------------------------------


@dataclass(frozen=True)
class UTest:
    """Result of a two-sample Mann-Whitney U test of ``current`` against ``baseline``.

    ``u`` counts the pairs where the current value is larger (ties count 1/2);
    ``p_greater`` is the one-sided p value for "current is larger" (a regression when
    larger is worse), ``p_less`` for "current is smaller".
    """

    u: float
    p_greater: float
    p_less: float
    exact: bool


def _midranks(pooled: Sequence[float]) -> list[float]:
    order = sorted(range(len(pooled)), key=lambda i: pooled[i])
    ranks = [0.0] * len(pooled)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and pooled[order[j + 1]] == pooled[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        i = j + 1
    return ranks


@functools.lru_cache(maxsize=256)
def _rank_sum_counts(scores: tuple[int, ...], m: int) -> tuple[dict[int, int], int]:
    """How many size-``m`` subsets of ``scores`` have each sum (the exact null law).

    Scores are doubled midranks, so ties are handled exactly (conditional on the tie
    pattern). Returns the counts and their total, C(len(scores), m).
    """
    ways: list[dict[int, int]] = [{} for _ in range(m + 1)]
    ways[0][0] = 1
    for score in scores:
        for k in range(m, 0, -1):
            below = ways[k - 1]
            if not below:
                continue
            row = ways[k]
            for total, count in below.items():
                row[total + score] = row.get(total + score, 0) + count
    return ways[m], math.comb(len(scores), m)


def mann_whitney(baseline: Sequence[float], current: Sequence[float]) -> UTest:
    """One-sided Mann-Whitney U p values in both directions (stdlib only).

    Exact permutation law of the rank sum (ties by midranks) up to
    ``EXACT_MAX_TRIALS`` values in all, else the normal approximation with tie and
    continuity corrections.
    """
    n, m = len(baseline), len(current)
    if n == 0 or m == 0:
        return UTest(math.nan, 1.0, 1.0, exact=True)
    pooled = list(baseline) + list(current)
    ranks = _midranks(pooled)
    rank_sum = sum(ranks[n:])
    u = rank_sum - m * (m + 1) / 2
    big_n = n + m
    if big_n <= EXACT_MAX_TRIALS:
        scores = tuple(sorted(round(2 * r) for r in ranks))
        counts, total = _rank_sum_counts(scores, m)
        observed = round(2 * rank_sum)
        greater = sum(c for s, c in counts.items() if s >= observed)
        less = sum(c for s, c in counts.items() if s <= observed)
        return UTest(u, greater / total, less / total, exact=True)
    mean = m * (big_n + 1) / 2
    ties = _tie_term(pooled)
    variance = n * m / 12 * ((big_n + 1) - ties / (big_n * (big_n - 1)))
    if variance <= 0:
        return UTest(u, 1.0, 1.0, exact=False)
    sd = math.sqrt(variance)
    z_greater = (rank_sum - mean - 0.5) / sd
    z_less = (rank_sum - mean + 0.5) / sd
    return UTest(u, _upper_tail(z_greater), 1.0 - _upper_tail(z_less), exact=False)


def _tie_term(values: Sequence[float]) -> float:
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return float(sum(t**3 - t for t in counts.values()))


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def smallest_p(n: int, m: int) -> float:
    """The smallest one-sided p the exact U test can give with ``n`` vs ``m`` values."""
    if n == 0 or m == 0:
        return 1.0
    return 1.0 / math.comb(n + m, n)


# ----- verdicts ---------------------------------------------------------------------------

REGRESSED, IMPROVED = "regressed", "improved"
WORSE_NS, BETTER_NS = "worse, not significant", "better, not significant"
WORSE_CONTAMINATED = "worse, contaminated"  # a regression measured under contention
UNCHANGED = "unchanged"
NO_DATA = "no data"


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
    verdict: str = NO_DATA
    exceeded: list[str] = field(default_factory=list)  # thresholds passed (either way)
    note: str | None = None

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
            "verdict": self.verdict, "thresholds": list(self.exceeded), "note": self.note,
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
    worse = [t.text for t in thresholds if t.exceeded(baseline, current)]
    better = [t.text for t in thresholds if t.bettered(baseline, current)]
    result.exceeded = worse or better
    floor = smallest_p(len(baseline_trials), len(current_trials))
    if worse:
        result.verdict = REGRESSED if test.p_greater <= alpha else WORSE_NS
    elif better:
        result.verdict = IMPROVED if test.p_less <= alpha else BETTER_NS
    else:
        result.verdict = UNCHANGED
    if (worse or better) and floor > alpha:
        result.note = (f"{len(baseline_trials)} vs {len(current_trials)} trials cannot be "
                       f"significant at alpha={alpha:g} (smallest p {floor:.3g}); run at least "
                       "5 trials (--energy-trials)")
    return result


def is_measured(entry: Mapping[str, Any] | None) -> bool:
    return bool(entry) and entry is not None and entry.get("joules_per_call") is not None and (
        bool(entry.get("trials")))


@dataclass
class TestComparison:
    """One test against its baseline entry."""

    __test__ = False  # not a pytest test class

    nodeid: str
    status: str  # compared, new, not comparable, not measured, gone
    metrics: list[MetricComparison] = field(default_factory=list)
    reason: str | None = None

    @property
    def verdict(self) -> str:
        verdicts = [m.verdict for m in self.metrics]
        for verdict in (REGRESSED, WORSE_CONTAMINATED, IMPROVED, WORSE_NS, BETTER_NS,
                        UNCHANGED):
            if verdict in verdicts:
                return verdict
        return self.status if self.status != "compared" else NO_DATA

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "status": self.status, "verdict": self.verdict,
                "reason": self.reason, "metrics": [m.to_dict() for m in self.metrics]}


def compare_entries(baseline: Iterable[Mapping[str, Any]], current: Iterable[Mapping[str, Any]],
                    thresholds: Sequence[Threshold], alpha: float = DEFAULT_ALPHA, *,
                    baseline_meters: Mapping[str, str] | None = None,
                    current_meters: Mapping[str, str] | None = None) -> list[TestComparison]:
    """Compare every test of ``current`` with the same nodeid in ``baseline``.

    ``*_meters`` map nodeid to a meter identity (see :func:`meter_identity`); a test
    whose identity differs is "not comparable" (and says what differs). The metrics
    compared are those named by the thresholds (joules when there are none).
    """
    names = list(dict.fromkeys(t.metric for t in thresholds)) or ["joules"]
    report_thresholds = list(thresholds) or list(parse_compare_fail(DEFAULT_FAIL))
    old = {e["nodeid"]: e for e in baseline}
    results: list[TestComparison] = []
    for entry in current:
        nodeid = entry["nodeid"]
        base = old.pop(nodeid, None)
        if not is_measured(entry):
            results.append(TestComparison(nodeid, "not measured",
                                          reason="not measured in this run"))
            continue
        if base is None:
            results.append(TestComparison(nodeid, "new", reason="no result in the baseline"))
            continue
        if not is_measured(base):
            results.append(TestComparison(nodeid, "new",
                                          reason="not measured in the baseline"))
            continue
        old_id = (baseline_meters or {}).get(nodeid)
        new_id = (current_meters or {}).get(nodeid)
        if old_id is not None and new_id is not None and not meters_match(old_id, new_id):
            results.append(TestComparison(nodeid, "not comparable",
                                          reason=meter_difference(old_id, new_id)))
            continue
        comparison = TestComparison(nodeid, "compared")
        contaminated = [label for label, e in (("the baseline", base), ("this run", entry))
                        if e.get("contaminated")]
        for name in names:
            metric = METRICS[name]
            result = compare_values(
                name, metric.value(base), metric.value(entry), metric.trial_values(base),
                metric.trial_values(entry), [t for t in report_thresholds if t.metric == name],
                alpha)
            if contaminated and result.verdict == REGRESSED:
                # Another process drew power during the windows: not evidence enough to fail.
                result.verdict = WORSE_CONTAMINATED
                result.note = (f"measured under contention in {' and '.join(contaminated)}; "
                               "not failing on it, rerun on a quiet machine")
            comparison.metrics.append(result)
        results.append(comparison)
    for nodeid in old:
        results.append(TestComparison(nodeid, "gone", reason="in the baseline, not in this run"))
    return results


NOTABLE = (REGRESSED, WORSE_CONTAMINATED, IMPROVED, WORSE_NS, BETTER_NS)
TABLE_HEADERS = ["test", "metric", "baseline", "this run", "change", "p (trials)", "verdict"]


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
                         f"{comparison.status}: {comparison.reason}"])
        for metric in comparison.metrics:
            if notable_only and metric.verdict not in NOTABLE:
                continue
            shown = METRICS[metric.metric]
            verdict = metric.verdict.upper() if metric.verdict == REGRESSED else metric.verdict
            if metric.exceeded:
                verdict += f" ({','.join(metric.exceeded)})"
            if metric.note:
                verdict += f"; {metric.note}"
            rel, p = metric.change_rel, metric.p_value
            rows.append([comparison.nodeid, shown.label, shown.format(metric.baseline),
                         shown.format(metric.current),
                         "-" if rel is None else f"{rel * 100:+.1f}%",
                         "-" if p is None else f"{p:.3g} ({metric.n_baseline} vs "
                                               f"{metric.n_current})",
                         verdict])
    return rows


VERDICT_ORDER = (REGRESSED, WORSE_CONTAMINATED, IMPROVED, WORSE_NS, BETTER_NS, UNCHANGED,
                 "new", "not comparable", "not measured", "gone", NO_DATA)


def count_verdicts(comparisons: Iterable[TestComparison]) -> dict[str, int]:
    """How many tests got each verdict, worst first (a stable order for people)."""
    counts: dict[str, int] = {}
    for comparison in comparisons:
        counts[comparison.verdict] = counts.get(comparison.verdict, 0) + 1
    rank = {verdict: i for i, verdict in enumerate(VERDICT_ORDER)}
    return dict(sorted(counts.items(), key=lambda kv: rank.get(kv[0], len(rank))))


# ----- fingerprints ------------------------------------------------------------------------

MACHINE_IDENTITY_FIELDS = ("system", "machine", "cpu_model", "cpu_count")
MACHINE_NOTED_FIELDS = ("release", "python", "python_implementation")


def cpu_model() -> str | None:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return " ".join(value.split()) or None
    except OSError:
        pass
    return platform.processor() or None


def machine_identity(machine: Mapping[str, Any]) -> dict[str, Any]:
    """The hardware facts that must match for two runs to be compared."""
    identity = {key: machine.get(key) for key in MACHINE_IDENTITY_FIELDS}
    if identity["cpu_model"] is None:
        identity["cpu_model"] = machine.get("processor")
    return identity


def fingerprint(identity: Mapping[str, Any]) -> str:
    """A short stable hash of an identity dict (canonical JSON)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_differences(baseline: Mapping[str, Any], current: Mapping[str, Any],
                         fields: Iterable[str] = MACHINE_IDENTITY_FIELDS) -> list[str]:
    """``cpu_model: 'A' (baseline) vs 'B' (this run)`` for each field that differs."""
    return [f"{key}: {baseline.get(key)!r} (baseline) vs {current.get(key)!r} (this run)"
            for key in fields if baseline.get(key) != current.get(key)]


def _used_meters(meter: Mapping[str, Any], name: str | None) -> list[Mapping[str, Any]]:
    used = meter.get("used") or {}
    return [m for m in used.values() if isinstance(m, Mapping) and m.get("name") == name]


def meter_identity(entry: Mapping[str, Any], meter: Mapping[str, Any]) -> str:
    """Canonical JSON of what a test was measured with, without per-device noise.

    Kept: meter name, estimated, domains, GPU model names (NVML), RAPL zone names and
    the estimate meter's watts per core. Left out: UUIDs, PCI ids, clocks, temperatures,
    driver versions, power limits, and any details of third-party meters (their
    ``describe()`` may hold anything, including per-run values).
    """
    domains = list(entry.get("domains") or [])
    hardware: list[Any] = []
    for used in _used_meters(meter, entry.get("meter")):
        details = used.get("details")
        if not isinstance(details, Mapping):
            continue
        for device in details.get("devices") or []:
            if isinstance(device, Mapping) and device.get("domain") in domains:
                hardware.append(f"{device.get('domain')}={device.get('name')}")
        for zone in details.get("zones") or []:
            if isinstance(zone, Mapping) and zone.get("domain") in domains:
                hardware.append(f"{zone.get('domain')}={zone.get('name')}")
        if "watts_per_core" in details:
            hardware.append(f"watts_per_core={details['watts_per_core']}")
    identity = {"meter": entry.get("meter"), "estimated": bool(entry.get("estimated")),
                "domains": domains, "hardware": sorted(set(map(str, hardware)))}
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def meters_match(baseline: str, current: str) -> bool:
    """Same meter name, estimated flag and domains; same hardware when both runs know it.

    Under pytest-xdist the controller has no meter objects to describe, so a run's
    hardware list can be empty; that is "unknown", not "different".
    """
    if baseline == current:
        return True
    try:
        old, new = json.loads(baseline), json.loads(current)
    except ValueError:
        return False
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    for key in ("meter", "estimated", "domains"):
        if old.get(key) != new.get(key):
            return False
    return not (old.get("hardware") and new.get("hardware")) or (
        old.get("hardware") == new.get("hardware"))


def _meter_label(identity: str) -> str:
    try:
        data = json.loads(identity)
    except ValueError:
        return identity
    label = f"{data.get('meter')} {','.join(data.get('domains') or [])}".strip()
    if data.get("estimated"):
        label += " (estimated)"
    if data.get("hardware"):
        label += f" [{'; '.join(data['hardware'])}]"
    return label


def meter_difference(baseline: str, current: str) -> str:
    return (f"measured with a different meter: {_meter_label(baseline)} in the baseline, "
            f"{_meter_label(current)} in this run")


def noted_differences(baseline_machine: Mapping[str, Any], current_machine: Mapping[str, Any],
                      baseline_meter: Mapping[str, Any], current_meter: Mapping[str, Any]
                      ) -> list[str]:
    """Changes that do not make runs incomparable but may explain a difference."""
    notes = identity_differences(baseline_machine, current_machine, MACHINE_NOTED_FIELDS)
    old, new = _gpu_settings(baseline_meter), _gpu_settings(current_meter)
    for key in sorted(set(old) & set(new)):
        if old[key] != new[key]:
            notes.append(f"{key}: {old[key]!r} (baseline) vs {new[key]!r} (this run)")
    return notes


def _gpu_settings(meter: Mapping[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for used in (meter.get("used") or {}).values():
        details = used.get("details") if isinstance(used, Mapping) else None
        if not isinstance(details, Mapping):
            continue
        for device in details.get("devices") or []:
            if not isinstance(device, Mapping):
                continue
            for key in ("driver_version", "power_limit_w"):
                if device.get(key) is not None:
                    settings[f"{device.get('domain')} {key}"] = device[key]
    return settings


# ----- budget suggestions --------------------------------------------------------------------

DEFAULT_MARGIN = 1.2
SUGGEST_BELOW_USE = 0.5


def nice_ceiling(value: float) -> float:
    """Round up to two significant digits (3.27e-3 -> 3.3e-3)."""
    if value <= 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(value)) - 1
    step = 10.0 ** exponent
    return float(f"{math.ceil(round(value / step, 9)) * step:.3g}")


def p95(values: Sequence[float]) -> float:
    from pytest_energy.results import percentile

    return percentile(values, 95)


@dataclass
class Suggestion:
    """A suggested budget for one test, with the evidence behind it."""

    nodeid: str
    joules: float | None
    latency_ms: float | None
    reason: str
    trials: int
    runs: int
    estimated: bool

    @property
    def marker(self) -> str:
        from pytest_energy.units import format_duration_ms, format_energy

        parts = []
        if self.joules is not None:
            parts.append(f'joules="{format_energy(self.joules)}"')
        if self.latency_ms is not None:
            parts.append(f'latency_ms="{format_duration_ms(self.latency_ms)}"')
        return f"@pytest.mark.energy_budget({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "joules": self.joules, "latency_ms": self.latency_ms,
                "marker": self.marker, "reason": self.reason, "trials": self.trials,
                "runs": self.runs, "estimated": self.estimated}


def suggest_budgets(current: Iterable[Mapping[str, Any]],
                    history: Mapping[str, Sequence[Mapping[str, Any]]],
                    margin: float = DEFAULT_MARGIN) -> list[Suggestion]:
    """Budgets at the observed p95 x ``margin`` from this run and its history.

    For tests without a joules budget (a joules and a latency budget are suggested),
    and for tests using less than half of a budget (that budget is tightened). A
    suggestion is never looser than the current budget. ``history`` maps nodeid to
    earlier entries of that test (same machine), newest first.
    """
    suggestions = []
    for entry in current:
        if not is_measured(entry):
            continue
        nodeid = entry["nodeid"]
        entries = [entry, *[e for e in history.get(nodeid, ()) if is_measured(e)]]
        joules_trials = [v for e in entries for v in METRICS["joules"].trial_values(e)]
        latency_trials = [v for e in entries for v in METRICS["latency_ms"].trial_values(e)]
        budget = entry.get("budget") or {}
        use = entry.get("budget_use") or {}
        joules = latency = None
        reasons = []
        if joules_trials:
            proposal = nice_ceiling(p95(joules_trials) * margin)
            current_budget = budget.get("joules")
            if current_budget is None:
                joules = proposal
                if budget.get("latency_ms") is not None:
                    reasons.append("no joules budget")
            elif (use.get("joules") is not None and use["joules"] < SUGGEST_BELOW_USE
                  and proposal < current_budget):
                joules = proposal
                reasons.append(f"joules budget {METRICS['joules'].format(current_budget)} "
                               f"{_use_text(use['joules'])} used")
        if latency_trials:
            proposal = nice_ceiling(p95(latency_trials) * margin)
            current_budget = budget.get("latency_ms")
            if current_budget is None and budget.get("joules") is None:
                latency = proposal
            elif (current_budget is not None and use.get("latency") is not None
                  and use["latency"] < SUGGEST_BELOW_USE and proposal < current_budget):
                latency = proposal
                reasons.append(f"latency budget {METRICS['latency_ms'].format(current_budget)} "
                               f"{_use_text(use['latency'])} used")
        if joules is None and latency is None:
            continue
        suggestions.append(Suggestion(nodeid, joules, latency,
                                      "; ".join(reasons) or "unbudgeted",
                                      trials=len(joules_trials), runs=len(entries),
                                      estimated=bool(entry.get("estimated"))))
    return suggestions


def _use_text(use: float) -> str:
    return "<1%" if 0 < use < 0.005 else f"{use * 100:.0f}%"


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None
