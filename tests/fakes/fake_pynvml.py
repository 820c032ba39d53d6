"""A programmable stand-in for the ``pynvml`` module (nvidia-ml-py).

Install it with :func:`install` (``monkeypatch.setitem(sys.modules, "pynvml", fake)``) so
that ``import pynvml`` inside the meter returns it. It mirrors what the NVML meter relies
on in the real bindings:

* the error hierarchy: ``NVMLError(code)`` instantiates the per-code subclass
  (``NVMLError_NotSupported``, ``NVMLError_LibraryNotFound``, ...), each subclass can be
  raised without arguments, and ``.value`` holds the code;
* function names and parameter names (checked against the real module by a test);
* NVML's rules: every call but ``nvmlInit`` fails with ``Uninitialized`` unless NVML is
  initialised, init/shutdown are reference counted, MIG handles have no energy counter;
* return types: strings as ``str``, the PCI info struct's ``busId`` as ``bytes``,
  field values as a ctypes array of ``c_nvmlFieldValue_t`` (same ``_fields_`` as the
  real struct: ``.timestamp`` in microseconds since 1970, ``.nvmlReturn`` per field,
  ``.value.uiVal`` in mW for power), running processes as objects with ``.pid`` and
  ``.usedGpuMemory``.

Devices are :class:`FakeGpu` objects whose energy counter (mJ) the test sets directly
or advances with a power trace, optionally quantised to the counter's ~100 ms steps,
and which can fail on chosen reads. A GPU can instead follow the wall clock
(:meth:`FakeGpu.follow_real_time`): its power trace is then a function of real seconds
since that call, so a background sampler thread sees it change in real time, and its
energy counter integrates the same trace.
"""

from __future__ import annotations

import ctypes
import math
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

# Return codes, same names and values as pynvml.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

# Constants the meter reads.
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_DEVICE_ARCH_KEPLER = 2
NVML_DEVICE_ARCH_MAXWELL = 3
NVML_DEVICE_ARCH_PASCAL = 4
NVML_DEVICE_ARCH_VOLTA = 5
NVML_DEVICE_ARCH_TURING = 6
NVML_DEVICE_ARCH_AMPERE = 7
NVML_DEVICE_ARCH_ADA = 8
NVML_DEVICE_ARCH_HOPPER = 9
NVML_DEVICE_ARCH_BLACKWELL = 10
NVML_DEVICE_ARCH_UNKNOWN = 0xFFFFFFFF
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG = 2
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
NVML_VALUE_TYPE_SIGNED_LONG_LONG = 4
NVML_VALUE_TYPE_SIGNED_INT = 5
NVML_VALUE_TYPE_UNSIGNED_SHORT = 6
NVML_VALUE_TYPE_COUNT = 7

# A fixed "1970 epoch" offset for field timestamps of simulated (not real-time) GPUs.
SIMULATED_EPOCH_S = 1_700_000_000.0


class NVMLError(Exception):
    """Base NVML error; ``NVMLError(code)`` returns an instance of the code's subclass."""

    _by_code: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int = NVML_ERROR_UNKNOWN, *args: object) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, NVMLError)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:  # the real class compares codes, too
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


def _class_name(constant: str) -> str:
    """``NVML_ERROR_LIBRARY_NOT_FOUND`` -> ``NVMLError_LibraryNotFound`` (pynvml's rule)."""
    words = constant[len("NVML_ERROR_") :].split("_")
    return "NVMLError_" + "".join(word.capitalize() for word in words)


def _make_error_classes() -> dict[str, type[NVMLError]]:
    classes: dict[str, type[NVMLError]] = {}
    for constant, code in list(globals().items()):
        if not constant.startswith("NVML_ERROR_"):
            continue

        def new(cls: type[NVMLError], *args: object) -> NVMLError:
            return NVMLError.__new__(cls, cls._code)  # type: ignore[attr-defined]

        subclass = type(_class_name(constant), (NVMLError,), {"__new__": new, "_code": code})
        subclass.__module__ = __name__
        NVMLError._by_code[code] = subclass
        classes[subclass.__name__] = subclass
    return classes


