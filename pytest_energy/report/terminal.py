"""Text for people: the per-test details section and the end-of-run summary table.

Every number printed says what it is: rows measured by an estimate meter carry
"est.", and the lines under the table say which meter produced what, and why a
better meter was not used.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from pytest_energy.units import format_duration_ms, format_energy

FULL_STAR, EMPTY_STAR = "\u2605", "\u2606"
LOCK_WAIT_REPORTED_S = 0.001


def _can_print_stars(encoding: str | None) -> bool:
    try:
        (FULL_STAR + EMPTY_STAR).encode(encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return False
    return True


def format_stars(rating: int | None, encoding: str | None = None) -> str:
    """``★★★★☆`` (or ``****.`` where the terminal cannot print stars); ``-`` when unrated."""
    if rating is None:
        return "-"
    encoding = encoding if encoding is not None else getattr(sys.stdout, "encoding", None)
    full, empty = (FULL_STAR, EMPTY_STAR) if _can_print_stars(encoding) else ("*", ".")
    return full * rating + empty * (5 - rating)


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    return "<1%" if 0 < fraction < 0.005 else f"{fraction * 100:.0f}%"


def energy_cell(joules: float | None, estimated: bool | None) -> str:
    text = format_energy(joules) if joules is not None else "-"
    return f"{text} est." if estimated and joules is not None else text


def budget_use_cell(entry: dict[str, Any]) -> str:
    use = entry.get("budget_use") or {}
    parts = []
    if use.get("joules") is not None:
        parts.append(f"J {_percent(use['joules'])}")
    if use.get("joules_per_item") is not None:
        parts.append(f"J/item {_percent(use['joules_per_item'])}")
    if use.get("latency") is not None:
        parts.append(f"t {_percent(use['latency'])}")
    return " ".join(parts) or "-"


def verdict_cell(entry: dict[str, Any]) -> str:
    outcome = entry.get("outcome")
    verdict = entry.get("verdict")
    if outcome in ("skipped", "error") or (outcome == "failed" and verdict in (
            "measured", "ok", "not measured")):
        return str(outcome)
    if outcome == "xfailed" and verdict == "over budget":
        return "over budget (xfail)"
    return str(verdict)


def calls_cell(entry: dict[str, Any]) -> str:
    calls, warm = entry.get("calls") or 0, entry.get("warmup_calls") or 0
    return f"{calls}+{warm}w" if warm else str(calls)


SUMMARY_HEADERS = ["test", "J/call", "J/item", "latency med", "p95", "calls", "budget use",
                   "rating", "meter", "verdict"]


def summary_rows(entries: Iterable[dict[str, Any]], encoding: str | None = None) -> list[list[str]]:
    rows = []
    for entry in entries:
        latency = entry.get("latency_ms") or {}
        meter = entry.get("meter") or "-"
        if entry.get("meter") and entry.get("domains"):
            meter = f"{meter} {','.join(entry['domains'])}"
        rows.append([
            entry["nodeid"],
            energy_cell(entry.get("joules_per_call"), entry.get("estimated")),
            energy_cell(entry.get("joules_per_item"), entry.get("estimated")),
            format_duration_ms(latency["median"]) if latency else "-",
            format_duration_ms(latency["p95"]) if latency else "-",
            calls_cell(entry),
            budget_use_cell(entry),
            format_stars(entry.get("rating"), encoding),
            meter,
            verdict_cell(entry),
        ])
    return rows


def summary_notes(entries: list[dict[str, Any]]) -> list[str]:
    """Lines under the table: what "est." means, meter fall-backs, problems per test."""
    notes: list[str] = []
    if any(e.get("estimated") for e in entries):
        notes.append(
            "est. = estimated, not measured: process CPU time x watts per busy core "
            "(see README, 'How measurement works'); compare estimates only with estimates"
        )
    # The same fall-back is explained per device; a note that another one extends (the
    # "auto" device also names the missing GPU counter) is shown once, in full.
    meter_notes = sorted({e["meter_note"] for e in entries if e.get("meter_note")}, key=len,
                         reverse=True)
    kept: list[str] = []
    for note in meter_notes:
        if not any(longer.startswith(note) for longer in kept):
            kept.append(note)
    notes.extend(f"meter: {note}" for note in kept)
    for entry in entries:
        problem = entry.get("problem")
        if problem:
            prefix = "" if problem.startswith(entry["nodeid"]) else f"{entry['nodeid']}: "
            notes.append(prefix + problem)
        for warning in [*(entry.get("warnings") or []), *(entry.get("verdict_warnings") or []),
                        *(entry.get("conditions") or [])]:
            notes.append(f"{entry['nodeid']}: {warning}")
    return notes


# tabulate inspects every cell's type (even with disable_numparse), ~0.15 ms per row;
# past this many rows the summary uses plain_table, which prints the same layout.
TABULATE_MAX_ROWS = 2000


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    """tabulate's "simple" format for left-aligned string cells, in linear time."""
    # tabulate pads each header by 2 (its MIN_PADDING) when sizing a column
    widths = [max([len(h) + 2, *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths),
                      *(line(r) for r in rows)])


