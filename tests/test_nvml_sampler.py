"""NvmlMeter on GPUs without an energy counter (sampled power), conditions() and
power_limits_w(), against the fake pynvml.

The sampler is a real thread polling in real time, so the power-integration tests run
the fake GPU on the wall clock (``FakeGpu.follow_real_time``) for ~0.3 s and compare
with power x elapsed time within a tolerance.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator

import pytest
from fakes.fake_pynvml import (
    NVML_DEVICE_MIG_ENABLE,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeProcess,
    clean_cuda_environment,  # noqa: F401 (autouse fixture)
    grace_hopper,
    hopper,
    install,
    pascal,
)

from pytest_energy.measure import Measurer
from pytest_energy.meters.base import MeterError, MeterUnavailable
from pytest_energy.meters.nvml import NvmlMeter
from pytest_energy.meters.nvml.sampler import (
    SAMPLE_PERIOD_S,
    SOURCE_AVERAGE,
    SOURCE_COUNTER,
    SOURCE_INSTANT,
    PowerTrack,
)

SAMPLER_THREAD = "pytest-energy-nvml-sampler"
WINDOW_S = 0.3




@pytest.fixture
def meters() -> Iterator[list[NvmlMeter]]:
    """Meters a test creates; closed afterwards so no sampler thread outlives the test."""
    made: list[NvmlMeter] = []
    yield made
    for meter in made:
        meter.close()


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SAMPLER_THREAD and t.is_alive()]


def wait_for(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def real_time(gpu: FakeGpu, power_w: float | Callable[[float], float]) -> FakeGpu:
    gpu.power_w = power_w
    gpu.follow_real_time()
    return gpu


def window(meter: NvmlMeter, seconds: float = WINDOW_S) -> tuple[dict[str, float], float]:
    """Joules per domain over a window of ``seconds`` of wall time, and its length."""
    before = meter.read()
    start = time.perf_counter()
    time.sleep(seconds)
    after = meter.read()
    elapsed = time.perf_counter() - start
    return {d: after[d] - before[d] for d in after}, elapsed


# -- integration ---------------------------------------------------------------------------


@pytest.mark.slow  # wall-clock: the sampler thread sleeps between samples
def test_pre_volta_samples_power_usage_and_integrates_constant_power(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu = real_time(pascal(0), 200.0)
    install(monkeypatch, [gpu])
    meter = NvmlMeter("cuda:0")
    meters.append(meter)
    assert (meter.sampled, meter.update_period_s, meter.sample_period_s) == (
        True, SAMPLE_PERIOD_S, SAMPLE_PERIOD_S)
    joules, elapsed = window(meter)
    assert joules["gpu:0"] == pytest.approx(200.0 * elapsed, rel=0.15)


@pytest.mark.slow  # wall-clock: the sampler thread sleeps between samples
def test_instant_power_field_is_preferred_and_a_ramp_integrates(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    """Trapezoids over NVML's timestamps integrate a linear ramp exactly; the reads
    bound the window within a sample."""
    gpu = hopper(0, energy_supported=False)
    fake = install(monkeypatch, [gpu])
    real_time(gpu, lambda t: 100.0 + 1000.0 * t)
    meter = NvmlMeter()
    meters.append(meter)
    first = meter.read()["gpu:0"]
    t0 = gpu.now()
    time.sleep(WINDOW_S)
    t1 = gpu.now()
    second = meter.read()["gpu:0"]
    expected = 100.0 * (t1 - t0) + 500.0 * (t1 * t1 - t0 * t0)
    assert second - first == pytest.approx(expected, rel=0.05)
    device = meter.describe()["devices"][0]
    assert device["source"] == SOURCE_INSTANT
    assert "nvmlDeviceGetFieldValues" in fake.calls
    assert "nvmlDeviceGetPowerUsage" not in fake.calls


def test_power_usage_on_ampere_and_newer_is_labelled_average(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu = real_time(
        hopper(0, energy_supported=False, instant_power_supported=False, power_average_s=1.0),
        300.0,
    )
    install(monkeypatch, [gpu])
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.describe()["devices"][0]["source"] == SOURCE_AVERAGE
    [flag] = meter.conditions()
    assert flag.startswith("sampled: gpu:0 (NVIDIA H100 80GB HBM3) has no energy counter")
    assert "nvmlDeviceGetPowerUsage polled every 10 ms" in flag
    assert "1 s average" in flag


@pytest.mark.slow  # wall-clock: the sampler thread sleeps between samples
def test_repeated_sensor_samples_are_skipped(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    """A sensor that updates every 50 ms is polled every 10 ms: the repeats (same NVML
    timestamp) add nothing, so a constant power still integrates to P x t."""
    gpu = real_time(hopper(0, energy_supported=False, power_sensor_period_s=0.05), 120.0)
    install(monkeypatch, [gpu])
    meter = NvmlMeter()
    meters.append(meter)
    joules, elapsed = window(meter, 0.4)
    # The window's edges snap to sensor ticks: up to one 50 ms tick off either way.
    assert joules["gpu:0"] == pytest.approx(120.0 * elapsed, abs=120.0 * 0.05 + 1e-9)


@pytest.mark.slow  # wall-clock: the sampler thread sleeps between samples
def test_counter_and_sampled_gpus_in_one_meter(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    h100, p100 = hopper(0), pascal(1)
    install(monkeypatch, [h100, p100])
    real_time(h100, 400.0)
    real_time(p100, 100.0)
    meter = NvmlMeter()
    meters.append(meter)
    # The coarser counter sets the update period the windows are planned for.
    assert (meter.sampled, meter.update_period_s) == (True, 0.1)
    assert [d["source"] for d in meter.describe()["devices"]] == [SOURCE_COUNTER, SOURCE_INSTANT]
    joules, elapsed = window(meter)
    assert joules["gpu:0"] == pytest.approx(400.0 * elapsed, rel=0.15)
    assert joules["gpu:1"] == pytest.approx(100.0 * elapsed, rel=0.15)


@pytest.mark.slow  # wall-clock: the sampler thread sleeps between samples
def test_sampling_can_be_forced_where_a_counter_exists(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    """For cross-checks on real GPUs (bench/gpu_check.py): same GPU, both readings."""
    gpu = hopper(0)
    install(monkeypatch, [gpu])
    real_time(gpu, 250.0)
    counter, sampled = NvmlMeter(), NvmlMeter(sample_power=True)
    meters.extend([counter, sampled])
    assert (counter.sampled, sampled.sampled) == (False, True)
    assert sampled.describe()["devices"][0]["source"] == SOURCE_INSTANT
    c0, s0 = counter.read()["gpu:0"], sampled.read()["gpu:0"]
    time.sleep(WINDOW_S)
    c1, s1 = counter.read()["gpu:0"], sampled.read()["gpu:0"]
    assert s1 - s0 == pytest.approx(c1 - c0, rel=0.1)
    gpu.power_supported = False
    with pytest.raises(MeterUnavailable, match="power sampling was requested, but it has no"):
        NvmlMeter(sample_power=True)


def test_pre_volta_describe_says_sampled(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    install(monkeypatch, [pascal(0)])
    meter = NvmlMeter()
    meters.append(meter)
    info = meter.describe()
    assert (info["sampled"], info["sample_period_s"]) == (True, SAMPLE_PERIOD_S)
    assert info["devices"][0]["source"] == "sampled instant power"
    assert info["devices"][0]["architecture"] == "pascal"


@pytest.mark.slow  # wall-clock: the sampler thread samples real time; run with -m slow
def test_measurer_measures_through_a_sampled_meter(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    """The plugin's own measuring loop on a sampled meter: a 5 ms call at a constant
    150 W costs ~0.75 J, and the result carries the 'sampled' condition."""
    install(monkeypatch, [real_time(pascal(0), 150.0)])
    meter = NvmlMeter("cuda:0")
    meters.append(meter)
    _, result = Measurer(meter, device="cuda:0", isolate=False).run(
        lambda: time.sleep(0.005), warmup=0, rounds=None, trials=3, max_time_s=0.6
    )
    per_call_s = sum(t.window_s for t in result.trials) / sum(t.calls for t in result.trials)
    assert result.joules_per_call == pytest.approx(150.0 * per_call_s, rel=0.15)
    assert any(c.startswith("sampled: gpu:0") for c in result.conditions)


# -- the sampler thread ----------------------------------------------------------------------


def test_sampler_stops_on_close(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, [pascal(0)])
    before = set(sampler_threads())
    meter = NvmlMeter()
    [thread] = set(sampler_threads()) - before
    assert thread.daemon
    meter.close()
    assert not thread.is_alive()
    reads = fake.gpus[0].power_reads
    time.sleep(5 * SAMPLE_PERIOD_S)
    assert fake.gpus[0].power_reads == reads  # no NVML call after close
    assert (fake.shutdown_calls, fake.init_count) == (1, 0)
    meter.close()  # idempotent
    with pytest.raises(MeterError, match="after close"):
        meter.read()


def test_sampler_stops_when_the_meter_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [pascal(0)])
    before = set(sampler_threads())
    meter = NvmlMeter()
    [thread] = set(sampler_threads()) - before
    del meter
    gc.collect()
    thread.join(1.0)
    assert not thread.is_alive()


@pytest.mark.slow  # wall-clock: the sampler thread sleeps between samples
def test_sampler_sleeps_between_samples(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    """~100 samples per second, not a busy loop (a poller that never sleeps would make
    thousands of calls in 0.3 s)."""
    gpu = pascal(0)
    install(monkeypatch, [gpu])
    meters.append(NvmlMeter())
    start = gpu.power_reads
    time.sleep(WINDOW_S)
    samples = gpu.power_reads - start
    expected = WINDOW_S / SAMPLE_PERIOD_S
    assert expected / 3 <= samples <= expected * 1.5


def test_sampler_error_is_a_meter_error_on_the_next_read(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu = real_time(pascal(0), 100.0)
    fake = install(monkeypatch, [gpu])
    meter = NvmlMeter()
    meters.append(meter)
    first = meter.read()["gpu:0"]
    failed_calls = fake.calls.count("nvmlDeviceGetPowerUsage")
    gpu.errors["nvmlDeviceGetPowerUsage"] = NVML_ERROR_GPU_IS_LOST
    # Let the background thread (not read()) hit the error, then heal the GPU: the
    # error must still reach the next read.
    wait_for(lambda: fake.calls.count("nvmlDeviceGetPowerUsage") >= failed_calls + 3)
    del gpu.errors["nvmlDeviceGetPowerUsage"]
    with pytest.raises(MeterError) as info:
        meter.read()
    message = str(info.value)
    assert "energy of this window is unknown" in message
    assert "gpu:0 (Tesla P100-PCIE-16GB" in message and "NVMLError_GpuIsLost" in message
    # Reported once; the integral restarts and later windows measure normally.
    second = meter.read()["gpu:0"]
    assert math.isfinite(second) and second >= first
    joules, elapsed = window(meter, 0.2)
    assert joules["gpu:0"] == pytest.approx(100.0 * elapsed, rel=0.15)


def test_sample_failing_in_read_is_a_meter_error(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu = pascal(0)
    install(monkeypatch, [gpu])
    meter = NvmlMeter()
    meters.append(meter)
    gpu.power_supported = False
    with pytest.raises(MeterError, match=r"NVMLError_NotSupported"):
        meter.read()


def test_dead_sampler_thread_is_a_meter_error_not_zero(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    install(monkeypatch, [pascal(0)])
    meter = NvmlMeter()
    meters.append(meter)
    sampler = meter._sampler
    assert sampler is not None
    assert sampler.stop(1.0)  # as after a fork: the thread is gone
    with pytest.raises(MeterError, match="sampler thread is not running"):
        meter.read()


def test_forked_child_gets_a_meter_error_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    """The child of a fork has no sampler thread, and may hold a copy of a taken lock:
    read() must say so at once."""
    install(monkeypatch, [pascal(0)])
    meter = NvmlMeter()
    meters.append(meter)
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a forked child
    with pytest.raises(MeterError, match="forked after the meter started"):
        meter.read()


def test_power_track_trapezoids_and_repeats() -> None:
    track = PowerTrack(domain="gpu:0", label="gpu:0", handle=None, api="field",
                        source=SOURCE_INSTANT)
    track.add(100.0, local_s=10.0, stamp_us=1_000_000)
    track.add(200.0, local_s=10.1, stamp_us=1_100_000)  # 15 J
    track.add(200.0, local_s=10.2, stamp_us=1_100_000)  # a repeat: ignored
    track.add(300.0, local_s=10.3, stamp_us=1_300_000)  # 50 J over NVML's 0.2 s
    assert track.joules == pytest.approx(65.0)
    assert track.samples == 3
    # The wall clock behind the timestamps jumps 1 h: our own clock's 0.1 s is used.
    track.add(300.0, local_s=10.4, stamp_us=1_300_000 + 3_600_000_000)
    assert track.joules == pytest.approx(95.0)
    track.reset_chain()  # after an error: nothing is interpolated across the gap
    track.add(100.0, local_s=20.0, stamp_us=None)
    assert track.joules == pytest.approx(95.0)
    for bad in (math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match="implausible power"):
            track.add(bad, local_s=21.0, stamp_us=None)


# -- conditions -------------------------------------------------------------------------------


def test_other_compute_processes_contaminate(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu0, gpu1 = hopper(0), hopper(1)
    gpu0.compute_processes = [FakeProcess(5678), FakeProcess(os.getpid()), FakeProcess(1234)]
    gpu1.compute_processes = [FakeProcess(4321)]
    install(monkeypatch, [gpu0, gpu1])
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.conditions() == [
        "contaminated: 2 other compute processes on gpu:0 (pids 1234, 5678)",
        "contaminated: 1 other compute process on gpu:1 (pid 4321)",
    ]


def test_only_our_own_process_is_clean(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu = hopper(0, compute_processes=[FakeProcess(os.getpid())])
    install(monkeypatch, [gpu])
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.conditions() == []
    gpu.compute_processes.append(FakeProcess(999_999))
    assert meter.conditions() == ["contaminated: 1 other compute process on gpu:0 (pid 999999)"]


def test_process_lists_not_supported_give_no_flag_other_errors_say_unknown(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu = hopper(0, compute_processes=[FakeProcess(1234)])
    install(monkeypatch, [gpu])
    meter = NvmlMeter()
    meters.append(meter)
    gpu.errors["nvmlDeviceGetComputeRunningProcesses"] = NVML_ERROR_NOT_SUPPORTED
    assert meter.conditions() == []
    gpu.errors["nvmlDeviceGetComputeRunningProcesses"] = NVML_ERROR_NO_PERMISSION
    assert meter.conditions() == [
        "unknown: cannot list the compute processes on gpu:0: insufficient permissions "
        "to use NVML (NVMLError_NoPermission)"
    ]


def test_graphics_processes_are_display_not_contamination(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    gpu = hopper(0, graphics_processes=[FakeProcess(2000, usedGpuMemory=None)])
    install(monkeypatch, [gpu])
    meter = NvmlMeter()
    meters.append(meter)
    [flag] = meter.conditions()
    assert flag.startswith("display: 1 graphics process on gpu:0 (pid 2000)")


def test_foreign_pid_namespace_takes_one_listed_process_as_ours(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    """In a container NVML lists host pids: with a CUDA context of ours on the GPU (torch
    says so), one of the listed pids is this process."""
    gpu = hopper(0, compute_processes=[FakeProcess(70001)])
    install(monkeypatch, [gpu])
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: True, is_initialized=lambda: True, synchronize=lambda i: None
    )
    torch._C = types.SimpleNamespace(_cuda_hasPrimaryContext=lambda i: i == 0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.conditions() == []
    gpu.compute_processes.append(FakeProcess(70002))
    [flag] = meter.conditions()
    assert flag.startswith(
        "contaminated: 1 other compute process on gpu:0 (NVML lists pids 70001, 70002; "
        f"this process, pid {os.getpid()}, is not among them"
    )


def test_mig_is_shared(monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]) -> None:
    mig = "MIG-aaaaaaaa-1111"
    install(monkeypatch, [hopper(0, mig_mode=NVML_DEVICE_MIG_ENABLE, mig_uuids=[mig])])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mig)
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.conditions() == [
        "shared: gpu:0 is partitioned with MIG; energy is for the whole GPU"
    ]


def test_grace_hopper_reports_module_power(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    install(monkeypatch, [grace_hopper(0), hopper(1)])
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.conditions() == [
        "module-scope: gpu:0 (NVIDIA GH200 480GB) reports module power (CPU+GPU)"
    ]


def test_conditions_are_a_few_nvml_calls(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    fake = install(monkeypatch, [hopper(0), hopper(1)])
    meter = NvmlMeter()
    meters.append(meter)
    before = len(fake.calls)
    meter.conditions()
    assert len(fake.calls) - before == 4  # two process lists per GPU


def test_clean_gpu_has_no_conditions(
    monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]
) -> None:
    install(monkeypatch, [hopper(0)])
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.conditions() == []


# -- power limits -----------------------------------------------------------------------------


def test_power_limits_w(monkeypatch: pytest.MonkeyPatch, meters: list[NvmlMeter]) -> None:
    gpu1 = pascal(1)
    gpu2 = hopper(2, errors={"nvmlDeviceGetEnforcedPowerLimit": NVML_ERROR_NOT_SUPPORTED})
    install(monkeypatch, [hopper(0, power_limit_mw=700_000), gpu1, gpu2])
    meter = NvmlMeter()
    meters.append(meter)
    assert meter.power_limits_w() == {"gpu:0": 700.0, "gpu:1": 250.0, "gpu:2": None}
