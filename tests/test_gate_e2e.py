"""End-to-end behaviour of the regression gate: pytester runs that save, compare and report.

The meter below makes energies exact: each call of a test body adds the next value of
that test's sequence (``GATE_MJ="test_a=1,1.2;test_b=1"``, in mJ) to the counter, so a
window of one call reads exactly that value whatever the machine does, and a baseline
run and a regressed run are two environment variables apart.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_energy.entry import Entry
from pytest_energy.history.gate import RegressionGate
from pytest_energy.history.runs import SessionOutcome
from pytest_energy.history.schema import SCHEMA_VERSION

GATE_METERS = textwrap.dedent(
    '''
    import os

    TOTAL = [0.0]
    CALLS = {}


    def _values(name):
        spec = dict(part.split("=", 1) for part in os.environ.get("GATE_MJ", "").split(";")
                    if "=" in part)
        text = spec.get(name, spec.get("*", "1"))
        return [float(v) * 1e-3 for v in text.split(",")]


    def tick(name):
        """One call of test ``name``: the counter advances by its next value."""
        values = _values(name)
        done = CALLS.get(name, 0)
        CALLS[name] = done + 1
        TOTAL[0] += values[done % len(values)]


    class SeqMeter:
        name = "seq"
        estimated = False
        update_period_s = 0.0

        def __init__(self):
            TOTAL[0] = 0.0
            CALLS.clear()

        def domains(self):
            return ["seq:0"]

        def read(self):
            return {"seq:0": TOTAL[0]}

        def close(self):
            pass


    class OtherMeter(SeqMeter):
        name = "otherseq"
    '''
)

SUITE = textwrap.dedent(
    """
    import pytest
    import gate_meters

    @pytest.mark.energy_budget(joules=1, rounds=5, trials=5, warmup=0)
    def test_a():
        gate_meters.tick("test_a")

    @pytest.mark.energy_budget(rounds=5, trials=5, warmup=0)
    def test_b():
        gate_meters.tick("test_b")
    """
)

STEADY = "*=1,1.01,0.99,1,1"
A_PLUS_20 = "test_a=1.2,1.21,1.19,1.2,1.2;*=1,1.01,0.99,1,1"


class Suite:
    """Runs the suite with the sequence meter under a chosen energy sequence."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pytester = pytester
        self.monkeypatch = monkeypatch
        self.path = pytester.path

    def run(self, energies: str, *args: str, meter: str = "SeqMeter",
            subprocess: bool = False) -> pytest.RunResult:
        """``subprocess``: for a Ctrl-C, which would stop the process running pytester."""
        self.monkeypatch.setenv("GATE_MJ", energies)
        if subprocess:
            self.monkeypatch.setenv("PYTHONPATH", str(self.path))
        run = self.pytester.runpytest_subprocess if subprocess else self.pytester.runpytest
        return run(f"--energy-meter=gate_meters:{meter}", "-p", "no:cacheprovider", *args)

    def baseline(self, energies: str = "", *args: str, name: str = "main", runs: int = 3
                 ) -> pytest.RunResult:
        """Save ``runs`` runs under ``name``: the gate fails nothing with fewer than 3,
        since the run-to-run spread is not measured until then."""
        result = None
        for _ in range(runs):
            result = self.run(energies or STEADY, f"--energy-save={name}", *args)
            assert result.ret == 0
        assert result is not None
        return result

    @property
    def db(self) -> Path:
        return self.path / ".energy" / "history.sqlite3"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Suite:
    for name in ("GITHUB_STEP_SUMMARY", "PYTEST_ENERGY_STORAGE", "PYTEST_ENERGY_COMPARE",
                 "PYTEST_ENERGY_SAVE", "PYTEST_ENERGY_AUTOSAVE", "PYTEST_ENERGY_COMPARE_FAIL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(gate_meters=GATE_METERS, test_model=SUITE)
    pytester.syspathinsert()
    return Suite(pytester, monkeypatch)


def test_save_creates_history_then_compare_passes(suite: Suite) -> None:
    first = suite.run(STEADY, "--energy-save=main")
    assert first.ret == 0
    first.stdout.fnmatch_lines(["energy history: saved run #1 'main' (2 tests, *) to *"
                                "history.sqlite3"])
    assert (suite.path / ".energy" / ".gitignore").read_text().strip().endswith("*")
    second = suite.run(STEADY, "--energy-compare")
    assert second.ret == 0
    second.stdout.fnmatch_lines([
        "energy compare: baseline #1 'main' (*), rule: report only: 1 baseline run(s), at "
        "least 3 needed before anything fails",
        "compared: 2 unchanged",
        "energy compare passed: no significant regression",
        "pytest-energy: energy compare: the baseline holds 1 run; failing needs at least 3 *",
    ])


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_regression_fails_the_session_naming_the_test(suite: Suite) -> None:
    suite.baseline()
    result = suite.run(A_PLUS_20, "--energy-compare=main")
    result.assert_outcomes(passed=2)  # the tests pass; the gate fails the session
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "energy compare: baseline #3 'main' (*) and 2 earlier run(s), rule: worse beyond "
        "joules:10% and beyond the run-to-run spread of 3 baseline run(s)*",
        "*test_model.py::test_a*J/call*1 mJ*1.2 mJ*+20.0%*(3 runs)*REGRESSED (joules:10%)*",
        "compared: 1 regressed, 1 unchanged",
        "energy compare FAILED: 1 regressed beyond joules:10% and the baseline's run-to-run "
        "spread: test_model.py::test_a",
    ])
    assert "test_b*REGRESSED" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_improvement_is_shown_and_passes(suite: Suite) -> None:
    suite.run(STEADY, "--energy-save=main")
    result = suite.run("test_b=0.8,0.81,0.79,0.8,0.8;*=1,1.01,0.99,1,1", "--energy-compare")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_b*1 mJ*800 uJ*-20.0%*0.00397 (5 vs 5)*improved*",
                                 "compared: 1 improved, 1 unchanged"])


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_large_change_without_significance_does_not_fail(suite: Suite) -> None:
    suite.run(STEADY, "--energy-save=main")
    # Median +100%, but the windows swing 0.5-2x: 5 vs 5 trials overlap, p = 0.2.
    result = suite.run("test_a=2,0.5,2,0.5,2;*=1,1.01,0.99,1,1", "--energy-compare")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*test_a*1 mJ*2 mJ*+100.0%*(5 vs 5)*worse, not significant (joules:10%)*",
        "energy compare passed: no significant regression",
    ])


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_absolute_threshold_and_report_only(suite: Suite) -> None:
    suite.baseline()
    below = suite.run(A_PLUS_20, "--energy-compare", "--energy-compare-fail=joules:+0.5mJ")
    assert below.ret == 0  # +0.2 mJ is under an absolute +0.5 mJ threshold
    report_only = suite.run(A_PLUS_20, "--energy-compare", "--energy-compare-fail=none")
    assert report_only.ret == 0
    report_only.stdout.fnmatch_lines([
        "*test_a*REGRESSED (joules:10%)*",
        "energy compare: 1 test(s) regressed (report only, --energy-compare-fail=none)"])


