"""The phase-aligned plan through the real Measurer, on a simulated part-time sensor.

The simulation (bench/sensor_sim.py) models an A100/H100-like sensor that averages
25 ms of every 100 ms and feeds an energy counter stepping every 100 ms, and calls of
10 ms busy (400 W) + 40 ms idle (60 W): structure below the sensor period, where a
plain window is aliased by tens of percent.
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
sensor_sim = pytest.importorskip("sensor_sim")  # needs numpy

from pytest_energy.measure import EnergyResult, Measurer, Trial  # noqa: E402
from pytest_energy.measure.aligned import (  # noqa: E402
    MULTI_DEVICE_WARNING,
    PARTIAL_COVERAGE,
)

A100 = sensor_sim.SENSORS["a100"]


class SteppedSimMeter:
    """The simulator's counter as a Meter that opts in to the aligned plan."""

    name = "sim"
    estimated = False
    update_period_s = 0.1
    stepped_counter = True
    max_plausible_watts = None
    sensor_window_s: float | None = None  # what an A100's NVML meter declares: 0.025

    def __init__(self, sim: object) -> None:
        self.sim = sim

    def domains(self) -> list[str]:
        return ["gpu:0"]

    def read(self) -> dict[str, float]:
        return {"gpu:0": float(self.sim.read_counter_j()[0])}  # type: ignore[attr-defined]

    def close(self) -> None:
        pass


def _measure(seed: int, *, aligned: bool, call_s: float = 0.05,
             window_s: float | None = None,
             max_time_s: float | None = 2.0) -> tuple[float, EnergyResult]:
    call = sensor_sim.pulsed_call(call_s)
    # reads cost 0.2 ms of simulated time: polling for steps stays cheap to simulate
    sim = sensor_sim.SensorSim(A100, call, seed=seed, read_cost_s=2e-4)
    meter = SteppedSimMeter(sim)
    meter.sensor_window_s = window_s
    if not aligned:
        meter.stepped_counter = False  # type: ignore[misc]
    measurer = Measurer(meter, device="cuda:0", clock=lambda: int(sim.clock()() * 1e9),
                        sleep=sim.sleep, isolate=False, read_timeout_s=0,
                        rng=random.Random(seed))
    _, result = measurer.run(sim.run_call, warmup=1, rounds=None, trials=5,
                             max_time_s=max_time_s)
    assert result.joules_per_call is not None
    return result.joules_per_call / call.energy_j - 1, result


@pytest.mark.slow  # wall-clock: simulated sensors sleep; run with -m slow
def test_aligned_plan_defeats_aliasing_where_plain_windows_fail() -> None:
    aligned = [abs(_measure(seed, aligned=True)[0]) for seed in range(12)]
    plain = [abs(_measure(seed, aligned=False)[0]) for seed in range(12)]
    assert statistics.median(aligned) <= 0.03, aligned
    assert max(aligned) <= 0.08, aligned
    assert statistics.median(plain) > 0.10, plain  # the problem is real in this setup


def test_aligned_result_reports_its_plan_and_stays_in_budget() -> None:
    _, result = _measure(3, aligned=True)
    assert result.plan == "phase-aligned"
    assert result.step_period_s == pytest.approx(0.1, rel=1e-3)
    assert all(t.counted_steps is not None for t in result.trials)
    measuring = sum(t.window_s for t in result.trials)
    assert measuring <= 2.0
    data = result.to_dict()
    assert data["plan"] == "phase-aligned" and data["joules_per_call"] > 0
    assert data["trials_reason"].startswith(f"{len(result.trials)} blocks in ")
    assert "phase-aligned to the 100 ms counter" in data["trials_reason"]
    assert data["accuracy"]["checked"] is True
    assert result.total_calls == result.calls + result.warmup_calls + result.lead_in_calls


@pytest.mark.slow  # wall-clock: simulated sensors sleep; run with -m slow
@pytest.mark.parametrize("call_s", [0.1, 0.3])
def test_declared_sensor_window_measures_long_pulsed_calls(call_s: float) -> None:
    errors = []
    for seed in range(6):
        error, result = _measure(seed, aligned=True, call_s=call_s, window_s=0.025,
                                 max_time_s=None)
        errors.append(abs(error))
        assert result.sensor_window_s == 0.025
        assert result.calls * call_s <= 6.0
    assert max(errors) <= 0.03, errors


def test_one_second_calls_run_past_the_default_max_time_within_its_cap() -> None:
    error, result = _measure(1, aligned=True, call_s=1.0, window_s=0.025, max_time_s=None)
    reason = result.trials_reason
    assert reason is not None and "over the 2 s default max_time" in reason
    assert result.calls <= 6  # capped at three times the default max_time
    accuracy = result.accuracy
    assert accuracy is not None
    assert abs(error) <= 0.05 or accuracy.doubtful, (error, accuracy)


