"""The HTML report (``--energy-html``, ``pytest-energy report --html``): one file, offline.

What people look at rather than read: the gate's verdict first, then the summary table
(sortable by a click on a header), the right-sizing groups as charts, each test's
energy across recent runs with the baseline's noise band, and energy labels.

The numbers are the terminal's: the table's cells come from the same functions as the
full terminal summary (:func:`~pytest_energy.report.summary.summary_rows`, the one
formatting layer :mod:`~pytest_energy.report.cells`), from the entries the run report
rated once (:class:`~pytest_energy.report.finish.RunReport`) or, for a stored run, as
the history saved them. Nothing is re-rated here. The meter lines and notes say what
each number is (which meter measured it, or that it is an estimate).

Every string is escaped (:func:`~pytest_energy.report.html_charts.esc`); the page
loads nothing (see :mod:`~pytest_energy.report.html_assets`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_energy._version import __version__
from pytest_energy.entry import Entry
from pytest_energy.report.cells import MISSING, percent
from pytest_energy.report.html_assets import page
from pytest_energy.report.html_charts import Trend, esc, rightsizing_chart, trend_chart
from pytest_energy.report.jsonreport import atomic_write_text
from pytest_energy.report.label import group_label_svg, label_svg
from pytest_energy.report.summary import (
    meter_lines,
    summary_notes,
    summary_table_cells,
)
from pytest_energy.rightsizing import RightsizingOptions, summary_columns, summary_lines
from pytest_energy.rightsizing.base import entry_wh_per_1000_items

MAX_LABELS = 12  # right-sizing groups first, then single tests, up to this many
MAX_CHARTS = 40  # right-sizing charts; the other groups get one line each
FAILING_VERDICTS = ("over budget", "failed", "error", "inconclusive")


def _max_use(entry: Entry) -> float | None:
    uses = [u for u in (entry.budget_use.joules, entry.budget_use.joules_per_item,
                        entry.budget_use.latency) if u is not None]
    return max(uses) if uses else None


#: The numeric value each numeric column sorts by (its cell shows it formatted).
SORT_VALUES: dict[str, Callable[[Entry], float | None]] = {
    "J/call": lambda e: e.joules_per_call,
    "J/item": lambda e: e.joules_per_item,
    "latency med": lambda e: e.latency("median"),
    "p95": lambda e: e.latency("p95"),
    "calls": lambda e: float(e.calls),
    "budget use": _max_use,
    "rating": lambda e: None if e.rating is None else float(e.rating),
    "per 1k items": entry_wh_per_1000_items,
}


@dataclass(frozen=True)
class GateView:
    """The gate's verdict as the report shows it: ``state`` is passed, regressed, error
    or another word (not compared, no baseline, incomplete...)."""

    state: str
    regressions: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()

    @classmethod
    def of_result(cls, result: Mapping[str, Any] | None) -> GateView:
        """From the gate's JSON result of this run (``RunReport._run_gate``)."""
        if not result:
            return cls("no gate", lines=("no regression gate in this run: add "
                                         "--energy-compare (and --energy-save or "
                                         "--energy-autosave to build a baseline)",))
        lines = [str(result["rule"])] if result.get("requested") and result.get("rule") else []
        lines += _baseline_line(result) + [str(m) for m in result.get("messages") or []]
        return cls(_state(result), tuple(str(r) for r in result.get("regressions") or []),
                   tuple(lines))

    @classmethod
    def of_status(cls, status: str | None, label: str) -> GateView:
        """From a stored run's status (``pytest-energy report``)."""
        state = {"passed": "passed", "regressed": "regressed", "failed": "tests failed",
                 "incomplete": "incomplete"}.get(str(status), "unknown")
        return cls(state, lines=(f"run {label} was saved with status {status or 'unknown'}",))


def _state(result: Mapping[str, Any]) -> str:
    """passed, regressed (the gate failed the run), error (it could not do its job:
    exit 3), or what the gate says it did instead (not compared, no baseline, refused)."""
    if result.get("exit_status") == 3:
        return "error"
    status = str(result.get("status") or "not requested")
    return {"passed": "passed", "failed": "regressed", "error": "error",
            "not requested": "not compared"}.get(status, status)


def _baseline_line(result: Mapping[str, Any]) -> list[str]:
    baseline = result.get("baseline")
    if not isinstance(baseline, Mapping):
        return []
    name = f" '{baseline.get('name')}'" if baseline.get("name") else ""
    return [f"baseline: run #{baseline.get('id')}{name} and the runs before it, "
            f"{result.get('baseline_runs') or 1} run(s) in all"]


