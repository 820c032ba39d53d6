"""How often the regression gate is wrong. Run: ``python bench/verdicts.py [--runs N]``.

Simulates a noisy meter: every trial (window) of a test reads its true energy per call
times a random factor with a coefficient of variation of 3% (log-normal, so energies
stay positive). A baseline run and a new run of 5 trials each are compared with
exactly the code the plugin uses (:func:`pytest_energy.history.compare.compare_entries`) under
the default settings (``--energy-compare-fail=joules:10%``, alpha 0.01, one-sided
exact Mann-Whitney U), and the table reports

* the **false-failure rate**: the new run is unchanged, yet the gate fails it
  (target <= 0.1%);
* the **detection rate**: the new run is 20% more expensive and the gate fails it
  (target >= 99%);

with a 95% confidence interval (Wilson). The extra rows show why the default is a
threshold AND a significance test: significance alone fails about 1 unchanged test in
125 (alpha = 0.01, one-sided); the threshold alone fails 1 in 10 on a meter with CV 10%,
where the combination stays bounded by alpha; and with 3 trials per run nothing can be
significant at 0.01, so the gate needs the default 5.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tabulate import tabulate

from pytest_energy.entry import Entry
from pytest_energy.history.compare import CompareVerdict, compare_entries
from pytest_energy.history.metrics import (
    DEFAULT_ALPHA,
    DEFAULT_FAIL,
    Threshold,
    parse_compare_fail,
)

TRIALS = 5
CV = 0.03
REGRESSION = 1.20
TARGET_FALSE, TARGET_DETECT = 0.001, 0.99


def simulated_entry(rng: random.Random, joules_per_call: float, cv: float,
                    trials: int = TRIALS, calls: int = 100) -> Entry:
    """A report entry as a noisy meter would produce it (only the fields compare reads)."""
    sigma = math.sqrt(math.log(1 + cv * cv))
    windows = [joules_per_call * calls * math.exp(rng.gauss(-sigma * sigma / 2, sigma))
               for _ in range(trials)]
    per_call = sorted(w / calls for w in windows)
    return Entry.from_json({
        "nodeid": "test_sim.py::test_model", "valid": True,
        "joules_per_call": per_call[len(per_call) // 2] if trials % 2 else (
            (per_call[trials // 2 - 1] + per_call[trials // 2]) / 2),
        "trials": [{"calls": calls, "window_s": 0.1, "joules": {"sim:0": w}} for w in windows],
    })


def failure_rate(rng: random.Random, runs: int, factor: float, cv: float,
                 thresholds: Sequence[Threshold], alpha: float, trials: int = TRIALS) -> float:
    failed = 0
    for _ in range(runs):
        base = simulated_entry(rng, 1.0, cv, trials)
        new = simulated_entry(rng, factor, cv, trials)
        (result,) = compare_entries([base], [new], thresholds, alpha)
        failed += result.verdict == CompareVerdict.REGRESSED
    return failed / runs


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pct(value: float) -> str:
    return f"{value * 100:.4g}%"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20000, help="simulated comparisons per row")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    default = parse_compare_fail(DEFAULT_FAIL)
    scenarios = [
        # (setting, cv, thresholds, alpha, trials per run, is the default?)
        (f"default: {DEFAULT_FAIL} AND p<={DEFAULT_ALPHA}", CV, default, DEFAULT_ALPHA, TRIALS,
         True),
        ("threshold 10% only (alpha=1)", CV, default, 1.0, TRIALS, False),
        ("significance only (joules:0.001%)", CV,
         parse_compare_fail("joules:0.001%"), DEFAULT_ALPHA, TRIALS, False),
        ("default, 3 trials per run", CV, default, DEFAULT_ALPHA, 3, False),
        ("default, noisier meter", 0.10, default, DEFAULT_ALPHA, TRIALS, False),
        ("threshold 10% only, noisier meter", 0.10, default, 1.0, TRIALS, False),
        ("default, noisier meter, 10 trials", 0.10, default, DEFAULT_ALPHA, 10, False),
    ]
    rows = []
    ok = True
    for name, cv, thresholds, alpha, trials, is_default in scenarios:
        false = failure_rate(rng, args.runs, 1.0, cv, thresholds, alpha, trials)
        detect = failure_rate(rng, args.runs, REGRESSION, cv, thresholds, alpha, trials)
        f_lo, f_hi = wilson(false, args.runs)
        d_lo, d_hi = wilson(detect, args.runs)
        verdict = "-"
        if is_default:
            passed = false <= TARGET_FALSE and detect >= TARGET_DETECT
            ok = ok and passed
            verdict = "meets targets" if passed else "MISSES TARGETS"
        rows.append([name, f"{cv * 100:g}%", str(trials),
                     f"{pct(false)} [{pct(f_lo)}, {pct(f_hi)}]",
                     f"{pct(detect)} [{pct(d_lo)}, {pct(d_hi)}]", verdict])
    print(f"{args.runs} simulated baseline/new comparisons per cell, seed {args.seed}; "
          f"regression = x{REGRESSION:g} energy per call; the same trial count in both runs")
    print(tabulate(rows, headers=["setting", "meter CV", "trials",
                                  "false failures (unchanged) [95% CI]",
                                  f"detection (+{(REGRESSION - 1) * 100:.0f}%) [95% CI]",
                                  "targets (<= 0.1%, >= 99%)"], tablefmt="github"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
