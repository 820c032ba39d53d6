"""What one measured test produced, and the statistics derived from it.

A result keeps every trial (window) it was computed from, so reports, storage and
later comparisons can recompute or re-judge without re-running anything. It never
invents a number: when the meter could not produce a trustworthy reading the result
is *invalid* with a reason, and its energy fields are ``None``. The energy statistics
come from the plan's strategy (:mod:`pytest_energy.measure.statistics`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pytest_energy.entry import BUSY_PREFIX, Plan
from pytest_energy.measure.busy import CpuUsage
from pytest_energy.measure.sampling import Accuracy
from pytest_energy.measure.statistics import STATISTICS, EnergyStats, PlanStatistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Measured(NamedTuple):
    """What a plan that could measure returns: the measured code's last value."""

    value: Any


@dataclass
class Trial:
    """One measured window: ``calls`` calls, their latencies, and the meter's deltas."""

    calls: int
    window_s: float
    joules: dict[str, float]  # energy per domain over the whole window
    latencies_ns: list[int] = field(default_factory=list)
    items: float | None = None  # items processed in the whole window, when known
    counted_steps: int | None = None  # counter steps inside the window (aligned plan)
    # (index, size) of the window's phase set, and its phase as a fraction of the
    # unit (aligned plan, see measure.sampling)
    phase_set: tuple[int, int] | None = None
    phase: float | None = None
    # where its one counted step fell within a unit, timed by the calls (short units)
    position: float | None = None

    @property
    def total_joules(self) -> float:
        return sum(self.joules.values())

    @property
    def joules_per_call(self) -> float:
        return self.total_joules / self.calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "window_s": self.window_s,
            "joules": dict(self.joules),
            "items": self.items,
            "latency_ms_median": (statistics.median(self.latencies_ns) / 1e6
                                  if self.latencies_ns else None),
            "counted_steps": self.counted_steps,
            "phase_set": None if self.phase_set is None else list(self.phase_set),
        }


