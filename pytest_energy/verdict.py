"""Budget checks and star ratings: pure functions from a result to a verdict.

A check returns an object that carries its own failure text (one line per exceeded
budget), so the plugin only has to raise it. Two policies can turn a would-be failure
into a reported warning instead:

* **inconclusive** -- the trials' spread (CV) is above ``max_cv`` and the budget lies
  inside the range the trials span: the data cannot tell pass from fail, so the plugin
  says so instead of passing or failing on noise;
* **contaminated** -- other processes used the same GPU during the measurement and
  ``--energy-contention=warn`` (the default): their energy is in the counter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pytest_energy.config import ItemConfig
from pytest_energy.results import EnergyResult
from pytest_energy.units import format_duration_ms, format_energy

RATING_RULE_BUDGET = "budget"
STAR_INTERVALS = 5  # five equal intervals, as in Hugging Face's AI Energy Score


def stars_for_use(use: float) -> int:
    """Stars for a budget use fraction: five equal intervals of [0, budget].

    use <= 20% -> 5 stars, <= 40% -> 4, <= 60% -> 3, <= 80% -> 2, <= 100% -> 1; over
    the budget -> 0 (the test fails). Mirrors the AI Energy Score rule (lowest 20% of
    the range get 5 stars) with the budget as the range.
    """
    if math.isnan(use) or use < 0:
        raise ValueError(f"budget use must be >= 0, got {use}")
    if use > 1.0:
        return 0
    return max(1, STAR_INTERVALS - max(0, math.ceil(round(use * STAR_INTERVALS, 9)) - 1))


def _over(value: float, budget: float) -> str:
    return f"+{(value / budget - 1) * 100:.0f}%"


@dataclass(frozen=True)
class BudgetCheck:
    """The verdict for one result against one test's budgets."""

    failures: tuple[str, ...]
    joules_use: float | None
    latency_use: float | None
    rating: int | None
    rating_rule: str | None
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
    def verdict(self) -> str:
        """Short word for tables: ok, over budget, invalid, inconclusive, measured."""
        if self.invalid:
            return "invalid"
        if self.failures:
            return "over budget"
        if self.waived == "inconclusive":
            return "inconclusive"
        if self.waived == "contaminated":
            return "over budget (contaminated)"
        budgeted = (self.joules_use, self.latency_use, self.item_use)
        return "ok" if any(use is not None for use in budgeted) else "measured"


@dataclass
class _Checker:
    result: EnergyResult
    config: ItemConfig
    failures: list[str] = field(default_factory=list)
    energy_failures: list[str] = field(default_factory=list)
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
            if self._inconclusive(budget, per_trial):
                self.warnings.append(f"inconclusive: {line}, but the trials spread "
                                     f"{format_energy(min(per_trial))} to "
                                     f"{format_energy(max(per_trial))} "
                                     f"(CV {self._cv() * 100:.0f}% > {self.config.max_cv:.0%})")
            else:
                self.energy_failures.append(line)
        elif self._inconclusive(budget, per_trial):
            self.warnings.append(
                f"inconclusive: {format_energy(value)} per {label} is within the "
                f"{format_energy(budget)} budget, but the trials spread "
                f"{format_energy(min(per_trial))} to {format_energy(max(per_trial))} "
                f"(CV {self._cv() * 100:.0f}% > {self.config.max_cv:.0%})")
        return value / budget

    def _cv(self) -> float:
        """The trials' CV; 0 when it cannot be judged (then nothing is inconclusive)."""
        spread = self.result.joules_spread
        return (spread.get("cv") or 0.0) if spread else 0.0

    def _inconclusive(self, budget: float, per_trial: list[float]) -> bool:
        return (len(per_trial) > 1 and self._cv() > self.config.max_cv
                and min(per_trial) <= budget <= max(per_trial))


def check_budgets(result: EnergyResult, config: ItemConfig, *,
                  contention: str = "warn") -> BudgetCheck:
    """Compare ``result`` with the budgets in ``config``."""
    checker = _Checker(result, config)
    dynamic = " (dynamic)" if config.dynamic else ""
    per_call = result.dynamic_joules_per_call if config.dynamic else result.joules_per_call
    trials_per_call = result.trial_estimates(dynamic=config.dynamic)
    joules_use = item_use = latency_use = None
    if config.joules is not None:
        joules_use = checker.energy(f"call{dynamic}", per_call, config.joules, trials_per_call)
    if config.joules_per_item is not None:
        per_item = result.joules_per_item
        items = result.items_per_call
        trials_per_item = [v / items for v in trials_per_call] if items else []
        item_use = checker.energy("item", per_item, config.joules_per_item, trials_per_item)
    if config.latency_ms is not None:
        latency = result.latency(config.latency_stat)
        if latency is None:
            checker.failures.append("latency budget could not be checked: no call was timed")
        else:
            latency_use = latency / config.latency_ms
            if latency > config.latency_ms:
                checker.failures.append(
                    f"latency budget exceeded: {format_duration_ms(latency)} "
                    f"{config.latency_stat} per call > {format_duration_ms(config.latency_ms)} "
                    f"budget ({_over(latency, config.latency_ms)}), {result.calls} calls"
                )
    waived = None
    failures = checker.failures
    if checker.energy_failures and result.contaminated and contention == "warn":
        waived = "contaminated"
        checker.warnings.extend(
            f"not failed: {line} while other processes used the device "
            f"({'; '.join(c for c in result.conditions if c.startswith('contaminated'))}); "
            "--energy-contention=fail makes this a failure" for line in checker.energy_failures)
    else:
        failures = checker.energy_failures + failures
    if waived is None and any(w.startswith("inconclusive") for w in checker.warnings):
        waived = "inconclusive"
    use = joules_use if joules_use is not None else item_use
    rating = stars_for_use(use) if use is not None and use >= 0 else None
    unmeasured = (config.joules is not None or config.joules_per_item is not None) and (
        result.joules_per_call is None)
    return BudgetCheck(
        failures=tuple(failures),
        joules_use=joules_use,
        latency_use=latency_use,
        rating=rating,
        rating_rule=RATING_RULE_BUDGET if rating is not None else None,
        invalid=unmeasured,
        item_use=item_use,
        warnings=tuple(checker.warnings),
        waived=waived,
    )
