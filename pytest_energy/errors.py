"""Errors the plugin raises on purpose; each message is meant to be shown as-is."""

from __future__ import annotations


class EnergyConfigError(ValueError):
    """A value given by the user (marker, CLI, environment, ini) is not acceptable.

    The message names the argument, what was given and what is accepted; the caller
    prefixes where the value came from (``marker on tests/test_x.py::test_y``,
    ``--energy-rounds``, ``PYTEST_ENERGY_ROUNDS``, ``ini energy_rounds``).
    """
