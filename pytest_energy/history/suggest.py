"""Budget suggestions (``--energy-suggest-budgets``): p95 of the observed trials x a margin.

A budget nobody has written is a test that can get twice as expensive unnoticed, and a
budget ten times the measured energy catches nothing. So the gate proposes a budget
for tests without one and tightens budgets that are less than half used, from this
run's trials and the same tests' trials in earlier runs on this machine. A suggestion
is never looser than the budget it replaces.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.history.metrics import METRICS
from pytest_energy.measure import percentile
from pytest_energy.report.cells import duration, energy, percent

DEFAULT_MARGIN = 1.2
SUGGEST_BELOW_USE = 0.5

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
        """The marker to paste into the test file."""
        parts = []
        if self.joules is not None:
            parts.append(f'joules="{energy(self.joules)}"')
        if self.latency_ms is not None:
            parts.append(f'latency_ms="{duration(self.latency_ms)}"')
        return f"@pytest.mark.energy_budget({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "joules": self.joules, "latency_ms": self.latency_ms,
                "marker": self.marker, "reason": self.reason, "trials": self.trials,
                "runs": self.runs, "estimated": self.estimated}


def suggest_budgets(current: Iterable[Entry], history: Mapping[str, Sequence[Entry]],
                    margin: float = DEFAULT_MARGIN) -> list[Suggestion]:
    """Budgets at the observed p95 x ``margin`` from this run and its history.

    For tests without a joules budget (a joules and a latency budget are suggested),
    and for tests using less than half of a budget (that budget is tightened). A
    suggestion is never looser than the current budget. ``history`` maps nodeid to
    earlier entries of that test (same machine), newest first.
    """
    found = (_suggest_one(entry, history.get(entry.nodeid, ()), margin)
             for entry in current if entry.is_measured)
    return [suggestion for suggestion in found if suggestion is not None]


def _suggest_one(entry: Entry, earlier: Iterable[Entry], margin: float) -> Suggestion | None:
    entries = [entry, *filter(_is_measured, earlier)]
    joules_trials = _trial_values("joules", entries)
    latency_trials = _trial_values("latency_ms", entries)
    joules, joules_reason = _joules_proposal(entry, joules_trials, margin)
    latency, latency_reason = _latency_proposal(entry, latency_trials, margin)
    if joules is None and latency is None:
        return None
    reasons = [r for r in (joules_reason, latency_reason) if r]
    return Suggestion(entry.nodeid, joules, latency, "; ".join(reasons) or "unbudgeted",
                      trials=len(joules_trials), runs=len(entries),
                      estimated=bool(entry.estimated))


def _is_measured(entry: Entry) -> bool:
    return entry.is_measured


def _trial_values(metric: str, entries: Iterable[Entry]) -> list[float]:
    """Every trial's value of ``metric`` in ``entries``: the samples the p95 is taken of."""
    return [value for entry in entries for value in METRICS[metric].trial_values(entry)]


def _joules_proposal(entry: Entry, trials: Sequence[float], margin: float) -> _Proposal:
    """A joules budget where there is none, or a tighter one where half is unused."""
    if not trials:
        return None, None
    proposal = nice_ceiling(p95(trials) * margin)
    budget, use = entry.budget.joules, entry.budget_use.joules
    if budget is None:
        return proposal, ("no joules budget" if entry.budget.latency_ms is not None else None)
    if use is not None and use < SUGGEST_BELOW_USE and proposal < budget:
        return proposal, (f"joules budget {METRICS['joules'].format(budget)} "
                          f"{percent(use)} used")
    return None, None


def _latency_proposal(entry: Entry, trials: Sequence[float], margin: float) -> _Proposal:
    """A latency budget for a test with no budget at all, or a tighter one."""
    if not trials:
        return None, None
    proposal = nice_ceiling(p95(trials) * margin)
    budget, use = entry.budget.latency_ms, entry.budget_use.latency
    if budget is None and entry.budget.joules is None:
        return proposal, None
    if budget is not None and use is not None and use < SUGGEST_BELOW_USE and proposal < budget:
        return proposal, (f"latency budget {METRICS['latency_ms'].format(budget)} "
                          f"{percent(use)} used")
    return None, None
