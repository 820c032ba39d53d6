"""The summary laid out for the terminal's width (the default), or with chosen columns.

Why: the full table is ~190 characters wide, so each row wraps onto three lines of an
80-column terminal and cannot be read as a table. The compact table keeps what a
reader scans for (energy per call and per item, latency, how much of the budget is
used, the rating, the verdict); says the meter once in the header instead of on every
row (and drops "est." from the cells when the one meter is an estimate: the header
and the note under the table say so); shortens long test ids in the middle, keeping
the function name and the parameter id; and leaves out its least needed columns when
they would not fit, saying which. ``-v`` or ``--energy-columns=all`` prints the full
table; JSON and markdown always keep every field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_energy.entry import Entry, Verdict
from pytest_energy.report.cells import MISSING, duration, energy, percent, stars
from pytest_energy.report.fit import (
    MIN_FIRST_WIDTH,
    Column,
    ellipsis,
    fit_table,
    kept_width,
    short_id,
    wrap_all,
)
from pytest_energy.report.summary import (
    ESTIMATE_NOTE,
    calls_cell,
    summary_notes,
    verdict_cell,
)

#: A lock wait longer than this is shown in the summary (details show every real wait).
LOCK_WAIT_SHOWN_S = 1.0
MAX_NAMED = 3  # tests named in one summary line before "and N more"
NOTE_TEXT = 20  # a note's test id leaves this much of its first line to the note
ALL_ESTIMATED_NOTE = ("every energy above is estimated, not measured: " + ESTIMATE_NOTE.split(
    ": ", 1)[1])
_SHORT_VERDICTS = {
    "over budget (xfail)": "over (xfail)",
    str(Verdict.OVER_BUDGET_CONTAMINATED): "over (contam.)",
}


@dataclass(frozen=True)
class Style:
    """How cells are written: the terminal's encoding, and whether an estimated
    energy carries "est." (not when the header names the one, estimated, meter)."""

    encoding: str | None
    est: bool


def _budget(entry: Entry, _style: Style) -> str:
    """The budget closest to failing: ``t 80%`` (the full table shows every use)."""
    use = entry.budget_use
    uses = [(value, label) for label, value in (
        ("J", use.joules), ("J/item", use.joules_per_item), ("t", use.latency))
        if value is not None]
    if not uses:
        return MISSING
    value, label = max(uses)
    return f"{label} {percent(value)}"


def _per_1k(entry: Entry, _style: Style) -> str:
    from pytest_energy.rightsizing.summary import wh_cell

    return wh_cell(entry)


def _latency(stat: str) -> Callable[[Entry, Style], str]:
    return lambda entry, _style: duration(entry.latency(stat))


Cell = Callable[[Entry, Style], str]
#: name -> (header, cell, priority in the default layout: higher is left out first)
CELLS: dict[str, tuple[str, Cell, int]] = {
    "energy": ("J/call", lambda e, s: energy(e.joules_per_call, e.estimated and s.est), 0),
    "per_item": ("J/item", lambda e, s: energy(e.joules_per_item, e.estimated and s.est), 1),
    "latency": ("latency", _latency("median"), 3),
    "p95": ("p95", _latency("p95"), 5),
    "calls": ("calls", lambda e, _s: calls_cell(e), 5),
    "budget": ("budget", _budget, 4),
    "rating": ("rating", lambda e, s: stars(e.rating, s.encoding), 0),
    "per_1k_items": ("per 1k items", _per_1k, 5),
    "rated_by": ("rated by", lambda e, _s: str(e.rating_rule or MISSING), 5),
    "meter": ("meter", lambda e, _s: e.meter or MISSING, 2),
    "verdict": ("verdict", lambda e, _s: _SHORT_VERDICTS.get(verdict_cell(e), verdict_cell(e)),
                0),
}


def one_meter(entries: Sequence[Entry]) -> bool:
    """Whether every measured row was measured by the same meter (so the header can
    name it once)."""
    return len({(e.meter, bool(e.estimated)) for e in entries if e.meter}) <= 1


def default_columns(entries: Sequence[Entry]) -> list[str]:
    """The compact set: what a reader scans for, without columns every row leaves empty."""
    names = ["energy"]
    if any(e.joules_per_item is not None for e in entries):
        names.append("per_item")
    names.append("latency")
    if any(_budget(e, Style(None, False)) != MISSING for e in entries):
        names.append("budget")
    names.append("rating")
    if not one_meter(entries):
        names.append("meter")
    names.append("verdict")
    return names


@dataclass(frozen=True)
class CompactSummary:
    """The lines above the table, the table, and the lines under it."""

    header: list[str]
    table: list[str]
    notes: list[str]

    @property
    def lines(self) -> list[str]:
        return [*self.header, *self.table, *self.notes]


def render_compact(entries: Sequence[Entry], encoding: str | None, width: int | None,
                   columns: Sequence[str] | None = None) -> CompactSummary:
    """The summary within ``width`` characters (None: no limit).

    ``columns``: the user's choice (``--energy-columns``), shown as asked (only the test
    ids give way); None: the compact set, which leaves out its least needed columns
    when they would not fit, and says so above the table.
    """
    single = one_meter(entries)
    style = Style(encoding, est=not single)
    names = list(columns) if columns is not None else default_columns(entries)
    mark = ellipsis(encoding)
    table_columns = [Column(CELLS[name][0], [CELLS[name][1](e, style) for e in entries],
                            0 if columns is not None else CELLS[name][2])
                     for name in names]
    ids = [e.nodeid for e in entries]
    floor = max((kept_width(nodeid, mark) for nodeid in ids), default=0)
    fitted = fit_table(Column("test", ids), table_columns, width, floor, mark)
    header = []
    if fitted.left_out:
        header.append(f"left out to fit {width} columns: {', '.join(fitted.left_out)} "
                      "(-v or --energy-columns=all shows every column)")
    return CompactSummary(wrap_all(header, width), fitted.lines,
                          wrap_all(_notes(entries, single, width, mark), width))


def _notes(entries: Sequence[Entry], single: bool, width: int | None, mark: str) -> list[str]:
    """The summary's notes, test ids shortened as in the table; with one estimated
    meter, the "est." legend says every energy is an estimate (the cells carry no mark)."""
    def name(nodeid: str) -> str:
        return nodeid if width is None else short_id(
            nodeid, max(MIN_FIRST_WIDTH, width - NOTE_TEXT), mark)

    notes = summary_notes(entries, name)
    if single and any(e.estimated for e in entries):
        notes = [ALL_ESTIMATED_NOTE if note == ESTIMATE_NOTE else note for note in notes]
    return notes


def _seconds(value: float) -> str:
    return f"{value:.3g} s"


def lock_wait_lines(entries: Sequence[Entry], width: int | None = None) -> list[str]:
    """One line naming the tests that waited over :data:`LOCK_WAIT_SHOWN_S` for the
    device lock (another process measuring on the same device), longest first, and the
    seconds waited; [] when none did. The waits are not in the tests' numbers, but they
    are in the run's wall time, which otherwise looks like a slow suite."""
    waits = sorted(((e.lock_wait_s, e.nodeid) for e in entries
                    if e.lock_wait_s > LOCK_WAIT_SHOWN_S), reverse=True)
    if not waits:
        return []
    named = [f"{nodeid.rpartition('::')[2]} {_seconds(seconds)}"
             for seconds, nodeid in waits[:MAX_NAMED]]
    more = f" and {len(waits) - MAX_NAMED} more" if len(waits) > MAX_NAMED else ""
    total = sum(seconds for seconds, _ in waits)
    tests = "1 test" if len(waits) == 1 else f"{len(waits)} tests"
    line = (f"lock waits: {tests} waited {_seconds(total)} in all for another process's "
            f"measurement on the same device (not counted in their numbers): "
            f"{', '.join(named)}{more}")
    return wrap_all([line], width)
