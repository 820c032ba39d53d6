"""Every setting of the plugin, and the one place where its value is resolved.

Precedence, for every setting: marker > command line > environment > ini > default.
Session-wide settings (which meter, where to write the JSON report...) have no marker
form. Each resolved value remembers where it came from, so an error can say
"ini energy_rounds" or "PYTEST_ENERGY_ROUNDS" instead of leaving the user to guess.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.units import parse_count, parse_duration_ms, parse_energy, parse_items

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


@dataclass(frozen=True)
class Setting:
    """One configurable value and every place it can come from."""

    name: str
    parse: Parser
    default: Any
    help: str
    cli: str | None = None
    env: str | None = None
    ini: str | None = None
    marker: bool = False
    flag: bool = False  # a CLI switch (store_true) instead of a valued option

    @property
    def dest(self) -> str:
        assert self.cli is not None
        return self.cli.lstrip("-").replace("-", "_")


def _setting(name: str, parse: Parser, default: Any, help: str, *, marker: bool = False,
             flag: bool = False, cli: str | None = None) -> Setting:
    return Setting(
        name=name,
        parse=parse,
        default=default,
        help=help,
        cli=cli or "--energy-" + name.replace("_", "-"),
        env="PYTEST_ENERGY_" + name.upper(),
        ini="energy_" + name,
        marker=marker,
        flag=flag,
    )


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
    _setting("max_time", lambda v, argument: parse_positive_seconds(v, argument=argument), 1.0,
             "measuring time per test when rounds is auto, in seconds or with a unit "
             "(default 1 s)", marker=True),
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
    _setting("require_hardware", lambda v, argument: parse_bool(v, argument=argument), False,
             "fail tests that cannot be measured by a hardware counter instead of skipping "
             "CUDA tests or falling back to estimates", flag=True),
    _setting("estimate_watts_per_core", lambda v, argument: parse_positive_watts(v, argument=argument),
             10.0, "power of one busy CPU core assumed by the estimate meter (default 10 W)"),
)

ALL_SETTINGS = PER_TEST_SETTINGS + SESSION_SETTINGS
SETTINGS_BY_NAME = {s.name: s for s in ALL_SETTINGS}

# Marker keywords: the budgets, plus every per-test setting.
BUDGET_KEYWORDS = ("joules", "latency_ms", "items", "group")
MARKER_KEYWORDS = BUDGET_KEYWORDS + tuple(s.name for s in PER_TEST_SETTINGS)
MARKER_HELP = (
    "energy_budget(joules=None, latency_ms=None, *, items=None, rounds=None, warmup=None, "
    "trials=None, device=None, group=None, latency_stat=None, max_time=None): measure the "
    "test's call with an energy meter and fail it when the median energy per call exceeds "
    '`joules` (J, or "150 mJ", "0.1 Wh") or the median latency per call exceeds `latency_ms` '
    '(ms, or "300 us", "1.5 s"). items = items processed per call (for J/item).'
)


@dataclass(frozen=True)
class Resolved:
    """A value and where it came from (for messages)."""

    value: Any
    source: str


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
    group = parser.getgroup("energy", "energy budgets (pytest-energy)")
    for setting in ALL_SETTINGS:
        assert setting.cli is not None and setting.ini is not None
        env_note = f" [env {setting.env}, ini {setting.ini}]"
        if setting.flag:
            group.addoption(setting.cli, action="store_true", default=None, dest=setting.dest,
                            help=setting.help + env_note)
        else:
            group.addoption(setting.cli, action="store", default=None, dest=setting.dest,
                            type=_cli_type(setting), metavar=setting.name.upper(),
                            help=setting.help + env_note)
        parser.addini(setting.ini, help=setting.help, type="string", default="")


def _cli_value(setting: Setting, config: pytest.Config) -> Any:
    value = config.getoption(setting.dest, default=None)
    if value is None:
        return None
    if setting.flag:
        # --energy-no-summary turns a default-true setting off; other flags turn on.
        return setting.cli is None or not setting.cli.startswith("--energy-no-")
    return value


def resolve_setting(setting: Setting, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> Resolved:
    """Resolve one setting from CLI > env > ini > default, validating env and ini values.

    Raises EnergyConfigError naming the source when a value is bad.
    """
    environ = os.environ if environ is None else environ
    cli = _cli_value(setting, config)
    if cli is not None:
        return Resolved(cli, setting.cli or "command line")
    if setting.env and environ.get(setting.env, "").strip():
        source = f"environment variable {setting.env}"
        return Resolved(_parse_from(setting, environ[setting.env], source), source)
    if setting.ini:
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


@dataclass(frozen=True)
class SessionConfig:
    """Settings resolved once per session; per-test defaults keep their source."""

    meter: str
    json_path: str | None
    summary: bool
    require_hardware: bool
    estimate_watts_per_core: float
    per_test_defaults: Mapping[str, Resolved] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> SessionConfig:
        """Resolve everything; a bad env or ini value raises EnergyConfigError (usage error)."""
        values = {s.name: resolve_setting(s, config, environ) for s in ALL_SETTINGS}
        return cls(
            meter=values["meter"].value,
            json_path=values["json"].value,
            summary=values["summary"].value,
            require_hardware=values["require_hardware"].value,
            estimate_watts_per_core=values["estimate_watts_per_core"].value,
            per_test_defaults={s.name: values[s.name] for s in PER_TEST_SETTINGS},
        )


@dataclass(frozen=True)
class ItemConfig:
    """What to measure for one test, and against which budgets. Built by ``from_item``."""

    nodeid: str
    marked: bool
    joules: float | None = None
    latency_ms: float | None = None
    items: float | None = None
    group: str | None = None
    rounds: int | None = None
    warmup: int = 1
    trials: int = 5
    device: str = "auto"
    latency_stat: str = "median"
    max_time: float = 1.0

    @property
    def has_budget(self) -> bool:
        return self.joules is not None or self.latency_ms is not None

    @classmethod
    def from_item(cls, item: pytest.Item, session: SessionConfig) -> ItemConfig:
        """Merge the item's energy_budget marker over the session's per-test defaults.

        Raises EnergyConfigError whose message names the test, the argument and what is
        accepted.
        """
        own = [m for m in getattr(item, "own_markers", []) if m.name == MARKER_NAME]
        if len(own) > 1:
            raise EnergyConfigError(
                f"{item.nodeid}: {len(own)} energy_budget markers on one test; "
                "merge them into one @pytest.mark.energy_budget(...)"
            )
        marker = item.get_closest_marker(MARKER_NAME)
        kwargs = _marker_kwargs(marker) if marker is not None else {}
        try:
            return cls.from_values(item.nodeid, marked=marker is not None, kwargs=kwargs,
                                   session=session)
        except EnergyConfigError as exc:
            raise EnergyConfigError(f"{item.nodeid}: energy_budget marker: {exc}") from None

    @classmethod
    def from_values(cls, nodeid: str, *, marked: bool, kwargs: Mapping[str, Any],
                    session: SessionConfig) -> ItemConfig:
        """Validate marker-style keyword values; ``None`` means "not given"."""
        unknown = [k for k in kwargs if k not in MARKER_KEYWORDS]
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, MARKER_KEYWORDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EnergyConfigError(
                f"unknown keyword argument {name!r}{hint}; accepted: {', '.join(MARKER_KEYWORDS)}"
            )
        given = {k: v for k, v in kwargs.items() if v is not None}
        values: dict[str, Any] = {}
        for setting in PER_TEST_SETTINGS:
            if setting.name in given:
                values[setting.name] = setting.parse(given[setting.name], argument=setting.name)
            else:
                values[setting.name] = session.per_test_defaults[setting.name].value
        group = given.get("group")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise EnergyConfigError(f"group={group!r} is not valid: expected a non-empty string")
        return cls(
            nodeid=nodeid,
            marked=marked,
            joules=parse_energy(given["joules"]) if "joules" in given else None,
            latency_ms=parse_duration_ms(given["latency_ms"]) if "latency_ms" in given else None,
            items=parse_items(given["items"]) if "items" in given else None,
            group=group,
            **values,
        )


def _marker_kwargs(marker: pytest.Mark) -> dict[str, Any]:
    """Map positional marker arguments onto (joules, latency_ms)."""
    if len(marker.args) > 2:
        raise EnergyConfigError(
            f"energy_budget takes at most 2 positional arguments (joules, latency_ms), got "
            f"{len(marker.args)}: {marker.args!r}; pass the others by keyword"
        )
    kwargs = dict(marker.kwargs)
    for name, value in zip(("joules", "latency_ms"), marker.args):
        if name in kwargs:
            raise EnergyConfigError(f"{name} given both by position and by keyword")
        kwargs[name] = value
    return kwargs
