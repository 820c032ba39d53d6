"""The NVML meter: cumulative joules per GPU for the CUDA devices a test sees.

``nvmlDeviceGetTotalEnergyConsumption`` reports millijoules since the driver was
loaded (Volta and newer) and is the best NVML reading for short windows; it steps only
every ~20-100 ms, so the measuring code makes windows span many steps and this meter
just reads it. GPUs without that counter are sampled instead
(:mod:`pytest_energy.meters.nvml.sampler`).

Failures are loud: a GPU with neither an energy counter nor a power reading raises
:class:`MeterUnavailable` at construction, and a counter that goes backwards or an NVML
error mid-measurement raises :class:`MeterError`; a failure never becomes 0 J or a
negative number.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from typing import Any

from pytest_energy.meters.base import MeterError, MeterUnavailable
from pytest_energy.meters.cuda_devices import CudaMapping
from pytest_energy.meters.nvml.bindings import load_pynvml, nvml_reason, sample_reason
from pytest_energy.meters.nvml.conditions import gpu_conditions
from pytest_energy.meters.nvml.devices import DEVICE_SPEC, MeasuredGpu, discover
from pytest_energy.meters.nvml.frameworks import synchronize
from pytest_energy.meters.nvml.sampler import (
    SAMPLE_PERIOD_S,
    PowerSampler,
    PowerTrack,
    stop_sampler,
)

# How long close() waits for the sampler thread (it finishes at most one NVML call).
_STOP_TIMEOUT_S = 2.0
# GPUs whose power sensor is published to average 25 ms of every 100 ms (Yang, Adamek,
# Armour, SC'24, arXiv 2312.02741: A100 and H100). Hopper parts share the H100's
# sensor design; the measuring plan uses the window to sample every part of a call
# (pytest_energy.measure.sampling). Unlisted GPUs get None: the plan then assumes the worst.
PART_TIME_SENSOR = re.compile(r"\b(A100|A800|H100|H200|H800|H20|GH200)\b", re.IGNORECASE)
PART_TIME_SENSOR_WINDOW_S = 0.025


class NvmlMeter:
    """Cumulative joules per GPU from NVML, for the CUDA devices a test sees.

    Args:
        device: ``"cuda"`` for every visible CUDA device, or ``"cuda:N"`` for CUDA
            index ``N`` as the test sees it.
        sample_power: sample power on every GPU even where an energy counter exists.
            For cross-checking the sampler against the counter (``bench/gpu_check.py``);
            the counter is the better reading, so the plugin never asks for this.

    Domains are ``gpu:N`` with ``N`` the CUDA index. MIG instances map to their parent
    GPU (energy exists only per GPU); instances sharing a GPU are measured once under
    the lowest CUDA index, and ``describe()`` marks them ``shared``.

    A GPU without a total-energy counter is measured by sampling its power; the meter
    is then ``sampled`` and, when every measured GPU is sampled, its
    ``update_period_s`` is the sampling period.

    Raises:
        ValueError: ``device`` is not ``"cuda"`` or ``"cuda:N"``.
        MeterUnavailable: pynvml missing, NVML cannot start, no visible device, index
            out of range, or a GPU with neither a total-energy counter nor a power
            reading.
    """

    name = "nvml"
    estimated = False
    update_period_s = 0.1
    """The energy counter steps every ~20-100 ms; windows must span many steps."""
    sampled = False
    """True when some GPU's energy is integrated from sampled power, not a counter."""
    sample_period_s: float | None = None
    """The power sampling period of a sampled meter; ``None`` otherwise."""

    @property
    def sensor_window_s(self) -> float | None:
        """How much of each counter period the power sensor averages, where published
        (:data:`PART_TIME_SENSOR`); ``None`` (unknown) otherwise, or when the measured
        GPUs differ."""
        windows = {PART_TIME_SENSOR_WINDOW_S if PART_TIME_SENSOR.search(gpu.info.name)
                   else None for gpu in self._gpus}
        return windows.pop() if len(windows) == 1 and not self.sampled else None

    @property
    def stepped_counter(self) -> bool:
        """The energy counter steps at a coarse period fed by a part-time sensor: the
        measuring code then aligns windows to its steps (pytest_energy.measure.aligned). A
        sampled meter integrates fresh samples at every read and has no steps."""
        return not self.sampled

    def __init__(self, device: str = "cuda", *, sample_power: bool = False) -> None:
        match = DEVICE_SPEC.fullmatch(device.strip())
        if match is None:
            raise ValueError(f"NVML meter device must be 'cuda' or 'cuda:N', got {device!r}")
        self._device_spec = device.strip()
        self._lock = threading.Lock()
        self._closed = True  # becomes False once nvmlInit succeeded
        self._sampler: PowerSampler | None = None
        self._sample_power = sample_power
        self._nvml: Any = load_pynvml()
        self._closed = False
        try:
            self._setup(None if match.group(1) is None else int(match.group(1)))
        except BaseException:
            self.close()
            raise

    # -- construction --------------------------------------------------------------------

    def _setup(self, wanted_index: int | None) -> None:
        found = discover(self._nvml, wanted_index, sample_power=self._sample_power)
        self.driver_version: str | None = found.driver_version
        self._cuda_visible_devices = found.cuda_visible_devices
        self._cuda_device_order = found.cuda_device_order
        self.mapping: CudaMapping = found.mapping
        self._gpus: list[MeasuredGpu] = found.gpus
        tracks = [gpu.track for gpu in self._gpus if gpu.track is not None]
        if tracks:
            self._start_sampler(tracks)

    def _start_sampler(self, tracks: list[PowerTrack]) -> None:
        """Start sampling power for GPUs without an energy counter."""
        sampler = PowerSampler(self._nvml, tracks, SAMPLE_PERIOD_S)
        try:
            sampler.prime()
        except Exception as exc:
            raise MeterUnavailable(
                f"NVML unavailable: cannot sample the power of "
                f"{', '.join(t.label for t in tracks)}: {sample_reason(exc)}"
            ) from None
        self._sampler = sampler
        sampler.start()
        # A meter dropped without close() (or alive at exit) still stops its thread.
        weakref.finalize(self, stop_sampler, sampler)
        self.sampled = True
        self.sample_period_s = SAMPLE_PERIOD_S
        if all(gpu.track is not None for gpu in self._gpus):
            self.update_period_s = SAMPLE_PERIOD_S

    # -- Meter protocol ----------------------------------------------------------------

    def lock_keys(self) -> list[str]:
        """One cross-process measurement lock per physical GPU (by UUID, never by an
        index, which differs between processes with different CUDA_VISIBLE_DEVICES)."""
        return [f"gpu-{gpu.info.uuid}" for gpu in self._gpus]

    def domains(self) -> list[str]:
        """``gpu:N`` per measured GPU, ``N`` being the CUDA index the test uses."""
        return [gpu.domain for gpu in self._gpus]

    def sync(self) -> None:
        """Wait for GPU work queued by torch or cupy on the measured devices, so a
        window holds the work of its calls
        (:func:`pytest_energy.meters.nvml.frameworks.synchronize`).

        Raises:
            MeterError: the synchronisation failed (typically a CUDA error raised by the
                test's own kernels, which surfaces here).
        """
        synchronize([i for gpu in self._gpus for i in gpu.cuda_indices])

    def read(self) -> dict[str, float]:
        """Joules per domain since construction, after :meth:`sync`.

        Sampled GPUs report their power integral up to a sample taken now.

        Raises:
            MeterError: NVML failed, a counter went backwards (driver reload or GPU
                reset), or the power sampler failed since the last read. After a
                backwards step the meter rebases on the new value (after a sampler
                error, the integral restarts now), so the spoiled window errors and
                later windows measure normally.
        """
        if self._closed:
            raise MeterError("NVML meter read after close()")
        self.sync()
        with self._lock:
            if self._closed:
                raise MeterError("NVML meter read after close()")
            self._advance_counters()
            sampled = self._sampler.read() if self._sampler is not None else {}
            return {
                gpu.domain: gpu.total_mj / 1000.0 if gpu.track is None else sampled[gpu.domain]
                for gpu in self._gpus
            }

    def _advance_counters(self) -> None:
        """Read every energy counter, then add the steps; all or nothing, so a failed
        read leaves no GPU half-advanced."""
        counted = [gpu for gpu in self._gpus if gpu.track is None]
        values = [self._counter_mj(gpu) for gpu in counted]
        for gpu, value in zip(counted, values, strict=True):
            if value < gpu.last_mj:
                previous, gpu.last_mj = gpu.last_mj, value
                raise MeterError(
                    f"NVML energy counter of {gpu.domain} ({gpu.info.name}, "
                    f"{gpu.info.uuid}) went backwards from {previous} mJ to {value} mJ: "
                    "the driver was reloaded or the GPU was reset during the measurement"
                )
        for gpu, value in zip(counted, values, strict=True):
            gpu.total_mj += value - gpu.last_mj
            gpu.last_mj = value

    def _counter_mj(self, gpu: MeasuredGpu) -> int:
        nvml = self._nvml
        try:
            return int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        except nvml.NVMLError as exc:
            raise MeterError(
                f"NVML energy read failed for {gpu.domain} ({gpu.info.name}, "
                f"{gpu.info.uuid}): {nvml_reason(exc)}"
            ) from exc

    def close(self) -> None:
        """Stop and join the power sampler, then shut NVML down; once, later calls do
        nothing.

        Raises:
            MeterError: the sampler thread is stuck in an NVML call and did not stop
                within 2 s. NVML is then left initialised (shutting it down under a
                running call could crash the process); the thread is a daemon.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._sampler is not None and not self._sampler.stop(_STOP_TIMEOUT_S):
            raise MeterError(
                f"NVML power sampler did not stop within {_STOP_TIMEOUT_S:g} s (an NVML "
                "call hangs); NVML was left initialised"
            )
        # Nothing useful to do about a failing shutdown at teardown.
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    # -- optional capabilities (see pytest_energy.meters.base.MeterCapabilities) ------------

    def conditions(self) -> list[str]:
        """Flags about the measured GPUs right now, each starting with a keyword
        (``contaminated:``, ``display:``, ``shared:``, ``module-scope:``, ``sampled:``,
        ``unknown:``; see :mod:`pytest_energy.meters.nvml.conditions`).

        Called by the measuring code right before each measured run; a handful of NVML
        calls (two process lists per GPU), everything else was found at start.

        Raises:
            MeterError: the meter is closed.
        """
        if self._closed:
            raise MeterError("NVML meter used after close()")
        return gpu_conditions(self._nvml, self._gpus)

    def power_limits_w(self) -> dict[str, float | None]:
        """Enforced power limit per domain in watts (``None`` where NVML has none), as
        read at start: what the GPU may draw, to tell a busy GPU from an idling one."""
        limits: dict[str, float | None] = {}
        for gpu in self._gpus:
            limit = gpu.facts.get("power_limit_w")
            limits[gpu.domain] = None if limit is None else float(limit)
        return limits

    def describe(self) -> dict[str, Any]:
        """Fingerprint of the measured GPUs for the JSON report (facts taken at start)."""
        return {
            "meter": self.name,
            "device": self._device_spec,
            "driver_version": self.driver_version,
            "cuda_visible_devices": self._cuda_visible_devices,
            "cuda_device_order": self._cuda_device_order,
            "mapping_assumed": any(gpu.assumed for gpu in self._gpus),
            "mapping_notes": list(self.mapping.notes),
            "sampled": self.sampled,
            "sample_period_s": self.sample_period_s,
            "sensor_window_s": self.sensor_window_s,
            "devices": [self._describe_gpu(gpu) for gpu in self._gpus],
        }

    def _describe_gpu(self, gpu: MeasuredGpu) -> dict[str, Any]:
        return {
            "domain": gpu.domain,
            "cuda_indices": list(gpu.cuda_indices),
            "nvml_index": gpu.nvml_index,
            "name": gpu.info.name,
            "uuid": gpu.info.uuid,
            "pci_bus_id": gpu.info.pci_bus_id,
            "driver_version": self.driver_version,
            **gpu.facts,
            "shared": gpu.shared,
            "mapping_assumed": gpu.assumed,
            "source": gpu.source,
        }

    def __repr__(self) -> str:
        return f"NvmlMeter(device={self._device_spec!r}, domains={self.domains()!r})"
