"""Busy neighbours: other processes' CPU time and steal read from /proc around the
measured part (``pytest_energy.measure.busy``), and what a busy machine does to the
budget verdict and to the regression gate. Every /proc here is the fake of
``tests/fakes/procfs.py``: the real machine is shared and its load is nobody's test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import procfs
from fakes.procfs import FakeProc, pid_stat_line

from pytest_energy.config import ItemConfig
from pytest_energy.entry import BUSY_PREFIX, Entry, Verdict
from pytest_energy.history.compare import CompareVerdict, compare_entries
from pytest_energy.history.metrics import parse_compare_fail
from pytest_energy.measure import EnergyResult, Measurer, Trial
from pytest_energy.measure import busy as busy_module
from pytest_energy.measure.busy import (
    PROC_ROOT_ENV,
    CpuUsage,
    cpu_sample,
    cpu_usage,
    parse_loadavg,
    parse_pid_stat,
    parse_stat,
)
from pytest_energy.verdict import check_budgets

REAL_STAT = """\
cpu  279863 0 13757 228219 782 0 211 976 0 0
cpu0 125181 0 6091 129829 229 0 27 442 0 0
cpu1 154681 0 7665 98389 553 0 183 534 0 0
intr 31164880 0 9 0 0 0
procs_running 3
"""


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeProc:
    """A quiet 2-CPU machine's /proc, the one the plugin reads in this test."""
    fake = FakeProc.create(tmp_path / "proc")
    monkeypatch.setenv(PROC_ROOT_ENV, str(fake.root))
    return fake


def _over(proc: FakeProc, seconds: float = 1.0, **use: float) -> CpuUsage:
    start = cpu_sample()
    proc.advance(seconds, **use)
    usage = cpu_usage(start, cpu_sample())
    assert usage is not None
    return usage


# ----- parsing ------------------------------------------------------------------------


def test_parse_stat_sums_running_states_counts_cpus_and_rejects_other_files() -> None:
    running, steal, total, cpus = parse_stat(REAL_STAT)
    assert running == 279863 + 0 + 13757 + 0 + 211  # user nice system irq softirq
    assert steal == 976 and cpus == 2
    assert total == 279863 + 13757 + 228219 + 782 + 211 + 976  # guest columns excluded
    assert parse_stat("cpu  10 0 5 85\ncpu0 10 0 5 85\n") == (15, 0, 100, 1)
    for text in ("", "intr 1 2 3\n", "cpu  1 2 3 4\n", "cpu  a b c\ncpu0 1\n"):
        with pytest.raises(ValueError):
            parse_stat(text)


def test_parse_pid_stat_counts_fields_after_the_command_name() -> None:
    line = pid_stat_line(77, "weird) (name x", utime=120, stime=30, cutime=7, cstime=3)
    assert parse_pid_stat(line) == 160
    for text in ("", "77 (python) R 1 2", "no parenthesis here at all 1 2 3"):
        with pytest.raises(ValueError):
            parse_pid_stat(text)
    assert parse_loadavg("3.14 1.00 0.50 2/321 4242\n") == 3.14
    assert parse_loadavg("") is None and parse_loadavg("x y") is None


# ----- the rule -----------------------------------------------------------------------


def test_quiet_machine_is_not_busy(proc: FakeProc) -> None:
    usage = _over(proc, own_cpus=1.0, foreign_cpus=0.04)
    assert usage.judged and not usage.is_busy and usage.condition() is None
    assert usage.foreign_cpus == pytest.approx(0.04) and usage.own_cpus == pytest.approx(1.0)


def test_two_cpu_bound_neighbours_make_it_busy(proc: FakeProc) -> None:
    proc.set_load(2.9)
    usage = _over(proc, own_cpus=0.3, foreign_cpus=1.7)
    assert usage.condition() == ("busy: other processes used 1.7 of 2 CPUs while "
                                 "measuring (this test 0.3, load 2.9)")
    assert usage.to_dict() == {  # the JSON report's machine_load
        "busy": True, "judged": True, "foreign_cpus": 1.7, "own_cpus": 0.3, "cpus": 2,
        "threshold_cpus": 0.5, "steal": 0.0, "load_1m": 2.9, "seconds": 1.0}


