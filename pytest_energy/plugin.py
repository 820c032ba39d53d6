"""pytest hooks of pytest-energy; the logic lives in the modules they call.

Flow for one test that has the ``energy_budget`` marker:
setup (validate the marker, choose the meter; skip or error with a message) ->
call (run the body warm-up + measured times, unless the test uses the ``energy``
fixture; then judge the budgets) -> makereport (attach the entry to the report) ->
logreport (collect entries; on the xdist controller they arrive with the reports) ->
sessionfinish (JSON report) -> terminal summary (the table).

Import cost matters: this module is imported by every pytest run on a machine where
the plugin is installed. It imports only :mod:`pytest_energy.options`; everything
else is imported inside the hooks, on the first test that asks for energy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.options import MARKER_HELP, MARKER_NAME, SessionConfig, add_options

if TYPE_CHECKING:
    from pytest_energy.fixture import EnergyFixture
    from pytest_energy.gate import RegressionGate
    from pytest_energy.meters.loader import MeterPool
    from pytest_energy.rightsizing import RightsizingOptions
    from pytest_energy.state import ItemState  # noqa: F401 (named in ITEM_STATE below)

FIXTURE_NAME = "energy"
STATUS_LETTER = "J"
ENTRY_ATTRIBUTE = "energy"  # name of the attribute carrying the entry on a TestReport

TEST_HOOKS = "energy-tests"  # name of the registered pytest_energy.testhooks plugin
ITEM_STATE = pytest.StashKey["ItemState"]()
SESSION = pytest.StashKey["EnergySession"]()


class EnergyBudgetExceeded(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """Raised at the end of the call phase when a budget is exceeded.

    Raising (instead of editing the report afterwards) keeps pytest's own machinery in
    charge: ``xfail(raises=EnergyBudgetExceeded, strict=True)`` works, and other
    plugins see an ordinary failure.
    """


# Shown as "EnergyBudgetExceeded: ..." in short summaries, as pytest does for Failed.
EnergyBudgetExceeded.__module__ = "builtins"


class EnergyVerdictWarning(pytest.PytestWarning):
    """A budget verdict that was not enforced: inconclusive (noisy trials) or measured
    while other processes used the device (see --energy-contention)."""


class EnergySession:
    """Session-level state and hooks, registered in pytest_configure.

    On the xdist controller it receives every worker's entries with the reports; it
    alone prints the summary and writes the JSON report.
    """

    def __init__(self, config: SessionConfig, is_worker: bool,
                 rightsizing_values: dict[str, Any] | None = None) -> None:
        self.config = config
        self.is_worker = is_worker
        self._rightsizing_values = rightsizing_values or {}
        self._rightsizing: RightsizingOptions | None = None
        self._rightsized: tuple[list[dict[str, Any]], dict[str, Any] | None,
                                list[str]] | None = None
        self.entries: dict[str, dict[str, Any]] = {}
        self.report_errors: list[str] = []
        self.json_written: str | None = None
        self._pool: MeterPool | None = None
        self.worker_meters: list[dict[str, Any]] = []  # pool descriptions from xdist workers
        self._described: dict[str, Any] | None = None
        self.gate: RegressionGate | None = None

    @property
    def pool(self) -> MeterPool:
        """Meters, created on the first test that needs one."""
        if self._pool is None:
            from pytest_energy.isolation import register_process
            from pytest_energy.meters.loader import MeterPool

            register_process()

            self._pool = MeterPool(self.config.meter,
                                   watts_per_core=self.config.estimate_watts_per_core,
                                   require_hardware=self.config.require_hardware)
        return self._pool

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        """A status letter of its own for over-budget failures (also on the xdist
        controller, which runs no tests itself)."""
        entry = getattr(report, ENTRY_ATTRIBUTE, None)
        if report.when == "call" and report.failed and entry and entry.get("verdict") == (
                "over budget") and not hasattr(report, "wasxfail"):
            return "failed", STATUS_LETTER, ("OVER BUDGET", {"red": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = getattr(report, ENTRY_ATTRIBUTE, None)
        if entry is not None:
            from pytest_energy.state import outcome_of

            entry["outcome"] = outcome_of(report)  # the report's own dict: no copy per test
            self.entries[report.nodeid] = entry
        elif report.when == "teardown" and report.failed and report.nodeid in self.entries:
            self.entries[report.nodeid]["outcome"] = "error"

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: a worker finished; keep its meters' fingerprints."""
        described = getattr(node, "workeroutput", {}).get("pytest_energy_meters")
        if described:
            self.worker_meters.append(described)

    def meters_described(self) -> dict[str, Any]:
        """This process's meters merged with those the xdist workers reported."""
        from pytest_energy.meters.loader import merge_descriptions

        own = [self._described] if self._described is not None else (
            [self._pool.describe()] if self._pool is not None else [])
        return merge_descriptions(self.config.meter, own + self.worker_meters)

    @property
    def rightsizing(self) -> RightsizingOptions:
        """Right-sizing options (validated at configure, built on first use)."""
        if self._rightsizing is None:
            from pytest_energy.rightsizing import RightsizingOptions

            self._rightsizing = RightsizingOptions(**self._rightsizing_values)
        return self._rightsizing

    def rightsize(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
        """Group ratings (in place), right-sizing tables, carbon/cost and hints; once."""
        if self._rightsized is None and not self.entries:
            self._rightsized = ([], None, [])  # nothing measured: import nothing
        if self._rightsized is None:
            from pytest_energy.rightsizing import (
                apply_ratings,
                carbon_cost,
                hints,
                rightsizing_tables,
            )

            entries = list(self.entries.values())
            apply_ratings(entries, self.rightsizing)
            tables = rightsizing_tables(entries, self.rightsizing)
            self._rightsized = (tables, carbon_cost(entries, self.rightsizing),
                                hints(entries, tables, self.rightsizing))
        return self._rightsized

    # first: the JSON, the compare and the junitxml suite properties must be ready before
    # other plugins' sessionfinish (junitxml writes its file there)
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self._pool is not None:
            from pytest_energy.isolation import unregister_process

            unregister_process()
            self._described = described = self._pool.describe()  # before closing the meters
            self.report_errors.extend(self._pool.close())
            workeroutput = getattr(session.config, "workeroutput", None)
            if workeroutput is not None:  # xdist worker: send fingerprints to the controller
                workeroutput["pytest_energy_meters"] = described
        if self.is_worker or (self.gate is None and not self.config.json_path):
            return
        meter = self.meters_described()
        tables, carbon, found = self.rightsize()  # group ratings first: storage keeps them
        compare = None
        if self.gate is not None:
            from pytest_energy.jsonreport import machine_info
            from pytest_energy.rightsizing import markdown_sections

            self.gate.extra_markdown = markdown_sections(tables, carbon, found)
            compare = self.gate.finish(list(self.entries.values()), meter, machine_info())
            _add_junit_suite_properties(session.config, compare)
            code = self.gate.exit_status()
            if code is not None and session.exitstatus == 0:
                session.exitstatus = code
        if not self.config.json_path:
            return
        from pytest_energy.jsonreport import build_report, write_report

        try:
            report = build_report(list(self.entries.values()), meter)
            report.update({"rightsizing": tables, "carbon_cost": carbon, "hints": found})
            if compare is not None:
                report["compare"] = compare
            path = write_report(self.config.json_path, report)
            self.json_written = str(path)
        except (OSError, ValueError, TypeError) as exc:
            self.report_errors.append(
                f"could not write the JSON report to {self.config.json_path}: "
                f"{type(exc).__name__}: {exc}"
            )
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        try:
            self._print_summary(terminalreporter)
        except Exception as exc:  # the summary must never turn a run into a traceback
            terminalreporter.write_line(
                f"pytest-energy: could not print the summary: {type(exc).__name__}: {exc}",
                red=True)

    def _print_summary(self, terminalreporter: Any) -> None:
        entries = list(self.entries.values())
        if entries and self.config.summary:
            from pytest_energy.report.terminal import meter_lines, render_summary

            terminalreporter.section("energy summary")
            for line in meter_lines(self.meters_described()):
                terminalreporter.write_line(line)
            encoding = getattr(getattr(terminalreporter, "_tw", None), "encoding", None)
            from pytest_energy.rightsizing import (
                render_carbon,
                render_rightsizing,
                summary_columns,
                summary_lines,
            )

            tables, carbon, found = self.rightsize()
            extra = summary_columns(entries, None)  # carbon/cost get their own table below
            for line in render_summary(entries, encoding, extra).splitlines():
                terminalreporter.write_line(line)
            # carbon=None: the whole-run total is printed under the carbon table below.
            for line in summary_lines(entries, None, self.rightsizing):
                terminalreporter.write_line(line)
            text = render_rightsizing(tables, self.rightsizing, encoding)
            if text:
                terminalreporter.section("energy right-sizing")
                for line in text.splitlines():
                    terminalreporter.write_line(line)
            if carbon is not None:
                terminalreporter.section("energy carbon and cost")
                for line in render_carbon(carbon, encoding).splitlines():
                    terminalreporter.write_line(line)
        if entries and self.rightsizing.hints:
            _tables, _carbon, found = self.rightsize()
            if found:
                terminalreporter.section("energy hints")
                for hint in found:
                    terminalreporter.write_line(f"- {hint}")
        if self.json_written:
            terminalreporter.write_line(f"energy JSON report: {self.json_written}")
        gate_lines = self.gate.summary_lines() if self.gate is not None else []
        if gate_lines and not (entries and self.config.summary):
            terminalreporter.section("energy regression gate")
        for line in gate_lines:
            terminalreporter.write_line(line, red=line.startswith(
                ("energy compare FAILED", "pytest-energy:")))
        for error in self.report_errors:
            terminalreporter.write_line(f"pytest-energy: {error}", red=True)


def _add_junit_suite_properties(config: pytest.Config, compare: dict[str, Any]) -> None:
    """The compare verdict as junitxml testsuite properties, when --junitxml is on."""
    try:
        from _pytest.junitxml import xml_key  # the key record_testsuite_property uses
    except ImportError:  # pragma: no cover - a pytest without it: skip the extra
        return
    from pytest_energy.gate import junit_properties

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    for name, value in junit_properties(compare):
        xml.add_global_property(name, value)


def pytest_addoption(parser: pytest.Parser) -> None:
    from pytest_energy.gate import add_gate_options
    from pytest_energy.rightsizing_options import add_rightsizing_options

    add_options(parser)
    add_rightsizing_options(parser)
    add_gate_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    from pytest_energy.gate import RegressionGate
    from pytest_energy.options import resolve_setting
    from pytest_energy.rightsizing_options import RIGHTSIZING_SETTINGS

    try:
        session_config = SessionConfig.from_config(config)
        rightsizing_values = {s.name: resolve_setting(s, config).value
                              for s in RIGHTSIZING_SETTINGS}
        is_worker = hasattr(config, "workerinput")
        gate = None if is_worker else RegressionGate.from_config(config)
    except EnergyConfigError as exc:
        raise pytest.UsageError(f"pytest-energy: {exc}") from None
    session = EnergySession(session_config, is_worker=is_worker,
                            rightsizing_values=rightsizing_values)
    session.gate = gate
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "energy-session")


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> Any:
    """Header: which meter will measure each requested device, or why only estimates."""
    session = config.stash.get(SESSION, None)
    if session is None:
        return None
    devices = set()
    for item in items:
        if _wants_energy(item, session):
            marker = item.get_closest_marker(MARKER_NAME)
            device = marker.kwargs.get("device") if marker is not None else None
            devices.add(device if isinstance(device, str) else
                        session.config.per_test_defaults["device"].value)
    lines = []
    for device in sorted(devices):
        choice = session.pool.choose(device)
        if choice.meter is not None:
            meter = choice.meter
            kind = "estimated" if meter.estimated else "hardware counter"
            line = (f"energy: device {device} -> {meter.name} {','.join(meter.domains())} "
                    f"({kind})")
            lines.append(line + (f"; {choice.note}" if choice.note else ""))
        else:
            lines.append(f"energy: device {device} -> not measurable: "
                         f"{choice.skip_reason or choice.error}")
    return lines


