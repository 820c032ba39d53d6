"""The run-level noise model (history.noise) and its t distribution, as pure functions."""

from __future__ import annotations

import math
import random

import pytest

from pytest_energy.entry import Entry, Spread, TrialRecord
from pytest_energy.history.metrics import parse_compare_fail
from pytest_energy.history.noise import COMMON_SHIFT, MIN_BASELINE_RUNS, judge_run
from pytest_energy.history.runlevel import BaselineRun, judge_runs
from pytest_energy.history.tdist import incomplete_beta, t_critical, t_sf


@pytest.mark.parametrize(("alpha", "df", "expected"), [
    (0.025, 5, 2.5706), (0.01, 5, 3.3649), (0.005, 1, 63.657), (0.05, 30, 1.6973)])
def test_t_critical_matches_published_tables(alpha: float, df: float, expected: float) -> None:
    assert t_critical(alpha, df) == pytest.approx(expected, rel=1e-4)


def test_t_sf_closed_forms() -> None:
    # df = 2: P(T > t) = (1 - t / sqrt(2 + t^2)) / 2; df = 1 is Cauchy
    for t in (0.3, 1.0, 4.0, 10.0):
        assert t_sf(t, 2) == pytest.approx((1 - t / math.sqrt(2 + t * t)) / 2, rel=1e-9)
        assert t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, rel=1e-9)
    assert t_sf(0.0, 7) == pytest.approx(0.5)
    assert t_sf(-1.0, 3) == pytest.approx(1 - t_sf(1.0, 3))
    assert incomplete_beta(2.0, 3.0, 0.0) == 0.0 and incomplete_beta(2.0, 3.0, 1.0) == 1.0


def _runs(rng: random.Random, count: int, tests: int, run_sigma: float = 0.10,
          test_sigma: float = 0.04, factors: dict[int, float] | None = None
          ) -> list[dict[str, float]]:
    runs = []
    for _ in range(count):
        common = math.exp(rng.gauss(0, run_sigma))
        runs.append({f"t{i}": (factors or {}).get(i, 1.0) * common
                     * math.exp(rng.gauss(0, test_sigma)) for i in range(tests)})
    return runs


def test_too_few_baseline_runs_judge_nothing_and_say_so() -> None:
    rng = random.Random(1)
    baseline = _runs(rng, MIN_BASELINE_RUNS - 1, 8)
    verdict = judge_run(baseline, _runs(rng, 1, 8, factors={0: 3.0})[0])
    assert verdict.movements == () and verdict.regressed == []
    assert verdict.note is not None and "at least 3" in verdict.note


def test_a_slower_machine_is_a_common_shift_not_eight_regressions() -> None:
    rng = random.Random(2)
    baseline = _runs(rng, 6, 8, run_sigma=0.0, test_sigma=0.03)
    slower = {name: value * 1.2 for name, value in _runs(rng, 1, 8, 0.0, 0.03)[0].items()}
    verdict = judge_run(baseline, slower, threshold=0.10)
    assert verdict.shift_separated
    tests = [m for m in verdict.movements if m.name != COMMON_SHIFT]
    assert all(abs(m.change) < 0.1 for m in tests)  # each test's own movement is small
    assert verdict.shift is not None and verdict.shift.change == pytest.approx(0.2, abs=0.05)


def test_one_test_moving_against_the_rest_is_named_alone() -> None:
    rng = random.Random(3)
    baseline = _runs(rng, 6, 8)
    verdict = judge_run(baseline, _runs(rng, 1, 8, factors={5: 2.0})[0])
    assert [m.name for m in verdict.regressed] == ["t5"]
    moved = next(m for m in verdict.movements if m.name == "t5")
    assert moved.change == pytest.approx(1.0, abs=0.3) and moved.p_value < 0.001
    assert all(0.10 <= m.detectable < 1.0 for m in verdict.movements)