@pytest.mark.parametrize(("foreign", "busy"), [(0.4, False), (0.5, True), (0.6, True)])
def test_half_a_cpu_is_the_threshold_on_a_small_machine(proc: FakeProc, foreign: float,
                                                        busy: bool) -> None:
    assert _over(proc, foreign_cpus=foreign).is_busy is busy


def test_steal_above_ten_percent_is_busy(proc: FakeProc) -> None:
    usage = _over(proc, own_cpus=1.0, steal=0.15)
    assert usage.is_busy and usage.foreign_cpus == 0
    assert usage.condition() == ("busy: the hypervisor took 15% of the CPU time for other "
                                 "machines (steal) while measuring")
    assert not _over(proc, own_cpus=1.0, steal=0.05).is_busy


def test_big_machines_scale_the_threshold(tmp_path: Path) -> None:
    proc = FakeProc.create(tmp_path, cpus=64)
    start = cpu_sample(tmp_path)
    proc.advance(1.0, foreign_cpus=2.0)
    middle = cpu_sample(tmp_path)
    proc.advance(1.0, foreign_cpus=4.0)
    calm, loud = cpu_usage(start, middle), cpu_usage(middle, cpu_sample(tmp_path))
    assert calm is not None and loud is not None
    assert calm.threshold_cpus == pytest.approx(3.2)
    assert not calm.is_busy and loud.is_busy


def test_too_short_to_judge_until_parts_add_up(proc: FakeProc) -> None:
    short = _over(proc, seconds=0.05, foreign_cpus=2.0)
    assert not short.judged and not short.is_busy  # 5 jiffies cannot tell 0.5 CPU
    both = short + _over(proc, seconds=0.05, foreign_cpus=2.0)
    assert both.judged and both.is_busy


def test_own_children_are_not_neighbours(proc: FakeProc) -> None:
    proc.add_child(5000, ticks=30)
    proc.add_child(5001, ticks=0, parent="5000")  # a grandchild
    start = cpu_sample()
    proc.advance(1.0, own_cpus=0.2, foreign_cpus=1.5)  # the workers' 1.5 CPUs ...
    proc.child_runs(5000, 100)
    proc.child_runs(5001, 50)  # ... are ours
    usage = cpu_usage(start, cpu_sample())
    assert usage is not None and not usage.is_busy
    assert usage.own_cpus == pytest.approx(1.7) and usage.foreign_cpus == pytest.approx(0)


def test_no_proc_or_mismatched_samples_mean_no_verdict(tmp_path: Path, proc: FakeProc) -> None:
    assert cpu_sample(tmp_path / "absent") is None  # macOS, Windows
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "stat").write_text("not a stat file\n")
    assert cpu_sample(tmp_path / "broken") is None
    now = cpu_sample()
    assert cpu_usage(None, now) is None and cpu_usage(now, None) is None
    two = FakeProc.create(tmp_path / "two")
    four = FakeProc.create(tmp_path / "four", cpus=4)
    assert cpu_usage(cpu_sample(two.root), cpu_sample(four.root)) is None  # CPUs changed
    later = cpu_sample(two.root)
    two.advance(1.0)
    assert cpu_usage(cpu_sample(two.root), later) is None  # counters went backwards


# ----- the result and the entry -------------------------------------------------------


def _result(joules: float = 3.0, latency_ms: float = 1.0) -> EnergyResult:
    result = EnergyResult(meter="fake", estimated=False, domains=["d:0"], device="cpu")
    for _ in range(5):
        result.trials.append(Trial(calls=1, window_s=0.1, joules={"d:0": joules},
                                   latencies_ns=[int(latency_ms * 1e6)]))
    return result


