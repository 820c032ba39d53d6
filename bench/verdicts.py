"""How often the regression gate is wrong under run-to-run drift. Run:
``python bench/verdicts.py [--runs N] [--big]``.

Simulates what a shared CI runner does to energy figures (issue 12): every run has a
**common factor** (log-normal, sigma 5-15%: the machine was faster or slower), every
test in every run its **own factor** (sigma 2-5%), and every window (trial) within-run
noise (CV 2%). It judges simulated runs two ways and prints one table:

* ``trial MWU (before)`` -- the gate of the first release: one baseline run, a one-sided
  Mann-Whitney U test on the per-trial values of each test (``compare_entries``), each
  test at alpha 0.01; the run fails when any test regresses.
* ``run-level gate`` -- the gate as shipped (:func:`pytest_energy.history.gate_compare.
  decide`): the last K baseline runs, the run's common shift separated from each
  test's own movement, the shift at alpha/2 and the tests by Holm at alpha/2
  (family-wise alpha 0.01), without a reference workload (a meter that cannot measure
  one, e.g. a GPU-only suite).
* ``+ reference (default)`` -- the same with the reference workload the plugin measures
  in every saved or compared run (simulated as one more workload with the run's common
  factor and its own factor, never regressed): the machine's drift cancels out of the
  common shift.

Rows: per-run false-fail of unchanged runs; detection of a single-test regression
(x1.5, x2: the run fails AND names only that test) and of a whole-suite regression
(x1.3, x1.5: every test), for suites of 8, 100 and 1,000 tests. Rates with 95% Wilson
intervals. Figures depend only on the seed, not on the machine.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tabulate import tabulate

from pytest_energy.entry import Entry, TrialRecord
from pytest_energy.history.compare import CompareVerdict, compare_entries
from pytest_energy.history.gate_compare import WHOLE_RUN, decide
from pytest_energy.history.metrics import DEFAULT_ALPHA, DEFAULT_FAIL, parse_compare_fail
from pytest_energy.history.runlevel import BaselineRun


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a rate measured on ``n`` runs."""
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pct(value: float) -> str:
    return f"{value * 100:.4g}%"


TRIALS = 5
WITHIN_CV = 0.02
THRESHOLD = 0.10


@dataclass(frozen=True)
class Drift:
    run_sigma: float
    test_sigma: float
    within_cv: float = WITHIN_CV


def _lognormal(rng: random.Random, sigma: float) -> float:
    return math.exp(rng.gauss(-sigma * sigma / 2, sigma))


def simulate_run(rng: random.Random, tests: int, drift: Drift,
                 factors: Sequence[float]) -> list[list[float]]:
    """Per test, the per-call energy of each trial (true energy 1 J x the factors)."""
    common = _lognormal(rng, drift.run_sigma)
    within = math.sqrt(math.log(1 + drift.within_cv ** 2))
    return [[factors[t] * common * _lognormal(rng, drift.test_sigma)
             * _lognormal(rng, within) for _ in range(TRIALS)] for t in range(tests)]


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _entries(run: list[list[float]]) -> list[Entry]:
    """The fields the gate reads, built directly (from_json is the slow part of a
    1,000-test simulation, not the gate)."""
    return [Entry(nodeid=f"t.py::test_{t}", valid=True, joules_per_call=_median(trials),
                  trials=tuple(TrialRecord(1, 0.1, {"sim:0": v}) for v in trials))
            for t, trials in enumerate(run)]


Judge = Callable[[list[list[list[float]]], list[list[float]]], set[int]]


def judge_mwu(baseline: list[list[list[float]]], current: list[list[float]]) -> set[int]:
    thresholds = parse_compare_fail(DEFAULT_FAIL)
    results = compare_entries(_entries(baseline[-1]), _entries(current), thresholds,
                              DEFAULT_ALPHA)
    return {i for i, r in enumerate(results) if r.verdict == CompareVerdict.REGRESSED}


def _named(regressed: Sequence[str]) -> set[int]:
    return {-1 if name == WHOLE_RUN else int(name.rsplit("_", 1)[1]) for name in regressed}


