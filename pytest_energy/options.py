"""Every option of pytest-energy, one row each, and the one place a value is resolved.

The table :data:`SETTINGS` is the single definition: the plugin registers it with
pytest (:func:`add_options`), the ``pytest-energy`` CLI builds its mirrored options
from the same rows (:func:`add_cli_argument`), and ``docs/options.md`` is generated
from it (``tools/gen_options_doc.py``), so the three cannot disagree.

Precedence: marker (per-test settings only) > command line > environment > ini >
default. Each resolved value remembers where it came from, so an error can say "ini
option energy_rounds" instead of leaving the user to guess. Every pytest run imports
this module, so it imports only the parsers (no storage, compare, meters or tabulate).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pytest

from pytest_energy import parsers  # the value parsers of the rows: parsers.parse_*
from pytest_energy.errors import EnergyConfigError
from pytest_energy.parsers import PRINT_ONLY, RATING_RULE_AUTO, Parser
from pytest_energy.report.columns import parse_columns

MARKER_NAME = "energy_budget"
PER_TEST, SESSION, RIGHTSIZING, GATE = "per-test", "session", "right-sizing", "regression gate"
AREAS = (PER_TEST, SESSION, RIGHTSIZING, GATE)
_GROUP = ("energy", "energy budgets (pytest-energy)")


class Setting:
    """One option: its parser, where it can come from, and how it is registered.

    ``cli``, ``env`` and ``ini`` follow one scheme (``--energy-NAME``,
    ``PYTEST_ENERGY_NAME``, ``energy_NAME``) unless ``cli`` is given (the ``--energy-no-``
    switches). ``flag`` makes a store-true switch; ``const`` makes the value optional
    (``--energy-compare`` alone means ``latest``). A plain class, not a dataclass:
    this module is imported on every pytest run, so it avoids anything costly.
    """

    __slots__ = ("area", "cli", "const", "default", "env", "flag", "help", "ini", "marker",
                 "metavar", "name", "parse")

    def __init__(self, area: str, name: str, parse: Parser, default: Any, help: str, *,
                 marker: bool = False, flag: bool = False, cli: str | None = None,
                 metavar: str | None = None, const: str | None = None) -> None:
        self.area = area
        self.name = name
        self.parse = parse
        self.default = default
        self.help = help
        self.cli: str = cli or "--energy-" + name.replace("_", "-")
        self.env: str = "PYTEST_ENERGY_" + name.upper()
        self.ini: str = "energy_" + name
        self.marker = marker
        self.flag = flag
        self.metavar: str = metavar or name.upper()
        self.const = const

    @property
    def dest(self) -> str:
        return self.cli.lstrip("-").replace("-", "_")

    def __repr__(self) -> str:
        return f"Setting({self.name!r}, area={self.area!r})"


_S = Setting

SETTINGS: tuple[Setting, ...] = (
    # ----- per-test: also a keyword of the energy_budget marker ----------------------------
    _S(PER_TEST, "rounds", parsers.parse_rounds, None,
       "measured calls of the test body per test (default: auto, sized from the meter's "
       "update period and --energy-max-time)", marker=True),
    _S(PER_TEST, "warmup", parsers.parse_warmup, 1,
       "unmeasured calls before measuring (default 1)", marker=True),
    _S(PER_TEST, "trials", parsers.parse_rounds, 5,
       "measured windows per test; per-call energy is the median over them (default 5)",
       marker=True),
    _S(PER_TEST, "device", parsers.parse_device, "auto",
       'device to measure: auto, cpu, cuda, cuda:N (default auto: cuda when NVML can read '
       "an energy counter, else cpu)", marker=True),
    _S(PER_TEST, "latency_stat", parsers.parse_latency_stat, "median",
       "latency statistic the latency budget applies to: median or p95 (default median)",
       marker=True),
    _S(PER_TEST, "max_time", parsers.parse_positive_seconds, None,
       "measuring time per test when rounds is auto, in seconds or with a unit "
       "(default: 1 s; 2 s for coarse stepped counters such as NVML's)", marker=True),
    _S(PER_TEST, "max_cv", parsers.parse_fraction, 0.10,
       "spread (coefficient of variation of per-call energy across trials) above which "
       "a budget verdict within that spread is reported inconclusive instead of passing "
       'or failing on noise (default 10%; e.g. 0.05 or "5%")', marker=True),
    # ----- session ---------------------------------------------------------------------------
    _S(SESSION, "meter", parsers.parse_meter_spec, "auto",
       "energy meter: auto (nvml for CUDA, rapl where readable, else estimate), nvml, rapl, "
       "estimate, an entry point of group pytest_energy.meters, or package.module:attr"),
    _S(SESSION, "json", parsers.parse_path, None,
       "write a JSON report of every measured test to this path (atomically)"),
    _S(SESSION, "html", parsers.parse_path, None,
       "write a self-contained HTML report (sortable summary, right-sizing charts, trends "
       "from the history, the gate's verdict; loads nothing from the network) to this "
       "path (atomically)"),
    _S(SESSION, "summary", parsers.parse_bool, True,
       "hide the energy summary table (reports are still written); env/ini: false hides "
       "it, true (default) shows it", flag=True, cli="--energy-no-summary"),
    _S(SESSION, "columns", parse_columns, None,
       "summary columns: all (the full table, as with -v) or a comma-separated list of "
       "energy, per_item, latency, p95, calls, budget, rating, per_1k_items, rated_by, "
       "meter, verdict (default: a compact set that fits the terminal's width)",
       metavar="LIST"),
    _S(SESSION, "all", parsers.parse_bool, False,
       "measure every test, marked or not, with the default plan (a one-off audit: each "
       "unmarked body then runs warm-up + measured times, and the run takes longer)",
       flag=True),
    _S(SESSION, "disable", parsers.parse_bool, False,
       "measure nothing: each body, energy(fn) and energy.measure() block runs once, results "
       "are None, nothing is reported or saved; unlike -p no:energy, options, marker and "
       "fixture stay registered", flag=True),
    _S(SESSION, "require_hardware", parsers.parse_bool, False,
       "fail tests that cannot be measured by a hardware counter instead of skipping "
       "CUDA tests or falling back to estimates", flag=True),
    _S(SESSION, "contention", parsers.parse_choice(("warn", "fail")), "warn",
       "what an over-budget result measured while other processes used the same GPU, "
       "or while the machine was busy (other processes' CPU time, steal), does: warn "
       "(default: reported as inconclusive, the test does not fail) or fail"),
    _S(SESSION, "idle_baseline", parsers.parse_bool, True,
       "measure each hardware meter's idle power once per session, to report dynamic "
       "energy (gross minus idle) beside gross energy (default true)"),
    _S(SESSION, "warmup_settle", parsers.parse_seconds_or_zero, 1.0,
       "after the warm-up calls, keep running the code until the device's power "
       "stops rising (hardware meters, auto rounds), at most this long, in seconds or "
       "with a unit; 0 turns it off (default 1 s)"),
    _S(SESSION, "read_timeout", parsers.parse_positive_seconds, 10.0,
       "longest wait for one meter read before the meter counts as hung, in "
       "seconds or with a unit (default 10 s)"),
    _S(SESSION, "lock_timeout", parsers.parse_positive_seconds, 600.0, "longest wait for another "
       "measurement of the same device to end, in seconds or with a unit (default 10 min)"),
    _S(SESSION, "estimate_watts_per_core", parsers.parse_positive_watts, 10.0,
       "power of one busy CPU core assumed by the estimate meter (default 10 W)"),
    # ----- right-sizing ------------------------------------------------------------------------
    _S(RIGHTSIZING, "carbon_intensity", parsers.parse_carbon_intensity, None,
       "grid carbon intensity in gCO2e/kWh: adds gCO2e per call, per 1,000 items and "
       "for the whole run to the summary and reports (no network look-ups)"),
    _S(RIGHTSIZING, "price", parsers.parse_price, None,
       "electricity price per kWh (>= 0): adds the cost per call, per 1,000 items and "
       "for the whole run"),
    _S(RIGHTSIZING, "currency", parsers.parse_currency, "",
       "label printed after costs, e.g. EUR (default: none)"),
    _S(RIGHTSIZING, "rating_rule", parsers.parse_rating_rule, RATING_RULE_AUTO,
       "star rating rule: auto (default: AI Energy Score rule within groups of three or "
       "more variants whose range is beyond measurement noise, budget use for the other "
       "tests), budget (always budget use) or group (only within such groups; the other "
       "tests unrated)"),
    _S(RIGHTSIZING, "hints", parsers.parse_bool, True,
       "hide the right-sizing hints (the energy hints section); env/ini: false hides them, "
       "true (default) shows them", flag=True, cli="--energy-no-hints"),
    # ----- regression gate -----------------------------------------------------------------------
    _S(GATE, "storage", parsers.parse_path, ".energy",
       "directory of the results history (an SQLite file; gets its own .gitignore), or a "
       "PostgreSQL URL postgresql://USER@HOST:PORT/DB shared by a team (password from "
       "PGPASSWORD or ~/.pgpass; see docs/postgres.md). Relative paths: from the current "
       "directory on the command line and in the environment, from the rootdir in ini "
       "files (default .energy)", metavar="LOCATION"),
    _S(GATE, "save", parsers.parse_save, None,
       "store this run in the history under NAME (letters, digits, '.', '_', '-')",
       metavar="NAME"),
    _S(GATE, "autosave", parsers.parse_bool, False, "store every run in the history (unnamed)",
       flag=True),
    _S(GATE, "compare", parsers.parse_compare, None,
       "compare this run with the baseline: the newest runs saved under NAME on this "
       "machine (see --energy-baseline-runs), a run id (that run alone: reported, never "
       "failed), or (no value) the newest runs saved on this machine", metavar="RUN",
       const="latest"),
    _S(GATE, "compare_fail", parsers.parse_thresholds, "joules:10%",
       "fail the session when a test (or the whole run) got worse beyond METRIC:N% or "
       "METRIC:+X (J or ms) AND beyond the baseline runs' run-to-run spread, e.g. "
       "joules:10%,latency_ms:15%; none = report only (default joules:10%)", metavar="EXPR"),
    _S(GATE, "compare_alpha", parsers.parse_alpha, 0.01,
       "chance that an unchanged run fails the compare, for the whole run (default 0.01)",
       metavar="ALPHA"),
    _S(GATE, "baseline_runs", parsers.parse_baseline_runs, 10, "the baseline is the newest N runs "
       "saved under the compared name (for the latest: on this machine); at least 3 are "
       "needed to measure the run-to-run spread before anything fails (default 10)",
       metavar="N"),
    _S(GATE, "compare_strict", parsers.parse_bool, False,
       "make a missing baseline, or one from other hardware, an error (exit 3) "
       "instead of a warning", flag=True),
    _S(GATE, "suggest_budgets", parsers.parse_suggest, None,
       "print suggested budgets (observed p95 x margin) for unbudgeted tests and tests "
       "using under half their budget; with a PATH also write them there (.json: JSON)",
       metavar="PATH", const=PRINT_ONLY),
    _S(GATE, "suggest_margin", parsers.parse_margin, 1.2,
       "headroom of suggested budgets over the observed p95 (default 1.2)", metavar="FACTOR"),
    _S(GATE, "markdown", parsers.parse_path, None,
       "write the energy summary and compare verdict as markdown to PATH (atomically); "
       "also appended to $GITHUB_STEP_SUMMARY when that is set", metavar="PATH"),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
PER_TEST_SETTINGS = tuple(s for s in SETTINGS if s.area == PER_TEST)
SESSION_SETTINGS = tuple(s for s in SETTINGS if s.area == SESSION)
RIGHTSIZING_SETTINGS = tuple(s for s in SETTINGS if s.area == RIGHTSIZING)
GATE_SETTINGS = tuple(s for s in SETTINGS if s.area == GATE)
ALL_SETTINGS = SETTINGS

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


# ----- registration: one path for pytest's parser and the CLI's argparse ---------------------


class _AddOption(Protocol):
    """``group.addoption`` (pytest) or ``parser.add_argument`` (argparse)."""

    def __call__(self, *names: str, **kwargs: Any) -> Any: ...


def argparse_type(parse: Parser, argument: str) -> Callable[[str], Any]:
    """Wrap a parser for argparse so a bad value is a usage error that teaches."""

    def convert(text: str) -> Any:
        try:
            return parse(text, argument=argument)
        except EnergyConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = argument
    return convert


def _cli_type(setting: Setting, argument: str | None = None) -> Callable[[str], Any]:
    """:func:`argparse_type` for a row, its errors naming ``argument`` (default its flag)."""
    convert = argparse_type(setting.parse, argument or setting.cli)
    convert.__name__ = setting.name
    return convert


def _register(add: _AddOption, setting: Setting, *, flag: str, dest: str, help: str) -> None:
    """Register one row with an ``addoption``-like callable (values stay None if unset)."""
    help = help.replace("%", "%%")  # argparse formats help with %
    if setting.flag:
        add(flag, action="store_true", default=None, dest=dest, help=help)
        return
    optional: dict[str, Any] = {} if setting.const is None else {"nargs": "?",
                                                                 "const": setting.const}
    add(flag, action="store", default=None, dest=dest, type=_cli_type(setting, flag),
        metavar=setting.metavar, help=help, **optional)


def add_options(parser: pytest.Parser) -> None:
    """Register every row as a CLI option (group "energy") and an ini key.

    Called from ``pytest_addoption``; the table order is the ``--help`` order.
    """
    group = parser.getgroup(*_GROUP)
    for setting in SETTINGS:
        _register(group.addoption, setting, flag=setting.cli, dest=setting.dest,
                  help=setting.help + f" [env {setting.env}, ini {setting.ini}]")
        parser.addini(setting.ini, help=setting.help, type="string", default="")


def add_cli_argument(parser: argparse.ArgumentParser, setting: Setting, flag: str, *,
                     note: str = "") -> None:
    """Mirror a row on the ``pytest-energy`` CLI under ``flag``: same parser and help.

    The value stays None when the flag is absent, so the caller applies the row's
    default (or, for ``--storage``, the plugin's precedence) itself.
    """
    _register(parser.add_argument, setting, flag=flag, dest=flag.lstrip("-").replace("-", "_"),
              help=setting.help + note)


# ----- resolution ------------------------------------------------------------------------------


class Resolved:
    """A value and where it came from (for messages)."""

    __slots__ = ("source", "value")

    def __init__(self, value: Any, source: str) -> None:
        self.value = value
        self.source = source

    def __repr__(self) -> str:
        return f"Resolved({self.value!r}, {self.source!r})"


def _parse_from(setting: Setting, raw: str, source: str) -> Any:
    try:
        return setting.parse(raw.strip(), argument=setting.name)
    except EnergyConfigError as exc:
        raise EnergyConfigError(f"{source}: {exc}") from None


def resolve_value(setting: Setting, cli_value: Any, environ: Mapping[str, str],
                  ini_value: object, *, ini_source: str | None = None) -> Resolved:
    """CLI > env > ini > default for one setting, from values already looked up.

    ``cli_value`` is already parsed (argparse did it); env and ini values are raw text,
    parsed here so an error names its source. Shared by the plugin and the CLI.
    """
    if cli_value is not None:
        return Resolved(cli_value, setting.cli)
    if environ.get(setting.env, "").strip():
        source = f"environment variable {setting.env}"
        return Resolved(_parse_from(setting, environ[setting.env], source), source)
    if isinstance(ini_value, str) and ini_value.strip():
        source = ini_source or f"ini option {setting.ini}"
        return Resolved(_parse_from(setting, ini_value, source), source)
    return Resolved(setting.default, "default")


def _cli_value(setting: Setting, config: pytest.Config) -> Any:
    value = config.getoption(setting.dest, default=None)
    if value is None or not setting.flag:
        return value
    # --energy-no-summary turns a default-true setting off; other flags turn on.
    return not setting.cli.startswith("--energy-no-")


def resolve_setting(setting: Setting, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> Resolved:
    """Resolve one setting from CLI > env > ini > default, validating env and ini values.

    Raises EnergyConfigError naming the source when a value is bad.
    """
    environ = os.environ if environ is None else environ
    cli = _cli_value(setting, config)
    if cli is not None:  # getini is not needed (and not looked up) when the CLI decides
        return Resolved(cli, setting.cli)
    return resolve_value(setting, None, environ, config.getini(setting.ini))


class SessionConfig:
    """Settings resolved once per session; per-test defaults keep their source."""

    def __init__(self, values: Mapping[str, Resolved]) -> None:
        self.meter: str = values["meter"].value
        self.json_path: str | None = values["json"].value
        self.html_path: str | None = values["html"].value
        self.summary: bool = values["summary"].value
        self.require_hardware: bool = values["require_hardware"].value
        self.measure_all: bool = values["all"].value
        self.disabled: bool = values["disable"].value
        self.read_timeout: float = values["read_timeout"].value
        self.lock_timeout: float = values["lock_timeout"].value
        self.contention: str = values["contention"].value
        self.idle_baseline: bool = values["idle_baseline"].value
        self.warmup_settle: float = values["warmup_settle"].value
        self.estimate_watts_per_core: float = values["estimate_watts_per_core"].value
        self.per_test_defaults: dict[str, Resolved] = {
            s.name: values[s.name] for s in PER_TEST_SETTINGS}

    @classmethod
    def from_config(cls, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> SessionConfig:
        """Resolve the per-test and session rows; a bad env or ini value raises
        EnergyConfigError (a usage error). Right-sizing and gate rows are resolved by
        their own features, so a run that uses neither never parses them."""
        return cls({s.name: resolve_setting(s, config, environ)
                    for s in (*PER_TEST_SETTINGS, *SESSION_SETTINGS)})
