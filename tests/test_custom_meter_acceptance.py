"""The acceptance scenario of the core issue: a user's module:attr meter reporting
100 W x wall time, and a test that sleeps 20 ms per call."""

from __future__ import annotations

import json

import pytest

WATT = ["--energy-meter=energy_test_meters:make_watt_meter", "-p", "no:cacheprovider"]

BODY = """
import time
import pytest

@pytest.mark.energy_budget({budget})
def test_sleepy():
    time.sleep(0.020)
"""


def _run(meters: pytest.Pytester, budget: str) -> tuple[pytest.RunResult, dict]:  # type: ignore[type-arg]
    meters.makepyfile(BODY.format(budget=budget))
    result = meters.runpytest(*WATT, "--energy-json=e.json")
    entry = json.loads((meters.path / "e.json").read_text())["tests"][0]
    return result, entry


def test_reports_two_joules_per_call_within_15_percent(meters: pytest.Pytester) -> None:
    result, entry = _run(meters, "joules=10")
    result.assert_outcomes(passed=1)
    assert entry["joules_per_call"] == pytest.approx(2.0, rel=0.15)
    assert entry["meter"] == "watt100" and entry["estimated"] is False


def test_fails_under_half_a_joule_with_the_documented_message(meters: pytest.Pytester) -> None:
    result, entry = _run(meters, "joules=0.5")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*energy budget exceeded: 2\.\d+ J per call > 500 mJ budget \(\+3\d\d%\), "
        r"watt100 wall:0, 5 trials$"
    ])
    assert entry["outcome"] == "failed" and entry["verdict"] == "over budget"


def test_fails_under_a_5_ms_latency_budget(meters: pytest.Pytester) -> None:
    result, _ = _run(meters, "latency_ms=5")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*latency budget exceeded: 2\d\.?\d* ms median per call > "
                                  r"5 ms budget.*"])
