"""Per-test and per-session state, and the report entry that carries a test's numbers.

An *entry* is the plain, JSON-ready dict describing one measured (or meant to be
measured) test. It is built on the process that ran the test and attached to the
pytest report, so it travels to the pytest-xdist controller with the report itself;
the summary, the JSON report and storage all read entries, never live objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pytest_energy.config import ItemConfig
from pytest_energy.meters.loader import MeterChoice
from pytest_energy.results import EnergyResult
from pytest_energy.verdict import BudgetCheck, check_budgets


@dataclass
class ItemState:
    """What the plugin knows about one test while it runs."""

    config: ItemConfig | None
    uses_fixture: bool
    config_error: str | None = None
    choice: MeterChoice | None = None
    result: EnergyResult | None = None
    problem: str | None = None  # why the test could not be measured (meter error...)
    check: BudgetCheck | None = None




def empty_measurement() -> dict[str, Any]:
    """The measurement fields of a test that produced no measurement (all null)."""
    return {
        "joules_per_call": None,
        "joules_per_item": None,
        "latency_ms": None,
        "calls": 0,
        "warmup_calls": 0,
        "estimated": None,
        "meter": None,
        "valid": False,
    }


def build_entry(nodeid: str, state: ItemState) -> dict[str, Any]:
    """The report entry for a test, from whatever state it reached."""
    config = state.config
    entry: dict[str, Any] = {"nodeid": nodeid, "outcome": None, "partial": False}
    if state.result is not None:
        entry.update(state.result.to_dict())
    else:
        entry.update(empty_measurement())
    entry["budget"] = {
        "joules": config.joules if config else None,
        "joules_per_item": config.joules_per_item if config else None,
        "latency_ms": config.latency_ms if config else None,
        "latency_stat": config.latency_stat if config else None,
    }
    entry["group"] = config.rating_group if config else None
    entry["group_explicit"] = bool(config and config.group)
    entry["variant"] = config.variant if config else None
    entry["default_variant"] = bool(config and config.default_variant)
    entry["fixture"] = state.uses_fixture
    check = state.check
    entry["budget_use"] = {
        "joules": check.joules_use if check else None,
        "latency": check.latency_use if check else None,
        "joules_per_item": check.item_use if check else None,
    }
    entry["rating"] = check.rating if check else None
    entry["rating_rule"] = check.rating_rule if check else None
    entry["verdict"] = check.verdict if check else ("not measured" if state.result is None
                                                    else "measured")
    entry["failures"] = list(check.failures) if check else []
    entry["verdict_warnings"] = list(check.warnings) if check else []
    entry["problem"] = state.config_error or state.problem
    if state.choice is not None and state.choice.skip_reason:
        entry["problem"] = state.choice.skip_reason
    return entry


def finish_item(state: ItemState, contention: str = "warn") -> BudgetCheck | None:
    """Judge the result against the budgets (once, after the call phase)."""
    config = state.config
    if config is None:
        return None
    if state.result is None:
        if not (config.marked and config.has_budget):
            return None
        reason = state.problem or (
            "nothing was measured: the test requested the energy fixture but never called "
            "energy(...) or energy.measure()")
        state.check = BudgetCheck(failures=(f"energy budget could not be checked: {reason}",),
                                  joules_use=None, latency_use=None, rating=None,
                                  rating_rule=None, invalid=True)
        return state.check
    state.check = check_budgets(state.result, config, contention=contention)
    return state.check


def outcome_of(report: pytest.TestReport) -> str:
    """passed / failed / error / skipped / xfailed / xpassed, as the JSON report spells it."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when != "call" and report.failed:
        return "error"
    return str(report.outcome)