def test_missing_baseline_warns_and_passes(suite: Suite) -> None:
    result = suite.run(STEADY, "--energy-compare")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "pytest-energy: no baseline to compare with: there is no history at *history.sqlite3"
        " yet; save one with --energy-save=NAME or --energy-autosave on this machine. Passing"
        " (--energy-compare-strict makes this an error)"])
    assert not suite.db.exists()  # comparing alone creates nothing


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_missing_baseline_is_an_error_when_strict(suite: Suite) -> None:
    result = suite.run(STEADY, "--energy-compare", "--energy-compare-strict")
    assert result.ret == 3
    result.stdout.fnmatch_lines(["pytest-energy: no baseline to compare with: *"
                                 "(--energy-compare-strict makes this an error)"])
    suite.run(STEADY, "--energy-save=main")
    unknown = suite.run(STEADY, "--energy-compare=release", "--energy-compare-strict")
    assert unknown.ret == 3
    unknown.stdout.fnmatch_lines(["*no run 'release' in *history.sqlite3 (named runs: main)*"])


def _move_baseline_to_other_hardware(db: Path, **changes: object) -> None:
    """Rewrite run #1 as if it had been saved on another machine."""
    with sqlite3.connect(db) as connection:
        machine = json.loads(connection.execute("SELECT machine FROM runs").fetchone()[0])
        machine.update(changes)
        connection.execute("UPDATE runs SET machine = ?, fingerprint = ?",
                           (json.dumps(machine), "0123456789abcdef"))
    connection.close()


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_baseline_from_other_hardware_is_refused_saying_what_differs(suite: Suite) -> None:
    suite.run(STEADY, "--energy-save=main")
    _move_baseline_to_other_hardware(suite.db, cpu_model="Imaginary CPU 9000", cpu_count=512)
    named = suite.run(A_PLUS_20, "--energy-compare=main")
    assert named.ret == 0  # refused, not failed
    named.stdout.fnmatch_lines([
        "pytest-energy: comparison refused: baseline #1 'main' was measured on different "
        "hardware: cpu_model: 'Imaginary CPU 9000' (baseline) vs * (this run); cpu_count: 512 "
        "(baseline) vs * (this run) (hostname, clocks and temperatures do not count)*"])
    latest = suite.run(A_PLUS_20, "--energy-compare")
    latest.stdout.fnmatch_lines(["*no baseline to compare with: no run saved on this machine *"
                                 "the newest stored run #1 'main' was measured on other "
                                 "hardware (cpu_model: 'Imaginary CPU 9000'*"])
    strict = suite.run(A_PLUS_20, "--energy-compare=main", "--energy-compare-strict")
    assert strict.ret == 3


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_hostname_and_python_do_not_block_a_comparison(suite: Suite) -> None:
    suite.baseline()
    with sqlite3.connect(suite.db) as connection:
        machine = json.loads(connection.execute("SELECT machine FROM runs").fetchone()[0])
        machine.update(node="ci-runner-7f3a", python="3.10.0")
        connection.execute("UPDATE runs SET machine = ?", (json.dumps(machine),))
    connection.close()
    result = suite.run(A_PLUS_20, "--energy-compare")
    assert result.ret == 1  # compared (and regressed): the hostname is not part of it
    result.stdout.fnmatch_lines(["note: changed since the baseline: python: '3.10.0' "
                                 "(baseline) vs * (this run)"])
    assert "ci-runner-7f3a" not in result.stdout.str()


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_baseline_from_another_meter_is_refused(suite: Suite) -> None:
    suite.run(STEADY, "--energy-save=main")
    result = suite.run(A_PLUS_20, "--energy-compare", meter="OtherMeter")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "pytest-energy: comparison refused: baseline #1 'main': measured with a different "
        "meter: seq seq:0 in the baseline, otherseq seq:0 in this run. Passing*"])


