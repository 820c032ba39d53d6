"""The per-test "energy" report section (shown with failures, or with ``-rA``) and the
flat numbers junitxml records for a test.

Both are rendered from the test's final entry, after the run's ratings are decided,
so the stars here are the stars of the summary (see :mod:`pytest_energy.session`).
"""

from __future__ import annotations

from pytest_energy.entry import BUSY_PREFIX, Entry, Plan, RatingRule
from pytest_energy.report.cells import duration, stars
from pytest_energy.report.summary import budget_use_cell
from pytest_energy.units import format_duration_ms, format_energy

LOCK_WAIT_REPORTED_S = 0.001
"""Taking a free lock costs microseconds; only a real wait for another process counts."""


def _how_pooled(entry: Entry) -> str:
    trials = entry.trials
    if entry.plan != Plan.PHASE_ALIGNED:
        return f"median of {len(trials)} trial{'' if len(trials) == 1 else 's'};"
    sets = {t.phase_set for t in trials if t.phase_set}
    plural = "s" if len(sets) != 1 else ""
    per = "set" if len(sets) >= 2 else "window"
    return (f"pooled over {len(trials)} phase-aligned windows in {len(sets)} phase "
            f"set{plural}; per {per}")


def _energy_lines(entry: Entry) -> list[str]:
    if entry.joules_per_call is None:
        reason = entry.invalid_reason
        return [f"energy: not measured: {reason}"] if reason else []
    spread = entry.joules_spread
    low, high, cv = (spread.min, spread.max, spread.cv) if spread else (None, None, None)
    cv_text = "CV n/a" if cv is None else f"CV {cv * 100:.1f}%"
    est = " (estimated)" if entry.estimated else ""
    lines = [f"energy: {format_energy(entry.joules_per_call)} per call ({_how_pooled(entry)} "
             f"min {format_energy(low)}, max {format_energy(high)}, {cv_text}), meter "
             f"{entry.meter} {','.join(entry.domains)}{est}"]
    if entry.joules_per_item is not None:
        lines.append(f"energy per item: {format_energy(entry.joules_per_item)} "
                     f"({entry.items} items per call)")
    if entry.watts is not None:
        lines.append(f"average power in the windows: {entry.watts:.3g} W")
    return lines


def _latency_and_calls(entry: Entry) -> list[str]:
    lines = []
    latency = entry.latency_ms
    if latency:
        lines.append(f"latency: median {duration(latency.median)}, p95 {duration(latency.p95)}, "
                     f"min {duration(latency.min)}, max {duration(latency.max)}")
    lead_in = f" + {entry.lead_in_calls} lead-in" if entry.lead_in_calls else ""
    lines.append(f"calls: {entry.calls} measured + {entry.warmup_calls} warm-up{lead_in}")
    if entry.trials_reason:
        lines.append(f"trials: {entry.trials_reason}")
    settle = entry.warmup_settle
    if settle and settle.watts:
        watts = settle.watts
        lines.append(f"warm-up settle: {settle.seconds * 1e3:.3g} ms, {len(watts)} windows, "
                     f"{watts[0]:.3g} -> {watts[-1]:.3g} W, "
                     f"{'settled' if settle.settled else 'not settled'}")
    return lines


def _rating(entry: Entry) -> str:
    """``★★★★☆ (by group: rank 2 of 6 by J/item)``: the stars and the rule that gave them."""
    text = stars(entry.rating)
    if entry.rating is None:
        return text
    if entry.rating_rule == RatingRule.GROUP:
        return (f"{text} (by group: rank {entry.group_rank} of {entry.group_size} by "
                f"{entry.rating_metric})")
    if entry.rating_rule == RatingRule.BUDGET:
        return f"{text} (by budget use)"
    return text


def _budget_lines(entry: Entry) -> list[str]:
    budget = entry.budget
    if budget.joules is None and budget.latency_ms is None:
        return [] if entry.rating is None else [f"rating {_rating(entry)}"]
    return [f"budget: joules {format_energy(budget.joules)}, latency "
            f"{format_duration_ms(budget.latency_ms)} ({budget.latency_stat}); "
            f"use {budget_use_cell(entry)}; rating {_rating(entry)}"]


def _trial_lines(entry: Entry) -> list[str]:
    lines = []
    for number, trial in enumerate(entry.trials, 1):
        calls = f"{trial.calls} call" + ("" if trial.calls == 1 else "s")
        lines.append(f"  trial {number}: {calls} in {trial.window_s * 1e3:.3g} ms, "
                     f"{format_energy(trial.total_joules)}")
    return lines


def _context_lines(entry: Entry) -> list[str]:
    # a cut in the trials is a warning, already printed as the "trials:" line
    lines = [f"warning: {w}" for w in (*entry.warnings, *entry.verdict_warnings)
             if w != entry.trials_reason]
    lines.extend(condition if condition.startswith(BUSY_PREFIX) else f"device: {condition}"
                 for condition in entry.conditions)
    if entry.dynamic_joules_per_call is not None:
        idle = sum((entry.idle_watts or {}).values())
        lines.append(f"dynamic energy: {format_energy(entry.dynamic_joules_per_call)} per "
                     f"call above an idle baseline of {idle:.3g} W")
    if entry.lock_wait_s > LOCK_WAIT_REPORTED_S:
        waited = format_duration_ms(entry.lock_wait_s * 1e3)  # "70.9 s", not "7.09e+04 ms"
        lines.append(f"isolation: waited {waited} for another process's measurement on the "
                     "same device (not counted in the numbers)")
    if entry.meter_note:
        lines.append(f"meter: {entry.meter_note}")
    return lines


def details_section(entry: Entry) -> str:
    """The per-test report section."""
    return "\n".join([*_energy_lines(entry), *_latency_and_calls(entry), *_budget_lines(entry),
                      *_trial_lines(entry), *_context_lines(entry)])


def user_properties(entry: Entry) -> list[tuple[str, object]]:
    """Flat numbers for junitxml (and anything else reading user_properties)."""
    latency = entry.latency_ms
    pairs: tuple[tuple[str, object], ...] = (
        ("energy_joules_per_call", entry.joules_per_call),
        ("energy_joules_per_item", entry.joules_per_item),
        ("energy_latency_ms", latency.median if latency else None),
        ("energy_latency_ms_p95", latency.p95 if latency else None),
        ("energy_calls", entry.calls),
        ("energy_meter", entry.meter),
        ("energy_estimated", entry.estimated),
        ("energy_rating", entry.rating),
        ("energy_verdict", None if entry.verdict is None else entry.verdict.value),
    )
    return [(key, value) for key, value in pairs if value is not None]
