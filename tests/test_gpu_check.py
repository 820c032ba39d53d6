"""bench/gpu_check.py end to end, on simulated GPUs (no GPU needed).

The script runs once on a rare, time-limited GPU machine, so every path it takes there
is run here first: its real ``Check`` methods and ``main()`` against the fake ``pynvml``
(tests/fakes/fake_pynvml.py) and a fake CUDA ``torch`` (tests/fakes/fake_torch.py)
whose kernels take real time on a simulated H200. That GPU's energy counter steps every
100 ms by the power its sensor saw in the last 25 ms only, so the script's sensor
window probe must find ~25 ms.

Windows are shortened (``Check.window_s`` = :data:`WINDOW_S` instead of 1 s) to keep
the file fast; everything else runs as on the GPU. A test that runs past
:data:`LIMIT_S` (a loop in the script that never ends) fails instead of hanging.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_pynvml, fake_torch
from fakes.fake_pynvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeProcess,
    FakePynvml,
    clean_cuda_environment,  # noqa: F401 (autouse fixture)
)
from fakes.fake_torch import FakeTorch, SensorGpu, sensor_gpu

_path = list(sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_check  # noqa: E402

# gpu_check puts the checkout first on sys.path (to run without installing); left there,
# pytester's in-process runs in later test modules warn that pytest_energy cannot be
# assert-rewritten (an extra warning that test_end_to_end counts)
sys.path[:] = _path

WINDOW_S = 0.3
LIMIT_S = 60.0
SIZE = gpu_check.SIZE
WORKLOADS = [f"{dtype} {rows}x{SIZE} @ {SIZE}x{SIZE}"
             for dtype in ("bf16", "fp32") for rows in (SIZE, 32, 8, 1)]
ROWS = [
    "device",
    "read latency: nvmlDeviceGetTotalEnergyConsumption",
    "read latency: nvmlDeviceGetFieldValues(POWER_INSTANT)",
    "read latency: NvmlMeter.read() (with torch sync)",
    "counter step period (idle)",
    "sensor window probe",
    f"idle power ({WINDOW_S:g} s)",
    f"busy power ({WINDOW_S:g} s bf16 {SIZE}^3)",
    *WORKLOADS,
    "repeatability: bf16 8192^3, 5 runs",
]


class Hung(BaseException):
    """Raised in the main thread at the deadline; a BaseException, so that
    ``Check.step`` does not turn it into a row and carry on."""


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not (
            threading.main_thread()):
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {LIMIT_S:g} s: a loop in gpu_check never ends?")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Rig:
    """The simulated machine: GPUs, fake NVML and torch, and $OUT."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, out: Path,
                 gpus: list[SensorGpu], **torch_options: Any) -> None:
        self.gpus = gpus
        self.out = out
        nvml_gpus: list[FakeGpu] = list(gpus)
        self.nvml: FakePynvml = fake_pynvml.install(monkeypatch, nvml_gpus)
        self.torch: FakeTorch = fake_torch.install(monkeypatch, gpus, **torch_options)

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "gpu_check.json").read_text())
        return data


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
            ) -> Callable[..., Rig]:
    """``machine(gpus=None, **torch_options)``: install the fakes (default: one H200)
    with short windows, $OUT and a private lock directory."""
    out = tmp_path / "out"
    monkeypatch.setenv("OUT", str(out))
    monkeypatch.setenv("PYTEST_ENERGY_LOCK_DIR", str(tmp_path / "locks"))
    original = gpu_check.Check.__init__

    def short_windows(self: gpu_check.Check, device: str, quick: bool) -> None:
        original(self, device, quick)
        self.window_s = WINDOW_S

    monkeypatch.setattr(gpu_check.Check, "__init__", short_windows)

    def make(gpus: list[SensorGpu] | None = None, **torch_options: Any) -> Rig:
        if gpus is None:
            gpus = [sensor_gpu(0, compute_processes=[FakeProcess(pid=os.getpid())])]
        return Rig(monkeypatch, out, gpus, **torch_options)

    return make