@dataclass
class EnergyResult:
    """The measurement of one test (or of what its ``energy`` fixture measured)."""

    meter: str
    estimated: bool
    domains: list[str]
    device: str
    trials: list[Trial] = field(default_factory=list)
    warmup_calls: int = 0
    items_per_call: float | None = None
    invalid_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    update_period_s: float = 0.0
    meter_note: str | None = None  # e.g. why auto fell back to estimates
    lock_wait_s: float = 0.0  # time spent waiting for another process's measurement
    conditions: list[str] = field(default_factory=list)  # "contaminated: ...", "shared: ..."
    # how the windows were laid out; it picks the statistics (measure.statistics)
    plan: Plan = Plan.WINDOWS
    step_period_s: float | None = None  # measured counter step period (aligned plan)
    lead_in_calls: int = 0  # unmeasured calls that put windows at their phase
    sensor_window_s: float | None = None  # the sensor's averaging window, when declared
    # warm-up until power stops rising: each settle window's watts, and whether it stopped
    # rising before the time cap (None: no settle stage ran)
    settle_watts: list[float] = field(default_factory=list)
    settled: bool | None = None
    settle_s: float = 0.0
    idle_watts: dict[str, float] | None = None  # per domain, when an idle baseline was taken
    # the meter's enforced power limit per domain (None: the meter does not declare one)
    power_limit_w: dict[str, float | None] | None = None
    # other processes' CPU use and steal over the measured parts (None: /proc unreadable)
    cpu_usage: CpuUsage | None = None
    # how many trials the plan gave and why, one sentence (see measure.windows.TrialCount)
    trials_reason: str | None = None
    # share of a long-call block's span sampled once more or less than the rest (the
    # aligned plan's lattice, measure.sampling.lattice): a systematic error bound
    sampling_residual: float = 0.0

    def __post_init__(self) -> None:
        self.plan = Plan(self.plan)

    # ----- counts -----------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Measured calls (warm-up excluded)."""
        return sum(t.calls for t in self.trials)

    @property
    def total_calls(self) -> int:
        """Every call of the measured code, warm-up and lead-ins included."""
        return self.calls + self.warmup_calls + self.lead_in_calls

    @property
    def _statistics(self) -> PlanStatistics:
        return STATISTICS[Plan(self.plan)]

    @property
    def valid(self) -> bool:
        return (self.invalid_reason is None and bool(self.trials)
                and bool(self._statistics.usable(self)))

    # ----- energy -----------------------------------------------------------------
    def statistics(self) -> EnergyStats | None:
        """Every energy statistic at once (``None`` for an invalid result)."""
        return self._statistics.compute(self) if self.valid else None

    @property
    def joules_per_call(self) -> float | None:
        """Per-call energy: the median over windows, or the phase-aligned pool."""
        stats = self.statistics()
        return None if stats is None else stats.joules_per_call

    @property
    def joules_per_item(self) -> float | None:
        stats = self.statistics()
        return None if stats is None else stats.joules_per_item

    @property
    def dynamic_joules_per_call(self) -> float | None:
        """Per-call energy above idle power. ``None`` without an idle baseline. Can be
        near zero or slightly negative for code that draws no more than idle: reported
        as measured, never clamped."""
        stats = self.statistics()
        return None if stats is None else stats.dynamic_joules_per_call

    @property
    def joules_spread(self) -> dict[str, float | None] | None:
        """Min, max and coefficient of variation of the per-call values. The CV is
        ``None`` when it cannot be judged (a single trial, or a single phase set)."""
        stats = self.statistics()
        return None if stats is None else stats.spread

    def joules_per_call_by_domain(self) -> dict[str, float] | None:
        stats = self.statistics()
        return None if stats is None else stats.by_domain

    @property
    def watts(self) -> float | None:
        """Average power over the measured windows (or over the counted steps)."""
        stats = self.statistics()
        return None if stats is None else stats.watts

    def trial_estimates(self, dynamic: bool = False) -> list[float]:
        """Per-call energy of each trial (gross, or above idle with ``dynamic``)."""
        stats = self.statistics()
        if stats is None:
            return []
        if dynamic:
            return [v - i for v, i in zip(stats.values, stats.idle_values, strict=True)]
        return list(stats.values)

    @property
    def contaminated(self) -> bool:
        return any(c.startswith("contaminated") for c in self.conditions)

    @property
    def busy(self) -> bool:
        """Other processes used a meaningful share of the CPUs (see measure.busy)."""
        return any(c.startswith(BUSY_PREFIX) for c in self.conditions)

    @property
    def machine_load(self) -> dict[str, Any] | None:
        """Other processes' CPU use while measuring, as the JSON report has it."""
        return None if self.cpu_usage is None else self.cpu_usage.to_dict()

    def add_cpu_usage(self, usage: CpuUsage | None) -> None:
        """Add one measured part's CPU use and restate the ``busy:`` condition over
        all parts so far (several ``energy.measure()`` blocks add up)."""
        if usage is None:
            return
        self.cpu_usage = usage if self.cpu_usage is None else self.cpu_usage + usage
        self.conditions[:] = [c for c in self.conditions if not c.startswith(BUSY_PREFIX)]
        condition = self.cpu_usage.condition()
        if condition is not None:
            self.conditions.append(condition)

    # ----- latency ----------------------------------------------------------------
    @property
    def latency_ms(self) -> dict[str, float] | None:
        samples = [ns / 1e6 for t in self.trials for ns in t.latencies_ns]
        if not samples:
            return None
        return {
            "median": statistics.median(samples),
            "p95": percentile(samples, 95),
            "mean": statistics.fmean(samples),
            "min": min(samples),
            "max": max(samples),
        }

    def latency(self, stat: str) -> float | None:
        stats = self.latency_ms
        return None if stats is None else stats[stat]

    @property
    def accuracy(self) -> Accuracy | None:
        """How sure the energy estimate is (``None`` when there is none)."""
        stats = self.statistics()
        return None if stats is None else stats.accuracy

    @property
    def meter_label(self) -> str:
        """e.g. ``"nvml gpu:0"`` or ``"estimate cpu:process (estimated)"``."""
        label = f"{self.meter} {','.join(self.domains)}".strip()
        return f"{label} (estimated)" if self.estimated else label

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready measurement fields (report, xdist transport, storage)."""
        stats = self.statistics()
        return {
            **_stats_fields(stats),
            "idle_watts": self.idle_watts,
            "conditions": list(self.conditions),
            "contaminated": self.contaminated,
            "machine_load": self.machine_load,
            "power_limit_w": None if self.power_limit_w is None else dict(self.power_limit_w),
            "latency_ms": self.latency_ms,
            "calls": self.calls,
            "warmup_calls": self.warmup_calls,
            "items": self.items_per_call,
            "estimated": self.estimated,
            "meter": self.meter,
            "domains": list(self.domains),
            "device": self.device,
            "update_period_s": self.update_period_s,
            "meter_note": self.meter_note,
            "lock_wait_s": self.lock_wait_s,
            "plan": Plan(self.plan).value,
            "step_period_s": self.step_period_s,
            "lead_in_calls": self.lead_in_calls,
            "sensor_window_s": self.sensor_window_s,
            "warmup_settle": None if self.settled is None else {
                "settled": self.settled, "seconds": self.settle_s,
                "watts": list(self.settle_watts)},
            "valid": self.valid,
            "invalid_reason": self.invalid_reason,
            "warnings": list(self.warnings),
            "trials": [t.to_dict() for t in self.trials],
            "trials_reason": self.trials_reason,
        }


def _stats_fields(stats: EnergyStats | None) -> dict[str, Any]:
    """The JSON fields a valid result's statistics fill (all null for an invalid one)."""
    if stats is None:
        return dict.fromkeys(("joules_per_call", "joules_per_item",
                              "joules_per_call_by_domain", "dynamic_joules_per_call",
                              "joules_spread", "watts", "accuracy"))
    return {"joules_per_call": stats.joules_per_call, "joules_per_item": stats.joules_per_item,
            "joules_per_call_by_domain": stats.by_domain,
            "dynamic_joules_per_call": stats.dynamic_joules_per_call,
            "joules_spread": stats.spread, "watts": stats.watts,
            "accuracy": stats.accuracy.to_dict()}
