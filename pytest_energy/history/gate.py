"""The regression gate: history, baselines, compare verdicts, suggestions and CI reports.

Budgets catch the absolute; the gate catches "this merge made inference 15% more
expensive". At the end of the session, on the controller only, :meth:`RegressionGate.finish`

1. looks up the baseline (before saving, so a run never compares with itself),
2. compares every test with it (threshold AND significance, see
   :mod:`pytest_energy.history.compare`),
3. suggests budgets from passing runs, saves a complete run with its status (see
   :class:`~pytest_energy.history.runs.SessionOutcome`), writes the markdown report,

and never raises: a broken history database, a missing baseline or an unwritable file
become messages, and :meth:`RegressionGate.exit_status` says what exit code they
deserve. Exit codes (the session keeps a non-zero status it already has):

* ``1`` a test regressed beyond a ``--energy-compare-fail`` threshold, significantly
  (like a failed test: the code under test got worse);
* ``3`` the gate could not do what it was asked: the history cannot be read or written
  (corrupt, newer schema, permissions), the markdown or suggestions file cannot be
  written, or, with ``--energy-compare-strict``, there is no usable baseline (missing,
  or from other hardware). Like an unwritable ``--energy-json`` report.

A missing or refused baseline without ``--energy-compare-strict`` is a warning and the
session passes: the first run on a new runner or branch must not break CI.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_energy._version import __version__
from pytest_energy.entry import Entry
from pytest_energy.history.baseline import find_baseline
from pytest_energy.history.compare import TestComparison
from pytest_energy.history.gate_compare import baseline_runs, decide, load
from pytest_energy.history.gate_config import gate_arguments
from pytest_energy.history.gate_text import (
    HISTORY_RUNS_FOR_SUGGESTIONS,
    SuggestionBasis,
    append_step_summary,
    compare_lines,
    initial_result,
    markdown_report,
    suggestion_lines,
    suggestions_file,
)
from pytest_energy.history.git import git_state
from pytest_energy.history.location import StorageLocation, storage_location
from pytest_energy.history.machine import (
    fingerprint,
    machine_identity,
    noted_differences,
    with_cpu_model,
)
from pytest_energy.history.metrics import Threshold, default_thresholds
from pytest_energy.history.pending import ExitHook, confirm_status, exit_hook
from pytest_energy.history.printable import printable
from pytest_energy.history.runlevel import BaselineRun
from pytest_energy.history.runrecord import meter_identities, now
from pytest_energy.history.runs import INCOMPLETE, LATEST, PASSED, NewRun, RunInfo, SessionOutcome
from pytest_energy.history.storage import HistoryStore, StorageError, open_storage
from pytest_energy.history.store import entries_by_test
from pytest_energy.history.suggest import MarkerSuggestion, suggest_markers
from pytest_energy.parsers import PRINT_ONLY
from pytest_energy.report.jsonreport import atomic_write_text

EXIT_REGRESSION = 1
EXIT_GATE_ERROR = 3


@dataclass(frozen=True)
class _Run:
    """This session's run as the gate sees it: entries, machine, meters, fingerprint."""

    entries: Sequence[Entry]
    machine: dict[str, Any]
    meter: dict[str, Any]
    fingerprint: str
    meter_ids: dict[str, str]


