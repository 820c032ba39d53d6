"""Measurement plan arithmetic, result statistics, budget checks and star ratings."""

from __future__ import annotations

import pytest

from pytest_energy.config import ItemConfig
from pytest_energy.measure import EnergyResult, Trial, percentile
from pytest_energy.measure.windows import (
    MIN_WINDOW_FLOOR_S,
    make_plan,
    min_window_s,
    remaining_trials,
    split_rounds,
    window_target_s,
)
from pytest_energy.stars import stars_for_use
from pytest_energy.verdict import check_budgets


def test_split_rounds_never_exceeds_rounds() -> None:
    assert split_rounds(10, 5) == (2, 2, 2, 2, 2)
    assert split_rounds(7, 5) == (2, 2, 1, 1, 1)
    assert split_rounds(3, 5) == (1, 1, 1)
    assert split_rounds(1, 5) == (1,)
    for rounds in range(1, 40):
        for trials in range(1, 9):
            assert sum(split_rounds(rounds, trials)) == rounds
    with pytest.raises(ValueError):
        split_rounds(0, 5)


def test_min_window_follows_update_period() -> None:
    assert min_window_s(0.0) == MIN_WINDOW_FLOOR_S
    assert min_window_s(0.1) == pytest.approx(1.0)  # 10 updates of a 100 ms NVML counter
    assert min_window_s(0.001) == pytest.approx(0.01)


def test_auto_plan_window_target_and_remaining_trials() -> None:
    # A 100 ms counter wants 1 s windows, but 5 trials must fit in 1 s: 200 ms windows.
    assert window_target_s(0.1, trials=5, max_time_s=1.0) == pytest.approx(0.2)
    assert window_target_s(0.0, trials=5, max_time_s=1.0) == MIN_WINDOW_FLOOR_S
    assert window_target_s(0.1, trials=5, max_time_s=10.0) == pytest.approx(1.0)
    assert remaining_trials(0.002, trials=5, max_time_s=1.0) == 4
    # a slow first window leaves room for fewer trials, never fewer than the first
    assert remaining_trials(0.3, trials=5, max_time_s=1.0) == 2
    assert remaining_trials(3.0, trials=5, max_time_s=1.0) == 0


def test_make_plan_counts() -> None:
    plan = make_plan(warmup=2, rounds=7, trials=5)
    assert plan.total_calls == 9 and plan.measured_calls == 7


def _result(per_trial: list[tuple[int, float]], latencies_ms: list[float] | None = None,
            items: float | None = None) -> EnergyResult:
    result = EnergyResult(meter="fake", estimated=False, domains=["d:0"], device="cpu",
                          items_per_call=items)
    latencies = [int(ms * 1e6) for ms in (latencies_ms or [1.0])]
    for calls, joules in per_trial:
        result.trials.append(Trial(calls=calls, window_s=0.1, joules={"d:0": joules},
                                   latencies_ns=latencies))
    return result


def test_result_statistics() -> None:
    result = _result([(2, 2.0), (2, 4.0), (2, 3.0)], latencies_ms=[1, 2, 3, 4, 100], items=4)
    assert result.joules_per_call == 1.5  # median of 1.0, 2.0, 1.5
    assert result.joules_per_item == pytest.approx(1.5 / 4)
    assert result.joules_spread == {"min": 1.0, "max": 2.0, "cv": pytest.approx(0.5 / 1.5)}
    assert result.calls == 6
    assert result.latency_ms is not None and result.latency_ms["median"] == 3.0
    assert result.watts == pytest.approx(9.0 / 0.3)


def test_invalid_result_has_no_numbers() -> None:
    result = _result([(2, 2.0)])
    result.invalid_reason = "counter frozen"
    assert result.joules_per_call is None and result.joules_per_item is None
    assert result.to_dict()["joules_per_call"] is None


def test_percentile() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7], 95) == 7


@pytest.mark.parametrize(
    ("use", "stars"),
    [(0.0, 5), (0.2, 5), (0.2001, 4), (0.4, 4), (0.5, 3), (0.6, 3), (0.7, 2), (0.8, 2),
     (0.81, 1), (1.0, 1), (1.0001, 0), (5.0, 0)],
)
def test_stars_five_equal_intervals(use: float, stars: int) -> None:
    assert stars_for_use(use) == stars


def test_check_budgets_messages() -> None:
    config = ItemConfig(nodeid="t", marked=True, joules=2.5, latency_ms=5.0)
    result = _result([(1, 3.21)] * 5, latencies_ms=[6.0])
    check = check_budgets(result, config)
    assert not check.passed and check.verdict == "over budget"
    assert check.failures[0] == (
        "energy budget exceeded: 3.21 J per call > 2.5 J budget (+28%), fake d:0, 5 trials")
    assert check.failures[1].startswith("latency budget exceeded: 6 ms median per call > 5 ms")
    assert check.rating == 0 and check.joules_use == pytest.approx(3.21 / 2.5)


def test_check_budgets_pass_and_rating() -> None:
    config = ItemConfig(nodeid="t", marked=True, joules=10.0)
    check = check_budgets(_result([(1, 3.0)]), config)
    assert check.passed and check.rating == 4 and check.verdict == "ok"
    unbudgeted = check_budgets(_result([(1, 3.0)]), ItemConfig(nodeid="t", marked=False))
    assert unbudgeted.passed and unbudgeted.rating is None and unbudgeted.verdict == "measured"


def test_plain_table_matches_tabulate_simple_format() -> None:
    from tabulate import tabulate

    from pytest_energy.entry import Entry
    from pytest_energy.report.cells import plain_table
    from pytest_energy.report.summary import SUMMARY_HEADERS, summary_rows

    entries = [Entry.from_json(data) for data in (
        {"nodeid": "t.py::test_a[1]", "joules_per_call": 0.0123, "estimated": True,
         "latency_ms": {"median": 0.5, "p95": 0.9, "mean": 0.6, "min": 0.4, "max": 1.0},
         "calls": 40, "warmup_calls": 1,
         "budget_use": {"joules": 0.12}, "rating": 5, "meter": "estimate",
         "domains": ["cpu:process"], "verdict": "ok", "outcome": "passed"},
        {"nodeid": "t.py::test_long_name_here", "joules_per_call": None, "calls": 0,
         "verdict": "not measured", "outcome": "error"},
    )]
    rows = summary_rows(entries, "utf-8")
    assert plain_table(SUMMARY_HEADERS, rows) == tabulate(
        rows, headers=SUMMARY_HEADERS, tablefmt="simple", disable_numparse=True)
