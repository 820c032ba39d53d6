"""A fake CUDA build of ``torch`` whose kernels run on simulated GPUs in real time, and
those GPUs as NVML sees them (for ``tests/fakes/fake_pynvml.py``).

It exists to run ``bench/gpu_check.py`` end to end on a machine without a GPU, so only
the surface that script (and the NVML meter's sync and UUID oracle) touches is here,
but that surface is strict like torch's: unknown ``torch.backends.cuda.matmul``
attributes raise ``AttributeError``, bad device strings and mismatched shapes, dtypes
or devices raise ``RuntimeError``, tensors of ``torch.empty``/``torch.randn`` live on
the device they were created on.

Timing model (:class:`SensorGpu`): one CUDA stream per GPU on the wall clock
(``time.perf_counter``). A kernel launch returns at once and queues the kernel behind
the ones still pending (a launch blocks only when :data:`QUEUE_DEPTH` kernels are
pending, as CUDA's launch queue does); ``torch.cuda.synchronize`` waits until the
queue is empty. A matrix product lasts ``max(flops / rate, bytes / bandwidth)`` plus a
few microseconds, H200-like: bf16 at 790 TFLOP/s, fp32 at 51 TFLOP/s (TF32 off) or
378 TFLOP/s (``allow_tf32`` on), 4.8 TB/s; it draws ``compute_w`` when compute-bound,
``memory_w`` otherwise, and the GPU draws ``idle_w`` between kernels.

Power sensor: like the A100/H100 sensor measured by Yang, Adamek and Armour (SC'24),
the energy counter steps every ``period_s`` (at ``origin + k * period_s``) by the mean
power over only the last ``sensor_window_s`` before the step, times ``period_s``; it
reads in whole millijoules. Power during the rest of the period is not seen at all:
a short burst counts only when it falls inside the window. The instant-power field
(and ``nvmlDeviceGetPowerUsage``) report the power at the instant of the read.
"""

from __future__ import annotations

import collections
import math
import re
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import pytest

from fakes.fake_pynvml import FakeGpu

QUEUE_DEPTH = 1024
"""Pending kernels per GPU before a launch blocks (CUDA's launch queue is ~1024 deep)."""

_SPIN_S = 0.002  # synchronize() sleeps until this close to the end, then spins


class Kernel(NamedTuple):
    """One kernel on the stream: it runs from ``start_s`` to ``end_s`` drawing ``watts``."""

    start_s: float
    end_s: float
    watts: float


