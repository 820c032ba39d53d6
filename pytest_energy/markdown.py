"""The energy summary and the compare verdict as GitHub-flavoured markdown.

Written by ``--energy-markdown=PATH`` and appended to ``$GITHUB_STEP_SUMMARY`` so a CI
job page shows the table and any regression without opening the log. The same
numbers as the terminal summary, as text a reviewer can paste into a PR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_energy.units import format_duration_ms, format_energy


def _cell(text: object) -> str:
    """A table cell: pipes escaped, newlines folded (parametrize ids may hold either)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join(" --- " for _ in headers) + "|"]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _energy(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    text = format_energy(value) if value is not None else "-"
    return f"{text} est." if value is not None and entry.get("estimated") else text


def _budget_use(entry: Mapping[str, Any]) -> str:
    use = entry.get("budget_use") or {}
    parts = [f"{label} {_percent(use[key])}" for key, label in (("joules", "J"),
                                                                 ("latency", "t"))
             if use.get(key) is not None]
    return " ".join(parts) or "-"


def _percent(fraction: float) -> str:
    return "<1%" if 0 < fraction < 0.005 else f"{fraction * 100:.0f}%"


def _verdict(entry: Mapping[str, Any]) -> str:
    outcome, verdict = entry.get("outcome"), entry.get("verdict")
    if outcome in ("skipped", "error") or (outcome == "failed" and verdict in (
            "measured", "ok", "not measured")):
        return str(outcome)
    if verdict == "over budget":
        return "**over budget**" + (" (xfail)" if outcome == "xfailed" else "")
    return str(verdict)


def _rating(rating: object) -> str:
    if not isinstance(rating, int):
        return "-"
    return "\u2605" * rating + "\u2606" * (5 - rating)


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


def summary_table(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for entry in entries:
        latency = entry.get("latency_ms") or {}
        rows.append([f"`{entry.get('nodeid')}`", _energy(entry, "joules_per_call"),
                     _energy(entry, "joules_per_item"),
                     format_duration_ms(latency.get("median")) if latency else "-",
                     _budget_use(entry), _rating(entry.get("rating")),
                     entry.get("meter") or "-", _verdict(entry)])
    return _table(["test", "J/call", "J/item", "latency (median)", "budget use", "rating",
                   "meter", "verdict"], rows)


def compare_rows(compare: Mapping[str, Any], verdicts: Sequence[str]) -> list[list[str]]:
    rows = []
    for test in compare.get("tests") or []:
        for metric in test.get("metrics") or []:
            if metric.get("verdict") in verdicts:
                rows.append([f"`{test.get('nodeid')}`", str(metric.get("metric")),
                             _value(metric, "baseline"), _value(metric, "current"),
                             _change(metric), _p(metric.get("p_value")),
                             str(metric.get("verdict"))])
    return rows


COMPARE_HEADERS = ["test", "metric", "baseline", "this run", "change", "p", "verdict"]


def render_compare(compare: Mapping[str, Any]) -> list[str]:
    """The regressions / improvements section (empty when nothing was compared)."""
    lines: list[str] = []
    baseline = compare.get("baseline")
    if baseline:
        commit = baseline.get("commit")
        lines.append(f"Baseline: run #{baseline.get('id')}"
                     + (f" `{baseline.get('name')}`" if baseline.get("name") else "")
                     + f", {baseline.get('created')}"
                     + (f", commit `{commit[:10]}`" if commit else "")
                     + (" (dirty)" if baseline.get("dirty") else ""))
        lines.append("")
    counts = compare.get("counts") or {}
    if counts:
        lines.append(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "nothing compared")
        lines.append("")
    regressed = compare_rows(compare, ["regressed"])
    if regressed:
        failing = "" if compare.get("fail_enabled", True) else " (reported only)"
        lines.append(f"### Regressions{failing}")
        lines.append("")
        lines.extend(_table(COMPARE_HEADERS, regressed))
        lines.append("")
    improved = compare_rows(compare, ["improved"])
    if improved:
        lines += ["### Improvements", ""]
        lines.extend(_table(COMPARE_HEADERS, improved))
        lines.append("")
    unsure = compare_rows(compare, ["worse, not significant", "better, not significant"])
    if unsure:
        lines += ["### Beyond the threshold but not significant", ""]
        lines.extend(_table(COMPARE_HEADERS, unsure))
        lines.append("")
    rule = compare.get("rule")
    if rule:
        lines.append(f"_Rule: {rule}_")
        lines.append("")
    for message in compare.get("messages") or []:
        lines.append(f"> {message}")
        lines.append("")
    return lines


def render_markdown(entries: Sequence[Mapping[str, Any]],
                    compare: Mapping[str, Any] | None) -> str:
    """The whole markdown document: summary table, then the compare verdict."""
    lines = ["## Energy summary", ""]
    if entries:
        lines.extend(summary_table(entries))
    else:
        lines.append("No test was measured.")
    lines.append("")
    if any(e.get("estimated") for e in entries):
        lines += ["_est. = estimated (process CPU time x watts per busy core), not measured_",
                  ""]
    if compare and compare.get("requested"):
        status = compare.get("status")
        title = {"failed": "Energy comparison: FAILED", "passed": "Energy comparison: passed"}
        lines += [f"## {title.get(str(status), 'Energy comparison: ' + str(status))}", ""]
        lines.extend(render_compare(compare))
    return "\n".join(lines).rstrip() + "\n"
