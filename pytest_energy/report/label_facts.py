"""What an energy label shows, as text and numbers: the facts of one entry, apart from
their drawing (:mod:`pytest_energy.report.label`), so any renderer shows the same.

The stars are the entry's ``rating`` as its run decided it (never recomputed); the
figure is Wh per 1,000 items (AI Energy Score's unit), per 1,000 calls when the test
declared no items; the hardware is what the meter description names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_energy.entry import Entry, RatingRule, Verdict
from pytest_energy.rightsizing.base import (
    entry_wh_per_1000_items,
    finite,
    wh_per_1000_items,
)
from pytest_energy.rightsizing.carbon import format_wh

#: Domains a CPU-side meter reads: their hardware is the machine's CPU.
_CPU_DOMAINS = ("cpu", "package", "core", "uncore", "dram", "psys")


@dataclass(frozen=True)
class LabelFacts:
    """What one label shows, as text and numbers (no layout): built from an entry by
    :meth:`of`, so another renderer (the HTML report's table) can show the same facts."""

    name: str
    wh_per_1000: float | None  # Wh per 1,000 of ``per``
    per: str  # "items" or "calls" (the test declared no items)
    rating: int | None  # the entry's stars, as decided at the end of its run
    rating_note: str
    hardware: str
    meter: str
    estimated: bool
    date: str
    accuracy: float | None = None  # relative half-width of the ~95% interval

    @classmethod
    def of(cls, entry: Entry, *, date: str = "", meter: Mapping[str, Any] | None = None,
           machine: Mapping[str, Any] | None = None,
           hardware: str | None = None) -> LabelFacts:
        """The facts of ``entry``; ``hardware`` given wins over what ``meter`` (the JSON
        report's or a stored run's ``meter`` dict) and ``machine`` say."""
        wh, per = energy_per_1000(entry)
        accuracy = entry.accuracy.relative if entry.accuracy is not None else None
        return cls(name=entry.nodeid, wh_per_1000=wh, per=per, rating=entry.rating,
                   rating_note=rating_note(entry),
                   hardware=hardware if hardware is not None
                   else hardware_text(entry, meter, machine),
                   meter=entry.meter_label.replace(" (estimated)", "") or "unknown meter",
                   estimated=bool(entry.estimated), date=date_text(date),
                   accuracy=finite(accuracy))

    @property
    def figure(self) -> str:
        """``"0.333 mWh"`` (the terminal's per-1k format, with a proper micro sign)."""
        return re.sub(r" uWh$", " \u00b5Wh", format_wh(self.wh_per_1000))

    @property
    def per_text(self) -> str:
        if self.per == "items":
            return "per 1,000 items"
        return "per 1,000 calls (the test declared no items)"

    @property
    def summary(self) -> str:
        """One line for a tooltip or a screen reader."""
        stars = "not rated" if self.rating is None else f"{self.rating} of 5 stars"
        kind = "estimated" if self.estimated else "measured"
        return (f"{self.name}: {self.figure} {self.per_text}, {stars}; {kind} by "
                f"{self.meter} on {self.hardware}" + (f", {self.date}" if self.date else ""))


def label_problem(entry: Entry) -> str | None:
    """Why ``entry`` cannot have a label (None when it can): only a valid measurement
    has an energy figure to show."""
    if entry.is_measured:
        return None
    reason = entry.invalid_reason or entry.problem or entry.trials_reason
    what = str(entry.verdict or entry.outcome or "not measured")
    return f"{entry.nodeid} has no valid measurement ({what}" + (
        f": {reason})" if reason else ")")


def energy_per_1000(entry: Entry) -> tuple[float | None, str]:
    """Wh per 1,000 items, or per 1,000 calls when the test declared no items: the
    entry's own ``wh_per_1000_items`` when the run set it, else from its joules."""
    wh = entry_wh_per_1000_items(entry)
    if wh is not None:
        return wh, "items"
    return wh_per_1000_items(finite(entry.joules_per_call)), "calls"


def rating_note(entry: Entry) -> str:
    """How the stars were given (the rule differs per test, so the label says which)."""
    if entry.verdict in (Verdict.OVER_BUDGET, Verdict.OVER_BUDGET_CONTAMINATED):
        return "over its energy budget"
    if entry.rating is None:
        return "not rated (no budget, no group to rank in)"
    if entry.rating_rule == RatingRule.GROUP:
        rank = (f", {entry.group_rank} of {entry.group_size}"
                if entry.group_rank and entry.group_size else "")
        metric = f" by {entry.rating_metric}" if entry.rating_metric else ""
        return f"within group {entry.group or '?'}{rank}{metric}"
    return "by budget use (least energy: 5 stars)"


def _devices(described: Any) -> list[Mapping[str, Any]]:
    """The devices one ``meter["used"]`` value describes (NVML lists them)."""
    details = described.get("details") if isinstance(described, Mapping) else None
    devices = details.get("devices") if isinstance(details, Mapping) else None
    return [d for d in devices if isinstance(d, Mapping)] if isinstance(devices, list) else []


def _gpu_names(entry: Entry, meter: Mapping[str, Any] | None) -> list[str]:
    """Model names of the devices ``entry``'s meter read (NVML describes them)."""
    used = (meter or {}).get("used")
    names: list[str] = []
    for described in used.values() if isinstance(used, Mapping) else ():
        if isinstance(described, Mapping) and described.get("name") == entry.meter:
            names += [str(device["name"]) for device in _devices(described)
                      if device.get("name") and (not entry.domains
                                                 or device.get("domain") in entry.domains)]
    return names


def counted(names: Iterable[str]) -> str:
    """``2 x NVIDIA A100, NVIDIA L4``: each distinct name once, in first-seen order."""
    order: dict[str, int] = {}
    for name in names:
        order[name] = order.get(name, 0) + 1
    return ", ".join(f"{n} x {name}" if n > 1 else name for name, n in order.items())


def _host(machine: Mapping[str, Any] | None) -> str:
    """The machine's CPU model, else its system and architecture ("" when unknown)."""
    machine = machine or {}
    cpu = machine.get("cpu_model") or machine.get("processor")
    if cpu:
        return str(cpu)
    return " ".join(str(part) for part in (machine.get("system"), machine.get("machine"))
                    if part)


def hardware_text(entry: Entry, meter: Mapping[str, Any] | None = None,
                  machine: Mapping[str, Any] | None = None) -> str:
    """The hardware the energy is of: the GPU models NVML named for the entry's
    domains; else the machine's CPU (RAPL and the estimate read the CPU; a custom
    meter's device is unknown, so the host is named as the host)."""
    gpus = _gpu_names(entry, meter)
    if gpus:
        return counted(gpus)
    host = _host(machine)
    if not host:
        return entry.device or "unknown hardware"
    cpu_side = all(d.split(":")[0].startswith(_CPU_DOMAINS) for d in entry.domains)
    return host if cpu_side and entry.domains else f"{entry.device or 'device'} on {host}"


def date_text(created: str) -> str:
    """``2024-06-01`` from an ISO timestamp (a label shows the day); other text as is."""
    created = created.strip()
    return created[:10] if re.match(r"\d{4}-\d\d-\d\d", created) else created