def _gate(baseline: list[list[list[float]]], current: list[list[float]],
          references: list[float] | None) -> set[int]:
    """The shipped gate's decision (history.gate_compare.decide) on simulated runs;
    ``references``: the reference workload's value per baseline run, then this run."""
    def machine(index: int) -> dict[str, object]:
        if references is None:
            return {}
        return {"reference": {"joules_per_call": references[index], "workload": "sim",
                              "meter": "sim"}}

    runs = [BaselineRun(_entries(run), {}, None if references is None else references[i])
            for i, run in enumerate(reversed(baseline))]
    decision = decide(runs, _entries(current), machine(-1), {},
                      parse_compare_fail(DEFAULT_FAIL), DEFAULT_ALPHA, "#sim")
    return _named(decision.regressed)


def judge_run_level(baseline: list[list[list[float]]], current: list[list[float]]) -> set[int]:
    return _gate(baseline, current, None)


def judge_with_reference(baseline: list[list[list[float]]],
                         current: list[list[float]]) -> set[int]:
    """The last simulated test is the reference workload no code change touches (see
    ``rate``): its value goes to the gate as the run's reference, not as a test."""
    values = [_median(run[-1]) for run in (*reversed(baseline), current)]
    return _gate([run[:-1] for run in baseline], current[:-1], values)


@dataclass(frozen=True)
class Scenario:
    label: str
    tests: int
    factor: float  # the regression
    whole_suite: bool  # every test regressed (else test 0 alone)


def rate(rng: random.Random, judge: Judge, scenario: Scenario, drift: Drift,
         baseline_runs: int, runs: int) -> float:
    """Unchanged: the share of runs that fail. Regressed: the share caught (a single
    test named alone, or for the whole suite: the shift or most tests named)."""
    hits = 0
    # one more simulated test than the suite: the reference workload, never regressed
    # (only judge_with_reference reads it; the others ignore the last test)
    for _ in range(runs):
        same = [1.0] * (scenario.tests + 1)
        baseline = [simulate_run(rng, scenario.tests + 1, drift, same)
                    for _ in range(baseline_runs)]
        factors = ([scenario.factor] * scenario.tests if scenario.whole_suite
                   else [scenario.factor] + [1.0] * (scenario.tests - 1)) + [1.0]
        current = simulate_run(rng, scenario.tests + 1, drift, factors)
        if judge is not judge_with_reference:
            baseline, current = [run[:-1] for run in baseline], current[:-1]
        named = judge(baseline, current)
        if scenario.factor == 1.0 or scenario.whole_suite:
            hits += bool(named)
        else:
            hits += named == {0}
    return hits / runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="simulated runs per cell")
    parser.add_argument("--baseline-runs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--big", action="store_true", help="add the 100- and 1,000-test rows")
    args = parser.parse_args(argv)
    drift = Drift(run_sigma=0.10, test_sigma=0.04)
    scenarios = [Scenario("8 tests, unchanged (false-fail)", 8, 1.0, False),
                 Scenario("8 tests, one test x1.5", 8, 1.5, False),
                 Scenario("8 tests, one test x2", 8, 2.0, False),
                 Scenario("8 tests, whole suite x1.3", 8, 1.3, True),
                 Scenario("8 tests, whole suite x1.5", 8, 1.5, True)]
    if args.big:
        scenarios += [Scenario("100 tests, unchanged (false-fail)", 100, 1.0, False),
                      Scenario("1,000 tests, unchanged (false-fail)", 1000, 1.0, False)]
    rows = []
    for scenario in scenarios:
        row = [scenario.label]
        for judge in (judge_mwu, judge_run_level, judge_with_reference):
            # the old trial-level gate is slow on 1,000 tests, and its answer is clear
            runs = args.runs if scenario.tests <= 100 or judge is not judge_mwu else max(
                200, args.runs // 10)
            value = rate(random.Random(args.seed), judge, scenario, drift,
                         args.baseline_runs, runs)
            low, high = wilson(value, runs)
            row.append(f"{pct(value)} [{pct(low)}, {pct(high)}] (n={runs})")
        rows.append(row)
    print(f"drift: run sigma {drift.run_sigma:.0%}, per-test sigma {drift.test_sigma:.0%}, "
          f"within-run CV {drift.within_cv:.0%}, {TRIALS} trials; run-level baseline "
          f"{args.baseline_runs} runs; threshold {THRESHOLD:.0%}, alpha {DEFAULT_ALPHA}; "
          f"seed {args.seed}")
    print(tabulate(rows, headers=["scenario", "trial MWU, one baseline run (before)",
                                  "run-level gate, no reference",
                                  "run-level gate + reference (default)"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
