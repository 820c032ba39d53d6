"""Per-test hooks: validate and choose the meter at setup, measure the call, judge the
budgets, attach the entry to the report.

Registered by :func:`pytest_energy.plugin.pytest_collection_modifyitems` only when a
collected test has the ``energy_budget`` marker or uses the ``energy`` fixture (or with
``--energy-all``), so suites that measure nothing never import or run them; there, a
marker added at run time registers them (:class:`pytest_energy.plugin.RuntimeMarkerWatch`).

A marker may arrive late: from a fixture (``request.applymarker``) or another plugin's
``pytest_runtest_setup`` (both run after this module's tryfirst setup; the trylast
:func:`pytest_runtest_setup_late` sees them), or from the test body itself
(:func:`pytest_runtest_call_marker_in_body`: the body ran once, unmeasured, and runs
again under the plan). ``unittest.TestCase`` methods are measured like functions: their
bound method is swapped for the measured body around the call.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_energy.config import ItemConfig
from pytest_energy.entry import Outcome, Verdict
from pytest_energy.errors import EnergyBudgetExceeded, EnergyConfigError, EnergyVerdictWarning
from pytest_energy.fixture import EnergyFixture
from pytest_energy.measure import Measurer
from pytest_energy.measure.reference import session_pool
from pytest_energy.meters.base import MeterError
from pytest_energy.meters.loader import MeterPool, domains_of
from pytest_energy.options import MARKER_NAME
from pytest_energy.report.details import details_section, user_properties
from pytest_energy.session import (
    ENTRY_ATTRIBUTE,
    FIXTURE_NAME,
    ITEM_STATE,
    PENDING_ATTRIBUTE,
    SESSION,
    EnergySession,
    has_own_marker,
    wants_energy,
)
from pytest_energy.state import ItemState, build_entry, finish_item
from pytest_energy.verdict import EXPECTED

try:  # pytest's unittest items: measured by swapping their bound method (see module doc)
    from _pytest.unittest import TestCaseFunction
except ImportError:  # pragma: no cover - every supported pytest has it
    TestCaseFunction = ()  # type: ignore[assignment,misc]


def meter_pool(session: EnergySession) -> MeterPool:
    """The session's meters, created on the first test that needs one (the same pool
    the reference workload uses at the end of a gated run)."""
    return session_pool(session)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> Any:
    """Header: which meter will measure each requested device, or why only estimates."""
    session = config.stash.get(SESSION, None)
    if session is None:
        return None
    devices = set()
    for item in items:
        if wants_energy(item, session):
            marker = item.get_closest_marker(MARKER_NAME)
            device = marker.kwargs.get("device") if marker is not None else None
            devices.add(device if isinstance(device, str) else
                        session.config.per_test_defaults["device"].value)
    width = config.get_terminal_writer().fullwidth
    return [part for device in sorted(devices)
            for part in textwrap.wrap(_device_line(device, meter_pool(session)), width,
                                      subsequent_indent="    ", break_on_hyphens=False)]


def _device_line(device: str, pool: MeterPool) -> str:
    choice = pool.choose(device)
    if choice.meter is None:
        return (f"energy: device {device} -> not measurable: "
                f"{choice.skip_reason or choice.error}")
    meter = choice.meter
    kind = "estimated" if meter.estimated else "hardware counter"
    line = f"energy: device {device} -> {meter.name} {','.join(domains_of(meter))} ({kind})"
    return line + (f"; {choice.note}" if choice.note else "")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validate the marker and choose the meter before any fixture runs, so a bad marker
    errors before an expensive fixture (a model) is built."""
    session = item.config.stash.get(SESSION, None)
    if session is None or not wants_energy(item, session):
        return
    start(item, session)


@pytest.hookimpl(trylast=True, specname="pytest_runtest_setup")
def pytest_runtest_setup_late(item: pytest.Item) -> None:
    """A marker added during setup (``request.applymarker`` in a fixture, ``add_marker``
    in another plugin's setup hook): measure the test after all."""
    session = item.config.stash.get(SESSION, None)
    if session is not None and has_own_marker(item):
        adopt_runtime_marker(item, session)


def adopt_runtime_marker(item: pytest.Item, session: EnergySession) -> None:
    """Start measuring a test whose marker appeared at run time, or apply its budgets to
    what the ``energy`` fixture measures; a test already marked is left alone."""
    state = item.stash.get(ITEM_STATE, None)
    if state is None:
        start(item, session)
    elif state.config is not None and not state.config.has_marker:
        start(item, session, uses_fixture=state.uses_fixture, state=state)


