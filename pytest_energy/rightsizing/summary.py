"""What right-sizing adds to the end-of-run summary: extra columns per test (energy per
1,000 items, which rule gave the stars, carbon and cost), the legend of the rating
rules used, the whole-run carbon and cost line, and the per-test carbon/cost table.

Cells only (strings); the terminal and markdown renderers lay them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_energy.entry import Entry, RatingRule
from pytest_energy.parsers import RATING_RULE_AUTO
from pytest_energy.report.cells import energy
from pytest_energy.rightsizing.base import RightsizingOptions, entry_wh_per_1000_items
from pytest_energy.rightsizing.carbon import format_mass, format_money, format_wh
from pytest_energy.rightsizing.ratings import MIN_GROUP_FOR_RANGE, NOISE_FLOOR

_GROUP_LEGEND = (
    "rated by group: AI Energy Score rule within the test's group (same meter): the "
    "group's [min, max] energy per item (per call without items) in five equal "
    f"intervals, lowest 20% = 5 stars; variants within measurement noise (at least "
    f"{NOISE_FLOOR:.0%}) of each other share their stars")
_BUDGET_LEGEND = "rated by budget: five equal intervals of [0, budget], use <= 20% = 5 stars"


def _factors(carbon: Mapping[str, Any] | None) -> tuple[bool, bool, str]:
    """Which figures the run has: (carbon intensity given, price given, currency)."""
    if carbon is None:
        return False, False, ""
    return (carbon.get("carbon_intensity_g_per_kwh") is not None,
            carbon.get("price_per_kwh") is not None, str(carbon.get("currency") or ""))


def _carbon_cells(test: Mapping[str, Any], keys: Sequence[str], carbon: Mapping[str, Any] | None
                  ) -> list[str]:
    """The cells of ``keys`` (each ``what_per_...``) for one test, carbon then cost."""
    has_carbon, has_cost, currency = _factors(carbon)
    cells = []
    if has_carbon:
        cells += [format_mass(test.get(f"g_co2e_{key}")) for key in keys]
    if has_cost:
        cells += [format_money(test.get(f"cost_{key}"), currency) for key in keys]
    return cells


def _carbon_headers(labels: Sequence[str], carbon: Mapping[str, Any] | None) -> list[str]:
    """``CO2e/call``... then ``cost/call``... for the figures the run has."""
    has_carbon, has_cost, _currency = _factors(carbon)
    return ([f"CO2e{label}" for label in labels] if has_carbon else []) + (
        [f"cost{label}" for label in labels] if has_cost else [])


def wh_cell(entry: Entry) -> str:
    """The "per 1k items" cell: a test's Wh per 1,000 items, formatted."""
    return format_wh(entry_wh_per_1000_items(entry))


def summary_columns(entries: Sequence[Entry], carbon: Mapping[str, Any] | None
                    ) -> tuple[list[str], list[list[str]]]:
    """Extra summary columns: headers, and one row of cells per entry (same order).

    Always ``per 1k items`` (Wh per 1,000 items, unit scaled: ``42 uWh``) and
    ``rated by`` (which rule gave the stars: ``group``, ``budget`` or ``-``); with a
    carbon intensity ``CO2e/call`` and ``CO2e/1k items`` (grams, unit scaled); with a
    price ``cost/call`` and ``cost/1k items``. Append them to the summary headers and
    each summary row. Pass the entries :func:`apply_ratings` returned.
    """
    headers = ["per 1k items", "rated by", *_carbon_headers(["/call", "/1k items"], carbon)]
    by_id = {str(t["nodeid"]): t for t in (carbon or {}).get("tests", [])}
    rows = [[wh_cell(entry), str(entry.rating_rule or "-"),
             *_carbon_cells(by_id.get(entry.nodeid, {}), ["per_call", "per_1000_items"], carbon)]
            for entry in entries]
    return headers, rows


def total_line(carbon: Mapping[str, Any]) -> str:
    """The whole run's energy, carbon and cost, saying what it covers and at what factors."""
    total = carbon["total"]
    parts = [f"{energy(total['joules'])} ({total['kwh']:.3g} kWh)"]
    factors = []
    if carbon.get("carbon_intensity_g_per_kwh") is not None:
        parts.append(f"{format_mass(total['g_co2e'])} CO2e")
        factors.append(f"{carbon['carbon_intensity_g_per_kwh']:g} gCO2e/kWh")
    if carbon.get("price_per_kwh") is not None:
        parts.append(format_money(total["cost"], str(carbon.get("currency") or "")))
        price = f"{carbon['price_per_kwh']:g} {carbon.get('currency') or ''}".strip()
        factors.append(f"{price}/kWh")
    est = "; estimated" if carbon.get("estimated") else ""
    return (f"carbon and cost, whole run: {', '.join(parts)} over {total['calls']} calls of "
            f"{total['tests']} measured tests, warm-up included (measured code only{est}; "
            f"at {', '.join(factors)} as given: nothing looked up)")


def summary_lines(entries: Sequence[Entry], carbon: Mapping[str, Any] | None,
                  options: RightsizingOptions) -> list[str]:
    """Lines to print under the summary table: the rating rules used, the run's total.

    Only rules that rated at least one row are explained, so the legend matches the
    ``rated by`` column.
    """
    lines = []
    rules = {e.rating_rule for e in entries}
    if RatingRule.GROUP in rules:
        lines.append(_GROUP_LEGEND)
    if RatingRule.BUDGET in rules:
        lines.append(_BUDGET_LEGEND + (
            f" (lone tests, groups of fewer than {MIN_GROUP_FOR_RANGE} variants, and groups "
            "whose range is within measurement noise)"
            if options.rating_rule == RATING_RULE_AUTO else ""))
    if carbon is not None:
        lines.append(total_line(carbon))
    return lines


def carbon_table(carbon: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the per-test carbon/cost table (shared by text and markdown)."""
    headers = ["test", *_carbon_headers(["/call", "/1k items", " run"], carbon)]
    keys = ["per_call", "per_1000_items", "total"]
    rows = [[str(test["nodeid"]), *_carbon_cells(test, keys, carbon)] for test in carbon["tests"]]
    return headers, rows
