"""The simulated part-time power sensor (bench/sensor_sim.py). The plugin's own plan
runs against it in tests/test_aligned_plan.py (and against bench/workload_sim.py in
tests/test_honest_numbers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from sensor_sim import (  # noqa: E402
    SENSORS,
    CallProfile,
    Sensor,
    SensorSim,
    constant_call,
    pulsed_call,
)

from pytest_energy.measure.grid import wait_for_step  # noqa: E402
from pytest_energy.meters.base import Meter  # noqa: E402

A100, VOLTA, TURING = SENSORS["a100"], SENSORS["volta"], SENSORS["turing"]


def _last_step(sim: SensorSim, t):
    period = sim.sensor.period_s
    return sim.phase + np.floor((t - sim.phase) / period) * period


# ----- workloads -------------------------------------------------------------------------
def test_call_profiles():
    pulsed = pulsed_call(0.05)
    assert pulsed.duration_s == pytest.approx(0.05)
    assert pulsed.energy_j == pytest.approx(0.01 * 400 + 0.04 * 60)
    long = pulsed_call(0.3)
    assert long.energy_j == pytest.approx(6 * pulsed.energy_j)
    short = pulsed_call(1e-4)
    assert short.energy_j == pytest.approx(1e-4 * (0.2 * 400 + 0.8 * 60))
    assert constant_call(0.01, watts=100).energy_j == pytest.approx(1.0)
    assert pulsed.cumulative(0.01) == pytest.approx(4.0)
    assert pulsed.cumulative([0.0, 0.03, 1.0]).tolist() == pytest.approx([0, 5.2, 6.4])
    ramp = CallProfile.from_function(lambda t: 1000 * t, 0.1, resolution_s=1e-3)
    assert ramp.energy_j == pytest.approx(1000 * 0.1**2 / 2)
    with pytest.raises(ValueError):
        CallProfile(((0.0, 10.0),))
    with pytest.raises(ValueError):
        Sensor("bad", 0.1, 0.2)


def test_true_energy_integrates_the_power_trace():
    sim = SensorSim(A100, pulsed_call(0.05), devices=3, seed=1, read_cost_s=0)
    sim.sleep(0.02)
    sim.run_calls(np.array([1, 2, 3]))
    sim.sleep(0.01)
    expected = 0.03 * 60 + np.array([1, 2, 3]) * 6.4
    assert sim.true_energy(sim.now()) == pytest.approx(expected)
    assert sim.true_energy(-1.0) == pytest.approx(np.full(3, -60.0))  # idle before 0
    # 5 ms into the second call's busy part on device 1
    assert sim.true_energy(0.02 + 0.05 + 0.005)[1] == pytest.approx(0.02 * 60 + 6.4 + 2.0)


# ----- the counter ------------------------------------------------------------------------
@pytest.mark.parametrize("sensor", [TURING, A100, VOLTA])
def test_counter_is_exact_at_steps_for_constant_power(sensor):
    """Constant power: whatever the sampled fraction, every step adds P x period."""
    sim = SensorSim(sensor, constant_call(0.003, watts=300), devices=50, seed=2,
                    read_cost_s=0, resolution_j=0, idle_w=300)
    sim.run_calls(400)
    t1 = sim.now()
    c1 = sim.read_counter_j()
    sim.run_calls(537)
    t2 = sim.now()
    c2 = sim.read_counter_j()
    truth = sim.true_energy(_last_step(sim, t2)) - sim.true_energy(_last_step(sim, t1))
    assert c2 - c1 == pytest.approx(truth, rel=1e-9)


@pytest.mark.parametrize("call", [pulsed_call(0.05), pulsed_call(0.3), constant_call(0.01)])
def test_full_coverage_counter_matches_ground_truth_at_steps(call):
    sim = SensorSim(TURING, call, devices=50, seed=3)
    sim.sleep(0.0137)
    t1 = sim.now()
    c1 = sim.read_counter_j()
    sim.run_calls(23)
    sim.sleep(0.005)
    t2 = sim.now()
    c2 = sim.read_counter_j()
    truth = sim.true_energy(_last_step(sim, t2)) - sim.true_energy(_last_step(sim, t1))
    assert np.abs((c2 - c1) - truth).max() <= 2e-3  # two mJ roundings


def test_counter_reads_whole_millijoules_and_never_decreases():
    sim = SensorSim(A100, pulsed_call(0.05), devices=4, seed=4)
    values = []
    for _ in range(30):
        sim.run_calls(1)
        values.append(sim.read_counter_j())
    stacked = np.stack(values)
    assert np.all(np.diff(stacked, axis=0) >= 0)
    assert np.allclose(stacked * 1000, np.round(stacked * 1000), atol=1e-6)


def test_seeded_and_deterministic():
    def run(seed):
        sim = SensorSim(A100, pulsed_call(0.05), devices=5, seed=seed)
        sim.run_calls(30)
        return sim.read_counter_j(), sim.phase

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def _naive_errors(sensor: Sensor, call: CallProfile, devices: int = 200, seconds: float = 1.0):
    sim = SensorSim(sensor, call, devices=devices, seed=11)
    sim.run_call()
    calls = round(seconds / call.duration_s)
    before = sim.read_counter_j()
    sim.run_calls(calls)
    return (sim.read_counter_j() - before) / calls / call.energy_j - 1


def test_naive_window_aliases_on_a_part_time_sensor():
    """10 ms busy + 40 ms idle per call under a 25/100 ms sensor: every sample of a
    1 s window sees the same point of the call, so the result depends on the phase."""
    err = _naive_errors(A100, pulsed_call(0.05))
    assert err.min() < -0.4 and err.max() > 0.4
    assert np.median(np.abs(err)) > 0.2


def test_naive_window_is_fine_with_full_coverage_or_constant_power():
    # left: only the ends' quantisation, (a few %) for a 1 s window of 100 ms steps
    for sensor, call in ((TURING, pulsed_call(0.05)), (A100, constant_call(0.05))):
        err = _naive_errors(sensor, call)
        assert np.abs(err).max() < 0.1


# ----- polling, and the Meter view -----------------------------------------------------
def test_spinning_on_the_counter_matches_the_fast_path():
    spin = SensorSim(A100, pulsed_call(0.05), seed=5, read_cost_s=1e-4)
    fast = SensorSim(A100, pulsed_call(0.05), seed=5, read_cost_s=1e-4)
    for sim in (spin, fast):
        sim.run_calls(3)
    for _ in range(3):
        step = wait_for_step(lambda: float(spin.read_counter_j()[0]), spin.clock(),
                                timeout_s=1.0)
        value, seen = fast.wait_for_step()
        assert step is not None
        assert step.value == value[0] and step.time_s == pytest.approx(seen[0])
        assert spin.now()[0] == pytest.approx(fast.now()[0])
        # right after the step: the read that saw it started within one poll of it
        assert 1e-4 <= step.time_s - _last_step(spin, step.time_s)[0] < 2e-4 + 1e-12


def test_sim_meter_speaks_the_meter_protocol():
    sim = SensorSim(A100, constant_call(0.01), seed=6)
    meter = sim.meter()
    assert isinstance(meter, Meter)
    assert meter.update_period_s == 0.1 and meter.domains() == ["gpu:0"]
    first = meter.read()["gpu:0"]
    sim.run_calls(30)
    delta = meter.read()["gpu:0"] - first
    # 0.3 s of 400 W spans 2 or 3 counter steps of 400 W x 0.1 s
    assert min(abs(delta - 80.0), abs(delta - 120.0)) < 1e-2
    with pytest.raises(ValueError):
        SensorSim(A100, constant_call(0.01), devices=2).meter()
