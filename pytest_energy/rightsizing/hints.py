"""Hints: short nudges at the end of the run, each backed by a number measured in it.

A hint is printed only when the run itself shows the waste (a sibling variant using
several times the energy, a budget so loose it would not catch a doubling, a GPU
drawing a fraction of its power limit); where the number needed is unknown (no items,
no power limit) the hint says nothing rather than guess. Every threshold is here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.report.cells import energy, percent
from pytest_energy.rightsizing.base import (
    PER_ITEM,
    RightsizingOptions,
    completed,
    finite,
)

#: Sibling hint: a variant using at least this many times the energy per item of the
#: group's recommended (or, when none meets its latency budget, most efficient)
#: variant. 3x is far outside run-to-run noise even for the estimate meter (whose
#: spread over 15 calibration runs of the examples stayed under 2.5x min-to-max).
SIBLING_FACTOR = 3.0
#: Loose-budget hint: a test using less than this fraction of its energy budget has a
#: budget that would not notice its energy doubling; a budget at ~2x use catches that.
LOOSE_BUDGET_USE = 0.25
#: GPU hint: average power in the measured windows below this fraction of the board's
#: power limit means the GPU mostly waited (launch overhead, tiny kernels): a larger
#: batch usually does more work for little extra energy.
GPU_UNDERUSE = 0.30
#: How many tests one hint names before it says "and N more".
MAX_NAMED = 3


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else "")


def _short(nodeid: str) -> str:
    """The test's name without its file (hints stay one readable line)."""
    return nodeid.split("::", 1)[-1]


def _heavy(rows: Sequence[Mapping[str, Any]], best: float) -> list[str]:
    """The rows using >= SIBLING_FACTOR x ``best``, heaviest first, as the hint names them."""
    heavy = sorted((r for r in rows if r["metric_value"] >= SIBLING_FACTOR * best),
                   key=lambda r: -r["metric_value"])
    return [f"{r['variant']}{' (default)' if r['default'] else ''} "
            f"{r['metric_value'] / best:.2g}x" for r in heavy]


def _sibling_hint(table: Mapping[str, Any]) -> str | None:
    """The variants of one table using >= SIBLING_FACTOR x the energy per item of the
    recommended (else the most efficient) variant; None when there are none."""
    if table["metric"] != PER_ITEM:
        return None  # per call, a batch of 32 and a batch of 1 are not the same job
    rows = table["variants"]
    recommended = next((r for r in rows if r["recommended"]), None)
    reference = recommended or min(rows, key=lambda r: r["metric_value"])
    best = reference["metric_value"]
    named = _heavy(rows, best) if best > 0 else []
    if not named:
        return None
    if recommended is None:
        why, advice = "most efficient, over its latency budget", ""
    else:
        why, advice = "recommended", f"; switch to {reference['variant']} where the latency allows"
    return (f"{table['title']}: energy per item vs {reference['variant']} "
            f"({energy(best, table['estimated'])}/item, {why}): {_names(named)}{advice}")


def _loosest_use(entry: Entry) -> float | None:
    """The larger of the test's energy budget uses (joules, per item) when under
    LOOSE_BUDGET_USE and the test completed; None otherwise."""
    if not entry.is_measured or not completed(entry):
        return None
    uses = [u for u in (finite(entry.budget_use.joules), finite(entry.budget_use.joules_per_item))
            if u is not None]
    return max(uses) if uses and max(uses) < LOOSE_BUDGET_USE else None


def _loose_budget_hint(entries: Sequence[Entry]) -> list[str]:
    """One hint naming the tests whose energy budget use is under LOOSE_BUDGET_USE."""
    loose = sorted((use, _short(entry.nodeid)) for entry in entries
                   if (use := _loosest_use(entry)) is not None)
    if not loose:
        return []
    named = [f"{nodeid} {percent(use)}" for use, nodeid in loose]
    many = len(loose) > 1
    return [f"{len(loose)} test{'s use' if many else ' uses'} under "
            f"{LOOSE_BUDGET_USE:.0%} of {'their' if many else 'its'} energy budget "
            f"({_names(named)}): a budget at ~2x the measured use would catch a regression "
            "that doubles energy; tighten it (the ratchet, --energy-suggest-budgets, "
            "prints one)"]


def _power_limit(entry: Entry) -> float | None:
    """The board power limit in W, summed over the test's GPUs; None when any is unknown."""
    if not entry.power_limit_w:
        return None
    values = [finite(v) for v in entry.power_limit_w.values()]
    return None if None in values else sum(v for v in values if v is not None)


def _gpu_use(entry: Entry) -> tuple[float, str] | None:
    """(fraction of the power limit, how the hint names it) for a GPU test averaging
    under GPU_UNDERUSE of its limit; None when it does not, or the limit is unknown."""
    if not entry.is_measured or entry.estimated or not (entry.device or "").startswith("cuda"):
        return None
    watts, limit = finite(entry.watts), _power_limit(entry)
    if watts is None or limit is None or limit <= 0 or watts >= GPU_UNDERUSE * limit:
        return None  # power limit unknown: no claim
    return watts / limit, (f"{_short(entry.nodeid)} {watts:.3g} W of {limit:.3g} W "
                           f"({percent(watts / limit)})")


def _gpu_hints(entries: Sequence[Entry]) -> list[str]:
    """GPU tests averaging under GPU_UNDERUSE of the power limit (needs ``power_limit_w``)."""
    low = sorted(use for entry in entries if (use := _gpu_use(entry)) is not None)
    if not low:
        return []
    return [f"GPU likely under-utilised: {_names([text for _, text in low])} average power "
            f"in the measured windows, under {GPU_UNDERUSE:.0%} of the power limit: try a "
            "larger batch (more items per call for little extra energy)"]


def hints(entries: Sequence[Entry], tables: Sequence[Mapping[str, Any]],
          options: RightsizingOptions) -> list[str]:
    """Short nudges, each backed by a number measured in this run ([] with hints off).

    * sibling: in a right-sizing table compared per item, variants using at least
      :data:`SIBLING_FACTOR` x the energy per item of the recommended variant (or of
      the most efficient one when none meets its latency budget);
    * loose budget: tests that completed using under :data:`LOOSE_BUDGET_USE` of their
      joules or joules-per-item budget (one hint naming the loosest);
    * GPU: tests on ``cuda`` measured by a hardware meter whose average power in the
      windows (``watts``) is under :data:`GPU_UNDERUSE` of ``power_limit_w`` (the
      meter's ``power_limits_w()``, summed over the test's GPUs); no hint when the
      power limit is unknown.
    """
    if not options.hints:
        return []
    siblings = [hint for table in tables if (hint := _sibling_hint(table)) is not None]
    return [*siblings, *_loose_budget_hint(entries), *_gpu_hints(entries)]
