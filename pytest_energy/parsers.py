"""The value parsers behind every option in :mod:`pytest_energy.options`.

Each parser takes the raw value (a marker argument, a command-line string, an
environment variable or an ini value) and the ``argument`` it came from, and either
returns the normalised value or raises :class:`EnergyConfigError` with a message that
names the argument, repeats the value and says what is accepted. The caller adds the
source ("ini option energy_rounds", "environment variable ...") in front.

They live apart from the options table so the table stays one screen of rows. This
module is imported by every pytest run (through the plugin's options), so it only
imports :mod:`pytest_energy.units` and :mod:`pytest_energy.errors`; the history
parsers reach :mod:`pytest_energy.history.metrics` and :mod:`pytest_energy.history.runs`
through the one lazy seam, :func:`_history`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pytest_energy.errors import EnergyConfigError
from pytest_energy.units import DURATION_UNITS, parse_count

if TYPE_CHECKING:
    from pytest_energy.history.metrics import Threshold

Parser = Callable[..., Any]

LATENCY_STATS = ("median", "p95")
RATING_RULE_AUTO = "auto"
RATING_RULE_BUDGET = "budget"
RATING_RULE_GROUP = "group"
RATING_RULES = (RATING_RULE_AUTO, RATING_RULE_BUDGET, RATING_RULE_GROUP)
PRINT_ONLY = "-"  # --energy-suggest-budgets without a path: print, write nothing

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_OFF = {"0", "false", "no", "off"}  # gate values that turn a feature off ("" is unset)
_CARBON_UNITS = ("g/kwh", "gco2/kwh", "gco2e/kwh", "gco2eq/kwh")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"


def _invalid(argument: str, value: object, expected: str) -> EnergyConfigError:
    """The common message shape: what was given, where, and what is accepted."""
    return EnergyConfigError(f"{argument}={value!r} is not valid: {expected}")


# ----- per-test settings ---------------------------------------------------------------------


def parse_rounds(value: object, *, argument: str) -> int:
    """Measured calls per window: a count >= 1."""
    return parse_count(value, argument=argument, minimum=1)


def parse_warmup(value: object, *, argument: str) -> int:
    """Unmeasured calls before measuring: a count >= 0."""
    return parse_count(value, argument=argument, minimum=0)


def parse_device(value: object, *, argument: str = "device") -> str:
    """Accept "auto", "cpu", "cuda" or "cuda:N" (N a CUDA index as the test sees it)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "cpu", "cuda"):
            return text
        if text.startswith("cuda:") and text[5:].isdigit():
            return f"cuda:{int(text[5:])}"
    raise _invalid(argument, value, 'expected "auto", "cpu", "cuda" or "cuda:N"')


def parse_latency_stat(value: object, *, argument: str = "latency_stat") -> str:
    """Which latency statistic a latency budget applies to."""
    if isinstance(value, str) and value.strip().lower() in LATENCY_STATS:
        return value.strip().lower()
    raise _invalid(argument, value, f"expected one of {LATENCY_STATS}")


SECONDS_HELP = 'a number of seconds or a string with a unit, e.g. 2, "1.5 s", "500 ms"'


