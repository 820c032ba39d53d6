"""GPU energy from NVML: the total-energy counter, or sampled power where there is none.

``nvmlDeviceGetTotalEnergyConsumption`` reports millijoules since the driver was loaded
(Volta and newer). It is the best NVML reading for short windows. The counter itself
steps only every ~20-100 ms (``update_period_s`` = 0.1), so the measuring code must make
windows span many updates; this meter just reads it.

GPUs without that counter (pre-Volta, some virtual GPUs) answer NotSupported. For those
the meter falls back, per GPU, to a background sampler thread that polls power every
:data:`SAMPLE_PERIOD_S` (10 ms) and integrates it (trapezoid over the sample
timestamps) into cumulative joules:

* preferred: ``nvmlDeviceGetFieldValues(handle, [NVML_FI_DEV_POWER_INSTANT])``, the
  instant power in mW with the timestamp at which NVML took it (samples with a repeated
  timestamp carry no new information and are skipped);
* else ``nvmlDeviceGetPowerUsage`` (mW, timed by our own clock). NVML documents it as
  instantaneous on GA100 and older architectures but as a **1 s average on Ampere
  (non-GA100) and newer**, useless for windows shorter than a few seconds: that is why
  the field value is preferred, and why the source is then labelled "sampled average
  power".

10 ms is at least twice as fast as any update rate reported for NVML power sensors
(20-100 ms), so no sensor update is missed, and costs ~100 cheap NVML calls per second
per GPU. The sampler always sleeps between samples (at least 1 ms, even when it falls
behind: a poller that never sleeps is a known bug in another tool), is a daemon, and
is stopped and joined by :meth:`NvmlMeter.close` (and when the meter is garbage
collected or the interpreter exits). An error in the sampler is kept and raised as
:class:`MeterError` by the next ``read()``: a failed sample never becomes 0 J. Such a
meter has ``sampled = True``, ``update_period_s`` = the sampling period, and
``describe()`` names each device's ``source``.

Design points:

* ``pynvml`` is imported inside the constructor: importing this module is free and
  works on machines without the package or an NVIDIA driver.
* The test's view of devices is honoured: ``"cuda:N"`` means CUDA index N after
  ``CUDA_VISIBLE_DEVICES``/``CUDA_DEVICE_ORDER``, mapped to NVML by
  :mod:`pytest_energy.meters.cuda_devices` (NVML itself ignores both variables).
* GPU work is asynchronous, so :meth:`NvmlMeter.read` first waits for work queued by
  torch or cupy -- but only if the test already imported them; we never import them.
* Failures are loud: a GPU with neither an energy counter nor a power reading raises
  :class:`MeterUnavailable` at construction, and a counter that goes backwards or an
  NVML error mid-measurement raises :class:`MeterError`; a failure is never turned into
  0 J or a negative number.
* :meth:`NvmlMeter.conditions` tells the measuring code, right before each measured
  run, what makes the numbers less than clean: other processes on the GPU, MIG,
  Grace Hopper module-scope readings, sampled power.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
import time
import weakref
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


SAMPLE_PERIOD_S = 0.01
"""Power sampling period for GPUs without an energy counter (see the module docstring)."""

SOURCE_COUNTER = "energy counter"
SOURCE_INSTANT = "sampled instant power"
SOURCE_AVERAGE = "sampled average power"

# Never sleep less than this between samples, even when behind schedule: no busy loop.
_MIN_SLEEP_S = 0.001
# How long close() waits for the sampler thread (it finishes at most one NVML call).
_STOP_TIMEOUT_S = 2.0
# A field-value timestamp step this much longer than our own clock's step is a jump of
# the wall clock (NTP) the timestamps are taken from, not elapsed time.
_CLOCK_JUMP_S = 0.5
# NVML answers these for "this GPU has no such reading"; other errors are real failures.
_UNSUPPORTED = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")
_MODULE_SCOPE = re.compile(r"GH200|Grace", re.IGNORECASE)
# GPUs whose power sensor is published to average 25 ms of every 100 ms (Yang, Adamek,
# Armour, SC'24, arXiv 2312.02741: A100 and H100). Hopper parts share the H100's
# sensor design; the measuring plan uses the window to sample every part of a call
# (pytest_energy.antialias). Unlisted GPUs get None: the plan then assumes the worst.
PART_TIME_SENSOR = re.compile(r"\b(A100|A800|H100|H200|H800|H20|GH200)\b", re.IGNORECASE)
PART_TIME_SENSOR_WINDOW_S = 0.025
_MAX_LISTED_PIDS = 10

_FIELD_MEMBERS = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}


def _field_number(nvml: Any, field_value: Any) -> float:
    """The number in an ``nvmlFieldValue_t``, read through the member its type names."""
    value_type = int(field_value.valueType)
    for constant, member in _FIELD_MEMBERS.items():
        if getattr(nvml, constant, None) == value_type:
            return float(getattr(field_value.value, member))
    raise ValueError(f"unknown NVML value type {value_type}")


def _plural(count: int, word: str, suffix: str = "es") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}{suffix}"


def _pid_list(pids: list[int]) -> str:
    shown = ", ".join(str(pid) for pid in pids[:_MAX_LISTED_PIDS])
    more = len(pids) - _MAX_LISTED_PIDS
    return f"{shown}, ... ({more} more)" if more > 0 else shown


@dataclass
class _PowerTrack:
    """Integration state of one GPU whose energy is sampled from its power reading.

    ``api`` is ``"field"`` (instant power field value, timestamped by NVML) or
    ``"usage"`` (``nvmlDeviceGetPowerUsage``, timed by our clock). The integral is a
    chain of trapezoids; ``last_*`` is the chain's end, ``None`` after a reset (an
    error), so a spoiled interval is never interpolated across.
    """

    domain: str
    label: str
    handle: Any
    api: str
    source: str
    joules: float = 0.0
    samples: int = 0
    last_watts: float | None = None
    last_local_s: float = 0.0
    last_stamp_us: int | None = None
    error: str | None = None

    def reset_chain(self) -> None:
        self.last_watts = None
        self.last_stamp_us = None

    def add(self, watts: float, local_s: float, stamp_us: int | None) -> None:
        """Extend the integral to a new sample (see :class:`_PowerSampler`)."""
        if not math.isfinite(watts) or watts < 0:
            raise ValueError(f"implausible power reading {watts!r} W")
        if stamp_us is not None and stamp_us == self.last_stamp_us:
            return  # the same sensor sample again: no new information
        if self.last_watts is not None:
            dt = local_s - self.last_local_s
            if stamp_us is not None and self.last_stamp_us is not None:
                stamped = (stamp_us - self.last_stamp_us) / 1e6
                if 0 < stamped <= dt + _CLOCK_JUMP_S:
                    dt = stamped
            if dt > 0:
                self.joules += 0.5 * (watts + self.last_watts) * dt
        self.last_watts, self.last_local_s, self.last_stamp_us = watts, local_s, stamp_us
        self.samples += 1


class _PowerSampler:
    """Background thread that polls the power of GPUs without an energy counter.

    Holds no reference to the meter, so a meter dropped without ``close()`` is still
    collected (a finaliser then stops this thread). ``read()`` and the thread share one
    lock; the thread checks the stop flag under it, so after :meth:`stop` returns True
    no NVML call is made any more and NVML can be shut down safely.
    """

    def __init__(self, nvml: Any, tracks: list[_PowerTrack], period_s: float) -> None:
        if not period_s > 0:
            raise ValueError(f"sampling period must be > 0 s, got {period_s!r}")
        self._nvml = nvml
        self.tracks = tracks
        self.period_s = period_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pid = os.getpid()
        self.crashed: str | None = None
        self.thread: threading.Thread | None = None

    def _sample(self, track: _PowerTrack) -> None:
        """Take one sample of ``track`` and extend its integral; raises on failure."""
        nvml = self._nvml
        before = time.perf_counter()
        if track.api == "field":
            values = nvml.nvmlDeviceGetFieldValues(track.handle, [nvml.NVML_FI_DEV_POWER_INSTANT])
            local_s = 0.5 * (before + time.perf_counter())
            field_value = values[0]
            code = int(field_value.nvmlReturn)
            if code != nvml.NVML_SUCCESS:
                raise nvml.NVMLError(code)
            stamp = int(field_value.timestamp)
            track.add(_field_number(nvml, field_value) / 1000.0, local_s,
                      stamp if stamp > 0 else None)
        else:
            milliwatts = nvml.nvmlDeviceGetPowerUsage(track.handle)
            track.add(float(milliwatts) / 1000.0, 0.5 * (before + time.perf_counter()), None)

    def prime(self) -> None:
        """First sample of every track, before the thread starts (errors propagate)."""
        for track in self.tracks:
            self._sample(track)

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._run, name="pytest-energy-nvml-sampler", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        period = self.period_s
        due = time.perf_counter() + period
        try:
            while not self._stop.wait(max(due - time.perf_counter(), _MIN_SLEEP_S)):
                with self._lock:
                    if self._stop.is_set():
                        return
                    for track in self.tracks:
                        try:
                            self._sample(track)
                        except Exception as exc:
                            track.reset_chain()
                            if track.error is None:  # keep the first cause
                                track.error = _sample_reason(exc)
                due += period
                now = time.perf_counter()
                if due < now:  # fell behind (a stalled call): skip, never catch up in a burst
                    due = now + period
        except BaseException as exc:  # a bug: make every later read fail with the cause
            self.crashed = f"{type(exc).__name__}: {exc}"

    def read(self) -> dict[str, float]:
        """Joules per sampled domain up to a fresh sample taken now.

        Raises:
            MeterError: the thread has died (a bug, or this process was forked after it
                started), or a sample failed since the last read. A failed track's
                integral restarts at the fresh sample, so only the spoiled window errors.
        """
        if os.getpid() != self._pid:  # checked first: a fork may have copied a held lock
            raise MeterError(
                "NVML power sampler thread is not running: this process was forked after "
                "the meter started, and threads do not survive a fork"
            )
        with self._lock:
            if self.crashed is not None:
                raise MeterError(f"NVML power sampler thread crashed: {self.crashed}")
            if self.thread is None or not self.thread.is_alive():
                raise MeterError("NVML power sampler thread is not running")
            problems: list[str] = []
            for track in self.tracks:
                pending, track.error = track.error, None
                try:
                    self._sample(track)
                except Exception as exc:
                    track.reset_chain()
                    pending = pending or _sample_reason(exc)
                if pending is not None:
                    problems.append(f"{track.label}: {pending}")
            if problems:
                raise MeterError(
                    "NVML power sampling failed, the energy of this window is unknown: "
                    + "; ".join(problems)
                )
            return {track.domain: track.joules for track in self.tracks}

    def stop(self, timeout_s: float) -> bool:
        """Stop and join the thread; False if it is still inside an NVML call after
        ``timeout_s`` (it is a daemon, so it cannot keep the interpreter alive)."""
        self._stop.set()
        thread = self.thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout_s)
        return not thread.is_alive()


def _sample_reason(exc: BaseException) -> str:
    if type(exc).__name__.startswith("NVMLError"):
        return _nvml_reason(exc)
    return f"{type(exc).__name__}: {exc}"


def _stop_sampler(sampler: _PowerSampler) -> None:
    """Finaliser of a meter that was never closed (or at interpreter exit)."""
    sampler.stop(0.5)


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
    source: str = SOURCE_COUNTER
    track: _PowerTrack | None = None  # set when energy is sampled from power


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

    A GPU without a total-energy counter is measured by sampling its power (see the
    module docstring); the meter is then ``sampled`` and, when every measured GPU is
    sampled, its ``update_period_s`` is the sampling period.

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
        """How much of each counter period the power sensor averages, where published:
        25 ms for A100/H100-class GPUs (:data:`PART_TIME_SENSOR`); ``None`` (unknown)
        otherwise, or when the measured GPUs differ."""
        windows = {PART_TIME_SENSOR_WINDOW_S if PART_TIME_SENSOR.search(gpu.info.name)
                   else None for gpu in self._gpus}
        return windows.pop() if len(windows) == 1 and not self.sampled else None

    @property
    def stepped_counter(self) -> bool:
        """The energy counter steps at a coarse period fed by a part-time sensor: the
        measuring code then aligns windows to its steps (pytest_energy.antialias). A
        sampled meter integrates fresh samples at every read and has no steps."""
        return not self.sampled

    def __init__(self, device: str = "cuda", *, sample_power: bool = False) -> None:
        match = _DEVICE_SPEC.fullmatch(device.strip())
        if match is None:
            raise ValueError(f"NVML meter device must be 'cuda' or 'cuda:N', got {device!r}")
        self._device_spec = device.strip()
        self._lock = threading.Lock()
        self._closed = True  # becomes False once nvmlInit succeeded
        self._sampler: _PowerSampler | None = None
        self._sample_power = sample_power
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
            domain = f"gpu:{cuda_device.cuda_index}"
            start = (
                None
                if self._sample_power
                else self._first_energy(handle, cuda_device.cuda_index, info)
            )
            gpu = _Gpu(
                domain=domain,
                cuda_indices=[cuda_device.cuda_index],
                nvml_index=cuda_device.nvml_index,
                handle=handle,
                info=info,
                shared=cuda_device.shared,
                assumed=cuda_device.assumed,
                origin_mj=start or 0,
                last_mj=start or 0,
            )
            if start is None:  # no energy counter: sample power instead
                api, gpu.source = self._power_source(handle, cuda_device.cuda_index, info)
                gpu.track = _PowerTrack(
                    domain=domain,
                    label=f"{domain} ({info.name}, {info.uuid})",
                    handle=handle,
                    api=api,
                    source=gpu.source,
                )
            gpus[cuda_device.nvml_index] = gpu
        self._gpus = list(gpus.values())
        for gpu in self._gpus:
            gpu.facts = self._fingerprint(gpu)
        tracks = [gpu.track for gpu in self._gpus if gpu.track is not None]
        if tracks:
            self._start_sampler(tracks)

    def _start_sampler(self, tracks: list[_PowerTrack]) -> None:
        """Start sampling power for GPUs without an energy counter."""
        sampler = _PowerSampler(self._nvml, tracks, SAMPLE_PERIOD_S)
        try:
            sampler.prime()
        except Exception as exc:
            raise MeterUnavailable(
                f"NVML unavailable: cannot sample the power of "
                f"{', '.join(t.label for t in tracks)}: {_sample_reason(exc)}"
            ) from None
        self._sampler = sampler
        sampler.start()
        # A meter dropped without close() (or alive at exit) still stops its thread.
        weakref.finalize(self, _stop_sampler, sampler)
        self.sampled = True
        self.sample_period_s = SAMPLE_PERIOD_S
        if all(gpu.track is not None for gpu in self._gpus):
            self.update_period_s = SAMPLE_PERIOD_S

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

    def _first_energy(self, handle: Any, cuda_index: int, info: NvmlDeviceInfo) -> int | None:
        """The counter's value now, or ``None`` when the GPU has no energy counter."""
        nvml = self._nvml
        try:
            return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError_NotSupported:
            return None
        except nvml.NVMLError as exc:
            raise MeterUnavailable(
                f"NVML unavailable: cannot read the energy counter of gpu {cuda_index} "
                f"({info.name}): {_nvml_reason(exc)}"
            ) from None

    def _power_source(
        self, handle: Any, cuda_index: int, info: NvmlDeviceInfo
    ) -> tuple[str, str]:
        """``(api, source)`` for a GPU without an energy counter.

        The instant-power field value wins when NVML answers it; else
        ``nvmlDeviceGetPowerUsage``, which NVML documents as instantaneous on GA100 and
        older architectures and as a 1 s average on newer ones. Only architectures older
        than Ampere are labelled instant; Ampere (GA100 included) and unknown ones get
        the cautious "average" label.
        """
        nvml = self._nvml
        try:
            field_value = nvml.nvmlDeviceGetFieldValues(
                handle, [nvml.NVML_FI_DEV_POWER_INSTANT]
            )[0]
            code = int(field_value.nvmlReturn)
            if code != nvml.NVML_SUCCESS:
                raise nvml.NVMLError(code)
            _field_number(nvml, field_value)
            return "field", SOURCE_INSTANT
        except (nvml.NVMLError, AttributeError, IndexError, TypeError, ValueError) as exc:
            field_reason = _sample_reason(exc)
        try:
            nvml.nvmlDeviceGetPowerUsage(handle)
        except nvml.NVMLError as exc:
            why = (
                "power sampling was requested, but it has"
                if self._sample_power
                else "has no total-energy counter (pre-Volta) and"
            )
            raise MeterUnavailable(
                f"gpu {cuda_index} ({info.name}) {why} no power reading to sample "
                f"(instant power field: {field_reason}; nvmlDeviceGetPowerUsage: "
                f"{_nvml_reason(exc)}). Use another meter for this machine"
            ) from None
        try:
            arch: int | None = int(nvml.nvmlDeviceGetArchitecture(handle))
        except (nvml.NVMLError, AttributeError, TypeError, ValueError):
            arch = None
        ampere = getattr(nvml, "NVML_DEVICE_ARCH_AMPERE", 7)
        unknown = getattr(nvml, "NVML_DEVICE_ARCH_UNKNOWN", 0xFFFFFFFF)
        instant = arch is not None and arch != unknown and arch < ampere
        return "usage", SOURCE_INSTANT if instant else SOURCE_AVERAGE

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
        nvml = self._nvml
        with self._lock:
            if self._closed:
                raise MeterError("NVML meter read after close()")
            counted = [gpu for gpu in self._gpus if gpu.track is None]
            values: list[int] = []
            for gpu in counted:
                try:
                    values.append(int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)))
                except nvml.NVMLError as exc:
                    raise MeterError(
                        f"NVML energy read failed for {gpu.domain} ({gpu.info.name}, "
                        f"{gpu.info.uuid}): {_nvml_reason(exc)}"
                    ) from exc
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
            sampled = self._sampler.read() if self._sampler is not None else {}
            return {
                gpu.domain: gpu.total_mj / 1000.0 if gpu.track is None else sampled[gpu.domain]
                for gpu in self._gpus
            }

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

    # -- extras ----------------------------------------------------------------------------

    def conditions(self) -> list[str]:
        """Flags about the measured GPUs right now, each starting with a keyword.

        Called by the measuring code right before each measured run; a handful of NVML
        calls (two process lists per GPU), everything else was found at start.

        * ``contaminated:`` other processes hold a compute context on the GPU. Energy
          counters measure the whole GPU, so their work is counted. Our own pid is
          excluded. If NVML lists pids but not ours while this process holds a CUDA
          context there (torch tells), NVML speaks another pid namespace (a container)
          or MPS; one of the pids is then taken to be us. Without torch we cannot tell,
          and every listed pid counts as other. A NotSupported answer gives no flag
          (nothing can be known; NVML does not support process lists everywhere, e.g.
          on some virtual GPUs); any other error gives an ``unknown:`` flag. An idle
          context (another pytest-xdist worker that touched CUDA) is listed too.
        * ``display:`` graphics processes (a desktop, a compositor) on the GPU. Not
          contamination: their steady draw is part of what the GPU burns when idle, and
          on a workstation they are always there.
        * ``shared:`` the GPU is partitioned with MIG; energy is for the whole GPU.
        * ``module-scope:`` Grace Hopper (name with GH200 or Grace) reports the power of
          the whole module, CPU and memory included.
        * ``sampled:`` energy is integrated from sampled power (no energy counter).

        Raises:
            MeterError: the meter is closed.
        """
        if self._closed:
            raise MeterError("NVML meter used after close()")
        flags: list[str] = []
        for gpu in self._gpus:
            flags.extend(self._process_flags(gpu))
            if gpu.shared or gpu.info.mig_enabled:
                flags.append(
                    f"shared: {gpu.domain} is partitioned with MIG; energy is for the whole GPU"
                )
            if _MODULE_SCOPE.search(gpu.info.name):
                flags.append(
                    f"module-scope: {gpu.domain} ({gpu.info.name}) reports module power "
                    "(CPU+GPU)"
                )
            if gpu.track is not None:
                flags.append(self._sampled_flag(gpu))
        return flags

    def _sampled_flag(self, gpu: _Gpu) -> str:
        period = f"{SAMPLE_PERIOD_S * 1e3:g} ms"
        if gpu.track is not None and gpu.track.api == "field":
            how = f"instant power (NVML_FI_DEV_POWER_INSTANT) polled every {period}"
        else:
            how = f"nvmlDeviceGetPowerUsage polled every {period}"
        text = (
            f"sampled: {gpu.domain} ({gpu.info.name}) has no energy counter; energy is "
            f"integrated from {how}"
        )
        if gpu.source == SOURCE_AVERAGE:
            text += (
                "; on this GPU that reading is a 1 s average, so windows shorter than a "
                "few seconds are smeared"
            )
        return text

    def _process_flags(self, gpu: _Gpu) -> list[str]:
        """``contaminated:`` / ``display:`` / ``unknown:`` flags for one GPU."""
        nvml = self._nvml
        found: dict[str, list[int]] = {}
        for kind, function in (
            ("compute", "nvmlDeviceGetComputeRunningProcesses"),
            ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
        ):
            try:
                processes = getattr(nvml, function)(gpu.handle)
            except nvml.NVMLError as exc:
                if type(exc).__name__ in _UNSUPPORTED:
                    continue
                return [
                    f"unknown: cannot list the {kind} processes on {gpu.domain}: "
                    f"{_nvml_reason(exc)}"
                ]
            except AttributeError:  # bindings too old to have the function
                continue
            found[kind] = sorted({int(p.pid) for p in processes if getattr(p, "pid", None)})
        from pytest_energy.isolation import peer_pids

        own = os.getpid()
        flags: list[str] = []
        # Other pytest-energy processes (xdist workers) wait for the device lock we hold.
        compute = [pid for pid in found.get("compute", []) if pid not in peer_pids() - {own}]
        if compute:
            others = [pid for pid in compute if pid != own]
            if own not in compute and self._has_context(gpu):
                if len(compute) > 1:
                    count = len(compute) - 1
                    flags.append(
                        f"contaminated: {_plural(count, 'other compute process')} on "
                        f"{gpu.domain} (NVML lists pids {_pid_list(compute)}; this "
                        f"process, pid {own}, is not among them, as in a container's pid "
                        "namespace or under MPS, so one of them is taken to be this process)"
                    )
            elif others:
                flags.append(
                    f"contaminated: {_plural(len(others), 'other compute process')} on "
                    f"{gpu.domain} ({'pid' if len(others) == 1 else 'pids'} "
                    f"{_pid_list(others)})"
                )
        graphics = [pid for pid in found.get("graphics", []) if pid != own]
        if graphics:
            flags.append(
                f"display: {_plural(len(graphics), 'graphics process')} on {gpu.domain} "
                f"({'pid' if len(graphics) == 1 else 'pids'} {_pid_list(graphics)}); their "
                "steady draw counts as idle power"
            )
        return flags

    def _has_context(self, gpu: _Gpu) -> bool:
        """Whether this process holds a CUDA context on ``gpu``, as far as torch (if the
        test imported it) can tell without creating one."""
        torch = sys.modules.get("torch")
        if torch is None:
            return False
        try:
            cuda = getattr(torch, "cuda", None)
            if cuda is None or not cuda.is_initialized():
                return False
            has_context = getattr(getattr(torch, "_C", None), "_cuda_hasPrimaryContext", None)
            if has_context is None:
                return False
            return any(bool(has_context(index)) for index in gpu.cuda_indices)
        except Exception:
            return False

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
                    "source": gpu.source,
                }
                for gpu in self._gpus
            ],
        }

    def __repr__(self) -> str:
        return f"NvmlMeter(device={self._device_spec!r}, domains={self.domains()!r})"
