"""Right-sizing options (carbon intensity, price, rating rule, hints).

Kept apart from :mod:`pytest_energy.rightsizing` so that registering and validating
them costs next to nothing on a run that measures nothing: this module only defines
parsers and :class:`~pytest_energy.options.Setting` objects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.options import Setting, add_settings, parse_bool

RATING_RULE_AUTO = "auto"
RATING_RULE_BUDGET = "budget"
RATING_RULE_GROUP = "group"
RATING_RULES = (RATING_RULE_AUTO, RATING_RULE_BUDGET, RATING_RULE_GROUP)

_CARBON_UNITS = ("g/kwh", "gco2/kwh", "gco2e/kwh", "gco2eq/kwh")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"


def _number_with_unit(value: object, *, argument: str, units: Sequence[str],
                      accepted: str) -> float:
    """A finite float from a number or a string, optionally followed by one of ``units``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected {accepted}")
    if isinstance(value, str):
        match = re.fullmatch(rf"\s*({_NUMBER})\s*(\S*)\s*", value)
        unit = match.group(2).lower() if match else ""
        if match is None or (unit and unit not in units):
            raise EnergyConfigError(f"{argument}={value!r} is not valid: expected {accepted}")
        number = float(match.group(1))
    else:
        number = float(value)
    if not math.isfinite(number):
        raise EnergyConfigError(f"{argument}={value!r} is not valid: it must be a finite number")
    return number


def parse_carbon_intensity(value: object, *, argument: str = "carbon_intensity") -> float:
    """Grid carbon intensity in gCO2e per kWh (> 0), e.g. ``400`` or ``"400 gCO2e/kWh"``.

    Given by the user, never looked up: a test run must not depend on the network, and
    the right number is the one for where the model will run, not where CI runs.
    """
    accepted = 'gCO2e per kWh > 0, e.g. 400 or "400 gCO2e/kWh"'
    number = _number_with_unit(value, argument=argument, units=_CARBON_UNITS, accepted=accepted)
    if number <= 0:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: it must be > 0")
    return number


def parse_price(value: object, *, argument: str = "price") -> float:
    """Electricity price per kWh (>= 0), e.g. ``0.30`` or ``"0.30/kWh"``; 0 is allowed."""
    accepted = 'a price per kWh >= 0, e.g. 0.30 or "0.30/kWh" (currency: --energy-currency)'
    number = _number_with_unit(value, argument=argument, units=("/kwh",), accepted=accepted)
    if number < 0:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: a price cannot be negative")
    return number


def parse_currency(value: object, *, argument: str = "currency") -> str:
    """A short currency label printed after costs (``EUR``, ``$``); may be empty."""
    if not isinstance(value, str):
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected a short label")
    text = value.strip()
    if len(text) > 8 or not text.isprintable() or any(c.isspace() for c in text):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a label of at most 8 characters "
            "without spaces, e.g. EUR or $")
    return text


def parse_rating_rule(value: object, *, argument: str = "rating_rule") -> str:
    """``auto``, ``budget`` or ``group`` (see :func:`apply_ratings`)."""
    if isinstance(value, str) and value.strip().lower() in RATING_RULES:
        return value.strip().lower()
    raise EnergyConfigError(
        f"{argument}={value!r} is not valid: expected one of {', '.join(RATING_RULES)}")


RIGHTSIZING_SETTINGS: tuple[Setting, ...] = (
    Setting("carbon_intensity", parse_carbon_intensity, None,
            "grid carbon intensity in gCO2e/kWh: adds gCO2e per call, per 1,000 items and "
            "for the whole run to the summary and reports (no network look-ups)"),
    Setting("price", parse_price, None,
            "electricity price per kWh (>= 0): adds the cost per call, per 1,000 items and "
            "for the whole run"),
    Setting("currency", parse_currency, "",
            "label printed after costs, e.g. EUR (default: none)"),
    Setting("rating_rule", parse_rating_rule, RATING_RULE_AUTO,
            "star rating rule: auto (default: AI Energy Score rule within groups of two or "
            "more tests, budget use for lone tests), budget (always budget use) or group "
            "(only within groups; lone tests unrated)"),
    Setting("hints", lambda v, argument: parse_bool(v, argument=argument), True,
            "print right-sizing hints at the end of the run (--energy-no-hints hides them)",
            flag=True, cli="--energy-no-hints"),
)


def add_rightsizing_options(parser: pytest.Parser) -> None:
    """Register the right-sizing CLI options and ini keys (call from ``pytest_addoption``).

    Same scheme as :func:`pytest_energy.options.add_options`: ``--energy-NAME``, env
    ``PYTEST_ENERGY_NAME``, ini ``energy_NAME``; a bad command-line value is an argparse
    usage error naming the option.
    """
    add_settings(parser, RIGHTSIZING_SETTINGS)


