"""Unit tests of the compare verdict: thresholds, the U test, fingerprints, suggestions,
and the markdown rendering of all of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_energy.entry import Entry
from pytest_energy.errors import EnergyConfigError
from pytest_energy.history import stats
from pytest_energy.history.compare import CompareVerdict as V
from pytest_energy.history.compare import (
    compare_entries,
    compare_values,
    count_verdicts,
)
from pytest_energy.history.machine import (
    fingerprint,
    identity_differences,
    machine_identity,
    meter_identity,
    meters_match,
    noted_differences,
)
from pytest_energy.history.metrics import (
    Threshold,
    format_thresholds,
    parse_alpha,
    parse_compare_fail,
)
from pytest_energy.history.stats import mann_whitney, smallest_p
from pytest_energy.history.suggest import nice_ceiling, p95, suggest_budgets
from pytest_energy.report.markdown import render_markdown

# ----- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("joules:10%", (Threshold("joules", relative=0.10),)),
        ("latency_ms:15%", (Threshold("latency_ms", relative=0.15),)),
        ("joules_per_item:5%", (Threshold("joules_per_item", relative=0.05),)),
        ("joules:+0.5", (Threshold("joules", absolute=0.5),)),
        ("joules:+50mJ", (Threshold("joules", absolute=0.05),)),
        ("latency_ms:+2ms", (Threshold("latency_ms", absolute=2.0),)),
        ("latency_ms:+1.5 s", (Threshold("latency_ms", absolute=1500.0),)),
        (" JOULES : 10% , latency_ms:15% ",
         (Threshold("joules", relative=0.10), Threshold("latency_ms", relative=0.15))),
        ("none", ()),
        ("off", ()),
    ],
)
def test_parse_compare_fail_accepts(text: str, expected: tuple[Threshold, ...]) -> None:
    assert parse_compare_fail(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jouls:10%", "unknown metric 'jouls' (did you mean 'joules'?)"),
        ("joules:10", "write joules:10% for a relative threshold or joules:+0.5 for an absolute"),
        ("joules:-5%", "needs a percentage > 0"),
        ("joules:0%", "needs a percentage > 0"),
        ("joules:nan%", "needs a percentage > 0"),
        ("joules:+5 parsecs", "unknown unit 'parsecs'"),
        ("joules:+-1", "not valid"),
        ("latency_ms:+5 mJ", "unknown unit 'mJ'"),
        ("joules:10%,", "empty expression between commas"),
        ("joules", "is not METRIC:LIMIT"),
        ("", "expected comma-separated"),
    ],
)
def test_parse_compare_fail_teaches(text: str, message: str) -> None:
    with pytest.raises(EnergyConfigError, match="compare_fail=") as info:
        parse_compare_fail(text)
    assert message in str(info.value)


def test_threshold_text_round_trips() -> None:
    thresholds = parse_compare_fail("joules:10%,joules:+0.5,latency_ms:2.5%")
    assert format_thresholds(thresholds) == "joules:10%,joules:+0.5,latency_ms:2.5%"
    assert parse_compare_fail(format_thresholds(thresholds)) == thresholds
    assert format_thresholds(()) == "none"


@pytest.mark.parametrize("bad", ["0", "0.6", "x", "-0.01", "nan"])
def test_parse_alpha_rejects(bad: str) -> None:
    with pytest.raises(EnergyConfigError, match="significance level in"):
        parse_alpha(bad)


# ----- the U test ----------------------------------------------------------------------------


def test_exact_p_values_match_the_tables() -> None:
    # 5 vs 5, complete separation: 1 of C(10,5)=252 orderings; one swap: 2/252.
    assert mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p_greater == pytest.approx(1 / 252)
    assert mann_whitney([1, 2, 3, 4, 6], [5, 7, 8, 9, 10]).p_greater == pytest.approx(2 / 252)
    assert mann_whitney([1, 2, 3], [4, 5, 6]).p_greater == pytest.approx(0.05)
    assert mann_whitney([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]).p_less == pytest.approx(1 / 252)
    assert smallest_p(5, 5) == pytest.approx(1 / 252)
    assert smallest_p(3, 3) == pytest.approx(0.05)


def test_ties_are_handled_exactly() -> None:
    # A deterministic meter: every window identical within a run.
    assert mann_whitney([1.0] * 5, [1.2] * 5).p_greater == pytest.approx(1 / 252)
    same = mann_whitney([1.0] * 5, [1.0] * 5)
    assert same.p_greater == 1.0 and same.p_less == 1.0
    assert mann_whitney([], [1.0]).p_greater == 1.0


def test_normal_approximation_is_close_to_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = [1.0 + 0.01 * i for i in range(12)]
    current = [1.03 + 0.01 * i for i in range(12)]
    exact = mann_whitney(baseline, current)
    assert exact.exact
    monkeypatch.setattr(stats, "EXACT_MAX_TRIALS", 4)
    approx = mann_whitney(baseline, current)
    assert not approx.exact
    assert approx.p_greater == pytest.approx(exact.p_greater, abs=0.01)


finite = st.floats(min_value=0.5, max_value=2.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=8), st.lists(finite, min_size=1, max_size=8))
def test_u_test_properties(baseline: list[float], current: list[float]) -> None:
    test = mann_whitney(baseline, current)
    assert 0 < test.p_greater <= 1 and 0 < test.p_less <= 1
    assert test.p_greater + test.p_less >= 1 - 1e-12  # both tails include the observed sum
    mirrored = mann_whitney(current, baseline)
    assert mirrored.p_less == pytest.approx(test.p_greater)
    shifted = mann_whitney(baseline, [v + 10 for v in current])
    assert shifted.p_greater == pytest.approx(smallest_p(len(baseline), len(current)))


# ----- verdicts ------------------------------------------------------------------------------

TEN = parse_compare_fail("joules:10%")


@pytest.mark.parametrize(
    ("current", "alpha", "verdict"),
    [
        ([1.2, 1.21, 1.19, 1.2, 1.2], 0.01, V.REGRESSED),
        ([1.05, 1.06, 1.04, 1.05, 1.05], 0.01, V.UNCHANGED),  # significant but under 10%
        ([2, 0.5, 2, 0.5, 2], 0.01, V.WORSE_NS),  # +100% but overlapping trials
        ([0.8, 0.81, 0.79, 0.8, 0.8], 0.01, V.IMPROVED),
        ([0.5, 2, 0.5, 2, 0.5], 0.01, V.BETTER_NS),
        ([1.2, 1.21, 1.19, 1.2, 1.2], 0.001, V.WORSE_NS),  # 5 vs 5 cannot reach 0.001
    ],
)
def test_verdict_needs_threshold_and_significance(current: list[float], alpha: float,
                                                  verdict: str) -> None:
    baseline = [1.0, 1.01, 0.99, 1.0, 1.0]
    result = compare_values("joules", 1.0, sorted(current)[2], baseline, current, TEN, alpha)
    assert result.verdict == verdict


def test_too_few_trials_say_so() -> None:
    result = compare_values("joules", 1.0, 1.5, [1.0, 1.0, 1.0], [1.5, 1.5, 1.5], TEN, 0.01)
    assert result.verdict == V.WORSE_NS
    assert result.note is not None and "3 vs 3 trials cannot be significant" in result.note


def test_absolute_threshold() -> None:
    absolute = parse_compare_fail("joules:+0.5")
    base, new = [1.0] * 5, [1.4] * 5
    assert compare_values("joules", 1.0, 1.4, base, new, absolute, 0.01).verdict == V.UNCHANGED
    assert compare_values("joules", 1.0, 1.6, base, [1.6] * 5, absolute,
                          0.01).verdict == V.REGRESSED
    assert compare_values("joules", 1.6, 1.0, [1.6] * 5, base, absolute,
                          0.01).verdict == V.IMPROVED


LATENCY = {"median": 1.0, "p95": 1.0, "mean": 1.0, "min": 1.0, "max": 1.0}


def entry_json(nodeid: str, per_call: list[float], **extra: Any) -> dict[str, Any]:
    ordered = sorted(per_call)
    return {
        "nodeid": nodeid, "joules_per_call": ordered[len(ordered) // 2], "meter": "rapl",
        "domains": ["package:0"], "estimated": False, "latency_ms": dict(LATENCY),
        "valid": True,
        "trials": [{"calls": 10, "window_s": 0.01, "joules": {"package:0": v * 10},
                    "latency_ms_median": 1.0} for v in per_call],
        **extra,
    }


def entry(nodeid: str, per_call: list[float], **extra: Any) -> Entry:
    return Entry.from_json(entry_json(nodeid, per_call, **extra))


STEADY = [1.0, 1.01, 0.99, 1.0, 1.0]
UP = [1.2, 1.21, 1.19, 1.2, 1.2]


def test_compare_entries_statuses() -> None:
    baseline = [entry("t::same", STEADY), entry("t::up", STEADY), entry("t::gone", STEADY),
                entry("t::was_unmeasured", STEADY, joules_per_call=None)]
    current = [entry("t::same", STEADY), entry("t::up", UP), entry("t::new", STEADY),
               entry("t::was_unmeasured", STEADY),
               Entry(nodeid="t::skipped")]
    results = {c.nodeid: c for c in compare_entries(baseline, current, TEN)}
    assert results["t::same"].verdict == V.UNCHANGED
    assert results["t::up"].verdict == V.REGRESSED
    assert results["t::new"].status == "new"
    assert results["t::was_unmeasured"].status == "new"
    assert results["t::skipped"].status == "not measured"
    assert results["t::gone"].status == "gone"
    assert count_verdicts(results.values()) == {
        "regressed": 1, "unchanged": 1, "new": 2, "not measured": 1, "gone": 1}
    assert json.dumps([c.to_dict() for c in results.values()])  # JSON-able


def test_several_metrics_and_report_only() -> None:
    thresholds = parse_compare_fail("joules:10%,latency_ms:15%")
    slow = entry_json("t::a", STEADY)
    slow["latency_ms"] = dict(LATENCY, median=2.0)
    for trial in slow["trials"]:
        trial["latency_ms_median"] = 2.0
    (result,) = compare_entries([entry("t::a", STEADY)], [Entry.from_json(slow)], thresholds)
    assert [m.metric for m in result.metrics] == ["joules", "latency_ms"]
    assert [m.verdict for m in result.metrics] == [V.UNCHANGED, V.REGRESSED]
    (report_only,) = compare_entries([entry("t::a", STEADY)], [entry("t::a", UP)], ())
    assert report_only.verdict == V.REGRESSED  # judged at 10%; the gate does not fail on it


def test_joules_per_item_uses_items() -> None:
    thresholds = parse_compare_fail("joules_per_item:5%")
    (result,) = compare_entries([entry("t::a", STEADY, items=10, joules_per_item=0.1)],
                                [entry("t::a", UP, items=10, joules_per_item=0.12)], thresholds)
    (metric,) = result.metrics
    assert metric.baseline == pytest.approx(0.1) and metric.verdict == V.REGRESSED


def test_contaminated_regression_does_not_fail() -> None:
    (result,) = compare_entries([entry("t::a", STEADY)], [entry("t::a", UP, contaminated=True)],
                                TEN)
    assert result.verdict == V.WORSE_CONTAMINATED
    assert "under contention in this run" in (result.metrics[0].note or "")


def test_different_meter_is_not_comparable() -> None:
    rapl = {"used": {"rapl": {"name": "rapl", "details": {"zones": [
        {"domain": "package:0", "name": "package-0"}]}}}}
    old = entry("t::a", STEADY)
    new = entry("t::a", UP, meter="estimate", domains=["cpu:process"], estimated=True)
    (result,) = compare_entries([old], [new], TEN,
                                baseline_meters={"t::a": meter_identity(old, rapl)},
                                current_meters={"t::a": meter_identity(new, {})})
    assert result.status == "not comparable"
    assert result.reason == (
        "measured with a different meter: rapl package:0 [package:0=package-0] in the baseline,"
        " estimate cpu:process (estimated) in this run")


# ----- fingerprints --------------------------------------------------------------------------

MACHINE = {"node": "runner-1", "system": "Linux", "release": "6.1", "machine": "x86_64",
           "processor": "x86_64", "cpu_count": 8, "python": "3.11.7",
           "cpu_model": "AMD EPYC 7763"}


def test_fingerprint_ignores_hostname_and_versions() -> None:
    other_runner = dict(MACHINE, node="runner-2", release="6.5", python="3.12.1")
    assert fingerprint(machine_identity(MACHINE)) == fingerprint(machine_identity(other_runner))
    other_cpu = dict(MACHINE, cpu_model="Intel Xeon 8375C")
    assert fingerprint(machine_identity(MACHINE)) != fingerprint(machine_identity(other_cpu))
    assert identity_differences(machine_identity(MACHINE), machine_identity(other_cpu)) == [
        "cpu_model: 'AMD EPYC 7763' (baseline) vs 'Intel Xeon 8375C' (this run)"]
    assert noted_differences(MACHINE, other_runner, {}, {}) == [
        "release: '6.1' (baseline) vs '6.5' (this run)",
        "python: '3.11.7' (baseline) vs '3.12.1' (this run)"]


def test_machine_identity_falls_back_to_processor() -> None:
    identity = machine_identity(dict(MACHINE, cpu_model=None, processor="arm"))
    assert identity["cpu_model"] == "arm"
    assert "node" not in identity


def nvml_meter(uuid: str, clock: int, temperature: int, name: str = "NVIDIA H100",
               driver: str = "550.1") -> dict[str, Any]:
    return {"used": {"nvml@cuda": {"name": "nvml", "details": {"devices": [{
        "domain": "gpu:0", "name": name, "uuid": uuid, "pci_bus_id": "0000:17:00.0",
        "sm_clock_mhz": clock, "temperature_c": temperature, "driver_version": driver,
        "power_limit_w": 700.0}]}}}}


def test_meter_identity_keeps_gpu_model_not_uuid_clock_or_temperature() -> None:
    gpu_entry = Entry(nodeid="t::gpu", meter="nvml", domains=("gpu:0",), estimated=False)
    one = meter_identity(gpu_entry, nvml_meter("GPU-1111", 1980, 40))
    two = meter_identity(gpu_entry, nvml_meter("GPU-2222", 1410, 71, driver="560.2"))
    assert one == two
    assert "H100" in one and "GPU-1111" not in one
    other = meter_identity(gpu_entry, nvml_meter("GPU-1111", 1980, 40, name="NVIDIA A100"))
    assert not meters_match(one, other)
    assert noted_differences(MACHINE, MACHINE, nvml_meter("a", 1, 1),
                             nvml_meter("b", 2, 2, driver="560.2")) == [
        "gpu:0 driver_version: '550.1' (baseline) vs '560.2' (this run)"]


def test_unknown_hardware_matches_known() -> None:
    """Under xdist a run may not know its meters' details: unknown is not different."""
    gpu_entry = Entry(nodeid="t::gpu", meter="nvml", domains=("gpu:0",), estimated=False)
    known = meter_identity(gpu_entry, nvml_meter("GPU-1", 1, 1))
    unknown = meter_identity(gpu_entry, {})
    assert meters_match(known, unknown)
    assert not meters_match(known, meter_identity(gpu_entry.replace(domains=("gpu:1",)), {}))


