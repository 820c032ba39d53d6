"""``--energy-disable`` (also PYTEST_ENERGY_DISABLE, ini energy_disable): every body runs
once, nothing is measured or written, and a suite with ``--energy-*`` in addopts and
``--strict-markers`` still runs (issue 15, item 1)."""

from __future__ import annotations

import pytest

from pytest_energy.fixture import DisabledEnergy

SUITE = """
import pytest

CALLS = []

@pytest.mark.energy_budget(joules=1e-12, latency_ms=1e-9)
def test_marked():
    CALLS.append("marked")

def test_fixture(energy):
    assert energy.result is None
    assert energy(lambda x: CALLS.append("fn") or x * 2, 21) == 42
    assert energy.result.joules_per_call is None and energy.result.latency_ms is None
    with energy.measure(items=3) as result:
        CALLS.append("block")
    assert result.joules_per_call is None and result.calls is None

@pytest.mark.energy_budget(joules=1e-12)
def test_marked_fixture(energy):
    energy(CALLS.append, "marked-fn")

def test_zz_each_body_ran_once():
    assert CALLS == ["marked", "fn", "block", "marked-fn"]
"""

ADDOPTS = """
[pytest]
addopts = --strict-markers --energy-trials=3 --energy-json=e.json --energy-save=main
"""


@pytest.mark.parametrize("source", ["cli", "env", "ini"])
def test_disable_runs_each_body_once_and_writes_nothing(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    pytester.makeini(ADDOPTS + ("energy_disable = true\n" if source == "ini" else ""))
    pytester.makepyfile(test_suite=SUITE)
    if source == "env":
        monkeypatch.setenv("PYTEST_ENERGY_DISABLE", "1")
    args = ["--energy-disable"] if source == "cli" else []
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["pytest-energy *: measuring disabled (--energy-disable)"])
    output = result.stdout.str()
    assert "energy summary" not in output and "history" not in output
    assert not (pytester.path / "e.json").exists()
    assert not (pytester.path / ".energy").exists()


def test_disabled_result_reads_none_but_refuses_unknown_names() -> None:
    energy = DisabledEnergy()
    with energy.measure() as result:
        pass
    assert result.joules_per_call is None and result.estimated is None
    with pytest.raises(AttributeError, match="jouls_per_call"):
        _ = result.jouls_per_call