class RegressionGate:
    """Saves, compares, suggests and reports at the end of a session (see module doc)."""

    def __init__(self, *, storage_dir: Path | StorageLocation, save: str | None = None,
                 autosave: bool = False, compare: str | None = None,
                 thresholds: Sequence[Threshold] | None = None, alpha: float = 0.01,
                 baseline_runs: int = 10, strict: bool = False, suggest: str | None = None,
                 margin: float = 1.2, markdown: str | None = None,
                 rootdir: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.storage_dir = storage_dir
        self.save = save
        self.autosave = autosave
        self.compare = compare
        self.thresholds: tuple[Threshold, ...] = (
            default_thresholds() if thresholds is None else tuple(thresholds))
        self.alpha = alpha
        self.baseline_runs = baseline_runs
        self.strict = strict
        self.suggest = suggest
        self.margin = margin
        self.markdown = markdown
        self.rootdir = rootdir or Path.cwd()
        self.environ = os.environ if environ is None else environ
        self.result: dict[str, Any] = {}
        # Sections other features add to the markdown report (right-sizing, carbon, hints).
        self.extra_markdown = ""
        self.comparisons: list[TestComparison] = []
        self.markers: list[MarkerSuggestion] = []  # budget suggestions, one per function
        self._basis = SuggestionBasis()
        self._outcome = SessionOutcome()
        self._unsaved: str | None = None  # why this run may not enter the history
        self._exit_hook: ExitHook | None = None  # pytest's cleanup: confirms the save
        self.messages: list[str] = []  # warnings and errors, shown and put in the JSON
        self.infos: list[str] = []  # what was done (saved to..., markdown written to...)
        self._exit: int | None = None
        self._baseline: RunInfo | None = None

    # ----- construction ------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: pytest.Config,
                    environ: Mapping[str, str] | None = None) -> RegressionGate | None:
        """The gate for this session, or None when no gate option is active.

        Raises EnergyConfigError (naming the option and its source) for a bad value.
        """
        arguments = gate_arguments(config, environ)
        return None if arguments is None else cls(**arguments)

    # ----- the API the plugin calls ------------------------------------------------------
    @property
    def saving(self) -> bool:
        return bool(self.save or self.autosave)

    @property
    def fail_enabled(self) -> bool:
        return bool(self.thresholds)

    def finish(self, entries: Sequence[Entry], meter: dict[str, Any], machine: dict[str, Any],
               session: pytest.Session | SessionOutcome | None = None) -> dict[str, Any]:
        """Compare, suggest, save and write the markdown; return the JSON "compare" dict.

        Called once, on the controller, at session finish, with the session (its exit
        status so far, whether it stopped early) deciding whether the run is saved.
        Never raises.
        """
        try:
            self._outcome = SessionOutcome.of(session)
            self._unsaved = self._outcome.unsaved_reason(entries)
            self._exit_hook = exit_hook(session)
            self._finish(entries, meter, machine)
        except Exception as exc:  # the gate must never turn a run into a traceback
            self._error(f"internal error in the regression gate: {type(exc).__name__}: {exc}")
            self.result["status"] = "error"
        self.result["messages"] = list(self.messages)
        self.result["exit_status"] = self._exit
        return self.result

    def exit_status(self) -> int | None:
        """1 for a significant regression (when failing is on), 3 when the gate could not
        do its job (see module doc), else None."""
        return self._exit

    def summary_lines(self) -> list[str]:
        """Lines for the terminal after the energy summary. Never raises."""
        try:
            return self._summary_lines()
        except Exception as exc:
            return [f"pytest-energy: could not print the compare summary: "
                    f"{type(exc).__name__}: {exc}"]

    # ----- internals -----------------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.messages.append(message)
        self._exit = max(self._exit or 0, EXIT_GATE_ERROR)

    def _finish(self, entries: Sequence[Entry], meter: dict[str, Any],
                machine: dict[str, Any]) -> None:
        machine = with_cpu_model(machine)
        identity = machine_identity(machine)
        run = _Run(entries, machine, meter, fingerprint(identity),
                   meter_identities(entries, meter))
        self.result.update(initial_result(
            storage=storage_location(self.storage_dir).display, fingerprint=run.fingerprint,
            identity=identity, thresholds=self.thresholds, alpha=self.alpha,
            requested=bool(self.compare)))
        storage, storage_error = self._open_storage()
        try:
            self._use_storage(storage, storage_error, run)
        finally:
            if storage is not None:
                storage.close()
        if self.markdown:
            self._write_markdown(entries)

    def _open_storage(self) -> tuple[HistoryStore | None, str | None]:
        """The history when something needs it, and why it could not be opened."""
        if not (self.compare or self.saving or self.suggest):
            return None, None
        try:  # created only for a run that is saved
            return open_storage(self.storage_dir,
                                create=self.saving and self._unsaved is None), None
        except StorageError as exc:
            if self.compare or self.saving:
                self._error(str(exc))
            else:  # suggestions alone can do without history
                self.messages.append(f"budget suggestions use this run only: {exc}")
            return None, str(exc)

    def _use_storage(self, storage: HistoryStore | None, storage_error: str | None,
                     run: _Run) -> None:
        """Compare first (a run never compares with itself), then suggest, then save."""
        if self.compare:
            if storage_error is None:
                self._compare(storage, run)
            else:
                self.result["status"] = "error"
        if self.suggest:
            self._suggest(storage, run)
        if self.saving and self._unsaved is not None:
            self._not_saved(self._unsaved)
        elif self.saving and storage is not None:
            self._save(storage, run)

    def _run_status(self, run: _Run) -> str:
        return self._outcome.run_status(run.entries, regressed=bool(self.result["regressions"]))

    def _not_saved(self, why: str) -> None:
        """One line: a warning when a named run was asked for (CI relies on it)."""
        self.result["not_saved"] = why
        if self.save:
            self.messages.append(f"not saved to the history: {why}")
        else:
            self.infos.append(f"energy history: run not saved to the history: {why}")

    # ----- comparing -----------------------------------------------------------------------
    def _compare(self, storage: HistoryStore | None, run: _Run) -> None:
        try:
            baseline = self._baseline_for(storage, run)
            if storage is None or baseline is None:
                return
            runs = baseline_runs(storage, baseline, self.compare or LATEST, self.baseline_runs)
            loaded = load(storage, runs, run.machine)
        except StorageError as exc:
            self.result["status"] = "error"
            self._error(str(exc))
            return
        self.result["baseline"]["runs"] = [r.id for r in runs]
        self._judge(baseline, loaded, run)

    def _baseline_for(self, storage: HistoryStore | None, run: _Run) -> RunInfo | None:
        """The newest usable baseline run, or None after saying why there is none."""
        lookup = find_baseline(storage, self.compare or LATEST, run.fingerprint, run.machine,
                               str(self.result["storage"]))
        if lookup.run is not None:  # also a refused one: the report names it
            self._baseline = lookup.run
            self.result["baseline"] = lookup.run.summary()
        if lookup.missing is not None:
            self._no_baseline(lookup.missing)
            return None
        if lookup.refused is not None:
            self._refuse(lookup.refused)
            return None
        return lookup.run

    def _judge(self, baseline: RunInfo, runs: Sequence[BaselineRun], run: _Run) -> None:
        """Judge this run against the baseline runs and decide: passed, failed, refused."""
        decision = decide(runs, run.entries, run.machine, run.meter_ids, self.thresholds,
                          self.alpha, baseline.label)
        self.comparisons = decision.comparisons
        self.result.update(decision.result)
        self.result["notes"] = noted_differences(baseline.machine, run.machine, baseline.meter,
                                                 run.meter)
        if decision.message:
            self.messages.append(decision.message)
        if decision.refused:
            self._refuse(decision.refused)
            return
        self.result["regressions"] = decision.regressed
        if decision.regressed and self.fail_enabled:
            self.result["status"] = "failed"
            self._exit = max(self._exit or 0, EXIT_REGRESSION)
        else:
            self.result["status"] = "passed"

    def _no_baseline(self, why: str) -> None:
        self._unusable("no baseline", f"no baseline to compare with: {why}; save one with "
                       "--energy-save=NAME or --energy-autosave on this machine",
                       "(--energy-compare-strict makes this an error)")

    def _refuse(self, why: str) -> None:
        self._unusable("refused", f"comparison refused: {why}", "(--energy-compare-strict)")

    def _unusable(self, status: str, problem: str, strict_note: str) -> None:
        """No usable baseline: an error with --energy-compare-strict, else a warning (the
        first run on a new runner or branch must not break CI)."""
        self.result["status"] = status
        if self.strict:
            self._error(f"{problem} {strict_note}")
        else:
            self.messages.append(f"{problem}. Passing (--energy-compare-strict makes this an "
                                 "error)")

    # ----- suggesting, saving, markdown ----------------------------------------------------------
    def _suggest(self, storage: HistoryStore | None, run: _Run) -> None:
        """From complete, passing runs only: this run when it passed and did not
        regress, and earlier runs saved as passed on this machine."""
        history, earlier = self._suggestion_history(storage, run)
        self._basis = SuggestionBasis.for_run(self._run_status(run), earlier)
        self.markers = suggest_markers(run.entries, history, self.margin,
                                       use_current=self._basis.current)
        self.result.update(
            suggestions=[s.to_dict() for m in self.markers for s in m.suggestions],
            suggested_markers=[m.to_dict() for m in self.markers],
            suggestion_runs=self._basis.to_dict())
        if self.suggest and self.suggest != PRINT_ONLY:
            self._write(self.suggest, suggestions_file(self.suggest, self.markers, self.margin,
                                                       self._basis),
                        "budget suggestions", "--energy-suggest-budgets",
                        "energy budget suggestions written to ")

    def _suggestion_history(self, storage: HistoryStore | None, run: _Run
                            ) -> tuple[dict[str, list[Entry]], int]:
        """Entries of this run's measured tests in earlier passing runs on this machine,
        newest first, and how many runs they come from."""
        measured = [e.nodeid for e in run.entries if e.is_measured]
        try:
            return ({}, 0) if storage is None or not measured else entries_by_test(
                storage, measured, run.fingerprint, PASSED, HISTORY_RUNS_FOR_SUGGESTIONS)
        except StorageError as exc:
            self.messages.append(f"budget suggestions use this run only: {exc}")
            return {}, 0

    def _write(self, path: str, text: str, what: str, option: str, done: str) -> Path | None:
        """Write an output file atomically; a failure is a gate error (exit 3)."""
        try:
            written = atomic_write_text(path, text)
        except OSError as exc:
            self._error(f"could not write the {what} to {path}: {type(exc).__name__}: {exc}; "
                        f"check {option}")
            return None
        self.infos.append(f"{done}{written}")
        return written

    def _save(self, storage: HistoryStore, run: _Run) -> None:
        """Save the run; in a pytest session ``incomplete`` until pytest exits normally
        (see :mod:`.pending`: a Ctrl-C after the save leaves no baseline behind)."""
        commit, dirty, branch = git_state(self.rootdir, self.environ)
        status = self._run_status(run)
        new = NewRun(created=now(),
                     fingerprint=run.fingerprint, machine=run.machine, meter=run.meter,
                     name=self.save, commit=commit, dirty=dirty, branch=branch,
                     plugin_version=__version__,
                     status=INCOMPLETE if self._exit_hook else status)
        try:
            saved = storage.save_run(new, run.entries, run.meter_ids)
        except StorageError as exc:
            self._error(str(exc))
            return
        if self._exit_hook is not None:
            self._exit_hook(functools.partial(confirm_status, self.storage_dir, saved.id,
                                              status))
        facts = ("id", "name", "tests", "created", "commit", "dirty", "branch")  # for push
        self.result["saved"] = {**{key: getattr(saved, key) for key in facts},
                                "path": storage.display, "status": status}
        self.infos.append(f"energy history: saved run {saved.label} ({saved.tests} tests, "
                          f"{saved.commit_label}, {status}) to {storage.display}")

    def _write_markdown(self, entries: Sequence[Entry]) -> None:
        assert self.markdown is not None
        text = markdown_report(entries, dict(self.result, messages=list(self.messages)),
                               self.extra_markdown)
        written = self._write(self.markdown, text, "markdown report", "--energy-markdown",
                              "energy markdown report: ")
        if written is not None:
            self.result["markdown"] = str(written)
        appended, problem = append_step_summary(self.environ, text)
        self.infos.extend(appended)
        self.messages.extend(problem)

    # ----- text ------------------------------------------------------------------------------
    def _summary_lines(self) -> list[str]:
        lines: list[str] = []
        if self.compare:
            lines.extend(compare_lines(self.result, self._baseline, self.comparisons,
                                       self.thresholds, self.alpha))
        if self.suggest:
            lines.extend(suggestion_lines(self.markers, self.margin, header=True,
                                          basis=self._basis))
        lines.extend(self.infos)
        lines.extend(f"pytest-energy: {message}" for message in self.messages)
        return [printable(line) for line in lines]  # they quote what the history holds