def test_estimate_meter_identity_includes_watts_per_core() -> None:
    est = Entry(nodeid="t::est", meter="estimate", domains=("cpu:process",), estimated=True)
    ten = {"used": {"estimate": {"name": "estimate", "details": {"watts_per_core": 10.0}}}}
    fifteen = {"used": {"estimate": {"name": "estimate", "details": {"watts_per_core": 15.0}}}}
    assert not meters_match(meter_identity(est, ten), meter_identity(est, fifteen))


# ----- suggestions ---------------------------------------------------------------------------


def test_nice_ceiling() -> None:
    assert nice_ceiling(3.27e-3) == pytest.approx(3.3e-3)
    assert nice_ceiling(1.0) == 1.0
    assert nice_ceiling(0.0123) == pytest.approx(0.013)
    assert nice_ceiling(987.0) == 990.0
    assert nice_ceiling(0.0) == 0.0


def test_suggestions_for_unbudgeted_and_loose_budgets_only() -> None:
    unbudgeted = entry("t::free", STEADY, budget={"joules": None, "latency_ms": None})
    loose = entry("t::loose", STEADY, budget={"joules": 10.0, "latency_ms": 100.0},
                  budget_use={"joules": 0.1, "latency": 0.01})
    tight = entry("t::tight", STEADY, budget={"joules": 1.5, "latency_ms": None},
                  budget_use={"joules": 0.67, "latency": None})
    history = {"t::free": [entry("t::free", [1.1] * 5)]}
    found = {s.nodeid: s for s in suggest_budgets([unbudgeted, loose, tight], history, 1.2)}
    assert set(found) == {"t::free", "t::loose"}
    free = found["t::free"]
    assert free.runs == 2 and free.trials == 10
    assert free.joules == pytest.approx(nice_ceiling(p95(STEADY + [1.1] * 5) * 1.2))
    assert free.latency_ms == pytest.approx(1.2)
    assert free.marker == '@pytest.mark.energy_budget(joules="1.4 J", latency_ms="1.2 ms")'
    loose_one = found["t::loose"]
    assert loose_one.reason == "joules budget 10 J 10% used; latency budget 100 ms 1% used"
    assert loose_one.joules is not None and loose_one.joules < 10.0


