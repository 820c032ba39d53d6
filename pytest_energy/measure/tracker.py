"""The counter's step times while a test measures: re-anchored on steps seen by polling,
its period refitted from them, and a guard sized to how far the steps wander.

The session times the counter's period once (:meth:`MeterReader.step_period`); that
estimate may be off (polling under CPU contention) and real counters jitter. A plan
that trusted it for a whole test would miscount steps and read nothing or nonsense, so
between blocks the tracker polls for a fresh step whenever its anchor is old or the
steps have been seen to wander, refits the period over every step it has seen (a
least-squares line over many periods), and widens the guard that keeps reads away from
steps. The refitted period replaces the session's at the end of the test.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from pytest_energy.measure.grid import StepGrid
from pytest_energy.measure.reader import MeterReader, default_guard, step_resolution

REANCHOR_PERIODS = 8
"""Poll for a fresh step when the anchor is older than this many periods. Each poll
costs up to a period or two of waiting, and a refitted period keeps the grid within a
fraction of a millisecond over this span; steps seen to wander are polled for before
every block instead."""
FIT_MIN_SPAN = 4
"""Refit the period only over observations at least this many periods apart (steps seen
to a fraction of a millisecond fix it to well under 0.1% over 0.4 s)."""
MAX_GUARD_SHARE = 0.2
"""The guard never exceeds this share of the period."""


@dataclass
class StepTracker:
    """The step grid of one test, kept current (see the module doc)."""

    reader: MeterReader
    grid: StepGrid
    observations: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    resolution_s: float = 0.0  # how precisely the latest anchor was seen

    @classmethod
    def start(cls, reader: MeterReader, grid: StepGrid) -> StepTracker:
        return cls(reader, grid, [grid.ref_s])

    @property
    def period_s(self) -> float:
        return self.grid.period_s

    @property
    def wander_s(self) -> float:
        """How far seen steps fell from where the grid expected them (recent worst)."""
        return max((abs(r) for r in self.residuals[-8:]), default=0.0)

    @property
    def guard_s(self) -> float:
        """How far reads keep from expected steps: the default, or twice the wander."""
        guard = max(default_guard(self.period_s), 2 * self.wander_s,
                    1.5 * self.resolution_s)
        return min(guard, MAX_GUARD_SHARE * self.period_s)

    def refresh(self, force: bool = False) -> bool:
        """Poll for a fresh step when the anchor is stale, steps wander, or ``force``;
        ``False`` when the counter stopped stepping."""
        age = self.reader.seconds() - self.grid.ref_s
        # steps that wander more than their anchors' blur explains are re-anchored
        # before every block; a blur from slow reads alone is not wander (polling
        # before every block once cost most of a test's time when reads took 2 ms)
        steady = self.wander_s <= default_guard(self.period_s) / 2 + self.resolution_s
        if steady and age < REANCHOR_PERIODS * self.period_s and not force:
            return True
        seen = self.reader.poll_step(self.period_s)
        if seen is None:
            return False
        self.resolution_s = seen.resolution_s
        self._observe(seen.time_s, precise=seen.resolution_s <= step_resolution(
            self.period_s))
        return True

    def _observe(self, time_s: float, *, precise: bool = True) -> None:
        """Re-anchor on a step seen at ``time_s``; only precisely seen steps refit the
        period (steps blurred by 2 ms reads once tilted the fit by 1%, and a 1.1 s
        block then counted a step too many)."""
        expected = self.grid.ref_s + round((time_s - self.grid.ref_s) / self.period_s) * (
            self.period_s)
        self.residuals.append(time_s - expected)
        if precise:
            self.observations.append(time_s)
        self.grid = StepGrid(time_s, self._fitted_period())

    def _fitted_period(self) -> float:
        """Least-squares period over the steps seen (they are whole periods apart)."""
        period = self.grid.period_s
        first = self.observations[0]
        if self.observations[-1] - first < FIT_MIN_SPAN * period:
            return period
        indices = [round((t - first) / period) for t in self.observations]
        mean_k = statistics.fmean(indices)
        mean_t = statistics.fmean(self.observations)
        spread = sum((k - mean_k) ** 2 for k in indices)
        if spread <= 0:
            return period
        slope = sum((k - mean_k) * (t - mean_t)
                    for k, t in zip(indices, self.observations, strict=True)) / spread
        return slope if 0.9 * period < slope < 1.1 * period else period

    def missed(self) -> None:
        """An expected step did not come: the steps wander more than the guard allows."""
        self.residuals.append(2 * self.guard_s)

    def save_period(self) -> None:
        """Hand a refitted period back to the session (later tests start from it)."""
        if len(self.observations) >= 3:
            self.reader.remember_period(self.period_s)
