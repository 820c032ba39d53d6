"""Measuring a test: the driver, the two plans, and the result they fill.

:class:`Measurer` (``driver``) runs the code under a plan: plain windows
(``windows``) or, for coarse stepped counters, phase-aligned windows (``aligned``,
with block placement in ``blocks``, the sampling arithmetic and accuracy check in
``sampling``, and the counter's steps in ``tracker`` and ``grid``). Every
plan adds trials to an :class:`EnergyResult` (``results``), whose statistics come
from the plan's strategy (``statistics``).
"""

from pytest_energy.measure.driver import Measurer
from pytest_energy.measure.results import EnergyResult, Trial, percentile

__all__ = ["EnergyResult", "Measurer", "Trial", "percentile"]
