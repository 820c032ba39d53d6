"""The per-test entry: one typed record of what a test measured and how it was judged.

An entry is built on the process that ran the test, travels to the pytest-xdist
controller as ``to_json()`` on the pytest report, and is read back with ``from_json()``.
The terminal summary, the JSON report, markdown, junitxml, the regression gate and the
history all read entries, never live objects, and never by string key: the JSON form
exists only at the edges (the report file, the history database, the xdist wire).

``from_json`` accepts entries written by older versions (missing keys take their
defaults), so a history saved before a field existed still loads.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

BUSY_PREFIX = "busy:"
"""How a busy-machine condition starts (see :mod:`pytest_energy.measure.busy`); defined
here so the reports and the history read it without the measuring code."""


class JsonEnum(str, enum.Enum):
    """A str enum that prints and compares as its JSON spelling."""

    def __str__(self) -> str:
        return str(self.value)


class Verdict(JsonEnum):
    """A test's energy verdict, as the JSON report spells it."""

    OK = "ok"
    OVER_BUDGET = "over budget"
    OVER_BUDGET_CONTAMINATED = "over budget (contaminated)"
    INCONCLUSIVE = "inconclusive"
    INVALID = "invalid"
    MEASURED = "measured"
    NOT_MEASURED = "not measured"
    INTERRUPTED = "interrupted"


