"""Errors the plugin raises on purpose; each message is meant to be shown as-is."""

from __future__ import annotations

import pytest


class EnergyConfigError(ValueError):
    """A value given by the user (marker, CLI, environment, ini) is not acceptable.

    The message names the argument, what was given and what is accepted; the caller
    prefixes where the value came from (``marker on tests/test_x.py::test_y``,
    ``--energy-rounds``, ``PYTEST_ENERGY_ROUNDS``, ``ini energy_rounds``).
    """


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


class EnergyNotMeasuredWarning(pytest.PytestWarning):
    """Tests the plugin was asked to measure but cannot: ``--energy-all`` over doctests
    and other items that have no function to call repeatedly."""
