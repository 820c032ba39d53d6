"""What the regression gate says: its JSON result, terminal lines, the suggestions file,
the markdown report and the junitxml properties.

Kept apart from :mod:`pytest_energy.history.gate` so the gate's decisions and their
wording can be read (and changed) separately. Everything here is a pure function of
what the gate decided: its JSON ``result`` dict, its comparisons and suggestions, but
:func:`append_step_summary`, which hands the markdown to GitHub's job page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.history.compare import (
    CompareStatus,
    TestComparison,
    comparison_summary,
    counts_text,
)
from pytest_energy.history.gate_compare import shift_lines
from pytest_energy.history.metrics import Threshold, format_thresholds
from pytest_energy.history.runs import RunInfo, why_not_passing
from pytest_energy.history.stats import SIGNIFICANCE_TEST
from pytest_energy.history.suggest import MarkerSuggestion
from pytest_energy.report.markdown import render_markdown

HISTORY_RUNS_FOR_SUGGESTIONS = 10
_DECIDED = ("passed", "failed")  # statuses with a comparison to show


@dataclass(frozen=True)
class SuggestionBasis:
    """The runs suggestions learned from: this run or not (and why), and how many
    earlier complete, passing runs on this machine."""

    current: bool = True
    why_not_current: str | None = None
    earlier_runs: int = 0

    @classmethod
    def for_run(cls, status: str, earlier_runs: int) -> SuggestionBasis:
        """This run is learned from only when its status is ``passed``."""
        why = why_not_passing(status)
        return cls(why is None, why, earlier_runs)

    def text(self) -> str:
        runs = f"{self.earlier_runs} earlier complete, passing run(s) on this machine"
        if self.current:
            return f"this run and {runs}"
        return f"{runs}; this run is not used: {self.why_not_current or 'not passing'}"

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "why_not_current": self.why_not_current,
                "earlier_runs": self.earlier_runs}


def initial_result(*, storage: str, fingerprint: str, identity: dict[str, Any],
                   thresholds: Sequence[Threshold], alpha: float,
                   requested: bool) -> dict[str, Any]:
    """The JSON "compare" dict before the gate did anything: every key is there, so a
    reader of the JSON report never has to guess which ones a run left out."""
    rule = (f"worse beyond {format_thresholds(thresholds)} and beyond the baseline runs' "
            f"run-to-run spread (alpha {alpha:g})"
            if thresholds else "report only (--energy-compare-fail=none)")
    return {
        "requested": requested, "status": "not requested", "storage": storage,
        "fingerprint": fingerprint, "machine_identity": identity, "baseline": None,
        "thresholds": [t.text for t in thresholds], "fail_enabled": bool(thresholds),
        "alpha": alpha, "test": SIGNIFICANCE_TEST, "rule": rule,
        "tests": [], "counts": {}, "regressions": [], "improvements": [], "notes": [],
        "saved": None, "not_saved": None, "suggestions": None, "suggested_markers": None,
        "suggestion_runs": None, "markdown": None,
    }


def compare_lines(result: Mapping[str, Any], baseline: RunInfo | None,
                  comparisons: Sequence[TestComparison], thresholds: Sequence[Threshold],
                  alpha: float) -> list[str]:
    """The compare section of the terminal summary (nothing when no comparison was made)."""
    if baseline is None or result.get("status") not in _DECIDED:
        return []
    runs = int(result.get("baseline_runs") or 1)
    earlier = f" and {runs - 1} earlier run(s)" if runs > 1 else ""
    lines = [f"energy compare: baseline {baseline.label} ({baseline.created}, "
             f"{baseline.commit_label}){earlier}, rule: {result.get('rule')}"]
    lines.extend(comparison_summary(comparisons))
    lines.extend(shift_lines(result))
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
        return (f"energy compare FAILED: {len(regressed)} regressed beyond "
                f"{format_thresholds(thresholds)} and the baseline's run-to-run spread: "
                + ", ".join(regressed))
    if regressed:
        return (f"energy compare: {len(regressed)} test(s) regressed (report only, "
                "--energy-compare-fail=none)")
    return "energy compare passed: no significant regression"


def suggestion_lines(markers: Sequence[MarkerSuggestion], margin: float, *, header: bool,
                     basis: SuggestionBasis | None = None) -> list[str]:
    """One paste-ready marker per test function (with a note and per-variant marks when
    its variants differ); with ``header``, which runs they were learned from first."""
    basis = basis or SuggestionBasis()
    if not markers:
        if not header:
            return []
        if not basis.current and not basis.earlier_runs:
            return [f"energy budget suggestions: none: this run is not used "
                    f"({basis.why_not_current}) and no earlier complete, passing run on "
                    "this machine measured these tests"]
        return ["energy budget suggestions: none (every measured test has budgets using "
                "at least half of them)"]
    lines = []
    if header:
        lines.append(f"energy budget suggestions (p95 of per-trial values x {margin:g}, "
                     f"from {basis.text()}; up to {HISTORY_RUNS_FOR_SUGGESTIONS} runs per "
                     "test; failed, regressed and interrupted runs are never used):")
    for marker in markers:
        lines.extend(_marker_lines(marker))
    return lines


def _marker_lines(marker: MarkerSuggestion) -> list[str]:
    """``  test: @pytest.mark.energy_budget(...)  # why; evidence``, then any note."""
    variants = marker.variants
    est = ", estimated meter" if any(v.entry.estimated for v in variants) else ""
    reasons = "; ".join(dict.fromkeys(s.reason for s in marker.suggestions))
    evidence = (f"{sum(v.trials for v in variants)} trials, "
                f"{max(v.runs for v in variants)} run(s){est}")
    if not marker.parametrized:
        return [f"  {variants[0].entry.nodeid}: {marker.marker}  # {reasons}; {evidence}"]
    head = (f"{len(variants)} variants, worst {marker.worst}" if len(variants) > 1
            else f"variant {variants[0].label} only")
    return [f"  {marker.function}: {marker.marker or '(no one marker: see the note)'}  "
            f"# {head}; {reasons}; {evidence}", *_note_lines(marker)]


