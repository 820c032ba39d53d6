"""Property tests: the parsers either return a valid value or raise the documented
error type with a message; formatted values parse back to themselves."""

from __future__ import annotations

import contextlib
import math

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pytest_energy.errors import EnergyConfigError  # noqa: E402
from pytest_energy.options import SETTINGS  # noqa: E402
from pytest_energy.parsers import (  # noqa: E402
    parse_bool,
    parse_device,
    parse_latency_stat,
    parse_meter_spec,
)
from pytest_energy.units import (  # noqa: E402
    ENERGY_UNITS,
    format_duration_ms,
    format_energy,
    parse_count,
    parse_duration_ms,
    parse_energy,
)

FUZZ = settings(max_examples=300, deadline=None)
unit_like = st.sampled_from([*ENERGY_UNITS, "J", "kJ", "mJ", "Wh", "W", "s", "ms", "x", ""])
quantity_text = st.builds(
    lambda number, space, unit: f"{number}{space}{unit}",
    st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
              st.integers(-10**6, 10**6).map(str), st.text(max_size=6)),
    st.sampled_from(["", " ", "  "]),
    unit_like,
)
anything = st.one_of(st.text(max_size=20), quantity_text, st.floats(), st.integers(),
                     st.booleans(), st.none(), st.lists(st.integers(), max_size=2))


@FUZZ
@given(anything)
def test_parse_energy_total(value: object) -> None:
    try:
        joules = parse_energy(value)
    except EnergyConfigError as exc:
        assert str(exc).startswith("joules=")
    else:
        assert math.isfinite(joules) and joules > 0


@FUZZ
@given(anything)
def test_parse_duration_total(value: object) -> None:
    try:
        ms = parse_duration_ms(value)
    except EnergyConfigError as exc:
        assert str(exc).startswith("latency_ms=")
    else:
        assert math.isfinite(ms) and ms > 0


@pytest.mark.slow  # a property test of many examples: run with -m slow
@FUZZ
@given(anything)
def test_other_parsers_total(value: object) -> None:
    for parse in (parse_device, parse_latency_stat, parse_meter_spec):
        try:
            parse(value, argument="x")
        except EnergyConfigError as exc:
            assert str(exc).startswith("x=") or "x=" in str(exc)
    with contextlib.suppress(EnergyConfigError):
        assert isinstance(parse_bool(value, argument="x"), bool)
    with contextlib.suppress(EnergyConfigError):
        assert parse_count(value, argument="x", minimum=1) >= 1


@FUZZ
@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_energy_round_trip(joules: float) -> None:
    assert parse_energy(format_energy(joules, digits=17)) == pytest.approx(joules, rel=1e-12)


@FUZZ
@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_duration_round_trip(ms: float) -> None:
    assert parse_duration_ms(format_duration_ms(ms, digits=17)) == pytest.approx(ms, rel=1e-12)


@pytest.mark.slow  # a property test of many examples: run with -m slow
@FUZZ
@given(anything)
def test_every_option_row_parser_is_total(value: object) -> None:
    """Each row of the options table accepts a value or says, naming the argument, why not."""
    for setting in SETTINGS:
        try:
            setting.parse(value, argument="arg")
        except EnergyConfigError as exc:
            assert "arg=" in str(exc), (setting.name, str(exc))
