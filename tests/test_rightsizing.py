"""Unit tests of pytest_energy.rightsizing: pure functions over hand-built entries."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pytest_energy import parsers
from pytest_energy import rightsizing as rs
from pytest_energy.entry import Entry
from pytest_energy.errors import EnergyConfigError
from pytest_energy.options import RIGHTSIZING_SETTINGS
from pytest_energy.rightsizing import RightsizingOptions
from pytest_energy.rightsizing import __main__ as rightsizing_report

AUTO = RightsizingOptions()


def entry(nodeid: str, jpc: float | None = 1.0, *, items: float | None = None,
          group: str | None = None, variant: str | None = None, default: bool = False,
          outcome: str = "passed", verdict: str = "ok", meter: str = "step",
          estimated: bool = False, latency_ms: float = 1.0, latency_budget: float | None = None,
          joules_budget: float | None = None, rating: int | None = None,
          calls: int = 10, warmup: int = 1, device: str = "cpu",
          watts: float | None = None, **extra: Any) -> Entry:
    """An entry as the plugin builds it, with the fields rightsizing reads."""
    jpi = None if jpc is None or items is None else jpc / items
    latency_use = None if latency_budget is None else latency_ms / latency_budget
    joules_use = None if joules_budget is None or jpc is None else jpc / joules_budget
    name = nodeid.split("[")[0].rsplit("::", 1)[-1]
    result = {
        "nodeid": nodeid, "outcome": outcome, "joules_per_call": jpc, "joules_per_item": jpi,
        "latency_ms": {"median": latency_ms, "p95": latency_ms * 1.2, "mean": latency_ms,
                       "min": latency_ms, "max": latency_ms}, "calls": calls,
        "warmup_calls": warmup, "items": items, "estimated": estimated, "meter": meter,
        "domains": ["x:0"], "device": device, "watts": watts, "valid": jpc is not None,
        "budget": {"joules": joules_budget, "joules_per_item": None,
                   "latency_ms": latency_budget, "latency_stat": "median"},
        "budget_use": {"joules": joules_use, "joules_per_item": None, "latency": latency_use},
        "rating": rating, "rating_rule": "budget" if rating is not None else None,
        "verdict": verdict, "group": group or name, "group_explicit": group is not None,
        "variant": variant if variant is not None else (
            nodeid.split("[", 1)[1].rstrip("]") if "[" in nodeid else None),
        "default_variant": default, "warnings": [], "problem": None,
        "trials": [] if jpc is None else [{"calls": calls, "window_s": 0.1,
                                           "joules": {"x:0": jpc * calls}}],
    }
    result.update(extra)
    return Entry.from_json(result)


def batch_group(values: dict[str, float], **kwargs: Any) -> list[Entry]:
    """test_p[batchN] entries with the given J/item (items = N)."""
    out = []
    for variant, per_item in values.items():
        items = float(variant.removeprefix("batch").split("-")[0])
        out.append(entry(f"t.py::test_p[{variant}]", per_item * items, items=items, **kwargs))
    return out


# ----- star rule --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "stars"), [
    (0.0, 5), (2.0, 5), (2.0000001, 4), (4.0, 4), (5.0, 3), (6.0, 3), (7.9, 2), (8.0, 2),
    (8.1, 1), (10.0, 1),
])
def test_group_stars_five_equal_intervals_of_the_range(value: float, stars: int) -> None:
    # Range [0, 10]: lowest 20% (<= 2) -> 5 stars ... highest 20% (> 8) -> 1 star.
    assert rs.group_stars(value, 0.0, 10.0) == stars


def test_group_stars_is_relative_to_the_group_minimum() -> None:
    assert rs.group_stars(100.0, 100.0, 200.0) == 5
    assert rs.group_stars(200.0, 100.0, 200.0) == 1
    assert rs.group_stars(150.0, 100.0, 200.0) == 3


def test_group_stars_all_equal_is_five_and_outside_is_an_error() -> None:
    assert rs.group_stars(3.0, 3.0, 3.0) == 5
    with pytest.raises(ValueError, match="outside"):
        rs.group_stars(11.0, 0.0, 10.0)


# ----- apply_ratings ----------------------------------------------------------------------


def test_auto_rates_groups_by_energy_per_item_and_lone_tests_by_budget() -> None:
    entries = batch_group({"batch1": 10e-3, "batch8": 3e-3, "batch32": 1e-3})
    lone = entry("t.py::test_lone", 0.5, joules_budget=1.0, rating=3)
    entries.append(lone)
    entries = rs.apply_ratings(entries, AUTO)
    by_variant = {e.variant: e for e in entries}
    # Range [1, 10] mJ/item: 3 mJ is 22% of the way -> 4 stars.
    assert [by_variant[v].rating for v in ("batch1", "batch8", "batch32")] == [1, 4, 5]
    assert {e.rating_rule for e in entries[:3]} == {"group"}
    assert [by_variant[v].group_rank for v in ("batch1", "batch8", "batch32")] == [3, 2, 1]
    assert all(e.group_size == 3 and e.rating_metric == "J/item" for e in entries[:3])
    lone = entries[3]
    assert (lone.rating, lone.rating_rule, lone.group_rank) == (3, "budget", 1)
    assert lone.rating_metric == "J/call"


def test_wh_per_1000_items() -> None:
    entries = [entry("t.py::test_a", 36.0, items=10), entry("t.py::test_b", 1.0)]
    entries = rs.apply_ratings(entries, AUTO)
    assert entries[0].wh_per_1000_items == pytest.approx(1.0)  # 3.6 J/item x 1000 / 3600
    assert entries[1].wh_per_1000_items is None


def test_budget_rule_keeps_budget_ratings_everywhere() -> None:
    entries = batch_group({"batch1": 10e-3, "batch8": 1e-3}, joules_budget=1.0, rating=2)
    entries = rs.apply_ratings(entries, RightsizingOptions(rating_rule="budget"))
    assert [(e.rating, e.rating_rule) for e in entries] == [(2, "budget"), (2, "budget")]
    assert [e.group_rank for e in entries] == [2, 1]  # ranks are still reported


def test_group_rule_leaves_lone_tests_unrated() -> None:
    entries = [*batch_group({"batch1": 2.0, "batch2": 1.5, "batch4": 1.0}),
               entry("t.py::test_lone", 1.0, rating=4)]
    entries = rs.apply_ratings(entries, RightsizingOptions(rating_rule="group"))
    assert [e.rating for e in entries] == [1, 3, 5, None]
    assert entries[3].rating_rule is None
    assert entries[3].budget_rating == 4


def test_apply_ratings_is_idempotent_and_rules_can_be_switched() -> None:
    entries = [*batch_group({"batch1": 2.0, "batch2": 1.0}, rating=1)]
    entries = rs.apply_ratings(entries, AUTO)
    first = json.dumps([e.to_json() for e in entries], sort_keys=True)
    entries = rs.apply_ratings(entries, AUTO)
    assert json.dumps([e.to_json() for e in entries], sort_keys=True) == first
    entries = rs.apply_ratings(entries, RightsizingOptions(rating_rule="budget"))
    assert [(e.rating, e.rating_rule) for e in entries] == [(1, "budget"), (1, "budget")]


def test_all_equal_group_has_no_range_and_is_rated_by_budget() -> None:
    entries = batch_group({"batch1": 1.0, "batch2": 1.0, "batch4": 1.0},
                          joules_budget=100.0, rating=5)
    entries = rs.apply_ratings(entries, AUTO)
    assert [(e.rating, e.rating_rule) for e in entries] == [(5, "budget")] * 3
    assert [e.group_rank for e in entries] == [1, 1, 1]  # ties share a rank


def test_only_valid_measurements_take_part() -> None:
    good = entry("t.py::test_p[a]", 1.0)
    invalid = entry("t.py::test_p[b]", None, verdict="invalid")
    skipped = entry("t.py::test_p[c]", None, outcome="skipped", verdict="not measured")
    nan = entry("t.py::test_p[d]", math.nan)
    entries = rs.apply_ratings([good, invalid, skipped, nan], AUTO)
    good = entries[0]
    assert good.group_size == 1 and good.rating_rule is None  # alone: no budget, unrated
    assert all(e.group_rank is None and e.rating is None for e in entries[1:])


def test_per_call_when_a_member_has_no_items() -> None:
    entries = [entry("t.py::test_p[a]", 4.0, items=4), entry("t.py::test_p[b]", 2.0),
               entry("t.py::test_p[c]", 3.0, items=3)]
    entries = rs.apply_ratings(entries, AUTO)
    assert [e.rating_metric for e in entries] == ["J/call"] * 3
    assert [e.rating for e in entries] == [1, 5, 3]  # 4 J vs 2 J per call


def test_different_meters_are_never_ranked_together() -> None:
    entries = [entry("t.py::test_p[gpu1]", 5.0, meter="nvml"),
               entry("t.py::test_p[gpu2]", 1.0, meter="nvml"),
               entry("t.py::test_p[gpu3]", 3.0, meter="nvml"),
               entry("t.py::test_p[cpu]", 0.1, meter="rapl")]
    entries = rs.apply_ratings(entries, AUTO)
    assert [e.group_size for e in entries] == [3, 3, 3, 1]
    assert [e.rating for e in entries] == [1, 5, 3, None]
    tables = rs.rightsizing_tables(entries, AUTO)
    assert [t["title"] for t in tables] == ["test_p (nvml)"]


def test_explicit_group_spans_functions() -> None:
    entries = [entry("t.py::test_torch", 2.0, items=2, group="mlp"),
               entry("t.py::test_onnx", 1.0, items=2, group="mlp"),
               entry("t.py::test_fixture", 1.5, items=2, group="mlp")]
    entries = rs.apply_ratings(entries, AUTO)
    assert [e.rating for e in entries] == [1, 5, 3]


# ----- right-sizing tables ----------------------------------------------------------------


def test_table_recommends_least_energy_per_item_within_latency() -> None:
    entries = [
        entry("t.py::test_p[batch1]", 1.0, items=1, latency_ms=1.0, latency_budget=5.0,
              default=True),
        entry("t.py::test_p[batch8]", 2.0, items=8, latency_ms=2.0, latency_budget=5.0),
        # The most efficient per item, but over its latency budget: not recommended.
        entry("t.py::test_p[batch32]", 4.0, items=32, latency_ms=9.0, latency_budget=5.0,
              outcome="failed", verdict="over budget"),
    ]
    entries = rs.apply_ratings(entries, AUTO)
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert table["group"] == "test_p" and table["metric"] == "joules_per_item"
    assert [v["variant"] for v in table["variants"]] == ["batch1", "batch8", "batch32"]
    assert table["recommended"] == "batch8"
    assert table["recommended_nodeid"] == "t.py::test_p[batch8]"
    assert table["worst"] == "batch1" and table["default"] == "batch1"
    assert table["saving_vs_worst"] == pytest.approx(0.75)  # 0.25 J/item vs 1 J/item
    assert table["saving_vs_default"] == pytest.approx(0.75)
    rows = {v["variant"]: v for v in table["variants"]}
    assert rows["batch32"]["meets_latency"] is False
    assert rows["batch32"]["meets_budgets"] is False
    assert rows["batch32"]["completed"] is True  # failed on the budget only
    assert rows["batch8"]["recommended"] and not rows["batch1"]["recommended"]
    assert rows["batch8"]["wh_per_1000_items"] == pytest.approx(0.25 * 1000 / 3600)
    json.dumps(table, allow_nan=False)  # JSON-able


def test_failed_variant_is_never_recommended() -> None:
    entries = [entry("t.py::test_p[a]", 1.0, outcome="failed", verdict="measured"),
               entry("t.py::test_p[b]", 3.0)]
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert table["recommended"] == "b"
    assert table["variants"][0]["completed"] is False


def test_no_variant_meets_latency() -> None:
    entries = [entry(f"t.py::test_p[{v}]", 1.0, latency_ms=9.0, latency_budget=1.0,
                     outcome="failed", verdict="over budget") for v in "ab"]
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert table["recommended"] is None
    assert table["recommendation"] == "none: no variant meets its latency budget"
    assert table["saving_vs_worst"] is None and table["saving_vs_default"] is None
    text = rs.render_rightsizing([table], AUTO, "utf-8")
    assert "recommended: none: no variant meets its latency budget" in text


def test_default_is_recommended_and_several_defaults() -> None:
    entries = [entry("t.py::test_p[a]", 1.0, default=True),
               entry("t.py::test_p[b]", 2.0, default=True)]
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert table["default"] == "a" and table["saving_vs_default"] == 0.0
    assert "several variants are marked default=True (a, b): using a" in table["notes"]
    assert "it is already the default" in rs.render_rightsizing([table], AUTO)


def test_lone_tests_and_single_measured_members_make_no_table() -> None:
    entries = [entry("t.py::test_lone", 1.0), entry("t.py::test_p[a]", 1.0),
               entry("t.py::test_p[b]", None, verdict="invalid")]
    assert rs.rightsizing_tables(entries, AUTO) == []


def test_unmeasured_members_are_listed_as_left_out() -> None:
    entries = [entry("t.py::test_p[a]", 1.0), entry("t.py::test_p[b]", 2.0),
               entry("t.py::test_p[c]", None, outcome="skipped", verdict="not measured")]
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert table["left_out"] == ["t.py::test_p[c]"]
    assert "not measured, left out: t.py::test_p[c]" in rs.render_rightsizing([table], AUTO)


def test_labels_fall_back_to_test_names_when_variant_ids_collide() -> None:
    entries = [entry("t.py::test_torch[batch8]", 1.0, group="mlp"),
               entry("t.py::test_onnx[batch8]", 2.0, group="mlp"),
               entry("t.py::test_fixture", 3.0, group="mlp")]
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert [v["variant"] for v in table["variants"]] == [
        "test_fixture", "test_onnx[batch8]", "test_torch[batch8]"]


def test_per_call_table_says_why() -> None:
    entries = [entry("t.py::test_p[a]", 1.0, items=4), entry("t.py::test_p[b]", 2.0)]
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert table["metric"] == "joules_per_call"
    assert table["notes"][0].startswith("compared per call: no items= on b")


def test_render_rightsizing_text() -> None:
    entries = batch_group({"batch1": 9e-3, "batch8": 5e-3, "batch32": 1e-3}, estimated=True,
                          latency_budget=5.0)
    entries[0] = entries[0].replace(default_variant=True)
    entries = rs.apply_ratings(entries, AUTO)
    text = rs.render_rightsizing(rs.rightsizing_tables(entries, AUTO), AUTO, "ascii")
    lines = text.splitlines()
    assert lines[0] == ("test_p: 3 variants compared by energy per item "
                        "(meter step, estimated)")
    assert lines[1].split() == ["variant", "J/item", "per", "1k", "items", "J/call",
                                "latency", "med", "latency", "budget", "meets", "budgets",
                                "rating", "note"]
    assert "9 mJ est." in lines[3] and "2.5 mWh" in lines[3] and "default" in lines[3]
    assert "***.." in lines[4]
    assert "*****" in lines[5] and lines[5].rstrip().endswith("recommended")  # ASCII stars
    assert lines[-1] == ("  89% less energy per item than the worst (batch1, 9x less); "
                         "89% less than the default (batch1, 9x less)")
    assert rs.render_rightsizing([], AUTO) == ""


# ----- carbon and cost ---------------------------------------------------------------------


def test_carbon_cost_is_none_without_factors() -> None:
    assert rs.carbon_cost([entry("t.py::test_a")], AUTO) is None


def test_carbon_and_cost_arithmetic() -> None:
    options = RightsizingOptions(carbon_intensity=400.0, price=0.25, currency="EUR")
    entries = [
        entry("t.py::test_a", 3.6, items=36, calls=9, warmup=1),  # 3.6 J = 1e-6 kWh per call
        entry("t.py::test_b", 7.2, calls=4, warmup=0),
        entry("t.py::test_c", None, verdict="invalid", calls=0, warmup=0),
    ]
    carbon = rs.carbon_cost(entries, options)
    assert carbon is not None
    a, b = carbon["tests"]
    assert a["g_co2e_per_call"] == pytest.approx(400e-6)
    assert a["cost_per_call"] == pytest.approx(0.25e-6)
    # 0.1 J/item x 1000 = 100 J per 1,000 items = 1/36,000 kWh.
    assert a["g_co2e_per_1000_items"] == pytest.approx(400 / 36000)
    assert a["cost_per_1000_items"] == pytest.approx(0.25 / 36000)
    assert a["calls_total"] == 10 and a["joules_total"] == pytest.approx(36.0)
    assert b["g_co2e_per_1000_items"] is None  # no items
    total = carbon["total"]
    # Whole run: 3.6 J x (9 + 1) + 7.2 J x 4 = 64.8 J.
    assert total["joules"] == pytest.approx(64.8)
    assert total["kwh"] == pytest.approx(64.8 / 3.6e6)
    assert total["g_co2e"] == pytest.approx(64.8 / 3.6e6 * 400)
    assert total["cost"] == pytest.approx(64.8 / 3.6e6 * 0.25)
    assert (total["calls"], total["tests"]) == (14, 2)
    assert carbon["currency"] == "EUR" and carbon["estimated"] is False
    json.dumps(carbon, allow_nan=False)


def test_carbon_only_leaves_cost_empty() -> None:
    carbon = rs.carbon_cost([entry("t.py::test_a", 3.6)], RightsizingOptions(carbon_intensity=1))
    assert carbon is not None
    assert carbon["tests"][0]["cost_per_call"] is None and carbon["total"]["cost"] is None
    headers, rows = rs.summary_columns([entry("t.py::test_a", 3.6)], carbon)
    assert headers == ["per 1k items", "rated by", "CO2e/call", "CO2e/1k items"]
    assert rows == [["-", "-", "1 ug", "-"]]


def test_summary_columns_and_lines() -> None:
    options = RightsizingOptions(carbon_intensity=500.0, price=0.3, currency="$")
    entries = [*batch_group({"batch1": 3.6, "batch2": 1.8, "batch4": 0.9}),
               entry("t.py::test_lone", 1.0, joules_budget=2.0, rating=3)]
    entries = rs.apply_ratings(entries, options)
    carbon = rs.carbon_cost(entries, options)
    headers, rows = rs.summary_columns(entries, carbon)
    assert headers == ["per 1k items", "rated by", "CO2e/call", "CO2e/1k items", "cost/call",
                       "cost/1k items"]
    assert rows[0] == ["1 Wh", "group", "500 ug", "500 mg", "3.00e-07 $", "3.00e-04 $"]
    assert rows[3][:2] == ["-", "budget"]
    lines = rs.summary_lines(entries, carbon, options)
    assert lines[0].startswith("rated by group: AI Energy Score rule")
    assert lines[1].startswith("rated by budget: five equal intervals")
    assert lines[2].startswith("carbon and cost, whole run: ")
    assert "500 gCO2e/kWh, 0.3 $/kWh as given: nothing looked up" in lines[2]


def test_render_carbon_table() -> None:
    options = RightsizingOptions(carbon_intensity=400.0, price=0.25, currency="EUR")
    carbon = rs.carbon_cost([entry("t.py::test_a", 3.6, items=36, estimated=True)], options)
    text = rs.render_carbon(carbon)
    assert text.splitlines()[0].split() == ["test", "CO2e/call", "CO2e/1k", "items", "CO2e",
                                            "run", "cost/call", "cost/1k", "items", "cost",
                                            "run"]
    assert "t.py::test_a" in text and "400 ug" in text and "2.50e-07 EUR" in text
    assert "; estimated;" in text.splitlines()[-1]
    assert rs.render_carbon(None) == ""


@pytest.mark.parametrize(("grams", "text"), [
    (None, "-"), (0.0, "0 g"), (1500.0, "1.5 kg"), (2.0, "2 g"), (0.0123, "12.3 mg"),
    (4e-6, "4 ug"), (3.2e-8, "32 ng"),
])
def test_format_mass(grams: float | None, text: str) -> None:
    assert rs.format_mass(grams) == text


@pytest.mark.parametrize(("amount", "text"), [
    (None, "-"), (0.0, "0 EUR"), (12.345, "12.35 EUR"), (0.01, "0.01 EUR"),
    (3.14159e-9, "3.14e-09 EUR"),
])
def test_format_money(amount: float | None, text: str) -> None:
    assert rs.format_money(amount, "EUR") == text


def test_format_wh() -> None:
    assert [rs.format_wh(v) for v in (None, 0.0, 2500.0, 1.0, 0.05, 4.2e-5, 3e-9)] == [
        "-", "0 Wh", "2.5 kWh", "1 Wh", "50 mWh", "42 uWh", "3 nWh"]


# ----- hints --------------------------------------------------------------------------------


def _hints(entries: list[Entry], options: RightsizingOptions = AUTO) -> list[str]:
    entries = rs.apply_ratings(entries, options)
    return rs.hints(entries, rs.rightsizing_tables(entries, options), options)


def test_sibling_hint_at_three_times_the_recommended() -> None:
    entries = batch_group({"batch1": 3e-3, "batch8": 2.9e-3, "batch32": 1e-3})
    entries[0] = entries[0].replace(default_variant=True)
    (hint,) = _hints(entries)
    assert hint == ("test_p: energy per item vs batch32 (1 mJ/item, recommended): "
                    "batch1 (default) 3x; switch to batch32 where the latency allows")


def test_sibling_hint_not_below_three_times() -> None:
    assert _hints(batch_group({"batch1": 2.9e-3, "batch32": 1e-3})) == []


def test_sibling_hint_without_a_recommendation_names_the_most_efficient() -> None:
    entries = batch_group({"batch1": 5e-3, "batch32": 1e-3}, latency_ms=9.0,
                          latency_budget=1.0, outcome="failed", verdict="over budget")
    (hint,) = _hints(entries)
    assert "vs batch32 (1 mJ/item, most efficient, over its latency budget)" in hint
    assert "switch" not in hint


def test_sibling_hint_only_per_item() -> None:
    entries = [entry("t.py::test_p[a]", 9.0), entry("t.py::test_p[b]", 1.0)]
    assert _hints(entries) == []


def test_loose_budget_hint() -> None:
    entries = [entry("t.py::test_loose", 0.2, joules_budget=1.0),
               entry("t.py::test_fair", 0.25, joules_budget=1.0),
               entry("t.py::test_failing", 0.1, joules_budget=1.0, outcome="failed",
                     verdict="measured")]
    (hint,) = _hints(entries)
    assert hint.startswith("1 test uses under 25% of its energy budget (test_loose 20%)")
    assert "tighten it" in hint


def test_loose_budget_hint_names_three_loosest() -> None:
    entries = [entry(f"t.py::test_{n}", use, joules_budget=1.0)
               for n, use in zip("abcde", (0.2, 0.1, 0.15, 0.05, 0.24), strict=True)]
    (hint,) = _hints(entries)
    assert hint.startswith("5 tests use under 25% of their energy budget "
                           "(test_d 5%, test_b 10%, test_c 15% and 2 more)")


def test_gpu_hint_needs_a_known_power_limit() -> None:
    limit = {"gpu:0": 700.0}
    low = entry("t.py::test_gpu", 1.0, device="cuda:0", meter="nvml", watts=60.0,
                power_limit_w=limit)
    busy = entry("t.py::test_busy", 1.0, device="cuda:0", meter="nvml", watts=300.0,
                 power_limit_w=limit)
    unknown = entry("t.py::test_unknown", 1.0, device="cuda", meter="nvml", watts=10.0)
    unread = entry("t.py::test_unread", 1.0, device="cuda", meter="nvml", watts=10.0,
                   power_limit_w={"gpu:0": None})
    cpu = entry("t.py::test_cpu", 1.0, device="cpu", meter="rapl", watts=1.0,
                power_limit_w=limit)
    est = entry("t.py::test_est", 1.0, device="cuda", estimated=True, watts=1.0,
                power_limit_w=limit)
    two = entry("t.py::test_two", 1.0, device="cuda", meter="nvml", watts=100.0,
                power_limit_w={"gpu:0": 300.0, "gpu:1": 300.0})
    (hint,) = _hints([low, busy, unknown, unread, cpu, est, two])
    assert hint.startswith("GPU likely under-utilised: test_gpu 60 W of 700 W (9%), "
                           "test_two 100 W of 600 W (17%) average power")
    assert "try a larger batch" in hint


def test_hints_off() -> None:
    entries = batch_group({"batch1": 9e-3, "batch32": 1e-3}, joules_budget=100.0)
    assert _hints(entries, RightsizingOptions(hints=False)) == []
    assert len(_hints(entries)) == 2


# ----- markdown -------------------------------------------------------------------------------


def test_markdown_sections() -> None:
    options = RightsizingOptions(carbon_intensity=400.0)
    entries = rs.apply_ratings(batch_group({"batch1": 9e-3, "batch8": 4e-3, "batch32": 1e-3}),
                               options)
    tables = rs.rightsizing_tables(entries, options)
    carbon = rs.carbon_cost(entries, options)
    found = rs.hints(entries, tables, options)
    text = rs.markdown_sections(tables, carbon, found)
    assert "## Right-sizing\n" in text and "### test_p (meter step)" in text
    assert "| variant " in text and "| batch32 " in text and "\u2605" in text
    assert "## Carbon and cost\n" in text and "| t.py::test_p[batch1] " in text
    assert "## Hints\n" in text and "- test_p: energy per item vs batch32" in text
    assert rs.markdown_sections([], None, []) == ""


# ----- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [
    ("400", 400.0), (250, 250.0), ("56.5 gCO2e/kWh", 56.5), ("30 g/kwh", 30.0),
])
def test_parse_carbon_intensity(raw: object, value: float) -> None:
    assert parsers.parse_carbon_intensity(raw) == value


@pytest.mark.parametrize("raw", ["0", "-5", "nan", "inf", "400 kg", "lots", True, None])
def test_parse_carbon_intensity_rejects(raw: object) -> None:
    with pytest.raises(EnergyConfigError, match="carbon_intensity="):
        parsers.parse_carbon_intensity(raw)


@pytest.mark.parametrize(("raw", "value"), [("0", 0.0), ("0.30", 0.3), ("0.3/kWh", 0.3)])
def test_parse_price(raw: object, value: float) -> None:
    assert parsers.parse_price(raw) == value


@pytest.mark.parametrize("raw", ["-0.1", "free", "0.3 EUR"])
def test_parse_price_rejects(raw: object) -> None:
    with pytest.raises(EnergyConfigError, match="price="):
        parsers.parse_price(raw)


def test_parse_currency_and_rule() -> None:
    assert parsers.parse_currency(" EUR ") == "EUR"
    assert parsers.parse_currency("") == ""
    with pytest.raises(EnergyConfigError, match="at most 8 characters"):
        parsers.parse_currency("euro cents")
    assert parsers.parse_rating_rule("GROUP") == "group"
    with pytest.raises(EnergyConfigError, match="expected one of auto, budget, group"):
        parsers.parse_rating_rule("stars")


def test_help_texts_are_safe_for_argparse() -> None:
    # argparse %-formats help strings: a bare "%" breaks `pytest --help`.
    assert all("%" not in s.help for s in RIGHTSIZING_SETTINGS)


def test_settings_follow_the_naming_scheme() -> None:
    names = {s.name: (s.cli, s.env, s.ini) for s in RIGHTSIZING_SETTINGS}
    assert names["carbon_intensity"] == ("--energy-carbon-intensity",
                                         "PYTEST_ENERGY_CARBON_INTENSITY",
                                         "energy_carbon_intensity")
    assert names["price"] == ("--energy-price", "PYTEST_ENERGY_PRICE", "energy_price")
    assert names["hints"] == ("--energy-no-hints", "PYTEST_ENERGY_HINTS", "energy_hints")
    assert names["rating_rule"][2] == "energy_rating_rule"


# ----- command line ---------------------------------------------------------------------------


def test_main_renders_a_saved_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    entries = batch_group({"batch1": 9e-3, "batch32": 1e-3})
    report.write_text(json.dumps({"version": 1, "tests": [e.to_json() for e in entries]}))
    assert rightsizing_report.main([str(report), "--carbon-intensity", "400",
                                    "--price", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "test_p: 2 variants compared by energy per item" in out
    assert "carbon and cost, whole run" in out and "hints:\n- test_p:" in out
    assert rightsizing_report.main([str(report), "--markdown"]) == 0
    assert "## Right-sizing" in capsys.readouterr().out


def test_huge_groups_print_only_their_recommendation() -> None:
    entries = [entry(f"t.py::test_p[{n}]", 1.0 + n) for n in range(rs.MAX_PRINTED_VARIANTS + 1)]
    entries = rs.apply_ratings(entries, AUTO)
    tables = rs.rightsizing_tables(entries, AUTO)
    text = rs.render_rightsizing(tables, AUTO, "utf-8")
    assert f"({rs.MAX_PRINTED_VARIANTS + 1} variants: the full table is in the JSON report)" in text
    assert "recommended" in text
    assert len(tables[0]["variants"]) == rs.MAX_PRINTED_VARIANTS + 1  # JSON keeps them all


def test_notes_of_huge_groups_are_bounded() -> None:
    # 300 variants without items= made a 1,500-character "note" line (issue 14 item 21);
    # several defaults and the unmeasured members were listed in full the same way.
    entries = [entry(f"t.py::test_p[variant{n}]", 1.0 + n, items=None if n else 2.0,
                     default=True) for n in range(300)]
    entries += [entry(f"t.py::test_p[gone{n}]", None, verdict="invalid") for n in range(300)]
    (table,) = rs.rightsizing_tables(rs.apply_ratings(entries, AUTO), AUTO)
    per_call, defaults = table["notes"][:2]
    assert per_call.startswith("compared per call: no items= on variant1, variant2, variant3, "
                               "variant4, variant5 and 294 more; give items=")
    assert "(variant0, variant1, variant2, variant3, variant4 and 295 more): using" in defaults
    text = rs.render_rightsizing([table], AUTO, "utf-8")
    assert max(len(line) for line in text.splitlines()) < 200
    assert "and 295 more" in text.splitlines()[-1]  # the unmeasured members left out
    compact = rs.render_rightsizing([table], AUTO, "utf-8", width=80)
    assert max(len(line) for line in compact.splitlines()) <= 80