def test_corrupt_database_is_a_clear_error_and_left_untouched(suite: Suite) -> None:
    suite.db.parent.mkdir()
    garbage = b"this is not a database\x00" * 50
    suite.db.write_bytes(garbage)
    result = suite.run(STEADY, "--energy-autosave", "--energy-compare")
    assert result.ret == 3
    result.stdout.fnmatch_lines([
        f"pytest-energy: {suite.db}: opening failed: the history database is unreadable (not "
        "an SQLite database*). The file was left untouched; move it away*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert suite.db.read_bytes() == garbage
    assert sorted(p.name for p in suite.db.parent.iterdir()) == ["history.sqlite3"]


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_newer_schema_is_refused_and_left_untouched(suite: Suite) -> None:
    suite.run(STEADY, "--energy-save=main")
    with sqlite3.connect(suite.db) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    before = suite.db.read_bytes()
    result = suite.run(STEADY, "--energy-save=next")
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*history.sqlite3 was written by a newer pytest-energy "
                                 f"(history schema 99; this version reads schema "
                                 f"{SCHEMA_VERSION} and older)*"])
    assert suite.db.read_bytes() == before


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_autosave_compares_with_the_previous_runs(suite: Suite) -> None:
    for _ in range(3):
        assert suite.run(STEADY, "--energy-autosave").ret == 0
    result = suite.run(A_PLUS_20, "--energy-autosave", "--energy-compare")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["energy compare: baseline #3 (*) and 2 earlier run(s)*",
                                 "*saved run #4 (2 tests*"])


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_markdown_report_and_github_step_summary(suite: Suite,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    suite.baseline()
    step_summary = suite.path / "step_summary.md"
    step_summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = suite.run(A_PLUS_20, "--energy-compare", "--energy-markdown=reports/energy.md")
    assert result.ret == 1
    text = (suite.path / "reports" / "energy.md").read_text()
    assert text.startswith("## Energy summary\n")
    assert "| `test_model.py::test_a` | 1.2 mJ | - |" in text
    assert "## Energy comparison: FAILED" in text
    assert "Baseline: run #3 `main` and 2 earlier run(s)" in text
    assert ("| `test_model.py::test_a` | joules | 1 mJ | 1.2 mJ | +20.0% | 0 | regressed | "
            ">= 10% |") in text
    assert "test_b` | joules" not in text  # unchanged tests are counted, not listed
    assert step_summary.read_text() == "previous step\n" + text + "\n"
    result.stdout.fnmatch_lines(["energy markdown report: reports*energy.md",
                                 "energy markdown appended to $GITHUB_STEP_SUMMARY"])


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_json_report_carries_the_compare_results(suite: Suite) -> None:
    suite.baseline()
    suite.run(A_PLUS_20, "--energy-compare", "--energy-json=report.json")
    compare = json.loads((suite.path / "report.json").read_text())["compare"]
    assert {key: compare[key] for key in ("status", "regressions", "thresholds",
                                          "exit_status")} == {
        "status": "failed", "regressions": ["test_model.py::test_a"],
        "thresholds": ["joules:10%"], "exit_status": 1}
    assert compare["baseline"]["name"] == "main" and compare["baseline"]["runs"] == [3, 2, 1]
    assert compare["baseline_runs"] == 3 and compare["shifts"] == []  # 2 tests: no shift
    (metric,) = {t["nodeid"]: t for t in compare["tests"]}["test_model.py::test_a"]["metrics"]
    assert (metric["verdict"], metric["change_rel"], metric["p_value"]) == (
        "regressed", pytest.approx(0.2), 0.0)  # the baseline runs agree exactly
    assert metric["n_baseline"] == 3 and metric["detectable"] == pytest.approx(0.1)


def test_junitxml_has_energy_properties_for_every_measured_test(suite: Suite) -> None:
    suite.run(STEADY, "--junitxml=junit.xml")
    tree = ET.parse(suite.path / "junit.xml")
    for case in tree.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert float(props["energy_joules_per_call"] or "nan") == pytest.approx(1e-3)
        assert props["energy_meter"] == "seq"
        assert "energy_latency_ms" in props
    assert len(list(tree.iter("testcase"))) == 2


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_junitxml_suite_properties_carry_the_compare_verdict(suite: Suite) -> None:
    suite.baseline(STEADY, "--junitxml=base.xml")
    base = ET.parse(suite.path / "base.xml")
    assert not [p for p in base.iter("property") if p.get("name", "").startswith(
        "energy_compare")]  # no compare asked: nothing claimed
    result = suite.run(A_PLUS_20, "--energy-compare=main", "--junitxml=junit.xml")
    assert result.ret == 1
    suite_props = [(p.get("name"), p.get("value"))
                   for p in ET.parse(suite.path / "junit.xml").find("testsuite")
                   .find("properties").iter("property")]
    props = dict(suite_props)
    assert props["energy_compare_status"] == "failed"
    assert props["energy_compare_baseline"] == "#3 'main'"
    assert props["energy_compare_regressions"] == "1"
    assert ("energy_compare_regressed", "test_model.py::test_a") in suite_props
    assert "1 regressed" in props["energy_compare_counts"]


def test_suggested_budgets_from_history(suite: Suite) -> None:
    suite.run(STEADY, "--energy-save=main")
    result = suite.run(STEADY, "--energy-suggest-budgets=budgets.json")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "energy budget suggestions (p95 of per-trial values x 1.2*",
        '  test_model.py::test_a: @pytest.mark.energy_budget(joules="1.3 mJ")  # joules '
        "budget 1 J <1% used; 10 trials, 2 run(s)",
        '  test_model.py::test_b: @pytest.mark.energy_budget(joules="1.3 mJ", latency_ms=*)'
        "  # unbudgeted; 10 trials, 2 run(s)",
    ])
    data = json.loads((suite.path / "budgets.json").read_text())
    by_test = {s["nodeid"]: s for s in data["suggestions"]}
    assert by_test["test_model.py::test_a"]["joules"] == pytest.approx(1.3e-3)
    assert by_test["test_model.py::test_a"]["latency_ms"] is None


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--energy-compare", "--energy-compare-fail=jouls:10%"], {},
         "*--energy-compare-fail='jouls:10%' is not valid: unknown metric 'jouls' (did you "
         "mean 'joules'?)*"),
        (["--energy-save=../main"], {},
         "*--energy-save='../main' is not valid: a run name uses only letters, digits*"),
        (["--energy-compare"], {"PYTEST_ENERGY_COMPARE_FAIL": "joules:ten%"},
         "*environment variable PYTEST_ENERGY_COMPARE_FAIL: compare_fail='joules:ten%' is not "
         "valid*"),
        (["--energy-compare-fail=joules:5%"], {},
         "*--energy-compare-fail has no effect without --energy-compare*"),
        (["--energy-compare", "test_model.py"], {},
         "*--energy-compare='test_model.py' looks like a test path, not a stored run: write "
         "--energy-compare=NAME (with '=')*"),
        (["-o", "energy_compare=main", "-o", "energy_compare_alpha=0"], {},
         "*ini option energy_compare_alpha: compare_alpha='0' is not valid: expected a "
         "significance level in (0, 0.5]*"),
    ],
)
def test_bad_gate_options_are_usage_errors(suite: Suite, monkeypatch: pytest.MonkeyPatch,
                                           args: list[str], env: dict[str, str],
                                           expected: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = suite.run(STEADY, *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([expected])


def test_ini_options_are_resolved_from_the_rootdir(suite: Suite) -> None:
    suite.pytester.makeini("[pytest]\nenergy_storage = history/energy\nenergy_autosave = true\n")
    sub = suite.path / "sub"
    sub.mkdir()
    suite.pytester.chdir()
    assert suite.run(STEADY).ret == 0
    assert (suite.path / "history" / "energy" / "history.sqlite3").is_file()


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_xdist_controller_compares_a_serial_baseline(suite: Suite) -> None:
    pytest.importorskip("xdist")
    suite.baseline()
    result = suite.run(A_PLUS_20, "-n", "2", "--energy-compare=main", "--energy-save=pr")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*test_a*REGRESSED (joules:10%)*",
                                 "*saved run #4 'pr' (2 tests*"])


