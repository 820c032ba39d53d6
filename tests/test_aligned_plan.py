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

from pytest_energy.measure import Measurer  # noqa: E402

A100 = sensor_sim.SENSORS["a100"]


class SteppedSimMeter:
    """The simulator's counter as a Meter that opts in to the aligned plan."""

    name = "sim"
    estimated = False
    update_period_s = 0.1
    stepped_counter = True
    max_plausible_watts = None

    def __init__(self, sim: object) -> None:
        self.sim = sim

    def domains(self) -> list[str]:
        return ["gpu:0"]

    def read(self) -> dict[str, float]:
        return {"gpu:0": float(self.sim.read_counter_j()[0])}  # type: ignore[attr-defined]

    def close(self) -> None:
        pass


def _measure(seed: int, *, aligned: bool) -> tuple[float, float]:
    call = sensor_sim.pulsed_call(0.05)
    # reads cost 0.2 ms of simulated time: polling for steps stays cheap to simulate
    sim = sensor_sim.SensorSim(A100, call, seed=seed, read_cost_s=2e-4)
    meter = SteppedSimMeter(sim)
    if not aligned:
        meter.stepped_counter = False  # type: ignore[misc]
    measurer = Measurer(meter, device="cuda:0", clock=lambda: int(sim.clock()() * 1e9),
                        sleep=sim.sleep, isolate=False, read_timeout_s=0,
                        rng=random.Random(seed))
    _, result = measurer.run(sim.run_call, warmup=1, rounds=None, trials=5, max_time_s=2.0)
    assert result.joules_per_call is not None
    return result.joules_per_call / call.energy_j - 1, result


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
    assert result.total_calls == result.calls + result.warmup_calls + result.lead_in_calls