@dataclass(eq=False)
class SensorGpu(FakeGpu):
    """A :class:`FakeGpu` on the wall clock, running the fake torch's kernels, with a
    part-time power sensor feeding its energy counter (see the module docstring).

    Device time is ``time.perf_counter()``. ``frozen=True`` stops the counter (a
    driver that stopped updating it). ``steps`` counts counter steps so far.
    """

    period_s: float = 0.1
    sensor_window_s: float = 0.025
    idle_w: float = 70.0
    compute_w: float = 690.0
    memory_w: float = 300.0
    frozen: bool = False
    steps: int = 0
    launches: int = 0
    energy_mj: int = 123_456_789
    _origin_s: float = 0.0
    _next_step_s: float = 0.0
    _queue_end_s: float = 0.0
    _kernels: collections.deque[Kernel] = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0 < self.sensor_window_s <= self.period_s:
            raise ValueError("need 0 < sensor_window_s <= period_s")
        now = time.perf_counter()
        self._origin_s = now
        self._next_step_s = now + 0.37 * self.period_s  # an arbitrary phase
        self._queue_end_s = now
        self._epoch_s = time.time() - now  # field timestamps: device time -> 1970
        self._real_origin = 0.0  # "follows real time" (FakeGpu checks for None)

    # -- the stream --------------------------------------------------------------------

    def launch(self, duration_s: float, watts: float) -> None:
        """Queue one kernel; blocks while the launch queue is full."""
        while True:
            with self._lock:
                now = time.perf_counter()
                pending = 0
                for kernel in reversed(self._kernels):
                    if kernel.end_s <= now or pending >= QUEUE_DEPTH:
                        break
                    pending += 1
                if pending < QUEUE_DEPTH:
                    start = max(now, self._queue_end_s)
                    self._kernels.append(Kernel(start, start + duration_s, watts))
                    self._queue_end_s = start + duration_s
                    self.launches += 1
                    return
                wait = self._kernels[-QUEUE_DEPTH].end_s - now
            time.sleep(max(wait, 1e-5))

    def synchronize(self) -> None:
        """Wait until every queued kernel has finished."""
        with self._lock:
            end = self._queue_end_s
        while (left := end - time.perf_counter()) > 0:
            if left > _SPIN_S:
                time.sleep(left - _SPIN_S / 2)

    @property
    def queue_end_s(self) -> float:
        with self._lock:
            return self._queue_end_s

    # -- power and energy ----------------------------------------------------------------

    def power_at(self, t: float) -> float:
        with self._lock:
            for kernel in self._kernels:
                if kernel.start_s > t:
                    break
                if kernel.end_s > t:
                    return kernel.watts
            return self.idle_w

    def mean_power(self, start_s: float, end_s: float) -> float:
        """Mean power over ``[start_s, end_s]`` (call with the lock held)."""
        busy_j, busy_s = 0.0, 0.0
        for kernel in self._kernels:
            if kernel.start_s >= end_s:
                break
            overlap = min(end_s, kernel.end_s) - max(start_s, kernel.start_s)
            if overlap > 0:
                busy_j += kernel.watts * overlap
                busy_s += overlap
        span = end_s - start_s
        return (busy_j + self.idle_w * (span - busy_s)) / span

    def now(self) -> float:
        """The device time; first adds every counter step due by now."""
        with self._lock:
            now = time.perf_counter()
            while True:
                # kernels that ended before the next sensor window (and before now, for
                # power_at) are no longer needed
                keep_from = min(now, self._next_step_s - self.sensor_window_s)
                while self._kernels and self._kernels[0].end_s < keep_from:
                    self._kernels.popleft()
                if self._next_step_s > now:
                    break
                step = self._next_step_s
                if not self.frozen:
                    watts = self.mean_power(step - self.sensor_window_s, step)
                    self._pending_mj += watts * self.period_s * 1000.0
                    whole = math.floor(self._pending_mj)
                    self.energy_mj += whole
                    self._pending_mj -= whole
                self.steps += 1
                self._next_step_s = step + self.period_s
            self.time_s = now
            return now

    def follow_real_time(self) -> None:  # always does
        pass

    def advance(self, seconds: float, step_s: float = 0.001) -> None:
        raise AssertionError("a SensorGpu runs on the wall clock; it cannot be advanced")


def sensor_gpu(index: int, **overrides: Any) -> SensorGpu:
    """An H200 at PCI bus ``index + 1``: 100 ms counter, 25 ms sensor window."""
    settings: dict[str, Any] = {
        "name": "NVIDIA H200",
        "uuid": f"GPU-{index:08x}-5e45-4242-8d8d-{index:012x}",
        "pci_bus_id": f"00000000:{index + 1:02X}:00.0",
    }
    settings.update(overrides)
    return SensorGpu(**settings)


# -- torch ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dtype:
    name: str
    itemsize: int

    def __repr__(self) -> str:
        return f"torch.{self.name}"


BFLOAT16 = Dtype("bfloat16", 2)
FLOAT16 = Dtype("float16", 2)
FLOAT32 = Dtype("float32", 4)

# H200 dense throughput (FLOP/s) and memory bandwidth (B/s)
RATES = {BFLOAT16: 790e12, FLOAT16: 790e12, FLOAT32: 51e12}
TF32_RATE = 378e12
BANDWIDTH = 4.8e12
LAUNCH_S = 3e-6

_DEVICE = re.compile(r"(cuda|cpu)(?::(\d+))?")


