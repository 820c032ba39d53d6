"""Budget suggestions (``--energy-suggest-budgets``): p95 of the observed trials x a margin.

A budget nobody has written is a test that can get twice as expensive unnoticed, and a
budget ten times the measured energy catches nothing. So the gate proposes a budget
for tests without one and tightens budgets that are less than half used, from this
run's trials and the same tests' trials in earlier runs on this machine. A suggestion
is never looser than the budget it replaces.

What it learns from is the gate's choice (see ``RegressionGate._suggest``): complete,
passing runs only, and this run only when it passed and did not regress, so a slow
regression never becomes the new budget. ``use_current=False`` keeps this run's
trials out while its entries still say which tests and budgets there are.

Markers are pasted per test *function*: parametrized variants share the function's
decorator, so :func:`suggest_markers` gives one marker per function, with the worst
variant's budgets and the keywords every variant has (``items``, ``joules_per_item``,
an explicit ``group``, ``default``), and a note with per-variant ``pytest.param``
marks when the variants differ (budgets more than :data:`VARIANTS_DIFFER` apart, or
keywords set per variant: a test takes one ``energy_budget`` marker only).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.history.metrics import METRICS
from pytest_energy.measure import percentile
from pytest_energy.report.cells import duration, energy, percent

DEFAULT_MARGIN = 1.2
SUGGEST_BELOW_USE = 0.5
# Worst / cheapest variant's budget above which one marker for all is called loose.
VARIANTS_DIFFER = 2.0
_BUDGETS = ("joules", "latency_ms")

# (the proposed budget or None, why it is proposed or None when there is no news)
_Proposal = tuple[float | None, str | None]


def nice_ceiling(value: float) -> float:
    """Round up to two significant digits (3.27e-3 -> 3.3e-3)."""
    if value <= 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(value)) - 1
    step = 10.0 ** exponent
    return float(f"{math.ceil(round(value / step, 9)) * step:.3g}")


def p95(values: Sequence[float]) -> float:
    """The statistic a suggestion starts from: rare slow windows still fit the budget."""
    return percentile(values, 95)


def function_id(nodeid: str) -> str:
    """The test function of a node id: ``t.py::test_x[b8-fp32]`` -> ``t.py::test_x``."""
    head, sep, name = nodeid.rpartition("::")
    return head + sep + name.split("[", 1)[0]


def variant_id(entry: Entry) -> str | None:
    """The parametrization id (``b8-fp32``), None for a test that is not parametrized."""
    if entry.variant:
        return entry.variant
    name = entry.nodeid.rpartition("::")[2]
    return name.split("[", 1)[1][:-1] if "[" in name and name.endswith("]") else None


def kept_keywords(entry: Entry) -> dict[str, Any]:
    """The marker keywords a suggested marker keeps, as the test set them: ``items``,
    ``joules_per_item``, an explicit ``group``, ``default=True``."""
    keywords: dict[str, Any] = {}
    if entry.items is not None:
        keywords["items"] = entry.items
    if entry.budget.joules_per_item is not None:
        keywords["joules_per_item"] = energy(entry.budget.joules_per_item)
    if entry.group_explicit and entry.group:
        keywords["group"] = entry.group
    if entry.default_variant:
        keywords["default"] = True
    return keywords


def marker_text(joules: float | None, latency_ms: float | None,
                keywords: Mapping[str, Any], *, mark: str = "@pytest.mark.energy_budget") -> str:
    """``@pytest.mark.energy_budget(joules="1.3 mJ", items=8, group="mlp")``."""
    parts = []
    if joules is not None:
        parts.append(f'joules="{energy(joules)}"')
    if latency_ms is not None:
        parts.append(f'latency_ms="{duration(latency_ms)}"')
    parts.extend(f"{name}={_literal(value)}" for name, value in keywords.items())
    return f"{mark}({', '.join(parts)})"


def _literal(value: Any) -> str:
    """A Python literal for a keyword's value: ``8``, ``0.5``, ``"mlp"``, ``True``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python string literal too
    return str(int(value)) if float(value).is_integer() else repr(float(value))


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
    keywords: dict[str, Any] = field(default_factory=dict)

    @property
    def marker(self) -> str:
        """The marker to paste for this test alone (its kept keywords included)."""
        return marker_text(self.joules, self.latency_ms, self.keywords)

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "joules": self.joules, "latency_ms": self.latency_ms,
                "marker": self.marker, "reason": self.reason, "trials": self.trials,
                "runs": self.runs, "estimated": self.estimated,
                "function": function_id(self.nodeid), "keywords": dict(self.keywords)}


