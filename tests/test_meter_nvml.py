"""NvmlMeter against a fake pynvml: energy, device selection, sync, failures, describe."""

from __future__ import annotations

import ctypes
import importlib
import inspect
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_pynvml
from fakes.fake_pynvml import (
    NVML_DEVICE_ARCH_PASCAL,
    NVML_DEVICE_MIG_ENABLE,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakePynvml,
    clean_cuda_environment,  # noqa: F401 (autouse fixture)
    hopper,
    install,
)

from pytest_energy.meters.base import Meter, MeterError, MeterUnavailable, missing_meter_attributes
from pytest_energy.meters.nvml import NvmlMeter

REPO_ROOT = Path(__file__).resolve().parents[1]




@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> FakePynvml:
    return install(monkeypatch, [hopper(0), hopper(1)])


# -- basics ----------------------------------------------------------------------------


def test_meter_protocol(two_gpus: FakePynvml) -> None:
    meter = NvmlMeter()
    assert isinstance(meter, Meter)
    assert missing_meter_attributes(meter) == []
    assert (meter.name, meter.estimated, meter.update_period_s) == ("nvml", False, 0.1)


def test_energy_deltas_from_the_counter(two_gpus: FakePynvml) -> None:
    meter = NvmlMeter("cuda")
    assert meter.read() == {"gpu:0": 0.0, "gpu:1": 0.0}
    two_gpus.gpus[0].energy_mj += 2_500
    two_gpus.gpus[1].energy_mj += 1
    assert meter.read() == {"gpu:0": 2.5, "gpu:1": 0.001}
    two_gpus.gpus[0].energy_mj += 500
    assert meter.read() == {"gpu:0": 3.0, "gpu:1": 0.001}


def test_energy_from_a_power_trace_with_counter_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = hopper(0, power_w=lambda t: 100.0 if t < 1.0 else 300.0, counter_period_s=0.1)
    fake = install(monkeypatch, [gpu])
    meter = NvmlMeter("cuda:0")
    fake.advance(0.05)  # no counter step yet
    assert meter.read() == {"gpu:0": 0.0}
    fake.advance(1.95)  # t = 2.0 s: 100 J + 300 J
    assert meter.read()["gpu:0"] == pytest.approx(400.0, abs=0.002)


def test_domains_for_all_devices_and_one_device(two_gpus: FakePynvml) -> None:
    assert NvmlMeter("cuda").domains() == ["gpu:0", "gpu:1"]
    one = NvmlMeter("cuda:1")
    assert one.domains() == ["gpu:1"]
    two_gpus.gpus[0].energy_mj += 10_000
    two_gpus.gpus[1].energy_mj += 7_000
    assert one.read() == {"gpu:1": 7.0}


def test_index_out_of_range(two_gpus: FakePynvml) -> None:
    with pytest.raises(MeterUnavailable, match=r"cuda:2 does not exist; the test sees 2 CUDA"):
        NvmlMeter("cuda:2")
    assert two_gpus.init_count == 0  # NVML shut down again


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cpu"])
def test_bad_device_spec(two_gpus: FakePynvml, spec: str) -> None:
    with pytest.raises(ValueError, match="'cuda' or 'cuda:N'"):
        NvmlMeter(spec)
    assert two_gpus.init_calls == 0


# -- CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER ---------------------------------------------


