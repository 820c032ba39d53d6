"""The session object: what the plugin keeps between tests, and its session hooks.

It is registered on every run with the plugin enabled, so it imports only cheap
modules; the end-of-run work (ratings, reports, the gate) lives in
:mod:`pytest_energy.report.finish` and is imported only when there is something to
report. On the pytest-xdist controller it receives every worker's entries with the
reports; it alone prints the summary, writes the reports and runs the gate, so a
failed gate is counted once in pytest's final line and in junitxml.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.junitxml import xml_key  # junitxml's writer, when --junitxml is on

from pytest_energy.options import MARKER_NAME, SessionConfig
from pytest_energy.workers import (
    INTERRUPTED,
    INTERRUPTED_KEY,
    crash_entry,
    drain_worker_events,
    interrupted_entries,
    worker_id,
)

if TYPE_CHECKING:
    from pytest_energy.entry import Entry
    from pytest_energy.history.gate import RegressionGate
    from pytest_energy.meters.loader import MeterPool
    from pytest_energy.report.finish import RunReport
    from pytest_energy.state import ItemState  # noqa: F401 (named in ITEM_STATE below)

FIXTURE_NAME = "energy"
STATUS_LETTER = "J"
ENTRY_ATTRIBUTE = "energy"  # the TestReport attribute carrying the entry's JSON form
# on an xdist worker, the setup report of a measured test: its declared entry (budgets),
# so the controller can record it should the worker crash (see pytest_energy.workers)
PENDING_ATTRIBUTE = "energy_pending"
ITEM_STATE = pytest.StashKey["ItemState"]()
SESSION = pytest.StashKey["EnergySession"]()


def wants_energy(item: pytest.Item, session: EnergySession) -> bool:
    """Whether a test is measured: marked, using the fixture, or ``--energy-all`` (which
    measures test functions and unittest methods only: see :func:`measurable`)."""
    return (item.get_closest_marker(MARKER_NAME) is not None
            or FIXTURE_NAME in getattr(item, "fixturenames", ())
            or (session.config.measure_all and measurable(item)))


def measurable(item: pytest.Item) -> bool:
    """A test function or a ``unittest.TestCase`` method: a body the plugin can call
    repeatedly. Doctests and other plugins' items are not."""
    return isinstance(item, pytest.Function)


def has_own_marker(item: pytest.Item) -> bool:
    """The marker on the test itself, where a fixture or a hook adds it at run time
    (``request.applymarker``, ``item.add_marker``); a scan of a short list."""
    return any(mark.name == MARKER_NAME for mark in item.own_markers)


# The JSON spellings this module reads off the wire; the typed Entry has them as enums.
OVER_BUDGET = "over budget"
ERROR = "error"