def test_suggestion_is_never_looser_than_the_budget() -> None:
    nearly = entry("t::a", STEADY, budget={"joules": 1.05, "latency_ms": None},
                   budget_use={"joules": 0.45, "latency": None})
    assert suggest_budgets([nearly], {}, 1.2) == []


# ----- markdown ------------------------------------------------------------------------------


def test_markdown_escapes_cells_and_marks_estimates() -> None:
    weird = entry("t.py::test_x[a|b]", STEADY, estimated=True, outcome="passed", verdict="ok",
                  rating=4, budget_use={"joules": 0.3, "latency": None})
    text = render_markdown([weird], None)
    assert "| `t.py::test_x[a\\|b]` | 1 J est. |" in text
    assert "★★★★☆" in text and "J 30%" in text
    assert "_est. = estimated" in text
    assert "Energy comparison" not in text
    assert render_markdown([], None).startswith("## Energy summary\n\nNo test was measured.")


def test_markdown_lists_regressions_improvements_and_messages() -> None:
    results = compare_entries([entry("t::up", STEADY), entry("t::down", STEADY),
                               entry("t::noisy", STEADY)],
                              [entry("t::up", UP), entry("t::down", [0.8] * 5),
                               entry("t::noisy", [2, 0.5, 2, 0.5, 2])], TEN)
    compare = {"requested": True, "status": "failed",
               "baseline": {"id": 3, "name": "main", "created": "2024-06-01T00:00:00+00:00",
                            "commit": "0123456789abcdef", "dirty": True},
               "counts": count_verdicts(results), "tests": [r.to_dict() for r in results],
               "rule": "a rule", "messages": ["something to know"]}
    text = render_markdown([], compare)
    assert "## Energy comparison: FAILED" in text
    assert "Baseline: run #3 `main`, 2024-06-01T00:00:00+00:00, commit `0123456789` (dirty)" \
        in text
    assert "1 regressed, 1 improved, 1 worse, not significant" in text
    assert "### Regressions\n" in text and "### Improvements\n" in text
    assert "| `t::up` | joules | 1 J | 1.2 J | +20.0% | 0.00397 | regressed |" in text
    assert "| `t::down` | joules | 1 J | 800 mJ | -20.0% | 0.00397 | improved |" in text
    assert "### Beyond the threshold but not significant" in text
    assert "> something to know" in text
