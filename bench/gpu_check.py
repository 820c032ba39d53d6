"""pytest-energy on a real NVIDIA GPU: one script, one table, well under 5 minutes.

Run: ``python bench/gpu_check.py [--device cuda:0] [--quick]`` (from a checkout; the
package need not be installed). Without NVML or a CUDA build of torch it prints
``no GPU: <why>`` and exits 0, so it is safe anywhere.

What it checks, in this order (the GPU left as found: no clock, power-limit or mode
changes):

1. the device: name, driver, architecture, power limit, which NVML source the plugin
   uses ("energy counter" or sampled power) and the plugin's ``conditions()``;
2. NVML read latency: median (and p99) of 1000 ``nvmlDeviceGetTotalEnergyConsumption``
   calls, of 1000 instant-power field reads (the sampler's call), and of 200
   ``NvmlMeter.read()`` (which includes a torch sync);
3. the counter's step period: poll the counter in a tight loop for ~2 s, median interval
   between changes (the plugin assumes 100 ms);
3b. the sensor window: a ~5 ms burst ending d ms before a counter step, d across the
   period, and which bursts the step's increment registers (the plugin assumes the last
   25 ms before each step on A100/H100-class GPUs);
4. idle power over 2 s from the counter, and from the plugin's power sampler
   (``NvmlMeter(sample_power=True)``) over the same window: % difference;
5. the same comparison over a 2 s busy window of bf16 8192^3 matrix products;
6. energy per call and per item of matrix products through the plugin's own
   ``Measurer`` + ``NvmlMeter`` (warm-up 3, auto rounds, 5 trials, 2 s): bf16 and fp32
   (true fp32: TF32 off), an 8192x8192 input and batch-like 32/8/1 rows, each against
   8192x8192 weights, items = rows;
7. repeatability: the bf16 8192^3 workload measured 5 times, CV of J/call across runs.

Sizes: 8192^3 bf16 is ~1.1 TFLOP, ~1.4 ms on an H200 (compute-bound, ~790 TFLOP/s);
in fp32 ~17 ms. The 1/8/32-row products read the 128 MiB (bf16) weights once per call
(~30 us at 4.8 TB/s): memory- and launch-bound, like batch-1 inference, where the
per-call sync and idle power dominate. Inputs are random (never zeros: those run faster).

Prints one table last; with ``$OUT`` set also writes ``$OUT/gpu_check.json``. Exit
code 0 when every check ran (or there is no GPU), 1 when a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

TIME_BUDGET_S = 240.0  # stop starting new checks after this; the whole run stays < 5 min
SIZE = 8192


def fmt_energy(joules: float | None) -> str:
    if joules is None:
        return "n/a"
    for scale, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ")):
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules:.3g} J"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def why_no_gpu() -> str | None:
    """Why this machine cannot run the check, or ``None`` when it can."""
    try:
        import pynvml
    except ImportError as exc:
        return f"the pynvml module (nvidia-ml-py) is not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, OSError...
        return f"NVML unavailable: {type(exc).__name__}: {exc}"
    try:
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception as exc:
        return f"NVML cannot count GPUs: {type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    if count == 0:
        return "NVML sees no GPU"
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (a CPU build, or no driver)"
    return None


def write_json(data: dict[str, Any]) -> str | None:
    out = os.environ.get("OUT")
    if not out:
        return None
    path = Path(out) / "gpu_check.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
    return str(path)


def median_us(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) / 1e3, p99 / 1e3


class Check:
    """Runs the checks, collecting table rows and JSON; a failing check is a row, not
    the end of the run."""

    def __init__(self, device: str, quick: bool) -> None:
        import pynvml
        import torch

        from pytest_energy.meters.nvml import NvmlMeter

        self.pynvml: Any = pynvml
        self.torch: Any = torch
        self.device = device
        self.quick = quick
        self.window_s = 1.0 if quick else 2.0
        self.start = time.monotonic()
        self.rows: list[tuple[str, str, str]] = []
        self.data: dict[str, Any] = {"gpu": True, "device": device, "quick": quick}
        self.failures = 0
        pynvml.nvmlInit()  # our own reference, for the raw-call timings
        torch.cuda.set_device(torch.device(device))
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        self.meter = NvmlMeter(device)
        info = self.meter.describe()["devices"][0]
        self.info = info
        self.handle = pynvml.nvmlDeviceGetHandleByUUID(info["uuid"])

    # -- plumbing ----------------------------------------------------------------------

    def step(self, name: str, fn: Callable[[], None]) -> None:
        if time.monotonic() - self.start > TIME_BUDGET_S:
            self.rows.append((name, "skipped", f"time budget of {TIME_BUDGET_S:g} s spent"))
            return
        try:
            fn()
        except Exception as exc:
            self.failures += 1
            self.rows.append((name, "FAILED", f"{type(exc).__name__}: {exc}"))
            self.data.setdefault("errors", {})[name] = traceback.format_exc()

    def sync(self) -> None:
        self.torch.cuda.synchronize()

    def matmul(self, rows: int, dtype: Any) -> tuple[Callable[[], Any], float]:
        """A matrix product of ``rows`` x 8192 by 8192 x 8192, and its flop count."""
        torch = self.torch
        x = torch.randn(rows, SIZE, device=self.device, dtype=dtype)
        w = torch.randn(SIZE, SIZE, device=self.device, dtype=dtype)
        y = torch.empty(rows, SIZE, device=self.device, dtype=dtype)

        def call() -> Any:
            return torch.matmul(x, w, out=y)

        return call, 2.0 * rows * SIZE * SIZE

    def has_counter(self) -> bool:
        return bool(self.info.get("source") == "energy counter")

    # -- checks -------------------------------------------------------------------------

    def device_row(self) -> None:
        torch, info = self.torch, self.info
        conditions = self.meter.conditions()
        limits = self.meter.power_limits_w()
        self.data["device_info"] = {
            **info,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "conditions": conditions,
            "power_limits_w": limits,
            "meter_update_period_s": self.meter.update_period_s,
        }
        limit = next(iter(limits.values()), None)
        self.rows.append((
            "device",
            str(info["name"]),
            f"driver {info.get('driver_version')}, {info.get('architecture')}, limit "
            f"{limit if limit is None else f'{limit:g} W'}, source: {info['source']}, torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}); conditions: "
            f"{'; '.join(conditions) or 'none'}",
        ))

    def read_latency(self) -> None:
        nvml, handle = self.pynvml, self.handle
        results: dict[str, Any] = {}
        calls: list[tuple[str, Callable[[], Any], int]] = [
            ("nvmlDeviceGetTotalEnergyConsumption",
             lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle), 1000),
            ("nvmlDeviceGetFieldValues(POWER_INSTANT)",
             lambda: nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT]),
             1000),
            ("NvmlMeter.read() (with torch sync)", self.meter.read, 200),
        ]
        for label, call, count in calls:
            try:
                call()
            except Exception as exc:
                self.rows.append((f"read latency: {label}", "n/a", f"{type(exc).__name__}: {exc}"))
                continue
            samples = []
            for _ in range(count):
                t0 = time.perf_counter_ns()
                call()
                samples.append(time.perf_counter_ns() - t0)
            med, p99 = median_us(samples)
            results[label] = {"median_us": med, "p99_us": p99, "calls": count}
            self.rows.append((f"read latency: {label}", f"{med:.1f} us",
                              f"median of {count}; p99 {p99:.1f} us"))
        self.data["read_latency"] = results

    def counter_steps(self) -> None:
        if not self.has_counter():
            self.rows.append(("counter step period", "n/a", "no energy counter on this GPU"))
            return
        nvml, handle = self.pynvml, self.handle
        self.sync()
        changes: list[float] = []
        polls = 0
        last = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        end = time.perf_counter() + self.window_s
        while (now := time.perf_counter()) < end:
            value = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            polls += 1
            if value != last:
                changes.append(now)
                last = value
        intervals = [(b - a) * 1e3 for a, b in itertools.pairwise(changes)]
        if not intervals:
            raise RuntimeError(f"the counter did not change in {self.window_s:g} s "
                               f"({polls} polls)")
        med = statistics.median(intervals)
        self.data["counter_steps"] = {
            "median_ms": med, "min_ms": min(intervals), "max_ms": max(intervals),
            "changes": len(changes), "polls": polls, "intervals_ms": intervals,
        }
        self.rows.append((
            "counter step period (idle)", f"{med:.1f} ms",
            f"median of {len(intervals)} intervals between changes, min {min(intervals):.1f}"
            f" / max {max(intervals):.1f} ms, {polls} polls in {self.window_s:g} s; "
            f"plugin assumes {self.meter.update_period_s * 1e3:g} ms",
        ))

    def counter_vs_sampled(self) -> None:
        """Idle, then busy, windows read by the counter meter and by the sampling meter."""
        from pytest_energy.meters.nvml import NvmlMeter

        sampled = NvmlMeter(self.device, sample_power=True)
        try:
            source = sampled.describe()["devices"][0]["source"]
            self.sync()
            time.sleep(0.5)
            idle = self._paired_window(sampled, busy=None)
            self._compare_row(f"idle power ({self.window_s:g} s)", idle, source, "idle")
            call, flops = self.matmul(SIZE, self.torch.bfloat16)
            for _ in range(3):
                call()
            self.sync()
            busy = self._paired_window(sampled, busy=call)
            busy["tflops"] = busy.pop("calls") * flops / busy["seconds"] / 1e12
            self._compare_row(f"busy power ({self.window_s:g} s bf16 {SIZE}^3)", busy, source,
                              "busy")
        finally:
            sampled.close()

    def _paired_window(self, sampled: Any, busy: Callable[[], Any] | None) -> dict[str, Any]:
        """Both meters over one window that starts and ends right after counter steps
        (where the counter exists), so the counter side is exact for whole steps rather
        than +-1 step (+-5% of a 2 s window)."""
        step_value = self._counter_value if self.has_counter() else None

        def run_until(stop: Callable[[], bool]) -> int:
            done = 0
            while not stop():
                if busy is None:
                    time.sleep(0.0005)
                    continue
                for _ in range(8):
                    busy()
                done += 8
                self.sync()  # keep the launch queue short
            return done

        def stepped(value: Callable[[], int]) -> Callable[[], bool]:
            """Stop at the counter's next step, or after 3 periods without one."""
            first, give_up = value(), time.perf_counter() + 3 * self.meter.update_period_s

            def stop() -> bool:
                if value() != first:
                    return True
                if time.perf_counter() >= give_up:
                    state["aligned"] = False  # a frozen counter: the check says so below
                    return True
                return False

            return stop

        state = {"aligned": step_value is not None}
        if step_value is not None:  # start just after a step
            run_until(stepped(step_value))
        c0 = sum(self.meter.read().values())
        s0 = sum(sampled.read().values())
        start = time.perf_counter()
        calls = run_until(lambda: time.perf_counter() - start >= self.window_s)
        if step_value is not None:  # end just after a step
            calls += run_until(stepped(step_value))
        c1 = sum(self.meter.read().values())
        s1 = sum(sampled.read().values())
        seconds = time.perf_counter() - start
        counter_w, sampled_w = (c1 - c0) / seconds, (s1 - s0) / seconds
        return {
            "seconds": seconds, "calls": calls, "step_aligned": state["aligned"],
            "counter_w": counter_w, "sampled_w": sampled_w,
            "difference": (sampled_w - counter_w) / counter_w if counter_w > 0 else None,
        }

    def _counter_value(self) -> int:
        return int(self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def _compare_row(self, label: str, window: dict[str, Any], source: str, key: str) -> None:
        self.data.setdefault("counter_vs_sampled", {})[key] = {**window, "source": source}
        extra = f", {window['tflops']:.0f} TFLOP/s" if "tflops" in window else ""
        if self.has_counter():
            self.rows.append((
                label, f"{window['counter_w']:.1f} W",
                f"counter; {source} over the same window: {window['sampled_w']:.1f} W "
                f"({pct(window['difference'])} vs counter){extra}",
            ))
        else:
            self.rows.append((label, f"{window['sampled_w']:.1f} W", f"{source}{extra}"))

    def sensor_window(self) -> None:
        """Probe which part of each counter period the power sensor sees: a ~5 ms burst
        of matrix products that ends ``d`` ms before a counter step, for ``d`` across
        the period; the step's increment above an idle step shows whether the burst
        was inside the sensor's window. The plugin assumes, for A100/H100-class GPUs,
        that the window is the last 25 ms before each step (``sensor_window_s``)."""
        if not self.has_counter():
            self.rows.append(("sensor window probe", "n/a", "no energy counter on this GPU"))
            return
        from pytest_energy.measure.grid import measure_grid

        nvml, handle = self.pynvml, self.handle

        def read() -> float:
            return float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1e3

        grid = measure_grid(read, time.perf_counter, intervals=10, timeout_s=1.0,
                            max_resolution_s=5e-4)
        if grid is None:
            raise RuntimeError("the counter did not step within 1 s")
        period = grid.period_s
        call, _ = self.matmul(SIZE, self.torch.bfloat16)
        call()
        self.sync()
        t0 = time.perf_counter()
        for _ in range(3):
            call()
        self.sync()
        burst_calls = max(1, round(0.005 / ((time.perf_counter() - t0) / 3)))
        t0 = time.perf_counter()
        for _ in range(burst_calls):
            call()
        self.sync()
        burst_s = time.perf_counter() - t0

        def one_step(end_before_s: float | None) -> float:
            """The increment of one counter step, after an optional burst that ends
            ``end_before_s`` before that step."""
            first = measure_grid(read, time.perf_counter, period_s=period, timeout_s=1.0,
                                 max_resolution_s=5e-4)
            if first is None:
                raise RuntimeError("lost the counter's steps")
            before = read()
            target = first.next_step(time.perf_counter())
            if end_before_s is not None:
                start = target - end_before_s - burst_s
                while time.perf_counter() < start:
                    pass
                for _ in range(burst_calls):
                    call()
                self.sync()
                if time.perf_counter() > target - end_before_s + max(2e-3, burst_s / 2):
                    return float("nan")  # a busy host ran the burst late: another offset
            while time.perf_counter() < target + 0.002:
                pass
            after = read()
            # late (more than one step) or early (the grid was off: no step): no sample
            if first.steps_between(first.ref_s, time.perf_counter()) != 1 or after == before:
                return float("nan")
            return after - before

        def median(values: list[float]) -> float:  # of the samples taken; NaN if none
            taken = [v for v in values if not math.isnan(v)]
            return statistics.median(taken) if taken else float("nan")

        def samples(take: Callable[[], float], wanted: int = 3, tries: int = 8) -> list[float]:
            """``wanted`` samples that ran as planned (NaN: they did not), ``tries`` at
            most: on a busy host some bursts run late, and a median of what is left
            would be a median of another offset."""
            taken: list[float] = []
            for _ in range(tries):
                value = take()
                if not math.isnan(value):
                    taken.append(value)
                if len(taken) == wanted:
                    break
            return taken

        idle = median([one_step(None) for _ in range(6)])
        offsets_ms = list(range(0, int(period * 1e3), 5))
        seen: dict[int, float] = {}
        for d in offsets_ms:
            seen[d] = median(samples(functools.partial(one_step, d / 1e3))) - idle
        top = max((v for v in seen.values() if not math.isnan(v)), default=0.0)
        inside = [d for d, v in seen.items() if top > 0 and v > 0.5 * top]
        window_ms = (max(inside) + burst_s * 1e3) if inside else None
        self.data["sensor_window"] = {
            "period_ms": period * 1e3, "burst_ms": burst_s * 1e3, "burst_calls": burst_calls,
            "idle_step_j": idle, "excess_j_by_end_before_ms": seen,
            "estimated_window_ms": window_ms,
            "plugin_window_s": self.meter.sensor_window_s,
        }
        profile = " ".join(f"{d}:{v:.2g}" for d, v in seen.items())
        self.rows.append((
            "sensor window probe",
            "n/a" if window_ms is None else f"~{window_ms:.0f} ms of {period * 1e3:.0f}",
            f"a {burst_s * 1e3:.1f} ms burst ending d ms before a step adds J to it: "
            f"{profile}; registered for d in {min(inside) if inside else '-'}.."
            f"{max(inside) if inside else '-'} ms; plugin assumes "
            f"{_window_text(self.meter.sensor_window_s)}",
        ))

    def workloads(self) -> None:
        torch = self.torch
        for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            for rows in (SIZE, 32, 8, 1):
                name = f"{dtype_name} {rows}x{SIZE} @ {SIZE}x{SIZE}"
                self.step(name, functools.partial(self._workload, name, rows, dtype))

    def _measure(self, call: Callable[[], Any], items: float) -> Any:
        from pytest_energy.measure import Measurer

        _, result = Measurer(self.meter, device=self.device).run(
            call, warmup=3, rounds=None, trials=5, max_time_s=self.window_s,
            items_per_call=items,
        )
        return result

    def _workload(self, name: str, rows: int, dtype: Any) -> None:
        call, flops = self.matmul(rows, dtype)
        result = self._measure(call, rows)
        latency = result.latency_ms or {}
        spread = result.joules_spread or {}
        calls = sum(t.calls for t in result.trials)
        median_ms = latency.get("median")
        record = {
            "joules_per_call": result.joules_per_call,
            "joules_per_item": result.joules_per_item,
            "latency_ms": latency,
            "cv": spread.get("cv"),
            "trials": [{"calls": t.calls, "window_s": t.window_s, "joules": t.total_joules}
                       for t in result.trials],
            "avg_watts": result.watts,  # per counted step under the aligned plan
            "tflops": flops / (median_ms / 1e3) / 1e12 if median_ms else None,
            "warnings": list(result.warnings),
            "invalid_reason": result.invalid_reason,
            "conditions": list(result.conditions),
        }
        self.data.setdefault("workloads", {})[name] = record
        notes = [
            f"{fmt_energy(result.joules_per_item)}/item",
            f"{median_ms:.3g} ms/call" if median_ms else "no latency",
            f"CV {spread['cv'] * 100:.1f}%" if spread.get("cv") is not None else "no CV",
            f"plan {result.plan}",
            f"{len(result.trials)} trials x {calls // max(1, len(result.trials))} calls",
            f"{record['avg_watts']:.0f} W" if record["avg_watts"] else "",
            f"{record['tflops']:.3g} TFLOP/s" if record["tflops"] else "",
        ]
        if result.invalid_reason:
            notes.append(f"INVALID: {result.invalid_reason}")
        notes.extend(w.split(":")[0] for w in result.warnings)
        self.rows.append((name, f"{fmt_energy(result.joules_per_call)}/call",
                          "; ".join(n for n in notes if n)))

    def repeatability(self) -> None:
        call, _ = self.matmul(SIZE, self.torch.bfloat16)
        per_call: list[float] = []
        inner_cv: list[float] = []
        for _ in range(5):
            result = self._measure(call, SIZE)
            if result.joules_per_call is None:
                raise RuntimeError(f"a run was not measured: {result.invalid_reason}")
            per_call.append(result.joules_per_call)
            cv_run = (result.joules_spread or {}).get("cv")
            if cv_run is not None:
                inner_cv.append(cv_run)
            time.sleep(0.25)
        mean = statistics.fmean(per_call)
        cv = statistics.stdev(per_call) / mean
        self.data["repeatability"] = {"joules_per_call": per_call, "cv": cv,
                                      "within_run_cv": inner_cv}
        self.rows.append((
            "repeatability: bf16 8192^3, 5 runs", f"CV {cv * 100:.2f}%",
            f"J/call {fmt_energy(min(per_call))} .. {fmt_energy(max(per_call))}; "
            + (f"within-run CV median {statistics.median(inner_cv) * 100:.2f}%" if inner_cv
               else "within-run CV n/a"),
        ))

    def run(self) -> None:
        self.step("device", self.device_row)
        self.step("read latency", self.read_latency)
        self.step("counter step period", self.counter_steps)
        self.step("sensor window probe", self.sensor_window)
        self.step("counter vs sampled power", self.counter_vs_sampled)
        self.workloads()
        self.step("repeatability", self.repeatability)

    def close(self) -> None:
        self.meter.close()
        with contextlib.suppress(Exception):
            self.pynvml.nvmlShutdown()


def _window_text(window_s: float | None) -> str:
    return "an unknown window" if window_s is None else f"the last {window_s * 1e3:g} ms"


def print_table(rows: list[tuple[str, str, str]]) -> None:
    try:
        from tabulate import tabulate
    except ImportError:
        for row in rows:
            print(" | ".join(row))
        return
    print(tabulate(rows, headers=["check", "result", "details"], tablefmt="simple",
                   maxcolwidths=[None, None, 90]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cuda:0", help="CUDA device (default cuda:0)")
    parser.add_argument("--quick", action="store_true", help="1 s windows instead of 2 s")
    args = parser.parse_args(argv)

    reason = why_no_gpu()
    if reason is not None:
        print(f"no GPU: {reason}; nothing to check")
        path = write_json({"gpu": False, "reason": reason})
        if path:
            print(f"wrote {path}")
        return 0

    started = time.monotonic()
    check = Check(args.device, args.quick)
    try:
        check.run()
    finally:
        check.close()
        check.data["elapsed_s"] = time.monotonic() - started
        check.data["rows"] = check.rows
        path = write_json(check.data)
    print_table(check.rows)
    print(f"{len(check.rows)} checks in {check.data['elapsed_s']:.0f} s; "
          f"{check.failures} failed" + (f"; wrote {path}" if path else ""))
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
