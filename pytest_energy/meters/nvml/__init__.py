"""GPU energy from NVML: the total-energy counter, or sampled power where there is none.

:class:`NvmlMeter` is the only public name; the modules behind it each hold one part:

* :mod:`~pytest_energy.meters.nvml.meter`: the meter (reads, close, describe);
* :mod:`~pytest_energy.meters.nvml.devices`: which GPUs a test measures and how each
  is read, found once at start;
* :mod:`~pytest_energy.meters.nvml.sampler`: power sampling for GPUs without an energy
  counter (pre-Volta, some virtual GPUs);
* :mod:`~pytest_energy.meters.nvml.conditions`: other processes, MIG, module-scope and
  sampled readings, checked right before each measured run;
* :mod:`~pytest_energy.meters.nvml.frameworks`: waiting for work the test queued with
  torch or cupy, which are never imported here;
* :mod:`~pytest_energy.meters.nvml.bindings`: the lazy ``pynvml`` import and NVML's
  error text.

Importing this package is free: ``pynvml`` is imported when a meter is built, so the
plugin works on machines without the package or an NVIDIA driver. The test's view of
devices is honoured: ``"cuda:N"`` means CUDA index N after ``CUDA_VISIBLE_DEVICES`` and
``CUDA_DEVICE_ORDER``, mapped to NVML by :mod:`pytest_energy.meters.cuda_devices`.
"""

from pytest_energy.meters.nvml.meter import NvmlMeter

__all__ = ["NvmlMeter"]