def test_visible_devices_by_index(two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    meter = NvmlMeter("cuda:0")
    two_gpus.gpus[1].energy_mj += 4_000
    assert meter.read() == {"gpu:0": 4.0}
    assert meter.describe()["devices"][0]["nvml_index"] == 1


def test_visible_devices_by_uuid_and_prefix(
    two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu0, gpu1 = two_gpus.gpus
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{gpu1.uuid},{gpu0.uuid[:12]}")
    meter = NvmlMeter()
    gpu0.energy_mj += 1_000
    gpu1.energy_mj += 2_000
    assert meter.read() == {"gpu:0": 2.0, "gpu:1": 1.0}
    assert [d["uuid"] for d in meter.describe()["devices"]] == [gpu1.uuid, gpu0.uuid]


def test_visible_devices_invalid_entry_stops(
    two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,bogus,0")
    meter = NvmlMeter()
    assert meter.domains() == ["gpu:0"]
    assert any("'bogus'" in note for note in meter.describe()["mapping_notes"])


@pytest.mark.parametrize("value", ["", "-1", "GPU-ffffffff", "0,0"])
def test_no_visible_device(
    two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    with pytest.raises(MeterUnavailable, match=r"no CUDA device is visible .*NVML sees 2 GPU"):
        NvmlMeter()
    assert two_gpus.init_count == 0


def test_mig_instance_measures_the_parent_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    mig_a, mig_b = "MIG-aaaaaaaa-1111", "MIG-bbbbbbbb-2222"
    parent = hopper(0, mig_mode=NVML_DEVICE_MIG_ENABLE, mig_uuids=[mig_a, mig_b])
    fake = install(monkeypatch, [parent, hopper(1)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{mig_b},{mig_a}")
    meter = NvmlMeter()
    # Both instances live on one GPU: measured once, not twice.
    assert meter.domains() == ["gpu:0"]
    parent.energy_mj += 3_000
    assert meter.read() == {"gpu:0": 3.0}
    (device,) = meter.describe()["devices"]
    assert (device["cuda_indices"], device["shared"], device["mig"]) == ([0, 1], True, True)
    assert "nvmlDeviceGetTotalEnergyConsumption" in fake.calls
    only_b = NvmlMeter("cuda:0")
    assert only_b.describe()["devices"][0]["shared"] is True


def test_old_style_mig_name(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = hopper(1, mig_mode=NVML_DEVICE_MIG_ENABLE, mig_uuids=["MIG-cccc"])
    install(monkeypatch, [hopper(0), parent])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"MIG-{parent.uuid}/1/0")
    assert NvmlMeter().describe()["devices"][0]["uuid"] == parent.uuid


def mixed(monkeypatch: pytest.MonkeyPatch) -> FakePynvml:
    """A slow card on the first PCI bus and an H100 on the second."""
    return install(
        monkeypatch,
        [hopper(0, name="NVIDIA T400", architecture=6), hopper(1)],
    )


@pytest.mark.parametrize("names,window", [
    (["NVIDIA H100 80GB HBM3", "NVIDIA H200"], 0.025),
    (["NVIDIA A100-SXM4-80GB"], 0.025),
    (["NVIDIA GH200 480GB"], 0.025),
    (["Tesla V100-SXM2-16GB"], None),  # no published sensor window: plan for the worst
    (["NVIDIA L4"], None),
    (["NVIDIA A100-SXM4-80GB", "NVIDIA L4"], None),  # GPUs that differ: unknown
])
def test_sensor_window_is_declared_only_where_published(
        monkeypatch: pytest.MonkeyPatch, names: list[str], window: float | None) -> None:
    install(monkeypatch, [hopper(i, name=name) for i, name in enumerate(names)])
    meter = NvmlMeter()
    assert meter.sensor_window_s == window
    assert meter.describe()["sensor_window_s"] == window


def test_sampled_meter_declares_no_sensor_window(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [hopper(0)])
    meter = NvmlMeter(sample_power=True)
    try:
        assert meter.sampled and meter.sensor_window_s is None
    finally:
        meter.close()


def test_fastest_first_on_mixed_gpus_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    mixed(monkeypatch)
    info = NvmlMeter().describe()
    assert info["mapping_assumed"] is True
    assert all(device["mapping_assumed"] for device in info["devices"])
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in note for note in info["mapping_notes"])


def test_pci_bus_id_order_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    mixed(monkeypatch)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    info = NvmlMeter().describe()
    assert info["mapping_assumed"] is False
    assert info["cuda_device_order"] == "PCI_BUS_ID"
    assert [d["name"] for d in info["devices"]] == ["NVIDIA T400", "NVIDIA H100 80GB HBM3"]


class FakeTorchCuda:
    """Just the ``torch.cuda`` surface the meter touches."""

    def __init__(self, uuids: dict[int, str], initialized: bool = True) -> None:
        self.uuids = uuids
        self.initialized = initialized
        self.synchronized: list[int] = []
        self.fail: Exception | None = None

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return self.initialized

    def synchronize(self, device: int | None = None) -> None:
        if self.fail is not None:
            raise self.fail
        assert device is not None
        self.synchronized.append(device)

    def get_device_properties(self, index: int) -> Any:
        return types.SimpleNamespace(name="x", uuid=self.uuids[index])


def install_torch(monkeypatch: pytest.MonkeyPatch, cuda: FakeTorchCuda) -> None:
    torch = types.ModuleType("torch")
    torch.cuda = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)


def test_torch_uuids_resolve_fastest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = mixed(monkeypatch)
    t400, h100 = fake.gpus
    # CUDA puts the H100 first; torch reports UUIDs without the "GPU-" prefix.
    install_torch(monkeypatch, FakeTorchCuda({0: h100.uuid[4:], 1: t400.uuid[4:]}))
    meter = NvmlMeter("cuda:0")
    assert meter.describe()["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert meter.describe()["mapping_assumed"] is False
    h100.energy_mj += 9_000
    assert meter.read() == {"gpu:0": 9.0}


# -- synchronisation -----------------------------------------------------------------------


def test_read_synchronises_torch_on_measured_devices(
    two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = FakeTorchCuda({})
    install_torch(monkeypatch, cuda)
    meter = NvmlMeter("cuda:1")
    meter.read()
    assert cuda.synchronized == [1]
    NvmlMeter("cuda").sync()
    assert cuda.synchronized == [1, 0, 1]


def test_no_sync_when_torch_has_not_initialised_cuda(
    two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = FakeTorchCuda({}, initialized=False)
    install_torch(monkeypatch, cuda)
    NvmlMeter().read()
    assert cuda.synchronized == []


def test_failed_sync_is_a_meter_error(
    two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = FakeTorchCuda({})
    install_torch(monkeypatch, cuda)
    meter = NvmlMeter()
    cuda.fail = RuntimeError("CUDA error: an illegal memory access was encountered")
    with pytest.raises(MeterError, match=r"synchronize failed.*illegal memory access"):
        meter.read()


def test_cupy_is_synchronised_on_its_current_device(
    two_gpus: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        def synchronize(self) -> None:
            synced.append(self.index)

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: True,
        runtime=types.SimpleNamespace(getDevice=lambda: 1),
        Device=Device,
    )
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    NvmlMeter("cuda:0").read()
    assert synced == []  # cupy's device 1 is not measured
    NvmlMeter("cuda:1").read()
    assert synced == [1]


def test_meter_never_imports_torch_or_cupy(two_gpus: FakePynvml) -> None:
    meter = NvmlMeter()
    meter.read()
    meter.describe()
    assert "torch" not in sys.modules
    assert "cupy" not in sys.modules


# -- unavailability -----------------------------------------------------------------------


def test_no_energy_counter_and_no_power_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a counter the meter samples power (tests/test_nvml_sampler.py); a GPU that
    answers neither is unavailable, naming both reasons, and NVML is shut down again."""
    p100 = FakeGpu(name="Tesla P100-PCIE-16GB", architecture=NVML_DEVICE_ARCH_PASCAL)
    p100.energy_supported = False
    p100.power_supported = False
    fake = install(monkeypatch, [p100])
    with pytest.raises(MeterUnavailable) as info:
        NvmlMeter()
    message = str(info.value)
    assert message.startswith(
        "gpu 0 (Tesla P100-PCIE-16GB) has no total-energy counter (pre-Volta) and no power "
        "reading to sample"
    )
    assert "nvmlDeviceGetPowerUsage: Not Supported (NVMLError_NotSupported)" in message
    assert fake.init_count == 0


def test_driver_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [], init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(MeterUnavailable) as info:
        NvmlMeter()
    assert str(info.value) == (
        "NVML unavailable: NVIDIA driver library not found (NVMLError_LibraryNotFound)"
    )


def test_no_gpu_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [])
    with pytest.raises(MeterUnavailable, match=r"no CUDA device is visible .*NVML sees 0 GPU"):
        NvmlMeter()


def test_pynvml_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    with pytest.raises(MeterUnavailable, match=r"pynvml module is not installed.*nvidia-ml-py"):
        NvmlMeter()


def test_energy_permission_denied_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [hopper(0)])
    fake.gpus[0].fail_read(code=NVML_ERROR_NO_PERMISSION)
    with pytest.raises(MeterUnavailable, match=r"gpu 0 .*NVMLError_NoPermission"):
        NvmlMeter()


def test_real_pynvml_without_driver_is_unavailable_or_works() -> None:
    """Against the real bindings: no driver here, a real measurement on a GPU machine."""
    pytest.importorskip("pynvml")
    try:
        meter = NvmlMeter()
    except MeterUnavailable as exc:
        assert str(exc).startswith("NVML unavailable: ") or "no total-energy counter" in str(exc)
    else:
        try:
            assert all(joules >= 0 for joules in meter.read().values())
        finally:
            meter.close()


# -- failures during measurement ------------------------------------------------------------


def test_counter_reset_is_an_error_then_rebases(two_gpus: FakePynvml) -> None:
    meter = NvmlMeter()
    gpu0 = two_gpus.gpus[0]
    gpu0.energy_mj += 5_000
    assert meter.read()["gpu:0"] == 5.0
    gpu0.reset_counter(200)
    with pytest.raises(MeterError, match=r"gpu:0 .*went backwards from 1005000 mJ to 200 mJ"):
        meter.read()
    gpu0.energy_mj += 1_000
    assert meter.read() == {"gpu:0": 6.0, "gpu:1": 0.0}  # never negative, continues


def test_nvml_error_mid_measurement(two_gpus: FakePynvml) -> None:
    meter = NvmlMeter()
    gpu1 = two_gpus.gpus[1]
    gpu1.fail_read(code=NVML_ERROR_GPU_IS_LOST)
    with pytest.raises(MeterError) as info:
        meter.read()
    message = str(info.value)
    assert "gpu:1" in message and gpu1.uuid in message and "NVMLError_GpuIsLost" in message
    two_gpus.gpus[0].energy_mj += 1_000
    assert meter.read() == {"gpu:0": 1.0, "gpu:1": 0.0}


# -- describe / close ----------------------------------------------------------------------


def test_describe_fingerprints_each_device(two_gpus: FakePynvml) -> None:
    two_gpus.gpus[1].errors["nvmlDeviceGetTemperature"] = NVML_ERROR_NOT_SUPPORTED
    two_gpus.gpus[1].errors["nvmlDeviceGetMigMode"] = NVML_ERROR_NOT_SUPPORTED
    two_gpus.gpus[1].errors["nvmlDeviceGetArchitecture"] = NVML_ERROR_NOT_SUPPORTED
    info = NvmlMeter().describe()
    assert {k: v for k, v in info.items() if k != "devices"} == {
        "meter": "nvml",
        "device": "cuda",
        "driver_version": "550.54.15",
        "cuda_visible_devices": None,
        "cuda_device_order": None,
        "mapping_assumed": False,
        "mapping_notes": [],
        "sampled": False,
        "sample_period_s": None,
        "sensor_window_s": 0.025,
    }
    first, second = info["devices"]
    assert first == {
        "domain": "gpu:0",
        "cuda_indices": [0],
        "nvml_index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": two_gpus.gpus[0].uuid,
        "pci_bus_id": "00000000:01:00.0",
        "driver_version": "550.54.15",
        "architecture": "hopper",
        "power_limit_w": 700.0,
        "persistence_mode": True,
        "sm_clock_mhz": 1980,
        "temperature_c": 34,
        "mig": False,
        "shared": False,
        "mapping_assumed": False,
        "source": "energy counter",
    }
    assert (second["temperature_c"], second["mig"], second["architecture"]) == (None, None, None)
    assert second["pci_bus_id"] == "00000000:02:00.0"


def test_close_shuts_nvml_down_once(two_gpus: FakePynvml) -> None:
    meter = NvmlMeter()
    assert two_gpus.init_count == 1
    meter.close()
    meter.close()
    assert (two_gpus.shutdown_calls, two_gpus.init_count) == (1, 0)
    with pytest.raises(MeterError, match="after close"):
        meter.read()


def test_import_is_cheap_and_does_not_import_pynvml() -> None:
    code = (
        "import sys, pytest_energy.meters.nvml\n"
        "bad = [m for m in ('pynvml', 'torch', 'cupy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# -- the fake matches the real bindings ------------------------------------------------------


def _real_pynvml() -> types.ModuleType:
    pytest.importorskip("pynvml")
    module = sys.modules.get("pynvml")
    if isinstance(module, FakePynvml):
        pytest.skip("a fake pynvml is installed")
    return importlib.import_module("pynvml")


def test_fake_error_hierarchy_mirrors_real_pynvml() -> None:
    real = _real_pynvml()
    for name, cls in fake_pynvml.ERROR_CLASSES.items():
        real_cls = getattr(real, name)
        code = cls().value
        assert getattr(real, real_cls.__name__) is real_cls
        assert type(real.NVMLError(code)) is real_cls
        assert type(fake_pynvml.NVMLError(code)) is cls
        assert issubclass(cls, fake_pynvml.NVMLError)
        assert real_cls().value == code


def test_fake_functions_match_real_signatures() -> None:
    real = _real_pynvml()
    functions = [name for name in dir(FakePynvml) if name.startswith("nvml")]
    assert "nvmlDeviceGetTotalEnergyConsumption" in functions
    for name in functions:
        real_params = list(inspect.signature(getattr(real, name)).parameters)
        fake_params = list(inspect.signature(getattr(FakePynvml, name)).parameters)[1:]
        assert fake_params == real_params, name
    for name in dir(fake_pynvml):
        if name.startswith("NVML_"):
            assert getattr(real, name) == getattr(fake_pynvml, name), name


def test_fake_structs_match_real_pynvml() -> None:
    """The meter reads field values through these layouts; they must be the real ones."""
    real = _real_pynvml()
    for name in ("c_nvmlFieldValue_t", "c_nvmlValue_t"):
        real_fields = [(n, ctypes.sizeof(t)) for n, t in getattr(real, name)._fields_]
        fake_fields = [(n, ctypes.sizeof(t)) for n, t in getattr(fake_pynvml, name)._fields_]
        assert fake_fields == real_fields, name
    assert ctypes.sizeof(real.c_nvmlFieldValue_t) == ctypes.sizeof(fake_pynvml.c_nvmlFieldValue_t)
    real_process = set(dict(real.c_nvmlProcessInfo_v2_t._fields_))
    assert set(vars(fake_pynvml.FakeProcess(pid=1))) == real_process


def test_meter_calls_only_functions_real_pynvml_and_the_fake_have() -> None:
    """The describe() fields swallow AttributeError, so a misspelt name would go unnoticed."""
    real = _real_pynvml()
    source = "\n".join(
        path.read_text() for path in (REPO_ROOT / "pytest_energy" / "meters" / "nvml").glob("*.py")
    )
    used = set(re.findall(r"nvml\.(nvml\w+|NVML_\w+|NVMLError\w*)", source))
    assert "nvmlDeviceGetTotalEnergyConsumption" in used
    for name in sorted(used):
        assert hasattr(real, name), name
        assert hasattr(FakePynvml, name) or hasattr(fake_pynvml, name), name
