"""Every option of the plugin, and the one place where its value is resolved.

Precedence, for every setting: marker > command line > environment > ini > default.
Session-wide settings (which meter, where to write the JSON report...) have no marker
form. Each resolved value remembers where it came from, so an error can say
"ini energy_rounds" or "PYTEST_ENERGY_ROUNDS" instead of leaving the user to guess.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.units import parse_count, parse_duration_ms

MARKER_NAME = "energy_budget"
LATENCY_STATS = ("median", "p95")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_device(value: object, *, argument: str = "device") -> str:
    """Accept "auto", "cpu", "cuda" or "cuda:N" (N a CUDA index as the test sees it)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "cpu", "cuda"):
            return text
        if text.startswith("cuda:") and text[5:].isdigit():
            return f"cuda:{int(text[5:])}"
    raise EnergyConfigError(
        f'{argument}={value!r} is not valid: expected "auto", "cpu", "cuda" or "cuda:N"'
    )


def parse_latency_stat(value: object, *, argument: str = "latency_stat") -> str:
    """Which latency statistic a latency budget applies to."""
    if isinstance(value, str) and value.strip().lower() in LATENCY_STATS:
        return value.strip().lower()
    raise EnergyConfigError(f"{argument}={value!r} is not valid: expected one of {LATENCY_STATS}")


def parse_bool(value: object, *, argument: str) -> bool:
    """Booleans from ini files and environment variables ("1", "true", "no", ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise EnergyConfigError(f"{argument}={value!r} is not valid: expected true/false, 1/0, yes/no")


def parse_positive_seconds(value: object, *, argument: str) -> float:
    """A strictly positive duration in seconds (numbers are seconds; units accepted)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = f"{value} s"
    seconds = parse_duration_ms(value, argument=argument) / 1e3
    if seconds <= 0:
        raise EnergyConfigError(f"{argument}={value!r} is not valid: it must be > 0")
    return seconds