class Device:
    """``torch.device``: ``Device("cuda:0")``, ``Device("cuda", 1)``, ``Device(2)``."""

    type: str
    index: int | None

    def __init__(self, spec: Any, index: int | None = None) -> None:
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if isinstance(spec, int) and not isinstance(spec, bool):
            self.type, self.index = "cuda", spec
            return
        match = _DEVICE.fullmatch(spec) if isinstance(spec, str) else None
        if match is None or (match.group(2) is not None and index is not None):
            raise RuntimeError(f"Invalid device string: '{spec}'")
        self.type = match.group(1)
        self.index = int(match.group(2)) if match.group(2) is not None else index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + (
            "" if self.index is None else f", index={self.index}") + ")"


@dataclass(eq=False)
class Tensor:
    """Shape, dtype and device only: nothing is computed."""

    shape: tuple[int, ...]
    dtype: Dtype
    device: Device


class MatmulSettings:
    """``torch.backends.cuda.matmul``: like torch's, unknown attributes raise."""

    _NAMES: ClassVar[frozenset[str]] = frozenset({
        "allow_tf32", "allow_fp16_reduced_precision_reduction",
        "allow_bf16_reduced_precision_reduction", "allow_fp16_accumulation",
    })

    def __init__(self) -> None:
        object.__setattr__(self, "_values", dict.fromkeys(self._NAMES, False))
        self._values["allow_fp16_reduced_precision_reduction"] = True
        self._values["allow_bf16_reduced_precision_reduction"] = True

    def __getattr__(self, name: str) -> Any:
        if name in self._NAMES:
            return self._values[name]
        raise AttributeError("Unknown attribute " + name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._NAMES:
            raise AttributeError("Unknown attribute " + name)
        if not isinstance(value, bool):
            raise TypeError(f"{name} expects a bool, got {type(value)!r}")
        self._values[name] = value


class FakeCuda:
    """``torch.cuda``. ``available=False`` is a CPU build (or no driver)."""

    def __init__(self, gpus: list[SensorGpu], available: bool = True) -> None:
        self.gpus = gpus
        self.available = available
        self.initialized = False
        self.current = 0
        self.contexts: set[int] = set()
        self.synchronize_calls = 0

    def _init(self, index: int | None = None) -> SensorGpu:
        if not self.available:
            raise RuntimeError("Found no NVIDIA driver on your system.")
        self.initialized = True
        index = self.current if index is None else index
        if not 0 <= index < len(self.gpus):
            raise RuntimeError("CUDA error: invalid device ordinal")
        self.contexts.add(index)
        return self.gpus[index]

    def _index(self, device: Any) -> int | None:
        if device is None:
            return None
        where = Device(device)
        if where.type != "cuda":
            raise ValueError(f"Expected a cuda device, but got: {where}")
        return where.index

    def is_available(self) -> bool:
        return self.available

    def is_initialized(self) -> bool:
        return self.initialized

    def device_count(self) -> int:
        return len(self.gpus) if self.available else 0

    def current_device(self) -> int:
        self._init()
        return self.current

    def set_device(self, device: Any) -> None:
        index = self._index(device)
        if index is None:
            raise ValueError("set_device needs a device index")
        self._init(index)
        self.current = index

    def synchronize(self, device: Any = None) -> None:
        self.synchronize_calls += 1
        self._init(self._index(device)).synchronize()

    def get_device_properties(self, device: Any) -> Any:
        index = self._index(device)
        gpu = self._init(index)
        return types.SimpleNamespace(
            name=gpu.name, uuid=gpu.uuid[len("GPU-"):], total_memory=141 * 2**30,
            multi_processor_count=132, major=9, minor=0,
        )

    def get_device_name(self, device: Any = None) -> str:
        return str(self.get_device_properties(device).name)


class FakeTorch(types.ModuleType):
    """The ``torch`` module. ``matmuls`` counts products per dtype name (``"float32"``
    with TF32 on counts as ``"tf32"``)."""

    bfloat16 = BFLOAT16
    float16 = FLOAT16
    float32 = FLOAT32

    def __init__(self, gpus: list[SensorGpu], *, available: bool = True,
                 version: str = "2.5.1+cu124", cuda_version: str | None = "12.4") -> None:
        super().__init__("torch")
        self.device = Device
        self.Tensor = Tensor
        self.__version__ = version
        self.version = types.SimpleNamespace(cuda=cuda_version)
        self.cuda = FakeCuda(gpus, available)
        self.backends = types.SimpleNamespace(cuda=types.SimpleNamespace(
            matmul=MatmulSettings()))
        self._C = types.SimpleNamespace(
            _cuda_hasPrimaryContext=lambda index: index in self.cuda.contexts)
        self.matmuls: collections.Counter[str] = collections.Counter()
        self.fail: BaseException | None = None

    def _tensor(self, size: tuple[Any, ...], device: Any, dtype: Dtype | None) -> Tensor:
        if len(size) == 1 and isinstance(size[0], (tuple, list)):
            size = tuple(size[0])
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in size):
            raise TypeError(f"size must be non-negative ints, got {size!r}")
        if dtype is not None and not isinstance(dtype, Dtype):
            raise TypeError(f"dtype must be a torch.dtype, not {type(dtype).__name__}")
        where = Device("cpu") if device is None else Device(device)
        if where.type == "cuda":
            index = self.cuda.current if where.index is None else where.index
            self.cuda._init(index)
            where = Device("cuda", index)
        return Tensor(tuple(size), dtype or FLOAT32, where)

    def randn(self, *size: Any, device: Any = None, dtype: Dtype | None = None) -> Tensor:
        return self._tensor(size, device, dtype)

    def empty(self, *size: Any, device: Any = None, dtype: Dtype | None = None) -> Tensor:
        return self._tensor(size, device, dtype)

    def zeros(self, *size: Any, device: Any = None, dtype: Dtype | None = None) -> Tensor:
        return self._tensor(size, device, dtype)

    def matmul(self, a: Tensor, b: Tensor, *, out: Tensor | None = None) -> Tensor:
        for t in (a, b) + (() if out is None else (out,)):
            if not isinstance(t, Tensor):
                raise TypeError(f"matmul(): argument must be Tensor, not {type(t).__name__}")
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({a.shape[0]}x"
                               f"{a.shape[-1]} and {b.shape[0]}x{b.shape[-1]})")
        if a.dtype != b.dtype:
            raise RuntimeError(f"expected mat1 and mat2 to have the same dtype, but got: "
                               f"{a.dtype!r} != {b.dtype!r}")
        shape = (a.shape[0], b.shape[1])
        if out is not None:
            if out.dtype != a.dtype:
                raise RuntimeError(f"Expected out tensor to have dtype {a.dtype!r}, but got "
                                   f"{out.dtype!r} instead")
            if out.shape != shape:
                raise RuntimeError(f"out has shape {out.shape}, expected {shape}")
        devices = {a.device, b.device} | (set() if out is None else {out.device})
        if len(devices) != 1:
            raise RuntimeError("Expected all tensors to be on the same device, but found "
                               f"at least two devices, {' and '.join(map(str, devices))}!")
        device = a.device
        if device.type != "cuda":
            raise AssertionError("the fake runs CUDA matrix products only")
        if self.fail is not None:
            raise self.fail
        gpu = self.cuda._init(device.index)
        m, k = a.shape
        n = b.shape[1]
        flops = 2.0 * m * k * n
        tf32 = a.dtype == FLOAT32 and self.backends.cuda.matmul.allow_tf32
        rate = TF32_RATE if tf32 else RATES[a.dtype]
        compute_s = flops / rate
        memory_s = (m * k + k * n + m * n) * a.dtype.itemsize / BANDWIDTH
        watts = gpu.compute_w if compute_s >= memory_s else gpu.memory_w
        gpu.launch(max(compute_s, memory_s) + LAUNCH_S, watts)
        self.matmuls["tf32" if tf32 else a.dtype.name] += 1
        return out if out is not None else Tensor(shape, a.dtype, device)


def install(monkeypatch: pytest.MonkeyPatch, gpus: list[SensorGpu], **kwargs: Any
            ) -> FakeTorch:
    """Put a :class:`FakeTorch` on ``gpus`` in ``sys.modules["torch"]`` for this test
    (the same GPU objects go to ``fake_pynvml.install``)."""
    torch = FakeTorch(gpus, **kwargs)
    monkeypatch.setitem(sys.modules, "torch", torch)
    return torch
