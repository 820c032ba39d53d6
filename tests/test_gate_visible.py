"""A failed regression gate shows where CI looks: pytest's final line and junitxml.

CI dashboards read the last line of pytest's output and the junitxml ``failures`` count,
not the energy summary above them; a gate that failed the build only through its exit
status would look like a green run that exited 1. Each run here uses a meter whose
energies are exact: a call of test ``test_x`` adds the value given for it in
``VISIBLE_MJ`` (mJ), so baseline runs with a small, known run-to-run spread and a run
where one test doubles are a few environment variables apart.
"""

from __future__ import annotations

import re
import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from _pytest.junitxml import LogXML, xml_key

from pytest_energy.report.junit import GateOutcome, add_gate_testcases

METER = textwrap.dedent(
    '''
    import os

    TOTAL = [0.0]


    def tick(name):
        """One call of test ``name``: the counter advances by its value in VISIBLE_MJ."""
        spec = dict(part.split("=", 1) for part in os.environ.get("VISIBLE_MJ", "").split(";")
                    if "=" in part)
        TOTAL[0] += float(spec.get(name, spec.get("*", "1"))) * 1e-3


    class ExactMeter:
        name = "exact"
        estimated = False
        update_period_s = 0.0

        def __init__(self):
            TOTAL[0] = 0.0

        def domains(self):
            return ["exact:0"]

        def read(self):
            return {"exact:0": TOTAL[0]}

        def close(self):
            pass
    '''
)

TESTS = "abcde"
SUITE = "import pytest\nimport visible_meter\n" + "".join(
    f"\n\n@pytest.mark.energy_budget(rounds=5, trials=5, warmup=0)\ndef test_{name}():\n"
    f'    visible_meter.tick("test_{name}")\n' for name in TESTS)

# Baseline runs: every test moves by up to 2% from run to run (a gate that models the
# spread between runs gets a measured, non-zero one).
BASELINE_RUNS = [
    (1.00, 1.02, 0.99, 1.01, 1.00),
    (1.02, 0.99, 1.01, 1.00, 0.98),
    (0.99, 1.00, 1.02, 0.98, 1.01),
    (1.01, 1.01, 0.98, 1.02, 0.99),
]
UNCHANGED = (1.00, 1.00, 1.00, 1.00, 1.00)
A_DOUBLED = (2.00, 1.00, 1.00, 1.00, 1.00)
A_AND_B_DOUBLED = (2.00, 2.00, 1.00, 1.00, 1.00)

GATE_ENV = ("GITHUB_STEP_SUMMARY", "PYTEST_ENERGY_STORAGE", "PYTEST_ENERGY_COMPARE",
            "PYTEST_ENERGY_SAVE", "PYTEST_ENERGY_AUTOSAVE", "PYTEST_ENERGY_COMPARE_FAIL",
            "PYTEST_ENERGY_COMPARE_STRICT", "PYTEST_ENERGY_MARKDOWN", "PYTEST_ENERGY_JSON")
FINAL_LINE = re.compile(r"^=* ?(?P<counts>.*) in [\d.]+s( \([^)]*\))? ?=*$")
RED = "\x1b[31m"


def energies(values: tuple[float, ...]) -> str:
    return ";".join(f"test_{name}={value}" for name, value in zip(TESTS, values, strict=True))


class Suite:
    """The five-test suite in a pytester directory, run with the exact meter."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pytester = pytester
        self.monkeypatch = monkeypatch
        self.path = pytester.path

    def run(self, values: tuple[float, ...], *args: str) -> pytest.RunResult:
        self.monkeypatch.setenv("VISIBLE_MJ", energies(values))
        return self.pytester.runpytest("--energy-meter=visible_meter:ExactMeter", "-p",
                                       "no:cacheprovider", *args)

    def junit(self, name: str) -> ET.Element:
        suite = ET.parse(self.path / name).getroot().find("testsuite")
        assert suite is not None
        return suite


@pytest.fixture(scope="module")
def saved_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the baseline runs' history, saved by the first test that needs it (the
    history is keyed by machine, not by directory, so every test can reuse it)."""
    return tmp_path_factory.mktemp("visible-history")


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Suite:
    for name in GATE_ENV:
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(visible_meter=METER, test_model=SUITE)
    pytester.syspathinsert()
    return Suite(pytester, monkeypatch)


@pytest.fixture
def baseline(suite: Suite, saved_history: Path) -> Suite:
    """The suite with four runs saved under "main"."""
    storage = suite.path / ".energy"
    if not any(saved_history.iterdir()):
        for values in BASELINE_RUNS:
            assert suite.run(values, "--energy-save=main").ret == 0
        shutil.copytree(storage, saved_history, dirs_exist_ok=True)
    else:
        shutil.copytree(saved_history, storage)
    return suite


def final_line(result: pytest.RunResult) -> str:
    """pytest's last line: its counts, without the duration and the ``=`` rule."""
    match = FINAL_LINE.match(result.outlines[-1])
    assert match, result.outlines[-1]
    return match["counts"]


def gate_cases(suite: ET.Element) -> list[ET.Element]:
    return [case for case in suite.iter("testcase") if case.get("classname") == "pytest-energy"]


