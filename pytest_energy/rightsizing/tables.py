"""Right-sizing tables: for each comparable set of two or more measured tests, the
variants side by side and the one to ship.

Measuring is only worth it when it changes a decision: which batch size, which
precision, which model or runtime to ship. A table answers that for one group: the
variant with the least energy (per item, else per call) among those that completed
and meet their latency budget, and what it saves against the worst and the default.
Tables are plain JSON-ready dicts: the JSON report stores them as they are.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_energy.entry import Entry, RatingRule
from pytest_energy.parsers import RATING_RULE_BUDGET, RATING_RULE_GROUP
from pytest_energy.rightsizing.base import (
    METRIC_LABEL,
    PER_CALL,
    RightsizingOptions,
    SetKey,
    comparable_sets,
    completed,
    finite,
    meets_budgets,
    meets_latency_budget,
    metric_of,
    metric_value,
    names,
    natural_key,
    wh_per_1000_items,
)
from pytest_energy.rightsizing.ratings import range_problem

#: One table, and one of its variant rows, as stored in the JSON report.
Table = dict[str, Any]
Row = dict[str, Any]


def _label(entry: Entry, variant_counts: Mapping[str | None, int]) -> str:
    """The variant id when it tells the members apart, else the test's name.

    ``variant_counts``: how many members have each variant id (a Counter, computed once
    per group: groups can hold thousands of tests)."""
    if entry.variant and variant_counts.get(entry.variant) == 1:
        return entry.variant
    return entry.nodeid.rsplit("::", 1)[-1]


def _saving(better: float, worse: float) -> float | None:
    """Fraction of ``worse`` that ``better`` saves (0.9 = 90% less); None when undefined."""
    return None if worse <= 0 else 1.0 - better / worse


def _row(member: Entry, metric: str, variant_counts: Mapping[str | None, int]) -> Row:
    """One variant's row: its numbers, whether it completed and meets its budgets."""
    return {
        "nodeid": member.nodeid,
        "variant": _label(member, variant_counts),
        "joules_per_call": finite(member.joules_per_call),
        "joules_per_item": finite(member.joules_per_item),
        "items": finite(member.items),
        "wh_per_1000_items": wh_per_1000_items(finite(member.joules_per_item)),
        "latency_ms_median": finite(member.latency("median")),
        "latency_budget_ms": finite(member.budget.latency_ms),
        "latency_stat": member.budget.latency_stat or "median",
        "meets_latency": meets_latency_budget(member),
        "meets_budgets": meets_budgets(member),
        "completed": completed(member),
        "default": member.default_variant,
        "recommended": False,
        "rating": member.rating,
        "metric_value": metric_value(member, metric),
    }


def _notes(rows: Sequence[Row], metric: str) -> list[str]:
    """Why the table compares per call, and which default it used when several claim it."""
    notes: list[str] = []
    if metric == PER_CALL:
        missing = [r["variant"] for r in rows if r["joules_per_item"] is None]
        notes.append(f"compared per call: no items= on {names(missing)}; give items= "
                     "to compare variants that process different amounts of work")
    defaults = [r for r in rows if r["default"]]
    if len(defaults) > 1:
        notes.append("several variants are marked default=True ("
                     f"{names([r['variant'] for r in defaults])}): using "
                     f"{defaults[0]['variant']}")
    return notes


def _recommend(rows: Sequence[Row], metric: str) -> tuple[Row | None, str]:
    """The recommended row (marked in place) and the sentence that says why, or why none.

    Only a variant that completed and meets its latency budget can be recommended: the
    least energy is worth nothing from a variant that fails or is too slow.
    """
    eligible = [r for r in rows if r["completed"] and r["meets_latency"]]
    if eligible:
        best = min(eligible, key=lambda r: r["metric_value"])
        best["recommended"] = True
        per = METRIC_LABEL[metric].split("/")[1]
        return best, (f"{best['variant']}: least energy per {per} among the variants "
                      "that completed and meet their latency budget")
    if not any(r["completed"] for r in rows):
        return None, "none: no variant completed without failing"
    return None, "none: no variant meets its latency budget"


def _get(row: Row | None, key: str) -> Any:
    """``row[key]``, or None when there is no such row (no recommendation, no default)."""
    return None if row is None else row[key]


def _saving_of(best: Row | None, other: Row | None) -> float | None:
    """What the recommended row saves against ``other``; None when either is missing."""
    if best is None or other is None:
        return None
    return _saving(best["metric_value"], other["metric_value"])


def _rating(members: Sequence[Entry], rule: str) -> tuple[str | None, list[str]]:
    """Which rule rated this set's stars, and a note saying why when it is not the
    group rule the user would expect (``auto``, ``group``)."""
    if rule == RATING_RULE_BUDGET:
        return str(RatingRule.BUDGET), []
    problem = range_problem(members)
    if problem is None:
        return str(RatingRule.GROUP), []
    if rule == RATING_RULE_GROUP:
        return None, [f"unrated: {problem}"]
    return str(RatingRule.BUDGET), [f"rated by budget use, not by the group: {problem}"]


def _table(key: SetKey, title: str, members: Sequence[Entry], left_out: list[str],
           rule: str) -> Table:
    """The table of one comparable set (see :func:`rightsizing_tables`)."""
    group, meter, estimated = key
    metric = metric_of(members)
    variant_counts = collections.Counter(m.variant for m in members)
    rows = [_row(member, metric, variant_counts) for member in members]
    rating_rule, rating_notes = _rating(members, rule)
    notes = _notes(rows, metric) + rating_notes
    best, recommendation = _recommend(rows, metric)
    worst = max(rows, key=lambda r: r["metric_value"])
    default = next((r for r in rows if r["default"]), None)
    return {
        "group": group,
        "title": title,
        "meter": meter,
        "estimated": estimated,
        "metric": metric,
        "variants": rows,
        "recommended": _get(best, "variant"),
        "recommended_nodeid": _get(best, "nodeid"),
        "recommendation": recommendation,
        "worst": worst["variant"],
        "default": _get(default, "variant"),
        "saving_vs_worst": _saving_of(best, worst),
        "saving_vs_default": _saving_of(best, default),
        "left_out": left_out,
        "notes": notes,
        "rating_rule": rating_rule,
    }


def _left_out(entries: Sequence[Entry]) -> dict[str, list[str]]:
    """Per group, the members without a valid measurement (named under the table)."""
    unmeasured: dict[str, list[str]] = {}
    for entry in entries:
        if not entry.is_measured and entry.group:
            unmeasured.setdefault(entry.group, []).append(entry.nodeid)
    return {group: sorted(ids, key=natural_key) for group, ids in unmeasured.items()}


def rightsizing_tables(entries: Sequence[Entry], options: RightsizingOptions) -> list[Table]:
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
    ``left_out`` (members of the group without a valid measurement), ``notes`` (each
    bounded: a long list names a few and says how many more) and ``rating_rule``
    (``group``, ``budget``, or None: which rule gave the stars; when the group's range
    could not be used a note says why). ``rating`` is the entry's: pass the entries
    :func:`apply_ratings` returned.
    """
    sets = comparable_sets(entries)
    meters_per_group = collections.Counter(group for group, _meter, _est in sets)
    left_out = _left_out(entries)
    tables = []
    for key, members in sets.items():
        if len(members) < 2:
            continue
        group, meter, _est = key
        title = group if meters_per_group[group] == 1 else f"{group} ({meter})"
        tables.append(_table(key, title, members, left_out.get(group, []),
                             options.rating_rule))
    return tables