def _busy_usage(foreign: float = 1.7) -> CpuUsage:
    return CpuUsage(running=round((foreign + 0.3) * 100), steal=0, total=200, own=30,
                    cpus=2, load_1m=2.9)


def test_result_restates_one_busy_condition_over_all_parts_and_in_json() -> None:
    result = _result()
    result.conditions.append("contaminated: 1 other compute process")
    result.add_cpu_usage(None)  # no /proc: nothing recorded
    assert result.cpu_usage is None and not result.busy
    result.add_cpu_usage(_busy_usage())
    result.add_cpu_usage(_busy_usage(1.5))
    busy = [c for c in result.conditions if c.startswith(BUSY_PREFIX)]
    assert busy == ["busy: other processes used 1.6 of 2 CPUs while measuring "
                    "(this test 0.3, load 2.9)"]
    assert result.busy and result.contaminated
    data = json.loads(json.dumps(result.to_dict()))  # the JSON entry has the figures
    entry = Entry.from_json(data | {"nodeid": "t::a"})
    assert entry.machine_load is not None and entry.machine_load["busy"] is True
    assert entry.to_json()["machine_load"]["foreign_cpus"] == pytest.approx(1.6)
    assert Entry.from_json({"nodeid": "old"}).machine_load is None  # older histories load
    result.add_cpu_usage(CpuUsage(running=0, steal=0, total=4000, own=0, cpus=2))
    assert not result.busy  # quiet enough over all three parts together


class TickMeter:
    """1 J per read; its calls advance the fake /proc by 0.1 s of a busy machine."""

    name = "tick"
    estimated = False
    update_period_s = 0.0

    def __init__(self, proc: FakeProc, foreign: float) -> None:
        self.proc, self.foreign, self.reads = proc, foreign, 0

    def call(self) -> None:
        self.proc.advance(0.1, own_cpus=0.3, foreign_cpus=self.foreign)

    def domains(self) -> list[str]:
        return ["d:0"]

    def read(self) -> dict[str, float]:
        self.reads += 1
        return {"d:0": float(self.reads)}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("foreign", "busy"), [(1.7, True), (0.0, False)])
def test_measurer_samples_around_runs_and_blocks(proc: FakeProc, foreign: float,
                                                 busy: bool) -> None:
    meter = TickMeter(proc, foreign)
    measurer = Measurer(meter, device="cpu", isolate=False, read_timeout_s=0)
    _, result = measurer.run(meter.call, warmup=1, rounds=5, trials=5, max_time_s=None)
    assert result.busy is busy and result.cpu_usage is not None
    assert result.cpu_usage.wall_ticks == 50  # the measured calls only, not the warm-up
    blocks = measurer.new_result()
    for _ in range(3):
        with measurer.block(blocks):
            meter.call()
    assert blocks.busy is busy and blocks.cpu_usage is not None
    assert blocks.cpu_usage.wall_ticks == 30  # three 0.1 s blocks add up


# ----- the budget verdict -------------------------------------------------------------


def test_busy_over_budget_warns_by_default_and_fails_when_enforced() -> None:
    result = _result(joules=3.0, latency_ms=6.0)
    result.add_cpu_usage(_busy_usage())
    config = ItemConfig(nodeid="t", marked=True, joules=2.5, latency_ms=5.0)
    check = check_budgets(result, config)
    assert check.passed and check.verdict == Verdict.INCONCLUSIVE
    assert check.warnings[0] == (
        "inconclusive: machine busy: energy budget exceeded: 3 J per call > 2.5 J budget "
        "(+20%), fake d:0, 5 trials; other processes used 1.7 of 2 CPUs while measuring "
        "(this test 0.3, load 2.9); not failed: rerun on a quiet machine, or "
        "--energy-contention=fail to enforce")
    assert check.warnings[1].startswith("inconclusive: machine busy: latency budget exceeded")
    strict = check_budgets(result, config, contention="fail")
    assert not strict.passed and strict.verdict == Verdict.OVER_BUDGET
    assert len(strict.failures) == 2
    assert "the failure stands because --energy-contention=fail" in strict.warnings[0]


