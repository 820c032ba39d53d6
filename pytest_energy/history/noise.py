"""A noise model with run-to-run variation: judging a run against several baseline runs.

Why: on a shared runner whole runs move by 10-65% (machine speed, neighbours, clocks)
while trials within a run agree to a few percent, so comparing one run's trials with
another run's trials mistakes the drift between runs for a regression. This model
works from **run-level values** (one number per test and run: its median J/call), so
it needs several baseline runs, and it works with one trial per run.

On log values ``y[r][t]`` (run ``r``, test ``t``) of the baseline runs:

* each run's **common shift** ``S_r`` is the median over tests of ``y[r][t] - mean_t``
  (the machine was slower: every test moved together);
* each test's **own movement** is the rest, ``e[r][t] = y[r][t] - mean_t - S_r``;
* the spread of the shifts and of each test's movements is estimated from the baseline;
  a test's spread is pooled with the suite's (shrunk towards the median spread with
  ``PRIOR_DF`` degrees of freedom), so a short history still gives a usable estimate.

The run under test is decomposed the same way. Its common shift is tested against the
baseline shifts' spread (Student's t, ``n - 1`` degrees of freedom) at ``alpha / 2``;
each test's own movement against its spread, the tests together at ``alpha / 2`` by
Holm's step-down method, so the chance that an unchanged run fails is at most
``alpha`` whatever the number of tests. A test (or the shift)
regresses when it is significant in that family AND beyond the relative threshold.

With fewer than ``MIN_TESTS_FOR_SHIFT`` tests the shift cannot be told from a test's
own movement: each test is then judged on its whole change against its whole
run-to-run spread. With fewer than ``MIN_BASELINE_RUNS`` baseline runs nothing is
judged: the spread was not measured, and a gate must not fail on a model of noise
that was not measured.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_energy.history.tdist import t_critical, t_sf

MIN_BASELINE_RUNS = 3
MIN_TESTS_FOR_SHIFT = 3
PRIOR_DF = 4.0
COMMON_SHIFT = "(common shift of the run)"


@dataclass(frozen=True)
class Movement:
    """One hypothesis of the family: a test's own movement, or the run's common shift."""

    name: str
    change: float  # relative change judged (exp(log change) - 1)
    total_change: float  # relative change against the baseline mean, shift included
    p_value: float
    detectable: float  # smallest relative change that could be significant here
    regressed: bool = False


@dataclass(frozen=True)
class RunJudgement:
    """The verdict on a run: every movement, and what could be judged."""

    baseline_runs: int
    movements: tuple[Movement, ...]
    shift_separated: bool
    note: str | None = None  # why nothing (or less) could be judged

    @property
    def regressed(self) -> list[Movement]:
        return [m for m in self.movements if m.regressed]

    @property
    def shift(self) -> Movement | None:
        return next((m for m in self.movements if m.name == COMMON_SHIFT), None)


def _logs(run: Mapping[str, float]) -> dict[str, float]:
    return {name: math.log(value) for name, value in run.items()
            if value is not None and value > 0 and math.isfinite(value)}


def _shift(deviations: Sequence[float], separate: bool) -> float:
    return statistics.median(deviations) if separate and deviations else 0.0


def _means(runs: Sequence[dict[str, float]], names: Sequence[str]) -> dict[str, float]:
    return {t: statistics.fmean(r[t] for r in runs if t in r) for t in names}


def _own_spreads(runs: Sequence[dict[str, float]], means: Mapping[str, float],
                 shifts: Sequence[float]) -> dict[str, tuple[float, float]]:
    """Each test's spread of its own movements (sigma, degrees of freedom), pooled with
    the suite's median spread so a short history still gives a usable estimate."""
    squares: dict[str, list[float]] = {t: [] for t in means}
    for run, shift in zip(runs, shifts, strict=True):
        for t in means.keys() & run.keys():
            squares[t].append((run[t] - means[t] - shift) ** 2)
    raw = {t: (sum(s) / (len(s) - 1), len(s) - 1.0) for t, s in squares.items() if len(s) >= 2}
    pooled = statistics.median([v for v, _ in raw.values()]) if raw else 0.0
    return {t: (math.sqrt((df * v + PRIOR_DF * pooled) / (df + PRIOR_DF)), df + PRIOR_DF)
            for t, (v, df) in raw.items()}


@dataclass(frozen=True)
class _Baseline:
    """What the baseline runs say: each test's mean and spread, the shifts' spread."""

    runs: int
    means: dict[str, float]
    spreads: dict[str, tuple[float, float]]  # test -> (sigma, degrees of freedom)
    shift_sigma: float

    @classmethod
    def fit(cls, runs: Sequence[dict[str, float]], names: Sequence[str],
            separate: bool) -> _Baseline:
        means = _means(runs, names)
        shifts = [_shift([r[t] - means[t] for t in names if t in r], separate) for r in runs]
        shift_sigma = math.sqrt(sum(s * s for s in shifts) / (len(runs) - 1))
        return cls(len(runs), means, _own_spreads(runs, means, shifts), shift_sigma)


Thresholds = float | Mapping[str, float]


