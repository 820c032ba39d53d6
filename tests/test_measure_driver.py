"""The measuring driver's use of optional meter capabilities (``Measurer``)."""

from __future__ import annotations

import json

import pytest

from pytest_energy.entry import Entry, Plan
from pytest_energy.measure import Measurer


class ClockMeter:
    """A continuous meter drawing a constant 100 W on a simulated clock; every call
    lasts 1 ms."""

    name = "clock"
    estimated = False
    update_period_s = 0.0

    def __init__(self) -> None:
        self.now_ns = 0

    def call(self) -> None:
        self.now_ns += 1_000_000

    def domains(self) -> list[str]:
        return ["gpu:0", "gpu:1"]

    def read(self) -> dict[str, float]:
        return {d: 100.0 * self.now_ns / 1e9 for d in self.domains()}

    def close(self) -> None:
        pass


class LimitedMeter(ClockMeter):
    def power_limits_w(self) -> dict[str, float | None]:
        return {"gpu:0": 700.0, "gpu:1": None}


class BrokenLimitMeter(ClockMeter):
    def power_limits_w(self) -> dict[str, float | None]:
        raise RuntimeError("NVML went away")


def _measure(meter: ClockMeter) -> dict[str, object]:
    measurer = Measurer(meter, device="cuda", clock=lambda: meter.now_ns, isolate=False,
                        read_timeout_s=0)
    _, result = measurer.run(meter.call, warmup=1, rounds=10, trials=2, max_time_s=None)
    return result.to_dict()


def test_declared_power_limits_reach_the_result_and_the_entry() -> None:
    data = _measure(LimitedMeter())
    assert data["power_limit_w"] == {"gpu:0": 700.0, "gpu:1": None}
    assert json.loads(json.dumps(data))["power_limit_w"] == {"gpu:0": 700.0, "gpu:1": None}
    entry = Entry.from_json(data | {"nodeid": "test_x"})
    assert entry.power_limit_w == {"gpu:0": 700.0, "gpu:1": None}


@pytest.mark.parametrize("meter", [ClockMeter(), BrokenLimitMeter()],
                         ids=["undeclared", "failing"])
def test_no_power_limit_without_a_working_capability(meter: ClockMeter) -> None:
    data = _measure(meter)
    assert data["power_limit_w"] is None
    assert data["joules_per_call"] == pytest.approx(0.2)  # 2 x 100 W x 1 ms


def test_plan_names_stay_plain_strings_in_json() -> None:
    data = _measure(ClockMeter())
    assert data["plan"] == "windows" and type(data["plan"]) is str
    assert Entry.from_json(data | {"nodeid": "test_x"}).plan is Plan.WINDOWS
