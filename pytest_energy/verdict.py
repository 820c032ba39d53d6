"""Budget checks and star ratings: pure functions from a result to a verdict.

A check returns an object that carries its own failure text (one line per exceeded
budget), so the plugin only has to attach it to the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    if budget == 0:
        return "over a zero budget"
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

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def message(self) -> str:
        return "\n".join(self.failures)

    @property
    def verdict(self) -> str:
        """Short word for tables: ok, over budget, invalid, measured (no budget)."""
        if self.invalid:
            return "invalid"
        if self.failures:
            return "over budget"
        budgeted = (self.joules_use, self.latency_use, self.item_use)
        return "ok" if any(use is not None for use in budgeted) else "measured"


def check_budgets(result: EnergyResult, config: ItemConfig) -> BudgetCheck:
    """Compare ``result`` with the budgets in ``config``."""
    failures: list[str] = []
    joules_use = latency_use = item_use = None
    rating = None
    jpc = result.joules_per_call
    if config.joules is not None:
        if jpc is None:
            failures.append(
                "energy budget could not be checked: "
                f"{result.invalid_reason or 'nothing was measured'}"
            )
        else:
            joules_use = jpc / config.joules if config.joules > 0 else math.inf
            rating = stars_for_use(joules_use)
            if jpc > config.joules:
                failures.append(
                    f"energy budget exceeded: {format_energy(jpc)} per call > "
                    f"{format_energy(config.joules)} budget ({_over(jpc, config.joules)}), "
                    f"{result.meter_label}, {len(result.trials)} trials"
                )
    if config.joules_per_item is not None:
        jpi = result.joules_per_item
        if jpi is None:
            failures.append(
                "energy-per-item budget could not be checked: "
                f"{result.invalid_reason or 'no items per call given (items=...)'}"
            )
        else:
            item_use = jpi / config.joules_per_item
            if rating is None:  # a joules-per-call budget, when present, rates the test
                rating = stars_for_use(item_use)
            if jpi > config.joules_per_item:
                failures.append(
                    f"energy budget exceeded: {format_energy(jpi)} per item > "
                    f"{format_energy(config.joules_per_item)} budget "
                    f"({_over(jpi, config.joules_per_item)}), {result.meter_label}, "
                    f"{len(result.trials)} trials"
                )
    if config.latency_ms is not None:
        latency = result.latency(config.latency_stat)
        if latency is None:
            failures.append("latency budget could not be checked: no call was timed")
        else:
            latency_use = latency / config.latency_ms if config.latency_ms > 0 else math.inf
            if latency > config.latency_ms:
                failures.append(
                    f"latency budget exceeded: {format_duration_ms(latency)} "
                    f"{config.latency_stat} per call > {format_duration_ms(config.latency_ms)} "
                    f"budget ({_over(latency, config.latency_ms)}), {result.calls} calls"
                )
    return BudgetCheck(
        failures=tuple(failures),
        joules_use=joules_use,
        latency_use=latency_use,
        rating=rating,
        item_use=item_use,
        rating_rule=RATING_RULE_BUDGET if rating is not None else None,
        invalid=(config.joules is not None or config.joules_per_item is not None) and jpc is None,
    )