def suggest_budgets(current: Iterable[Entry], history: Mapping[str, Sequence[Entry]],
                    margin: float = DEFAULT_MARGIN, *,
                    use_current: bool = True) -> list[Suggestion]:
    """Budgets at the observed p95 x ``margin`` from this run and its history.

    For tests without a joules budget (a joules and a latency budget are suggested),
    and for tests using less than half of a budget (that budget is tightened). A
    suggestion is never looser than the current budget. ``history`` maps nodeid to
    earlier entries of that test (same machine), newest first; without
    ``use_current`` this run's trials are left out (its budgets still count).
    """
    found = (_suggest_one(entry, history.get(entry.nodeid, ()), margin, use_current)
             for entry in current if entry.is_measured)
    return [suggestion for suggestion in found if suggestion is not None]


def _samples(entry: Entry, earlier: Iterable[Entry], use_current: bool) -> list[Entry]:
    """The measured entries whose trials a suggestion for ``entry`` is taken from."""
    return [*([entry] if use_current else []), *filter(_is_measured, earlier)]


def _suggest_one(entry: Entry, earlier: Iterable[Entry], margin: float,
                 use_current: bool) -> Suggestion | None:
    entries = _samples(entry, earlier, use_current)
    joules_trials = _trial_values("joules", entries)
    latency_trials = _trial_values("latency_ms", entries)
    joules, joules_reason = _joules_proposal(entry, joules_trials, margin)
    latency, latency_reason = _latency_proposal(entry, latency_trials, margin)
    if joules is None and latency is None:
        return None
    reasons = [r for r in (joules_reason, latency_reason) if r]
    return Suggestion(entry.nodeid, joules, latency, "; ".join(reasons) or "unbudgeted",
                      trials=len(joules_trials), runs=len(entries),
                      estimated=bool(entry.estimated), keywords=kept_keywords(entry))


def _is_measured(entry: Entry) -> bool:
    return entry.is_measured


def _trial_values(metric: str, entries: Iterable[Entry]) -> list[float]:
    """Every trial's value of ``metric`` in ``entries``: the samples the p95 is taken of."""
    return [value for entry in entries for value in METRICS[metric].trial_values(entry)]


def _need(trials: Sequence[float], margin: float) -> float | None:
    """The budget the observed trials call for: p95 x margin, rounded up."""
    return nice_ceiling(p95(trials) * margin) if trials else None


def _joules_proposal(entry: Entry, trials: Sequence[float], margin: float) -> _Proposal:
    """A joules budget where there is none, or a tighter one where half is unused."""
    proposal = _need(trials, margin)
    if proposal is None:
        return None, None
    budget, use = entry.budget.joules, entry.budget_use.joules
    if budget is None:
        return proposal, ("no joules budget" if entry.budget.latency_ms is not None else None)
    if use is not None and use < SUGGEST_BELOW_USE and proposal < budget:
        return proposal, (f"joules budget {METRICS['joules'].format(budget)} "
                          f"{percent(use)} used")
    return None, None


def _latency_proposal(entry: Entry, trials: Sequence[float], margin: float) -> _Proposal:
    """A latency budget for a test with no budget at all, or a tighter one."""
    proposal = _need(trials, margin)
    if proposal is None:
        return None, None
    budget, use = entry.budget.latency_ms, entry.budget_use.latency
    if budget is None and entry.budget.joules is None:
        return proposal, None
    if budget is not None and use is not None and use < SUGGEST_BELOW_USE and proposal < budget:
        return proposal, (f"latency budget {METRICS['latency_ms'].format(budget)} "
                          f"{percent(use)} used")
    return None, None