ERROR_CLASSES = _make_error_classes()
globals().update(ERROR_CLASSES)


def error_class(code: int) -> type[NVMLError]:
    """The subclass the fake raises for ``code`` (e.g. to use in ``pytest.raises``)."""
    return NVMLError._by_code[code]


class c_nvmlValue_t(ctypes.Union):
    """Same layout as ``pynvml.c_nvmlValue_t``."""

    _fields_: ClassVar[list[tuple[str, Any]]] = [
        ("dVal", ctypes.c_double),
        ("uiVal", ctypes.c_uint),
        ("ulVal", ctypes.c_ulong),
        ("ullVal", ctypes.c_ulonglong),
        ("sllVal", ctypes.c_longlong),
        ("siVal", ctypes.c_int),
        ("usVal", ctypes.c_ushort),
    ]


class c_nvmlFieldValue_t(ctypes.Structure):
    """Same layout as ``pynvml.c_nvmlFieldValue_t`` (value type and return are c_uint)."""

    _fields_: ClassVar[list[tuple[str, Any]]] = [
        ("fieldId", ctypes.c_uint32),
        ("scopeId", ctypes.c_uint32),
        ("timestamp", ctypes.c_int64),
        ("latencyUsec", ctypes.c_int64),
        ("valueType", ctypes.c_uint),
        ("nvmlReturn", ctypes.c_uint),
        ("value", c_nvmlValue_t),
    ]


@dataclass
class FakeProcess:
    """One entry of ``nvmlDeviceGet{Compute,Graphics}RunningProcesses`` (the real
    bindings return a "friendly object" with these attributes)."""

    pid: int
    usedGpuMemory: int | None = 512 * 2**20
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class PciInfo:
    """The fields of ``nvmlPciInfo_t`` that matter; ``busId`` is bytes as in ctypes."""

    busId: bytes
    busIdLegacy: bytes
    domain: int
    bus: int
    device: int


@dataclass
class FakeMig:
    """Handle of one MIG instance (``nvmlDeviceGetMigDeviceHandleByIndex``)."""

    parent: FakeGpu
    uuid: str


