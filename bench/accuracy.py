"""Per-call energy error of measuring plans against part-time power sensors (simulated).

Run: ``python bench/accuracy.py`` for the plugin's own measuring code on realistic
workloads (``bench/realistic.py``: mixed, jittered and long calls, unknown sensor
windows, a period estimate 0.4% off, step jitter, slow reads, idle drift; error and
calibration per cell, at least 40 random phases; ``--beyond``: harder workloads
beyond issue 13's list, on their own). ``python bench/accuracy.py
--idealised [--devices N] [--quick]`` instead compares simple plans on
``bench/sensor_sim.py``'s numpy sensor, for perfectly regular calls:

* ``naive``  one window of ~1 s (reads before and after), energy / calls.
* ``windows`` the plugin's plain auto plan (continuous meters): 5 windows within 1 s,
  median per window.
* ``random`` blocks of back-to-back calls, each after a uniform random pause in
  [0, period), energy / calls pooled over the blocks.
* ``strat``  the same, the pauses chosen (host clock) so that the blocks start at
  stratified phases of the period; pooled.

They show why the plugin's stepped-counter plan exists: on a 25-of-100 ms sensor every
one of them is off by tens of percent for calls with structure near the sensor's time
scale.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realistic
from sensor_sim import SENSORS, CallProfile, Sensor, SensorSim, constant_call, pulsed_call

from pytest_energy.measure.windows import remaining_trials, window_target_s

Array = np.ndarray

CALL_MS = (0.1, 1, 10, 50, 100, 300, 1000)
WORKLOADS: dict[str, Callable[[float], CallProfile]] = {
    "pulsed": pulsed_call,
    "const": constant_call,
}


def _blocks_unaligned(sim: SensorSim, budget_s: float, call_s: Array) -> tuple[int, Array]:
    """(blocks, calls per block) for the random / stratified plans: blocks of >= 2
    periods of calls plus a pause of half a period on average, within the budget."""
    period, call = sim.sensor.period_s, float(np.median(call_s))
    blocks = max(1, int(budget_s // (2.5 * period)))
    while blocks > 1 and blocks * (max(1, round((budget_s / blocks - 0.5 * period) / call))
                                   * call + 0.5 * period) > budget_s:
        blocks -= 1
    calls = np.maximum(1, np.round((budget_s / blocks - 0.5 * period) / call_s))
    return blocks, calls.astype(np.int64)


def plan_naive(sim: SensorSim, rng: np.random.Generator, budget_s: float,
               call_s: Array) -> Array:
    calls = np.maximum(1, np.round(1.0 / call_s)).astype(np.int64)
    before = sim.read_counter_j()
    sim.run_calls(calls)
    return (sim.read_counter_j() - before) / calls


def plan_today(sim: SensorSim, rng: np.random.Generator, budget_s: float,
               call_s: Array) -> Array:
    """The plugin's auto windows (``measure.windows.AutoWindows``): trials=5, max_time=1 s."""
    target = window_target_s(sim.sensor.period_s, trials=5, max_time_s=1.0)
    start = sim.now()
    before = sim.read_counter_j()
    calls = sim.run_calls_until(start + target, minimum=1)
    window = sim.now() - start
    per_call = [(sim.read_counter_j() - before) / calls]
    more = [remaining_trials(float(w), trials=5, max_time_s=1.0) for w in window]
    for k in range(max(more)):
        active = np.array(more) > k
        before = sim.read_counter_j()
        sim.run_calls(np.where(active, calls, 0))
        per_call.append(np.where(active, (sim.read_counter_j() - before) / calls, np.nan))
    return np.nanmedian(np.stack(per_call), axis=0)


def _pooled_blocks(sim: SensorSim, pauses: Callable[[int, Array], Array], blocks: int,
                   calls: Array) -> Array:
    joules = np.zeros(sim.devices)
    for i in range(blocks):
        sim.sleep(pauses(i, sim.now()))
        before = sim.read_counter_j()
        sim.run_calls(calls)
        joules += sim.read_counter_j() - before
    return joules / (blocks * calls)


def plan_random(sim: SensorSim, rng: np.random.Generator, budget_s: float,
                call_s: Array) -> Array:
    blocks, calls = _blocks_unaligned(sim, budget_s, call_s)
    period = sim.sensor.period_s
    return _pooled_blocks(sim, lambda i, now: rng.uniform(0, period, sim.devices),
                          blocks, calls)


def phase_offsets(count: int, span: float, shift: float = 0.0) -> list[float]:
    """``count`` offsets evenly spread over ``span``, rotated by ``shift`` (a fraction)."""
    return [((i + shift) / count % 1.0) * span for i in range(count)]


