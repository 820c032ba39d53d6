"""Finding the GPUs a test measures, and what each one can be read with.

Runs once, when the meter is built: NVML's device list is mapped to the CUDA devices
the test sees (:mod:`pytest_energy.meters.cuda_devices`, since NVML ignores
``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER``), MIG instances are folded into their
parent GPU (energy exists only per GPU), and each GPU gets its reading: the
total-energy counter, or a power track for the sampler when there is none. Facts that
explain run-to-run differences (clocks, power limit, temperature) are taken here too,
so later reads cost only the counter calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_energy.meters.base import MeterUnavailable
from pytest_energy.meters.cuda_devices import (
    CudaDevice,
    CudaMapping,
    NvmlDeviceInfo,
    map_cuda_to_nvml,
)
from pytest_energy.meters.nvml.bindings import (
    field_number,
    instant_power_field,
    nvml_reason,
    sample_reason,
    text,
)
from pytest_energy.meters.nvml.frameworks import torch_uuid_oracle
from pytest_energy.meters.nvml.sampler import (
    SOURCE_AVERAGE,
    SOURCE_COUNTER,
    SOURCE_INSTANT,
    PowerTrack,
)

DEVICE_SPEC = re.compile(r"cuda(?::(\d+))?")
"""What the meter's ``device`` may be: ``cuda`` (every visible device) or ``cuda:N``."""


@dataclass
class MeasuredGpu:
    """One measured physical GPU and its counter state."""

    domain: str
    cuda_indices: list[int]
    nvml_index: int
    handle: Any
    info: NvmlDeviceInfo
    shared: bool
    assumed: bool
    last_mj: int
    total_mj: int = 0
    facts: dict[str, Any] = field(default_factory=dict)
    source: str = SOURCE_COUNTER
    track: PowerTrack | None = None  # set when energy is sampled from power

    def add_instance(self, cuda_device: CudaDevice) -> None:
        """Another MIG instance of this GPU: measured once, marked shared."""
        self.cuda_indices.append(cuda_device.cuda_index)
        self.shared = True
        self.assumed = self.assumed or cuda_device.assumed


@dataclass(frozen=True)
class Discovery:
    """What the meter needs to know at start: the GPUs and how they were found."""

    driver_version: str | None
    cuda_visible_devices: str | None
    cuda_device_order: str | None
    mapping: CudaMapping
    gpus: list[MeasuredGpu]


def discover(nvml: Any, wanted_index: int | None, *, sample_power: bool) -> Discovery:
    """The GPUs behind CUDA device ``wanted_index`` (``None``: every visible one).

    Raises:
        MeterUnavailable: NVML cannot list the GPUs, no device is visible, the index is
            out of range, or a GPU has neither an energy counter nor a power reading.
    """
    driver_version = _driver_version(nvml)
    infos, handles = _enumerate(nvml)
    cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    cuda_device_order = os.environ.get("CUDA_DEVICE_ORDER")
    mapping = map_cuda_to_nvml(
        infos, cuda_visible_devices, cuda_device_order, cuda_uuid_of=torch_uuid_oracle()
    )
    visible = _wanted(mapping, len(infos), cuda_visible_devices, wanted_index)
    by_index = {info.index: info for info in infos}
    gpus: dict[int, MeasuredGpu] = {}
    for cuda_device in visible:
        gpu = gpus.get(cuda_device.nvml_index)
        if gpu is not None:
            gpu.add_instance(cuda_device)
            continue
        gpus[cuda_device.nvml_index] = _measured_gpu(
            nvml, cuda_device, by_index[cuda_device.nvml_index],
            handles[cuda_device.nvml_index], sample_power=sample_power,
        )
    for gpu in gpus.values():
        gpu.facts = _fingerprint(nvml, gpu.handle)
    return Discovery(driver_version, cuda_visible_devices, cuda_device_order, mapping,
                     list(gpus.values()))


def _driver_version(nvml: Any) -> str | None:
    try:
        return text(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError:
        return None


def _wanted(
    mapping: CudaMapping, nvml_count: int, cuda_visible_devices: str | None,
    wanted_index: int | None,
) -> list[CudaDevice]:
    """The CUDA devices to measure, or why there is none."""
    visible = list(mapping.devices)
    env = f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}"
    notes = "".join(f"; {note}" for note in mapping.notes)
    if not visible:
        raise MeterUnavailable(
            f"NVML unavailable: no CUDA device is visible ({env}; NVML sees "
            f"{nvml_count} GPU(s)){notes}"
        )
    if wanted_index is None:
        return visible
    if wanted_index >= len(visible):
        raise MeterUnavailable(
            f"NVML unavailable: cuda:{wanted_index} does not exist; the test sees "
            f"{len(visible)} CUDA device(s) ({env}){notes}"
        )
    return [visible[wanted_index]]


def _measured_gpu(
    nvml: Any, cuda_device: CudaDevice, info: NvmlDeviceInfo, handle: Any, *,
    sample_power: bool,
) -> MeasuredGpu:
    """The first CUDA device seen on a GPU, read by its counter or by sampling."""
    domain = f"gpu:{cuda_device.cuda_index}"
    start = None if sample_power else _first_energy(nvml, handle, cuda_device.cuda_index, info)
    gpu = MeasuredGpu(
        domain=domain,
        cuda_indices=[cuda_device.cuda_index],
        nvml_index=cuda_device.nvml_index,
        handle=handle,
        info=info,
        shared=cuda_device.shared,
        assumed=cuda_device.assumed,
        last_mj=start or 0,
    )
    if start is None:  # no energy counter: sample power instead
        api, gpu.source = _power_source(
            nvml, handle, cuda_device.cuda_index, info, sample_power=sample_power
        )
        gpu.track = PowerTrack(
            domain=domain,
            label=f"{domain} ({info.name}, {info.uuid})",
            handle=handle,
            api=api,
            source=gpu.source,
        )
    return gpu


