"""A meter whose scale drifts per run and per test, for ``bench/gate_runs.py``.

The workload is synthetic and deterministic: a test body calls ``burn(name, mj)``, and
the counter advances by ``mj`` millijoules times

* the **run factor**, log-normal with sigma ``GATE_RUN_SIGMA`` (default 10%), drawn once
  per pytest process from the seed in ``GATE_SEED`` (the machine was faster or slower),
* the test's **own factor**, log-normal with sigma ``GATE_TEST_SIGMA`` (default 4%),
  drawn per test name and run from the same seed,
* the test's **scale** from ``GATE_SCALE`` (``"w3=2"``: that test does twice the work;
  ``"*=1.5"``: every test does 1.5x; the code change under test).

With ``GATE_CPU_WATTS`` set (W > 0), the counter also charges the process's CPU time
at W watts times the run factor, as a real meter whose scale drifted would: a reference
workload measured with this meter (the gate's, a fixed piece of CPU work) then moves
with the run factor, while the tests' own bodies cost microseconds (a few uJ at 1 W
against their millijoules). Without it only ``burn`` counts, and nothing depends on
the machine's speed or load.

Each increment between two reads (one measured window) is further multiplied by
within-run noise, log-normal with CV ``GATE_WITHIN_CV`` (default 2%), so the counter
stays monotonic.
"""

from __future__ import annotations

import math
import os
import random
import time

COUNTER = [0.0]  # true joules burnt so far in this process


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    return float(text) if text else default


def _lognormal(rng: random.Random, sigma: float) -> float:
    """Mean 1, log-sd ``sigma``."""
    return math.exp(rng.gauss(-sigma * sigma / 2, sigma)) if sigma > 0 else 1.0


SEED = os.environ.get("GATE_SEED", "0")
RUN_FACTOR = _lognormal(random.Random(f"run:{SEED}"), _env_float("GATE_RUN_SIGMA", 0.10))
TEST_SIGMA = _env_float("GATE_TEST_SIGMA", 0.04)
CPU_WATTS = _env_float("GATE_CPU_WATTS", 0.0)
WITHIN_SIGMA = math.sqrt(math.log(1 + _env_float("GATE_WITHIN_CV", 0.02) ** 2))
_TEST_FACTORS: dict[str, float] = {}


def _scales() -> dict[str, float]:
    spec = os.environ.get("GATE_SCALE", "")
    pairs = (part.split("=", 1) for part in spec.split(";") if "=" in part)
    return {name.strip(): float(value) for name, value in pairs}


SCALES = _scales()


def own_factor(name: str) -> float:
    """The test's own factor in this run (drawn once per name)."""
    if name not in _TEST_FACTORS:
        _TEST_FACTORS[name] = _lognormal(random.Random(f"test:{SEED}:{name}"), TEST_SIGMA)
    return _TEST_FACTORS[name]


def burn(name: str, millijoules: float) -> None:
    """One call of test ``name``'s workload: nominal ``millijoules`` times the factors."""
    scale = SCALES.get(name, SCALES.get("*", 1.0))
    COUNTER[0] += millijoules / 1000 * scale * RUN_FACTOR * own_factor(name)


class DriftMeter:
    """Reads the counter; each increment since the last read gets within-run noise."""

    name = "drift"
    estimated = False
    update_period_s = 0.0
    max_plausible_watts = None  # a burn of millijoules takes microseconds
    read_never_blocks = True

    def __init__(self) -> None:
        self._rng = random.Random(f"within:{SEED}")
        self._seen = COUNTER[0] + CPU_WATTS * RUN_FACTOR * time.process_time()
        self._reported = 0.0

    def domains(self) -> list[str]:
        return ["drift:0"]

    def read(self) -> dict[str, float]:
        true = COUNTER[0] + CPU_WATTS * RUN_FACTOR * time.process_time()
        if true > self._seen:
            self._reported += (true - self._seen) * _lognormal(self._rng, WITHIN_SIGMA)
            self._seen = true
        return {"drift:0": self._reported}

    def close(self) -> None:
        pass
