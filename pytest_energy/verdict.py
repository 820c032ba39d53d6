"""Budget checks and star ratings: pure functions from a result to a verdict.

A check returns an object that carries its own failure text (one line per exceeded
budget), so the plugin only has to raise it. Two policies can turn a would-be failure
into a reported warning instead:

* **inconclusive** -- the trials' spread (CV) is above ``max_cv`` and the budget lies
  inside the range the trials span: the data cannot tell pass from fail, so the plugin
  says so instead of passing or failing on noise;
* **contaminated** -- other processes used the same GPU during the measurement and
  ``--energy-contention=warn`` (the default): their energy is in the counter;
* **machine busy** -- other processes kept the CPUs busy while measuring (a ``busy:``
  condition, see :mod:`pytest_energy.measure.busy`) and ``--energy-contention=warn``:
  an exceeded energy *or latency* budget is an ``inconclusive: machine busy: ...``
  warning (verdict ``inconclusive``), since a neighbour slows every call and adds its
  energy to a whole-device counter. A busy neighbour must never fail a passing change;
  ``--energy-contention=fail`` enforces instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_energy.config import ItemConfig
from pytest_energy.entry import BUSY_PREFIX, Plan, RatingRule, Verdict
from pytest_energy.measure import EnergyResult
from pytest_energy.stars import stars_for_use
from pytest_energy.units import format_duration_ms, format_energy


def _over(value: float, budget: float) -> str:
    return f"+{(value / budget - 1) * 100:.0f}%"


@dataclass(frozen=True)
class BudgetCheck:
    """The verdict for one result against one test's budgets."""

    failures: tuple[str, ...]
    joules_use: float | None
    latency_use: float | None
    rating: int | None
    rating_rule: RatingRule | None
    invalid: bool = False
    item_use: float | None = None
    warnings: tuple[str, ...] = ()
    waived: str | None = None  # "inconclusive" or "contaminated" when failures were waived

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def message(self) -> str:
        return "\n".join(self.failures)

    @property
    def verdict(self) -> Verdict:
        """Short word for tables: ok, over budget, invalid, inconclusive, measured."""
        if self.invalid:
            return Verdict.INVALID
        if self.failures:
            return Verdict.OVER_BUDGET
        if self.waived == "inconclusive":
            return Verdict.INCONCLUSIVE
        if self.waived == "contaminated":
            return Verdict.OVER_BUDGET_CONTAMINATED
        budgeted = (self.joules_use, self.latency_use, self.item_use)
        return Verdict.OK if any(use is not None for use in budgeted) else Verdict.MEASURED


@dataclass
class _Checker:
    result: EnergyResult
    config: ItemConfig
    failures: list[str] = field(default_factory=list)
    energy_failures: list[str] = field(default_factory=list)
    latency_failures: list[str] = field(default_factory=list)  # also in ``failures``
    warnings: list[str] = field(default_factory=list)

    def energy(self, label: str, value: float | None, budget: float,
               per_trial: list[float]) -> float | None:
        """Check one energy budget; returns the use fraction, or None if unmeasured."""
        if value is None:
            reason = self.result.invalid_reason or (
                "no items per call given (items=...)" if label == "item" else
                "no idle baseline (needs a hardware meter and energy_idle_baseline=true)"
                if "dynamic" in label else "nothing was measured")
            what = "energy-per-item" if label == "item" else "energy"
            self.failures.append(f"{what} budget could not be checked: {reason}")
            return None
        if value > budget:
            line = (f"energy budget exceeded: {format_energy(value)} per {label} > "
                    f"{format_energy(budget)} budget ({_over(value, budget)}), "
                    f"{self.result.meter_label}, {len(self.result.trials)} trials")
            why = self._inconclusive(value, budget, per_trial)
            if why is not None:
                self.warnings.append(f"inconclusive: {line}, but {why}")
            else:
                self.energy_failures.append(line)
        elif (why := self._inconclusive(value, budget, per_trial)) is not None:
            self.warnings.append(
                f"inconclusive: {format_energy(value)} per {label} is within the "
                f"{format_energy(budget)} budget, but {why}")
        return value / budget

    def _cv(self) -> float:
        """The trials' CV; 0 when it cannot be judged (then nothing is inconclusive)."""
        spread = self.result.joules_spread
        return (spread.get("cv") or 0.0) if spread else 0.0

    def _inconclusive(self, value: float, budget: float,
                      per_trial: list[float]) -> str | None:
        """Why the budget cannot be judged (``None`` when it can): the trials spread
        across it (plain windows), or it lies inside the error bar of a phase-aligned
        result (whose windows differ by design, so their spread says nothing)."""
        if (len(per_trial) > 1 and self._cv() > self.config.max_cv
                and min(per_trial) <= budget <= max(per_trial)):
            return (f"the trials spread {format_energy(min(per_trial))} to "
                    f"{format_energy(max(per_trial))} (CV {self._cv() * 100:.0f}% > "
                    f"{self.config.max_cv:.0%})")
        accuracy = self.result.accuracy
        if (self.result.plan is Plan.PHASE_ALIGNED and accuracy is not None
                and accuracy.relative is not None
                and abs(value - budget) <= accuracy.relative * value):
            return f"the budget is inside the {accuracy.text()}"
        return None


