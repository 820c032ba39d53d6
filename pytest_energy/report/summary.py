"""The end-of-run summary: the full table (``-v``, ``--energy-columns=all``), the cells
the compact default shares (:mod:`pytest_energy.report.compact`), the notes under the
table and the meter lines above it.

Every number printed says what it is: in the full table, rows measured by an estimate
meter carry "est."; the lines under the table say which meter produced what, and why a
better meter was not used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pytest_energy.entry import Entry, Outcome, Verdict
from pytest_energy.report.cells import MISSING, duration, energy, percent, plain_table, stars
from pytest_energy.report.fit import wrap_all

SUMMARY_HEADERS = ["test", "J/call", "J/item", "latency med", "p95", "calls", "budget use",
                   "rating", "meter", "verdict"]
RATING_COLUMN = SUMMARY_HEADERS.index("rating") + 1
# tabulate inspects every cell's type (even with disable_numparse), ~0.15 ms per row;
# past this many rows the summary uses plain_table, which prints the same layout.
TABULATE_MAX_ROWS = 2000
ESTIMATE_NOTE = ("est. = estimated, not measured: process CPU time x watts per busy core "
                 "(see README, 'How measurement works'); compare estimates only with estimates")
_NOT_AN_ENERGY_FAILURE = (Verdict.MEASURED, Verdict.OK, Verdict.NOT_MEASURED)


def budget_use_cell(entry: Entry, *, per_item: bool = True) -> str:
    """``J 42% J/item 30% t 80%``: each declared budget's use (``per_item=False``
    leaves out J/item, as the narrower markdown table does)."""
    use = entry.budget_use
    parts = [f"{label} {percent(value)}" for label, value in (
        ("J", use.joules), ("J/item", use.joules_per_item if per_item else None),
        ("t", use.latency)) if value is not None]
    return " ".join(parts) or MISSING


def verdict_cell(entry: Entry) -> str:
    """The verdict, or the outcome when the test failed or was skipped for another reason."""
    outcome, verdict = entry.outcome, entry.verdict
    if outcome in (Outcome.SKIPPED, Outcome.ERROR) or (
            outcome == Outcome.FAILED and verdict in _NOT_AN_ENERGY_FAILURE):
        return str(outcome)
    if outcome == Outcome.XFAILED and verdict == Verdict.OVER_BUDGET:
        return "over budget (xfail)"
    return str(verdict)


def calls_cell(entry: Entry) -> str:
    return f"{entry.calls}+{entry.warmup_calls}w" if entry.warmup_calls else str(entry.calls)


def meter_cell(entry: Entry) -> str:
    if entry.meter and entry.domains:
        return f"{entry.meter} {','.join(entry.domains)}"
    return entry.meter or MISSING


def summary_rows(entries: Iterable[Entry], encoding: str | None = None) -> list[list[str]]:
    rows = []
    for entry in entries:
        latency = entry.latency_ms
        rows.append([
            entry.nodeid,
            energy(entry.joules_per_call, entry.estimated),
            energy(entry.joules_per_item, entry.estimated),
            duration(latency.median if latency else None),
            duration(latency.p95 if latency else None),
            calls_cell(entry),
            budget_use_cell(entry),
            stars(entry.rating, encoding),
            meter_cell(entry),
            verdict_cell(entry),
        ])
    return rows


def _meter_notes(entries: Sequence[Entry]) -> list[str]:
    """Meter fall-backs, each once: a note that another one extends (the "auto" device
    also names the missing GPU counter) is shown once, in full."""
    notes = sorted({e.meter_note for e in entries if e.meter_note}, key=len, reverse=True)
    kept: list[str] = []
    for note in notes:
        if not any(longer.startswith(note) for longer in kept):
            kept.append(note)
    return [f"meter: {note}" for note in kept]


def _test_notes(entry: Entry, name: str) -> list[str]:
    notes = []
    if entry.problem:
        prefix = "" if entry.problem.startswith(entry.nodeid) else f"{name}: "
        notes.append(prefix + entry.problem)
    notes.extend(f"{name}: {text}"
                 for text in (*entry.warnings, *entry.verdict_warnings, *entry.conditions))
    return notes


def summary_notes(entries: Sequence[Entry],
                  name: Callable[[str], str] | None = None) -> list[str]:
    """Lines under the table: what "est." means, meter fall-backs, problems per test
    (each test named by ``name(nodeid)``: the compact summary shortens long ids)."""
    notes = [ESTIMATE_NOTE] if any(e.estimated for e in entries) else []
    notes.extend(_meter_notes(entries))
    for entry in entries:
        notes.extend(_test_notes(entry, entry.nodeid if name is None else name(entry.nodeid)))
    return notes


def summary_table_cells(entries: Sequence[Entry], encoding: str | None,
                        extra: tuple[list[str], list[list[str]]] | None = None
                        ) -> tuple[list[str], list[list[str]]]:
    """The full summary's headers and rows of cells, ``extra`` (headers, one row of
    cells per entry) inserted after the rating column: the terminal's table and the HTML
    report's."""
    rows = summary_rows(entries, encoding)
    headers = list(SUMMARY_HEADERS)
    if extra is not None:
        extra_headers, extra_rows = extra
        headers[RATING_COLUMN:RATING_COLUMN] = extra_headers
        for row, cells in zip(rows, extra_rows, strict=True):
            row[RATING_COLUMN:RATING_COLUMN] = cells
    return headers, rows


def render_summary(entries: Sequence[Entry], encoding: str | None = None,
                   extra: tuple[list[str], list[list[str]]] | None = None,
                   width: int | None = None) -> str:
    """The full summary table and its notes (``-v``; the default is
    :mod:`pytest_energy.report.compact`). ``extra`` = (headers, one row of cells per
    entry) inserted after the rating column (per 1k items, rated by, carbon, cost).
    The table is as wide as its cells; the notes wrap at ``width`` (None: never)."""
    headers, rows = summary_table_cells(entries, encoding, extra)
    if len(rows) > TABULATE_MAX_ROWS:
        table = plain_table(headers, rows)
    else:
        from tabulate import tabulate  # optional speed-up path stays lazy: tables are rare

        table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    notes = wrap_all(summary_notes(entries), width)
    return table + ("\n" + "\n".join(notes) if notes else "")


def _device_facts(device: Mapping[str, Any]) -> str:
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


def _meter_line(info: Mapping[str, Any]) -> list[str]:
    domains = ",".join(info.get("domains") or [])
    kind = "estimated" if info.get("estimated") else "hardware counter"
    details = info.get("details") if isinstance(info.get("details"), dict) else {}
    assert isinstance(details, dict)
    line = f"meter {info.get('name')} {domains} ({kind}"
    if details.get("model"):
        line += f": {details['model']}, {details.get('watts_per_core')} W per core"
    lines = [line + ")"]
    lines.extend(f"  {device.get('domain', '')}: {_device_facts(device)}"
                 for device in details.get("devices") or [] if isinstance(device, dict))
    return lines


def meter_lines(described: Mapping[str, Any], width: int | None = None) -> list[str]:
    """Header lines naming each meter used, what it measures, and its device facts,
    wrapped at ``width`` (None: never). ``described`` is the meters' JSON description
    (it is written to the report as is)."""
    return wrap_all([line for info in (described.get("used") or {}).values()
                     for line in _meter_line(info)], width, indent="    ")