def test_an_explicit_max_time_is_kept_and_partial_coverage_reported() -> None:
    _, result = _measure(1, aligned=True, call_s=1.0, window_s=0.025, max_time_s=2.0)
    assert result.calls <= 2
    assert any(w.startswith(PARTIAL_COVERAGE) for w in result.warnings), result.warnings
    assert any(w.startswith("accuracy not checked") for w in result.warnings)


def test_aligned_power_and_per_item_energy_follow_the_counted_steps() -> None:
    call = sensor_sim.constant_call(0.004, watts=300.0)
    sim = sensor_sim.SensorSim(A100, call, seed=2, read_cost_s=2e-4)
    meter = SteppedSimMeter(sim)
    measurer = Measurer(meter, device="cuda:0", clock=lambda: int(sim.clock()() * 1e9),
                        sleep=sim.sleep, isolate=False, read_timeout_s=0,
                        rng=random.Random(2))
    _, result = measurer.run(sim.run_call, warmup=1, rounds=None, trials=5, max_time_s=2.0,
                             items_per_call=8)
    assert result.plan == "phase-aligned"
    assert result.joules_per_call == pytest.approx(300.0 * 0.004, rel=0.01)
    assert result.joules_per_item == pytest.approx(result.joules_per_call / 8)
    # the windows hold more time than their counted steps: power is per counted step
    assert result.watts == pytest.approx(300.0, rel=0.01)


def _aligned_result(sets: int, size: int) -> EnergyResult:
    """Windows of one counted 100 ms step each, ``sets`` whole sets of ``size``; window
    i of a set reads 10 + i J (aliasing), so every set pools to the same value."""
    result = EnergyResult(meter="sim", estimated=False, domains=["gpu:0"], device="cuda:0",
                          plan="phase-aligned", step_period_s=0.1)
    for k in range(sets):
        for i in range(size):
            result.trials.append(Trial(calls=2, window_s=0.1, joules={"gpu:0": 10.0 + i},
                                       latencies_ns=[50_000_000] * 2, counted_steps=1,
                                       phase_set=(k, size)))
    return result


def test_values_per_set_from_five_sets_else_per_window() -> None:
    few = _aligned_result(sets=3, size=4)
    assert len(few.trial_estimates()) == 12  # per window: three sets cannot be significant
    assert few.joules_spread is not None and few.joules_spread["cv"] == pytest.approx(0.0)
    many = _aligned_result(sets=5, size=2)
    assert many.trial_estimates() == pytest.approx([5.25] * 5)  # (10 + 11) / 2 W x 0.05 s
    one = _aligned_result(sets=1, size=4)
    accuracy = one.accuracy  # one set: the neighbouring blocks' spread stands in
    assert accuracy is not None and accuracy.checked and "blocks" in accuracy.basis
    assert one.joules_per_call == pytest.approx((10 + 11 + 12 + 13) / 4 / 0.1 * 0.05)
    # an unfinished set is left out once a set is whole
    one.trials.append(one.trials[0].__class__(calls=2, window_s=0.1, joules={"gpu:0": 99.0},
                                              latencies_ns=[50_000_000] * 2, counted_steps=1,
                                              phase_set=(1, 4)))
    assert one.joules_per_call == pytest.approx((10 + 11 + 12 + 13) / 4 / 0.1 * 0.05)


def test_several_stepped_devices_are_aligned_to_the_first_and_say_so() -> None:
    call = sensor_sim.constant_call(0.004)
    sim = sensor_sim.SensorSim(A100, call, seed=4, read_cost_s=2e-4)

    class TwoGpus(SteppedSimMeter):
        def domains(self) -> list[str]:
            return ["gpu:0", "gpu:1"]

        def read(self) -> dict[str, float]:
            value = float(self.sim.read_counter_j()[0])  # type: ignore[attr-defined]
            return {"gpu:0": value, "gpu:1": value}

    measurer = Measurer(TwoGpus(sim), device="cuda", clock=lambda: int(sim.clock()() * 1e9),
                        sleep=sim.sleep, isolate=False, read_timeout_s=0,
                        rng=random.Random(4))
    _, result = measurer.run(sim.run_call, warmup=1, rounds=None, trials=5, max_time_s=2.0)
    assert result.plan == "phase-aligned"
    assert any(w.startswith(MULTI_DEVICE_WARNING) and "gpu:0" in w and "gpu:1" in w
               for w in result.warnings), result.warnings


@pytest.mark.slow  # wall-clock: simulated sensors sleep; run with -m slow
@pytest.mark.parametrize("call_s", [0.0982, 0.0985, 0.0989])
def test_calls_just_under_the_period_count_a_step_in_every_block(call_s: float) -> None:
    """Long mode starts 2 guards under the period, its last phase 1 guard under: a
    one-call block may end before its step; the block then runs on to the step."""
    errors = []
    for seed in range(4):
        error, result = _measure(seed, aligned=True, call_s=call_s, window_s=0.025,
                                 max_time_s=None)
        assert all(t.counted_steps for t in result.trials), result.trials
        errors.append(abs(error))
    assert max(errors) <= 0.03, errors