def _latency_use(checker: _Checker) -> float | None:
    """Check the latency budget; returns its use fraction, or None when unchecked."""
    config, result = checker.config, checker.result
    if config.latency_ms is None:
        return None
    latency = result.latency(config.latency_stat)
    if latency is None:
        checker.failures.append("latency budget could not be checked: no call was timed")
        return None
    if latency > config.latency_ms:
        line = (f"latency budget exceeded: {format_duration_ms(latency)} "
                f"{config.latency_stat} per call > {format_duration_ms(config.latency_ms)} "
                f"budget ({_over(latency, config.latency_ms)}), {result.calls} calls")
        checker.failures.append(line)
        checker.latency_failures.append(line)
    return latency / config.latency_ms


def _energy_uses(checker: _Checker) -> tuple[float | None, float | None]:
    """Check the per-call and per-item energy budgets: (joules use, item use)."""
    config, result = checker.config, checker.result
    dynamic = " (dynamic)" if config.dynamic else ""
    per_call = result.dynamic_joules_per_call if config.dynamic else result.joules_per_call
    trials_per_call = result.trial_estimates(dynamic=config.dynamic)
    joules_use = item_use = None
    if config.joules is not None:
        joules_use = checker.energy(f"call{dynamic}", per_call, config.joules, trials_per_call)
    if config.joules_per_item is not None:
        items = result.items_per_call
        trials_per_item = [v / items for v in trials_per_call] if items else []
        item_use = checker.energy("item", result.joules_per_item, config.joules_per_item,
                                  trials_per_item)
    return joules_use, item_use


def _busy_cause(result: EnergyResult) -> str:
    """What the ``busy:`` conditions say, without the keyword ('' when not busy)."""
    return "; ".join(c[len(BUSY_PREFIX):].strip() for c in result.conditions
                     if c.startswith(BUSY_PREFIX))


def _waive_contaminated(checker: _Checker) -> str | None:
    """Exceeded energy budgets of a contaminated result become warnings."""
    result = checker.result
    if not (checker.energy_failures and result.contaminated):
        return None
    found = "; ".join(c for c in result.conditions if c.startswith("contaminated"))
    checker.warnings.extend(
        f"not failed: {line} while other processes used the device ({found}); "
        "--energy-contention=fail makes this a failure" for line in checker.energy_failures)
    checker.energy_failures.clear()
    return "contaminated"


EXPECTED = "expected"
"""The contention policy of a test that expects its budget failure (xfail): like
``fail``, nothing is waived, since waiving would turn xfail(strict) into an XPASS."""


def _waive_busy(checker: _Checker, contention: str) -> str | None:
    """Exceeded energy and latency budgets measured on a busy machine become
    ``inconclusive: machine busy`` warnings (under ``fail`` they stand, with a note)."""
    cause = _busy_cause(checker.result)
    exceeded = checker.energy_failures + checker.latency_failures
    if not (cause and exceeded):
        return None
    if contention != "warn":
        why = ("the test expects it (xfail)" if contention == EXPECTED
               else "--energy-contention=fail")
        checker.warnings.append(f"measured while the machine was busy ({cause}); the "
                                f"failure stands because {why}: rerun on a quiet machine")
        return None
    checker.warnings.extend(
        f"inconclusive: machine busy: {line}; {cause}; not failed: rerun on a quiet "
        "machine, or --energy-contention=fail to enforce" for line in exceeded)
    checker.energy_failures.clear()
    checker.failures[:] = [f for f in checker.failures if f not in checker.latency_failures]
    return "inconclusive"


def _waive(checker: _Checker, contention: str) -> tuple[list[str], str | None]:
    """The failures that stand, and why any were waived (contaminated, inconclusive)."""
    contaminated = _waive_contaminated(checker) if contention == "warn" else None
    busy = _waive_busy(checker, contention)  # after: it may waive latency failures too
    waived = contaminated or busy
    failures = checker.energy_failures + checker.failures
    if waived:
        return failures, waived
    if any(w.startswith("inconclusive") for w in checker.warnings):
        return failures, "inconclusive"
    return failures, None


def check_budgets(result: EnergyResult, config: ItemConfig, *,
                  contention: str = "warn") -> BudgetCheck:
    """Compare ``result`` with the budgets in ``config``."""
    checker = _Checker(result, config)
    joules_use, item_use = _energy_uses(checker)
    latency_use = _latency_use(checker)
    failures, waived = _waive(checker, contention)
    use = joules_use if joules_use is not None else item_use
    rating = stars_for_use(use) if use is not None and use >= 0 else None
    unmeasured = (config.joules is not None or config.joules_per_item is not None) and (
        result.joules_per_call is None)
    return BudgetCheck(
        failures=tuple(failures),
        joules_use=joules_use,
        latency_use=latency_use,
        rating=rating,
        rating_rule=RatingRule.BUDGET if rating is not None else None,
        invalid=unmeasured,
        item_use=item_use,
        warnings=tuple(checker.warnings),
        waived=waived,
    )