@dataclass(eq=False)
class FakeGpu:
    """A simulated GPU.

    Energy: ``energy_mj`` is what ``nvmlDeviceGetTotalEnergyConsumption`` returns. Set it
    directly, or call :meth:`advance` to integrate ``power_w`` (watts, constant or a
    function of the device's simulated time) with the counter only stepping every
    ``counter_period_s`` like real GPUs (0 = continuous).

    Power readings: ``nvmlDeviceGetFieldValues`` answers ``NVML_FI_DEV_POWER_INSTANT``
    unless ``instant_power_supported=False`` (then that field's ``nvmlReturn`` is
    NotSupported, as NVML does per field); ``nvmlDeviceGetPowerUsage`` answers unless
    ``power_supported=False``, averaged over the trailing ``power_average_s`` (1.0
    mimics Ampere and newer; 0 = instant). ``power_sensor_period_s`` > 0 makes the
    sensor sample-and-hold: readings (and their timestamps) change only at its ticks.
    ``power_reads`` counts power readings of both kinds.

    Time: simulated (``time_s``, moved by :meth:`advance`) unless
    :meth:`follow_real_time` was called; then ``power_w(t)`` gets real seconds since
    that call and the energy counter catches up with the wall clock on every read.

    Processes: ``compute_processes`` / ``graphics_processes`` are what the running
    process queries return (make them NotSupported through ``errors``).

    Faults: ``energy_supported=False`` (pre-Volta: NotSupported), ``errors`` maps a
    function name to the NVML code it raises for this device, :meth:`fail_read` makes a
    future energy read raise, :meth:`reset_counter` simulates a driver reload.
    """

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    pci_bus_id: str = "00000000:01:00.0"
    architecture: int = NVML_DEVICE_ARCH_HOPPER
    energy_mj: int = 1_000_000
    power_w: float | Callable[[float], float] = 0.0
    counter_period_s: float = 0.0
    energy_supported: bool = True
    power_limit_mw: int = 700_000
    persistence_mode: int = NVML_FEATURE_ENABLED
    sm_clock_mhz: int = 1980
    temperature_c: int = 34
    mig_mode: int = NVML_DEVICE_MIG_DISABLE
    mig_uuids: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    energy_reads: int = 0
    time_s: float = 0.0
    instant_power_supported: bool = True
    power_supported: bool = True
    power_average_s: float = 0.0
    power_sensor_period_s: float = 0.0
    power_reads: int = 0
    compute_processes: list[FakeProcess] = field(default_factory=list)
    graphics_processes: list[FakeProcess] = field(default_factory=list)
    _scheduled_failures: dict[int, int] = field(default_factory=dict)
    _pending_mj: float = 0.0
    _real_origin: float | None = None
    _epoch_s: float = SIMULATED_EPOCH_S
    _clock_lock: threading.Lock = field(default_factory=threading.Lock)

    def follow_real_time(self) -> None:
        """From now on the device's time is real seconds since this call (see class)."""
        with self._clock_lock:
            self._epoch_s = time.time() - self.time_s
            self._real_origin = time.perf_counter() - self.time_s

    def now(self) -> float:
        """The device's time in seconds; in real-time mode, catch the counter up first."""
        with self._clock_lock:
            if self._real_origin is not None:
                elapsed = time.perf_counter() - self._real_origin
                if elapsed > self.time_s:
                    self.advance(elapsed - self.time_s)
            return self.time_s

    def power_reading(self, average_s: float = 0.0) -> tuple[float, float]:
        """``(watts, time of the sensor sample)``, as the power sensor reports it now."""
        self.power_reads += 1
        t = self.now()
        if self.power_sensor_period_s > 0:
            t = math.floor(t / self.power_sensor_period_s + 1e-9) * self.power_sensor_period_s
        if average_s <= 0:
            return self.power_at(t), t
        points = 50
        start = t - average_s
        watts = [self.power_at(max(0.0, start + average_s * (i + 0.5) / points))
                 for i in range(points)]
        return sum(watts) / points, t

    def timestamp_us(self, t: float) -> int:
        """NVML's field timestamp (microseconds since 1970) of device time ``t``."""
        return int((self._epoch_s + t) * 1e6)

    def fail_read(self, after: int = 0, code: int = NVML_ERROR_UNKNOWN) -> None:
        """Make the energy read ``after + 1`` reads from now raise ``NVMLError(code)``."""
        self._scheduled_failures[self.energy_reads + after + 1] = code

    def reset_counter(self, value_mj: int = 0) -> None:
        """Driver reload: the counter restarts from ``value_mj``."""
        self.energy_mj = value_mj
        self._pending_mj = 0.0

    def power_at(self, t: float) -> float:
        return self.power_w(t) if callable(self.power_w) else self.power_w

    def advance(self, seconds: float, step_s: float = 0.001) -> None:
        """Run the device for ``seconds``: integrate power, step the counter at ticks."""
        end = self.time_s + seconds
        period = self.counter_period_s
        while end - self.time_s > 1e-12:
            step = min(step_s, end - self.time_s)
            if period > 0:
                next_tick = (math.floor(self.time_s / period + 1e-9) + 1) * period
                step = min(step, next_tick - self.time_s)
            self._pending_mj += self.power_at(self.time_s + step / 2) * step * 1000.0
            self.time_s += step
            ticks = self.time_s / period if period > 0 else 0.0
            if period <= 0 or abs(ticks - round(ticks)) < 1e-9:
                whole = math.floor(self._pending_mj)
                self.energy_mj += whole
                self._pending_mj -= whole


