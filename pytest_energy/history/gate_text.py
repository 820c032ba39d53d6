"""What the regression gate says: its JSON result, terminal lines, the suggestions file,
the markdown report and the junitxml properties.

Kept apart from :mod:`pytest_energy.history.gate` so the gate's decisions and their
wording can be read (and changed) separately. Everything here is a pure function of
what the gate decided: its JSON ``result`` dict, its comparisons and suggestions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.history.compare import (
    CompareStatus,
    TestComparison,
    comparison_summary,
    counts_text,
)
from pytest_energy.history.metrics import Threshold, format_thresholds
from pytest_energy.history.runs import RunInfo
from pytest_energy.history.stats import SIGNIFICANCE_TEST
from pytest_energy.history.suggest import Suggestion
from pytest_energy.report.markdown import render_markdown

HISTORY_RUNS_FOR_SUGGESTIONS = 10
_DECIDED = ("passed", "failed")  # statuses with a comparison to show


def initial_result(*, storage: str, fingerprint: str, identity: dict[str, Any],
                   thresholds: Sequence[Threshold], alpha: float,
                   requested: bool) -> dict[str, Any]:
    """The JSON "compare" dict before the gate did anything: every key is there, so a
    reader of the JSON report never has to guess which ones a run left out."""
    rule = (f"a test fails when it is worse beyond {format_thresholds(thresholds)} "
            f"and a {SIGNIFICANCE_TEST} gives p <= {alpha:g}"
            if thresholds else "report only (--energy-compare-fail=none)")
    return {
        "requested": requested, "status": "not requested", "storage": storage,
        "fingerprint": fingerprint, "machine_identity": identity, "baseline": None,
        "thresholds": [t.text for t in thresholds], "fail_enabled": bool(thresholds),
        "alpha": alpha, "test": SIGNIFICANCE_TEST, "rule": rule,
        "tests": [], "counts": {}, "regressions": [], "improvements": [], "notes": [],
        "saved": None, "suggestions": None, "markdown": None,
    }


def compare_lines(result: Mapping[str, Any], baseline: RunInfo | None,
                  comparisons: Sequence[TestComparison], thresholds: Sequence[Threshold],
                  alpha: float) -> list[str]:
    """The compare section of the terminal summary (nothing when no comparison was made)."""
    if baseline is None or result.get("status") not in _DECIDED:
        return []
    lines = [f"energy compare: baseline {baseline.label} ({baseline.created}, "
             f"{baseline.commit_label}), rule: worse beyond {format_thresholds(thresholds)} "
             f"and one-sided Mann-Whitney U p <= {alpha:g}"]
    lines.extend(comparison_summary(comparisons))
    lines.extend(f"not compared: {c.nodeid}: {c.reason}" for c in comparisons
                 if c.status == CompareStatus.NOT_COMPARABLE)
    lines.extend(f"note: changed since the baseline: {note}"
                 for note in result.get("notes") or [])
    lines.append(_conclusion(result, baseline, comparisons, thresholds))
    return lines


def _conclusion(result: Mapping[str, Any], baseline: RunInfo,
                comparisons: Sequence[TestComparison], thresholds: Sequence[Threshold]) -> str:
    """The last line: nothing compared, failed, regressed (report only) or passed."""
    regressed = result.get("regressions") or []
    if not any(c.status == CompareStatus.COMPARED for c in comparisons):
        return (f"energy compare: nothing compared: no test measured in both this run "
                f"and {baseline.label}")
    if regressed and thresholds:
        return (f"energy compare FAILED: {len(regressed)} test(s) regressed beyond "
                f"{format_thresholds(thresholds)} (significant): " + ", ".join(regressed))
    if regressed:
        return (f"energy compare: {len(regressed)} test(s) regressed (report only, "
                "--energy-compare-fail=none)")
    return "energy compare passed: no significant regression"


def suggestion_lines(suggestions: Sequence[Suggestion], margin: float, *,
                     header: bool) -> list[str]:
    """One line per suggested marker; with ``header``, what they are based on first."""
    if not suggestions:
        return ["energy budget suggestions: none (every measured test has budgets using "
                "at least half of them)"] if header else []
    lines = []
    if header:
        lines.append(f"energy budget suggestions (p95 of per-trial values x {margin:g}, "
                     f"from this run and up to {HISTORY_RUNS_FOR_SUGGESTIONS} earlier runs "
                     "on this machine):")
    for s in suggestions:
        est = ", estimated meter" if s.estimated else ""
        lines.append(f"  {s.nodeid}: {s.marker}  # {s.reason}; "
                     f"{s.trials} trials, {s.runs} run(s){est}")
    return lines


def suggestions_file(path: str, suggestions: Sequence[Suggestion], margin: float) -> str:
    """What ``--energy-suggest-budgets=PATH`` writes: JSON for a ``.json`` path (for
    tools), else the marker lines as printed (for people)."""
    if path.lower().endswith(".json"):
        return json.dumps({"margin": margin, "statistic": "p95 of per-trial values",
                           "suggestions": [s.to_dict() for s in suggestions]}, indent=2) + "\n"
    return "\n".join(suggestion_lines(suggestions, margin, header=False)) + "\n"


def markdown_report(entries: Sequence[Entry], result: Mapping[str, Any], extra: str) -> str:
    """The ``--energy-markdown`` document: summary and compare verdict, then the
    sections other features add (``extra``: right-sizing, carbon, hints)."""
    text = render_markdown(entries, result)
    if extra:
        text = text.rstrip("\n") + "\n\n" + extra.strip("\n") + "\n"
    return text


def junit_properties(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Suite-level junitxml properties for a finished gate (its ``result`` dict): the
    compare verdict is known only at session end, after the test cases were written."""
    if not result or not result.get("requested"):
        return []
    regressed = result.get("regressions") or []
    props = [
        ("energy_compare_status", str(result.get("status"))),
        ("energy_compare_baseline", _baseline_label(result.get("baseline") or {})),
        ("energy_compare_regressions", str(len(regressed))),
        ("energy_compare_improvements", str(len(result.get("improvements") or []))),
        ("energy_compare_counts", counts_text(result.get("counts") or {})),
    ]
    return props + [("energy_compare_regressed", nodeid) for nodeid in regressed]


def _baseline_label(baseline: Mapping[str, Any]) -> str:
    """``#3 'main'`` from the JSON form of a run (see ``RunInfo.summary``); empty for none."""
    if not baseline:
        return ""
    name = baseline.get("name")
    return f"#{baseline.get('id')}" + (f" {name!r}" if name else "")