# ----- what enters the history: complete runs only, with their status ------------------------

# "Interrupted" is a session pytest did not finish (exit 2: Ctrl-C, a collection error,
# pytest.exit), one stopped early by -x/--maxfail, or one with an internal or usage
# error; "errored" is a measured test with a setup/teardown error or interrupted.
INTERRUPTING = """
import pytest
import gate_meters

@pytest.mark.energy_budget(rounds=5, trials=5, warmup=0)
def test_zz_interrupted():
    gate_meters.tick("test_zz")
    raise KeyboardInterrupt
"""

ERRORING = """
import pytest
import gate_meters

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

@pytest.mark.energy_budget(rounds=5, trials=5, warmup=0)
def test_zz_errored(broken_teardown):
    gate_meters.tick("test_zz")
"""

FAILING = "def test_zz_fails():\n    assert False\n"
NOT_SAVED_INTERRUPTED = "not saved to the history: the session was interrupted (exit 2)"


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_interrupted_session_is_not_saved(suite: Suite) -> None:
    suite.pytester.makepyfile(test_zz=INTERRUPTING)
    named = suite.run(STEADY, "--energy-save=main", "--energy-json=report.json",
                      subprocess=True)
    assert named.ret == 2
    named.stdout.fnmatch_lines([f"pytest-energy: {NOT_SAVED_INTERRUPTED}"])
    assert not suite.db.exists()  # not even created
    compare = json.loads((suite.path / "report.json").read_text())["compare"]
    assert compare["saved"] is None
    assert compare["not_saved"] == "the session was interrupted (exit 2)"
    assert NOT_SAVED_INTERRUPTED in compare["messages"]
    auto = suite.run(STEADY, "--energy-autosave", subprocess=True)
    auto.stdout.fnmatch_lines([f"energy history: run {NOT_SAVED_INTERRUPTED}"])
    assert not suite.db.exists()


