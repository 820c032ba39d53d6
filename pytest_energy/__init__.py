"""pytest-energy: energy and latency budgets for ML inference tests.

The plugin lives in :mod:`pytest_energy.plugin` (entry point ``energy``). The public
API is exported here, imported on first use: pytest imports this package on every run
on a machine where the plugin is installed, and a suite that measures nothing should
not pay for the measuring code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_energy._version import __version__

if TYPE_CHECKING:
    from pytest_energy.errors import EnergyBudgetExceeded, EnergyVerdictWarning
    from pytest_energy.fixture import EnergyFixture
    from pytest_energy.measure import EnergyResult
    from pytest_energy.meters.base import Meter, MeterError

_EXPORTS = {
    "EnergyBudgetExceeded": "pytest_energy.errors",
    "EnergyVerdictWarning": "pytest_energy.errors",
    "EnergyFixture": "pytest_energy.fixture",
    "EnergyResult": "pytest_energy.measure",
    "Meter": "pytest_energy.meters.base",
    "MeterError": "pytest_energy.meters.base",
}

__all__ = ["EnergyBudgetExceeded", "EnergyFixture", "EnergyResult", "EnergyVerdictWarning",
           "Meter", "MeterError", "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_energy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