# ----- one marker per test function ----------------------------------------------------------


@dataclass(frozen=True)
class VariantBudget:
    """One measured test of a function: what its trials call for, its current budgets
    and keywords, and its own suggestion (None: its budgets are fine as they are)."""

    entry: Entry
    need: Mapping[str, float | None]  # "joules"/"latency_ms" -> p95 x margin, rounded up
    trials: int
    runs: int
    suggestion: Suggestion | None

    @property
    def label(self) -> str:
        return variant_id(self.entry) or function_id(self.entry.nodeid).rpartition("::")[2]

    def current(self, metric: str) -> float | None:
        value: float | None = getattr(self.entry.budget, metric)
        return value

    def budget(self, metric: str, in_marker: bool) -> float | None:
        """Its budget in a per-variant mark: suggested, else current, else what it
        needs when the function's marker sets that budget."""
        suggested = None if self.suggestion is None else getattr(self.suggestion, metric)
        if suggested is not None:
            return float(suggested)
        current = self.current(metric)
        return current if current is not None else (self.need[metric] if in_marker else None)

    def mark(self, budgets: Mapping[str, float | None]) -> str:
        """``pytest.param(..., id="b8", marks=pytest.mark.energy_budget(...))``."""
        mark = marker_text(budgets.get("joules"), budgets.get("latency_ms"),
                           kept_keywords(self.entry), mark="pytest.mark.energy_budget")
        return f"pytest.param(..., id={_literal(self.label)}, marks={mark})"


@dataclass(frozen=True)
class MarkerSuggestion:
    """The marker for one test function: the worst variant's budgets, the keywords all
    variants share, and when the variants differ, why (``note``) and their own marks."""

    function: str
    budgets: Mapping[str, float | None]  # "joules"/"latency_ms" -> budget or None
    keywords: Mapping[str, Any]
    variants: tuple[VariantBudget, ...]
    note: str | None

    @property
    def marker(self) -> str | None:
        """The decorator to paste; None when no single budget tightens every variant."""
        if all(self.budgets[m] is None for m in _BUDGETS):
            return None
        return marker_text(self.budgets["joules"], self.budgets["latency_ms"], self.keywords)

    @property
    def parametrized(self) -> bool:
        return any(variant_id(v.entry) is not None for v in self.variants)

    @property
    def worst(self) -> str | None:
        """The variant whose needs set the marker's joules (else latency) budget."""
        for metric in _BUDGETS:
            needs = [v for v in self.variants if v.need[metric] is not None]
            if self.budgets[metric] is not None and needs:
                return max(needs, key=lambda v: v.need[metric] or 0.0).label
        return None

    def variant_marks(self) -> list[tuple[str, str]]:
        """(nodeid, per-variant ``pytest.param`` mark) for each variant; empty when the
        function's marker fits them all (no note)."""
        if self.note is None:
            return []
        in_marker = {m: self.budgets[m] is not None for m in _BUDGETS}
        return [(v.entry.nodeid, v.mark({m: v.budget(m, in_marker[m]) for m in _BUDGETS}))
                for v in self.variants]

    @property
    def suggestions(self) -> list[Suggestion]:
        return [v.suggestion for v in self.variants if v.suggestion is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "marker": self.marker,
                "joules": self.budgets["joules"], "latency_ms": self.budgets["latency_ms"],
                "keywords": dict(self.keywords), "tests": [v.entry.nodeid for v in self.variants],
                "worst": self.worst, "note": self.note,
                "variant_marks": [{"nodeid": n, "mark": m} for n, m in self.variant_marks()],
                "trials": sum(v.trials for v in self.variants),
                "runs": max((v.runs for v in self.variants), default=0)}