def outcome_of(report: pytest.TestReport) -> str:
    """passed / failed / error / skipped / xfailed / xpassed, as the JSON report spells it."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when != "call" and report.failed:
        return ERROR
    return str(report.outcome)


def typed_entry(data: dict[str, Any], outcome: str) -> Entry:
    """The typed entry from the JSON form a report carries."""
    # Imported with the first measured report: a run that measures nothing never pays.
    from pytest_energy.entry import Entry

    return Entry.from_json({**data, "outcome": outcome})


class EnergySession:
    """Session-level state and hooks, registered in ``pytest_configure``."""

    def __init__(self, config: SessionConfig, is_worker: bool,
                 rightsizing_values: dict[str, Any] | None = None,
                 gate: RegressionGate | None = None) -> None:
        self.config = config
        self.is_worker = is_worker
        self.rightsizing_values = rightsizing_values or {}
        self.gate = gate
        self.entries: dict[str, Entry] = {}
        # call reports whose "energy" section shows the rating (re-rendered once rated)
        self.reports: dict[str, pytest.TestReport] = {}
        self.junit_reporters: dict[str, Any] = {}  # nodeid -> junitxml's node reporter
        self.report_errors: list[str] = []
        self.pool: MeterPool | None = None  # meters, created by the first measured test
        self.cleanups: list[Callable[[], object]] = []  # run after the meters are closed
        self.worker_meters: list[dict[str, Any]] = []  # pool descriptions from xdist workers
        self.described: dict[str, Any] | None = None
        self.run_report: RunReport | None = None
        self.pytest_config: pytest.Config | None = None
        # xdist controller: measured tests a worker has started (setup passed) and not
        # yet reported: nodeid -> (declared entry, worker id); see pytest_energy.workers
        self.pending: dict[str, tuple[dict[str, Any], str | None]] = {}
        self.finished_workers: set[str | None] = set()

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        """A status letter of its own for over-budget failures (also on the xdist
        controller, which runs no tests itself). The word is a plain string, red by its
        "failed" category: pytest 8.0-8.2 print a (word, markup) tuple raw in the short
        summary."""
        data = getattr(report, ENTRY_ATTRIBUTE, None)
        if report.when == "call" and report.failed and data and data.get("verdict") == (
                OVER_BUDGET) and not hasattr(report, "wasxfail"):
            return "failed", STATUS_LETTER, "OVER BUDGET"
        return None

    @pytest.hookimpl(tryfirst=True)  # before junitxml finalizes the test's XML
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, ENTRY_ATTRIBUTE, None)
        if not self.is_worker:
            self._track_pending(report, data)
        if data is not None:
            self.entries[report.nodeid] = typed_entry(data, outcome_of(report))
            if any(name == ENTRY_ATTRIBUTE for name, _ in report.sections):
                self.reports[report.nodeid] = report
        elif report.when == "teardown" and report.failed and report.nodeid in self.entries:
            self.entries[report.nodeid] = self.entries[report.nodeid].with_outcome(ERROR)
        if report.when == "teardown" and report.nodeid in self.entries:
            self._keep_junit_reporter(report)

    def _keep_junit_reporter(self, report: pytest.TestReport) -> None:
        """Remember junitxml's reporter of a measured test, so its energy_rating can be
        set to the run's final rating once the groups are known."""
        xml = None if self.pytest_config is None else self.pytest_config.stash.get(xml_key, None)
        if xml is not None:
            # a junitxml without this API: the rating stays as recorded
            with contextlib.suppress(Exception):
                self.junit_reporters[report.nodeid] = xml.node_reporter(report)

    def _track_pending(self, report: pytest.TestReport, data: Any) -> None:
        """xdist controller: remember a measured test a worker started, until its entry
        arrives (a crash or Ctrl-C may stop it from ever arriving)."""
        pending = getattr(report, PENDING_ATTRIBUTE, None)
        if pending is not None:
            self.pending[report.nodeid] = (pending, worker_id(getattr(report, "node", None)))
        elif data is not None or report.when == "teardown":
            self.pending.pop(report.nodeid, None)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport,
                               sched: Any) -> None:
        """xdist controller: the worker died running ``crashitem``; when it was a
        measured test, its report carries an error entry, "worker crashed"."""
        pending = self.pending.pop(crashitem, None)
        if pending is not None and getattr(report, ENTRY_ATTRIBUTE, None) is None:
            setattr(report, ENTRY_ATTRIBUTE, crash_entry(pending[0], report))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: a worker finished; keep its meters' fingerprints and the
        partial entries of the tests Ctrl-C interrupted on it."""
        output = getattr(node, "workeroutput", None) or {}
        described = output.get("pytest_energy_meters")
        if described:
            self.worker_meters.append(described)
        for data in output.get(INTERRUPTED_KEY) or ():
            self.entries[data["nodeid"]] = typed_entry(data, INTERRUPTED)
            self.pending.pop(data["nodeid"], None)
        self.finished_workers.add(worker_id(node))

    def _await_interrupted_workers(self, config: pytest.Config) -> None:
        """Ctrl-C on the xdist controller: read the last events of the workers that were
        running a measured test, so their partial entries reach the reports."""

        def waiting() -> bool:
            return any(worker not in self.finished_workers
                       for _, worker in self.pending.values())

        def handle(name: str, kwargs: dict[str, Any]) -> None:
            node, report = kwargs.get("node"), kwargs.get("rep")
            if name == "testreport" and report is not None:
                report.node = node  # as xdist's own loop sets it
                self.pytest_runtest_logreport(report)
            elif name == "workerfinished":
                self.pytest_testnodedown(node, None)
            elif name == "errordown":  # gone without a word: nothing more will come
                self.finished_workers.add(worker_id(node))

        drain_worker_events(config, handle, waiting)

    def _run_report(self) -> RunReport | None:
        """Ratings, tables and reports of the run: built once, on the controller, and
        only when there is something to report (so a run that measures nothing never
        imports the reporting code)."""
        if self.run_report is None and not self.is_worker and not self.config.disabled and (
                self.entries or self.gate is not None or self.config.json_path
                or self.config.html_path):
            from pytest_energy.report.finish import RunReport  # the end-of-run seam

            self.run_report = RunReport(self)
        return self.run_report

    # first: the JSON, the compare and the junitxml properties must be ready before
    # other plugins' sessionfinish (junitxml writes its file there)
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Describe the tests' meters, finish the reports, then close the meters.

        The meters close last because the gate's reference workload is measured with
        the session's pool inside the reports (creating it where no test measured, as
        on the xdist controller); they are described first, so the run's meters are the
        tests' meters whatever the reference used."""
        if self.pool is not None:
            self.described = self.pool.describe()
        try:
            self._exchange_with_workers(session)
            run_report = self._run_report()
            if run_report is not None:
                run_report.finish(session)
        except Exception as exc:  # a report must never turn the run into an INTERNALERROR
            self.report_errors.append(f"could not finish the energy reports: "
                                      f"{type(exc).__name__}: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        finally:
            self._close_meters(session)

    def _exchange_with_workers(self, session: pytest.Session) -> None:
        """xdist: a worker sends its interrupted tests' partial entries with its
        workeroutput; an interrupted controller waits briefly for them."""
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[INTERRUPTED_KEY] = interrupted_entries(self.entries.values())
        elif self.pending and session.exitstatus == pytest.ExitCode.INTERRUPTED:
            self._await_interrupted_workers(session.config)

    def _close_meters(self, session: pytest.Session) -> None:
        """Close the meters, run the cleanups, and on an xdist worker send the meters'
        fingerprints to the controller."""
        if self.pool is None:
            return
        self.report_errors.extend(self.pool.close())
        for cleanup in self.cleanups:
            cleanup()
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # xdist worker
            workeroutput["pytest_energy_meters"] = self.described

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        run_report = self.run_report
        if run_report is None:
            for error in self.report_errors:
                terminalreporter.write_line(f"pytest-energy: {error}", red=True)
            return
        for step, what in ((run_report.print_summary, "print the summary"),
                           (run_report.count_gate, "count the gate in pytest's final line")):
            try:
                step(terminalreporter)
            except Exception as exc:  # the summary must never turn a run into a traceback
                terminalreporter.write_line(
                    f"pytest-energy: could not {what}: {type(exc).__name__}: {exc}", red=True)