@pytest.fixture
def check_on(machine: Callable[..., Rig]) -> Iterator[Callable[..., gpu_check.Check]]:
    """``check_on(rig, device="cuda:0")``: a Check, closed after the test."""
    made: list[gpu_check.Check] = []

    def make(rig: Rig, device: str = "cuda:0") -> gpu_check.Check:
        check = gpu_check.Check(device, quick=True)
        made.append(check)
        return check

    yield make
    for check in made:
        check.close()


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name == "pytest-energy-nvml-sampler" and t.is_alive()]


def kernel_joules(gpu: SensorGpu, rows: int, dtype: fake_torch.Dtype) -> tuple[float, float]:
    """``(seconds, joules)`` of one ``rows x SIZE @ SIZE x SIZE`` kernel (TF32 off)."""
    compute_s = 2.0 * rows * SIZE * SIZE / fake_torch.RATES[dtype]
    memory_s = (2 * rows * SIZE + SIZE * SIZE) * dtype.itemsize / fake_torch.BANDWIDTH
    seconds = max(compute_s, memory_s) + fake_torch.LAUNCH_S
    watts = gpu.compute_w if compute_s >= memory_s else gpu.memory_w
    return seconds, watts * seconds


# -- the whole script ---------------------------------------------------------------------


@pytest.mark.slow  # wall-clock: simulated sensors sleep; run with -m slow
def test_main_quick_runs_every_check(machine: Callable[..., Rig],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rig = machine()
    gpu = rig.gpus[0]

    assert gpu_check.main(["--quick"]) == 0

    printed = capsys.readouterr().out
    data = rig.json()
    rows = [tuple(row) for row in data["rows"]]
    assert [row[0] for row in rows] == ROWS
    assert not [row for row in rows if row[1] in ("FAILED", "skipped")]
    assert "errors" not in data
    for name in ROWS:
        assert name in printed
    assert f"{len(ROWS)} checks in" in printed and "0 failed" in printed
    assert str(rig.out / "gpu_check.json") in printed
    assert data["gpu"] is True and data["device"] == "cuda:0" and data["quick"] is True
    assert data["elapsed_s"] > 0

    # NVML and torch left as found: every init shut down, no sampler thread, TF32 off
    assert rig.nvml.init_count == 0
    assert not sampler_threads()
    assert rig.torch.backends.cuda.matmul.allow_tf32 is False
    assert rig.torch.matmuls["tf32"] == 0 and rig.torch.matmuls["float32"] > 0

    info = data["device_info"]
    assert info["name"] == "NVIDIA H200" and info["source"] == "energy counter"
    assert info["torch"] == "2.5.1+cu124" and info["cuda"] == "12.4"
    assert info["power_limits_w"] == {"gpu:0": 700.0}
    assert info["conditions"] == []  # our own pid on the GPU is no contamination
    assert "limit 700 W, source: energy counter" in dict((r[0], r[2]) for r in rows)["device"]

    latency = data["read_latency"]
    assert len(latency) == 3
    assert all(v["median_us"] > 0 and v["p99_us"] >= v["median_us"] for v in latency.values())

    steps = data["counter_steps"]
    assert steps["median_ms"] == pytest.approx(100, abs=5)

    window = data["sensor_window"]
    assert window["period_ms"] == pytest.approx(100, abs=2)
    assert window["plugin_window_s"] == 0.025
    assert window["idle_step_j"] == pytest.approx(gpu.idle_w * 0.1, rel=0.02)
    # the probe's resolution is 5 ms, plus the burst (~5 ms) it adds to the last offset
    assert 20 <= window["estimated_window_ms"] <= 25 + window["burst_ms"] + 2
    excess = {int(d): v for d, v in window["excess_j_by_end_before_ms"].items()}
    # wall-clock: a busy runner can move part of the burst out of the window (seen: 2.95
    # J of a burst worth more); inside the window stays clearly above the outside
    assert excess[0] > 2.0 and excess[50] < 1.0 and excess[90] < 1.0

    compared = data["counter_vs_sampled"]
    assert compared["idle"]["source"] == "sampled instant power"
    assert compared["idle"]["sampled_w"] == pytest.approx(gpu.idle_w, rel=0.05)
    # a 0.3 s window holds 2-4 counter steps: the counter's reading is that coarse
    assert 0.5 * gpu.idle_w < compared["idle"]["counter_w"] < 1.5 * gpu.idle_w
    assert compared["busy"]["sampled_w"] > 0.8 * gpu.compute_w
    assert compared["busy"]["tflops"] > 0.8 * fake_torch.RATES[fake_torch.BFLOAT16] / 1e12

    workloads = data["workloads"]
    assert list(workloads) == WORKLOADS
    for name, record in workloads.items():
        assert record["invalid_reason"] is None, name
        assert record["joules_per_call"] > 0, name
        # the sensor never sees more than the GPU draws (per counted step, not window_s)
        assert gpu.idle_w * 0.9 < record["avg_watts"] < gpu.compute_w * 1.01, name
        assert record["trials"] and record["latency_ms"]["median"] > 0, name
    for name, dtype in (("bf16", fake_torch.BFLOAT16), ("fp32", fake_torch.FLOAT32)):
        record = workloads[f"{name} {SIZE}x{SIZE} @ {SIZE}x{SIZE}"]
        seconds, joules = kernel_joules(gpu, SIZE, dtype)
        call_s = record["latency_ms"]["median"] / 1e3
        assert call_s == pytest.approx(seconds, rel=0.3)  # fp32 is true fp32, not TF32
        expected = joules + gpu.idle_w * max(0.0, call_s - seconds)
        # loose: on a loaded machine a preempted test thread leaves the GPU idle inside
        # a sensor window now and then (the estimate assumes back-to-back calls)
        assert 0.6 * expected < record["joules_per_call"] < 1.25 * expected, name
        # loose: under the phase-aligned plan the plugin's joules_per_item is still the
        # median of raw windows, not joules_per_call / items (reported)
        assert record["joules_per_item"] == pytest.approx(record["joules_per_call"] / SIZE,
                                                          rel=0.3)

    repeat = data["repeatability"]
    assert len(repeat["joules_per_call"]) == 5
    assert 0 <= repeat["cv"] < 0.3


# -- the sensor window probe on other sensors ---------------------------------------------


@pytest.mark.slow  # wall-clock: simulated sensors sleep; run with -m slow
@pytest.mark.parametrize(("name", "window_s", "expected_ms"), [
    ("Tesla V100-SXM2-32GB", 0.010, 10.0),  # Volta: 10 of every 20 ms
    ("NVIDIA T4", 0.020, 20.0),  # a sensor that sees the whole period
])
def test_sensor_window_probe_finds_the_window(
        machine: Callable[..., Rig], check_on: Callable[..., gpu_check.Check],
        name: str, window_s: float, expected_ms: float) -> None:
    """On sensors with a 20 ms counter period (cheap: ~14 probed steps), where the
    plugin does not know the window."""
    rig = machine([sensor_gpu(0, name=name, period_s=0.02, sensor_window_s=window_s)])
    check = check_on(rig)

    check.sensor_window()

    [row] = check.rows
    probe = check.data["sensor_window"]
    assert row[0] == "sensor window probe" and row[1].endswith(" ms of 20")
    assert "plugin assumes an unknown window" in row[2]
    assert probe["period_ms"] == pytest.approx(20, abs=0.5)
    assert probe["plugin_window_s"] is None
    assert list(probe["excess_j_by_end_before_ms"]) == [0, 5, 10, 15]
    assert expected_ms - 5 <= probe["estimated_window_ms"] <= expected_ms + probe["burst_ms"]


# -- failures -------------------------------------------------------------------------------


@pytest.mark.slow  # wall-clock: simulated sensors sleep; run with -m slow
def test_a_failing_check_is_a_row_and_exit_code_1(
        machine: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A counter that stopped updating: the checks that need it fail as rows (with the
    traceback in the JSON), the others report what they can (None as "n/a"), the run
    goes on to the end and exits 1."""
    rig = machine([sensor_gpu(0, frozen=True)])

    def one_workload(self: gpu_check.Check) -> None:  # one of the 8, to save time
        name = f"fp32 1x{SIZE} @ {SIZE}x{SIZE}"
        self.step(name, lambda: self._workload(name, 1, self.torch.float32))

    monkeypatch.setattr(gpu_check.Check, "workloads", one_workload)

    assert gpu_check.main(["--quick"]) == 1

    printed = capsys.readouterr().out
    data = rig.json()
    rows = {row[0]: row[1:] for row in data["rows"]}
    failed = {name for name, (result, _) in rows.items() if result == "FAILED"}
    assert failed == {"counter step period", "sensor window probe", "repeatability"}
    assert set(data["errors"]) == failed
    assert all(text.startswith("Traceback") for text in data["errors"].values())
    assert "RuntimeError: the counter did not change" in rows["counter step period"][1]
    assert "a run was not measured" in rows["repeatability"][1]
    assert rows[f"idle power ({WINDOW_S:g} s)"][0] == "0.0 W"
    assert "(n/a vs counter)" in rows[f"idle power ({WINDOW_S:g} s)"][1]
    workload = rows[f"fp32 1x{SIZE} @ {SIZE}x{SIZE}"]
    assert workload[0] == "n/a/call" and "INVALID: " in workload[1]
    assert "3 failed" in printed and "FAILED" in printed
    assert rig.nvml.init_count == 0 and not sampler_threads()


def test_time_budget_spent_skips_the_remaining_checks(
        machine: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rig = machine()
    monkeypatch.setattr(gpu_check, "TIME_BUDGET_S", -1.0)

    assert gpu_check.main([]) == 0

    rows = rig.json()["rows"]
    assert [row[0] for row in rows] == [
        "device", "read latency", "counter step period", "sensor window probe",
        "counter vs sampled power", *WORKLOADS, "repeatability"]
    assert {row[1] for row in rows} == {"skipped"}
    assert rows[0][2] == "time budget of -1 s spent"
    assert rig.json()["quick"] is False
    assert rig.nvml.init_count == 0
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("cause", ["no pynvml", "no driver", "no GPU", "no torch",
                                   "CPU torch"])
def test_no_gpu_exits_0_and_says_why(
        cause: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OUT", str(tmp_path))
    gpus = [] if cause == "no GPU" else [sensor_gpu(0)]
    init_error = NVML_ERROR_DRIVER_NOT_LOADED if cause == "no driver" else None
    nvml = fake_pynvml.FakePynvml(list[FakeGpu](gpus), init_error=init_error)
    monkeypatch.setitem(sys.modules, "pynvml", None if cause == "no pynvml" else nvml)
    torch = FakeTorch(gpus, available=cause != "CPU torch", version="2.5.1+cpu")
    monkeypatch.setitem(sys.modules, "torch", None if cause == "no torch" else torch)

    assert gpu_check.main(["--quick"]) == 0

    expected = {
        "no pynvml": "the pynvml module (nvidia-ml-py) is not installed",
        "no driver": "NVML unavailable: NVMLError_DriverNotLoaded: Driver Not Loaded",
        "no GPU": "NVML sees no GPU",
        "no torch": "torch is not installed",
        "CPU torch": "torch 2.5.1+cpu sees no CUDA device",
    }[cause]
    printed = capsys.readouterr().out
    assert printed.startswith(f"no GPU: {expected}")
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["gpu"] is False and data["reason"].startswith(expected)
    assert nvml.init_count == 0


# -- single checks ------------------------------------------------------------------------


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_gpu_without_energy_counter(machine: Callable[..., Rig],
                                   check_on: Callable[..., gpu_check.Check]) -> None:
    """A pre-Volta GPU: energy from sampled power; the counter checks say n/a."""
    rig = machine([sensor_gpu(0, name="Tesla P100-PCIE-16GB", energy_supported=False,
                              instant_power_supported=False, power_limit_mw=250_000,
                              architecture=fake_pynvml.NVML_DEVICE_ARCH_PASCAL)])
    check = check_on(rig)
    assert not check.has_counter()

    check.device_row()
    check.read_latency()
    check.counter_steps()
    check.sensor_window()
    check.counter_vs_sampled()
    name = f"bf16 1x{SIZE} @ {SIZE}x{SIZE}"
    check.step(name, lambda: check._workload(name, 1, rig.torch.bfloat16))

    rows = {row[0]: row[1:] for row in check.rows}
    assert "FAILED" not in {result for result, _ in rows.values()}, rows
    assert "source: sampled instant power" in rows["device"][1]
    assert "limit 250 W" in rows["device"][1]
    assert rows["read latency: nvmlDeviceGetTotalEnergyConsumption"] == (
        "n/a", "NVMLError_NotSupported: Not Supported")
    assert rows["counter step period"][0] == rows["sensor window probe"][0] == "n/a"
    idle = rows[f"idle power ({WINDOW_S:g} s)"]
    assert idle[1] == "sampled instant power"
    assert float(idle[0].removesuffix(" W")) == pytest.approx(rig.gpus[0].idle_w, rel=0.1)
    assert rows[name][0].endswith("J/call") and "INVALID" not in rows[name][1]
    assert check.data["workloads"][name]["joules_per_call"] > 0


def test_device_row_and_read_latency_when_nvml_refuses(
        machine: Callable[..., Rig], check_on: Callable[..., gpu_check.Check]) -> None:
    gpu = sensor_gpu(0, errors={
        "nvmlDeviceGetEnforcedPowerLimit": NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetArchitecture": NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetFieldValues": NVML_ERROR_NOT_SUPPORTED,
    })
    check = check_on(machine([gpu]))

    check.device_row()
    check.read_latency()

    rows = {row[0]: row[1:] for row in check.rows}
    assert "None, limit None, source: energy counter" in rows["device"][1]
    assert rows["read latency: nvmlDeviceGetFieldValues(POWER_INSTANT)"] == (
        "n/a", "NVMLError_NotSupported: Not Supported")
    assert set(check.data["read_latency"]) == {
        "nvmlDeviceGetTotalEnergyConsumption", "NvmlMeter.read() (with torch sync)"}
    json.dumps(check.data)


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_second_gpu_is_the_one_measured(
        machine: Callable[..., Rig], check_on: Callable[..., gpu_check.Check]) -> None:
    rig = machine([sensor_gpu(0), sensor_gpu(1)])
    check = check_on(rig, "cuda:1")

    name = f"bf16 8x{SIZE} @ {SIZE}x{SIZE}"
    check.step(name, lambda: check._workload(name, 8, rig.torch.bfloat16))

    assert check.failures == 0, check.data.get("errors")
    assert check.info["uuid"] == rig.gpus[1].uuid and check.handle is rig.gpus[1]
    assert rig.gpus[0].launches == 0 and rig.gpus[1].launches > 0
    assert check.data["workloads"][name]["avg_watts"] > rig.gpus[1].idle_w


def test_table_without_tabulate(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tabulate", None)
    gpu_check.print_table([("device", "NVIDIA H200", "driver 550")])
    assert capsys.readouterr().out == "device | NVIDIA H200 | driver 550\n"


def test_formatting_helpers() -> None:
    assert gpu_check.fmt_energy(None) == "n/a"
    assert gpu_check.fmt_energy(0.965) == "965 mJ"
    assert gpu_check.fmt_energy(14.9) == "14.9 J"
    assert gpu_check.fmt_energy(0.0) == "0 J"
    assert gpu_check.fmt_energy(math.nan) == "nan J"
    assert gpu_check.pct(None) == "n/a" and gpu_check.pct(-0.012) == "-1.2%"
    assert gpu_check.median_us([3000, 1000, 2000]) == (2.0, 3.0)
