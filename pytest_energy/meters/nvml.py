"""GPU energy from NVML's total-energy counter.

``nvmlDeviceGetTotalEnergyConsumption`` reports millijoules since the driver was loaded
(Volta and newer; older GPUs answer NotSupported). It is the only NVML reading fit for
short windows: ``nvmlDeviceGetPowerUsage`` is a 1 s average on recent GPUs. The counter
itself steps only every ~20-100 ms (``update_period_s`` = 0.1), so the measuring code
must make windows span many updates; this meter just reads it.

Design points:

* ``pynvml`` is imported inside the constructor: importing this module is free and
  works on machines without the package or an NVIDIA driver.
* The test's view of devices is honoured: ``"cuda:N"`` means CUDA index N after
  ``CUDA_VISIBLE_DEVICES``/``CUDA_DEVICE_ORDER``, mapped to NVML by
  :mod:`pytest_energy.meters.cuda_devices` (NVML itself ignores both variables).
* GPU work is asynchronous, so :meth:`NvmlMeter.read` first waits for work queued by
  torch or cupy -- but only if the test already imported them; we never import them.
* Failures are loud: unsupported counters raise :class:`MeterUnavailable` at
  construction, and a counter that goes backwards or an NVML error mid-measurement
  raises :class:`MeterError`; a failure is never turned into 0 J or a negative number.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.meters.base import MeterError, MeterUnavailable
from pytest_energy.meters.cuda_devices import CudaMapping, NvmlDeviceInfo, map_cuda_to_nvml

_DEVICE_SPEC = re.compile(r"cuda(?::(\d+))?")

_FRIENDLY_ERRORS = {
    "NVMLError_LibraryNotFound": "NVIDIA driver library not found",
    "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
    "NVMLError_NoPermission": "insufficient permissions to use NVML",
    "NVMLError_LibRmVersionMismatch": (
        "NVML library and kernel driver versions differ (reboot or reload the driver)"
    ),
    "NVMLError_GpuIsLost": "the GPU fell off the bus or is otherwise lost",
    "NVMLError_Uninitialized": "NVML is not initialised",
}


def _nvml_reason(exc: BaseException) -> str:
    """``"<what it means> (<NVMLError class>)"`` for messages users can act on."""
    cls = type(exc).__name__
    text = _FRIENDLY_ERRORS.get(cls) or str(exc) or cls
    return f"{text} ({cls})"


def _text(value: Any) -> str:
    """NVML strings: ``str`` in current bindings, ``bytes`` in old ones and PCI structs."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _torch_uuid_oracle() -> Callable[[int], str | None] | None:
    """UUID of CUDA device ``i`` according to torch, if the test already imported torch.

    Used only to disambiguate FASTEST_FIRST ordering on mixed-GPU machines. Asking torch
    initialises its CUDA runtime (no device context), acceptable because torch is
    already in use by the test.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None

    def uuid_of(index: int) -> str | None:
        try:
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        except Exception:
            return None
        return None if uuid is None else str(uuid)

    return uuid_of


@dataclass
class _Gpu:
    """One measured physical GPU and its counter state."""

    domain: str
    cuda_indices: list[int]
    nvml_index: int
    handle: Any
    info: NvmlDeviceInfo
    shared: bool
    assumed: bool
    origin_mj: int
    last_mj: int
    total_mj: int = 0
    facts: dict[str, Any] = field(default_factory=dict)


class NvmlMeter:
    """Cumulative joules per GPU from NVML, for the CUDA devices a test sees.

    Args:
        device: ``"cuda"`` for every visible CUDA device, or ``"cuda:N"`` for CUDA
            index ``N`` as the test sees it.

    Domains are ``gpu:N`` with ``N`` the CUDA index. MIG instances map to their parent
    GPU (energy exists only per GPU); instances sharing a GPU are measured once under
    the lowest CUDA index, and ``describe()`` marks them ``shared``.

    Raises:
        ValueError: ``device`` is not ``"cuda"`` or ``"cuda:N"``.
        MeterUnavailable: pynvml missing, NVML cannot start, no visible device, index
            out of range, or a GPU without a total-energy counter (pre-Volta).
    """

    name = "nvml"
    estimated = False
    update_period_s = 0.1
    """The energy counter steps every ~20-100 ms; windows must span many steps."""

    def __init__(self, device: str = "cuda") -> None:
        match = _DEVICE_SPEC.fullmatch(device.strip())
        if match is None:
            raise ValueError(f"NVML meter device must be 'cuda' or 'cuda:N', got {device!r}")
        self._device_spec = device.strip()
        self._lock = threading.Lock()
        self._closed = True  # becomes False once nvmlInit succeeded
        try:
            import pynvml
        except ImportError as exc:
            raise MeterUnavailable(
                "NVML unavailable: the pynvml module is not installed "
                f"(pip install nvidia-ml-py): {exc}"
            ) from None
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise MeterUnavailable(f"NVML unavailable: {_nvml_reason(exc)}") from None
        except OSError as exc:
            raise MeterUnavailable(f"NVML unavailable: cannot load the library: {exc}") from None
        self._closed = False
        try:
            self._setup(None if match.group(1) is None else int(match.group(1)))
        except BaseException:
            self.close()
            raise

    # -- construction --------------------------------------------------------------------

    def _setup(self, wanted_index: int | None) -> None:
        nvml = self._nvml
        try:
            self.driver_version: str | None = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            self.driver_version = None
        infos, handles = self._enumerate()
        self._cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self._cuda_device_order = os.environ.get("CUDA_DEVICE_ORDER")
        self.mapping: CudaMapping = map_cuda_to_nvml(
            infos,
            self._cuda_visible_devices,
            self._cuda_device_order,
            cuda_uuid_of=_torch_uuid_oracle(),
        )
        visible = list(self.mapping.devices)
        env = f"CUDA_VISIBLE_DEVICES={self._cuda_visible_devices!r}"
        notes = "".join(f"; {note}" for note in self.mapping.notes)
        if not visible:
            raise MeterUnavailable(
                f"NVML unavailable: no CUDA device is visible ({env}; NVML sees "
                f"{len(infos)} GPU(s)){notes}"
            )
        if wanted_index is not None:
            if wanted_index >= len(visible):
                raise MeterUnavailable(
                    f"NVML unavailable: cuda:{wanted_index} does not exist; the test sees "
                    f"{len(visible)} CUDA device(s) ({env}){notes}"
                )
            visible = [visible[wanted_index]]

        by_index = {info.index: info for info in infos}
        gpus: dict[int, _Gpu] = {}
        for cuda_device in visible:
            gpu = gpus.get(cuda_device.nvml_index)
            if gpu is not None:  # another MIG instance of a GPU already measured
                gpu.cuda_indices.append(cuda_device.cuda_index)
                gpu.shared = True
                gpu.assumed = gpu.assumed or cuda_device.assumed
                continue
            info = by_index[cuda_device.nvml_index]
            handle = handles[cuda_device.nvml_index]
            start = self._first_energy(handle, cuda_device.cuda_index, info)
            gpus[cuda_device.nvml_index] = _Gpu(
                domain=f"gpu:{cuda_device.cuda_index}",
                cuda_indices=[cuda_device.cuda_index],
                nvml_index=cuda_device.nvml_index,
                handle=handle,
                info=info,
                shared=cuda_device.shared,
                assumed=cuda_device.assumed,
                origin_mj=start,
                last_mj=start,
            )
        self._gpus = list(gpus.values())
        for gpu in self._gpus:
            gpu.facts = self._fingerprint(gpu)

    def _enumerate(self) -> tuple[list[NvmlDeviceInfo], dict[int, Any]]:
        """Every GPU NVML sees, with what the CUDA mapping needs."""
        nvml = self._nvml
        infos: list[NvmlDeviceInfo] = []
        handles: dict[int, Any] = {}
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            raise MeterUnavailable(
                f"NVML unavailable: cannot count GPUs: {_nvml_reason(exc)}"
            ) from None
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                name = _text(nvml.nvmlDeviceGetName(handle))
                pci_bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
            except nvml.NVMLError as exc:
                raise MeterUnavailable(
                    f"NVML unavailable: cannot query NVML device {index}: {_nvml_reason(exc)}"
                ) from None
            mig_enabled = self._mig_enabled(handle) is True
            infos.append(
                NvmlDeviceInfo(
                    index=index,
                    uuid=uuid,
                    pci_bus_id=pci_bus_id,
                    name=name,
                    mig_enabled=mig_enabled,
                    mig_uuids=self._mig_uuids(handle) if mig_enabled else (),
                )
            )
            handles[index] = handle
        return infos, handles

    def _mig_enabled(self, handle: Any) -> bool | None:
        nvml = self._nvml
        try:
            current = nvml.nvmlDeviceGetMigMode(handle)[0]
        except (nvml.NVMLError, AttributeError):
            return None  # NotSupported on non-MIG GPUs
        return bool(current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))

    def _mig_uuids(self, handle: Any) -> tuple[str, ...]:
        """UUIDs of the MIG instances on a GPU (empty slots answer NotFound)."""
        nvml = self._nvml
        try:
            slots = int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))
        except (nvml.NVMLError, AttributeError):
            return ()
        uuids: list[str] = []
        for slot in range(slots):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                uuids.append(_text(nvml.nvmlDeviceGetUUID(mig)))
            except nvml.NVMLError:
                continue
        return tuple(uuids)

    def _first_energy(self, handle: Any, cuda_index: int, info: NvmlDeviceInfo) -> int:
        nvml = self._nvml
        try:
            return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError_NotSupported:
            raise MeterUnavailable(
                f"gpu {cuda_index} ({info.name}) has no total-energy counter (pre-Volta); "
                "NVML can only measure energy on Volta or newer GPUs. Use another meter "
                "for this machine"
            ) from None
        except nvml.NVMLError as exc:
            raise MeterUnavailable(
                f"NVML unavailable: cannot read the energy counter of gpu {cuda_index} "
                f"({info.name}): {_nvml_reason(exc)}"
            ) from None

    def _fingerprint(self, gpu: _Gpu) -> dict[str, Any]:
        """Device facts at start that explain run-to-run differences; each field optional."""
        nvml = self._nvml
        handle = gpu.handle

        def guarded(call: Callable[[], Any]) -> Any:
            try:
                return call()
            except (nvml.NVMLError, AttributeError, TypeError, ValueError):
                return None

        arch_names = {
            getattr(nvml, attr): attr[len("NVML_DEVICE_ARCH_") :].lower()
            for attr in dir(nvml)
            if attr.startswith("NVML_DEVICE_ARCH_")
        }
        arch = guarded(lambda: nvml.nvmlDeviceGetArchitecture(handle))
        limit_mw = guarded(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        persistence = guarded(lambda: nvml.nvmlDeviceGetPersistenceMode(handle))
        return {
            "architecture": None if arch is None else arch_names.get(arch, str(arch)),
            "power_limit_w": None if limit_mw is None else limit_mw / 1000.0,
            "persistence_mode": (
                None
                if persistence is None
                else persistence == getattr(nvml, "NVML_FEATURE_ENABLED", 1)
            ),
            "sm_clock_mhz": guarded(
                lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
            ),
            "temperature_c": guarded(
                lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            ),
            "mig": self._mig_enabled(handle),
        }

    # -- Meter protocol ----------------------------------------------------------------

    def lock_keys(self) -> list[str]:
        """One cross-process measurement lock per physical GPU (by UUID, never by an
        index, which differs between processes with different CUDA_VISIBLE_DEVICES)."""
        return [f"gpu-{gpu.info.uuid}" for gpu in self._gpus]

    def domains(self) -> list[str]:
        """``gpu:N`` per measured GPU, ``N`` being the CUDA index the test uses."""
        return [gpu.domain for gpu in self._gpus]

    def sync(self) -> None:
        """Wait for GPU work queued by torch or cupy on the measured devices.

        Kernels are launched asynchronously; without this, a window would close while
        the work it should contain is still running. Only libraries the test already
        imported are touched, and torch only if it initialised CUDA (otherwise it has
        queued nothing). Devices on which torch has no CUDA context are skipped where
        torch can tell, so that syncing does not create a context (~hundreds of MB).
        cupy is synchronised on its current device if that device is measured.

        Raises:
            MeterError: the synchronisation failed (typically a CUDA error raised by the
                test's own kernels, which surfaces here).
        """
        cuda_indices = [i for gpu in self._gpus for i in gpu.cuda_indices]
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                cuda = getattr(torch, "cuda", None)
                if cuda is not None and cuda.is_available() and cuda.is_initialized():
                    # Private but long-standing; absent in CPU builds and stubs.
                    has_context = getattr(
                        getattr(torch, "_C", None), "_cuda_hasPrimaryContext", None
                    )
                    for index in cuda_indices:
                        if has_context is None or has_context(index):
                            cuda.synchronize(index)
            except Exception as exc:
                raise MeterError(
                    f"torch.cuda.synchronize failed before reading NVML: {exc}"
                ) from exc
        cupy = sys.modules.get("cupy")
        if cupy is not None:
            try:
                cupy_cuda = getattr(cupy, "cuda", None)
                if cupy_cuda is not None and cupy_cuda.is_available():
                    current = int(cupy_cuda.runtime.getDevice())
                    if current in cuda_indices:
                        cupy_cuda.Device(current).synchronize()
            except Exception as exc:
                raise MeterError(
                    f"cupy device synchronize failed before reading NVML: {exc}"
                ) from exc

    def read(self) -> dict[str, float]:
        """Joules per domain since construction, after :meth:`sync`.

        Raises:
            MeterError: NVML failed, or a counter went backwards (driver reload or GPU
                reset). After a backwards step the meter rebases on the new value, so
                the spoiled window errors and later windows measure normally.
        """
        if self._closed:
            raise MeterError("NVML meter read after close()")
        self.sync()
        nvml = self._nvml
        with self._lock:
            if self._closed:
                raise MeterError("NVML meter read after close()")
            values: list[int] = []
            for gpu in self._gpus:
                try:
                    values.append(int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)))
                except nvml.NVMLError as exc:
                    raise MeterError(
                        f"NVML energy read failed for {gpu.domain} ({gpu.info.name}, "
                        f"{gpu.info.uuid}): {_nvml_reason(exc)}"
                    ) from exc
            for gpu, value in zip(self._gpus, values, strict=True):
                if value < gpu.last_mj:
                    previous, gpu.last_mj = gpu.last_mj, value
                    raise MeterError(
                        f"NVML energy counter of {gpu.domain} ({gpu.info.name}, "
                        f"{gpu.info.uuid}) went backwards from {previous} mJ to {value} mJ: "
                        "the driver was reloaded or the GPU was reset during the measurement"
                    )
            for gpu, value in zip(self._gpus, values, strict=True):
                gpu.total_mj += value - gpu.last_mj
                gpu.last_mj = value
            return {gpu.domain: gpu.total_mj / 1000.0 for gpu in self._gpus}

    def close(self) -> None:
        """Shut NVML down once; later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Nothing useful to do about a failing shutdown at teardown.
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    # -- extras ----------------------------------------------------------------------------

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
            "devices": [
                {
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
                }
                for gpu in self._gpus
            ],
        }

    def __repr__(self) -> str:
        return f"NvmlMeter(device={self._device_spec!r}, domains={self.domains()!r})"
