"""Which NVML devices are the CUDA devices a test sees?

NVML and CUDA disagree about device numbering, and getting it wrong silently measures
the wrong GPU:

* NVML ignores ``CUDA_VISIBLE_DEVICES`` and always enumerates every GPU in PCI bus order.
* CUDA enumerates only the devices listed in ``CUDA_VISIBLE_DEVICES`` (in the order
  listed), and, unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, numbers the machine's GPUs
  *fastest first*. Integer entries of ``CUDA_VISIBLE_DEVICES`` index that CUDA order.
* Entries may also be GPU UUIDs (``GPU-8932f937-...``, or any unique prefix of one) and
  MIG instance names (``MIG-<uuid>`` or the older ``MIG-GPU-<uuid>/<gi>/<ci>``).
* CUDA stops at the first entry that is invalid (bad syntax, no such GPU, ambiguous
  prefix): only the entries before it are visible. A repeated device hides every device.

This module is pure (no NVML, no CUDA, no environment access) so that every rule above
is unit-testable on a machine without a GPU. The NVML meter feeds it the NVML device
list and the two environment values.

When the order is FASTEST_FIRST and the GPUs are not all the same model, an integer
index does not say which physical GPU it is. Identical GPUs tie on speed and CUDA then
falls back to PCI order, so a homogeneous machine is unambiguous. For a heterogeneous
one the caller may pass ``cuda_uuid_of(i)`` (the UUID CUDA reports for its device ``i``,
e.g. from ``torch.cuda.get_device_properties(i).uuid``); without it, or when it cannot
answer, the mapping *assumes* PCI order and says so (``CudaMapping.assumed``) so the
report can flag the numbers.

MIG: NVML has energy counters only for whole GPUs, so a MIG instance maps to its
parent GPU with ``shared=True``: its energy includes every other instance's work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PCI_BUS_ID_ORDER = "PCI_BUS_ID"
"""The ``CUDA_DEVICE_ORDER`` value that makes CUDA number GPUs like NVML does."""

_HEX_UUID = re.compile(r"[0-9a-f-]+")
_OLD_MIG = re.compile(r"MIG-GPU-([0-9a-f-]+)/(\d+)/(\d+)")
_ORDINAL = re.compile(r"\+?(\d+)")


@dataclass(frozen=True)
class NvmlDeviceInfo:
    """One GPU as NVML enumerates it.

    Attributes:
        index: NVML index (PCI bus order).
        uuid: ``GPU-...`` UUID as NVML reports it.
        pci_bus_id: e.g. ``"00000000:3B:00.0"``; sorting by it gives CUDA's PCI order.
        name: model name; GPUs with different names may be reordered by FASTEST_FIRST.
        mig_enabled: MIG mode is on (the GPU is only usable through its instances).
        mig_uuids: ``MIG-...`` UUIDs of the instances on this GPU.
    """

    index: int
    uuid: str
    pci_bus_id: str
    name: str = ""
    mig_enabled: bool = False
    mig_uuids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CudaDevice:
    """The NVML device behind CUDA device ``cuda_index``.

    Attributes:
        cuda_index: the index the test uses (``cuda:N``).
        nvml_index: the NVML device whose energy counter covers it.
        entry: the ``CUDA_VISIBLE_DEVICES`` entry that selected it (``None`` when unset).
        shared: a MIG instance (or MIG-enabled GPU): the counter covers the whole GPU,
            including work of other instances and processes.
        assumed: the link rests on the PCI-order assumption (see module docstring).
    """

    cuda_index: int
    nvml_index: int
    entry: str | None = None
    shared: bool = False
    assumed: bool = False


@dataclass(frozen=True)
class CudaMapping:
    """CUDA index ``i`` corresponds to ``devices[i]``.

    Attributes:
        devices: one entry per CUDA device visible to the test, in CUDA order.
        assumed: at least one device's link rests on the PCI-order assumption.
        notes: human-readable explanations (why the mapping is assumed, which
            ``CUDA_VISIBLE_DEVICES`` entry stopped the list and why).
    """

    devices: tuple[CudaDevice, ...]
    assumed: bool = False
    notes: tuple[str, ...] = ()

    @property
    def nvml_indices(self) -> list[int]:
        """NVML index of CUDA devices ``0..k-1``, in order (may repeat for MIG)."""
        return [d.nvml_index for d in self.devices]


def _bare_uuid(value: str) -> str:
    """Lower-case UUID without its ``GPU-``/``MIG-`` prefix.

    The prefix is sliced off. ``str.lstrip("MIG-")`` (a known bug in another tool) strips
    a *set of characters*, so it would also eat a leading ``-`` of the body and, for
    ``"MIG-GPU-..."``, the ``G`` of ``GPU``.
    """
    text = value.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _normalise_entry(raw: str) -> str | None:
    """Canonical form of one ``CUDA_VISIBLE_DEVICES`` entry, or ``None`` if CUDA rejects it.

    Integers are read like C's ``strtoul`` (which CUDA uses): leading blanks and a ``+``
    are accepted, parsing stops at the first non-digit (``"1gpu"`` is ``1``), and a
    negative number is invalid. UUID hex is compared case-insensitively.
    """
    text = raw.strip()
    if text.startswith("MIG-GPU-"):
        match = _OLD_MIG.fullmatch("MIG-GPU-" + text[len("MIG-GPU-") :].lower())
        if match is None or not match.group(1).strip("-"):
            return None
        return f"MIG-GPU-{match.group(1)}/{int(match.group(2))}/{int(match.group(3))}"
    for prefix in ("GPU-", "MIG-"):
        if text.startswith(prefix):
            body = text[len(prefix) :].lower()
            if not body or not _HEX_UUID.fullmatch(body) or not body.strip("-"):
                return None
            return prefix + body
    match = _ORDINAL.match(text)
    if match is None:
        return None
    return str(int(match.group(1)))


def parse_cuda_visible_devices(value: str | None) -> list[str] | None:
    """Entries of ``CUDA_VISIBLE_DEVICES`` that CUDA would accept, in order.

    Returns ``None`` when the variable is unset (every GPU is visible) and ``[]`` when it
    is set but empty or starts with an invalid entry (no GPU is visible). Like CUDA,
    parsing stops at the first syntactically invalid entry: ``"0,2,-1,1"`` gives
    ``["0", "2"]``. Entries are normalised: integers in decimal, UUIDs lower-cased
    with their ``GPU-``/``MIG-``/``MIG-GPU-`` prefix kept. Whether an entry names an
    existing GPU is checked by :func:`map_cuda_to_nvml`.
    """
    if value is None:
        return None
    entries: list[str] = []
    for raw in value.split(","):
        entry = _normalise_entry(raw)
        if entry is None:
            break
        entries.append(entry)
    return entries


def _unique_prefix_match(
    prefix: str, candidates: Sequence[tuple[str, NvmlDeviceInfo]]
) -> NvmlDeviceInfo | None:
    """The device owning the only UUID that starts with ``prefix``, else ``None``.

    CUDA accepts any unique UUID prefix; an ambiguous one is an invalid entry.
    """
    hits = [(uuid, device) for uuid, device in candidates if uuid.startswith(prefix)]
    if len({uuid for uuid, _ in hits}) != 1:
        return None
    return hits[0][1]


@dataclass
class _Slot:
    """A CUDA device being resolved: its NVML device and how sure we are."""

    entry: str | None
    device: NvmlDeviceInfo
    shared: bool
    exact: bool
    key: tuple[int, str]


def _resolve_entry(
    entry: str, pci_order: Sequence[NvmlDeviceInfo], ordinal_ambiguous: bool
) -> _Slot | str:
    """Resolve one normalised entry to a slot, or return why CUDA would stop at it."""
    if entry.startswith(("MIG-", "GPU-")):
        return _resolve_uuid_entry(entry, pci_order)
    ordinal = int(entry)
    if ordinal >= len(pci_order):
        return f"is out of range: the machine has {len(pci_order)} GPU(s)"
    device = pci_order[ordinal]
    return _Slot(
        entry, device, device.mig_enabled, exact=not ordinal_ambiguous, key=(device.index, "")
    )


def _resolve_uuid_entry(entry: str, pci_order: Sequence[NvmlDeviceInfo]) -> _Slot | str:
    """A ``GPU-``, ``MIG-`` or old-style ``MIG-GPU-`` entry: UUIDs name a device exactly."""
    gpu_uuids = [(_bare_uuid(d.uuid), d) for d in pci_order]
    if entry.startswith("MIG-GPU-"):
        match = _OLD_MIG.fullmatch(entry)
        assert match is not None  # normalised by parse_cuda_visible_devices
        parent = _unique_prefix_match(match.group(1), gpu_uuids)
        if parent is None:
            return "names no GPU (or an ambiguous UUID prefix)"
        return _Slot(entry, parent, shared=True, exact=True, key=(parent.index, entry))
    if entry.startswith("MIG-"):
        mig_uuids = [(_bare_uuid(u), d) for d in pci_order for u in d.mig_uuids]
        parent = _unique_prefix_match(_bare_uuid(entry), mig_uuids)
        if parent is None:
            return "names no MIG instance (or an ambiguous UUID prefix)"
        return _Slot(entry, parent, shared=True, exact=True, key=(parent.index, entry))
    device = _unique_prefix_match(_bare_uuid(entry), gpu_uuids)
    if device is None:
        return "names no GPU (or an ambiguous UUID prefix)"
    return _Slot(entry, device, device.mig_enabled, exact=True, key=(device.index, ""))


def _match_cuda_uuid(uuid: str, devices: Sequence[NvmlDeviceInfo]) -> tuple[NvmlDeviceInfo, bool]:
    """The device (and MIG-ness) whose GPU or MIG UUID equals ``uuid``; raises KeyError."""
    bare = _bare_uuid(uuid)
    for device in devices:
        if _bare_uuid(device.uuid) == bare:
            return device, device.mig_enabled
        if any(_bare_uuid(mig) == bare for mig in device.mig_uuids):
            return device, True
    raise KeyError(uuid)


def map_cuda_to_nvml(
    devices: Sequence[NvmlDeviceInfo],
    cuda_visible_devices: str | None,
    cuda_device_order: str | None = None,
    cuda_uuid_of: Callable[[int], str | None] | None = None,
) -> CudaMapping:
    """Map the CUDA devices a process sees to NVML devices.

    Args:
        devices: every GPU NVML enumerates.
        cuda_visible_devices: the ``CUDA_VISIBLE_DEVICES`` value (``None`` = unset).
        cuda_device_order: the ``CUDA_DEVICE_ORDER`` value; only the exact string
            ``PCI_BUS_ID`` changes CUDA's order (anything else means FASTEST_FIRST).
        cuda_uuid_of: optional oracle returning the UUID CUDA reports for its device
            ``i`` (with or without ``GPU-``/``MIG-`` prefix), or ``None`` if unknown.
            Only consulted for links that integer indices leave ambiguous.

    Returns:
        The mapping; ``mapping.devices[i]`` is CUDA device ``i``.
    """
    pci_order = sorted(devices, key=lambda d: (d.pci_bus_id.strip().lower(), d.index))
    order_is_pci = (cuda_device_order or "").strip() == PCI_BUS_ID_ORDER
    models = sorted({d.name for d in pci_order})
    ordinal_ambiguous = not order_is_pci and len(models) > 1
    notes: list[str] = []
    if cuda_visible_devices is None:
        slots = [
            _Slot(None, device, device.mig_enabled, exact=not ordinal_ambiguous,
                  key=(device.index, ""))
            for device in pci_order
        ]
    else:
        slots = _visible_slots(cuda_visible_devices, pci_order, ordinal_ambiguous, notes)
    if cuda_uuid_of is not None:
        _confirm_by_uuid(slots, pci_order, cuda_uuid_of)
    assumed = any(not slot.exact for slot in slots)
    if assumed:
        notes.append(
            "CUDA_DEVICE_ORDER is not PCI_BUS_ID and the GPUs differ "
            f"({', '.join(models)}), so CUDA numbers them fastest first; assuming PCI bus "
            "order. Set CUDA_DEVICE_ORDER=PCI_BUS_ID or list GPUs by UUID in "
            "CUDA_VISIBLE_DEVICES to make the mapping exact"
        )
    return CudaMapping(
        devices=tuple(
            CudaDevice(
                cuda_index=i,
                nvml_index=slot.device.index,
                entry=slot.entry,
                shared=slot.shared,
                assumed=not slot.exact,
            )
            for i, slot in enumerate(slots)
        ),
        assumed=assumed,
        notes=tuple(notes),
    )


def _visible_slots(
    cuda_visible_devices: str, pci_order: Sequence[NvmlDeviceInfo], ordinal_ambiguous: bool,
    notes: list[str],
) -> list[_Slot]:
    """The devices a set ``CUDA_VISIBLE_DEVICES`` selects, in its order; appends to
    ``notes`` why CUDA stopped early or sees nothing."""
    entries = parse_cuda_visible_devices(cuda_visible_devices) or []
    raw_fields = cuda_visible_devices.split(",")
    if len(entries) < len(raw_fields):
        bad = raw_fields[len(entries)]
        notes.append(
            f"CUDA_VISIBLE_DEVICES entry {bad.strip()!r} is not a valid device; "
            "CUDA ignores it and every entry after it"
        )
    slots: list[_Slot] = []
    seen: set[tuple[int, str]] = set()
    for entry in entries:
        resolved = _resolve_entry(entry, pci_order, ordinal_ambiguous)
        if isinstance(resolved, str):
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {entry!r} {resolved}; "
                "CUDA ignores it and every entry after it"
            )
            break
        if resolved.key in seen:
            notes.append(
                f"CUDA_VISIBLE_DEVICES names {entry!r} twice; CUDA then sees no device"
            )
            return []
        seen.add(resolved.key)
        slots.append(resolved)
    return slots


def _confirm_by_uuid(
    slots: list[_Slot], pci_order: Sequence[NvmlDeviceInfo],
    cuda_uuid_of: Callable[[int], str | None],
) -> None:
    """Make ambiguous slots exact where CUDA's own UUID for the index names a device."""
    for cuda_index, slot in enumerate(slots):
        if slot.exact:
            continue
        uuid = cuda_uuid_of(cuda_index)
        if not uuid:
            continue
        try:
            device, shared = _match_cuda_uuid(uuid, pci_order)
        except KeyError:
            continue
        slot.device, slot.shared, slot.exact = device, shared, True
