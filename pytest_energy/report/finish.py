"""The end of a run: decide the ratings once, then show them everywhere.

Ratings depend on the run's groups, which are known only when every test has
reported; so they are decided here, once, and the rated entries feed every output:
the per-test "energy" sections (re-rendered), junitxml, the summary, the JSON report,
the history and the gate, and markdown. A gate that fails the session also shows where
CI looks: in pytest's final line and as a junitxml testcase.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_energy.entry import Entry
from pytest_energy.history.location import storage_location
from pytest_energy.history.runrecord import RUN_KEY, RunFacts, run_record
from pytest_energy.history.runs import SessionOutcome
from pytest_energy.history.unsaved import (
    push_hint,
    save_failed,
    storage_argument,
    write_unsaved,
)
from pytest_energy.measure.reference import measure_reference, session_pool
from pytest_energy.meters.loader import merge_descriptions
from pytest_energy.options import SETTINGS_BY_NAME, resolve_setting
from pytest_energy.report.columns import COLUMN_NAMES
from pytest_energy.report.compact import lock_wait_lines, render_compact
from pytest_energy.report.details import details_section
from pytest_energy.report.fit import wrap, wrap_all
from pytest_energy.report.jsonreport import (
    build_report,
    machine_info,
    report_text,
    write_report,
)
from pytest_energy.report.junit import (
    GateOutcome,
    add_gate_testcases,
    add_suite_properties,
    set_test_ratings,
)
from pytest_energy.report.summary import meter_lines, render_summary
from pytest_energy.rightsizing import (
    RightsizingOptions,
    markdown_sections,
    render_carbon,
    render_rightsizing,
    rightsize,
    summary_columns,
    summary_lines,
)

if TYPE_CHECKING:
    from pytest_energy.session import EnergySession

SECTION = "energy"
# pytest's final line counts each terminal stats key it does not know as "N key"; it
# pluralises only its own nouns, so the key is chosen by the count.
REGRESSION_KEYS = ("energy regression", "energy regressions")
GATE_ERROR_KEY = "energy gate error"  # one per run: the gate could not do its job (exit 3)
FAILED_KEY = "failed"  # its presence, even empty, makes pytest's final line red


@dataclass(frozen=True)
class GateFinding:
    """One element of a terminal stats key, for pytest's final line to count.

    Not a test report: without ``duration`` or ``longrepr`` it is passed by
    ``--durations``, the short test summary and the failure sections, which read only
    their own keys' reports anyway.
    """

    nodeid: str
    what: str


class RunReport:
    """The rated entries of one run and everything rendered from them."""

    def __init__(self, session: EnergySession) -> None:
        self.session = session
        self.options = RightsizingOptions(**session.rightsizing_values)
        rightsized = rightsize(list(session.entries.values()), self.options)
        self.entries: list[Entry] = rightsized.entries
        session.entries = {entry.nodeid: entry for entry in self.entries}
        self.tables, self.carbon, self.hints = (rightsized.tables, rightsized.carbon,
                                                rightsized.hints)
        self.json_written: str | None = None
        self.html_written: str | None = None
        self.json_report: dict[str, Any] | None = None  # built when written or kept
        self.reference: dict[str, Any] | None = None  # measured when the gate runs
        self.gate_outcome = GateOutcome()
        self._show_final_ratings()

    def _show_final_ratings(self) -> None:
        """The details sections and junitxml's energy_rating were written per test,
        before the groups were known: bring them to the decided rating."""
        for nodeid, report in self.session.reports.items():
            entry = self.session.entries.get(nodeid)
            if entry is not None:
                report.sections = [(name, details_section(entry) if name == SECTION else text)
                                   for name, text in report.sections]
        set_test_ratings(self.session.junit_reporters, self.session.entries)

    @functools.cached_property
    def meters_described(self) -> dict[str, Any]:
        """This process's meters merged with those the xdist workers reported (all known
        once the run report exists: it is built after the meters are described)."""
        own = [self.session.described] if self.session.described is not None else []
        return merge_descriptions(self.session.config.meter, own + self.session.worker_meters)

    def finish(self, session: pytest.Session) -> None:
        """The gate (history, compare, markdown) and the JSON report; when the gate
        could not save the run, the report is kept for ``pytest-energy push``."""
        meter = self.meters_described
        outcome = SessionOutcome.of(session)  # before the gate adds its exit status
        compare = None
        gate = self.session.gate
        if gate is not None:
            compare = self._run_gate(session, meter)
        unsaved = save_failed(gate is not None and gate.saving, compare)
        if self.session.config.json_path or unsaved:
            self._write_json(session, meter, compare, outcome)
        if unsaved:
            self._keep_unsaved(session)
        if self.session.config.html_path:
            self._write_html(session, meter, compare)

    def _run_gate(self, session: pytest.Session, meter: dict[str, Any]) -> dict[str, Any]:
        """Measure the reference workload, then run the gate with it in the machine dict
        (stored with a saved run, so every baseline carries its reference)."""
        gate = self.session.gate
        assert gate is not None
        # only a run that is saved or compared uses it (the gate may only write markdown)
        self.reference = self._reference() if gate.saving or gate.compare else None
        machine = {**machine_info(), "reference": self.reference}
        gate.extra_markdown = markdown_sections(self.tables, self.carbon, self.hints)
        compare = gate.finish(self.entries, meter, machine, session)
        self.gate_outcome = GateOutcome.of(compare)
        add_suite_properties(session.config, compare)
        add_gate_testcases(session.config, self.gate_outcome, gate.summary_lines())
        code = gate.exit_status()
        if code is not None and session.exitstatus == 0:
            session.exitstatus = code
        return compare

    def _reference(self) -> dict[str, Any] | None:
        """The reference workload's energy (see :mod:`pytest_energy.measure.reference`),
        measured once per run on the process that runs the gate, with the session's
        meters; ``None`` on an xdist worker, which never runs the gate."""
        if self.session.is_worker:
            return None
        return measure_reference(session_pool(self.session),
                                 read_timeout_s=self.session.config.read_timeout)

    def _write_json(self, session: pytest.Session, meter: dict[str, Any],
                    compare: dict[str, Any] | None, outcome: SessionOutcome) -> None:
        path = self.session.config.json_path
        try:
            report = build_report(self.entries, meter)
            report.update({"rightsizing": self.tables, "carbon_cost": self.carbon,
                           "hints": self.hints})
            if compare is not None:
                report["compare"] = compare
            if self.reference is not None:
                report["reference"] = self.reference
            report[RUN_KEY] = self._run_record(session, compare, outcome)
            self.json_report = report
            if path:
                self.json_written = str(write_report(path, report))
        except (OSError, ValueError, TypeError) as exc:
            self.session.report_errors.append(
                f"could not write the JSON report to {path}: {type(exc).__name__}: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _write_html(self, session: pytest.Session, meter: dict[str, Any],
                    compare: dict[str, Any] | None) -> None:
        """The HTML report, from the same rated entries (history read only for trends)."""
        path = self.session.config.html_path
        try:
            from pytest_energy.report.html_history import write_run_html  # lazy: history

            self.html_written = write_run_html(path or "", self, meter, compare,
                                               session.config)
        except (OSError, ValueError, TypeError) as exc:
            self.session.report_errors.append(
                f"could not write the HTML report to {path}: {type(exc).__name__}: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _run_record(self, session: pytest.Session, compare: dict[str, Any] | None,
                    outcome: SessionOutcome) -> dict[str, Any]:
        """The run as the gate saves it (see :mod:`pytest_energy.history.runrecord`)."""
        gate = self.session.gate
        saved = (compare or {}).get("saved") or {}
        return run_record(RunFacts(
            self.entries, {**machine_info(), "reference": self.reference},
            name=gate.save if gate is not None else None, outcome=outcome,
            regressed=bool((compare or {}).get("regressions")),
            rootdir=gate.rootdir if gate is not None else Path(session.config.rootpath),
            environ=gate.environ if gate is not None else os.environ,
            created=saved.get("created"),
            git=(saved["commit"], saved["dirty"], saved["branch"]) if saved else None))

    def _keep_unsaved(self, session: pytest.Session) -> None:
        """The gate could not save the run (exit 3 already): say where its results are
        kept, writing them under the rootdir when no --energy-json file holds them."""
        kept = self.json_written
        if kept is None and self.json_report is not None:
            try:
                kept = str(write_unsaved(Path(session.config.rootpath),
                                         report_text(self.json_report)[0]))
            except OSError as exc:
                self.session.report_errors.append(
                    f"could not keep the results for a later push: {type(exc).__name__}: "
                    f"{exc}; add --energy-json=PATH to keep them")
                return
        gate = self.session.gate
        if kept is not None and gate is not None:
            where = storage_argument(storage_location(gate.storage_dir))
            self.session.report_errors.append(push_hint(kept, where))

    # ----- the terminal -------------------------------------------------------------------
    def print_summary(self, terminal: Any) -> None:
        summary = bool(self.entries) and self.session.config.summary
        layout = Layout.of(terminal)
        if summary:
            self._print_tables(terminal, layout)
        elif self.entries:  # the waits explain a slow run even without the table
            for line in lock_wait_lines(self.entries, layout.width):
                terminal.write_line(line)
        self._print_hints(terminal, layout)
        if self.json_written:
            terminal.write_line(f"energy JSON report: {self.json_written}")
        if self.html_written:
            terminal.write_line(f"energy HTML report: {self.html_written}")
        self._print_gate(terminal, summary)
        for error in self.session.report_errors:
            terminal.write_line(f"pytest-energy: {error}", red=True)

    def _print_hints(self, terminal: Any, layout: Layout) -> None:
        if self.entries and self.options.hints and self.hints:
            _section(terminal, "energy hints", "\n".join(
                line for hint in self.hints for line in wrap(f"- {hint}", layout.width)))

    def _print_gate(self, terminal: Any, after_summary: bool) -> None:
        gate = self.session.gate
        gate_lines = gate.summary_lines() if gate is not None else []
        if gate_lines and not after_summary:
            terminal.section("energy regression gate")
        for line in gate_lines:
            terminal.write_line(line, red=line.startswith(
                ("energy compare FAILED", "pytest-energy:")))

    def count_gate(self, terminal: Any) -> None:
        """Put a failed or errored gate into pytest's final line (``1 passed, 1 energy
        regression in 0.12s``, red), by the terminal stats keys that line is built from.

        Through ``_add_stats`` where pytest has it: it also refreshes the line's cached
        colour and known keys, which a run that stopped early (``-x``) would not
        recompute. The empty "failed" key only makes the line red: it adds no count and
        no report.
        """
        outcome = self.gate_outcome
        found: dict[str, list[GateFinding]] = {}
        names = outcome.regressions
        if names:
            key = REGRESSION_KEYS[0] if len(names) == 1 else REGRESSION_KEYS[1]
            found[key] = [GateFinding(name, "energy regression") for name in names]
        if outcome.error:
            found[GATE_ERROR_KEY] = [GateFinding("regression gate", GATE_ERROR_KEY)]
        if found:
            found[FAILED_KEY] = []
        add = getattr(terminal, "_add_stats", None)
        for key, items in found.items():
            if callable(add):
                add(key, items)
            else:
                terminal.stats.setdefault(key, []).extend(items)

    def _print_tables(self, terminal: Any, layout: Layout) -> None:
        encoding = getattr(getattr(terminal, "_tw", None), "encoding", None)
        width = layout.width
        terminal.section("energy summary")
        lines = meter_lines(self.meters_described, width)
        if layout.full:
            extra = summary_columns(self.entries, None)  # carbon/cost get their own table
            lines += render_summary(self.entries, encoding, extra).splitlines()
        else:
            lines += render_compact(self.entries, encoding, width, layout.columns).lines
        # carbon=None: the whole-run total is printed under the carbon table
        lines += wrap_all(summary_lines(self.entries, None, self.options), width)
        lines += lock_wait_lines(self.entries, width)
        for line in lines:
            terminal.write_line(line)
        text = render_rightsizing(self.tables, self.options, encoding, width)
        if text:
            _section(terminal, "energy right-sizing", text)
        if self.carbon is not None:
            _section(terminal, "energy carbon and cost",
                     render_carbon(self.carbon, encoding, width))


@dataclass(frozen=True)
class Layout:
    """How the end of the run is laid out: the full tables, lines as long as they are
    (``-v``, ``--energy-columns=all``); or the user's columns or the compact set, every
    line within the terminal's ``width``."""

    width: int | None  # None: the full layout
    columns: tuple[str, ...] | None

    @property
    def full(self) -> bool:
        return self.width is None

    @classmethod
    def of(cls, terminal: Any) -> Layout:
        columns = resolve_setting(SETTINGS_BY_NAME["columns"], terminal.config).value
        verbose = (getattr(terminal, "verbosity", 0) or 0) > 0
        if columns == COLUMN_NAMES or (columns is None and verbose):
            return cls(None, columns)
        return cls(terminal_width(terminal), columns)


def terminal_width(terminal: Any) -> int:
    """The terminal's width as pytest sees it (``COLUMNS``, else the tty, else 80)."""
    width = getattr(getattr(terminal, "_tw", None), "fullwidth", None)
    return width if isinstance(width, int) and width > 0 else shutil.get_terminal_size().columns


def _section(terminal: Any, title: str, text: str) -> None:
    terminal.section(title)
    for line in text.splitlines():
        terminal.write_line(line)