def _enumerate(nvml: Any) -> tuple[list[NvmlDeviceInfo], dict[int, Any]]:
    """Every GPU NVML sees, with what the CUDA mapping needs."""
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        raise MeterUnavailable(f"NVML unavailable: cannot count GPUs: {nvml_reason(exc)}") from None
    infos: list[NvmlDeviceInfo] = []
    handles: dict[int, Any] = {}
    for index in range(count):
        handles[index] = handle = _handle(nvml, index)
        infos.append(_device_info(nvml, index, handle))
    return infos, handles


def _handle(nvml: Any, index: int) -> Any:
    try:
        return nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError as exc:
        raise _query_failed(index, exc) from None


def _query_failed(index: int, exc: BaseException) -> MeterUnavailable:
    return MeterUnavailable(
        f"NVML unavailable: cannot query NVML device {index}: {nvml_reason(exc)}"
    )


def _device_info(nvml: Any, index: int, handle: Any) -> NvmlDeviceInfo:
    try:
        uuid = text(nvml.nvmlDeviceGetUUID(handle))
        name = text(nvml.nvmlDeviceGetName(handle))
        pci_bus_id = text(nvml.nvmlDeviceGetPciInfo(handle).busId)
    except nvml.NVMLError as exc:
        raise _query_failed(index, exc) from None
    mig_enabled = _mig_enabled(nvml, handle) is True
    return NvmlDeviceInfo(
        index=index,
        uuid=uuid,
        pci_bus_id=pci_bus_id,
        name=name,
        mig_enabled=mig_enabled,
        mig_uuids=_mig_uuids(nvml, handle) if mig_enabled else (),
    )


def _mig_enabled(nvml: Any, handle: Any) -> bool | None:
    try:
        current = nvml.nvmlDeviceGetMigMode(handle)[0]
    except (nvml.NVMLError, AttributeError):
        return None  # NotSupported on non-MIG GPUs
    return bool(current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))


def _mig_uuids(nvml: Any, handle: Any) -> tuple[str, ...]:
    """UUIDs of the MIG instances on a GPU (empty slots answer NotFound)."""
    try:
        slots = int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))
    except (nvml.NVMLError, AttributeError):
        return ()
    uuids: list[str] = []
    for slot in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            uuids.append(text(nvml.nvmlDeviceGetUUID(mig)))
        except nvml.NVMLError:
            continue
    return tuple(uuids)


def _first_energy(nvml: Any, handle: Any, cuda_index: int, info: NvmlDeviceInfo) -> int | None:
    """The counter's value now, or ``None`` when the GPU has no energy counter."""
    try:
        return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except nvml.NVMLError_NotSupported:
        return None
    except nvml.NVMLError as exc:
        raise MeterUnavailable(
            f"NVML unavailable: cannot read the energy counter of gpu {cuda_index} "
            f"({info.name}): {nvml_reason(exc)}"
        ) from None


def _power_source(
    nvml: Any, handle: Any, cuda_index: int, info: NvmlDeviceInfo, *, sample_power: bool
) -> tuple[str, str]:
    """``(api, source)`` for a GPU without an energy counter.

    The instant-power field value wins when NVML answers it; else
    ``nvmlDeviceGetPowerUsage``, which NVML documents as instantaneous on GA100 and
    older architectures and as a 1 s average on newer ones. Only architectures older
    than Ampere are labelled instant; Ampere (GA100 included) and unknown ones get
    the cautious "average" label.
    """
    try:
        field_number(nvml, instant_power_field(nvml, handle))
        return "field", SOURCE_INSTANT
    except (nvml.NVMLError, AttributeError, IndexError, TypeError, ValueError) as exc:
        field_reason = sample_reason(exc)
    try:
        nvml.nvmlDeviceGetPowerUsage(handle)
    except nvml.NVMLError as exc:
        why = (
            "power sampling was requested, but it has"
            if sample_power
            else "has no total-energy counter (pre-Volta) and"
        )
        raise MeterUnavailable(
            f"gpu {cuda_index} ({info.name}) {why} no power reading to sample "
            f"(instant power field: {field_reason}; nvmlDeviceGetPowerUsage: "
            f"{nvml_reason(exc)}). Use another meter for this machine"
        ) from None
    return "usage", SOURCE_INSTANT if _pre_ampere(nvml, handle) else SOURCE_AVERAGE


def _pre_ampere(nvml: Any, handle: Any) -> bool:
    """Whether the GPU's architecture is known and older than Ampere."""
    try:
        arch: int | None = int(nvml.nvmlDeviceGetArchitecture(handle))
    except (nvml.NVMLError, AttributeError, TypeError, ValueError):
        arch = None
    ampere = getattr(nvml, "NVML_DEVICE_ARCH_AMPERE", 7)
    unknown = getattr(nvml, "NVML_DEVICE_ARCH_UNKNOWN", 0xFFFFFFFF)
    return arch is not None and arch != unknown and arch < ampere


def _fingerprint(nvml: Any, handle: Any) -> dict[str, Any]:
    """Device facts at start that explain run-to-run differences; each field optional."""

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
        "mig": _mig_enabled(nvml, handle),
    }