def test_errored_measured_test_prevents_saving(suite: Suite) -> None:
    suite.pytester.makepyfile(test_zz=ERRORING)
    result = suite.run(STEADY, "--energy-save=main")
    result.assert_outcomes(passed=3, errors=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["pytest-energy: not saved to the history: 1 measured test(s) "
                                 "errored or were interrupted: test_zz.py::test_zz_errored"])
    assert not suite.db.exists()


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_stopped_early_is_not_saved_but_a_failed_run_is_saved_as_failed(suite: Suite) -> None:
    suite.pytester.makepyfile(test_zz=FAILING)
    stopped = suite.run(STEADY, "--energy-autosave", "-x")
    assert stopped.ret == 1
    stopped.stdout.fnmatch_lines(["energy history: run not saved to the history: the session "
                                  "stopped early (stopping after 1 failures)"])
    assert not suite.db.exists()
    failed = suite.run(STEADY, "--energy-autosave")
    assert failed.ret == 1  # a failing test still makes a complete run
    failed.stdout.fnmatch_lines(["energy history: saved run #1 (2 tests, *, failed) to *"])
    for _ in range(2):
        assert suite.run(STEADY, "--energy-autosave", "-k", "not zz").ret == 0
    regressed = suite.run(A_PLUS_20, "--energy-autosave", "--energy-compare", "-k", "not zz")
    assert regressed.ret == 1
    regressed.stdout.fnmatch_lines(["energy history: saved run #4 (2 tests, *, regressed) to *"])
    with sqlite3.connect(suite.db) as connection:
        statuses = connection.execute("SELECT status FROM runs ORDER BY id").fetchall()
    connection.close()
    assert statuses == [("failed",), ("passed",), ("passed",), ("regressed",)]


