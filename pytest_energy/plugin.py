"""pytest hooks of pytest-energy; the logic lives in the modules they call.

Flow for one test that has the ``energy_budget`` marker:
setup (validate the marker, choose the meter; skip or error with a message) ->
call (run the body warm-up + measured times, unless the test uses the ``energy``
fixture) -> makereport (judge the budgets, attach the entry to the report) ->
logreport (collect entries; on the xdist controller they arrive with the reports) ->
sessionfinish (JSON report) -> terminal summary (the table).
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any

import pytest

from pytest_energy.config import (
    MARKER_HELP,
    MARKER_NAME,
    ItemConfig,
    SessionConfig,
    add_options,
)
from pytest_energy.errors import EnergyConfigError
from pytest_energy.fixture import EnergyFixture
from pytest_energy.measure import Measurer
from pytest_energy.meters.base import MeterError
from pytest_energy.meters.loader import MeterPool
from pytest_energy.state import (
    ENTRY_ATTRIBUTE,
    ITEM_STATE,
    SESSION_STATE,
    ItemState,
    SessionState,
    build_entry,
    finish_item,
    outcome_of,
)

FIXTURE_NAME = "energy"
STATUS_LETTER = "J"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        session_config = SessionConfig.from_config(config)
    except EnergyConfigError as exc:
        raise pytest.UsageError(f"pytest-energy: {exc}") from None
    state = SessionState(
        config=session_config,
        pool=MeterPool(session_config.meter,
                       watts_per_core=session_config.estimate_watts_per_core,
                       require_hardware=session_config.require_hardware),
        is_worker=hasattr(config, "workerinput"),
    )
    config.stash[SESSION_STATE] = state
    config.pluginmanager.register(EnergySessionPlugin(state), "energy-session")


def _session(config: pytest.Config) -> SessionState | None:
    return config.stash.get(SESSION_STATE, None)


def _wants_energy(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER_NAME) is not None or FIXTURE_NAME in getattr(
        item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    session = _session(item.config)
    if session is None or not _wants_energy(item):
        return
    uses_fixture = FIXTURE_NAME in getattr(item, "fixturenames", ())
    try:
        item_config = ItemConfig.from_item(item, session.config)
    except EnergyConfigError as exc:
        error = str(exc)
    else:
        error = None
    if error is not None:  # fail outside the except block: no chained exception shown
        item.stash[ITEM_STATE] = ItemState(None, uses_fixture, config_error=error)
        pytest.fail(error, pytrace=False)
    state = ItemState(item_config, uses_fixture)
    item.stash[ITEM_STATE] = state
    if item_config.marked:
        _choose_meter(state, session)


def _choose_meter(state: ItemState, session: SessionState) -> Measurer:
    """Pick the meter for the test's device; skip or fail the test when there is none."""
    assert state.config is not None
    choice = session.pool.choose(state.config.device)
    state.choice = choice
    if choice.skip_reason:
        pytest.skip(choice.skip_reason)
    if choice.error or choice.meter is None:
        state.problem = choice.error
        pytest.fail(f"{state.config.nodeid}: {choice.error}", pytrace=False)
    device = state.config.device if state.config.device != "auto" else choice.device
    return Measurer(choice.meter, device=device, meter_note=choice.note)


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> EnergyFixture:
    """Measure a callable (``energy(fn, *args)``) or a block (``with energy.measure():``).

    Read the numbers from ``energy.result``. With an ``energy_budget`` marker, its
    budgets apply to what this fixture measured.
    """
    session = _session(request.config)
    state = request.node.stash.get(ITEM_STATE, None)
    if session is None or state is None or state.config is None:
        raise pytest.UsageError("the energy fixture needs the pytest-energy plugin enabled")
    return EnergyFixture(state, lambda: _choose_meter(state, session))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """With the marker alone, run the test body under the measurement plan."""
    state = pyfuncitem.stash.get(ITEM_STATE, None)
    if state is None or state.config is None or not state.config.marked or state.uses_fixture:
        return (yield)
    session = _session(pyfuncitem.config)
    assert session is not None and state.choice is not None
    original = pyfuncitem.obj
    if inspect.iscoroutinefunction(original):
        state.problem = ("async test functions are not measured by the marker alone: "
                         "use the energy fixture inside the test")
        return (yield)
    measurer = _choose_meter(state, session)
    config = state.config
    result = measurer.new_result(config.items)
    state.result = result

    def measured_body(*args: Any, **kwargs: Any) -> Any:
        try:
            value, _ = measurer.run(lambda: original(*args, **kwargs), warmup=config.warmup,
                                    rounds=config.rounds, trials=config.trials,
                                    max_time_s=config.max_time, result=result)
        except MeterError as exc:
            state.problem = str(exc)
            pytest.fail(f"energy meter failed: {exc}", pytrace=False)
        return value

    pyfuncitem.obj = measured_body
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