def test_busy_does_not_waive_what_could_not_be_checked_and_quiet_changes_nothing() -> None:
    result = _result()
    result.add_cpu_usage(_busy_usage())
    check = check_budgets(result, ItemConfig(nodeid="t", marked=True, joules_per_item=1.0))
    assert not check.passed and "could not be checked" in check.failures[0]
    result = _result()
    result.add_cpu_usage(CpuUsage(running=104, steal=0, total=200, own=100, cpus=2))
    check = check_budgets(result, ItemConfig(nodeid="t", marked=True, joules=2.5))
    assert not check.passed and check.verdict == Verdict.OVER_BUDGET and not check.warnings


def test_busy_and_contaminated_keep_the_contaminated_verdict() -> None:
    result = _result(joules=3.0, latency_ms=6.0)
    result.conditions.append("contaminated: 1 other compute process on d:0 (pid 42)")
    result.add_cpu_usage(_busy_usage())
    check = check_budgets(result, ItemConfig(nodeid="t", marked=True, joules=2.5,
                                             latency_ms=5.0))
    assert check.passed and check.verdict == Verdict.OVER_BUDGET_CONTAMINATED
    assert any(w.startswith("not failed: energy") for w in check.warnings)
    assert any(w.startswith("inconclusive: machine busy: latency") for w in check.warnings)


# ----- the regression gate ------------------------------------------------------------

BUSY = ("busy: other processes used 1.7 of 2 CPUs while measuring (this test 0.3, "
        "load 2.9)",)


def _entry(per_call: list[float], **extra: Any) -> Entry:
    return Entry.from_json({
        "nodeid": "t::a", "joules_per_call": sorted(per_call)[len(per_call) // 2],
        "meter": "rapl", "domains": ["package:0"], "estimated": False, "valid": True,
        "trials": [{"calls": 10, "window_s": 0.01, "joules": {"package:0": v * 10}}
                   for v in per_call], **extra})


STEADY = [1.0, 1.01, 0.99, 1.0, 1.0]
UP = [2.0, 2.02, 1.98, 2.0, 2.0]


@pytest.mark.parametrize("where", ["this run", "the baseline"])
def test_a_regression_measured_while_busy_does_not_fail_the_gate(where: str) -> None:
    busy_base, busy_now = (BUSY, ()) if where == "the baseline" else ((), BUSY)
    (result,) = compare_entries([_entry(STEADY, conditions=busy_base)],
                                [_entry(UP, conditions=busy_now)],
                                parse_compare_fail("joules:10%"))
    assert result.verdict == CompareVerdict.WORSE_CONTAMINATED
    note = result.metrics[0].note or ""
    assert note.startswith(f"inconclusive: machine busy in {where}")
    assert "other processes used 1.7 of 2 CPUs" in note


def test_a_quiet_regression_still_fails_the_gate() -> None:
    (result,) = compare_entries([_entry(STEADY)], [_entry(UP)],
                                parse_compare_fail("joules:10%"))
    assert result.verdict == CompareVerdict.REGRESSED
    assert busy_module.BUSY_PREFIX is BUSY_PREFIX  # one definition, in pytest_energy.entry


# ----- end to end ---------------------------------------------------------------------

BUSY_SUITE = """
import os
from pathlib import Path
import pytest
from fake_procfs import FakeProc

NEIGHBOURS = float(os.environ.get("FAKE_NEIGHBOURS", "0"))


@pytest.mark.energy_budget(joules="1 mJ", rounds=10, trials=5)
def test_model():
    # each call: 0.1 s of the fake machine, this test on 0.3 CPU, neighbours beside it
    FakeProc(Path(os.environ["PYTEST_ENERGY_PROC_ROOT"])).advance(
        0.1, own_cpus=0.3, foreign_cpus=NEIGHBOURS)
"""


@pytest.fixture
def busy_suite(meters: pytest.Pytester, proc: FakeProc) -> pytest.Pytester:
    meters.makepyfile(fake_procfs=Path(procfs.__file__).read_text(), test_neighbours=BUSY_SUITE)
    return meters


def _entry_of(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "e.json").read_text())["tests"][0]
    return data


