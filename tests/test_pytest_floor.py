"""The declared pytest floor (pyproject: pytest>=8.0) works, not only the newest pytest.

pytest 8.0-8.2 print the verbose word of ``pytest_report_teststatus`` as it is in the
short test summary, so a ``(word, markup)`` tuple showed up raw there as
``('OVER BUDGET', {'red': True})``; from 8.3 both forms render. CI runs the default
suite on the floor version too (``.ci/run``, tox env ``floor``).
"""

from __future__ import annotations

import pytest

STEP = ["--energy-meter=energy_test_meters:StepMeter", "-p", "no:cacheprovider"]

# StepMeter: 1 J per window. The 1 ms body keeps each window far longer than a read and
# 10 rounds give 5 trials, so the result is ~0.5 J per call with a tight error bar: far
# over the 1 mJ budget, a clear failure whatever the measuring details.
OVER_BUDGET_SUITE = """
import time
import pytest

@pytest.mark.energy_budget(joules="1 mJ", rounds=10)
def test_heavy():
    time.sleep(0.001)
"""

# What pytest 8.0-8.2 do with the word in the short summary: print it as given.
SHOW_VERBOSE_WORD = """
def pytest_terminal_summary(terminalreporter, config):
    for rep in terminalreporter.stats.get("failed", []):
        _, _, word = config.hook.pytest_report_teststatus(report=rep, config=config)
        terminalreporter.write_line(f"verbose word: {word!r}")
"""


def test_over_budget_word_is_a_plain_string(meters: pytest.Pytester) -> None:
    meters.makeconftest(SHOW_VERBOSE_WORD)
    meters.makepyfile(OVER_BUDGET_SUITE)
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["verbose word: 'OVER BUDGET'"])


def test_short_summary_shows_the_word_not_a_tuple(meters: pytest.Pytester) -> None:
    meters.makepyfile(OVER_BUDGET_SUITE)
    result = meters.runpytest(*STEP, "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["OVER BUDGET *test_heavy*"])
    assert "('OVER BUDGET'" not in result.stdout.str()