# ----- the gate object on its own (what the plugin calls) ------------------------------------


def _entry(nodeid: str, per_call: list[float]) -> Entry:
    return Entry.from_json({
        "nodeid": nodeid, "outcome": "passed", "joules_per_call": sorted(per_call)[2],
        "meter": "seq", "domains": ["seq:0"], "estimated": False, "valid": True,
        "trials": [{"calls": 1, "window_s": 0.001, "joules": {"seq:0": v}}
                   for v in per_call]})


MACHINE = {"system": "Linux", "machine": "x86_64", "cpu_model": "Test CPU", "cpu_count": 4,
           "node": "host"}


def test_gate_finish_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the history directory should be")
    gate = RegressionGate(storage_dir=blocker / "energy", autosave=True, compare="latest",
                          markdown=str(blocker / "out.md"), environ={})
    result = gate.finish([_entry("t::a", [1, 1, 1, 1, 1])], {}, MACHINE)
    assert gate.exit_status() == 3
    assert result["status"] == "error"
    assert any("cannot create the history directory" in m for m in result["messages"])
    assert any("could not write the markdown report" in m for m in result["messages"])
    assert json.dumps(result)
    weird = RegressionGate(storage_dir=tmp_path / "e", autosave=True, environ={})
    outcome = weird.finish([{"no": "nodeid"}], {"used": "not a dict"}, {})
    assert weird.exit_status() in (None, 3)
    assert isinstance(outcome["messages"], list)
    assert all(isinstance(line, str) for line in weird.summary_lines())


def test_gate_compares_before_saving(tmp_path: Path) -> None:
    first = RegressionGate(storage_dir=tmp_path, autosave=True, compare="latest", environ={})
    first.finish([_entry("t::a", [1, 1.01, 0.99, 1, 1])], {}, MACHINE)
    assert first.result["status"] == "no baseline"  # never compared with itself
    assert first.exit_status() is None
    for _ in range(2):
        RegressionGate(storage_dir=tmp_path, autosave=True, environ={}).finish(
            [_entry("t::a", [1, 1.01, 0.99, 1, 1])], {}, MACHINE)
    fourth = RegressionGate(storage_dir=tmp_path, autosave=True, compare="latest", environ={})
    fourth.finish([_entry("t::a", [1.2, 1.21, 1.19, 1.2, 1.2])], {}, MACHINE)
    assert fourth.result["status"] == "failed" and fourth.exit_status() == 1
    assert fourth.result["baseline"]["runs"] == [3, 2, 1] and fourth.result["saved"]["id"] == 4


