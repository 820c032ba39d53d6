"""Help texts that say what a switch hides, and the version (issue 15, items 6 and 7)."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from pytest_energy import __version__
from pytest_energy.__main__ import main


def _help_of(output: str, flag: str) -> str:
    """The help text of ``flag`` in ``pytest --help``, its wrapped lines joined."""
    match = re.search(rf"^\s+{re.escape(flag)}\s+(.*?)(?=^\s+--|\Z)", output, re.M | re.S)
    assert match, flag
    return " ".join(match.group(1).split())


def test_the_no_switches_say_what_they_hide(pytester: pytest.Pytester) -> None:
    output = pytester.runpytest("--help").stdout.str()
    assert _help_of(output, "--energy-no-summary").startswith(
        "hide the energy summary table (reports are still written)")
    assert _help_of(output, "--energy-no-hints").startswith(
        "hide the right-sizing hints (the energy hints section)")


def test_the_header_shows_the_plugin_version(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([f"pytest-energy {__version__}"])


def test_the_command_prints_its_version() -> None:
    out = io.StringIO()
    assert main(["--version"], out=out) == 0
    assert out.getvalue() == f"pytest-energy {__version__}\n"


@pytest.mark.slow  # a subprocess: the real `python -m pytest_energy` entry point
def test_python_dash_m_prints_the_version() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_energy", "--version"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and done.stdout == f"pytest-energy {__version__}\n"


def test_the_command_help_lists_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version worked only as the first argument and --help did not list it."""
    assert main(["--help"]) == 0
    assert "--version" in capsys.readouterr().out
    assert main(["--storage", "x", "--version"]) == 0
    assert f"pytest-energy {__version__}" in capsys.readouterr().out