def _for(threshold: Thresholds, name: str) -> float:
    """The relative threshold of one test; the shift's is the median of the tests'."""
    if not isinstance(threshold, Mapping):
        return threshold
    if name in threshold:
        return threshold[name]
    return statistics.median(threshold.values()) if threshold else 0.0


def _detectable(sigma: float, df: float, level: float, threshold: float) -> float:
    """Smallest relative change that is significant at ``level`` and beyond ``threshold``."""
    return max(threshold, math.exp(t_critical(level, df) * sigma) - 1.0)


def _movement(name: str, change: float, total: float, sigma: float, df: float,
              level: float, threshold: float) -> Movement:
    p = 0.5 if sigma <= 0 and change == 0 else (
        t_sf(change / sigma, df) if sigma > 0 else (0.0 if change > 0 else 1.0))
    return Movement(name, math.expm1(change), math.expm1(total), p,
                    _detectable(sigma, df, level, threshold))


def _holm(movements: list[Movement], alpha: float, threshold: Thresholds) -> list[Movement]:
    """Mark the movements that are significant under Holm's method and beyond their
    threshold (a movement under its threshold still takes its place in the order)."""
    order = sorted(range(len(movements)), key=lambda i: movements[i].p_value)
    rejected: set[int] = set()
    for rank, index in enumerate(order):
        if movements[index].p_value > alpha / (len(movements) - rank):
            break
        rejected.add(index)
    return [Movement(m.name, m.change, m.total_change, m.p_value, m.detectable,
                     regressed=i in rejected and m.change >= _for(threshold, m.name))
            for i, m in enumerate(movements)]


def _relative_to(runs: list[dict[str, float]], reference: str | None) -> list[dict[str, float]]:
    """Each run's values over its reference measurement (the reference itself dropped);
    runs without the reference are left out."""
    if reference is None:
        return runs
    return [{t: v - run[reference] for t, v in run.items() if t != reference}
            for run in runs if reference in run]


def judge_run(baseline: Sequence[Mapping[str, float]], current: Mapping[str, float], *,
              threshold: Thresholds = 0.10, alpha: float = 0.01,
              reference: str | None = None,
              current_noise: Mapping[str, float] | None = None) -> RunJudgement:
    """Judge ``current`` (test -> run-level value) against ``baseline`` runs (the same).

    ``threshold`` is the smallest relative increase that counts (0.10 = 10%), or one
    per test (the common shift then takes the median of them); ``alpha``
    the chance, per run, that an unchanged run fails. ``reference`` names a workload
    that no code change touches (measured in every run): values are then taken
    relative to it, which removes the machine's drift from the common shift, so a
    whole-suite regression can be told from a slower machine. ``current_noise`` gives,
    per test, the relative standard error of this run's own value (from its trials'
    spread): a run noisier than its baseline is judged with that noise added, so one
    noisy run cannot pass for a regression.
    """
    runs = _relative_to([_logs(run) for run in baseline], reference)
    current_runs = _relative_to([_logs(current)], reference)
    now = current_runs[0] if current_runs else {}
    names = sorted(t for t in now if sum(t in r for r in runs) >= 2)
    if len(runs) < MIN_BASELINE_RUNS or not names:
        return RunJudgement(len(runs), (), False, note=_too_few_runs(len(runs)))
    separate = len(names) >= MIN_TESTS_FOR_SHIFT
    fit = _Baseline.fit(runs, names, separate)
    movements = _movements(fit, {t: now[t] - fit.means[t] for t in names}, separate,
                           threshold, alpha, current_noise or {})
    return RunJudgement(fit.runs, tuple(movements), separate)


def _movements(fit: _Baseline, deviations: Mapping[str, float], separate: bool,
               threshold: Thresholds, alpha: float, noise: Mapping[str, float]
               ) -> list[Movement]:
    """The tests' own movements (Holm at alpha/2) and the common shift (at alpha/2).

    Alpha is split between the shift and the tests (Bonferroni), so a whole-suite
    regression is not diluted by the number of tests."""
    shift = _shift(list(deviations.values()), separate)
    test_alpha = alpha / 2 if separate else alpha
    level = test_alpha / len(deviations)  # Holm's worst case, for "detects >= x%"
    inflate = math.sqrt(1.0 + 1.0 / fit.runs)
    movements = _holm([_movement(t, change - shift, change,
                                 math.hypot(fit.spreads[t][0] * inflate, noise.get(t, 0.0)),
                                 fit.spreads[t][1], level, _for(threshold, t))
                       for t, change in deviations.items()], test_alpha, threshold)
    if separate:
        movements += _holm([_movement(COMMON_SHIFT, shift, shift, fit.shift_sigma * inflate,
                                      fit.runs - 1.0, alpha / 2, _for(threshold, COMMON_SHIFT))],
                           alpha / 2, threshold)
    return movements


def _too_few_runs(runs: int) -> str:
    return (f"the baseline holds {runs} run{'s' if runs != 1 else ''}: at least "
            f"{MIN_BASELINE_RUNS} are needed to measure the run-to-run spread, so nothing "
            "is failed; save more runs under the same name")