@dataclass(frozen=True)
class HtmlReport:
    """What one report shows (see module doc)."""

    title: str
    source: str  # "this run", "run #12 'main'"
    created: str
    entries: Sequence[Entry]
    meter: Mapping[str, Any]
    machine: Mapping[str, Any]
    tables: Sequence[Mapping[str, Any]]
    gate: GateView
    trends: Sequence[Trend] = ()
    trends_note: str = ""
    options: RightsizingOptions = field(default_factory=RightsizingOptions)


# ----- sections -------------------------------------------------------------------------------


def _ul(lines: Sequence[str], css: str = "notes") -> str:
    if not lines:
        return ""
    return f'<ul class="{css}">' + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>"


def _gate_section(gate: GateView) -> str:
    css = gate.state if gate.state in ("passed", "regressed", "error") else "other"
    parts = [f'<section id="gate"><h2>Regression gate</h2><div class="gate {css}">'
             f'<p><b>{esc(gate.state)}</b>']
    if gate.regressions:
        parts.append(f": {len(gate.regressions)} regressed</p>"
                     + _ul(list(gate.regressions), "regressions"))
    else:
        parts.append("</p>")
    parts.append(_ul(list(gate.lines)) + "</div></section>")
    return "".join(parts)


def _headers_and_rows(report: HtmlReport) -> tuple[list[str], list[list[str]]]:
    """The full terminal summary's headers and cells (``-v``), extra columns included."""
    return summary_table_cells(report.entries, "utf-8",
                               summary_columns(report.entries, None))


def _cell(header: str, text: str, entry: Entry) -> str:
    """One summary cell; a numeric one carries its number in ``data-v`` (for sorting)."""
    sort = SORT_VALUES.get(header)
    if sort is None:
        failing = header == "verdict" and text.startswith(FAILING_VERDICTS)
        return f'<td class="f">{esc(text)}</td>' if failing else f"<td>{esc(text)}</td>"
    value = sort(entry)
    data = "" if value is None else f' data-v="{value:.4g}"'
    return f'<td{" class=s" if header == "rating" else ""}{data}>{esc(text)}</td>'


def _trend_cell(trend: Trend | None) -> str:
    if trend is None or not trend.values:
        return f"<td>{MISSING}</td>"
    regressed = ' class="f"' if trend.points[-1].regressed else ""
    return f"<td{regressed}>{trend_chart(trend)}</td>"


def _summary_section(report: HtmlReport) -> str:
    entries = report.entries
    parts = ['<section id="summary"><h2>Summary</h2>', _ul(meter_lines(report.meter), "meters")]
    if not entries:
        parts.append("<p>No test was measured.</p></section>")
        return "".join(parts)
    headers, rows = _headers_and_rows(report)
    trends = {t.nodeid: t for t in report.trends if t.values}
    heads = "".join(f'<th data-k="{"n" if h in SORT_VALUES else "s"}">{esc(h)}</th>'
                    for h in headers) + ("<th>J/call across runs</th>" if trends else "")
    parts.append(f'<table id="summary-table"><thead><tr>{heads}</tr></thead><tbody>')
    for entry, row in zip(entries, rows, strict=True):
        parts.append("<tr>" + "".join(_cell(h, text, entry)
                                      for h, text in zip(headers, row, strict=True))
                     + (_trend_cell(trends.get(entry.nodeid)) if trends else "") + "</tr>")
    parts.append("</tbody></table>")
    notes = summary_notes(entries) + summary_lines(entries, None, report.options)
    parts.append(_ul(notes) + "</section>")
    return "".join(parts)


def _recommended(table: Mapping[str, Any]) -> str:
    """The recommended variant and what it saves (the section says why it is chosen),
    or the table's sentence saying why there is none."""
    best = table.get("recommended")
    if not best:
        return str(table.get("recommendation") or MISSING)
    saving = table.get("saving_vs_worst")
    return str(best) + (f", {percent(saving)} less than {table.get('worst')}"
                        if isinstance(saving, float) and saving > 0 else "")


def _saving(table: Mapping[str, Any]) -> float:
    saving = table.get("saving_vs_worst")
    return saving if isinstance(saving, float) else -1.0