def _seconds(value: object, *, argument: str) -> float:
    """A finite duration in seconds. A bare number means seconds whether it comes from
    a marker (``2``), the command line, the environment or an ini file (``"2"``), as
    the help says; a string may carry a unit (``"500 ms"``, ``"1.5 s"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _invalid(argument, value, f"expected {SECONDS_HELP}")
    if isinstance(value, str):
        match = re.fullmatch(rf"\s*({_NUMBER})\s*([a-zA-Zµ]*)\s*", value)
        if match is None:
            raise _invalid(argument, value, f"expected {SECONDS_HELP}")
        unit = match.group(2).lower() or "s"
        if unit not in DURATION_UNITS:
            raise _invalid(argument, value,
                           f"unknown unit {match.group(2)!r}: use one of ns, us, ms, s, min")
        seconds = float(match.group(1)) * DURATION_UNITS[unit] / 1e3
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise _invalid(argument, value, "it must be a finite number")
    return seconds


def parse_positive_seconds(value: object, *, argument: str) -> float:
    """A strictly positive duration in seconds (bare numbers are seconds; units accepted)."""
    seconds = _seconds(value, argument=argument)
    if seconds <= 0:
        raise _invalid(argument, value, "it must be > 0")
    return seconds


def parse_seconds_or_zero(value: object, *, argument: str) -> float:
    """A duration >= 0 in seconds (bare numbers are seconds; units accepted; 0 turns off)."""
    seconds = _seconds(value, argument=argument)
    if seconds < 0:
        raise _invalid(argument, value, "it must be >= 0 (0 turns it off)")
    return seconds


def parse_fraction(value: object, *, argument: str) -> float:
    """A fraction in (0, 10]: ``0.1`` or ``"10%"``."""
    text = value.strip() if isinstance(value, str) else value
    try:
        if isinstance(text, str) and text.endswith("%"):
            fraction = float(text[:-1]) / 100
        elif isinstance(text, bool):
            raise TypeError
        else:
            fraction = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0 < fraction <= 10:
        raise _invalid(argument, value,
                       'expected a fraction like 0.1 or a percentage like "10%"')
    return fraction


# ----- session settings ----------------------------------------------------------------------


def parse_bool(value: object, *, argument: str) -> bool:
    """Booleans from ini files and environment variables ("1", "true", "no", ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _invalid(argument, value, "expected true/false, 1/0, yes/no")


def parse_choice(choices: tuple[str, ...]) -> Parser:
    """A parser accepting one of ``choices`` (case-insensitive)."""

    def parse(value: object, *, argument: str) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _invalid(argument, value, f"expected one of {', '.join(choices)}")

    return parse


def parse_positive_watts(value: object, *, argument: str) -> float:
    """A strictly positive power in watts."""
    try:
        watts = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        watts = float("nan")
    if not watts > 0 or watts == float("inf"):
        raise _invalid(argument, value, "expected watts > 0, e.g. 10")
    return watts


def _is_dotted_name(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def parse_meter_spec(value: object, *, argument: str = "meter") -> str:
    """A meter name: auto, a built-in, an entry point name, or ``package.module:attr``."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid(argument, value,
                       "expected auto, nvml, rapl, estimate, an entry point name from group "
                       "pytest_energy.meters, or package.module:attr")
    text = value.strip()
    module, colon, attr = text.partition(":")
    if colon and not (module and attr and _is_dotted_name(module) and _is_dotted_name(attr)):
        raise _invalid(argument, value,
                       "write package.module:attr, e.g. mymeters:PduMeter (attr is a class or "
                       "a no-argument callable returning a Meter)")
    return text


def parse_path(value: object, *, argument: str) -> str:
    """A non-empty file or directory path (not checked for existence: it may be written)."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid(argument, value, "expected a file path")
    return value.strip()


# ----- right-sizing settings -----------------------------------------------------------------


def _number_with_unit(value: object, *, argument: str, units: Sequence[str],
                      accepted: str) -> float:
    """A finite float from a number or a string, optionally followed by one of ``units``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _invalid(argument, value, f"expected {accepted}")
    if isinstance(value, str):
        match = re.fullmatch(rf"\s*({_NUMBER})\s*(\S*)\s*", value)
        unit = match.group(2).lower() if match else ""
        if match is None or (unit and unit not in units):
            raise _invalid(argument, value, f"expected {accepted}")
        number = float(match.group(1))
    else:
        number = float(value)
    if not math.isfinite(number):
        raise _invalid(argument, value, "it must be a finite number")
    return number


def parse_carbon_intensity(value: object, *, argument: str = "carbon_intensity") -> float:
    """Grid carbon intensity in gCO2e per kWh (> 0), e.g. ``400`` or ``"400 gCO2e/kWh"``.

    Given by the user, never looked up: a test run must not depend on the network, and
    the right number is the one for where the model will run, not where CI runs.
    """
    accepted = 'gCO2e per kWh > 0, e.g. 400 or "400 gCO2e/kWh"'
    number = _number_with_unit(value, argument=argument, units=_CARBON_UNITS, accepted=accepted)
    if number <= 0:
        raise _invalid(argument, value, "it must be > 0")
    return number


def parse_price(value: object, *, argument: str = "price") -> float:
    """Electricity price per kWh (>= 0), e.g. ``0.30`` or ``"0.30/kWh"``; 0 is allowed."""
    accepted = 'a price per kWh >= 0, e.g. 0.30 or "0.30/kWh" (currency: --energy-currency)'
    number = _number_with_unit(value, argument=argument, units=("/kwh",), accepted=accepted)
    if number < 0:
        raise _invalid(argument, value, "a price cannot be negative")
    return number


def parse_currency(value: object, *, argument: str = "currency") -> str:
    """A short currency label printed after costs (``EUR``, ``$``); may be empty."""
    if not isinstance(value, str):
        raise _invalid(argument, value, "expected a short label")
    text = value.strip()
    if len(text) > 8 or not text.isprintable() or any(c.isspace() for c in text):
        raise _invalid(argument, value,
                       "expected a label of at most 8 characters without spaces, e.g. EUR or $")
    return text


def parse_rating_rule(value: object, *, argument: str = "rating_rule") -> str:
    """``auto``, ``budget`` or ``group`` (see :func:`pytest_energy.rightsizing.apply_ratings`)."""
    if isinstance(value, str) and value.strip().lower() in RATING_RULES:
        return value.strip().lower()
    raise _invalid(argument, value, f"expected one of {', '.join(RATING_RULES)}")


# ----- regression-gate settings --------------------------------------------------------------


def _history() -> tuple[ModuleType, ModuleType]:
    """The one lazy seam: the history's metrics and runs modules, imported on first use.

    Their value parsers live beside the code that gives the values meaning (thresholds,
    run references). Importing them at the top would add their dataclasses to every
    pytest run, including runs that measure nothing and never parse a gate option.
    """
    from pytest_energy.history import metrics, runs

    return metrics, runs


def parse_thresholds(value: object, *, argument: str) -> tuple[Threshold, ...]:
    """``--energy-compare-fail``: ``METRIC:N%`` or ``METRIC:+X`` terms, or ``none``."""
    metrics, _ = _history()
    thresholds: tuple[Threshold, ...] = metrics.parse_compare_fail(value, argument=argument)
    return thresholds


def parse_baseline_runs(value: object, *, argument: str) -> int:
    """``--energy-baseline-runs``: how many saved runs form the baseline (1-1000)."""
    runs = parse_count(value, argument=argument, minimum=1)
    if runs > 1000:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: at most 1000 runs")
    return runs


def parse_alpha(value: object, *, argument: str) -> float:
    """``--energy-compare-alpha``: the significance level of the compare test."""
    metrics, _ = _history()
    return float(metrics.parse_alpha(value, argument=argument))


def parse_save(value: object, *, argument: str) -> str:
    """``--energy-save``: a run name (letters, digits, '.', '_', '-')."""
    _, runs = _history()
    return str(runs.parse_save_name(value, argument=argument))


def _looks_like_test_path(text: str) -> bool:
    """``pytest --energy-compare tests/`` hands the path to the optional value."""
    text = text.strip()
    return (text.endswith(".py") or "::" in text or "/" in text or os.sep in text
            or os.path.exists(text))


def parse_compare(value: object, *, argument: str) -> str | None:
    """``latest`` (also: true/1/yes), a run id or name; false/0/no/off turn it off."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _OFF:
        return None
    if text in _TRUE:
        return "latest"
    if isinstance(value, str) and _looks_like_test_path(value):
        raise EnergyConfigError(
            f"{argument}={value!r} looks like a test path, not a stored run: write "
            "--energy-compare=NAME (with '=') for a named baseline, or put --energy-compare "
            "after the test paths")
    _, runs = _history()
    return str(runs.parse_run_ref(value, argument=argument))


def _looks_like_test_target(text: str) -> bool:
    """``pytest --energy-suggest-budgets tests/`` hands the path to the optional value."""
    text = text.strip()
    return text.endswith(".py") or "::" in text or os.path.isdir(text)


def parse_suggest(value: object, *, argument: str) -> str | None:
    """``-`` (also: true/1/yes) prints the suggestions; a path also writes them there."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _OFF:
        return None
    if text in _TRUE | {PRINT_ONLY}:
        return PRINT_ONLY
    if isinstance(value, str) and _looks_like_test_target(value):
        raise EnergyConfigError(
            f"{argument}={value!r} looks like a test path, not a file to write: write "
            "--energy-suggest-budgets=PATH (with '='), or put --energy-suggest-budgets after "
            "the test paths")
    return parse_path(value, argument=argument)


def parse_margin(value: object, *, argument: str) -> float:
    """Headroom of a suggested budget over the observed p95: a number in [1, 100]."""
    try:
        margin = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        margin = float("nan")
    if isinstance(value, bool) or not (1.0 <= margin <= 100.0):
        raise _invalid(argument, value,
                       "expected a factor >= 1, e.g. 1.2 (20% above the observed p95)")
    return margin
