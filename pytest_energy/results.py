"""What one measured test produced, and the statistics derived from it.

A result keeps every trial (window) it was computed from, so reports, storage and
later comparisons can recompute or re-judge without re-running anything. It never
invents a number: when the meter could not produce a trustworthy reading the result
is *invalid* with a reason, and its energy fields are ``None``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Trial:
    """One measured window: ``calls`` calls, their latencies, and the meter's deltas."""

    calls: int
    window_s: float
    joules: dict[str, float]  # energy per domain over the whole window
    latencies_ns: list[int] = field(default_factory=list)
    items: float | None = None  # items processed in the whole window, when known
    counted_steps: int | None = None  # counter steps inside the window (aligned plan)
    # (index, size) of the window's phase set (aligned plan, pytest_energy.antialias)
    phase_set: tuple[int, int] | None = None

    @property
    def total_joules(self) -> float:
        return sum(self.joules.values())

    @property
    def joules_per_call(self) -> float:
        return self.total_joules / self.calls


SET_VALUES_FROM = 5
"""Phase-aligned results report one value per whole phase set from this many sets on,
else one per window (see ``EnergyResult._per_call``)."""


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
    # "windows": median over trials of window energy / calls. "phase-aligned": windows
    # aligned to counter steps at stratified phases, pooled (see pytest_energy.antialias).
    plan: str = "windows"
    step_period_s: float | None = None  # measured counter step period (aligned plan)
    lead_in_calls: int = 0  # unmeasured calls that put windows at their phase
    sensor_window_s: float | None = None  # the sensor's averaging window, when declared
    # warm-up until power stops rising: each settle window's watts, and whether it stopped
    # rising before the time cap (None: no settle stage ran)
    settle_watts: list[float] = field(default_factory=list)
    settled: bool | None = None
    settle_s: float = 0.0
    idle_watts: dict[str, float] | None = None  # per domain, when an idle baseline was taken

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
    def valid(self) -> bool:
        if self.plan == "phase-aligned" and not self._aligned_trials():
            return False
        return self.invalid_reason is None and bool(self.trials)

    # ----- energy -----------------------------------------------------------------
    def _per_call(self) -> list[float]:
        """Per-call energy of each trial; for the phase-aligned plan, of each whole
        phase set when there are ``SET_VALUES_FROM`` or more (each samples every part of
        the calls), else of each window (aliased by design: wider, but a regression
        test needs several values; three sets can never be significant)."""
        return [self._pooled(group) if self.plan == "phase-aligned" else
                group[0].joules_per_call for group in self._per_call_trials()]

    def _per_call_trials(self) -> list[list[Trial]]:
        """The trials behind each value of :meth:`_per_call`."""
        if self.plan == "phase-aligned":
            sets = self._aligned_sets()
            return sets if len(sets) >= SET_VALUES_FROM else [
                [t] for t in self._aligned_trials()]
        return [[t] for t in self.trials if t.calls > 0]

    def _aligned_trials(self) -> list[Trial]:
        """The windows the phase-aligned estimate pools: those that counted a step,
        from whole phase sets only (see ``antialias.in_complete_sets``)."""
        from pytest_energy.antialias import in_complete_sets

        keep = in_complete_sets([t.phase_set or (None, 1) for t in self.trials])
        return [t for t, kept in zip(self.trials, keep, strict=True)
                if kept and t.calls > 0 and t.counted_steps]

    def _aligned_sets(self) -> list[list[Trial]]:
        """The pooled windows grouped by phase set (one group per window without a set)."""
        groups: dict[object, list[Trial]] = {}
        for index, trial in enumerate(self._aligned_trials()):
            key: object = trial.phase_set[0] if trial.phase_set else ("window", index)
            groups.setdefault(key, []).append(trial)
        return list(groups.values())

    def _pooled(self, trials: list[Trial]) -> float:
        """Phase-aligned estimate: the calls' mean power over every counted step (each
        sensor sample weighs the same) times the mean call duration."""
        assert self.step_period_s is not None
        steps = sum(t.counted_steps or 0 for t in trials)
        busy = sum(sum(t.latencies_ns) for t in trials) / 1e9
        calls = sum(t.calls for t in trials)
        return sum(t.total_joules for t in trials) / (steps * self.step_period_s) * busy / calls

    @property
    def joules_per_call(self) -> float | None:
        """Median over trials of window energy / calls in the window; for the
        phase-aligned plan, the pooled estimate over all windows (a median of aliased
        windows would not cancel the aliasing)."""
        if not self.valid:
            return None
        if self.plan == "phase-aligned":
            return self._pooled(self._aligned_trials())
        return statistics.median(self._per_call())

    @property
    def aligned_halves_disagreement(self) -> float | None:
        """Relative difference of the pooled estimates over even- and odd-numbered
        whole phase sets: the accuracy check of the phase-aligned plan (its windows
        differ by design, so their CV says nothing; a set samples every part of the
        calls, so two sets should agree). ``None`` with fewer than two sets."""
        if self.plan != "phase-aligned":
            return None
        sets = self._aligned_sets()
        if len(sets) < 2:
            return None
        even = [t for group in sets[0::2] for t in group]
        odd = [t for group in sets[1::2] for t in group]
        first, second = self._pooled(even), self._pooled(odd)
        mean = (first + second) / 2
        return abs(first - second) / mean if mean > 0 else None

    @property
    def joules_per_item(self) -> float | None:
        """Median over trials of window energy / items in the window; for the
        phase-aligned plan, the pooled per-call energy / items per call (its windows'
        energies belong to their counted steps, not to their calls)."""
        if not self.valid:
            return None
        if self.plan == "phase-aligned":
            per_call = self.joules_per_call
            if per_call is None or not self.items_per_call:
                return None
            return per_call / self.items_per_call
        per_item = []
        for trial in self.trials:
            items = trial.items if trial.items is not None else (
                self.items_per_call * trial.calls if self.items_per_call else None)
            if not items:
                return None
            per_item.append(trial.total_joules / items)
        return statistics.median(per_item)

    @property
    def dynamic_joules_per_call(self) -> float | None:
        """Median over trials of (window energy - idle power x window time) / calls.

        ``None`` without an idle baseline. Can be near zero or slightly negative for
        code that draws no more than idle: reported as measured, never clamped.
        """
        if not self.valid or self.idle_watts is None:
            return None
        if self.plan == "phase-aligned":
            return (self.joules_per_call or 0.0) - self._idle_per_call(self._aligned_trials())
        return statistics.median(self.trial_estimates(dynamic=True))

    @property
    def contaminated(self) -> bool:
        return any(c.startswith("contaminated") for c in self.conditions)

    @property
    def joules_spread(self) -> dict[str, float | None] | None:
        """Min, max and coefficient of variation of per-call energy across trials
        (phase-aligned: across whole phase sets, see :meth:`_per_call`). The CV is
        ``None`` when it cannot be judged: a single trial, or a single phase set (its
        windows differ by design). With no whole set (partial coverage), it is the
        windows' own spread: large when the calls have structure the partial set may
        have misjudged."""
        if not self.valid:
            return None
        values = self._per_call()
        mean = statistics.fmean(values)
        cv: float | None = (statistics.stdev(values) / mean
                            if len(values) > 1 and mean > 0 else None)
        if self.plan == "phase-aligned":
            from pytest_energy.antialias import complete_sets

            partial = any(t.phase_set for t in self.trials) and not complete_sets(
                [t.phase_set or (None, 1) for t in self.trials])
            if not partial:  # windows differ by design: judge whole sets (None for one)
                cv = self.aligned_halves_disagreement
        return {"min": min(values), "max": max(values), "cv": cv}

    def joules_per_call_by_domain(self) -> dict[str, float] | None:
        if not self.valid:
            return None
        if self.plan == "phase-aligned":  # the pooled estimate, split by energy share
            total = self.joules_per_call or 0.0
            trials = self._aligned_trials()
            energy = sum(t.total_joules for t in trials)
            return {d: total * sum(t.joules.get(d, 0.0) for t in trials) / energy
                    if energy > 0 else 0.0 for d in self.domains}
        return {
            domain: statistics.median(t.joules.get(domain, 0.0) / t.calls for t in self.trials)
            for domain in self.domains
        }

    def _idle_per_call(self, trials: list[Trial]) -> float:
        """Idle energy attributable to one call of ``trials`` (0 without a baseline)."""
        idle = sum((self.idle_watts or {}).get(d, 0.0) for d in self.domains)
        if self.plan == "phase-aligned":  # the estimate covers the calls' busy time only
            seconds = sum(sum(t.latencies_ns) for t in trials) / 1e9
        else:
            seconds = sum(t.window_s for t in trials)
        return idle * seconds / sum(t.calls for t in trials)

    def trial_estimates(self, dynamic: bool = False) -> list[float]:
        """Per-call energy of each trial (gross, or above idle with ``dynamic``)."""
        if not self.valid:
            return []
        groups = self._per_call_trials()
        values = self._per_call()
        if dynamic:
            values = [v - self._idle_per_call(g) for v, g in zip(values, groups, strict=True)]
        return values

    @property
    def watts(self) -> float | None:
        """Average power over all windows (total energy / total window time); for the
        phase-aligned plan, over the counted counter steps (energy / steps x period)."""
        if not self.valid:
            return None
        if self.plan == "phase-aligned":
            trials = self._aligned_trials()
            steps = sum(t.counted_steps or 0 for t in trials)
            if not steps or self.step_period_s is None:
                return None
            return sum(t.total_joules for t in trials) / (steps * self.step_period_s)
        seconds = sum(t.window_s for t in self.trials)
        return sum(t.total_joules for t in self.trials) / seconds if seconds > 0 else None

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
    def meter_label(self) -> str:
        """e.g. ``"nvml gpu:0"`` or ``"estimate cpu:process (estimated)"``."""
        label = f"{self.meter} {','.join(self.domains)}".strip()
        return f"{label} (estimated)" if self.estimated else label

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready measurement fields (report, xdist transport, storage)."""
        return {
            "joules_per_call": self.joules_per_call,
            "joules_per_item": self.joules_per_item,
            "joules_per_call_by_domain": self.joules_per_call_by_domain(),
            "dynamic_joules_per_call": self.dynamic_joules_per_call,
            "idle_watts": self.idle_watts,
            "conditions": list(self.conditions),
            "contaminated": self.contaminated,
            "joules_spread": self.joules_spread,
            "watts": self.watts,
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
            "plan": self.plan,
            "step_period_s": self.step_period_s,
            "lead_in_calls": self.lead_in_calls,
            "sensor_window_s": self.sensor_window_s,
            "warmup_settle": None if self.settled is None else {
                "settled": self.settled, "seconds": self.settle_s,
                "watts": list(self.settle_watts)},
            "valid": self.valid,
            "invalid_reason": self.invalid_reason,
            "warnings": list(self.warnings),
            "trials": [
                {
                    "calls": t.calls,
                    "window_s": t.window_s,
                    "joules": dict(t.joules),
                    "items": t.items,
                    "latency_ms_median": (statistics.median(t.latencies_ns) / 1e6
                                          if t.latencies_ns else None),
                    "counted_steps": t.counted_steps,
                    "phase_set": None if t.phase_set is None else list(t.phase_set),
                }
                for t in self.trials
            ],
        }