def _note_lines(marker: MarkerSuggestion) -> list[str]:
    """Why the variants are a poor fit for one marker, and each one's own mark."""
    if not marker.note:
        return []
    return [f"    # note: variants differ: {marker.note}. One marker gives every variant the "
            "worst one's budgets, and a test takes one energy_budget marker (drop the "
            "variants' own marks to use it); per variant instead:",
            *(f"    #   {mark}," for _nodeid, mark in marker.variant_marks())]


def suggestions_file(path: str, markers: Sequence[MarkerSuggestion], margin: float,
                     basis: SuggestionBasis | None = None) -> str:
    """What ``--energy-suggest-budgets=PATH`` writes: JSON for a ``.json`` path (for
    tools: per test, per function, and which runs), else the marker lines as printed
    (for people)."""
    if path.lower().endswith(".json"):
        return json.dumps({
            "margin": margin, "statistic": "p95 of per-trial values",
            "suggestions": [s.to_dict() for m in markers for s in m.suggestions],
            "markers": [m.to_dict() for m in markers],
            "runs": (basis or SuggestionBasis()).to_dict()}, indent=2) + "\n"
    return "\n".join(suggestion_lines(markers, margin, header=False)) + "\n"


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


def append_step_summary(environ: Mapping[str, str], text: str) -> tuple[list[str], list[str]]:
    """GitHub shows ``$GITHUB_STEP_SUMMARY`` on the job page: the report lands there.
    Returns (what was done, problems) as lines for the gate; never raises."""
    step_summary = environ.get("GITHUB_STEP_SUMMARY", "").strip()
    if not step_summary:
        return [], []
    try:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    except OSError as exc:
        return [], [f"could not append to $GITHUB_STEP_SUMMARY ({step_summary}): "
                    f"{type(exc).__name__}: {exc}"]
    return ["energy markdown appended to $GITHUB_STEP_SUMMARY"], []
