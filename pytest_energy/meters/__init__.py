"""Energy meters: the protocol, the built-in implementations and the loader.

* :mod:`~pytest_energy.meters.base`: the :class:`Meter` protocol, its optional
  capabilities (:class:`MeterCapabilities`) and the errors every meter speaks;
* :mod:`~pytest_energy.meters.loader`: choosing and caching a meter per device
  (``--energy-meter``), custom meters and the ``pytest_energy.meters`` entry points;
* :mod:`~pytest_energy.meters.guard`: reads with a timeout, so a hung counter cannot
  hang the session;
* :mod:`~pytest_energy.meters.locks`: cross-process device locks, so measured windows
  on one device never overlap;
* the built-in meters :mod:`~pytest_energy.meters.nvml` (with
  :mod:`~pytest_energy.meters.cuda_devices`), :mod:`~pytest_energy.meters.rapl` and
  :mod:`~pytest_energy.meters.estimate`.

Built-in meters are imported by the loader on first use, so that importing the plugin
never imports NVML bindings or touches sysfs.
"""

from pytest_energy.meters.base import (
    Meter,
    MeterCapabilities,
    MeterError,
    MeterUnavailable,
    capabilities,
)

__all__ = ["Meter", "MeterCapabilities", "MeterError", "MeterUnavailable", "capabilities"]