class Outcome(JsonEnum):
    """The test's pytest outcome, as the JSON report spells it."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    XPASSED = "xpassed"
    INTERRUPTED = "interrupted"


class Plan(JsonEnum):
    """How the windows were laid out (see :mod:`pytest_energy.measure`)."""

    WINDOWS = "windows"
    PHASE_ALIGNED = "phase-aligned"


class RatingRule(JsonEnum):
    """Which rule gave a test its stars."""

    BUDGET = "budget"  # budget use, five equal intervals of [0, budget]
    GROUP = "group"  # place in its group's measured range


def _enum_or_none(kind: type[enum.Enum], value: Any) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:  # a value written by a newer version: keep it, never crash
        return value


@dataclass(frozen=True)
class Budget:
    """The budgets the test declared (None where it declared none)."""

    joules: float | None = None
    joules_per_item: float | None = None
    latency_ms: float | None = None
    latency_stat: str | None = None


@dataclass(frozen=True)
class BudgetUse:
    """Measured value / budget for each declared budget (1.0 = exactly at the budget)."""

    joules: float | None = None
    latency: float | None = None
    joules_per_item: float | None = None


@dataclass(frozen=True)
class Spread:
    """Min, max and CV of the per-call energy values (CV None: cannot be judged)."""

    min: float
    max: float
    cv: float | None


@dataclass(frozen=True)
class AccuracyRecord:
    """How sure the energy estimate is: ``relative``, the half-width of its ~95%
    interval as a share of the estimate (``None``: not checked), and its ``basis``."""

    checked: bool
    relative: float | None = None
    basis: str = ""


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds."""

    median: float
    p95: float | None = None  # None only in entries written without it
    mean: float | None = None
    min: float | None = None
    max: float | None = None

    def stat(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class Settle:
    """The warm-up settle stage: whether power stopped rising, how long it took."""

    settled: bool
    seconds: float
    watts: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrialRecord:
    """One measured window, as kept in the report and the history."""

    calls: int
    window_s: float
    joules: Mapping[str, float]
    items: float | None = None
    latency_ms_median: float | None = None
    counted_steps: int | None = None
    phase_set: tuple[int, int] | None = None

    @property
    def total_joules(self) -> float:
        return sum(self.joules.values())

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "window_s": self.window_s, "joules": dict(self.joules),
                "items": self.items, "latency_ms_median": self.latency_ms_median,
                "counted_steps": self.counted_steps,
                "phase_set": None if self.phase_set is None else list(self.phase_set)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        phase = data.get("phase_set")
        return cls(calls=int(data.get("calls") or 0), window_s=float(data.get("window_s") or 0),
                   joules={str(k): float(v) for k, v in (data.get("joules") or {}).items()},
                   items=data.get("items"), latency_ms_median=data.get("latency_ms_median"),
                   counted_steps=data.get("counted_steps"),
                   phase_set=None if phase is None else (int(phase[0]), int(phase[1])))


def _nested(kind: type[Any], data: Mapping[str, Any]) -> Any:
    """A nested record from its JSON form; None when a required field is missing."""
    names = {spec.name for spec in dataclasses.fields(kind)}
    try:
        return kind(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None


_NESTED: dict[str, type[Any]] = {
    "budget": Budget, "budget_use": BudgetUse, "joules_spread": Spread,
    "accuracy": AccuracyRecord,
    "latency_ms": LatencyStats, "warmup_settle": Settle,
}
_ENUMS: dict[str, type[enum.Enum]] = {
    "verdict": Verdict, "outcome": Outcome, "plan": Plan, "rating_rule": RatingRule,
}
_TUPLES = ("conditions", "domains", "warnings", "failures", "verdict_warnings")


@dataclass(frozen=True)
class Entry:
    """Everything the reports, the gate and the history know about one test."""

    nodeid: str
    outcome: Outcome | None = None
    partial: bool = False
    # ----- the measurement (None / empty when nothing was measured) -------------------
    joules_per_call: float | None = None
    joules_per_item: float | None = None
    joules_per_call_by_domain: Mapping[str, float] | None = None
    dynamic_joules_per_call: float | None = None
    idle_watts: Mapping[str, float] | None = None
    conditions: tuple[str, ...] = ()
    contaminated: bool = False
    # other processes' CPU use while measuring (measure.busy: foreign_cpus, busy, ...)
    machine_load: Mapping[str, Any] | None = None
    joules_spread: Spread | None = None
    accuracy: AccuracyRecord | None = None
    watts: float | None = None
    power_limit_w: Mapping[str, float | None] | None = None  # per domain, when known
    latency_ms: LatencyStats | None = None
    calls: int = 0
    warmup_calls: int = 0
    items: float | None = None  # items per call
    estimated: bool | None = None
    meter: str | None = None
    domains: tuple[str, ...] = ()
    device: str | None = None
    update_period_s: float | None = None
    meter_note: str | None = None
    lock_wait_s: float = 0.0
    plan: Plan | None = None
    step_period_s: float | None = None
    lead_in_calls: int = 0
    sensor_window_s: float | None = None
    warmup_settle: Settle | None = None
    valid: bool = False
    invalid_reason: str | None = None
    warnings: tuple[str, ...] = ()
    trials: tuple[TrialRecord, ...] = ()
    trials_reason: str | None = None  # how many trials the plan gave, and why
    # ----- the test's declarations ---------------------------------------------------
    budget: Budget = field(default_factory=Budget)
    group: str | None = None
    group_explicit: bool = False
    variant: str | None = None
    default_variant: bool = False
    fixture: bool = False
    # ----- the verdict -----------------------------------------------------------------
    budget_use: BudgetUse = field(default_factory=BudgetUse)
    rating: int | None = None
    rating_rule: RatingRule | None = None
    verdict: Verdict | None = None
    failures: tuple[str, ...] = ()
    verdict_warnings: tuple[str, ...] = ()
    problem: str | None = None
    # ----- set once the run's groups are known (see pytest_energy.rightsizing) -------
    budget_rating: int | None = None
    wh_per_1000_items: float | None = None
    group_rank: int | None = None
    group_size: int | None = None
    rating_metric: str | None = None

    def replace(self, **changes: Any) -> Entry:
        return dataclasses.replace(self, **changes)

    def with_outcome(self, outcome: str) -> Entry:
        """This entry with the pytest outcome as the JSON report spells it."""
        return self.replace(outcome=_enum_or_none(Outcome, outcome))

    @property
    def is_measured(self) -> bool:
        """A valid energy measurement that may be compared and ranked: never a null
        read as 0 J, never an invalid, skipped or unmeasured test."""
        return (self.joules_per_call is not None and math.isfinite(self.joules_per_call)
                and self.joules_per_call >= 0 and self.valid and bool(self.trials)
                and self.verdict not in (Verdict.INVALID, Verdict.NOT_MEASURED)
                and self.outcome != Outcome.SKIPPED)

    @property
    def busy_causes(self) -> list[str]:
        """What made the machine busy while measuring (empty when it was quiet)."""
        return [c[len(BUSY_PREFIX):].strip() for c in self.conditions
                if c.startswith(BUSY_PREFIX)]

    def latency(self, stat: str) -> float | None:
        return None if self.latency_ms is None else self.latency_ms.stat(stat)

    @property
    def meter_label(self) -> str:
        """e.g. ``"nvml gpu:0"`` or ``"estimate cpu:process (estimated)"``."""
        label = f"{self.meter or ''} {','.join(self.domains)}".strip()
        return f"{label} (estimated)" if self.estimated else label

    # ----- the JSON edge ----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The JSON form (report file, history, xdist wire); enums as their strings."""
        data: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif spec.name == "trials":
                value = [trial.to_json() for trial in value]
            elif spec.name == "warmup_settle" and value is not None:
                value = {"settled": value.settled, "seconds": value.seconds,
                         "watts": list(value.watts)}
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)  # type: ignore[arg-type]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            data[spec.name] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        """An entry from its JSON form; unknown keys are ignored, missing ones default."""
        known = {spec.name for spec in dataclasses.fields(cls)}
        values = {name: _field_from_json(name, value) for name, value in data.items()
                  if name in known}
        if "nodeid" not in values:
            raise ValueError("an energy entry needs a 'nodeid'")
        if "valid" not in data:  # written before the key existed: valid when it has a number
            values["valid"] = data.get("joules_per_call") is not None
        return cls(**values)


def _settle_from_json(value: Any) -> Settle | None:
    if not isinstance(value, Mapping):
        return None
    return Settle(bool(value.get("settled")), float(value.get("seconds") or 0),
                  tuple(value.get("watts") or ()))


def _nested_from_json(name: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return _nested(_NESTED[name], value)
    return _NESTED[name]() if name in ("budget", "budget_use") else None


def _field_from_json(name: str, value: Any) -> Any:
    """One field of :class:`Entry` from its JSON value."""
    if name in _ENUMS:
        return _enum_or_none(_ENUMS[name], value)
    converter = _CONVERTERS.get(name)
    if converter is not None:
        return converter(value)
    if name in _NESTED:
        return _nested_from_json(name, value)
    return tuple(value or ()) if name in _TUPLES else value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "trials": lambda value: tuple(TrialRecord.from_json(t) for t in value or ()),
    "warmup_settle": _settle_from_json,
}
