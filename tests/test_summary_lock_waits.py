"""Waits for the device lock over 1 s are shown in the summary, naming the tests and the
seconds waited (issue 14 item 1): a 4.9 s suite took 74 s, 70.9 s of it waiting for
another project's measurements, and nothing said so. The waits are not in the tests'
numbers, so only the details of a failed test mentioned them."""

from __future__ import annotations

import pytest

from pytest_energy.entry import Entry
from pytest_energy.report.compact import lock_wait_lines

# Sets a measured test's lock wait as the measurement would have recorded it (the
# wrapper runs outside the plugin's, after the entry is attached to the report).
CONFTEST = """
    import pytest

    WAITS = {"test_waits_long": 3.5, "test_waits_briefly": 0.4}

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(item, call):
        report = yield
        data = getattr(report, "energy", None)
        if isinstance(data, dict) and item.name in WAITS:
            data["lock_wait_s"] = WAITS[item.name]
        return report
    """

SUITE = """
    import pytest
    from rs_meters import burn

    @pytest.mark.energy_budget(joules=1)
    def test_waits_long():
        burn(1.0)

    @pytest.mark.energy_budget(joules=1)
    def test_waits_briefly():
        burn(1.0)
    """
ARGS = ("--energy-meter=rs_meters:BurnMeter", "--energy-rounds=2", "--energy-trials=2",
        "-p", "no:cacheprovider")


def entry(name: str, wait: float) -> Entry:
    return Entry(nodeid=f"tests/test_models.py::{name}", lock_wait_s=wait)


def test_lock_waits_over_a_second_are_named_longest_first() -> None:
    entries = [entry("test_a", 0.9), entry("test_b[x]", 40.1), entry("test_c", 30.8),
               entry("test_d", 1.5), entry("test_e", 2.0)]
    (line,) = lock_wait_lines(entries)
    assert line.startswith("lock waits: 4 tests waited 74.4 s in all for another process's "
                           "measurement on the same device (not counted in their numbers): ")
    assert line.endswith("test_b[x] 40.1 s, test_c 30.8 s, test_e 2 s and 1 more")
    assert lock_wait_lines([entry("test_a", 1.0), entry("test_b", 0.0)]) == []
    assert all(len(part) <= 60 for part in lock_wait_lines(entries, 60))


def test_the_summary_shows_the_wait(burn: pytest.Pytester) -> None:
    burn.makeconftest(CONFTEST)
    burn.makepyfile(SUITE)
    result = burn.runpytest(*ARGS, "-rA")
    result.assert_outcomes(passed=2)
    # the details say it too, in a readable unit (was "3.5e+03 ms")
    result.stdout.fnmatch_lines(["isolation: waited 3.5 s for another process's measurement*",
                                 "isolation: waited 400 ms for another process's measurement*"])
    text = " ".join(result.stdout.str().split("energy summary", 1)[1].split())
    assert ("lock waits: 1 test waited 3.5 s in all for another process's measurement on "
            "the same device (not counted in their numbers): test_waits_long 3.5 s") in text
    assert "test_waits_briefly 0.4" not in text  # under a second: details only


def test_the_wait_is_shown_without_the_summary_too(burn: pytest.Pytester) -> None:
    burn.makeconftest(CONFTEST)
    burn.makepyfile(SUITE)
    result = burn.runpytest(*ARGS, "--energy-no-summary")
    assert "energy summary" not in result.stdout.str()
    result.stdout.fnmatch_lines(["lock waits: 1 test waited 3.5 s in all*"])
