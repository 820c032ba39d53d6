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


BAD_METERS = '''
class Base:
    name = "base"
    estimated = False
    update_period_s = 0.0
    max_plausible_watts = None

    def __init__(self):
        self.reads = 0

    def domains(self):
        return ["d:0"]

    def read(self):
        self.reads += 1
        return {"d:0": float(self.reads)}

    def close(self):
        pass


class RaisingDomains(Base):
    name = "raising-domains"

    def domains(self):
        raise RuntimeError("no domains today")


class NoneDomains(Base):
    name = "none-domains"

    def domains(self):
        return None


class StringPeriod(Base):
    name = "string-period"
    update_period_s = "0.1"


class StringCeiling(Base):
    name = "string-ceiling"
    max_plausible_watts = "lots"


class LaterRaisingDomains(Base):
    """domains() answers when loaded, then breaks: the reports must survive it."""

    name = "later-raising"
    calls = 0

    def domains(self):
        type(self).calls += 1
        if type(self).calls > 1:
            raise RuntimeError("went away")
        return ["d:0"]
'''

TWO_TESTS = """
import pytest

@pytest.mark.energy_budget(joules=10, rounds=2)
def test_measured():
    pass

def test_plain():
    pass
"""


@pytest.mark.parametrize(("meter", "cause"), [
    ("RaisingDomains", "domains() raised RuntimeError: no domains today"),
    ("NoneDomains", "domains() returned None: expected a non-empty list of domain names"),
    ("StringPeriod", "update_period_s='0.1' (str): expected a number of seconds >= 0"),
    ("StringCeiling", "max_plausible_watts='lots' (str): expected a number > 0 or None"),
])
def test_a_broken_meter_errors_the_measured_tests_naming_it(
        pytester: pytest.Pytester, meter: str, cause: str) -> None:
    pytester.makepyfile(bad_meters=BAD_METERS, test_suite=TWO_TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest(f"--energy-meter=bad_meters:{meter}", "-p", "no:cacheprovider",
                                "--energy-json=e.json")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*--energy-meter=bad_meters:{meter}: meter {meter} (*) is "
                                 f"not usable: {cause}*"])
    output = result.stdout.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert json.loads((pytester.path / "e.json").read_text())["tests"][0]["outcome"] == "error"


def test_a_meter_whose_domains_break_later_does_not_break_the_reports(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(bad_meters=BAD_METERS, test_suite=TWO_TESTS)
    pytester.syspathinsert()
    result = pytester.runpytest("--energy-meter=bad_meters:LaterRaisingDomains", "-p",
                                "no:cacheprovider", "--energy-json=e.json")
    assert "INTERNALERROR" not in result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    assert (pytester.path / "e.json").exists()