def parse_seconds_or_zero(value: object, *, argument: str) -> float:
    """A duration >= 0 in seconds (numbers are seconds; units accepted; 0 turns off)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = f"{value} s"
    if isinstance(value, str) and re.fullmatch(r"\s*0+(\.0*)?\s*(s|ms|us)?\s*", value):
        return 0.0
    try:
        return parse_positive_seconds(value, argument=argument)
    except EnergyConfigError as exc:
        if "negative" in str(exc):
            raise EnergyConfigError(
                f"{argument}={value!r} is not valid: it must be >= 0 (0 turns it off)"
            ) from None
        raise


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
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a fraction like 0.1 or a percentage "
            'like "10%"'
        )
    return fraction


def parse_choice(choices: tuple[str, ...]) -> Parser:
    def parse(value: object, *, argument: str) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected one of "
                                f"{', '.join(choices)}")
    return parse


def parse_positive_watts(value: object, *, argument: str) -> float:
    """A strictly positive power in watts."""
    try:
        watts = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        watts = float("nan")
    if not watts > 0 or watts == float("inf"):
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected watts > 0, e.g. 10")
    return watts


def parse_meter_spec(value: object, *, argument: str = "meter") -> str:
    """A meter name: auto, a built-in, an entry point name, or ``package.module:attr``."""
    if not isinstance(value, str) or not value.strip():
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected auto, nvml, rapl, estimate, "
            "an entry point name from group pytest_energy.meters, or package.module:attr"
        )
    text = value.strip()
    if ":" in text:
        module, _, attr = text.partition(":")
        if not module or not attr or not all(p.isidentifier() for p in module.split(".")) or (
            not all(p.isidentifier() for p in attr.split("."))
        ):
            raise EnergyConfigError(
                f"{argument}={value!r} is not valid: write package.module:attr, e.g. "
                "mymeters:PduMeter (attr is a class or a no-argument callable returning a Meter)"
            )
    return text


def parse_path(value: object, *, argument: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected a file path")
    return value.strip()


Parser = Callable[..., Any]


class Setting:
    """One configurable value and every place it can come from.

    A plain class, not a dataclass: this module is imported on every pytest run, even
    when no test is measured, so it avoids anything costly at import time.
    """

    __slots__ = ("cli", "default", "env", "flag", "help", "ini", "marker", "name", "parse")

    def __init__(self, name: str, parse: Parser, default: Any, help: str, *,
                 marker: bool = False, flag: bool = False, cli: str | None = None) -> None:
        self.name = name
        self.parse = parse
        self.default = default
        self.help = help
        self.cli: str = cli or "--energy-" + name.replace("_", "-")
        self.env: str = "PYTEST_ENERGY_" + name.upper()
        self.ini: str = "energy_" + name
        self.marker = marker
        self.flag = flag  # a CLI switch (store_true) instead of a valued option

    @property
    def dest(self) -> str:
        return self.cli.lstrip("-").replace("-", "_")


_setting = Setting


# Per-test settings: may also come from the marker.
PER_TEST_SETTINGS: tuple[Setting, ...] = (
    _setting("rounds", lambda v, argument: parse_count(v, argument=argument, minimum=1), None,
             "measured calls of the test body per test (default: auto, sized from the meter's "
             "update period and --energy-max-time)", marker=True),
    _setting("warmup", lambda v, argument: parse_count(v, argument=argument, minimum=0), 1,
             "unmeasured calls before measuring (default 1)", marker=True),
    _setting("trials", lambda v, argument: parse_count(v, argument=argument, minimum=1), 5,
             "measured windows per test; per-call energy is the median over them (default 5)",
             marker=True),
    _setting("device", parse_device, "auto",
             'device to measure: auto, cpu, cuda, cuda:N (default auto: cuda when NVML can read '
             "an energy counter, else cpu)", marker=True),
    _setting("latency_stat", parse_latency_stat, "median",
             "latency statistic the latency budget applies to: median or p95 (default median)",
             marker=True),
    _setting("max_time", lambda v, argument: parse_positive_seconds(v, argument=argument), None,
             "measuring time per test when rounds is auto, in seconds or with a unit "
             "(default: 1 s; 2 s for coarse stepped counters such as NVML's)", marker=True),
    _setting("max_cv", parse_fraction, 0.10,
             "spread (coefficient of variation of per-call energy across trials) above which "
             "a budget verdict within that spread is reported inconclusive instead of passing "
             'or failing on noise (default 10%; e.g. 0.05 or "5%")', marker=True),
)

# Session-wide settings.
SESSION_SETTINGS: tuple[Setting, ...] = (
    _setting("meter", parse_meter_spec, "auto",
             "energy meter: auto (nvml for CUDA, rapl where readable, else estimate), nvml, rapl, "
             "estimate, an entry point of group pytest_energy.meters, or package.module:attr"),
    _setting("json", lambda v, argument: parse_path(v, argument=argument), None,
             "write a JSON report of every measured test to this path (atomically)"),
    _setting("summary", lambda v, argument: parse_bool(v, argument=argument), True,
             "print the energy summary table (--energy-no-summary hides it)", flag=True,
             cli="--energy-no-summary"),
    _setting("all", lambda v, argument: parse_bool(v, argument=argument), False,
             "measure every test, marked or not, with the default plan (a one-off audit: each "
             "unmarked body then runs warm-up + measured times, and the run takes longer)",
             flag=True),
    _setting("require_hardware", lambda v, argument: parse_bool(v, argument=argument), False,
             "fail tests that cannot be measured by a hardware counter instead of skipping "
             "CUDA tests or falling back to estimates", flag=True),
    _setting("contention", parse_choice(("warn", "fail")), "warn",
             "what an over-budget result measured while other processes used the same GPU "
             "does: warn (default: reported, the test does not fail) or fail"),
    _setting("idle_baseline", lambda v, argument: parse_bool(v, argument=argument), True,
             "measure each hardware meter's idle power once per session, to report dynamic "
             "energy (gross minus idle) beside gross energy (default true)"),
    _setting("warmup_settle", lambda v, argument: parse_seconds_or_zero(v, argument=argument),
             1.0, "after the warm-up calls, keep running the code until the device's power "
             "stops rising (hardware meters, auto rounds), at most this long, in seconds or "
             "with a unit; 0 turns it off (default 1 s)"),
    _setting("read_timeout", lambda v, argument: parse_positive_seconds(v, argument=argument),
             10.0, "longest wait for one meter read before the meter counts as hung, in "
             "seconds or with a unit (default 10 s)"),
    _setting("estimate_watts_per_core",
             lambda v, argument: parse_positive_watts(v, argument=argument), 10.0,
             "power of one busy CPU core assumed by the estimate meter (default 10 W)"),
)

ALL_SETTINGS = PER_TEST_SETTINGS + SESSION_SETTINGS
SETTINGS_BY_NAME = {s.name: s for s in ALL_SETTINGS}

# Marker keywords: the budgets, plus every per-test setting.
BUDGET_KEYWORDS = ("joules", "latency_ms", "items", "joules_per_item", "group", "default",
                   "dynamic", "sync")
MARKER_KEYWORDS = BUDGET_KEYWORDS + tuple(s.name for s in PER_TEST_SETTINGS)
MARKER_HELP = (
    "energy_budget(joules=None, latency_ms=None, *, items=None, joules_per_item=None, "
    "rounds=None, warmup=None, trials=None, device=None, group=None, default=False, "
    "latency_stat=None, max_time=None, max_cv=None, dynamic=False, sync=None): measure the "
    "test's call with an energy meter and fail it when the median energy per call exceeds "
    '`joules` (J, or "150 mJ", "0.1 Wh") or the median latency per call exceeds `latency_ms` '
    '(ms, or "300 us", "1.5 s"). items = items processed per call (for J/item and the '
    "joules_per_item budget); group = rating group (default: the test function's name); "
    "default=True marks the variant in use today, for the right-sizing table; "
    "dynamic=True applies the joules budgets to energy above the idle baseline; sync = a "
    "callable that waits for asynchronous device work (torch and CuPy are synced "
    "automatically)."
)


class Resolved:
    """A value and where it came from (for messages)."""

    __slots__ = ("source", "value")

    def __init__(self, value: Any, source: str) -> None:
        self.value = value
        self.source = source

    def __repr__(self) -> str:
        return f"Resolved({self.value!r}, {self.source!r})"


def _cli_type(setting: Setting) -> Callable[[str], Any]:
    """Wrap a parser for argparse so a bad value is a usage error that teaches."""

    def convert(text: str) -> Any:
        try:
            return setting.parse(text, argument=setting.cli)
        except EnergyConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = setting.name
    return convert


def add_options(parser: pytest.Parser) -> None:
    """Register every CLI option and ini key (called from pytest_addoption)."""
    add_settings(parser, ALL_SETTINGS)


def add_settings(parser: pytest.Parser, settings: tuple[Setting, ...]) -> None:
    """Register settings as CLI options (group "energy") and ini keys."""
    group = parser.getgroup("energy", "energy budgets (pytest-energy)")
    for setting in settings:
        # argparse formats help with %: a literal percent sign must be doubled
        help_text = setting.help.replace("%", "%%") + f" [env {setting.env}, ini {setting.ini}]"
        if setting.flag:
            group.addoption(setting.cli, action="store_true", default=None, dest=setting.dest,
                            help=help_text)
        else:
            group.addoption(setting.cli, action="store", default=None, dest=setting.dest,
                            type=_cli_type(setting), metavar=setting.name.upper(),
                            help=help_text)
        parser.addini(setting.ini, help=setting.help, type="string", default="")


def _cli_value(setting: Setting, config: pytest.Config) -> Any:
    value = config.getoption(setting.dest, default=None)
    if value is None:
        return None
    if setting.flag:
        # --energy-no-summary turns a default-true setting off; other flags turn on.
        return not setting.cli.startswith("--energy-no-")
    return value


def resolve_setting(setting: Setting, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> Resolved:
    """Resolve one setting from CLI > env > ini > default, validating env and ini values.

    Raises EnergyConfigError naming the source when a value is bad.
    """
    environ = os.environ if environ is None else environ
    cli = _cli_value(setting, config)
    if cli is not None:
        return Resolved(cli, setting.cli)
    if environ.get(setting.env, "").strip():
        source = f"environment variable {setting.env}"
        return Resolved(_parse_from(setting, environ[setting.env], source), source)
    raw = config.getini(setting.ini)
    if isinstance(raw, str) and raw.strip():
        source = f"ini option {setting.ini}"
        return Resolved(_parse_from(setting, raw, source), source)
    return Resolved(setting.default, "default")


def _parse_from(setting: Setting, raw: str, source: str) -> Any:
    try:
        return setting.parse(raw.strip(), argument=setting.name)
    except EnergyConfigError as exc:
        raise EnergyConfigError(f"{source}: {exc}") from None


class SessionConfig:
    """Settings resolved once per session; per-test defaults keep their source."""

    def __init__(self, values: Mapping[str, Resolved]) -> None:
        self.meter: str = values["meter"].value
        self.json_path: str | None = values["json"].value
        self.summary: bool = values["summary"].value
        self.require_hardware: bool = values["require_hardware"].value
        self.measure_all: bool = values["all"].value
        self.read_timeout: float = values["read_timeout"].value
        self.contention: str = values["contention"].value
        self.idle_baseline: bool = values["idle_baseline"].value
        self.warmup_settle: float = values["warmup_settle"].value
        self.estimate_watts_per_core: float = values["estimate_watts_per_core"].value
        self.per_test_defaults: dict[str, Resolved] = {
            s.name: values[s.name] for s in PER_TEST_SETTINGS}

    @classmethod
    def from_config(cls, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> SessionConfig:
        """Resolve everything; a bad env or ini value raises EnergyConfigError (usage error)."""
        return cls({s.name: resolve_setting(s, config, environ) for s in ALL_SETTINGS})