def _wants_energy(item: pytest.Item, session: EnergySession) -> bool:
    return (session.config.measure_all or item.get_closest_marker(MARKER_NAME) is not None
            or FIXTURE_NAME in getattr(item, "fixturenames", ()))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Register the per-test hooks only when some collected test asks for energy.

    A suite (or an xdist worker's share of it) that measures nothing then runs none of
    the plugin's per-test hooks: the plugin costs its import and this scan.
    """
    session = config.stash.get(SESSION, None)
    if session is None or config.pluginmanager.has_plugin(TEST_HOOKS):
        return
    if any(_wants_energy(item, session) for item in items):
        from pytest_energy import testhooks

        config.pluginmanager.register(testhooks, TEST_HOOKS)


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> EnergyFixture:
    """Measure a callable (``energy(fn, *args)``) or a block (``with energy.measure():``).

    Read the numbers from ``energy.result``. With an ``energy_budget`` marker, its
    budgets apply to what this fixture measured.
    """
    from pytest_energy.fixture import EnergyFixture
    from pytest_energy.testhooks import choose_meter

    session = request.config.stash.get(SESSION, None)
    state = request.node.stash.get(ITEM_STATE, None)
    if session is None or state is None or state.config is None:
        raise pytest.UsageError("the energy fixture needs the pytest-energy plugin enabled")
    return EnergyFixture(state, lambda: choose_meter(state, session))
