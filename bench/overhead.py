"""Overhead of pytest-energy. Run: ``python bench/overhead.py [--repeats N]``.

(a) Suite overhead with nothing marked: wall time of ``pytest`` on a generated suite
    of 200 trivial + 20 small numpy tests, with the plugin disabled (``-p no:energy``)
    and enabled (installed, autoloaded), runs interleaved. Target: <= 1.02x.
(b) Fixed cost per measured round (call) with the estimate meter: a no-op measured
    under the plugin's Measurer vs the same no-op in a bare loop. Target: <= 20 us.
    Also the cost of one window boundary (two meter reads + bookkeeping).

Prints one table. Figures depend on the machine; the README and closing notes quote
runs on a 2-core CI-like machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tabulate import tabulate

TRIVIAL = 200
NUMPY = 20


def write_suite(root: Path, trivial: int = TRIVIAL, numpy_tests: int = NUMPY) -> None:
    """A suite with no energy marker at all: the plugin must cost (almost) nothing."""
    lines = ["import pytest", ""]
    for i in range(trivial):
        lines += [f"def test_trivial_{i}():", f"    assert {i} + 1 == {i + 1}", ""]
    (root / "test_trivial.py").write_text("\n".join(lines))
    (root / "test_numpy.py").write_text(textwrap.dedent(f"""
        import numpy as np
        import pytest

        @pytest.mark.parametrize("n", range({numpy_tests}))
        def test_small_numpy(n):
            a = np.arange(64 * 64, dtype=np.float64).reshape(64, 64) + n
            assert np.isfinite(a @ a.T).all()
    """))
    (root / "pytest.ini").write_text("[pytest]\n")


def time_pytest(root: Path, extra: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, str(root)],
        cwd=root, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"suite failed ({proc.returncode}):\n{proc.stdout[-2000:]}")
    return elapsed


def suite_overhead(repeats: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_suite(root)
        time_pytest(root, [])  # warm file caches and .pyc
        plain, plugin = [], []
        for _ in range(repeats):  # interleaved so drift hits both equally
            plain.append(time_pytest(root, ["-p", "no:energy"]))
            plugin.append(time_pytest(root, []))
    return statistics.median(plain), statistics.median(plugin), min(plain), min(plugin)


def round_cost(rounds: int = 200_000) -> tuple[float, float]:
    """(us per measured call, us per window boundary) with the estimate meter."""
    from pytest_energy.measure import Measurer
    from pytest_energy.meters.estimate import EstimateMeter

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="runs of each suite variant")
    args = parser.parse_args()
    plain_med, plugin_med, plain_min, plugin_min = suite_overhead(args.repeats)
    per_call_us, per_window_us = round_cost()
    rows = [
        [f"suite {TRIVIAL} trivial + {NUMPY} numpy, nothing marked: -p no:energy (median)",
         f"{plain_med:.3f} s", ""],
        ["same suite, plugin enabled (median)", f"{plugin_med:.3f} s",
         f"{plugin_med / plain_med:.3f}x (target <= 1.02x)"],
        ["same suite, best of runs: plain / plugin", f"{plain_min:.3f} / {plugin_min:.3f} s",
         f"{plugin_min / plain_min:.3f}x"],
        ["fixed cost per measured round, estimate meter", f"{per_call_us:.2f} us",
         "target <= 20 us"],
        ["cost per window boundary (2 meter reads + bookkeeping)", f"{per_window_us:.2f} us", ""],
    ]
    print(tabulate(rows, headers=["measure", "value", "ratio / target"], tablefmt="github"))
    print(f"\n{args.repeats} interleaved runs per variant; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