def charted(tables: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Which tables get a chart: all, or past :data:`MAX_CHARTS` those where choosing
    the recommended variant saves the most (a page of hundreds of charts is read by
    nobody, and would make the file large); the others get a line each."""
    if len(tables) <= MAX_CHARTS:
        return [True] * len(tables)
    ranked = sorted(range(len(tables)), key=lambda i: -_saving(tables[i]))
    chosen = set(ranked[:MAX_CHARTS])
    return [index in chosen for index in range(len(tables))]


def _rightsizing_section(tables: Sequence[Mapping[str, Any]]) -> str:
    if not tables:
        return ""
    parts = ['<section id="rightsizing"><h2>Right-sizing</h2><p class="muted">Per group: '
             "energy per item (per call without items=) of each variant, and its latency "
             "(median) against its latency budget (red mark). Green, ticked: recommended, "
             "the least energy among the variants that completed and meet their latency "
             "budget; grey: failed, or over its latency budget.</p>"]
    rest = []
    for table, chart in zip(tables, charted(tables), strict=True):
        title = esc(table.get("title") or table.get("group"))
        if not chart:
            rest.append(f"<li>{title}: {esc(_recommended(table))}</li>")
            continue
        parts.append(f"<h3>{title}</h3><p>recommended: {esc(_recommended(table))}</p>"
                     + rightsizing_chart(table) + _ul([str(n) for n in table.get("notes") or []]))
    if rest:
        parts.append(f"<h3>{len(rest)} more group(s)</h3><p class=\"muted\">charted above: "
                     f"the {MAX_CHARTS} groups where the recommended variant saves the most; "
                     "every group is in the JSON report (--energy-json)</p><ul>"
                     + "".join(rest) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def _trends_section(report: HtmlReport) -> str:
    """Where the trends in the summary table come from, and what they mark."""
    shown = [t for t in report.trends if t.values]
    regressed = [t.nodeid for t in shown if t.points[-1].regressed]
    parts = ['<section id="trends"><h2>Trends</h2>',
             f'<p class="muted">{esc(report.trends_note)}</p>' if report.trends_note else ""]
    if shown:
        parts.append(
            "<p>The last column of the summary: each test's energy per call across the "
            "runs, oldest first; shaded: the baseline's noise band (where the gate would "
            "not call a change significant: its baseline mean within the smallest change "
            "it can detect); red: a regression the gate found. Hover a line for its "
            f"values. {len(shown)} test(s) with a trend.</p>")
    if regressed:
        parts.append(f"<p>regressed in {esc(report.source)}:</p>" + _ul(regressed, "f"))
    parts.append("</section>")
    return "".join(parts)


# ----- labels ---------------------------------------------------------------------------------


def _groups(tables: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Each right-sizing table's title and its variants' test ids."""
    return [(str(t.get("title") or t.get("group")),
             [str(v.get("nodeid")) for v in t.get("variants") or []]) for t in tables]


def label_targets(entries: Sequence[Entry], tables: Sequence[Mapping[str, Any]]
                  ) -> list[tuple[str | None, list[Entry]]]:
    """What gets a label: each right-sizing group (its variants on one label), then each
    measured test in no group, at most :data:`MAX_LABELS` (``pytest-energy label``
    makes any other)."""
    by_id = {e.nodeid: e for e in entries}
    targets: list[tuple[str | None, list[Entry]]] = []
    grouped: set[str] = set()
    for title, ids in _groups(tables):
        grouped.update(ids)
        targets.append((title, [by_id[i] for i in ids if i in by_id]))
    targets += [(None, [e]) for e in entries if e.is_measured and e.nodeid not in grouped]
    return [target for target in targets if target[1]][:MAX_LABELS]


def _label(group: str | None, members: list[Entry], report: HtmlReport) -> str | None:
    """One label SVG (:mod:`pytest_energy.report.label`), None when it cannot be made."""
    date, meter, machine = report.created, report.meter, report.machine
    try:
        if group is None:
            return label_svg(members[0], date=date, meter=meter, machine=machine)
        return group_label_svg(group, members, date=date, meter=meter, machine=machine)
    except ValueError:  # no valid measurement to put on a label
        return None


def _labels_section(report: HtmlReport) -> str:
    svgs = [svg for group, members in label_targets(report.entries, report.tables)
            if (svg := _label(group, members, report)) is not None]
    if not svgs:
        return ""
    return ('<section id="labels"><h2>Energy labels</h2><p class="muted">For a README or '
            "a model card: pytest-energy label NODEID --svg PATH</p><div class=\"labels\">"
            + "".join(f"<div>{svg}</div>" for svg in svgs) + "</div></section>")


# ----- the page ---------------------------------------------------------------------------------


def render_html(report: HtmlReport) -> str:
    """The whole report as one HTML document (see module doc)."""
    measured = sum(1 for e in report.entries if e.is_measured)
    header = (f"<h1>{esc(report.title)}</h1><p class=\"muted\">{esc(report.source)}, "
              f"{esc(report.created)}; {len(report.entries)} test(s), {measured} measured; "
              f"pytest-energy {esc(__version__)}</p>")
    body = "\n".join([header, _gate_section(report.gate), _summary_section(report),
                      _rightsizing_section(report.tables), _trends_section(report),
                      _labels_section(report)])
    return page(report.title, body)


def write_html(path: str, report: HtmlReport) -> str:
    """Write the report atomically with the user's umask (as the JSON report is);
    returns the path written. Raises OSError when it cannot be written."""
    return str(atomic_write_text(path, render_html(report)))
