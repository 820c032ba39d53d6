"""The estimate meter: process CPU time x an assumed power per busy core.

Model: ``joules = (user + system CPU seconds of this process, all threads) x W``, with
W = ``--energy-estimate-watts-per-core`` (default 10 W, roughly a server core's share
of package power under load; laptop cores use less, big server cores more). It ignores
idle/uncore power, DRAM, GPUs and child processes, and its absolute value is only as
good as W. It is useful for *relative* comparisons on one machine (batch 1 vs batch 32,
before vs after a change) and is labelled "estimated" everywhere it appears.

Under pytest-xdist each worker is its own process, so per-process CPU time stays
correct: other workers' CPU time is never counted.
"""

from __future__ import annotations

import time
from typing import Any

DEFAULT_WATTS_PER_CORE = 10.0


class EstimateMeter:
    """Modelled energy from process CPU time; never a hardware reading."""

    name = "estimate"
    estimated = True
    # The calling thread's CPU time is exact to the ns, but the kernel adds other
    # threads' running time (torch/ONNX Runtime worker threads) to the process total
    # only at scheduler ticks and context switches: up to 4 ms late with CONFIG_HZ=250.
    # Declaring that as the update period makes every window span many ticks.
    update_period_s = 0.004
    read_never_blocks = True  # a clock read: no timeout thread needed

    def __init__(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> None:
        if not watts_per_core > 0:
            raise ValueError("watts_per_core must be > 0")
        self.watts_per_core = float(watts_per_core)

    def lock_keys(self) -> list[str]:
        """None: this process's CPU time is not counted by anyone else, so no other
        process needs to wait (see pytest_energy.meters.locks). Other processes' load
        is reported as a busy machine instead (pytest_energy.measure.busy)."""
        return []

    def domains(self) -> list[str]:
        return ["cpu:process"]

    def read(self) -> dict[str, float]:
        return {"cpu:process": time.process_time() * self.watts_per_core}

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> dict[str, Any]:
        return {
            "model": "process CPU time (user+system, all threads) x watts per busy core",
            "watts_per_core": self.watts_per_core,
            "excludes": "idle and uncore power, DRAM, GPUs, child processes",
        }