class FakePynvml(types.ModuleType):
    """The fake module. Attributes record calls for assertions:

    ``init_count`` (NVML's reference count), ``init_calls``, ``shutdown_calls`` and
    ``calls`` (every function name called, in order).
    """

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        init_error: int | None = None,
        driver_version: str = "550.54.15",
    ) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.init_error = init_error
        self.driver_version = driver_version
        self.init_count = 0
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: list[str] = []
        module = sys.modules[__name__]
        for attr in dir(module):
            if attr.startswith(("NVML_", "NVMLError", "c_nvml")):
                setattr(self, attr, getattr(module, attr))

    # -- helpers ---------------------------------------------------------------------

    def _enter(self, function: str, handle: Any = None) -> FakeGpu | None:
        self.calls.append(function)
        if self.init_count == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        gpu = handle.parent if isinstance(handle, FakeMig) else handle
        if gpu is not None:
            if not isinstance(gpu, FakeGpu) or gpu not in self.gpus:
                raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
            if function in gpu.errors:
                raise NVMLError(gpu.errors[function])
        return gpu

    def _gpu(self, function: str, handle: Any) -> FakeGpu:
        gpu = self._enter(function, handle)
        assert gpu is not None
        return gpu

    def advance(self, seconds: float) -> None:
        """Advance every GPU's clock (and energy) by ``seconds``."""
        for gpu in self.gpus:
            gpu.advance(seconds)

    # -- init / system -----------------------------------------------------------------

    def nvmlInitWithFlags(self, flags: int) -> None:
        self.calls.append("nvmlInitWithFlags")
        self.init_calls += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.init_count += 1

    def nvmlInit(self) -> None:
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.shutdown_calls += 1
        self.init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    # -- enumeration -------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeGpu | FakeMig:
        self._enter("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == text:
                return gpu
            if text in gpu.mig_uuids:
                return FakeMig(gpu, text)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: FakeGpu | FakeMig) -> str:
        gpu = self._gpu("nvmlDeviceGetUUID", handle)
        return handle.uuid if isinstance(handle, FakeMig) else gpu.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetPciInfo(self, handle: FakeGpu) -> PciInfo:
        gpu = self._gpu("nvmlDeviceGetPciInfo", handle)
        domain, bus, rest = gpu.pci_bus_id.split(":")
        return PciInfo(
            busId=gpu.pci_bus_id.encode(),
            busIdLegacy=gpu.pci_bus_id[4:].encode(),
            domain=int(domain, 16),
            bus=int(bus, 16),
            device=int(rest.split(".")[0], 16),
        )

    # -- energy ------------------------------------------------------------------------

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu | FakeMig) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle)
        gpu.now()  # real-time devices catch up with the wall clock
        gpu.energy_reads += 1
        code = gpu._scheduled_failures.pop(gpu.energy_reads, None)
        if code is not None:
            raise NVMLError(code)
        if not gpu.energy_supported or isinstance(handle, FakeMig):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        gpu = self._gpu("nvmlDeviceGetPowerUsage", handle)
        if not gpu.power_supported or isinstance(handle, FakeMig):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        watts, _ = gpu.power_reading(gpu.power_average_s)
        return int(watts * 1000)

    def nvmlDeviceGetFieldValues(self, handle: FakeGpu, fieldIds: list[Any]) -> Any:
        """Like the real call: the call succeeds, each field carries its own return."""
        gpu = self._gpu("nvmlDeviceGetFieldValues", handle)
        values = (c_nvmlFieldValue_t * len(fieldIds))()
        for value, field_id in zip(values, fieldIds, strict=True):
            try:
                value.fieldId, value.scopeId = field_id
            except TypeError:
                value.fieldId = field_id
            supported = gpu.power_supported and not isinstance(handle, FakeMig)
            if value.fieldId == NVML_FI_DEV_POWER_INSTANT and supported and (
                gpu.instant_power_supported
            ):
                watts, t = gpu.power_reading()
            elif value.fieldId == NVML_FI_DEV_POWER_AVERAGE and supported:
                watts, t = gpu.power_reading(gpu.power_average_s or 1.0)
            else:
                value.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
                continue
            value.nvmlReturn = NVML_SUCCESS
            value.valueType = NVML_VALUE_TYPE_UNSIGNED_INT
            value.value.uiVal = int(watts * 1000)
            value.timestamp = gpu.timestamp_us(t)
            value.latencyUsec = 40
        return values

    # -- processes ---------------------------------------------------------------------

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[FakeProcess]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses", handle)
        return [FakeProcess(**vars(p)) for p in gpu.compute_processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeGpu) -> list[FakeProcess]:
        gpu = self._gpu("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return [FakeProcess(**vars(p)) for p in gpu.graphics_processes]

    # -- fingerprint -------------------------------------------------------------------

    def nvmlDeviceGetArchitecture(self, device: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetArchitecture", device).architecture

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementLimit", handle).power_limit_mw

    def nvmlDeviceGetPersistenceMode(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetPersistenceMode", handle).persistence_mode

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        if type != NVML_CLOCK_SM:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.sm_clock_mhz

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature_c

    # -- MIG ---------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: FakeGpu) -> list[int]:
        gpu = self._gpu("nvmlDeviceGetMigMode", device)
        return [gpu.mig_mode, gpu.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: FakeGpu) -> int:
        gpu = self._gpu("nvmlDeviceGetMaxMigDeviceCount", device)
        return 7 if gpu.mig_mode == NVML_DEVICE_MIG_ENABLE else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: FakeGpu, index: int) -> FakeMig:
        gpu = self._gpu("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if not 0 <= index < len(gpu.mig_uuids):
            raise NVMLError(NVML_ERROR_NOT_FOUND)  # empty slot
        return FakeMig(gpu, gpu.mig_uuids[index])

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: FakeMig) -> FakeGpu:
        return self._gpu("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)


def install(
    monkeypatch: pytest.MonkeyPatch,
    gpus: list[FakeGpu],
    *,
    init_error: int | None = None,
    driver_version: str = "550.54.15",
) -> FakePynvml:
    """Put a :class:`FakePynvml` in ``sys.modules["pynvml"]`` for the current test."""
    fake = FakePynvml(gpus, init_error=init_error, driver_version=driver_version)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def hopper(index: int, **overrides: Any) -> FakeGpu:
    """An H100 at PCI bus ``index + 1`` with a UUID derived from ``index``."""
    settings: dict[str, Any] = {
        "uuid": f"GPU-{index:08x}-aaaa-bbbb-cccc-{index:012x}",
        "pci_bus_id": f"00000000:{index + 1:02X}:00.0",
    }
    settings.update(overrides)
    return FakeGpu(**settings)


def pascal(index: int, **overrides: Any) -> FakeGpu:
    """A pre-Volta Tesla P100: no energy counter and no instant-power field, but
    ``nvmlDeviceGetPowerUsage`` answers (instantaneous on this architecture)."""
    settings: dict[str, Any] = {
        "name": "Tesla P100-PCIE-16GB",
        "architecture": NVML_DEVICE_ARCH_PASCAL,
        "energy_supported": False,
        "instant_power_supported": False,
        "power_limit_mw": 250_000,
    }
    settings.update(overrides)
    return hopper(index, **settings)


def grace_hopper(index: int, **overrides: Any) -> FakeGpu:
    """The GPU of a GH200 superchip, whose readings cover the whole module."""
    settings: dict[str, Any] = {"name": "NVIDIA GH200 480GB", "power_limit_mw": 900_000}
    settings.update(overrides)
    return hopper(index, **settings)


@pytest.fixture(autouse=True)
def clean_cuda_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's CUDA variables and any imported torch/cupy must not leak into a test
    of the NVML meter. Import it into a test module to apply it there (autouse)."""
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(name, raising=False)
    for module in ("torch", "cupy"):
        monkeypatch.delitem(sys.modules, module, raising=False)
