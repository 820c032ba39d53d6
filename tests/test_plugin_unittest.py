"""unittest and doctest items (issue 14, item 20): the marker on a ``unittest.TestCase``
method is measured like a test function; ``--energy-all`` says once why it leaves
doctests unmeasured; a marker on a doctest is a clear "not supported" error."""

from __future__ import annotations

import json

import pytest

STEP = ["--energy-meter=energy_test_meters:StepMeter", "-p", "no:cacheprovider",
        "--energy-json=e.json"]
WATT = ["--energy-meter=energy_test_meters:WattMeter", "-p", "no:cacheprovider",
        "--energy-json=e.json"]

UNITTEST_SUITE = """
import time
import unittest
import pytest

CALLS = []

class TestModel(unittest.TestCase):
    def setUp(self):
        self.value = 2

    @pytest.mark.energy_budget(joules=10, rounds=2, warmup=1)
    def test_measured(self):
        CALLS.append(self.value)

    @pytest.mark.energy_budget(joules="1 nJ", rounds=2, warmup=1)
    def test_over_budget(self):
        time.sleep(0.002)  # 0.2 J at the meter's 100 W: far over, whatever the noise

    @pytest.mark.energy_budget(joules=10, rounds=2, warmup=1)
    def test_failing(self):
        self.assertEqual(1, 2)

    @pytest.mark.energy_budget(joules=10, rounds=2, warmup=1)
    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertEqual(1, 2)

    def test_zz_calls(self):
        self.assertEqual(CALLS, [2, 2, 2])  # warm-up + 2 measured calls, setUp once
"""


def test_marker_on_a_testcase_method_is_measured(meters: pytest.Pytester) -> None:
    meters.makepyfile(test_unit=UNITTEST_SUITE)
    result = meters.runpytest(*WATT)
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    output = result.stdout.str()
    assert "energy fixture" not in output  # never blames a fixture it did not request
    result.stdout.fnmatch_lines(["*test_failing - AssertionError: 1 != 2",
                                 "*test_over_budget - EnergyBudgetExceeded*"])
    tests = {t["nodeid"].split("::")[-1]: t
             for t in json.loads((meters.path / "e.json").read_text())["tests"]}
    assert tests["test_measured"]["verdict"] == "ok"
    assert tests["test_measured"]["calls"] == 2 and tests["test_measured"]["joules_per_call"] > 0
    assert tests["test_over_budget"]["verdict"] == "over budget"


DOCTEST_MODULE = '''
import unittest


def double(x):
    """
    >>> double(2)
    4
    """
    return 2 * x


def test_function():
    assert double(1) == 2


class TestCaseStyle(unittest.TestCase):
    def test_method(self):
        self.assertEqual(double(2), 4)
'''


def test_energy_all_says_once_why_doctests_are_not_measured(meters: pytest.Pytester) -> None:
    meters.makepyfile(mod=DOCTEST_MODULE)
    result = meters.runpytest(*STEP, "--energy-all", "--energy-rounds=2", "--doctest-modules",
                              "mod.py", "-W", "always")
    result.assert_outcomes(passed=3)
    assert result.stdout.str().count("--energy-all does not measure") == 1
    result.stdout.fnmatch_lines(["*--energy-all does not measure 1 test(s) of kind DoctestItem: "
                                 "doctests and other non-function items have no body*"])
    tests = json.loads((meters.path / "e.json").read_text())["tests"]
    assert sorted((t["nodeid"], t["calls"]) for t in tests) == [
        ("mod.py::TestCaseStyle::test_method", 2), ("mod.py::test_function", 2)]


def test_a_marker_on_a_doctest_is_a_clear_error(meters: pytest.Pytester) -> None:
    meters.makepyfile(mod=DOCTEST_MODULE)
    meters.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                item.add_marker(pytest.mark.energy_budget(joules=10, rounds=2))
        """
    )
    result = meters.runpytest(*STEP, "--doctest-modules", "mod.py")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*mod.py::mod.double: the energy_budget marker is not "
                                 "supported on DoctestItem items*use the energy fixture*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_a_body_run_by_another_plugin_is_not_blamed_on_the_fixture(
        meters: pytest.Pytester) -> None:
    meters.makeconftest(
        """
        import pytest

        class DirectFunction(pytest.Function):
            def runtest(self):  # never reaches pytest_pyfunc_call
                self.obj()

        @pytest.hookimpl(tryfirst=True)
        def pytest_pycollect_makeitem(collector, name, obj):
            if name == "test_direct":
                return [DirectFunction.from_parent(collector, name=name, callobj=obj)]
        """
    )
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10)
        def test_direct():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*nothing was measured: the test body never ran through "
                                 "pytest's function call*"])
    assert "energy fixture but never called" not in result.stdout.str()
