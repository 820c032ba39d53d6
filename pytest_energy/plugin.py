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
registered only when a collected test asks for energy, the history only when a gate
option is on, and the reporting code only when there is something to report.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.history.gate_config import gate_arguments
from pytest_energy.options import (
    MARKER_HELP,
    RIGHTSIZING_SETTINGS,
    SessionConfig,
    add_options,
    resolve_setting,
)
from pytest_energy.session import ITEM_STATE, SESSION, EnergySession, wants_energy

if TYPE_CHECKING:
    from pytest_energy.fixture import EnergyFixture

TEST_HOOKS = "energy-tests"  # name of the registered pytest_energy.testhooks plugin
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
    if gate_options is not None:  # the history (SQLite, statistics) only when asked for
        gate = importlib.import_module(GATE_MODULE).RegressionGate(**gate_options)
    session = EnergySession(session_config, is_worker=is_worker,
                            rightsizing_values=rightsizing_values)
    session.gate = gate
    session.pytest_config = config
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "energy-session")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Register the per-test hooks only when some collected test asks for energy.

    A suite (or an xdist worker's share of it) that measures nothing then runs none of
    the plugin's per-test hooks: the plugin costs its import and this scan.
    """
    session = config.stash.get(SESSION, None)
    if session is None or config.pluginmanager.has_plugin(TEST_HOOKS):
        return
    if any(wants_energy(item, session) for item in items):
        config.pluginmanager.register(importlib.import_module(MEASURING_MODULE), TEST_HOOKS)


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> EnergyFixture:
    """Measure a callable (``energy(fn, *args)``) or a block (``with energy.measure():``).

    Read the numbers from ``energy.result``. With an ``energy_budget`` marker, its
    budgets apply to what this fixture measured.
    """
    session = request.config.stash.get(SESSION, None)
    state = request.node.stash.get(ITEM_STATE, None)
    if session is None or state is None or state.config is None:
        raise pytest.UsageError("the energy fixture needs the pytest-energy plugin enabled")
    testhooks = importlib.import_module(MEASURING_MODULE)
    fixture: EnergyFixture = testhooks.make_fixture(state, session)
    return fixture
