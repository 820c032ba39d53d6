"""Unit parsing and formatting."""

from __future__ import annotations

import math

import pytest

from pytest_energy.config import ItemConfig
from pytest_energy.errors import EnergyConfigError
from pytest_energy.options import (
    SETTINGS_BY_NAME,
    SessionConfig,
    resolve_setting,
    resolve_value,
)
from pytest_energy.parsers import parse_positive_seconds, parse_seconds_or_zero
from pytest_energy.units import (
    format_duration_ms,
    format_energy,
    parse_count,
    parse_duration_ms,
    parse_energy,
    parse_items,
)


@pytest.mark.parametrize(
    ("value", "joules"),
    [
        (2.5, 2.5), (3, 3.0), ("2.5", 2.5), ("150 mJ", 0.15), ("150mJ", 0.15), ("2.5 J", 2.5),
        ("1 kJ", 1000.0), ("0.1 Wh", 360.0), ("1 kWh", 3.6e6), ("5 uJ", 5e-6), ("5 µJ", 5e-6),
        ("1e-3 J", 1e-3), (" 7 j ", 7.0), ("2 mWh", 7.2), ("+4 J", 4.0), (".5 J", 0.5),
    ],
)
def test_parse_energy(value: object, joules: float) -> None:
    assert parse_energy(value) == pytest.approx(joules)


@pytest.mark.parametrize(
    ("value", "ms"),
    [(20, 20.0), ("300 us", 0.3), ("20 ms", 20.0), ("1.5 s", 1500.0), ("2 min", 120000.0),
     ("500 ns", 5e-4), ("12", 12.0)],
)
def test_parse_duration(value: object, ms: float) -> None:
    assert parse_duration_ms(value) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "expected a number of joules"),
        ("J", "expected a number of joules"),
        ("5 W", "unknown unit 'W': use one of nJ"),
        ("1 2 J", "expected a number of joules"),
        (-1, "cannot be negative"),
        ("-1 J", "cannot be negative"),
        (0, "must be greater than zero"),
        (math.nan, "must be a finite number"),
        (math.inf, "must be a finite number"),
        ("inf J", "expected a number of joules"),
        (True, "got bool"),
        ([1], "got list"),
        (None, "got NoneType"),
    ],
)
def test_parse_energy_rejects_with_teaching_message(value: object, message: str) -> None:
    with pytest.raises(EnergyConfigError) as excinfo:
        parse_energy(value)
    assert message.lower() in str(excinfo.value).lower()
    assert str(excinfo.value).startswith("joules=")


def test_duration_unit_error_lists_time_units() -> None:
    with pytest.raises(EnergyConfigError, match=r"unknown unit 'J': use one of ns, us, ms, s"):
        parse_duration_ms("5 J")


def test_count_and_items() -> None:
    assert parse_count("3", argument="rounds", minimum=1) == 3
    assert parse_count(0, argument="warmup") == 0
    for bad in (1.5, "1.5", True, -1, "x"):
        with pytest.raises(EnergyConfigError, match="rounds="):
            parse_count(bad, argument="rounds", minimum=0)
    assert parse_items(32) == 32 and parse_items(0.5) == 0.5
    for bad in (0, -3, math.nan, "8", False):
        with pytest.raises(EnergyConfigError, match="items="):
            parse_items(bad)


@pytest.mark.parametrize(
    ("joules", "text"),
    [(2.5, "2.5 J"), (0.15, "150 mJ"), (1500.0, "1.5 kJ"), (3.2e-6, "3.2 uJ"), (None, "n/a"),
     (0.0, "0 J"), (2e-10, "0.2 nJ")],
)
def test_format_energy(joules: float | None, text: str) -> None:
    assert format_energy(joules) == text


def test_format_duration_round_trips() -> None:
    for ms in (0.0004, 0.3, 20.0, 1500.0):
        assert parse_duration_ms(format_duration_ms(ms, digits=12)) == pytest.approx(ms)
    for joules in (2e-9, 3e-6, 0.15, 2.5, 1500.0):
        assert parse_energy(format_energy(joules, digits=12)) == pytest.approx(joules)


def test_count_rejects_unicode_digits_found_by_fuzzing() -> None:
    for text in ("²", "³", "1²"):
        with pytest.raises(EnergyConfigError, match="expected a whole number"):
            parse_count(text, argument="rounds")


# ----- duration options: a bare number means seconds everywhere (issue 14, item 21) ---------

DURATION_OPTIONS = {"read_timeout": "--energy-read-timeout", "max_time": "--energy-max-time",
                    "warmup_settle": "--energy-warmup-settle"}


@pytest.mark.parametrize(("value", "seconds"), [
    (5, 5.0), (2.5, 2.5), ("5", 5.0), (" 2 ", 2.0), ("1.5", 1.5), ("1e-1", 0.1),
    ("500 ms", 0.5), ("1.5 s", 1.5), ("2min", 120.0), ("300 us", 3e-4),
])
def test_duration_options_read_bare_numbers_as_seconds(value: object, seconds: float) -> None:
    for parse in (parse_positive_seconds, parse_seconds_or_zero):
        assert parse(value, argument="max_time") == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "message"), [
    ("0", "must be > 0"), ("-1", "must be > 0"), ("fast", "expected a number of seconds"),
    ("5 J", "unknown unit 'J'"), (True, "expected a number of seconds"),
    (math.inf, "finite"), ("nan", "expected a number of seconds"),
])
def test_duration_options_refuse_bad_values_naming_seconds(value: object, message: str) -> None:
    with pytest.raises(EnergyConfigError, match=f"max_time=.*{message}"):
        parse_positive_seconds(value, argument="max_time")


def test_zero_turns_the_settle_stage_off_and_negatives_are_refused() -> None:
    assert parse_seconds_or_zero("0", argument="warmup_settle") == 0.0
    with pytest.raises(EnergyConfigError, match=r"must be >= 0 \(0 turns it off\)"):
        parse_seconds_or_zero("-1 s", argument="warmup_settle")


@pytest.mark.parametrize("name", list(DURATION_OPTIONS))
def test_bare_numbers_are_seconds_from_the_command_line_environment_and_ini(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    setting = SETTINGS_BY_NAME[name]
    config = pytester.parseconfig(f"{DURATION_OPTIONS[name]}=2")
    assert resolve_setting(setting, config, environ={}).value == 2.0
    plain = pytester.parseconfig()
    assert resolve_setting(setting, plain, environ={setting.env: "2"}).value == 2.0
    assert resolve_value(setting, None, {}, "2").value == 2.0  # the ini value


def test_a_bare_number_string_in_the_marker_is_seconds(pytester: pytest.Pytester) -> None:
    session = SessionConfig.from_config(pytester.parseconfig(), environ={})
    config = ItemConfig.from_values("t", marked=True, kwargs={"max_time": "2"}, session=session)
    assert config.max_time == 2.0
