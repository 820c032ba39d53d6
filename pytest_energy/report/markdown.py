"""The energy summary and the compare verdict as GitHub-flavoured markdown.

Written by ``--energy-markdown=PATH`` and appended to ``$GITHUB_STEP_SUMMARY`` so a CI
job page shows the table and any regression without opening the log. The same
numbers as the terminal summary, as text a reviewer can paste into a PR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_energy.entry import Entry, Verdict
from pytest_energy.report.cells import MISSING, duration, energy, md_table, stars
from pytest_energy.report.summary import budget_use_cell, verdict_cell
from pytest_energy.units import format_duration_ms, format_energy


def _verdict(entry: Entry) -> str:
    """The summary's verdict cell, an over-budget verdict in bold (what a reviewer
    looks for)."""
    text = verdict_cell(entry)
    if text.startswith(str(Verdict.OVER_BUDGET)) and entry.verdict == Verdict.OVER_BUDGET:
        return "**over budget**" + text[len(str(Verdict.OVER_BUDGET)):]
    return text


def _change(metric: Mapping[str, Any]) -> str:
    rel = metric.get("change_rel")
    if rel is None:
        return "-"
    return f"{rel * 100:+.1f}%"


def _value(metric: Mapping[str, Any], key: str) -> str:
    value = metric.get(key)
    if value is None:
        return "-"
    if metric.get("metric") == "latency_ms":
        return format_duration_ms(value)
    return format_energy(value)


def _p(value: object) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.3g}"


def summary_table(entries: Sequence[Entry]) -> list[str]:
    rows = []
    for entry in entries:
        latency = entry.latency_ms
        rows.append([f"`{entry.nodeid}`", energy(entry.joules_per_call, entry.estimated),
                     energy(entry.joules_per_item, entry.estimated),
                     duration(latency.median if latency else None),
                     budget_use_cell(entry, per_item=False), stars(entry.rating, "utf-8"),
                     entry.meter or MISSING, _verdict(entry)])
    return md_table(["test", "J/call", "J/item", "latency (median)", "budget use", "rating",
                   "meter", "verdict"], rows)


def compare_rows(compare: Mapping[str, Any], verdicts: Sequence[str]) -> list[list[str]]:
    rows = []
    for test in compare.get("tests") or []:
        for metric in test.get("metrics") or []:
            if metric.get("verdict") in verdicts:
                rows.append([f"`{test.get('nodeid')}`", str(metric.get("metric")),
                             _value(metric, "baseline"), _value(metric, "current"),
                             _change(metric), _p(metric.get("p_value")),
                             str(metric.get("verdict")), _detects(metric.get("detectable"))])
    return rows


def _detects(detectable: object) -> str:
    """The smallest regression the gate could detect for this test (run-level only)."""
    return f">= {detectable * 100:.0f}%" if isinstance(detectable, (int, float)) else "-"


COMPARE_HEADERS = ["test", "metric", "baseline", "this run", "change", "p", "verdict",
                   "detects"]


def _baseline_lines(compare: Mapping[str, Any]) -> list[str]:
    baseline = compare.get("baseline")
    if not baseline:
        return []
    commit = baseline.get("commit")
    runs = int(compare.get("baseline_runs") or 1)
    return ["Baseline: run #" + str(baseline.get("id"))
            + (f" `{baseline.get('name')}`" if baseline.get("name") else "")
            + (f" and {runs - 1} earlier run(s)" if runs > 1 else "")
            + f", {baseline.get('created')}"
            + (f", commit `{commit[:10]}`" if commit else "")
            + (" (dirty)" if baseline.get("dirty") else ""), ""]


def _verdict_tables(compare: Mapping[str, Any]) -> list[str]:
    failing = "" if compare.get("fail_enabled", True) else " (reported only)"
    lines: list[str] = []
    for title, verdicts in ((f"Regressions{failing}", ["regressed"]),
                            ("Improvements", ["improved"]),
                            ("Beyond the threshold but not significant",
                             ["worse, not significant", "better, not significant"])):
        rows = compare_rows(compare, verdicts)
        if rows:
            lines += [f"### {title}", "", *md_table(COMPARE_HEADERS, rows), ""]
    return lines


def _shift_and_noise_lines(compare: Mapping[str, Any]) -> list[str]:
    """The run's common shift, and the tests whose noise hides their threshold."""
    lines = []
    for shift in compare.get("shifts") or []:
        lines += [f"Common shift of the run ({shift.get('metric')}): "
                  f"{(shift.get('change_rel') or 0) * 100:+.1f}%, {shift.get('verdict')} "
                  f"(detects {_detects(shift.get('detectable'))})", ""]
    hidden = compare.get("undetectable") or []
    if hidden:
        names = ", ".join(f"`{u.get('nodeid')}` ({_detects(u.get('detectable'))})"
                          for u in hidden)
        lines += [f"Noise hides the threshold for: {names}", ""]
    return lines


def render_compare(compare: Mapping[str, Any]) -> list[str]:
    """The regressions / improvements section (empty when nothing was compared)."""
    lines = _baseline_lines(compare)
    counts = compare.get("counts") or {}
    if counts:
        lines += [", ".join(f"{n} {k}" for k, n in counts.items() if n) or "nothing compared",
                  ""]
    lines.extend(_verdict_tables(compare))
    lines.extend(_shift_and_noise_lines(compare))
    if compare.get("rule"):
        lines += [f"_Rule: {compare['rule']}_", ""]
    for message in compare.get("messages") or []:
        lines += [f"> {message}", ""]
    return lines


def render_markdown(entries: Sequence[Entry],
                    compare: Mapping[str, Any] | None) -> str:
    """The whole markdown document: summary table, then the compare verdict."""
    lines = ["## Energy summary", ""]
    if entries:
        lines.extend(summary_table(entries))
    else:
        lines.append("No test was measured.")
    lines.append("")
    if any(e.estimated for e in entries):
        lines += ["_est. = estimated (process CPU time x watts per busy core), not measured_",
                  ""]
    if compare and compare.get("requested"):
        status = compare.get("status")
        title = {"failed": "Energy comparison: FAILED", "passed": "Energy comparison: passed"}
        lines += [f"## {title.get(str(status), 'Energy comparison: ' + str(status))}", ""]
        lines.extend(render_compare(compare))
    return "\n".join(lines).rstrip() + "\n"
