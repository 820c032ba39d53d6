"""Energy meters: the protocol, the built-in implementations and the loader.

Built-in meters are imported lazily by :mod:`pytest_energy.meters.loader` so that
importing the plugin never imports NVML bindings or touches sysfs.
"""

from pytest_energy.meters.base import Meter, MeterError, MeterUnavailable

__all__ = ["Meter", "MeterError", "MeterUnavailable"]
