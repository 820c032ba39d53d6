"""The 8-test suite of ``bench/gate_runs.py``'s drift scenario (run there with
``--energy-meter=drift_meter:DriftMeter``; see drift_meter.py)."""

from __future__ import annotations

import pytest
from drift_meter import burn

#: Nominal energy per call of each test, in mJ.
NOMINAL_MJ = {"w1": 2.0, "w2": 3.0, "w3": 5.0, "w4": 8.0, "w5": 13.0, "w6": 21.0,
              "w7": 34.0, "w8": 55.0}


@pytest.mark.energy_budget(rounds=5, trials=5, warmup=1)
@pytest.mark.parametrize("name", list(NOMINAL_MJ))
def test_work(name: str) -> None:
    burn(name, NOMINAL_MJ[name])