def gate_element(suite: ET.Element, tag: str) -> ET.Element:
    """The ``failure`` or ``error`` of the one testcase named after the gate."""
    (case,) = gate_cases(suite)
    assert case.get("name") == "regression gate"
    element = case.find(tag)
    assert element is not None
    return element


def counts(suite: ET.Element) -> tuple[str | None, ...]:
    """The testsuite's tests, failures and errors, as CI dashboards read them."""
    return suite.get("tests"), suite.get("failures"), suite.get("errors")


def suite_properties(suite: ET.Element) -> dict[str | None, str | None]:
    return {prop.get("name"): prop.get("value") for prop in suite.iter("property")}


def test_a_regression_is_counted_in_the_final_line_and_in_junitxml(baseline: Suite) -> None:
    result = baseline.run(A_DOUBLED, "--energy-compare=main", "--junitxml=junit.xml",
                          "-rA", "--tb=no", "--durations=3")
    assert result.ret == 1
    assert final_line(result) == "5 passed, 1 energy regression"
    assert result.parseoutcomes()["passed"] == 5  # pytest's own counts still parse
    result.stdout.fnmatch_lines(["*slowest 3 durations*", "*short test summary info*",
                                 "PASSED test_model.py::test_a"])
    assert not [line for line in result.outlines if line.startswith(("FAILED", "ERROR"))]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert_failed_gate_case(baseline.junit("junit.xml"))


def assert_failed_gate_case(xml: ET.Element) -> None:
    """One failed testcase named after the gate, counted, naming the regressed test (and
    only it) and the rule; the suite properties as before."""
    assert counts(xml) == ("6", "1", "0")
    failure = gate_element(xml, "failure")
    assert failure.get("message") == "1 energy regression: test_model.py::test_a"
    head = (failure.text or "").split("\n\n")[0].splitlines()  # before the gate's output
    assert head[1].startswith("rule: ") and head[2:] == ["regressed:", "  test_model.py::test_a"]
    assert suite_properties(xml)["energy_compare_status"] == "failed"


def test_a_passing_compare_adds_nothing(baseline: Suite) -> None:
    result = baseline.run(UNCHANGED, "--energy-compare=main", "--junitxml=junit.xml")
    assert result.ret == 0
    assert final_line(result) == "5 passed"
    xml = baseline.junit("junit.xml")
    assert counts(xml) == ("5", "0", "0")
    assert gate_cases(xml) == []
    assert suite_properties(xml)["energy_compare_status"] == "passed"


def test_report_only_regression_passes_the_build_and_is_not_counted(baseline: Suite) -> None:
    result = baseline.run(A_DOUBLED, "--energy-compare=main", "--energy-compare-fail=none",
                          "--junitxml=junit.xml")
    assert result.ret == 0
    assert final_line(result) == "5 passed"
    assert gate_cases(baseline.junit("junit.xml")) == []


def test_the_final_line_is_red_and_plural(baseline: Suite) -> None:
    result = baseline.run(A_AND_B_DOUBLED, "--energy-compare=main", "-q", "--color=yes")
    assert result.ret == 1
    last = result.outlines[-1]
    assert "2 energy regressions" in last
    assert f"{RED} in " in last  # the line's own colour (the duration's) is red


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_the_xdist_controller_counts_the_regression_once(baseline: Suite) -> None:
    pytest.importorskip("xdist")
    result = baseline.run(A_DOUBLED, "-n", "2", "--energy-compare=main",
                          "--junitxml=junit.xml")
    assert result.ret == 1
    assert final_line(result) == "5 passed, 1 energy regression"
    xml = baseline.junit("junit.xml")
    assert counts(xml) == ("6", "1", "0")
    assert gate_element(xml, "failure").get("message") == (
        "1 energy regression: test_model.py::test_a")


def test_a_gate_error_is_counted_as_an_error(suite: Suite) -> None:
    result = suite.run(UNCHANGED, "--energy-compare=main", "--energy-compare-strict",
                       "--junitxml=junit.xml")
    assert result.ret == 3  # no baseline, and --energy-compare-strict
    assert final_line(result) == "5 passed, 1 energy gate error"
    xml = suite.junit("junit.xml")
    assert counts(xml) == ("6", "0", "1")
    error = gate_element(xml, "error")
    assert error.get("message") == "energy regression gate error"
    assert "no baseline to compare with" in (error.text or "")


def test_without_junitxml_or_gate_nothing_changes(suite: Suite) -> None:
    result = suite.run(UNCHANGED)
    assert result.ret == 0
    assert final_line(result) == "5 passed"


def test_a_junitxml_without_the_expected_api_is_left_alone() -> None:
    """Another junitxml (no node reporters): the gate's testcase is skipped, never an
    INTERNALERROR at session finish."""
    stash = pytest.Stash()
    stash[xml_key] = cast(LogXML, SimpleNamespace(node_reporter=None))
    config = cast(pytest.Config, SimpleNamespace(stash=stash))
    outcome = GateOutcome.of({"status": "failed", "regressions": ["t.py::test_a"],
                              "exit_status": 3, "rule": "r", "messages": ["m"]})
    add_gate_testcases(config, outcome, ["details"])
    assert outcome.failure_message() == "1 energy regression: t.py::test_a"