RATING_COLUMN = SUMMARY_HEADERS.index("rating") + 1


def render_summary(entries: list[dict[str, Any]], encoding: str | None = None,
                   extra: tuple[list[str], list[list[str]]] | None = None) -> str:
    """The summary table and its notes. ``extra`` = (headers, one row of cells per entry)
    inserted after the rating column (per 1k items, rated by, carbon, cost)."""
    rows = summary_rows(entries, encoding)
    headers = list(SUMMARY_HEADERS)
    if extra is not None:
        extra_headers, extra_rows = extra
        headers[RATING_COLUMN:RATING_COLUMN] = extra_headers
        for row, cells in zip(rows, extra_rows, strict=True):
            row[RATING_COLUMN:RATING_COLUMN] = cells
    if len(rows) > TABULATE_MAX_ROWS:
        table = plain_table(headers, rows)
    else:
        from tabulate import tabulate  # imported only when there is something to print

        table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    notes = summary_notes(entries)
    return table + ("\n" + "\n".join(notes) if notes else "")


def details_section(entry: dict[str, Any]) -> str:
    """The per-test report section (shown with failures, or with -rA)."""
    lines = []
    est = " (estimated)" if entry.get("estimated") else ""
    meter = f"{entry.get('meter')} {','.join(entry.get('domains') or [])}{est}"
    if entry.get("joules_per_call") is not None:
        spread = entry.get("joules_spread") or {}
        cv = spread.get("cv")
        cv_text = "CV n/a" if cv is None else f"CV {cv * 100:.1f}%"
        trials = entry.get("trials") or []
        if entry.get("plan") == "phase-aligned":
            sets = {tuple(t["phase_set"]) for t in trials if t.get("phase_set")}
            how = (f"pooled over {len(trials)} phase-aligned windows in {len(sets)} phase "
                   f"set{'s' if len(sets) != 1 else ''}; per "
                   f"{'set' if len(sets) >= 2 else 'window'}")
        else:
            how = f"median of {len(trials)} trials;"
        lines.append(
            f"energy: {format_energy(entry['joules_per_call'])} per call ({how} min "
            f"{format_energy(spread.get('min'))}, max {format_energy(spread.get('max'))}, "
            f"{cv_text}), meter {meter}"
        )
        if entry.get("joules_per_item") is not None:
            lines.append(f"energy per item: {format_energy(entry['joules_per_item'])} "
                         f"({entry.get('items')} items per call)")
        if entry.get("watts") is not None:
            lines.append(f"average power in the windows: {entry['watts']:.3g} W")
    elif entry.get("invalid_reason"):
        lines.append(f"energy: not measured: {entry['invalid_reason']}")
    latency = entry.get("latency_ms")
    if latency:
        lines.append(
            f"latency: median {format_duration_ms(latency['median'])}, p95 "
            f"{format_duration_ms(latency['p95'])}, min {format_duration_ms(latency['min'])}, "
            f"max {format_duration_ms(latency['max'])}"
        )
    lines.append(f"calls: {entry.get('calls', 0)} measured + {entry.get('warmup_calls', 0)} "
                 "warm-up" + (f" + {entry['lead_in_calls']} lead-in"
                              if entry.get("lead_in_calls") else ""))
    settle = entry.get("warmup_settle")
    if settle and settle.get("watts"):
        watts = settle["watts"]
        lines.append(
            f"warm-up settle: {settle['seconds'] * 1e3:.3g} ms, {len(watts)} windows, "
            f"{watts[0]:.3g} -> {watts[-1]:.3g} W, "
            f"{'settled' if settle['settled'] else 'not settled'}")
    budget = entry.get("budget") or {}
    if budget.get("joules") is not None or budget.get("latency_ms") is not None:
        lines.append(
            f"budget: joules {format_energy(budget.get('joules'))}, latency "
            f"{format_duration_ms(budget.get('latency_ms'))} ({budget.get('latency_stat')}); "
            f"use {budget_use_cell(entry)}; rating {format_stars(entry.get('rating'))}"
        )
    for trial_no, trial in enumerate(entry.get("trials") or [], 1):
        joules = sum(trial["joules"].values())
        calls = f"{trial['calls']} call" + ("" if trial["calls"] == 1 else "s")
        lines.append(f"  trial {trial_no}: {calls} in "
                     f"{trial['window_s'] * 1e3:.3g} ms, {format_energy(joules)}")
    for warning in [*(entry.get("warnings") or []), *(entry.get("verdict_warnings") or [])]:
        lines.append(f"warning: {warning}")
    for condition in entry.get("conditions") or []:
        lines.append(f"device: {condition}")
    if entry.get("dynamic_joules_per_call") is not None:
        idle = sum((entry.get("idle_watts") or {}).values())
        lines.append(f"dynamic energy: {format_energy(entry['dynamic_joules_per_call'])} per "
                     f"call above an idle baseline of {idle:.3g} W")
    # Taking a free lock costs microseconds; only a real wait for another process counts.
    if (entry.get("lock_wait_s") or 0.0) > LOCK_WAIT_REPORTED_S:
        lines.append(f"isolation: waited {entry['lock_wait_s'] * 1e3:.3g} ms for another "
                     "process's measurement on the same device (not counted in the numbers)")
    if entry.get("meter_note"):
        lines.append(f"meter: {entry['meter_note']}")
    return "\n".join(lines)


