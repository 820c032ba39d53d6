"""Right-sizing: energy per item, group star ratings, variant tables, carbon and cost, hints.

Measuring is only worth it when it changes a decision: which batch size, which
precision, which model or runtime to ship. This module turns the per-test *entries*
(see :func:`pytest_energy.state.build_entry`) into those decisions. Everything here is
a pure function over entries (plain dicts, as read back from the JSON report), so it
works the same on the pytest-xdist controller, on a saved report, and in tests.

Vocabulary:

* **group**: ``entry["group"]``, the ``group=`` marker argument or, by default, the test
  function's name without its parametrization. The members of a group are the ways
  of doing one job (``test_predict[batch1-fp32]``, ``test_predict[batch32-bf16]``...).
* **comparable set**: the members of a group that have a valid measurement *by the same
  meter* (same ``meter`` and ``estimated`` flag). Energies from different meters
  measure different things (a GPU board vs a CPU package vs a CPU-time model), so
  they are never ranked against each other: a group measured by two meters is split
  into two sets, each titled ``group (meter)``.
* **metric**: energy per item (``joules_per_item``) when every member of the set knows
  its items per call, else energy per call. Per item is what makes a batch of 32 and
  a batch of 1 comparable.

The star rule within a set follows Hugging Face's AI Energy Score: the set's
``[min, max]`` range of the metric is cut into five equal intervals; the lowest 20%
get 5 stars, the highest 20% one star. A set whose values are all equal gets 5 stars
everywhere (there is nothing to improve on inside it).

Entry point for the plugin (all documented below): :func:`add_rightsizing_options`,
:meth:`RightsizingOptions.from_config`, :func:`apply_ratings`,
:func:`rightsizing_tables`, :func:`render_rightsizing`, :func:`carbon_cost`,
:func:`summary_columns`, :func:`summary_lines`, :func:`render_carbon`, :func:`hints`,
:func:`markdown_sections`. ``python -m pytest_energy.rightsizing REPORT.json`` renders
the tables and hints of a saved JSON report.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from pytest_energy.options import _cli_type, resolve_setting
from pytest_energy.rightsizing_options import (  # noqa: F401 - re-exported
    RATING_RULE_AUTO,
    RATING_RULE_BUDGET,
    RATING_RULE_GROUP,
    RATING_RULES,
    RIGHTSIZING_SETTINGS,
    add_rightsizing_options,
    parse_carbon_intensity,
    parse_currency,
    parse_price,
    parse_rating_rule,
)
from pytest_energy.units import format_duration_ms, format_energy, format_scaled

# ----- constants (every threshold a hint or a rating uses is here) -------------------

#: Joules in one watt-hour / kilowatt-hour. AI Energy Score reports Wh per 1,000
#: queries; electricity prices and carbon intensities are per kWh.
J_PER_WH = 3600.0
J_PER_KWH = 3.6e6
#: Items per "per 1,000 items" figure (AI Energy Score's unit of work).
ITEMS_PER_LABEL = 1000

#: Five equal intervals of the group's range, as in the AI Energy Score.
STAR_INTERVALS = 5

#: Sibling hint: a variant using at least this many times the energy per item of the
#: group's recommended (or, when none meets its latency budget, most efficient)
#: variant. 3x is far outside run-to-run noise even for the estimate meter (whose
#: spread over 15 calibration runs of the examples stayed under 2.5x min-to-max).
SIBLING_FACTOR = 3.0
#: Loose-budget hint: a test using less than this fraction of its energy budget has a
#: budget that would not notice its energy doubling; a budget at ~2x use catches that.
LOOSE_BUDGET_USE = 0.25
#: GPU hint: average power in the measured windows below this fraction of the board's
#: power limit means the GPU mostly waited (launch overhead, tiny kernels): a larger
#: batch usually does more work for little extra energy.
GPU_UNDERUSE = 0.30
#: Right-sizing tables with more variants than this print only their recommendation.
MAX_PRINTED_VARIANTS = 50
#: How many tests one hint names before it says "and N more".
MAX_NAMED = 3

#: Outcomes after which a measured body is known to have run to completion. A test
#: that failed (or xfailed) only on its energy or latency budget also did, which its
#: verdict "over budget" says (budgets are judged only after the body passed).
_COMPLETED_OUTCOMES = (None, "passed", "xpassed")


# ----- options (defined in rightsizing_options, re-exported for callers) ---------------

@dataclass(frozen=True)
class RightsizingOptions:
    """Resolved right-sizing settings (command line > environment > ini > default).

    The defaults are usable as they are, so pure callers (tests, report tools) can
    build one without a pytest config.
    """

    carbon_intensity: float | None = None  # gCO2e per kWh; None = not shown
    price: float | None = None  # currency per kWh; None = not shown
    currency: str = ""
    rating_rule: str = RATING_RULE_AUTO
    hints: bool = True

    @classmethod
    def from_config(cls, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> RightsizingOptions:
        """Resolve every right-sizing setting.

        Raises :class:`~pytest_energy.errors.EnergyConfigError` naming the source
        (``environment variable PYTEST_ENERGY_PRICE: ...``, ``ini option
        energy_rating_rule: ...``) when an environment or ini value is bad. Needs
        :func:`add_rightsizing_options` to have run.
        """
        values = {s.name: resolve_setting(s, config, environ).value for s in RIGHTSIZING_SETTINGS}
        return cls(carbon_intensity=values["carbon_intensity"], price=values["price"],
                   currency=values["currency"], rating_rule=values["rating_rule"],
                   hints=values["hints"])


# ----- reading entries ------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A finite number, or None (bools, strings, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def is_measured(entry: Mapping[str, Any]) -> bool:
    """True when the entry carries a valid energy measurement that may be compared.

    Invalid results (counter did not move...), tests never measured and skipped tests
    have no number to rank; a null ``joules_per_call`` is never read as 0 J.
    """
    jpc = _number(entry.get("joules_per_call"))
    return (jpc is not None and jpc >= 0 and entry.get("valid", True) is not False
            and entry.get("verdict") not in ("invalid", "not measured")
            and entry.get("outcome") != "skipped")


def completed(entry: Mapping[str, Any]) -> bool:
    """True when the measured body ran to completion (so the variant does its job).

    A test that failed on an assertion did not; one that failed (or xfailed) only on
    a budget did: its verdict is "over budget", which is judged after the body passed.
    """
    outcome = entry.get("outcome")
    if outcome in _COMPLETED_OUTCOMES:
        return True
    return outcome in ("failed", "xfailed") and entry.get("verdict") == "over budget"


def meets_latency_budget(entry: Mapping[str, Any]) -> bool:
    """True when the entry has no latency budget or its latency is within it."""
    budget = entry.get("budget") or {}
    limit = _number(budget.get("latency_ms"))
    if limit is None:
        return True
    use = _number((entry.get("budget_use") or {}).get("latency"))
    if use is not None:
        return use <= 1.0
    latency = entry.get("latency_ms") or {}
    value = _number(latency.get(budget.get("latency_stat") or "median"))
    return value is not None and value <= limit


def meets_budgets(entry: Mapping[str, Any]) -> bool:
    """True when every budget the test has (joules, J/item, latency) is met."""
    if entry.get("verdict") in ("over budget", "invalid"):
        return False
    uses = (entry.get("budget_use") or {}).values()
    return all(_number(use) is None or float(use) <= 1.0 for use in uses)


def wh_per_1000_items(joules_per_item: float | None) -> float | None:
    """Wh per 1,000 items (AI Energy Score's unit) from joules per item."""
    return None if joules_per_item is None else joules_per_item * ITEMS_PER_LABEL / J_PER_WH


def group_stars(value: float, low: float, high: float) -> int:
    """Stars for ``value`` in a group whose metric spans ``[low, high]``.

    The AI Energy Score rule: the range is cut into five equal intervals; the lowest
    20% (the most efficient) get 5 stars, then 4, 3, 2, and the highest 20% one star.
    A boundary belongs to the better interval (exactly 20% of the way -> 5 stars),
    as in the budget rule. All values equal (``high == low``) -> 5 stars.
    """
    if not low <= value <= high:
        raise ValueError(f"{value} is outside the group's range [{low}, {high}]")
    if high <= low:
        return STAR_INTERVALS
    fraction = (value - low) / (high - low)
    return max(1, STAR_INTERVALS - max(0, math.ceil(round(fraction * STAR_INTERVALS, 9)) - 1))


def _natural_key(text: str) -> list[Any]:
    """Sort "batch8" before "batch32": digits compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", text) if part]


def _set_key(entry: Mapping[str, Any]) -> tuple[str, str, bool]:
    group = entry.get("group") or entry.get("nodeid") or "?"
    return str(group), str(entry.get("meter") or "?"), bool(entry.get("estimated"))


EntryT = TypeVar("EntryT", bound=Mapping[str, Any])


def comparable_sets(entries: Iterable[EntryT]) -> dict[tuple[str, str, bool], list[EntryT]]:
    """Measured entries by (group, meter, estimated), members in natural nodeid order."""
    sets: dict[tuple[str, str, bool], list[EntryT]] = {}
    for entry in entries:
        if is_measured(entry):
            sets.setdefault(_set_key(entry), []).append(entry)
    for members in sets.values():
        members.sort(key=lambda e: _natural_key(str(e.get("nodeid"))))
    return sets


def _metric_of(members: Sequence[Mapping[str, Any]]) -> str:
    """Per item when every member knows its items, else per call (see module doc)."""
    if all(_number(m.get("joules_per_item")) is not None for m in members):
        return "joules_per_item"
    return "joules_per_call"


def _value(entry: Mapping[str, Any], metric: str) -> float:
    value = _number(entry.get(metric))
    assert value is not None  # members were chosen by is_measured / _metric_of
    return value


METRIC_LABEL = {"joules_per_item": "J/item", "joules_per_call": "J/call"}


# ----- ratings --------------------------------------------------------------------------


def apply_ratings(entries: list[dict[str, Any]], options: RightsizingOptions) -> None:
    """Rate every entry by the run's rating rule, in place.

    Sets, on every entry:

    * ``rating`` (0-5 or None) and ``rating_rule`` (``"group"``, ``"budget"`` or None):
      ``auto`` rates the members of a comparable set of two or more by the group rule
      (:func:`group_stars` on the set's metric) and a lone test by its budget use;
      ``budget`` keeps the budget rating everywhere; ``group`` rates only sets of two or
      more (a lone test has no range to be placed in: unrated).
    * ``budget_rating``: the budget-use rating the verdict gave (kept, so applying the
      ratings twice, or with another rule, starts from the same place).
    * ``group_rank`` (1 = least energy in its set; ties share a rank), ``group_size``
      and ``rating_metric`` (``"J/item"`` or ``"J/call"``) for measured entries, None
      for the others.
    * ``wh_per_1000_items`` (None without items).

    Only valid measurements (:func:`is_measured`) take part in a group's range.
    """
    for entry in entries:
        if "budget_rating" not in entry:
            entry["budget_rating"] = (entry.get("rating")
                                      if entry.get("rating_rule") in (None, "budget") else None)
        budget_rating = entry["budget_rating"]
        if options.rating_rule == RATING_RULE_GROUP:
            entry["rating"], entry["rating_rule"] = None, None
        else:
            entry["rating"] = budget_rating
            entry["rating_rule"] = RATING_RULE_BUDGET if budget_rating is not None else None
        entry["wh_per_1000_items"] = wh_per_1000_items(_number(entry.get("joules_per_item")))
        entry["group_rank"] = entry["group_size"] = entry["rating_metric"] = None
    for members in comparable_sets(entries).values():
        metric = _metric_of(members)
        values = [_value(m, metric) for m in members]
        low, high = min(values), max(values)
        ordered = sorted(values)
        for member, value in zip(members, values, strict=True):
            member["group_rank"] = 1 + bisect.bisect_left(ordered, value)  # ties share
            member["group_size"] = len(members)
            member["rating_metric"] = METRIC_LABEL[metric]
            if len(members) >= 2 and options.rating_rule != RATING_RULE_BUDGET:
                member["rating"] = group_stars(value, low, high)
                member["rating_rule"] = RATING_RULE_GROUP


# ----- right-sizing tables ------------------------------------------------------------------


def _label(entry: Mapping[str, Any], variant_counts: Mapping[Any, int]) -> str:
    """The variant id when it tells the members apart, else the test's name.

    ``variant_counts``: how many members have each variant id (a Counter, computed once
    per group: groups can hold thousands of tests)."""
    variant = entry.get("variant")
    if variant and variant_counts.get(variant) == 1:
        return str(variant)
    return str(entry.get("nodeid", "?")).rsplit("::", 1)[-1]


def _saving(better: float, worse: float) -> float | None:
    """Fraction of ``worse`` that ``better`` saves (0.9 = 90% less); None when undefined."""
    return None if worse <= 0 else 1.0 - better / worse


def rightsizing_tables(entries: Sequence[Mapping[str, Any]],
                       options: RightsizingOptions) -> list[dict[str, Any]]:
    """One JSON-ready table per comparable set of two or more measured tests.

    Each table: ``group``, ``title`` (the group, plus the meter when the group was
    measured by more than one), ``meter``, ``estimated``, ``metric``
    (``joules_per_item`` or ``joules_per_call``), ``variants`` (natural order; each with
    ``nodeid``, ``variant`` label, ``joules_per_call``, ``joules_per_item``,
    ``wh_per_1000_items``, ``latency_ms_median``, ``latency_budget_ms``,
    ``meets_latency``, ``meets_budgets``, ``completed``, ``default``, ``recommended``,
    ``rating``, and ``metric_value``: the number compared), ``recommended`` /
    ``recommended_nodeid`` (the variant with the least metric among those that
    completed and meet their latency budget, or None),
    ``recommendation`` (one sentence saying why, or why there is none), ``worst``,
    ``default`` (the variant marked ``default=True``; the first if several),
    ``saving_vs_worst`` / ``saving_vs_default`` (fractions of that variant's metric
    the recommended one saves; None when there is no recommendation or no default),
    ``left_out`` (members of the group without a valid measurement) and ``notes``.
    ``options`` is accepted for symmetry (the rule does not change the tables).
    """
    del options  # the tables do not depend on options today; kept for a stable signature
    sets = comparable_sets(entries)
    meters_per_group: dict[str, int] = {}
    for group, _meter, _est in sets:
        meters_per_group[group] = meters_per_group.get(group, 0) + 1
    unmeasured: dict[str, list[str]] = {}
    for entry in entries:
        if not is_measured(entry) and entry.get("group"):
            unmeasured.setdefault(str(entry["group"]), []).append(str(entry.get("nodeid")))
    tables = []
    for (group, meter, estimated), members in sets.items():
        if len(members) < 2:
            continue
        metric = _metric_of(members)
        rows: list[dict[str, Any]] = []
        variant_counts = collections.Counter(m.get("variant") for m in members)
        for member in members:
            latency = member.get("latency_ms") or {}
            rows.append({
                "nodeid": member.get("nodeid"),
                "variant": _label(member, variant_counts),
                "joules_per_call": _number(member.get("joules_per_call")),
                "joules_per_item": _number(member.get("joules_per_item")),
                "items": _number(member.get("items")),
                "wh_per_1000_items": wh_per_1000_items(_number(member.get("joules_per_item"))),
                "latency_ms_median": _number(latency.get("median")),
                "latency_budget_ms": _number((member.get("budget") or {}).get("latency_ms")),
                "latency_stat": (member.get("budget") or {}).get("latency_stat") or "median",
                "meets_latency": meets_latency_budget(member),
                "meets_budgets": meets_budgets(member),
                "completed": completed(member),
                "default": bool(member.get("default_variant")),
                "recommended": False,
                "rating": member.get("rating"),
                "metric_value": _value(member, metric),
            })
        notes: list[str] = []
        if metric == "joules_per_call":
            missing = [r["variant"] for r in rows if r["joules_per_item"] is None]
            notes.append(f"compared per call: no items= on {', '.join(missing)}; give items= "
                         "to compare variants that process different amounts of work")
        eligible = [r for r in rows if r["completed"] and r["meets_latency"]]
        best = min(eligible, key=lambda r: r["metric_value"]) if eligible else None
        worst = max(rows, key=lambda r: r["metric_value"])
        defaults = [r for r in rows if r["default"]]
        default = defaults[0] if defaults else None
        if len(defaults) > 1:
            notes.append("several variants are marked default=True ("
                         f"{', '.join(r['variant'] for r in defaults)}): using "
                         f"{defaults[0]['variant']}")
        per = METRIC_LABEL[metric].split("/")[1]
        if best is not None:
            best["recommended"] = True
            recommendation = (f"{best['variant']}: least energy per {per} among the variants "
                              "that completed and meet their latency budget")
        elif not any(r["completed"] for r in rows):
            recommendation = "none: no variant completed without failing"
        else:
            recommendation = "none: no variant meets its latency budget"
        table = {
            "group": group,
            "title": group if meters_per_group[group] == 1 else f"{group} ({meter})",
            "meter": meter,
            "estimated": estimated,
            "metric": metric,
            "variants": rows,
            "recommended": best["variant"] if best else None,
            "recommended_nodeid": best["nodeid"] if best else None,
            "recommendation": recommendation,
            "worst": worst["variant"],
            "default": default["variant"] if default else None,
            "saving_vs_worst": (_saving(best["metric_value"], worst["metric_value"])
                                if best else None),
            "saving_vs_default": (_saving(best["metric_value"], default["metric_value"])
                                  if best and default else None),
            "left_out": sorted(unmeasured.get(group, []), key=_natural_key),
            "notes": notes,
        }
        tables.append(table)
    return tables


def _energy(joules: float | None, estimated: bool) -> str:
    if joules is None:
        return "-"
    return format_energy(joules) + (" est." if estimated else "")


def _fraction(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    return "<1%" if 0 < fraction < 0.005 else f"{fraction * 100:.0f}%"


def _factor(saving: float | None) -> str:
    """"9.1x less" from a saving of 0.89 (the number people remember)."""
    if saving is None or saving <= 0 or saving >= 1:
        return ""
    return f", {1 / (1 - saving):.2g}x less"


def format_wh(wh: float | None, digits: int = 3) -> str:
    """``"0.33 mWh"``: Wh per 1,000 items of small models are tiny, so scale the unit."""
    if wh is None:
        return "-"
    if wh == 0:
        return "0 Wh"
    return format_scaled(wh, [(1e3, "kWh"), (1.0, "Wh"), (1e-3, "mWh"), (1e-6, "uWh"),
                              (1e-9, "nWh")], digits)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


RIGHTSIZING_HEADERS = ["variant", "J/item", "per 1k items", "J/call", "latency med",
                       "latency budget", "meets budgets", "rating", "note"]


def _note(row: Mapping[str, Any]) -> str:
    parts = []
    if row["recommended"]:
        parts.append("recommended")
    if row["default"]:
        parts.append("default")
    if not row["completed"]:
        parts.append("test failed")
    elif not row["meets_latency"]:
        parts.append("over latency budget")
    return ", ".join(parts)


def _saving_sentence(table: Mapping[str, Any]) -> list[str]:
    if table["recommended"] is None:
        return [f"recommended: {table['recommendation']}"]
    per = METRIC_LABEL[table["metric"]].split("/")[1]
    lines = [f"recommended: {table['recommendation']}"]
    saves = []
    if table["worst"] != table["recommended"]:
        saves.append(f"{_fraction(table['saving_vs_worst'])} less energy per {per} than the "
                     f"worst ({table['worst']}{_factor(table['saving_vs_worst'])})")
    if table["default"] is None:
        saves.append("no variant is marked default=True")
    elif table["default"] == table["recommended"]:
        saves.append("it is already the default")
    else:
        saves.append(f"{_fraction(table['saving_vs_default'])} less than the default "
                     f"({table['default']}{_factor(table['saving_vs_default'])})")
    lines.append("  " + "; ".join(saves))
    return lines


def _table_rows(table: Mapping[str, Any], encoding: str | None) -> list[list[str]]:
    from pytest_energy.report.terminal import format_stars  # lazy: keep option registration cheap

    rows = []
    for row in table["variants"]:
        budget = row["latency_budget_ms"]
        rows.append([
            row["variant"],
            _energy(row["joules_per_item"], table["estimated"]),
            format_wh(row["wh_per_1000_items"]),
            _energy(row["joules_per_call"], table["estimated"]),
            format_duration_ms(row["latency_ms_median"]) if row["latency_ms_median"] is not None
            else "-",
            "-" if budget is None else f"{format_duration_ms(budget)} {row['latency_stat']}",
            _yes(row["meets_budgets"]),
            format_stars(row["rating"], encoding),
            _note(row),
        ])
    return rows


def render_rightsizing(tables: Sequence[Mapping[str, Any]], options: RightsizingOptions,
                       encoding: str | None = None) -> str:
    """The right-sizing tables as text, to print after the energy summary.

    One block per table: a title line saying what is compared and by which meter, the
    variants, and the recommendation with its savings vs the worst and the default.
    ``encoding`` is the terminal's (stars fall back to ``*`` where it cannot print them).
    """
    del options
    if not tables:
        return ""
    from tabulate import tabulate  # imported only when there is something to print

    blocks = []
    for table in tables:
        est = ", estimated" if table["estimated"] else ""
        what = "energy per item" if table["metric"] == "joules_per_item" else "energy per call"
        lines = [f"{table['title']}: {len(table['variants'])} variants compared by {what} "
                 f"(meter {table['meter']}{est})"]
        rows = _table_rows(table, encoding)
        if len(rows) > MAX_PRINTED_VARIANTS:
            # a "group" of thousands (a big parametrization) is no variant choice to
            # read row by row: print the recommendation, the rest is in the JSON report
            lines.append(f"  ({len(rows)} variants: the full table is in the JSON report)")
        else:
            lines.append(tabulate(rows, headers=RIGHTSIZING_HEADERS, tablefmt="simple",
                                  disable_numparse=True))
        lines.extend(_saving_sentence(table))
        lines.extend(f"  note: {note}" for note in table["notes"])
        if table["left_out"]:
            lines.append(f"  not measured, left out: {', '.join(table['left_out'])}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# ----- carbon and cost ------------------------------------------------------------------


def carbon_cost(entries: Sequence[Mapping[str, Any]],
                options: RightsizingOptions) -> dict[str, Any] | None:
    """gCO2e and cost per call, per 1,000 items and for the whole run; None when unset.

    Uses only the numbers the user gave (``carbon_intensity`` in gCO2e/kWh, ``price``
    per kWh): nothing is looked up. A figure whose factor is unset is None.

    Per test: ``joules_per_call`` (median over trials) x factor / 3.6e6 J per kWh; per
    1,000 items the same from ``joules_per_item`` x 1,000 (None without items).

    Whole run (``total``): the sum over measured tests of ``joules_per_call`` x
    ``calls + warmup_calls``, i.e. every call of the measured code, warm-up included,
    valued at its median per-call energy. It covers what the meter saw during the
    measured code only: not setup, teardown, unmeasured tests or idle time between
    tests; and it is an estimate when the meter is (``estimated``).
    """
    intensity, price = options.carbon_intensity, options.price
    if intensity is None and price is None:
        return None

    def grams(joules: float | None) -> float | None:
        return None if joules is None or intensity is None else joules / J_PER_KWH * intensity

    def cost(joules: float | None) -> float | None:
        return None if joules is None or price is None else joules / J_PER_KWH * price

    tests = []
    total_joules = 0.0
    total_calls = 0
    for entry in entries:
        if not is_measured(entry):
            continue
        jpc = _value(entry, "joules_per_call")
        jpi = _number(entry.get("joules_per_item"))
        per_1000 = None if jpi is None else jpi * ITEMS_PER_LABEL
        calls = int(entry.get("calls") or 0) + int(entry.get("warmup_calls") or 0)
        run_joules = jpc * calls
        total_joules += run_joules
        total_calls += calls
        tests.append({
            "nodeid": entry.get("nodeid"),
            "estimated": bool(entry.get("estimated")),
            "joules_per_call": jpc,
            "joules_per_1000_items": per_1000,
            "calls_total": calls,
            "joules_total": run_joules,
            "g_co2e_per_call": grams(jpc),
            "g_co2e_per_1000_items": grams(per_1000),
            "g_co2e_total": grams(run_joules),
            "cost_per_call": cost(jpc),
            "cost_per_1000_items": cost(per_1000),
            "cost_total": cost(run_joules),
        })
    return {
        "carbon_intensity_g_per_kwh": intensity,
        "price_per_kwh": price,
        "currency": options.currency,
        "estimated": any(t["estimated"] for t in tests),
        "tests": tests,
        "total": {
            "joules": total_joules,
            "kwh": total_joules / J_PER_KWH,
            "g_co2e": grams(total_joules),
            "cost": cost(total_joules),
            "calls": total_calls,
            "tests": len(tests),
        },
        "scope": "measured code only: sum over measured tests of joules_per_call x (calls + "
                 "warmup_calls); excludes setup, teardown, unmeasured tests and idle time",
    }


def format_mass(grams: float | None, digits: int = 3) -> str:
    """``"1.2 mg"``, ``"350 ng"``: carbon per inference call is tiny, so scale it."""
    if grams is None:
        return "-"
    if grams == 0:
        return "0 g"
    return format_scaled(grams, [(1e3, "kg"), (1.0, "g"), (1e-3, "mg"), (1e-6, "ug"),
                                 (1e-9, "ng")], digits)


def format_money(amount: float | None, currency: str = "", digits: int = 3) -> str:
    """``"0.42 EUR"``; tiny amounts in scientific notation (``"3.1e-09 EUR"``)."""
    if amount is None:
        return "-"
    text = "0" if amount == 0 else (f"{amount:.2f}" if abs(amount) >= 0.01
                                    else f"{amount:.{digits - 1}e}")
    return f"{text} {currency}".strip()


def _carbon_by_nodeid(carbon: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {str(t["nodeid"]): t for t in (carbon or {}).get("tests", [])}


def summary_columns(entries: Sequence[Mapping[str, Any]], carbon: Mapping[str, Any] | None
                    ) -> tuple[list[str], list[list[str]]]:
    """Extra summary columns: headers, and one row of cells per entry (same order).

    Always ``per 1k items`` (Wh per 1,000 items, unit scaled: ``42 uWh``) and
    ``rated by`` (which rule gave the stars: ``group``, ``budget`` or ``-``); with a
    carbon intensity ``CO2e/call`` and ``CO2e/1k items`` (grams, unit scaled); with a
    price ``cost/call`` and ``cost/1k items``. Append them to
    :data:`pytest_energy.report.SUMMARY_HEADERS` and each summary row. Entries must
    have been through :func:`apply_ratings`.
    """
    headers = ["per 1k items", "rated by"]
    has_carbon = carbon is not None and carbon.get("carbon_intensity_g_per_kwh") is not None
    has_cost = carbon is not None and carbon.get("price_per_kwh") is not None
    currency = str((carbon or {}).get("currency") or "")
    if has_carbon:
        headers += ["CO2e/call", "CO2e/1k items"]
    if has_cost:
        headers += ["cost/call", "cost/1k items"]
    by_id = _carbon_by_nodeid(carbon)
    rows = []
    for entry in entries:
        wh = _number(entry.get("wh_per_1000_items"))
        if wh is None:
            wh = wh_per_1000_items(_number(entry.get("joules_per_item")))
        row = [format_wh(wh), str(entry.get("rating_rule") or "-")]
        test = by_id.get(str(entry.get("nodeid")), {})
        if has_carbon:
            row += [format_mass(test.get("g_co2e_per_call")),
                    format_mass(test.get("g_co2e_per_1000_items"))]
        if has_cost:
            row += [format_money(test.get("cost_per_call"), currency),
                    format_money(test.get("cost_per_1000_items"), currency)]
        rows.append(row)
    return headers, rows


def _total_line(carbon: Mapping[str, Any]) -> str:
    total = carbon["total"]
    parts = [f"{format_energy(total['joules'])} ({total['kwh']:.3g} kWh)"]
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


def summary_lines(entries: Sequence[Mapping[str, Any]], carbon: Mapping[str, Any] | None,
                  options: RightsizingOptions) -> list[str]:
    """Lines to print under the summary table: the rating rules used, the run's total.

    Only rules that rated at least one row are explained, so the legend matches the
    ``rated by`` column.
    """
    lines = []
    rules = {e.get("rating_rule") for e in entries}
    if RATING_RULE_GROUP in rules:
        lines.append(
            "rated by group: AI Energy Score rule within the test's group (same meter): the "
            "group's [min, max] energy per item (per call without items) in five equal "
            "intervals, lowest 20% = 5 stars")
    if RATING_RULE_BUDGET in rules:
        lines.append("rated by budget: five equal intervals of [0, budget], use <= 20% = "
                     "5 stars" + (" (lone tests; groups of 2+ are rated by group)"
                                  if options.rating_rule == RATING_RULE_AUTO else ""))
    if carbon is not None:
        lines.append(_total_line(carbon))
    return lines


def _carbon_table(carbon: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the per-test carbon/cost table (shared by text and markdown)."""
    headers = ["test"]
    has_carbon = carbon.get("carbon_intensity_g_per_kwh") is not None
    has_cost = carbon.get("price_per_kwh") is not None
    currency = str(carbon.get("currency") or "")
    if has_carbon:
        headers += ["CO2e/call", "CO2e/1k items", "CO2e run"]
    if has_cost:
        headers += ["cost/call", "cost/1k items", "cost run"]
    rows = []
    for test in carbon["tests"]:
        row = [str(test["nodeid"])]
        if has_carbon:
            row += [format_mass(test["g_co2e_per_call"]),
                    format_mass(test["g_co2e_per_1000_items"]), format_mass(test["g_co2e_total"])]
        if has_cost:
            row += [format_money(test["cost_per_call"], currency),
                    format_money(test["cost_per_1000_items"], currency),
                    format_money(test["cost_total"], currency)]
        rows.append(row)
    return headers, rows


def render_carbon(carbon: Mapping[str, Any] | None, encoding: str | None = None) -> str:
    """A standalone carbon/cost table per test plus the whole-run line ("" when unset).

    An alternative to :func:`summary_columns` for callers that keep the summary narrow.
    ``encoding`` is accepted for symmetry with :func:`render_rightsizing` (ASCII only).
    """
    del encoding
    if carbon is None:
        return ""
    from tabulate import tabulate

    headers, rows = _carbon_table(carbon)
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    return table + "\n" + _total_line(carbon)


# ----- hints ------------------------------------------------------------------------------


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else "")


def _short(nodeid: object) -> str:
    """The test's name without its file (hints stay one readable line)."""
    return str(nodeid).split("::", 1)[-1]


def _sibling_hints(tables: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per table: the variants using >= SIBLING_FACTOR x the energy per item of the best."""
    found = []
    for table in tables:
        if table["metric"] != "joules_per_item":
            continue  # per call, a batch of 32 and a batch of 1 are not the same job
        rows = table["variants"]
        reference = next((r for r in rows if r["recommended"]), None)
        recommended = reference is not None
        if reference is None:
            reference = min(rows, key=lambda r: r["metric_value"])
        best = reference["metric_value"]
        if best <= 0:
            continue
        heavy = sorted((r for r in rows if r["metric_value"] >= SIBLING_FACTOR * best),
                       key=lambda r: -r["metric_value"])
        if not heavy:
            continue
        named = [f"{r['variant']}{' (default)' if r['default'] else ''} "
                 f"{r['metric_value'] / reference['metric_value']:.2g}x" for r in heavy]
        est = " est." if table["estimated"] else ""
        why = "recommended" if recommended else "most efficient, over its latency budget"
        advice = (f"; switch to {reference['variant']} where the latency allows"
                  if recommended else "")
        found.append(
            f"{table['title']}: energy per item vs {reference['variant']} "
            f"({format_energy(best)}{est}/item, {why}): {_names(named)}{advice}")
    return found


def _loose_budget_hint(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """One hint naming the tests whose energy budget use is under LOOSE_BUDGET_USE."""
    loose: list[tuple[float, str]] = []
    for entry in entries:
        if not is_measured(entry) or not completed(entry):
            continue
        use_map = entry.get("budget_use") or {}
        uses = [u for u in (_number(use_map.get("joules")), _number(use_map.get("joules_per_item")))
                if u is not None]
        if uses and max(uses) < LOOSE_BUDGET_USE:
            loose.append((max(uses), _short(entry.get("nodeid"))))
    if not loose:
        return []
    loose.sort()
    named = [f"{nodeid} {_fraction(use)}" for use, nodeid in loose]
    return [f"{len(loose)} test{'s use' if len(loose) > 1 else ' uses'} under "
            f"{LOOSE_BUDGET_USE:.0%} of {'their' if len(loose) > 1 else 'its'} energy budget "
            f"({_names(named)}): a budget at ~2x the measured use would catch a regression "
            "that doubles energy; tighten it (the ratchet, --energy-suggest-budgets, "
            "prints one)"]


def _power_limit(entry: Mapping[str, Any]) -> float | None:
    """The board power limit in W: a number, or a {domain: W} mapping summed (multi-GPU)."""
    limit = entry.get("power_limit_w")
    if isinstance(limit, Mapping):
        values = [_number(v) for v in limit.values()]
        return None if not values or None in values else sum(v for v in values if v is not None)
    return _number(limit)


def _gpu_hints(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """GPU tests averaging under GPU_UNDERUSE of the power limit (needs ``power_limit_w``)."""
    low: list[tuple[float, str]] = []
    for entry in entries:
        if not is_measured(entry) or entry.get("estimated"):
            continue
        if not str(entry.get("device") or "").startswith("cuda"):
            continue
        watts, limit = _number(entry.get("watts")), _power_limit(entry)
        if watts is None or limit is None or limit <= 0:
            continue  # power limit unknown: no claim
        if watts < GPU_UNDERUSE * limit:
            name = _short(entry.get("nodeid"))
            low.append((watts / limit, f"{name} {watts:.3g} W of {limit:.3g} W "
                                       f"({_fraction(watts / limit)})"))
    if not low:
        return []
    low.sort()
    return [f"GPU likely under-utilised: {_names([text for _, text in low])} average power "
            f"in the measured windows, under {GPU_UNDERUSE:.0%} of the power limit: try a "
            "larger batch (more items per call for little extra energy)"]


def hints(entries: Sequence[Mapping[str, Any]], tables: Sequence[Mapping[str, Any]],
          options: RightsizingOptions) -> list[str]:
    """Short nudges, each backed by a number measured in this run ([] with hints off).

    * sibling: in a right-sizing table compared per item, variants using at least
      :data:`SIBLING_FACTOR` x the energy per item of the recommended variant (or of
      the most efficient one when none meets its latency budget);
    * loose budget: tests that completed using under :data:`LOOSE_BUDGET_USE` of their
      joules or joules-per-item budget (one hint naming the loosest);
    * GPU: tests on ``cuda`` measured by a hardware meter whose average power in the
      windows (``watts``) is under :data:`GPU_UNDERUSE` of ``power_limit_w``; no
      hint when the power limit is unknown.
    """
    if not options.hints:
        return []
    return [*_sibling_hints(tables), *_loose_budget_hint(entries), *_gpu_hints(entries)]


# ----- markdown -----------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_sections(tables: Sequence[Mapping[str, Any]], carbon: Mapping[str, Any] | None,
                      hints: Sequence[str]) -> str:
    """Markdown for the report writer: "Right-sizing", "Carbon and cost", "Hints".

    Sections with nothing to say are left out; "" when all are empty.
    """
    from tabulate import tabulate

    out: list[str] = []
    if tables:
        out.append("## Right-sizing\n")
        for table in tables:
            est = ", estimated" if table["estimated"] else ""
            out.append(f"### {_md_escape(table['title'])} (meter {table['meter']}{est})\n")
            rows = [[_md_escape(cell) for cell in row]
                    for row in _table_rows(table, "utf-8")]
            out.append(tabulate(rows, headers=RIGHTSIZING_HEADERS, tablefmt="github",
                                disable_numparse=True) + "\n")
            out.extend(_md_escape(line.strip()) + "\n" for line in _saving_sentence(table))
            out.extend(f"Note: {_md_escape(note)}\n" for note in table["notes"])
    if carbon is not None:
        out.append("## Carbon and cost\n")
        out.append(render_carbon_markdown(carbon) + "\n")
    if hints:
        out.append("## Hints\n")
        out.append("\n".join(f"- {_md_escape(hint)}" for hint in hints) + "\n")
    return "\n".join(out)


def render_carbon_markdown(carbon: Mapping[str, Any]) -> str:
    """The carbon/cost table in GitHub markdown, plus the whole-run line."""
    from tabulate import tabulate

    headers, rows = _carbon_table(carbon)
    rows = [[_md_escape(cell) for cell in row] for row in rows]
    return (tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
            + "\n\n" + _md_escape(_total_line(carbon)))


# ----- command line: render a saved JSON report -----------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pytest_energy.rightsizing REPORT.json [--carbon-intensity G] ...``.

    Re-renders the right-sizing tables, carbon/cost and hints of a saved
    ``--energy-json`` report (numbers from that run only: nothing is re-measured).
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m pytest_energy.rightsizing",
                                     description=main.__doc__)
    parser.add_argument("report")
    parser.add_argument("--carbon-intensity", type=_cli_type(RIGHTSIZING_SETTINGS[0]))
    parser.add_argument("--price", type=_cli_type(RIGHTSIZING_SETTINGS[1]))
    parser.add_argument("--currency", type=_cli_type(RIGHTSIZING_SETTINGS[2]), default="")
    parser.add_argument("--rating-rule", type=_cli_type(RIGHTSIZING_SETTINGS[3]),
                        default=RATING_RULE_AUTO)
    parser.add_argument("--markdown", action="store_true", help="print markdown instead")
    args = parser.parse_args(argv)
    with open(args.report, encoding="utf-8") as handle:
        entries = json.load(handle)["tests"]
    options = RightsizingOptions(carbon_intensity=args.carbon_intensity, price=args.price,
                                 currency=args.currency, rating_rule=args.rating_rule)
    apply_ratings(entries, options)
    tables = rightsizing_tables(entries, options)
    carbon = carbon_cost(entries, options)
    found = hints(entries, tables, options)
    if args.markdown:
        print(markdown_sections(tables, carbon, found))
        return 0
    encoding = getattr(sys.stdout, "encoding", None)
    blocks = [render_rightsizing(tables, options, encoding), render_carbon(carbon, encoding)]
    if found:
        blocks.append("hints:\n" + "\n".join(f"- {hint}" for hint in found))
    print("\n\n".join(block for block in blocks if block))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
