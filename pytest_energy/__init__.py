"""pytest-energy: energy and latency budgets for ML inference tests.

The plugin lives in :mod:`pytest_energy.plugin` (entry point ``energy``); this package
import stays cheap on purpose: nothing here imports meters, NVML or tabulate.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
