"""Per-test and per-session state, and the report entry that carries a test's numbers.

An *entry* is the plain, JSON-ready dict describing one measured (or meant to be
measured) test. It is built on the process that ran the test and attached to the
pytest report, so it travels to the pytest-xdist controller with the report itself;
the summary, the JSON report and storage all read entries, never live objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_energy.config import ItemConfig
from pytest_energy.entry import Budget, BudgetUse, Entry, RatingRule, Verdict
from pytest_energy.measure import EnergyResult
from pytest_energy.meters.loader import MeterChoice
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




def build_entry(nodeid: str, state: ItemState) -> Entry:
    """The report entry for a test, from whatever state it reached."""
    measured = state.result.to_dict() if state.result is not None else {}
    entry = Entry.from_json({**measured, "nodeid": nodeid})
    return entry.replace(**_declared(state.config), **_judged(state),
                         fixture=state.uses_fixture, problem=_problem(state))


def _declared(config: ItemConfig | None) -> dict[str, Any]:
    """What the test declared: budgets, group, variant."""
    if config is None:
        return {}
    return {"budget": Budget(joules=config.joules, joules_per_item=config.joules_per_item,
                             latency_ms=config.latency_ms, latency_stat=config.latency_stat),
            "group": config.rating_group, "group_explicit": bool(config.group),
            "variant": config.variant, "default_variant": bool(config.default_variant)}


def _judged(state: ItemState) -> dict[str, Any]:
    """The budget verdict (or why there is none)."""
    check = state.check
    if check is None:
        return {"verdict": Verdict.NOT_MEASURED if state.result is None else Verdict.MEASURED}
    return {"budget_use": BudgetUse(joules=check.joules_use, latency=check.latency_use,
                                    joules_per_item=check.item_use),
            "rating": check.rating, "budget_rating": check.rating,
            "rating_rule": None if check.rating is None else RatingRule.BUDGET,
            "verdict": check.verdict, "failures": tuple(check.failures),
            "verdict_warnings": tuple(check.warnings)}


def _problem(state: ItemState) -> str | None:
    if state.choice is not None and state.choice.skip_reason:
        return state.choice.skip_reason
    return state.config_error or state.problem


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
            "energy(...) or energy.measure()" if state.uses_fixture else
            "nothing was measured: the test body never ran through pytest's function call "
            "(another plugin ran it); call the code through the energy fixture instead")
        state.check = BudgetCheck(failures=(f"energy budget could not be checked: {reason}",),
                                  joules_use=None, latency_use=None, rating=None,
                                  rating_rule=None, invalid=True)
        return state.check
    state.check = check_budgets(state.result, config, contention=contention)
    return state.check
