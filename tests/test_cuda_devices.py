"""CUDA-to-NVML device mapping: CUDA_VISIBLE_DEVICES parsing, ordering, UUIDs, MIG."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_energy.meters.cuda_devices import (
    NvmlDeviceInfo,
    map_cuda_to_nvml,
    parse_cuda_visible_devices,
)

UUID_A = "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
UUID_B = "GPU-8932a111-0000-4106-c12f-20bd9faed9f6"  # shares the prefix "GPU-8932"
UUID_C = "GPU-d1e2f3a4-5555-6666-7777-888899990000"
MIG_1 = "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"
MIG_2 = "MIG-4e1c9a53-0000-5de3-91c7-45d71c87eb3f"

HOMOGENEOUS = [
    NvmlDeviceInfo(0, UUID_A, "00000000:1B:00.0", "NVIDIA A100-SXM4-80GB"),
    NvmlDeviceInfo(1, UUID_B, "00000000:3B:00.0", "NVIDIA A100-SXM4-80GB"),
    NvmlDeviceInfo(2, UUID_C, "00000000:86:00.0", "NVIDIA A100-SXM4-80GB"),
]
# NVML index 0 is a small card on the lowest bus; CUDA's FASTEST_FIRST puts the H100 first.
MIXED = [
    NvmlDeviceInfo(0, UUID_A, "00000000:1B:00.0", "NVIDIA T400"),
    NvmlDeviceInfo(1, UUID_C, "00000000:3B:00.0", "NVIDIA H100 PCIe"),
]
WITH_MIG = [
    NvmlDeviceInfo(0, UUID_A, "00000000:1B:00.0", "NVIDIA A100", True, (MIG_1, MIG_2)),
    NvmlDeviceInfo(1, UUID_C, "00000000:3B:00.0", "NVIDIA A100"),
]


# -- parse_cuda_visible_devices -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", []),
        ("0", ["0"]),
        ("2,1", ["2", "1"]),
        (" 1, 2 ", ["1", "2"]),
        ("+3", ["3"]),
        ("0,2,-1,1", ["0", "2"]),  # the CUDA documentation's own example
        ("0,foo,1", ["0"]),
        ("foo,0", []),
        ("1gpu,2", ["1", "2"]),  # strtoul reads the leading digits
        ("0,,1", ["0"]),
        ("GPU-8932F937", ["GPU-8932f937"]),
        (f"{UUID_A},1", [UUID_A, "1"]),
        ("GPU-", []),
        ("GPU-xyz", []),
        (MIG_1, [MIG_1]),
        (f"MIG-{UUID_A}/1/0", [f"MIG-{UUID_A}/1/0"]),
        (f"MIG-{UUID_A}", []),  # old-style MIG name needs /<gi>/<ci>
        ("MIG-", []),
    ],
)
def test_parse_cuda_visible_devices(value: str | None, expected: list[str] | None) -> None:
    assert parse_cuda_visible_devices(value) == expected


@given(st.text(alphabet="0123456789,-+ GPUMIabcdef/x", max_size=40))
def test_parse_stops_at_first_invalid_entry(value: str) -> None:
    entries = parse_cuda_visible_devices(value)
    assert entries is not None
    fields = value.split(",")
    assert len(entries) <= len(fields)
    # Every accepted entry is a normalised prefix of the list, never a later field.
    assert parse_cuda_visible_devices(",".join(fields[: len(entries)])) == entries


# -- map_cuda_to_nvml ------------------------------------------------------------------


def test_unset_means_every_gpu_in_pci_order() -> None:
    shuffled = [HOMOGENEOUS[2], HOMOGENEOUS[0], HOMOGENEOUS[1]]
    mapping = map_cuda_to_nvml(shuffled, None)
    assert mapping.nvml_indices == [0, 1, 2]
    assert not mapping.assumed
    assert [d.cuda_index for d in mapping.devices] == [0, 1, 2]
    assert all(d.entry is None and not d.shared for d in mapping.devices)


def test_pci_order_comes_from_bus_ids_not_nvml_indices() -> None:
    # NVML does not promise its enumeration is stable; CUDA's PCI order is the bus id.
    devices = [
        NvmlDeviceInfo(0, UUID_A, "00000000:3B:00.0", "NVIDIA A100"),
        NvmlDeviceInfo(1, UUID_C, "00000000:1b:00.0", "NVIDIA A100"),
    ]
    assert map_cuda_to_nvml(devices, None, "PCI_BUS_ID").nvml_indices == [1, 0]
    assert map_cuda_to_nvml(devices, "0", "PCI_BUS_ID").nvml_indices == [1]


def test_integer_entries_reorder_and_hide() -> None:
    mapping = map_cuda_to_nvml(HOMOGENEOUS, "2,0")
    assert mapping.nvml_indices == [2, 0]
    assert [d.entry for d in mapping.devices] == ["2", "0"]
    assert mapping.notes == ()


def test_empty_value_hides_every_gpu() -> None:
    assert map_cuda_to_nvml(HOMOGENEOUS, "").devices == ()


def test_out_of_range_ordinal_stops_the_list() -> None:
    mapping = map_cuda_to_nvml(HOMOGENEOUS, "1,7,0")
    assert mapping.nvml_indices == [1]
    assert any("'7' is out of range" in note for note in mapping.notes)


def test_syntax_error_is_reported() -> None:
    mapping = map_cuda_to_nvml(HOMOGENEOUS, "1,-1,0")
    assert mapping.nvml_indices == [1]
    assert any("'-1' is not a valid device" in note for note in mapping.notes)


def test_full_uuid_and_unique_prefix() -> None:
    mapping = map_cuda_to_nvml(HOMOGENEOUS, f"{UUID_C},GPU-8932a")
    assert mapping.nvml_indices == [2, 1]
    assert mapping.devices[1].entry == "GPU-8932a"


def test_ambiguous_uuid_prefix_stops_the_list() -> None:
    mapping = map_cuda_to_nvml(HOMOGENEOUS, "2,GPU-8932,0")
    assert mapping.nvml_indices == [2]
    assert any("ambiguous" in note for note in mapping.notes)


def test_unknown_uuid_stops_the_list() -> None:
    assert map_cuda_to_nvml(HOMOGENEOUS, "GPU-ffff,0").nvml_indices == []


def test_repeated_device_hides_everything() -> None:
    mapping = map_cuda_to_nvml(HOMOGENEOUS, f"1,{UUID_B}")
    assert mapping.devices == ()
    assert any("twice" in note for note in mapping.notes)


def test_new_style_mig_maps_to_parent_and_is_shared() -> None:
    mapping = map_cuda_to_nvml(WITH_MIG, f"{MIG_2},{MIG_1}")
    assert mapping.nvml_indices == [0, 0]
    assert all(d.shared for d in mapping.devices)


def test_old_style_mig_maps_to_parent() -> None:
    # "MIG-GPU-..." stripped with str.lstrip("MIG-") would lose the "G" of "GPU".
    mapping = map_cuda_to_nvml(WITH_MIG, f"1,MIG-{UUID_A}/2/0")
    assert mapping.nvml_indices == [1, 0]
    assert [d.shared for d in mapping.devices] == [False, True]


def test_unknown_mig_stops_the_list() -> None:
    assert map_cuda_to_nvml(WITH_MIG, "1,MIG-0000aaaa,0").nvml_indices == [1]


def test_whole_mig_enabled_gpu_is_shared() -> None:
    mapping = map_cuda_to_nvml(WITH_MIG, None)
    assert [d.shared for d in mapping.devices] == [True, False]


def test_fastest_first_on_identical_gpus_is_pci_order() -> None:
    mapping = map_cuda_to_nvml(HOMOGENEOUS, "1", "FASTEST_FIRST")
    assert mapping.nvml_indices == [1]
    assert not mapping.assumed


@pytest.mark.parametrize("visible", [None, "0,1", "1"])
def test_fastest_first_on_mixed_gpus_is_assumed(visible: str | None) -> None:
    mapping = map_cuda_to_nvml(MIXED, visible, None)
    assert mapping.assumed
    assert all(d.assumed for d in mapping.devices)
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in note for note in mapping.notes)
    assert any("NVIDIA H100 PCIe" in note for note in mapping.notes)


def test_pci_bus_id_order_makes_mixed_gpus_exact() -> None:
    mapping = map_cuda_to_nvml(MIXED, None, "PCI_BUS_ID")
    assert mapping.nvml_indices == [0, 1]
    assert not mapping.assumed
    assert mapping.notes == ()


def test_uuid_entries_are_exact_even_when_fastest_first() -> None:
    def oracle(index: int) -> str | None:
        raise AssertionError("no need to ask CUDA for UUIDs")

    mapping = map_cuda_to_nvml(MIXED, f"{UUID_C},{UUID_A}", None, oracle)
    assert mapping.nvml_indices == [1, 0]
    assert not mapping.assumed


def test_uuid_oracle_resolves_fastest_first() -> None:
    cuda_uuids = {0: UUID_C[len("GPU-") :], 1: UUID_A}  # torch gives UUIDs without prefix
    mapping = map_cuda_to_nvml(MIXED, None, "FASTEST_FIRST", cuda_uuids.get)
    assert mapping.nvml_indices == [1, 0]
    assert not mapping.assumed
    assert mapping.notes == ()


def test_uuid_oracle_applies_to_visible_indices() -> None:
    asked: list[int] = []

    def oracle(index: int) -> str | None:
        asked.append(index)
        return UUID_C  # the only visible device, CUDA index 0, is the H100

    mapping = map_cuda_to_nvml(MIXED, "0", None, oracle)
    assert (asked, mapping.nvml_indices, mapping.assumed) == ([0], [1], False)


def test_partial_oracle_answers_leave_the_rest_assumed() -> None:
    mapping = map_cuda_to_nvml(MIXED, None, None, {0: UUID_C, 1: "GPU-unknown"}.get)
    assert [d.assumed for d in mapping.devices] == [False, True]
    assert mapping.assumed


def test_oracle_reporting_a_mig_uuid_maps_to_the_parent() -> None:
    mixed_mig = [*WITH_MIG[:1], NvmlDeviceInfo(1, UUID_C, "00000000:3B:00.0", "NVIDIA L4")]
    mapping = map_cuda_to_nvml(mixed_mig, None, None, {0: MIG_1, 1: UUID_C}.get)
    assert mapping.nvml_indices == [0, 1]
    assert [d.shared for d in mapping.devices] == [True, False]
    assert not mapping.assumed


@given(st.permutations([0, 1, 2]), st.integers(min_value=1, max_value=3))
def test_integer_lists_map_one_to_one_in_pci_order(order: list[int], count: int) -> None:
    value = ",".join(str(i) for i in order[:count])
    mapping = map_cuda_to_nvml(HOMOGENEOUS, value, "PCI_BUS_ID")
    assert mapping.nvml_indices == order[:count]