def test_unchanged_runs_rarely_fail_whatever_the_suite_size() -> None:
    rng = random.Random(4)
    for tests in (8, 60):
        failed = sum(bool(judge_run(_runs(rng, 6, tests), _runs(rng, 1, tests)[0]).regressed)
                     for _ in range(100))
        assert failed <= 4, (tests, failed)  # alpha 1%: about 1 expected of 100


def test_below_three_tests_each_test_is_judged_on_its_whole_change() -> None:
    rng = random.Random(5)
    verdict = judge_run(_runs(rng, 6, 2, run_sigma=0.01),
                        _runs(rng, 1, 2, run_sigma=0.01, factors={0: 2.0})[0])
    assert not verdict.shift_separated and verdict.shift is None
    assert [m.name for m in verdict.regressed] == ["t0"]


def test_a_reference_workload_tells_a_whole_suite_regression_from_a_slow_machine() -> None:
    rng = random.Random(6)
    baseline = _runs(rng, 6, 9)  # t8 is the reference: no code change touches it
    regressed = _runs(rng, 1, 9, factors={i: 1.5 for i in range(8)})[0]
    verdict = judge_run(baseline, regressed, reference="t8")
    assert verdict.shift is not None and verdict.shift.regressed
    slower = {name: value * 1.5 for name, value in _runs(rng, 1, 9)[0].items()}
    assert judge_run(baseline, slower, reference="t8").regressed == []


def _entries(scale: float, *, conditions: tuple[str, ...] = (), cv: float = 0.01
             ) -> list[Entry]:
    return [Entry(nodeid=f"t::{name}", valid=True, joules_per_call=scale,
                  conditions=conditions, joules_spread=Spread(scale, scale, cv),
                  trials=tuple(TrialRecord(1, 0.1, {"d": scale}) for _ in range(5)))
            for name in "abcd"]


def test_a_busy_run_s_common_shift_is_inconclusive_not_a_regression() -> None:
    runs = [BaselineRun(_entries(1.0)) for _ in range(3)]
    quiet = judge_runs(runs, _entries(1.5), parse_compare_fail("joules:10%"), 0.01)
    assert quiet.shift_regressed
    busy = judge_runs(runs, _entries(1.5, conditions=("busy: other processes used 1.8 of 2 "
                                                      "CPUs while measuring",)),
                      parse_compare_fail("joules:10%"), 0.01)
    (shift,) = busy.shifts
    assert not busy.shift_regressed and shift["verdict"] == "worse, contaminated"
    assert "machine busy in this run (" in shift["note"]  # this run's, not the baseline's
    assert "baseline" not in shift["note"]


def test_a_run_noisier_than_its_baseline_is_judged_with_its_own_noise() -> None:
    runs = [BaselineRun([*_entries(1.0)[:3], e]) for e in
            (_entries(v)[3] for v in (1.0, 1.01, 0.99))]
    current = [*_entries(1.0)[:3], _entries(1.2, cv=0.4)[3]]  # +20%, but its trials spread 40%
    verdict = judge_runs(runs, current, parse_compare_fail("joules:10%"), 0.01)
    (noisy,) = [c for c in verdict.comparisons if c.nodeid == "t::d"]
    assert noisy.metrics[0].verdict != "regressed"
    steady = [*_entries(1.0)[:3], _entries(1.2, cv=0.01)[3]]
    (caught,) = [c for c in judge_runs(runs, steady, parse_compare_fail("joules:10%"), 0.01)
                 .comparisons if c.nodeid == "t::d"]
    assert caught.metrics[0].verdict == "regressed"


def test_tests_too_noisy_for_their_threshold_are_listed() -> None:
    noisy = [0.7, 1.3, 1.0]  # t::d swings 30% between baseline runs; the others agree
    runs = [BaselineRun([*_entries(1.0)[:3], _entries(v)[3]]) for v in noisy]
    verdict = judge_runs(runs, _entries(1.0), parse_compare_fail("joules:10%"), 0.01)
    assert [u["nodeid"] for u in verdict.undetectable] == ["t::d"]
    (found,) = verdict.undetectable
    assert found["detectable"] > 0.3 and found["threshold"] == pytest.approx(0.1)