class EnergyBudgetExceeded(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """Raised at the end of the call phase when a budget is exceeded.

    Raising (instead of editing the report afterwards) keeps pytest's own machinery in
    charge: ``xfail(raises=EnergyBudgetExceeded, strict=True)`` works, and other
    plugins see an ordinary failure.
    """


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Judge the budgets once the test body has finished without error."""
    yield  # an exception from the test propagates: no energy verdict on top of it
    state = item.stash.get(ITEM_STATE, None)
    if state is None:
        return
    check = finish_item(state)
    if check is not None and not check.passed:
        raise EnergyBudgetExceeded(check.message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the entry (the test's numbers) to the report and add a details section."""
    report = yield
    state = item.stash.get(ITEM_STATE, None)
    if state is None:
        return report
    if call.when == "setup" and not report.passed:
        setattr(report, ENTRY_ATTRIBUTE, build_entry(item.nodeid, state))
    elif call.when == "call":
        entry = build_entry(item.nodeid, state)
        setattr(report, ENTRY_ATTRIBUTE, entry)
        if state.result is not None:
            from pytest_energy.report import details_section

            report.sections.append(("energy", details_section(entry)))
            for prop in _user_properties(entry):
                item.user_properties.append(prop)  # junitxml reads them at teardown
                report.user_properties.append(prop)
    return report


def _user_properties(entry: dict[str, Any]) -> list[tuple[str, object]]:
    """Flat numbers for junitxml (and anything else reading user_properties)."""
    latency = entry.get("latency_ms") or {}
    pairs = (
        ("energy_joules_per_call", entry.get("joules_per_call")),
        ("energy_joules_per_item", entry.get("joules_per_item")),
        ("energy_latency_ms", latency.get("median")),
        ("energy_latency_ms_p95", latency.get("p95")),
        ("energy_calls", entry.get("calls")),
        ("energy_meter", entry.get("meter")),
        ("energy_estimated", entry.get("estimated")),
        ("energy_rating", entry.get("rating")),
        ("energy_verdict", entry.get("verdict")),
    )
    return [(key, value) for key, value in pairs if value is not None]


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    entry = getattr(report, ENTRY_ATTRIBUTE, None)
    if report.when == "call" and report.failed and entry and entry.get("verdict") == (
            "over budget") and not hasattr(report, "wasxfail"):
        return "failed", STATUS_LETTER, ("OVER BUDGET", {"red": True})
    return None


class EnergySessionPlugin:
    """Session-level hooks, registered in pytest_configure so they can hold state.

    On the xdist controller it receives every worker's entries with the reports; it
    alone prints the summary and writes the JSON report.
    """

    def __init__(self, state: SessionState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = getattr(report, ENTRY_ATTRIBUTE, None)
        entries = self.state.entries
        if entry is not None:
            stored = dict(entry)
            stored["outcome"] = outcome_of(report)
            entries[report.nodeid] = stored
        elif report.when == "teardown" and report.failed and report.nodeid in entries:
            entries[report.nodeid]["outcome"] = "error"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        state = self.state
        state.report_errors.extend(state.pool.close())
        if state.is_worker or not state.config.json_path:
            return
        from pytest_energy.jsonreport import build_report, write_report

        try:
            path = write_report(state.config.json_path,
                                build_report(list(state.entries.values()), state.pool.describe()))
            state.json_written = str(path)
        except (OSError, ValueError, TypeError) as exc:
            state.report_errors.append(
                f"could not write the JSON report to {state.config.json_path}: "
                f"{type(exc).__name__}: {exc}"
            )
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.state.is_worker:
            return
        try:
            _print_summary(terminalreporter, self.state)
        except Exception as exc:  # the summary must never turn a run into a traceback
            terminalreporter.write_line(
                f"pytest-energy: could not print the summary: {type(exc).__name__}: {exc}",
                red=True)


def _print_summary(terminalreporter: Any, state: SessionState) -> None:
    entries = list(state.entries.values())
    if entries and state.config.summary:
        from pytest_energy.report import render_summary

        terminalreporter.section("energy summary")
        encoding = getattr(getattr(terminalreporter, "_tw", None), "encoding", None)
        for line in render_summary(entries, encoding).splitlines():
            terminalreporter.write_line(line)
    if state.json_written:
        terminalreporter.write_line(f"energy JSON report: {state.json_written}")
    for error in state.report_errors:
        terminalreporter.write_line(f"pytest-energy: {error}", red=True)
