"""What busy-machine detection reads. Run: ``python bench/busy_probe.py [--repeats N]``.

Runs a small measured suite with real pytest, on this machine, its /proc and its
default meter, in three scenarios: nothing beside it, one CPU-bound neighbour
(``python -c "while True: pass"``), and two. The suite has two tests, both far over
an energy budget, so every run shows what the verdict does:

* ``test_cpu``: a pure-Python loop (CPU-bound inference on the CPU);
* ``test_wait``: sleeps 10 ms per call (a test waiting on a GPU: its own CPU use ~0).

For each scenario and test it prints other processes' CPU use while the test was
measured (``machine_load.foreign_cpus`` of the JSON report: median and range over the
runs), the test's own CPU use, steal, the 1-minute load, how many runs were flagged
``busy``, the verdicts and pytest's exit codes (1: the budget failed; 0: the failure
became an ``inconclusive: machine busy`` warning).

A second table shows what jiffy counters read over short measured parts with
nothing started beside them: other processes' CPU use over 0.1-1 s intervals while
this process spins or sleeps (median, 95th percentile and maximum of ``--samples``
intervals). It is the rounding and tick-sampling noise the rule's threshold and its
shortest judged part (``MIN_WALL_TICKS``) must stay clear of.

The machine is measured as it is: on a shared VM other jobs show up in "quiet" too,
which is what the rule has to live with. Prints two tables (``--json`` writes both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_energy.measure.busy import PROC_ROOT_ENV, cpu_sample, cpu_usage

SUITE = '''
import time

import pytest


@pytest.mark.energy_budget(joules="1 nJ")
def test_cpu():
    total = 0
    for i in range(20_000):
        total += i * i
    assert total > 0


@pytest.mark.energy_budget(joules="1 nJ")
def test_wait():
    time.sleep(0.01)
'''
SPINNER = "while True: pass"
SCENARIOS = (("quiet", 0), ("1 CPU-bound neighbour", 1), ("2 CPU-bound neighbours", 2))


@contextmanager
def neighbours(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes running for the duration of the block."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPINNER]) for _ in range(count)]
    try:
        if spinners:
            time.sleep(0.5)  # let the scheduler spread them
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
        for spinner in spinners:
            spinner.wait()


def run_suite(folder: Path) -> tuple[int, list[dict[str, Any]]]:
    """One pytest run of the suite: its exit code and its JSON entries."""
    env = {k: v for k, v in os.environ.items() if k != PROC_ROOT_ENV}
    report = folder / "energy.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--energy-json={report}", "test_probe.py"],
        cwd=folder, env=env, capture_output=True, text=True, check=False)
    tests: list[dict[str, Any]] = json.loads(report.read_text())["tests"]
    return done.returncode, tests


def _figure(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _row(scenario: str, name: str, runs: list[tuple[int, list[dict[str, Any]]]]
         ) -> list[str]:
    """One test over all runs of one scenario."""
    tests = [t for _, entries in runs for t in entries if t["nodeid"] == name]
    seen = [t["machine_load"] for t in tests if t.get("machine_load")]

    def figures(key: str, scale: float = 1.0) -> str:
        return _figure([m[key] * scale for m in seen if m[key] is not None])

    return [scenario, name.split("::")[-1], figures("foreign_cpus"), figures("own_cpus"),
            figures("steal", 100), figures("load_1m"),
            f"{sum(bool(m['busy']) for m in seen)}/{len(tests)}",
            ", ".join(sorted({str(t["verdict"]) for t in tests})),
            " ".join(str(code) for code, _ in runs)]


def summarize(scenario: str, runs: list[tuple[int, list[dict[str, Any]]]]) -> list[list[str]]:
    """One row per test of the suite over all runs of one scenario."""
    names = sorted({t["nodeid"] for _, tests in runs for t in tests})
    return [_row(scenario, name, runs) for name in names]


def idle_reading(seconds: float = 1.0) -> str:
    """Other processes' CPU use over ``seconds`` with this process asleep."""
    start = cpu_sample()
    time.sleep(seconds)
    usage = cpu_usage(start, cpu_sample())
    if usage is None:
        return "no /proc: detection is off on this system"
    return (f"{usage.foreign_cpus:.2f} of {usage.cpus} CPUs used by other processes over "
            f"{seconds:g} s with nothing measured (threshold {usage.threshold_cpus:g})")


def _interval(seconds: float, spin: bool) -> float | None:
    """Other processes' CPUs over one interval of ``seconds``, spinning or asleep."""
    start = cpu_sample()
    if spin:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    else:
        time.sleep(seconds)
    usage = cpu_usage(start, cpu_sample())
    return None if usage is None else usage.foreign_cpus


def short_intervals(samples: int) -> list[list[str]]:
    """Rows: interval length, this process's state, foreign CPUs median/p95/max."""
    rows = []
    for seconds in (0.1, 0.15, 0.2, 0.5, 1.0):
        for spin in (True, False):
            read = sorted(v for v in (_interval(seconds, spin) for _ in range(samples))
                          if v is not None)
            if not read:
                continue
            p95 = read[min(len(read) - 1, round(0.95 * (len(read) - 1)))]
            rows.append([f"{seconds:g} s", "spinning" if spin else "asleep",
                         f"{statistics.median(read):.2f}", f"{p95:.2f}", f"{read[-1]:.2f}",
                         str(len(read))])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario")
    parser.add_argument("--samples", type=int, default=20,
                        help="intervals per row of the short-interval table (0: skip it)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    print(f"before: {idle_reading()}")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_probe.py").write_text(SUITE)
        for scenario, count in SCENARIOS:
            with neighbours(count):
                runs = [run_suite(folder) for _ in range(args.repeats)]
            rows.extend(summarize(scenario, runs))
    headers = ["scenario", "test", "other CPUs", "this test CPUs", "steal %", "load 1m",
               "busy", "verdicts", "exit codes"]
    print(tabulate(rows, headers=headers))
    print(f"after: {idle_reading()}")
    short_headers = ["interval", "this process", "other CPUs median", "p95", "max", "n"]
    short = short_intervals(args.samples) if args.samples > 0 else []
    if short:
        print("\nNothing started beside it: other processes' CPUs over short intervals")
        print(tabulate(short, headers=short_headers))
    if args.json:
        tables = {"suite": [dict(zip(headers, row, strict=True)) for row in rows],
                  "short_intervals": [dict(zip(short_headers, row, strict=True))
                                      for row in short]}
        args.json.write_text(json.dumps(tables, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
