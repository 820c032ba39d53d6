"""What every part of right-sizing shares: the options, the vocabulary, and the
questions asked of one entry (did it complete? does it meet its budgets?).

Vocabulary:

* **group**: ``entry.group``, the ``group=`` marker argument or, by default, the test
  function's name without its parametrization. The members of a group are the ways
  of doing one job (``test_predict[batch1-fp32]``, ``test_predict[batch32-bf16]``...).
* **comparable set**: the members of a group that have a valid measurement
  (:attr:`Entry.is_measured <pytest_energy.entry.Entry.is_measured>`) *by the same
  meter* (same ``meter`` and ``estimated`` flag). Energies from different meters
  measure different things (a GPU board vs a CPU package vs a CPU-time model), so
  they are never ranked against each other: a group measured by two meters is split
  into two sets, each titled ``group (meter)``.
* **metric**: energy per item (``joules_per_item``) when every member of the set knows
  its items per call, else energy per call. Per item is what makes a batch of 32 and
  a batch of 1 comparable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_energy.entry import Entry, Outcome, Verdict
from pytest_energy.parsers import RATING_RULE_AUTO

#: Joules in one watt-hour. AI Energy Score reports Wh per 1,000 queries.
J_PER_WH = 3600.0
#: Items per "per 1,000 items" figure (AI Energy Score's unit of work).
ITEMS_PER_LABEL = 1000

#: The two metrics a comparable set can be ranked by, as the entry names them, and
#: their short labels in tables (``rating_metric``).
PER_ITEM, PER_CALL = "joules_per_item", "joules_per_call"
METRIC_LABEL = {PER_ITEM: "J/item", PER_CALL: "J/call"}

#: Outcomes after which a measured body is known to have run to completion. A test
#: that failed (or xfailed) only on its energy or latency budget also did, which its
#: verdict "over budget" says (budgets are judged only after the body passed).
_COMPLETED_OUTCOMES = (None, Outcome.PASSED, Outcome.XPASSED)

#: A comparable set's key: (group, meter, estimated).
SetKey = tuple[str, str, bool]


@dataclass(frozen=True)
class RightsizingOptions:
    """Resolved right-sizing settings (the plugin builds it from the options table).

    The defaults are usable as they are, so pure callers (tests, report tools) can
    build one without a pytest config.
    """

    carbon_intensity: float | None = None  # gCO2e per kWh; None = not shown
    price: float | None = None  # currency per kWh; None = not shown
    currency: str = ""
    rating_rule: str = RATING_RULE_AUTO
    hints: bool = True


def finite(value: float | None) -> float | None:
    """The value as a float when it is a finite number, else None: a NaN or an infinity
    read back from a report is never ranked, summed or printed as a number."""
    return float(value) if value is not None and math.isfinite(value) else None


def completed(entry: Entry) -> bool:
    """True when the measured body ran to completion (so the variant does its job).

    A test that failed on an assertion did not; one that failed (or xfailed) only on
    a budget did: its verdict is "over budget", which is judged after the body passed.
    """
    if entry.outcome in _COMPLETED_OUTCOMES:
        return True
    return (entry.outcome in (Outcome.FAILED, Outcome.XFAILED)
            and entry.verdict == Verdict.OVER_BUDGET)


def meets_latency_budget(entry: Entry) -> bool:
    """True when the entry has no latency budget or its latency is within it."""
    limit = finite(entry.budget.latency_ms)
    if limit is None:
        return True
    use = finite(entry.budget_use.latency)
    if use is not None:
        return use <= 1.0
    value = finite(entry.latency(entry.budget.latency_stat or "median"))
    return value is not None and value <= limit


def meets_budgets(entry: Entry) -> bool:
    """True when every budget the test has (joules, J/item, latency) is met."""
    if entry.verdict in (Verdict.OVER_BUDGET, Verdict.INVALID):
        return False
    uses = (entry.budget_use.joules, entry.budget_use.latency, entry.budget_use.joules_per_item)
    return all(use is None or use <= 1.0 for use in map(finite, uses))


def wh_per_1000_items(joules_per_item: float | None) -> float | None:
    """Wh per 1,000 items (AI Energy Score's unit) from joules per item."""
    return None if joules_per_item is None else joules_per_item * ITEMS_PER_LABEL / J_PER_WH


def entry_wh_per_1000_items(entry: Entry) -> float | None:
    """A test's Wh per 1,000 items: the value the run set (``wh_per_1000_items``), else
    from its joules per item."""
    wh = finite(entry.wh_per_1000_items)
    return wh if wh is not None else wh_per_1000_items(finite(entry.joules_per_item))


#: How many names one note or line lists before "and N more": a group of 300 variants
#: must not print a 1,500-character note (the JSON report keeps every variant's row).
MAX_NAMED = 5


def names(items: Sequence[str], limit: int = MAX_NAMED) -> str:
    """``a, b, c, d, e and 295 more``: at most ``limit`` names, then how many more."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def natural_key(text: str) -> list[tuple[int, int, str]]:
    """Sort "batch8" before "batch32": digits compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", text) if part]


def set_key(entry: Entry) -> SetKey:
    """The comparable set an entry belongs to (see the module doc)."""
    return entry.group or entry.nodeid or "?", entry.meter or "?", bool(entry.estimated)


def comparable_sets(entries: Iterable[Entry]) -> dict[SetKey, list[Entry]]:
    """Measured entries by (group, meter, estimated), members in natural nodeid order."""
    sets: dict[SetKey, list[Entry]] = {}
    for entry in entries:
        if entry.is_measured:
            sets.setdefault(set_key(entry), []).append(entry)
    for members in sets.values():
        members.sort(key=lambda e: natural_key(e.nodeid))
    return sets


def metric_of(members: Sequence[Entry]) -> str:
    """Per item when every member knows its items, else per call (see module doc)."""
    if all(finite(m.joules_per_item) is not None for m in members):
        return PER_ITEM
    return PER_CALL


def metric_value(entry: Entry, metric: str) -> float:
    """The number ``entry`` is ranked by; only for members of a comparable set."""
    value = finite(entry.joules_per_item if metric == PER_ITEM else entry.joules_per_call)
    assert value is not None  # members were chosen by is_measured / metric_of
    return value