def test_busy_machine_turns_an_over_budget_test_into_a_warning(
        busy_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NEIGHBOURS", "1.7")
    spec = "--energy-meter=energy_test_meters:StepMeter"
    result = busy_suite.runpytest(spec, "--energy-json=e.json")
    result.assert_outcomes(passed=1, warnings=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*EnergyVerdictWarning*test_model: inconclusive: machine busy: energy budget "
        "exceeded*other processes used 1.7 of 2 CPUs while measuring*",
        "*test_model*inconclusive*"])
    entry = _entry_of(busy_suite)
    assert entry["verdict"] == "inconclusive" and entry["outcome"] == "passed"
    assert entry["machine_load"]["busy"] is True and entry["contaminated"] is False
    assert any(c.startswith("busy: other processes used 1.7") for c in entry["conditions"])
    strict = busy_suite.runpytest(spec, "--energy-contention=fail", "--energy-json=e.json")
    strict.assert_outcomes(failed=1)
    assert _entry_of(busy_suite)["verdict"] == "over budget"


def test_quiet_machine_is_not_flagged_and_the_budget_fails(
        busy_suite: pytest.Pytester) -> None:
    result = busy_suite.runpytest("--energy-meter=energy_test_meters:StepMeter",
                                  "--energy-json=e.json")
    result.assert_outcomes(failed=1)
    entry = _entry_of(busy_suite)
    assert entry["machine_load"]["busy"] is False
    assert entry["machine_load"]["foreign_cpus"] == 0
    assert not any(c.startswith(BUSY_PREFIX) for c in entry["conditions"])
    assert "machine busy" not in result.stdout.str()


def test_without_proc_detection_is_off(busy_suite: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_NEIGHBOURS", "1.7")  # the fake moves, the plugin looks away
    monkeypatch.setenv(PROC_ROOT_ENV, str(tmp_path / "no-proc"))
    fake_root = tmp_path / "proc"
    busy_suite.makepyfile(test_neighbours=BUSY_SUITE.replace(
        'os.environ["PYTEST_ENERGY_PROC_ROOT"]', repr(str(fake_root))))
    result = busy_suite.runpytest("--energy-meter=energy_test_meters:StepMeter",
                                  "--energy-json=e.json")
    result.assert_outcomes(failed=1)
    entry = _entry_of(busy_suite)
    assert entry["machine_load"] is None and entry["verdict"] == "over budget"


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc on this system")
def test_the_real_proc_parses() -> None:
    start = cpu_sample(Path("/proc"))  # the figures are the machine's: only their shape
    assert start is not None and start.cpus >= 1 and start.total > start.running >= 0
    assert cpu_usage(start, cpu_sample(Path("/proc"))) is not None


def test_an_expected_over_budget_failure_is_not_waived_on_a_busy_machine(
        busy_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiving it would make xfail(strict=True) an XPASS that fails the build."""
    monkeypatch.setenv("FAKE_NEIGHBOURS", "1.7")
    busy_suite.makepyfile(test_neighbours=BUSY_SUITE.replace(
        "@pytest.mark.energy_budget",
        "@pytest.mark.xfail(raises=EnergyBudgetExceeded, strict=True)\n"
        "@pytest.mark.energy_budget").replace(
        "import pytest\n", "import pytest\nfrom pytest_energy import EnergyBudgetExceeded\n"))
    result = busy_suite.runpytest("--energy-meter=energy_test_meters:StepMeter")
    result.assert_outcomes(xfailed=1)
    assert result.ret == 0
