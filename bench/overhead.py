"""Overhead of pytest-energy. Run: ``python bench/overhead.py [--repeats N] [--quick]``.

(a) Nothing marked: wall time of ``pytest`` on generated suites (200 trivial + 20 small
    numpy tests; 2,000 trivial tests) with the plugin disabled (``-p no:energy``) and
    enabled (installed, autoloaded), runs interleaved. Target: <= 1.02x. Wall and CPU
    time on a shared 2-core VM vary by +-5% between runs; ``--instructions`` adds the
    instruction count of one run of each (valgrind callgrind), which does not.
(b) Fixed cost per measured round (call) with the estimate meter: a no-op measured by
    the plugin's Measurer vs the same no-op in a bare loop. Target: <= 20 us. Also the
    cost of one window boundary (two meter reads, the device lock, bookkeeping).
(c) 10,000 measured tests with a fast fake meter and the smallest plan (1 round, no
    warm-up, 1 trial): extra peak RSS vs the same suite unmeasured (target <= 100 MB),
    and the time of pytest_sessionfinish, which holds the JSON report and the summary
    table (target <= 2 s).
(d) pytest-xdist: ``-n 2`` vs ``-n 0`` on 40 measured + 400 unmeasured tests: the JSON
    rows must be identical; wall times reported.

Prints one table. Figures depend on the machine: quote them with the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tabulate import tabulate

from pytest_energy.measure import Measurer
from pytest_energy.meters.estimate import EstimateMeter

FAST_METER = textwrap.dedent('''
    class FastMeter:
        """1 J per read: the cheapest possible meter, to time the plugin, not a counter."""
        name = "fast"
        estimated = False
        update_period_s = 0.0
        max_plausible_watts = None
        def __init__(self):
            self.reads = 0
        def domains(self):
            return ["fast:0"]
        def read(self):
            self.reads += 1
            return {"fast:0": float(self.reads)}
        def close(self):
            pass
''')

# Times pytest_sessionfinish as a whole: the plugin writes the JSON there and pytest's
# terminal reporter prints the summary table inside it.
TIMING_CONFTEST = textwrap.dedent('''
    import os, time
    import pytest

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(session):
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            out = os.environ.get("BENCH_FINISH_FILE")
            if out and not hasattr(session.config, "workerinput"):
                with open(out, "w") as handle:
                    handle.write(str(time.perf_counter() - start))
''')


def write_trivial(root: Path, count: int, name: str = "test_trivial.py") -> None:
    lines = []
    for i in range(count):
        lines += [f"def test_trivial_{i}():", f"    assert {i} + 1 == {i + 1}", ""]
    (root / name).write_text("\n".join(lines))


def write_numpy(root: Path, count: int) -> None:
    (root / "test_numpy.py").write_text(textwrap.dedent(f"""
        import numpy as np
        import pytest

        @pytest.mark.parametrize("n", range({count}))
        def test_small_numpy(n):
            a = np.arange(64 * 64, dtype=np.float64).reshape(64, 64) + n
            assert np.isfinite(a @ a.T).all()
    """))


def write_measured(root: Path, count: int) -> None:
    (root / "test_measured.py").write_text(textwrap.dedent(f"""
        import pytest

        @pytest.mark.parametrize("n", range({count}))
        @pytest.mark.energy_budget(joules=10)
        def test_measured(n):
            assert n >= 0
    """))


def run_pytest(root: Path, extra: list[str], env: dict[str, str] | None = None
               ) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the pytest process, stdout); the process's CPU
    seconds go to ``LAST_CPU_S`` (less noisy than wall time on a shared machine)."""
    code = (
        "import resource, sys, pytest\n"
        "rc = pytest.main(sys.argv[1:])\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "sys.stderr.write(f'\\nRSS_KB={u.ru_maxrss} CPU_S={u.ru_utime + u.ru_stime}\\n')\n"
        "sys.exit(rc)\n"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "-q", "-p", "no:cacheprovider", *extra, str(root)],
        cwd=root, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"suite failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-2000:]}")
    rss_kb = int(proc.stderr.rsplit("RSS_KB=", 1)[1].split()[0])
    LAST_CPU_S[0] = float(proc.stderr.rsplit("CPU_S=", 1)[1].split()[0])
    return elapsed, rss_kb / 1024, proc.stdout


LAST_CPU_S = [0.0]


def ratio_rows(label: str, root: Path, repeats: int) -> list[list[str]]:
    run_pytest(root, [])  # warm file caches and .pyc
    plain, plugin, plain_cpu, plugin_cpu = [], [], [], []
    for _ in range(repeats):  # interleaved so drift hits both equally
        plain.append(run_pytest(root, ["-p", "no:energy"])[0])
        plain_cpu.append(LAST_CPU_S[0])
        plugin.append(run_pytest(root, [])[0])
        plugin_cpu.append(LAST_CPU_S[0])
    med = statistics.median(plugin) / statistics.median(plain)
    best = min(plugin) / min(plain)
    cpu = statistics.median(plugin_cpu) / statistics.median(plain_cpu)
    return [[f"{label}, nothing marked: plain / plugin wall (median of {repeats})",
             f"{statistics.median(plain):.3f} / {statistics.median(plugin):.3f} s",
             f"{med:.3f}x (best-of: {best:.3f}x); target <= 1.02x"],
            ["  same, CPU time of the pytest process (median)",
             f"{statistics.median(plain_cpu):.3f} / {statistics.median(plugin_cpu):.3f} s",
             f"{cpu:.3f}x"]]