def suggest_markers(current: Iterable[Entry], history: Mapping[str, Sequence[Entry]],
                    margin: float = DEFAULT_MARGIN, *,
                    use_current: bool = True) -> list[MarkerSuggestion]:
    """One marker per test function that has at least one suggestion (see module doc);
    ``history`` and ``use_current`` as for :func:`suggest_budgets`, whose suggestions
    each marker carries (``MarkerSuggestion.suggestions``)."""
    current = list(current)
    suggestions = suggest_budgets(current, history, margin, use_current=use_current)
    by_test = {s.nodeid: s for s in suggestions}
    functions: dict[str, list[VariantBudget]] = {}
    for entry in current:
        if entry.is_measured:
            samples = _samples(entry, history.get(entry.nodeid, ()), use_current)
            trials = {m: _trial_values(m, samples) for m in _BUDGETS}
            functions.setdefault(function_id(entry.nodeid), []).append(VariantBudget(
                entry, {m: _need(trials[m], margin) for m in _BUDGETS},
                len(trials["joules"]), len(samples), by_test.get(entry.nodeid)))
    return [_function_marker(function, tuple(variants))
            for function, variants in functions.items()
            if any(v.suggestion is not None for v in variants)]


def _function_marker(function: str, variants: tuple[VariantBudget, ...]) -> MarkerSuggestion:
    budgets = {m: _worst_budget(variants, m) for m in _BUDGETS}
    shared = [kept_keywords(v.entry) for v in variants]
    keywords = {k: value for k, value in shared[0].items()
                if all(other.get(k) == value for other in shared[1:])}
    note = _variants_differ(variants, budgets, keywords) if len(variants) > 1 else None
    if note is None and all(budgets[m] is None for m in _BUDGETS):
        note = "no one budget is tighter than the one they share"
    return MarkerSuggestion(function, budgets, keywords, variants, note)


def _worst_budget(variants: Sequence[VariantBudget], metric: str) -> float | None:
    """The function's budget for ``metric``: what its worst variant needs, when a
    variant's suggestion sets that budget; None when it would not be tighter than a
    budget all variants share (never looser than the budget it replaces)."""
    if not any(v.suggestion is not None and getattr(v.suggestion, metric) is not None
               for v in variants):
        return None
    worst = max(v.need[metric] or 0.0 for v in variants)
    current = {v.current(metric) for v in variants}
    shared = next(iter(current)) if len(current) == 1 else None
    return None if shared is not None and worst >= shared else worst


def _variants_differ(variants: Sequence[VariantBudget], budgets: Mapping[str, float | None],
                     keywords: Mapping[str, Any]) -> str | None:
    """Why one marker for every variant is a poor fit, or None when it fits."""
    reasons = [spread for metric in _BUDGETS if budgets[metric] is not None
               and (spread := _spread(variants, metric)) is not None]
    own = sorted({name for v in variants for name in kept_keywords(v.entry)} - set(keywords))
    if own:
        reasons.append(f"{', '.join(own)} set per variant")
    if len({(v.entry.budget.joules, v.entry.budget.latency_ms) for v in variants}) > 1:
        reasons.append("budgets set per variant")
    return "; ".join(reasons) or None


def _spread(variants: Sequence[VariantBudget], metric: str) -> str | None:
    """``joules 1.2 mJ (b1) to 4.8 mJ (b8), 4.0x`` when the variants' needs differ by
    more than :data:`VARIANTS_DIFFER`, else None."""
    needs = sorted((need, v.label) for v in variants if (need := v.need[metric]))
    if len(needs) < 2 or needs[-1][0] <= VARIANTS_DIFFER * needs[0][0]:
        return None
    (low, low_label), (high, high_label) = needs[0], needs[-1]
    text = METRICS[metric].format
    return (f"{'joules' if metric == 'joules' else 'latency'} {text(low)} ({low_label}) to "
            f"{text(high)} ({high_label}), {high / low:.1f}x")
