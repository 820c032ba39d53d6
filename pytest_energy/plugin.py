"""pytest hooks of pytest-energy; the logic lives in the modules they call.

Flow for one test that has the ``energy_budget`` marker:
setup (validate the marker, choose the meter; skip or error with a message) ->
call (run the body warm-up + measured times, unless the test uses the ``energy``
fixture; then judge the budgets) -> makereport (attach the entry to the report) ->
logreport (collect entries; on the xdist controller they arrive with the reports) ->
sessionfinish (ratings, JSON report, gate) -> terminal summary (the table).

Import cost matters: this module is imported by every pytest run on a machine where
the plugin is installed. It imports only the options, the session and the gate's
option check; the measuring code (:mod:`pytest_energy.testhooks`) is imported and
registered only when a collected test asks for energy (or a marker is added at run
time: :class:`RuntimeMarkerWatch`), the history only when a gate option is on, and the
reporting code only when there is something to report.

``--energy-disable`` keeps the options, the marker and the fixture registered and
registers nothing else: bodies run once, the fixture hands out a pass-through.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from pytest_energy._version import __version__
from pytest_energy.errors import EnergyConfigError, EnergyNotMeasuredWarning
from pytest_energy.history.gate_config import gate_arguments
from pytest_energy.options import (
    MARKER_HELP,
    RIGHTSIZING_SETTINGS,
    SessionConfig,
    add_options,
    resolve_setting,
)
from pytest_energy.session import (
    ITEM_STATE,
    SESSION,
    EnergySession,
    has_own_marker,
    measurable,
    wants_energy,
)

if TYPE_CHECKING:
    from pytest_energy.fixture import DisabledEnergy, EnergyFixture

TEST_HOOKS = "energy-tests"  # name of the registered pytest_energy.testhooks plugin
WATCH = "energy-watch"  # name of the registered RuntimeMarkerWatch
MEASURING_MODULE = "pytest_energy.testhooks"
GATE_MODULE = "pytest_energy.history.gate"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        session_config = SessionConfig.from_config(config)
        rightsizing_values = {s.name: resolve_setting(s, config).value
                              for s in RIGHTSIZING_SETTINGS}
        is_worker = hasattr(config, "workerinput")
        gate_options = None if is_worker else gate_arguments(config)
    except EnergyConfigError as exc:
        raise pytest.UsageError(f"pytest-energy: {exc}") from None
    gate = None
    if gate_options is not None and not session_config.disabled:  # the history only when asked
        gate = importlib.import_module(GATE_MODULE).RegressionGate(**gate_options)
    session = EnergySession(session_config, is_worker=is_worker,
                            rightsizing_values=rightsizing_values)
    session.gate = gate
    session.pytest_config = config
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "energy-session")


def pytest_report_header(config: pytest.Config) -> str:
    """The plugin's version in pytest's header, and whether it measures at all."""
    session = config.stash.get(SESSION, None)
    if session is not None and session.config.disabled:
        return f"pytest-energy {__version__}: measuring disabled (--energy-disable)"
    return f"pytest-energy {__version__}"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Register the per-test hooks only when some collected test asks for energy.

    A suite (or an xdist worker's share of it) that measures nothing then runs none of
    the plugin's per-test hooks, only :class:`RuntimeMarkerWatch`'s two cheap checks:
    the plugin costs its import, this scan and those checks.
    """
    session = config.stash.get(SESSION, None)
    if session is None or session.config.disabled or config.pluginmanager.has_plugin(
            TEST_HOOKS):
        return
    if session.config.measure_all:
        _warn_not_measurable(items)
    if any(wants_energy(item, session) for item in items):
        _register_test_hooks(config)
    elif not config.pluginmanager.has_plugin(WATCH):
        config.pluginmanager.register(RuntimeMarkerWatch(), WATCH)


def _warn_not_measurable(items: list[pytest.Item]) -> None:
    """``--energy-all`` leaves doctests and other non-function items unmeasured: say so
    once, with the kinds and a count, instead of a silent "not measured" per test."""
    skipped = [item for item in items if not measurable(item)]
    if skipped:
        kinds = ", ".join(sorted({type(item).__name__ for item in skipped}))
        warnings.warn(EnergyNotMeasuredWarning(
            f"--energy-all does not measure {len(skipped)} test(s) of kind {kinds}: "
            "doctests and other non-function items have no body the plugin can call "
            "repeatedly (they run once, unmeasured); test functions and unittest.TestCase "
            "methods are measured"), stacklevel=1)


def _register_test_hooks(config: pytest.Config) -> ModuleType:
    """The per-test hooks, registered once (the watch steps aside: they do its job)."""
    testhooks = importlib.import_module(MEASURING_MODULE)
    if not config.pluginmanager.has_plugin(TEST_HOOKS):
        config.pluginmanager.register(testhooks, TEST_HOOKS)
    watch = config.pluginmanager.get_plugin(WATCH)
    if watch is not None:
        config.pluginmanager.unregister(watch, WATCH)
    return testhooks


class RuntimeMarkerWatch:
    """Registered where no collected test asks for energy: notices an ``energy_budget``
    marker added at run time and only then registers the per-test hooks.

    A fixture's ``request.applymarker`` and another plugin's setup hook run before this
    trylast setup check; a marker applied in the test body is seen after the call (the
    body then runs again, measured). Each check scans the test's own markers only.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if has_own_marker(item):
            _register_test_hooks(item.config).pytest_runtest_setup_late(item)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        if has_own_marker(item):
            testhooks = _register_test_hooks(item.config)
            testhooks.pytest_runtest_call_marker_in_body(item)
            testhooks.judge(item)


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> EnergyFixture | DisabledEnergy:
    """Measure a callable (``energy(fn, *args)``) or a block (``with energy.measure():``).

    Read the numbers from ``energy.result``. With an ``energy_budget`` marker, its
    budgets apply to what this fixture measured. With ``--energy-disable`` it calls
    ``fn`` (runs the block) once and every result field is None.
    """
    session = request.config.stash.get(SESSION, None)
    if session is None:
        raise pytest.UsageError("the energy fixture needs the pytest-energy plugin enabled")
    if session.config.disabled:
        from pytest_energy.fixture import DisabledEnergy

        return DisabledEnergy()
    testhooks = _register_test_hooks(request.config)
    state = request.node.stash.get(ITEM_STATE, None)
    if state is None:  # requested at run time (request.getfixturevalue("energy"))
        state = testhooks.start(request.node, session, uses_fixture=True)
    fixture: EnergyFixture = testhooks.make_fixture(state, session)
    return fixture