def user_properties(entry: dict[str, Any]) -> list[tuple[str, object]]:
    """Flat numbers for junitxml (and anything else reading user_properties)."""
    latency = entry.get("latency_ms") or {}
    pairs = (
        ("energy_joules_per_call", entry.get("joules_per_call")),
        ("energy_joules_per_item", entry.get("joules_per_item")),
        ("energy_latency_ms", latency.get("median")),
        ("energy_latency_ms_p95", latency.get("p95")),
        ("energy_calls", entry.get("calls")),
        ("energy_meter", entry.get("meter")),
        ("energy_estimated", entry.get("estimated")),
        ("energy_rating", entry.get("rating")),
        ("energy_verdict", entry.get("verdict")),
    )
    return [(key, value) for key, value in pairs if value is not None]


def _device_facts(device: dict[str, Any]) -> str:
    facts = [str(device.get("name") or "GPU")]
    for key, label in (("uuid", ""), ("architecture", ""), ("driver_version", "driver ")):
        if device.get(key):
            facts.append(f"{label}{device[key]}")
    if device.get("power_limit_w") is not None:
        facts.append(f"power limit {device['power_limit_w']:.0f} W")
    if device.get("persistence_mode") is not None:
        facts.append("persistence " + ("on" if device["persistence_mode"] else "off"))
    if device.get("sm_clock_mhz") is not None:
        facts.append(f"SM {device['sm_clock_mhz']} MHz at start")
    if device.get("temperature_c") is not None:
        facts.append(f"{device['temperature_c']} C at start")
    return ", ".join(facts)


def meter_lines(described: dict[str, Any]) -> list[str]:
    """Header lines naming each meter used, what it measures, and its device facts."""
    lines = []
    for info in (described.get("used") or {}).values():
        domains = ",".join(info.get("domains") or [])
        kind = "estimated" if info.get("estimated") else "hardware counter"
        details = info.get("details") if isinstance(info.get("details"), dict) else {}
        line = f"meter {info.get('name')} {domains} ({kind}"
        if details.get("model"):
            line += f": {details['model']}, {details.get('watts_per_core')} W per core"
        lines.append(line + ")")
        for device in details.get("devices") or []:
            if isinstance(device, dict):
                lines.append(f"  {device.get('domain', '')}: {_device_facts(device)}")
    return lines