def start(item: pytest.Item, session: EnergySession, *, uses_fixture: bool | None = None,
          state: ItemState | None = None) -> ItemState:
    """Build the test's state from its marker (or fail the test, naming the argument),
    and choose the meter of a marked test (or skip or fail it)."""
    if uses_fixture is None:
        uses_fixture = FIXTURE_NAME in getattr(item, "fixturenames", ())
    error: str | None = None
    try:
        item_config = ItemConfig.from_item(item, session.config)
    except EnergyConfigError as exc:
        error = str(exc)
    if error is None:
        error = _unsupported(item)
    if error is not None:  # fail outside the except block: no chained exception shown
        item.stash[ITEM_STATE] = ItemState(None, uses_fixture, config_error=error)
        pytest.fail(error, pytrace=False)
    if state is None:
        state = ItemState(item_config, uses_fixture)
        item.stash[ITEM_STATE] = state
    state.config = item_config
    if item_config.marked:
        choose_meter(state, session)
    return state


def _unsupported(item: pytest.Item) -> str | None:
    """Why a marked item cannot be measured: a doctest or another plugin's item has no
    function the plugin can call repeatedly."""
    if isinstance(item, pytest.Function) or item.get_closest_marker(MARKER_NAME) is None:
        return None
    return (f"{item.nodeid}: the energy_budget marker is not supported on "
            f"{type(item).__name__} items (only test functions and unittest.TestCase "
            "methods have a body the plugin can call repeatedly): call the code from a test "
            "function with @pytest.mark.energy_budget, or use the energy fixture")


def choose_meter(state: ItemState, session: EnergySession) -> Measurer:
    """Pick the meter for the test's device; skip or fail the test when there is none."""
    assert state.config is not None
    choice = meter_pool(session).choose(state.config.device)
    state.choice = choice
    if choice.skip_reason:
        pytest.skip(choice.skip_reason)
    if choice.error or choice.meter is None:
        state.problem = choice.error
        pytest.fail(f"{state.config.nodeid}: {choice.error}", pytrace=False)
    device = state.config.device if state.config.device != "auto" else choice.device
    return Measurer(choice.meter, device=device, meter_note=choice.note,
                    read_timeout_s=session.config.read_timeout, sync=state.config.sync,
                    idle_baseline=session.config.idle_baseline,
                    settle_max_s=session.config.warmup_settle,
                    progress=progress_line(session, state.config.nodeid))


PROGRESS_AFTER_S = 2.0
"""A test measuring longer than this shows a progress line, so a long run does not look
hung."""


def progress_line(session: EnergySession, nodeid: str) -> Callable[[float], None] | None:
    """A callback printing ``measuring <test>: N s`` on the terminal once a test has
    measured for :data:`PROGRESS_AFTER_S`, then every few seconds (``None`` without a
    terminal, e.g. on an xdist worker)."""
    config = session.pytest_config
    terminal = None if config is None else config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None or session.is_worker:
        return None
    shown = [PROGRESS_AFTER_S]

    def show(seconds: float) -> None:
        if seconds >= shown[0]:
            terminal.write_line(f"energy: measuring {nodeid}: {seconds:.0f} s so far "
                                "(the details say why it takes this long)")
            shown[0] = seconds + 2 * PROGRESS_AFTER_S
    return show


def make_fixture(state: ItemState, session: EnergySession) -> EnergyFixture:
    """The ``energy`` fixture's object for one test (see :func:`pytest_energy.plugin.energy`)."""
    return EnergyFixture(state, lambda: choose_meter(state, session))


def _measured_body(item: pytest.Function, state: ItemState,
                   session: EnergySession) -> Callable[..., Any] | None:
    """``item.obj`` run warm-up + measured times under the plan, or None (with the
    reason in ``state.problem``) when the marker alone cannot measure it."""
    original = item.obj
    if inspect.iscoroutinefunction(original):
        state.problem = ("async test functions are not measured by the marker alone: "
                         "use the energy fixture inside the test")
        return None
    measurer = choose_meter(state, session)
    config = state.config
    assert config is not None
    result = measurer.new_result(config.items)
    state.result = result

    @functools.wraps(original)  # keeps what unittest reads off the method (expectedFailure)
    def measured_body(*args: Any, **kwargs: Any) -> Any:
        try:
            value, _ = measurer.run(lambda: original(*args, **kwargs), warmup=config.warmup,
                                    rounds=config.rounds, trials=config.trials,
                                    max_time_s=config.max_time, result=result)
        except MeterError as exc:
            message = str(exc)
        else:
            return value
        state.problem = message
        pytest.fail(f"energy meter failed: {message}", pytrace=False)

    return measured_body


