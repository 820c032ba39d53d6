"""Warm-up until power stops rising (``measure.settle``, ``--energy-warmup-settle``)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from pytest_energy.measure import Measurer
from pytest_energy.measure.settle import UNSETTLED_WARNING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


class RampingDevice:
    """A simulated device: each call lasts 5 ms of simulated time; the device draws
    ``idle_w`` until the first call, then ramps linearly to ``busy_w`` over ``ramp_s``
    of busy time (a GPU coming out of idle). A continuous meter integrates it exactly."""

    name = "ramp"
    estimated = False
    update_period_s = 0.001
    max_plausible_watts = None

    def __init__(self, ramp_s: float, idle_w: float = 50.0, busy_w: float = 200.0) -> None:
        self.ramp_s, self.idle_w, self.busy_w = ramp_s, idle_w, busy_w
        self.now = 0.0
        self.busy = 0.0  # busy time so far
        self.joules = 0.0

    def power(self) -> float:
        return self.idle_w + (self.busy_w - self.idle_w) * min(1.0, self.busy / self.ramp_s)

    def call(self) -> None:
        # integrate the 5 ms call in 1 ms steps (the ramp is linear inside each step)
        for _ in range(5):
            start = self.power()
            self.busy += 0.001
            self.joules += 0.001 * (start + self.power()) / 2
            self.now += 0.001

    def sleep(self, seconds: float) -> None:
        self.joules += max(0.0, seconds) * self.idle_w
        self.now += max(0.0, seconds)

    def domains(self) -> list[str]:
        return ["dev"]

    def read(self) -> dict[str, float]:
        return {"dev": self.joules}

    def close(self) -> None:
        pass


def _measure(device: RampingDevice, settle_s: float) -> tuple[float, object]:
    measurer = Measurer(device, device="cpu", clock=lambda: round(device.now * 1e9),
                        sleep=device.sleep, isolate=False, read_timeout_s=0,
                        rng=random.Random(1), settle_max_s=settle_s)
    _, result = measurer.run(device.call, warmup=1, rounds=None, trials=5, max_time_s=0.5)
    assert result.joules_per_call is not None
    return result.joules_per_call, result


def test_settling_waits_out_a_power_ramp() -> None:
    full = 200.0 * 0.005  # one call at full power
    settled, result = _measure(RampingDevice(ramp_s=0.3), settle_s=1.0)
    unsettled, _ = _measure(RampingDevice(ramp_s=0.3), settle_s=0.0)
    assert result.settled is True
    assert 0.3 <= result.settle_s <= 0.5  # stopped soon after the ramp ended
    watts = result.settle_watts
    assert watts[0] < watts[-1] and watts[-1] == pytest.approx(200.0, rel=0.02)
    assert result.warmup_calls >= 60  # the settle windows count as warm-up
    assert settled == pytest.approx(full, rel=0.01)
    assert unsettled < 0.9 * full  # what it prevents: measuring the ramp reads low
    assert not result.warnings
    data = result.to_dict()["warmup_settle"]
    assert data["settled"] is True and data["watts"] == watts


def test_a_device_already_warm_settles_after_one_lookback() -> None:
    device = RampingDevice(ramp_s=1e-9)
    _, result = _measure(device, settle_s=1.0)
    # 10 ms windows until one can be compared with the window 50 ms before it
    assert result.settled is True and len(result.settle_watts) == 6
    assert result.settle_s <= 0.07


def test_power_still_rising_at_the_cap_is_a_warning() -> None:
    _, result = _measure(RampingDevice(ramp_s=2.0), settle_s=0.1)
    assert result.settled is False
    assert any(w.startswith(UNSETTLED_WARNING) and "raise energy_warmup_settle" in w
               for w in result.warnings), result.warnings


def test_estimated_meters_skip_settling() -> None:
    device = RampingDevice(ramp_s=0.3)
    device.estimated = True  # type: ignore[misc]
    _, result = _measure(device, settle_s=1.0)
    assert result.settled is None and result.to_dict()["warmup_settle"] is None


def test_settling_on_a_stepped_counter_keeps_the_aligned_plan_accurate() -> None:
    sensor_sim = pytest.importorskip("sensor_sim")  # needs numpy
    call = sensor_sim.pulsed_call(0.05)
    sim = sensor_sim.SensorSim(sensor_sim.SENSORS["a100"], call, seed=5, read_cost_s=2e-4)

    class Stepped:
        name, estimated, update_period_s, stepped_counter = "sim", False, 0.1, True
        max_plausible_watts = None
        sensor_window_s = 0.025

        def domains(self) -> list[str]:
            return ["gpu:0"]

        def read(self) -> dict[str, float]:
            return {"gpu:0": float(sim.read_counter_j()[0])}

        def close(self) -> None:
            pass

    measurer = Measurer(Stepped(), device="cuda:0", clock=lambda: int(sim.clock()() * 1e9),
                        sleep=sim.sleep, isolate=False, read_timeout_s=0,
                        rng=random.Random(5), settle_max_s=1.0)
    _, result = measurer.run(sim.run_call, warmup=1, rounds=None, trials=5, max_time_s=2.0)
    assert result.settled is True
    # one step per window after a partial first one: 2-10 windows of ~100 ms
    assert len(result.settle_watts) >= 2 and result.settle_s <= 1.05
    assert result.plan == "phase-aligned"
    assert result.joules_per_call == pytest.approx(call.energy_j, rel=0.03)


def test_option_turns_settling_off_and_rejects_bad_values(meters: pytest.Pytester) -> None:
    meters.makepyfile("""
        import time
        import pytest

        @pytest.mark.energy_budget(joules=10)
        def test_sleepy():
            time.sleep(0.002)
    """)
    watt = ["--energy-meter=energy_test_meters:make_watt_meter", "-p", "no:cacheprovider"]
    result = meters.runpytest(*watt, "--energy-json=on.json", "-rA")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [r"warm-up settle: [\d.]+ ms, \d+ windows, [\d.]+ -> [\d.]+ W, settled"])
    on = json.loads((meters.path / "on.json").read_text())["tests"][0]
    assert on["warmup_settle"]["settled"] is True
    result = meters.runpytest(*watt, "--energy-warmup-settle=0", "--energy-json=off.json")
    result.assert_outcomes(passed=1)
    off = json.loads((meters.path / "off.json").read_text())["tests"][0]
    assert off["warmup_settle"] is None
    assert off["warmup_calls"] < on["warmup_calls"]
    result = meters.runpytest(*watt, "--energy-warmup-settle=-1s")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--energy-warmup-settle='-1s' is not valid: it must be >= 0 (0 turns it off)*"])


class SteppedRamp(RampingDevice):
    """The ramping device behind a counter that steps every 100 ms by the energy of the
    last period (a full-time sensor, like NVML on Turing), with calls of ``call_s``."""

    update_period_s = 0.1
    stepped_counter = True

    def __init__(self, ramp_s: float, call_s: float) -> None:
        super().__init__(ramp_s)
        self.call_s = call_s
        self.counter = 0.0
        self.stepped_at = 0.0371  # the first step; then every 100 ms
        self.marks: list[tuple[float, float]] = [(0.0, 0.0)]

    def call(self) -> None:
        for _ in range(round(self.call_s / 0.001)):
            start = self.power()
            self.busy += 0.001
            self.joules += 0.001 * (start + self.power()) / 2
            self.now += 0.001
            self.marks.append((self.now, self.joules))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.marks.append((self.now, self.joules))

    def _energy_at(self, t: float) -> float:
        before = [m for m in self.marks if m[0] <= t]
        return before[-1][1] if before else 0.0

    def read(self) -> dict[str, float]:
        while self.stepped_at <= self.now:
            self.counter = self._energy_at(self.stepped_at)
            self.stepped_at += 0.1
        self.sleep(2e-5)  # a read takes 20 us, at idle power
        return {"dev": self.counter}


def _stepped(device: SteppedRamp, settle_s: float) -> object:
    measurer = Measurer(device, device="cuda:0", clock=lambda: round(device.now * 1e9),
                        sleep=device.sleep, isolate=False, read_timeout_s=0,
                        rng=random.Random(3), settle_max_s=settle_s)
    _, result = measurer.run(device.call, warmup=1, rounds=None, trials=5, max_time_s=1.0)
    return result


@pytest.mark.parametrize("call_s", [0.02, 0.15])
def test_stepped_counter_still_rising_at_the_cap_warns(call_s: float) -> None:
    result = _stepped(SteppedRamp(ramp_s=3.0, call_s=call_s), settle_s=0.5)
    assert result.settled is False  # type: ignore[attr-defined]
    watts = result.settle_watts  # type: ignore[attr-defined]
    assert all(w > 0 for w in watts) and watts[-1] > watts[0]  # never a fake 0 W window
    assert any(w.startswith(UNSETTLED_WARNING)
               for w in result.warnings), result.warnings  # type: ignore[attr-defined]


@pytest.mark.parametrize("call_s", [0.02, 0.15])
def test_stepped_counter_settles_once_the_ramp_is_over(call_s: float) -> None:
    result = _stepped(SteppedRamp(ramp_s=0.3, call_s=call_s), settle_s=2.0)
    assert result.settled is True  # type: ignore[attr-defined]
    assert result.settle_watts[-1] == pytest.approx(200.0, rel=0.05)  # type: ignore[attr-defined]
