"""Per-test hooks: validate and choose the meter at setup, measure the call, judge the
budgets, attach the entry to the report.

Registered by :func:`pytest_energy.plugin.pytest_collection_modifyitems` only when a
collected test has the ``energy_budget`` marker or uses the ``energy`` fixture (or with
``--energy-all``), so suites that measure nothing never import or run them.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any

import pytest

from pytest_energy.config import ItemConfig
from pytest_energy.entry import Outcome, Verdict
from pytest_energy.errors import EnergyBudgetExceeded, EnergyConfigError, EnergyVerdictWarning
from pytest_energy.fixture import EnergyFixture
from pytest_energy.measure import Measurer
from pytest_energy.measure.reference import session_pool
from pytest_energy.meters.base import MeterError
from pytest_energy.meters.loader import MeterPool
from pytest_energy.options import MARKER_NAME
from pytest_energy.report.details import details_section, user_properties
from pytest_energy.session import (
    ENTRY_ATTRIBUTE,
    FIXTURE_NAME,
    ITEM_STATE,
    SESSION,
    EnergySession,
    wants_energy,
)
from pytest_energy.state import ItemState, build_entry, finish_item
from pytest_energy.verdict import EXPECTED


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
    return [_device_line(device, meter_pool(session)) for device in sorted(devices)]


def _device_line(device: str, pool: MeterPool) -> str:
    choice = pool.choose(device)
    if choice.meter is None:
        return (f"energy: device {device} -> not measurable: "
                f"{choice.skip_reason or choice.error}")
    meter = choice.meter
    kind = "estimated" if meter.estimated else "hardware counter"
    line = f"energy: device {device} -> {meter.name} {','.join(meter.domains())} ({kind})"
    return line + (f"; {choice.note}" if choice.note else "")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    session = item.config.stash.get(SESSION, None)
    if session is None or not wants_energy(item, session):
        return
    uses_fixture = FIXTURE_NAME in getattr(item, "fixturenames", ())
    error: str | None = None
    try:
        item_config = ItemConfig.from_item(item, session.config)
    except EnergyConfigError as exc:
        error = str(exc)
    if error is not None:  # fail outside the except block: no chained exception shown
        item.stash[ITEM_STATE] = ItemState(None, uses_fixture, config_error=error)
        pytest.fail(error, pytrace=False)
    state = ItemState(item_config, uses_fixture)
    item.stash[ITEM_STATE] = state
    if item_config.marked:
        choose_meter(state, session)


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
                    settle_max_s=session.config.warmup_settle)


def make_fixture(state: ItemState, session: EnergySession) -> EnergyFixture:
    """The ``energy`` fixture's object for one test (see :func:`pytest_energy.plugin.energy`)."""
    return EnergyFixture(state, lambda: choose_meter(state, session))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """With the marker alone, run the test body under the measurement plan."""
    state = pyfuncitem.stash.get(ITEM_STATE, None)
    if state is None or state.config is None or not state.config.marked or state.uses_fixture:
        return (yield)
    session = pyfuncitem.config.stash[SESSION]
    original = pyfuncitem.obj
    if inspect.iscoroutinefunction(original):
        state.problem = ("async test functions are not measured by the marker alone: "
                         "use the energy fixture inside the test")
        return (yield)
    measurer = choose_meter(state, session)
    config = state.config
    result = measurer.new_result(config.items)
    state.result = result

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

    pyfuncitem.obj = measured_body
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Judge the budgets once the test body has finished without error."""
    try:
        yield  # an exception from the test propagates: no energy verdict on top of it
    except KeyboardInterrupt:
        _record_interrupted(item)
        raise
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
    if state is None or (call.when == "setup" and report.passed):
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