def instructions(root: Path, extra: list[str]) -> int | None:
    """Instructions executed by one pytest run, counted by valgrind's callgrind: the
    same count whatever else the machine does, unlike wall time on a shared 2-core VM.
    None when valgrind is not installed."""
    if shutil.which("valgrind") is None:
        return None
    out = root / "callgrind.out"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
         "pytest", "-q", "-p", "no:cacheprovider", *extra, str(root)],
        cwd=root, capture_output=True, text=True, check=True)
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            out.unlink()
            return int(line.split()[1])
    return None


def instruction_rows(label: str, root: Path) -> list[list[str]]:
    plain = instructions(root, ["-p", "no:energy"])
    plugin = instructions(root, [])
    if plain is None or plugin is None:
        return [[f"{label}: instructions", "skipped", "valgrind not installed"]]
    return [[f"{label}, nothing marked: instructions plain / plugin (callgrind)",
             f"{plain / 1e9:.3f} / {plugin / 1e9:.3f} G",
             f"{plugin / plain:.4f}x; target <= 1.02x"]]


def round_cost(rounds: int = 200_000) -> tuple[float, float]:
    """(us per measured call, us per window boundary) with the estimate meter."""
    def noop() -> None:
        return None

    best_bare = best_measured = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            noop()
        best_bare = min(best_bare, time.perf_counter() - start)
        measurer = Measurer(EstimateMeter(), device="cpu")
        start = time.perf_counter()
        measurer.run(noop, warmup=0, rounds=rounds, trials=5, max_time_s=60)
        best_measured = min(best_measured, time.perf_counter() - start)
    per_call_us = (best_measured - best_bare) / rounds * 1e6
    windows = 2_000
    measurer = Measurer(EstimateMeter(), device="cpu")
    start = time.perf_counter()
    measurer.run(noop, warmup=0, rounds=windows, trials=windows, max_time_s=60)
    per_window_us = (time.perf_counter() - start) / windows * 1e6 - per_call_us
    return per_call_us, per_window_us


def many_measured(tmp: Path, count: int) -> list[list[str]]:
    root = tmp / "many"
    root.mkdir()
    (root / "fast_meter.py").write_text(FAST_METER)
    (root / "conftest.py").write_text(TIMING_CONFTEST)
    write_measured(root, count)
    plan = ["--energy-rounds=1", "--energy-warmup=0", "--energy-trials=1",
            "--energy-meter=fast_meter:FastMeter", "-o", "pythonpath=."]
    finish_file = tmp / "finish.txt"
    env = {"BENCH_FINISH_FILE": str(finish_file)}
    _, rss_plain, _ = run_pytest(root, ["-p", "no:energy", "-W",
                                        "ignore::pytest.PytestUnknownMarkWarning"], env)
    plain_finish = float(finish_file.read_text())
    wall, rss_plugin, _ = run_pytest(root, [*plan, f"--energy-json={tmp / 'many.json'}"], env)
    finish = float(finish_file.read_text())
    return [
        [f"{count:,} measured tests (fast meter, 1 round): wall time", f"{wall:.1f} s", ""],
        ["  extra peak RSS vs the same suite with -p no:energy",
         f"{rss_plugin - rss_plain:.1f} MB", "target <= 100 MB"],
        ["  sessionfinish (JSON report + summary table), plugin / plain",
         f"{finish:.2f} / {plain_finish:.2f} s",
         f"plugin adds {finish - plain_finish:.2f} s; target <= 2 s"],
    ]


def xdist_rows(tmp: Path) -> list[list[str]]:
    root = tmp / "xdist"
    root.mkdir()
    (root / "fast_meter.py").write_text(FAST_METER)
    write_trivial(root, 400, "test_plain.py")
    write_measured(root, 40)
    rows, results = [], {}
    for workers in ("0", "2"):
        out = tmp / f"x{workers}.json"
        wall, _, _ = run_pytest(root, ["-n", workers, "--energy-meter=fast_meter:FastMeter",
                                       "--energy-rounds=3",
                                       "-o", "pythonpath=.", f"--energy-json={out}"])
        tests = json.loads(out.read_text())["tests"]
        results[workers] = sorted((t["nodeid"], t["outcome"], t["joules_per_call"], t["calls"])
                                  for t in tests)
        rows.append([f"40 measured + 400 unmeasured, -n {workers}: wall time", f"{wall:.2f} s",
                     f"{len(tests)} JSON rows"])
    same = results["0"] == results["2"]
    rows.append(["  -n 2 rows identical to -n 0", "yes" if same else "NO", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="runs of each suite variant")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 2,000 measured tests")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions with valgrind (slow: ~50x per run)")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mixed = tmp / "mixed"
        mixed.mkdir()
        write_trivial(mixed, 200)
        write_numpy(mixed, 20)
        rows += ratio_rows("200 trivial + 20 numpy", mixed, repeats)
        if args.instructions:
            rows += instruction_rows("200 trivial + 20 numpy", mixed)
        big = tmp / "big"
        big.mkdir()
        write_trivial(big, 2000)
        rows += ratio_rows("2,000 trivial", big, repeats)
        if args.instructions:
            rows += instruction_rows("2,000 trivial", big)
        per_call_us, per_window_us = round_cost()
        rows.append(["fixed cost per measured round, estimate meter", f"{per_call_us:.2f} us",
                     "target <= 20 us"])
        rows.append(["cost per window boundary (2 reads, device lock, bookkeeping)",
                     f"{per_window_us:.2f} us", ""])
        rows += many_measured(tmp, 2_000 if args.quick else 10_000)
        if importlib.util.find_spec("xdist") is None:
            rows.append(["pytest-xdist comparison", "skipped", "pytest-xdist not installed"])
        else:
            rows += xdist_rows(tmp)
    print(tabulate(rows, headers=["measure", "value", "ratio / target"], tablefmt="github"))
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
