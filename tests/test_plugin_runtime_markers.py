"""Markers added at run time are measured (issue 15, item 3): ``item.add_marker`` in
``pytest_collection_modifyitems`` or ``pytest_runtest_setup``, ``request.applymarker``
in a fixture or in the test body, also where no collected test asked for energy (the
per-test hooks are then registered by the first runtime marker)."""

from __future__ import annotations

import json

import pytest

# 100 W x wall time: an over-budget body sleeps, so it is far over whatever the noise
WATT = ["--energy-meter=energy_test_meters:WattMeter", "-p", "no:cacheprovider",
        "--energy-json=e.json"]

CONFTEST = """
import pytest

BUDGET = pytest.mark.energy_budget(joules=1000, rounds=2, warmup=1)

def pytest_collection_modifyitems(items):
    for item in items:
        if item.name == "test_hook_collect":
            item.add_marker(BUDGET)

def pytest_runtest_setup(item):
    if item.name == "test_hook_setup":
        item.add_marker(BUDGET)

@pytest.fixture
def budgeted(request):
    request.applymarker(BUDGET)
"""

SUITE = """
import time
import pytest

CALLS = {}

def count(name):
    CALLS[name] = CALLS.get(name, 0) + 1

def test_hook_collect():
    count("collect")

def test_hook_setup():
    count("setup")

def test_fixture_apply(budgeted):
    count("fixture")

def test_body_apply(request):
    request.applymarker(pytest.mark.energy_budget(joules=1000, rounds=2, warmup=1))
    count("body")

def test_body_over_budget(request):
    request.applymarker(pytest.mark.energy_budget(joules="1 nJ", rounds=2, warmup=1))
    time.sleep(0.002)

def test_budget_on_the_fixture_result(request, energy):
    request.applymarker(pytest.mark.energy_budget(joules="1 nJ"))
    energy(lambda: count("fixture-result") or time.sleep(0.002))

def test_zz_counts():
    # each measured body: warm-up 1 + 2 measured calls; a body that applied the
    # marker itself ran once more, unmeasured, before the plan
    assert CALLS.get("setup") == 3 and CALLS.get("fixture") == 3
    assert CALLS.get("body") == 4
    assert CALLS.get("collect", 3) == 3
"""

MEASURED = {"test_hook_setup", "test_fixture_apply", "test_body_apply",
            "test_body_over_budget", "test_budget_on_the_fixture_result"}


def _entries(pytester: pytest.Pytester) -> dict[str, dict]:  # type: ignore[type-arg]
    tests = json.loads((pytester.path / "e.json").read_text())["tests"]
    return {t["nodeid"].split("::")[-1]: t for t in tests}


@pytest.mark.parametrize("selection", ["all", "none-marked-at-collection"])
def test_runtime_markers_are_measured(meters: pytest.Pytester, selection: str) -> None:
    """"none-marked-at-collection" deselects the collection-time marker and the fixture
    user, so the per-test hooks are not registered when the run starts."""
    meters.makeconftest(CONFTEST)
    meters.makepyfile(test_suite=SUITE)
    args = [] if selection == "all" else [
        "-k", "not hook_collect and not fixture_result"]
    result = meters.runpytest(*WATT, *args)
    entries = _entries(meters)
    expected = (MEASURED | {"test_hook_collect"} if selection == "all"
                else MEASURED - {"test_budget_on_the_fixture_result"})
    assert set(entries) == expected
    over = {"test_body_over_budget", "test_budget_on_the_fixture_result"} & expected
    result.assert_outcomes(passed=len(expected) + 1 - len(over), failed=len(over))
    for name in expected - over:
        assert entries[name]["verdict"] == "ok" and entries[name]["calls"] == 2, name
    for name in over:
        assert entries[name]["verdict"] == "over budget", name


def test_a_suite_without_energy_registers_no_per_test_hooks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_plain(request):
            plugins = request.config.pluginmanager
            assert not plugins.has_plugin("energy-tests")
            assert plugins.has_plugin("energy-watch")
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_runtime_markers_set_the_budgets_under_energy_all(meters: pytest.Pytester) -> None:
    """--energy-all measures every test from setup on; a marker that arrives later still
    brings its budgets (and its plan)."""
    meters.makeconftest(CONFTEST)
    meters.makepyfile(test_suite="""
        import time
        import pytest

        def test_fixture_apply(budgeted):
            pass

        def test_body_over_budget(request):
            request.applymarker(pytest.mark.energy_budget(joules="1 nJ", rounds=2, warmup=1))
            time.sleep(0.002)
    """)
    result = meters.runpytest(*WATT, "--energy-all", "--energy-rounds=3")
    result.assert_outcomes(passed=1, failed=1)
    entries = _entries(meters)
    assert entries["test_fixture_apply"]["budget"]["joules"] == 1000
    assert entries["test_fixture_apply"]["calls"] == 2
    assert entries["test_body_over_budget"]["verdict"] == "over budget"
