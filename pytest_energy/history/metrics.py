"""What the compare verdict measures: the metrics and the ``--energy-compare-fail`` thresholds.

A metric has a headline value per test (the median the reports show) and a value per
trial (the samples the significance test ranks); a threshold says how much worse a
metric may get before it counts. Both are pure functions of an :class:`Entry`, so the
plugin, the ``pytest-energy`` CLI and ``bench/verdicts.py`` judge alike.

This module is cheap to import (the option parsers use it on every pytest run): no
SQLite, no statistics beyond :mod:`math`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_energy.entry import Entry, TrialRecord
from pytest_energy.errors import EnergyConfigError
from pytest_energy.report.cells import duration, energy
from pytest_energy.units import parse_duration_ms, parse_energy

DEFAULT_FAIL = "joules:10%"
DEFAULT_ALPHA = 0.01

# ----- metrics --------------------------------------------------------------------------


def _trial_joules_per_call(entry: Entry, trial: TrialRecord) -> float | None:
    if trial.calls <= 0 or not trial.joules:
        return None
    return float(sum(trial.joules.values())) / trial.calls


def _trial_joules_per_item(entry: Entry, trial: TrialRecord) -> float | None:
    items = trial.items
    if items is None and entry.items:
        items = float(entry.items) * trial.calls
    if not items or not trial.joules:
        return None
    return float(sum(trial.joules.values())) / float(items)


def _trial_latency(entry: Entry, trial: TrialRecord) -> float | None:
    value = trial.latency_ms_median
    return None if value is None else float(value)


def _entry_latency(entry: Entry) -> float | None:
    value = entry.latency("median")
    return None if value is None else float(value)


def _entry_joules_per_call(entry: Entry) -> float | None:
    value = entry.joules_per_call
    return None if value is None else float(value)


def _entry_joules_per_item(entry: Entry) -> float | None:
    value = entry.joules_per_item
    return None if value is None else float(value)


@dataclass(frozen=True)
class Metric:
    """A compared quantity: its headline value per test and its value per trial."""

    name: str
    unit: str  # "J" or "ms": the unit of an absolute threshold
    label: str
    value: Callable[[Entry], float | None]
    per_trial: Callable[[Entry, TrialRecord], float | None]

    def trial_values(self, entry: Entry) -> list[float]:
        """The finite per-trial values: the samples the U test ranks."""
        values = []
        for trial in entry.trials:
            value = self.per_trial(entry, trial)
            if value is not None and math.isfinite(value):
                values.append(value)
        return values

    def format(self, value: float | None) -> str:
        """``1.2 mJ`` or ``3.4 ms`` in this metric's unit; ``-`` for None."""
        return duration(value) if self.unit == "ms" else energy(value)


METRICS: dict[str, Metric] = {
    "joules": Metric("joules", "J", "J/call", _entry_joules_per_call, _trial_joules_per_call),
    "joules_per_item": Metric("joules_per_item", "J", "J/item", _entry_joules_per_item,
                              _trial_joules_per_item),
    "latency_ms": Metric("latency_ms", "ms", "latency", _entry_latency, _trial_latency),
}

# ----- thresholds (--energy-compare-fail) ------------------------------------------------

_EXPR = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.+?)\s*$")
_OFF = ("none", "off", "no", "false", "0")
FAIL_HELP = ("comma-separated METRIC:N% (relative) or METRIC:+X (absolute, J or ms, units "
             "allowed: joules:+50mJ, latency_ms:+2ms); metrics: " + ", ".join(METRICS)
             + "; or none (compare and report, never fail)")


@dataclass(frozen=True)
class Threshold:
    """``joules:10%`` (relative=0.10) or ``joules:+0.5`` (absolute=0.5 J)."""

    metric: str
    relative: float | None = None
    absolute: float | None = None

    @property
    def text(self) -> str:
        """The threshold as the user writes it (parses back to an equal Threshold)."""
        if self.relative is not None:
            return f"{self.metric}:{self.relative * 100:g}%"
        return f"{self.metric}:+{self.absolute:g}"

    def exceeded(self, baseline: float, current: float) -> bool:
        """True when ``current`` is worse than ``baseline`` by more than the threshold."""
        if self.relative is not None:
            return baseline > 0 and (current - baseline) / baseline > self.relative
        assert self.absolute is not None
        return current - baseline > self.absolute

    def bettered(self, baseline: float, current: float) -> bool:
        """True when ``current`` is better than ``baseline`` by more than the threshold."""
        return self.exceeded(current, baseline) if self.relative is None else (
            baseline > 0 and (baseline - current) / baseline > self.relative)