def _marker_measures(state: ItemState | None) -> bool:
    """The marker alone measures the body (no ``energy`` fixture to do it)."""
    return (state is not None and state.config is not None and state.config.marked
            and not state.uses_fixture)


@contextmanager
def _swapped_body(item: pytest.Function, session: EnergySession) -> Iterator[None]:
    """``item.obj`` replaced by its measured body for the duration of the block."""
    state = item.stash.get(ITEM_STATE, None)
    body = (_measured_body(item, state, session)
            if state is not None and _marker_measures(state) else None)
    if body is None:
        yield
        return
    original = item.obj
    item.obj = body
    try:
        yield
    finally:
        item.obj = original


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """With the marker alone, run the test body under the measurement plan."""
    with _swapped_body(pyfuncitem, pyfuncitem.config.stash[SESSION]):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Judge the budgets once the test body has finished without error.

    A ``unittest.TestCase`` method never reaches ``pytest_pyfunc_call``: its measured
    body is swapped in here (pytest calls ``item.obj`` through the test case)."""
    try:
        if isinstance(item, TestCaseFunction):
            with _swapped_body(item, item.config.stash[SESSION]):
                yield
        else:
            yield  # an exception from the test propagates: no energy verdict on top of it
    except KeyboardInterrupt:
        _record_interrupted(item)
        raise
    if not getattr(item, "_excinfo", None):  # a failed unittest method: no verdict on top
        judge(item)


@pytest.hookimpl(trylast=True, specname="pytest_runtest_call")
def pytest_runtest_call_marker_in_body(item: pytest.Item) -> None:
    """``request.applymarker(pytest.mark.energy_budget(...))`` inside the test body: the
    body has run once, unmeasured; run it again under the plan (warm-up included)."""
    session = item.config.stash.get(SESSION, None)
    if (session is None or not isinstance(item, pytest.Function)
            or isinstance(item, TestCaseFunction) or not has_own_marker(item)):
        return
    state = item.stash.get(ITEM_STATE, None)
    if state is not None and state.config is not None and state.config.has_marker:
        return  # marked before the call: measured already
    adopt_runtime_marker(item, session)
    if _marker_measures(item.stash.get(ITEM_STATE, None)):
        item.ihook.pytest_pyfunc_call(pyfuncitem=item)


def judge(item: pytest.Item) -> None:
    """The budget verdict of a finished call: raise when a budget is exceeded."""
    state = item.stash.get(ITEM_STATE, None)
    if state is None:
        return
    session = item.config.stash[SESSION]
    # An expected failure (xfail) is never waived as contaminated or busy: waiving it
    # would turn xfail(strict=True) into a failing XPASS on a busy machine.
    expected = item.get_closest_marker("xfail") is not None
    check = finish_item(state, EXPECTED if expected else session.config.contention)
    if check is None:
        return
    for warning in check.warnings:
        item.warn(EnergyVerdictWarning(f"{item.nodeid}: {warning}"))
    if not check.passed:
        raise EnergyBudgetExceeded(check.message, pytrace=False)


def _record_interrupted(item: pytest.Item) -> None:
    """Ctrl-C in a measured test: pytest makes no report for it, so keep what was
    measured so far in the summary and the JSON report, marked partial."""
    state = item.stash.get(ITEM_STATE, None)
    session = item.config.stash.get(SESSION, None)
    if state is None or session is None or state.result is None:
        return
    session.entries[item.nodeid] = build_entry(item.nodeid, state).replace(
        outcome=Outcome.INTERRUPTED, partial=True, verdict=Verdict.INTERRUPTED)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the entry (the test's numbers) to the report and add a details section."""
    report = yield
    state = item.stash.get(ITEM_STATE, None)
    if state is None:
        return report
    if call.when == "setup" and report.passed:
        if hasattr(item.config, "workerinput"):  # xdist: announce it, for a crash
            setattr(report, PENDING_ATTRIBUTE, build_entry(item.nodeid, state).to_json())
        return report
    if call.when == "teardown":
        # The entry carries everything from here on: free the live result (its per-call
        # latencies) so suites of thousands of measured tests stay small.
        del item.stash[ITEM_STATE]
        return report
    entry = build_entry(item.nodeid, state)
    setattr(report, ENTRY_ATTRIBUTE, entry.to_json())  # JSON: it crosses the xdist wire
    if call.when == "call" and state.result is not None:
        report.sections.append((ENTRY_ATTRIBUTE, details_section(entry)))
        for prop in user_properties(entry):
            item.user_properties.append(prop)  # junitxml reads them at teardown
            report.user_properties.append(prop)
    return report