@pytest.mark.parametrize(
    ("outcome", "outcome_of_a", "status", "why"),
    [
        (SessionOutcome(0), "passed", "passed", None),
        (SessionOutcome(1), "failed", "failed", None),
        (SessionOutcome(2), "passed", None, "the session was interrupted (exit 2)"),
        (SessionOutcome(3), "passed", None, "pytest had an internal error (exit 3)"),
        (SessionOutcome(4), "passed", None, "pytest was used wrongly (usage error) (exit 4)"),
        (SessionOutcome(5), "passed", None, "no tests ran (exit 5)"),
        (SessionOutcome(1, "stopping after 1 failures"), "failed", None,
         "the session stopped early (stopping after 1 failures)"),
        (SessionOutcome(1), "error", None,
         "1 measured test(s) errored or were interrupted: t::a"),
        (SessionOutcome(0), "interrupted", None,
         "1 measured test(s) errored or were interrupted: t::a"),
    ],
)
def test_gate_saves_complete_runs_only(tmp_path: Path, outcome: SessionOutcome,
                                       outcome_of_a: str, status: str | None,
                                       why: str | None) -> None:
    entries = [_entry("t::a", [1, 1, 1, 1, 1]).with_outcome(outcome_of_a),
               _entry("t::b", [1, 1, 1, 1, 1])]
    gate = RegressionGate(storage_dir=tmp_path, save="main", environ={})
    result = gate.finish(entries, {}, MACHINE, outcome)
    assert gate.exit_status() is None  # not saving is a warning, never an error
    assert result["not_saved"] == why
    if status is None:
        assert result["saved"] is None and not (tmp_path / "history.sqlite3").exists()
        assert result["messages"] == [f"not saved to the history: {why}"]
    else:
        assert result["saved"]["status"] == status and result["messages"] == []


def test_session_outcome_reads_a_pytest_session() -> None:
    class FakeSession:
        exitstatus = 1
        shouldstop = False
        shouldfail = "stopping after 2 failures"

    assert SessionOutcome.of(FakeSession()) == SessionOutcome(1, "stopping after 2 failures")
    assert SessionOutcome.of(None) == SessionOutcome(0, None)
    assert SessionOutcome.of(SessionOutcome(2)) == SessionOutcome(2)


def test_help_lists_the_gate_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--energy-compare=*RUN*", "*--energy-compare-fail=*",
                                 "*joules:10%,latency_ms:15%*", "*energy_storage (string):*"])


# ----- the run-level model: the common shift of a whole run ----------------------------------

MORE_TESTS = textwrap.dedent(
    """
    import pytest
    import gate_meters

    @pytest.mark.energy_budget(rounds=5, trials=5, warmup=0)
    def test_c():
        gate_meters.tick("test_c")

    @pytest.mark.energy_budget(rounds=5, trials=5, warmup=0)
    def test_d():
        gate_meters.tick("test_d")
    """
)


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_a_whole_suite_regression_fails_as_the_run_s_common_shift(suite: Suite) -> None:
    suite.pytester.makepyfile(test_more=MORE_TESTS)
    suite.baseline("*=1,1.01,0.99,1,1", "--energy-json=base.json")
    result = suite.run("*=1.5", "--energy-compare=main", "--energy-json=report.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "common shift of the run*: joules +50.0% (p 0, detects >= 10%; regressed)",
        "energy compare FAILED: 1 regressed beyond joules:10% and the baseline's run-to-run "
        "spread: whole run"])
    compare = json.loads((suite.path / "report.json").read_text())["compare"]
    (shift,) = compare["shifts"]
    assert shift["verdict"] == "regressed" and shift["change_rel"] == pytest.approx(0.5)
    assert compare["regressions"] == ["whole run"]  # no test moved against the rest


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_a_slower_machine_alone_is_within_the_baseline_spread(suite: Suite) -> None:
    suite.pytester.makepyfile(test_more=MORE_TESTS)
    for scale in ("1", "1.2", "0.9"):  # the baseline runs' machine drifted by 30%
        assert suite.run(f"*={scale}", "--energy-save=main").ret == 0
    result = suite.run("*=1.15", "--energy-compare=main", "--energy-json=report.json")
    assert result.ret == 0
    (shift,) = json.loads((suite.path / "report.json").read_text())["compare"]["shifts"]
    assert shift["verdict"] == "unchanged" and shift["detectable"] > 0.3
