"""Parsing and formatting of energies and durations.

Budgets are written by people, so they come as numbers or as strings with units
("150 mJ", "0.1 Wh", "300 us"). Parsing is strict: anything ambiguous is rejected
with a message that lists what is accepted, never guessed.
"""

from __future__ import annotations

import math
import re

from pytest_energy.errors import EnergyConfigError

# Joules per unit. Wh and kWh are accepted because energy labels (AI Energy Score,
# electricity prices) are written in them.
ENERGY_UNITS: dict[str, float] = {
    "nj": 1e-9,
    "uj": 1e-6,
    "µj": 1e-6,
    "mj": 1e-3,
    "j": 1.0,
    "kj": 1e3,
    "mwh": 3.6,
    "wh": 3600.0,
    "kwh": 3.6e6,
}
# Milliseconds per unit.
DURATION_UNITS: dict[str, float] = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "ms": 1.0,
    "s": 1e3,
    "min": 60e3,
}

# Compiled on first use: this module is imported by every pytest run.
_QUANTITY_PATTERN = r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Zµ]*)\s*$"

ENERGY_HELP = ('a number of joules or a string with a unit, e.g. 2.5, "150 mJ", "2.5 J", '
               '"1 kJ", "0.1 Wh"')
DURATION_HELP = ('a number of milliseconds or a string with a unit, e.g. 20, "300 us", "20 ms", '
                 '"1.5 s"')


def _parse_quantity(
    value: object, *, argument: str, units: dict[str, float], bare_unit: str, accepted: str
) -> float:
    """Parse ``value`` into the unit in which ``units`` are expressed.

    Numbers (not bools) are taken as already in ``bare_unit``. Strings need a number
    and, optionally, a unit from ``units`` (a bare number string means ``bare_unit``).
    The result must be finite and not negative.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected {accepted} (got {type(value).__name__})"
        )
    if isinstance(value, str):
        number = _parse_text(value, argument=argument, units=units, bare_unit=bare_unit,
                             accepted=accepted)
    else:
        number = float(value)
    _check_positive(number, value, argument=argument)
    return number


def _parse_text(value: str, *, argument: str, units: dict[str, float], bare_unit: str,
                accepted: str) -> float:
    """``"150 mJ"`` -> the number in the base unit of ``units``; unknown units named."""
    match = re.match(_QUANTITY_PATTERN, value)
    if not match:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected {accepted}")
    number_text, unit_text = match.groups()
    unit_key = unit_text.lower() if unit_text else bare_unit
    if unit_key not in units:
        known = ", ".join(sorted({u for u in units if u.isascii()}, key=units.__getitem__))
        raise EnergyConfigError(
            f"{argument}={value!r} has an unknown unit {unit_text!r}: use one of {known}"
        )
    return float(number_text) * units[unit_key]


def _check_positive(number: float, value: object, *, argument: str) -> None:
    """A budget is finite and greater than zero; each failure says which it broke."""
    if math.isnan(number) or math.isinf(number):
        raise EnergyConfigError(f"{argument}={value!r} is not valid: it must be a finite number")
    if number < 0:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: a budget cannot be negative")
    if number == 0:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: it must be greater than zero")


def parse_energy(value: object, *, argument: str = "joules") -> float:
    """Return joules from a number (J) or a string with an energy unit."""
    return _parse_quantity(
        value, argument=argument, units=ENERGY_UNITS, bare_unit="j", accepted=ENERGY_HELP
    )


def parse_duration_ms(value: object, *, argument: str = "latency_ms") -> float:
    """Return milliseconds from a number (ms) or a string with a time unit."""
    return _parse_quantity(
        value, argument=argument, units=DURATION_UNITS, bare_unit="ms", accepted=DURATION_HELP
    )


def parse_count(value: object, *, argument: str, minimum: int = 0) -> int:
    """Return an int >= ``minimum`` from an int or a digit string; bools and floats are refused."""
    if isinstance(value, str) and re.fullmatch(r"\+?[0-9]+", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a whole number >= {minimum}"
        )
    if value < minimum:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: it must be >= {minimum}")
    return value


def parse_items(value: object, *, argument: str = "items") -> float:
    """Items per call: a positive number (int for samples; float allowed for e.g. k-tokens)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a positive number of items per call"
        )
    if not math.isfinite(value) or value <= 0:
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a positive, finite number of items"
        )
    return value


def format_scaled(value: float, scales: list[tuple[float, str]], digits: int) -> str:
    """``value`` in the first unit of ``scales`` (largest first) it reaches; below the
    smallest, in the smallest."""
    for factor, unit in scales:
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {unit}"
    factor, unit = scales[-1]
    return f"{value / factor:.{digits}g} {unit}"


def format_energy(joules: float | None, digits: int = 3) -> str:
    """Human-readable energy: ``"2.5 J"``, ``"150 mJ"``; ``"n/a"`` for a missing value."""
    if joules is None:
        return "n/a"
    if joules == 0:
        return "0 J"
    return format_scaled(
        joules, [(1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ")], digits
    )


def format_duration_ms(ms: float | None, digits: int = 3) -> str:
    """Human-readable duration from milliseconds: ``"1.5 s"``, ``"20 ms"``, ``"300 us"``."""
    if ms is None:
        return "n/a"
    if ms == 0:
        return "0 ms"
    return format_scaled(ms, [(1e3, "s"), (1.0, "ms"), (1e-3, "us"), (1e-6, "ns")], digits)