def plan_strat(sim: SensorSim, rng: np.random.Generator, budget_s: float,
               call_s: Array) -> Array:
    blocks, calls = _blocks_unaligned(sim, budget_s, call_s)
    period = sim.sensor.period_s
    shifts = rng.uniform(0, 1, sim.devices)
    offsets = np.array([phase_offsets(blocks, period, shift=s) for s in shifts])
    origin = sim.now()

    def pause(i: int, now: Array) -> Array:
        # the block starts when (start - origin) % period == offset_i: phases spread over
        # the period on the host clock, without knowing where the counter steps are
        return (offsets[:, i] - (now - origin)) % period

    return _pooled_blocks(sim, pause, blocks, calls)


PlanFn = Callable[[SensorSim, np.random.Generator, float, Array], Array]
PLANS: dict[str, PlanFn] = {
    "naive": plan_naive,
    "windows": plan_today,
    "random": plan_random,
    "strat": plan_strat,
}


def run_cell(sensor: Sensor, call: CallProfile, plan: str, devices: int, seed: int,
             budget_s: float, call_error: float = 0.05) -> tuple[Array, Array]:
    """Errors and measuring times (s) of ``plan`` over ``devices`` random phases.

    The plans know the call duration only as the warm-up call measured it: within
    +-``call_error`` (uniform), so windows sized in calls are not exact multiples of
    the counter period."""
    sim = SensorSim(sensor, call, devices=devices, seed=seed)
    rng = np.random.default_rng(seed + 1)
    call_s = call.duration_s * (1 + rng.uniform(-call_error, call_error, devices))
    sim.run_call()  # warm-up (the plugin's default), not part of the measuring time
    start = sim.now()
    sim.ended_at = None
    estimate = PLANS[plan](sim, rng, budget_s, call_s)
    end = sim.ended_at if sim.ended_at is not None else sim.now()
    return estimate / call.energy_j - 1.0, end - start


def _fmt_err(values: Array) -> str:
    return f"{100 * values:.1f}%"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=200, help="device phases per cell")
    parser.add_argument("--budget", type=float, default=2.0, help="measuring time per test (s)")
    parser.add_argument("--quick", action="store_true", help="40 devices per cell")
    parser.add_argument("--plans", default=",".join(PLANS), help="comma-separated subset")
    parser.add_argument("--calls", default=",".join(f"{c:g}" for c in CALL_MS),
                        help="comma-separated call durations in ms")
    parser.add_argument("--sensors", default=",".join(SENSORS), help="comma-separated subset")
    parser.add_argument("--call-error", type=float, default=0.05,
                        help="warm-up estimate error of the call duration (uniform +-)")
    parser.add_argument("--idealised", action="store_true",
                        help="the simple plans on the numpy sensor (default: the plugin's "
                        "own plan on realistic workloads, bench/realistic.py)")
    parser.add_argument("--phases", type=int, default=40,
                        help="realistic: random phases per cell")
    parser.add_argument("--cells", default="*", help="realistic: fnmatch pattern of cells")
    parser.add_argument("--beyond", action="store_true",
                        help="realistic: workloads beyond issue 13's list, on their own")
    return parser


def _cell(err: Array, took: Array) -> str:
    abs_err = np.abs(err)
    med, p95 = float(np.median(abs_err)), float(np.percentile(abs_err, 95))
    return f"{_fmt_err(med)} / {_fmt_err(p95)} / {statistics.median(took.tolist()):.2f}s"


def _report(rows: list[list[str]], plans: list[str], devices: int, budget_s: float) -> None:
    headers = ["sensor", "workload", "call ms", *[f"{p}\nmed / p95 / time" for p in plans]]
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    print(f"\n|error| of the energy of one call over {devices} random sensor phases per cell; "
          f"budget {budget_s:g} s.")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.idealised:
        return realistic.main(["--phases", str(args.phases), "--cells", args.cells,
                               *(["--beyond"] if args.beyond else [])])
    devices = 40 if args.quick else args.devices
    plans = args.plans.split(",")
    began = time.perf_counter()
    rows = []
    cells = itertools.product(enumerate(args.sensors.split(",")), enumerate(WORKLOADS.items()),
                              enumerate(float(c) for c in args.calls.split(",")))
    for (s_index, key), (w_index, (wname, make)), (c_index, call_ms) in cells:
        sensor, call = SENSORS[key], make(call_ms / 1e3)
        row: list[str] = [sensor.name.split(" ")[0], wname, f"{call_ms:g}"]
        for plan in plans:
            seed = 1000 * s_index + 100 * w_index + c_index
            err, took = run_cell(sensor, call, plan, devices, seed, args.budget,
                                 args.call_error)
            row.append(_cell(err, took))
        rows.append(row)
    _report(rows, plans, devices, args.budget)
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