def parse_compare_fail(value: object, *, argument: str = "compare_fail") -> tuple[Threshold, ...]:
    """Parse ``--energy-compare-fail``: ``joules:10%,latency_ms:+2ms`` or ``none``.

    Shared by the plugin option and ``pytest-energy compare --fail``. An empty tuple
    means "compare and report, never fail".
    """
    if isinstance(value, (tuple, list)) and all(isinstance(t, Threshold) for t in value):
        return tuple(value)
    if not isinstance(value, str) or not value.strip():
        raise EnergyConfigError(f"{argument}={value!r} is not valid: expected {FAIL_HELP}")
    if value.strip().lower() in _OFF:
        return ()
    thresholds: list[Threshold] = []
    for part in value.split(","):
        if not part.strip():
            raise EnergyConfigError(
                f"{argument}={value!r} is not valid: empty expression between commas")
        thresholds.append(_parse_one(part, value, argument))
    return tuple(thresholds)


def _parse_one(part: str, whole: str, argument: str) -> Threshold:
    """One ``METRIC:LIMIT`` term; every mistake names the term and the fix."""
    match = _EXPR.match(part)
    if not match:
        raise EnergyConfigError(
            f"{argument}={whole!r} is not valid: {part.strip()!r} is not METRIC:LIMIT; "
            f"expected {FAIL_HELP}")
    name, limit = match.group(1).lower(), match.group(2)
    metric = _known_metric(name, whole, argument)
    if limit.endswith("%"):
        return Threshold(name, relative=_percentage(limit, part, whole, argument))
    if limit.startswith("+"):
        parse = parse_duration_ms if metric.unit == "ms" else parse_energy
        try:
            amount = parse(limit[1:].strip(), argument=f"{name} threshold")
        except EnergyConfigError as exc:
            raise EnergyConfigError(f"{argument}={whole!r} is not valid: {exc}") from None
        return Threshold(name, absolute=amount)
    raise EnergyConfigError(
        f"{argument}={whole!r} is not valid: {part.strip()!r}: write {name}:10% for a "
        f"relative threshold or {name}:+0.5 for an absolute one (in {metric.unit})")


def _known_metric(name: str, whole: str, argument: str) -> Metric:
    """The metric called ``name``, or an error with the closest known name."""
    if name not in METRICS:
        close = difflib.get_close_matches(name, list(METRICS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EnergyConfigError(
            f"{argument}={whole!r} is not valid: unknown metric {name!r}{hint}; "
            f"use one of {', '.join(METRICS)}")
    return METRICS[name]


def _percentage(limit: str, part: str, whole: str, argument: str) -> float:
    """``10%`` -> 0.10; a percentage must be a finite number above 0."""
    try:
        percent = float(limit[:-1])
    except ValueError:
        percent = math.nan
    if not (math.isfinite(percent) and percent > 0):
        raise EnergyConfigError(
            f"{argument}={whole!r} is not valid: {part.strip()!r} needs a percentage "
            "> 0, e.g. joules:10%")
    return percent / 100.0


def format_thresholds(thresholds: Sequence[Threshold]) -> str:
    """``joules:10%,latency_ms:+2`` or ``none``: how messages name the rule."""
    return ",".join(t.text for t in thresholds) or "none"


def default_thresholds() -> tuple[Threshold, ...]:
    """The thresholds of ``--energy-compare-fail`` when it is not given."""
    return parse_compare_fail(DEFAULT_FAIL)


def parse_alpha(value: object, *, argument: str = "compare_alpha") -> float:
    """Significance level of the U test: a number in (0, 0.5]."""
    try:
        alpha = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        alpha = math.nan
    if isinstance(value, bool) or not (0 < alpha <= 0.5):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a significance level in (0, 0.5], "
            f"e.g. {DEFAULT_ALPHA}")
    return alpha
