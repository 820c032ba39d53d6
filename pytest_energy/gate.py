"""The regression gate: history, baselines, compare verdicts, suggestions and CI reports.

Budgets catch the absolute; the gate catches "this merge made inference 15% more
expensive". At the end of the session, on the controller only, :meth:`RegressionGate.finish`

1. looks up the baseline (before saving, so a run never compares with itself),
2. compares every test with it (threshold AND significance, see
   :mod:`pytest_energy.compare`),
3. suggests budgets from history, saves the run, writes the markdown report,

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

This module is imported by every pytest run (for its options); everything heavier is
imported inside the methods that need it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.options import (
    Resolved,
    Setting,
    _cli_type,
    parse_bool,
    parse_path,
    resolve_setting,
)

if TYPE_CHECKING:
    from pytest_energy.compare import Suggestion, TestComparison, Threshold
    from pytest_energy.storage import RunInfo, Storage

EXIT_REGRESSION = 1
EXIT_GATE_ERROR = 3
PRINT_ONLY = "-"
HISTORY_RUNS_FOR_SUGGESTIONS = 10
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ----- option parsers (shared with the CLI) -------------------------------------------------


def _parse_fail(value: object, *, argument: str) -> tuple[Threshold, ...]:
    from pytest_energy.compare import parse_compare_fail

    return parse_compare_fail(value, argument=argument)


def _parse_alpha(value: object, *, argument: str) -> float:
    from pytest_energy.compare import parse_alpha

    return parse_alpha(value, argument=argument)


def _parse_save(value: object, *, argument: str) -> str:
    from pytest_energy.storage import parse_save_name

    return parse_save_name(value, argument=argument)


def _parse_compare(value: object, *, argument: str) -> str | None:
    """``latest`` (also: true/1/yes), a run id or name; false/0/no/off turn it off."""
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return None
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return "latest"
    if isinstance(value, str) and _looks_like_test_path(value):
        raise EnergyConfigError(
            f"{argument}={value!r} looks like a test path, not a stored run: write "
            "--energy-compare=NAME (with '=') for a named baseline, or put --energy-compare "
            "after the test paths")
    from pytest_energy.storage import parse_run_ref

    return parse_run_ref(value, argument=argument)


def _looks_like_test_path(text: str) -> bool:
    """``pytest --energy-compare tests/`` hands the path to the optional value."""
    text = text.strip()
    return (text.endswith(".py") or "::" in text or "/" in text or os.sep in text
            or os.path.exists(text))


def _parse_suggest(value: object, *, argument: str) -> str | None:
    """``-`` (also: true/1/yes) prints the suggestions; a path also writes them there."""
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return None
    if isinstance(value, str) and value.strip().lower() in _TRUE | {PRINT_ONLY}:
        return PRINT_ONLY
    if isinstance(value, str) and (value.strip().endswith(".py") or "::" in value
                                   or os.path.isdir(value.strip())):
        raise EnergyConfigError(
            f"{argument}={value!r} looks like a test path, not a file to write: write "
            "--energy-suggest-budgets=PATH (with '='), or put --energy-suggest-budgets after "
            "the test paths")
    return parse_path(value, argument=argument)


def parse_margin(value: object, *, argument: str) -> float:
    """Headroom of a suggested budget over the observed p95: a number >= 1."""
    try:
        margin = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        margin = float("nan")
    if isinstance(value, bool) or not (1.0 <= margin <= 100.0):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected a factor >= 1, e.g. 1.2 (20% above "
            "the observed p95)")
    return margin


def _flag(value: object, *, argument: str) -> bool:
    return parse_bool(value, argument=argument)


GATE_SETTINGS: tuple[Setting, ...] = (
    Setting("storage", parse_path, ".energy",
            "directory of the results history (an SQLite file; gets its own .gitignore). "
            "Relative paths: from the current directory on the command line and in the "
            "environment, from the rootdir in ini files (default .energy)"),
    Setting("save", _parse_save, None,
            "store this run in the history under NAME (letters, digits, '.', '_', '-')"),
    Setting("autosave", _flag, False, "store every run in the history (unnamed)", flag=True),
    Setting("compare", _parse_compare, None,
            "compare this run with a stored run: NAME, a run id, or (no value) the latest "
            "run saved on this machine"),
    Setting("compare_fail", _parse_fail, "joules:10%",
            "fail the session when a test got worse beyond METRIC:N% or METRIC:+X (J or ms) "
            "AND significantly (one-sided Mann-Whitney U on per-trial values), e.g. "
            "joules:10%,latency_ms:15%; none = report only (default joules:10%)"),
    Setting("compare_alpha", _parse_alpha, 0.01,
            "significance level of the compare test (default 0.01; with 5 vs 5 trials the "
            "smallest possible p is 0.004)"),
    Setting("compare_strict", _flag, False,
            "make a missing baseline, or one from other hardware, an error (exit 3) "
            "instead of a warning", flag=True),
    Setting("suggest_budgets", _parse_suggest, None,
            "print suggested budgets (observed p95 x margin) for unbudgeted tests and tests "
            "using under half their budget; with a PATH also write them there (.json: JSON)"),
    Setting("suggest_margin", parse_margin, 1.2,
            "headroom of suggested budgets over the observed p95 (default 1.2)"),
    Setting("markdown", parse_path, None,
            "write the energy summary and compare verdict as markdown to PATH (atomically); "
            "also appended to $GITHUB_STEP_SUMMARY when that is set"),
)
GATE_SETTINGS_BY_NAME = {s.name: s for s in GATE_SETTINGS}
_OPTIONAL_VALUE = {"compare": "latest", "suggest_budgets": PRINT_ONLY}
_METAVARS = {"storage": "DIR", "save": "NAME", "compare": "RUN", "compare_fail": "EXPR",
             "compare_alpha": "ALPHA", "suggest_budgets": "PATH", "suggest_margin": "FACTOR",
             "markdown": "PATH"}


def add_gate_options(parser: pytest.Parser) -> None:
    """Register the gate's CLI options (in the "energy" group) and ini keys."""
    group = parser.getgroup("energy", "energy budgets (pytest-energy)")
    for setting in GATE_SETTINGS:
        env_note = f" [env {setting.env}, ini {setting.ini}]"
        cli_help = (setting.help + env_note).replace("%", "%%")  # argparse formats help with %
        if setting.flag:
            group.addoption(setting.cli, action="store_true", default=None, dest=setting.dest,
                            help=cli_help)
        elif setting.name in _OPTIONAL_VALUE:
            group.addoption(setting.cli, action="store", nargs="?",
                            const=_OPTIONAL_VALUE[setting.name], default=None,
                            dest=setting.dest, type=_cli_type(setting),
                            metavar=_METAVARS[setting.name], help=cli_help)
        else:
            group.addoption(setting.cli, action="store", default=None, dest=setting.dest,
                            type=_cli_type(setting), metavar=_METAVARS[setting.name],
                            help=cli_help)
        parser.addini(setting.ini, help=setting.help, type="string", default="")


def resolve_storage_dir(resolved: Resolved, *, invocation_dir: Path, rootdir: Path) -> Path:
    """Relative storage paths: from the invocation dir for CLI/env, the rootdir for ini.

    Like pytest's ``cache_dir``: an ini value is written relative to the project, a
    command-line value relative to where the user typed it.
    """
    path = Path(str(resolved.value)).expanduser()
    if path.is_absolute():
        return path
    base = invocation_dir if resolved.source.startswith(("--", "environment")) else rootdir
    return base / path


# ----- the gate ------------------------------------------------------------------------------


class RegressionGate:
    """Saves, compares, suggests and reports at the end of a session (see module doc)."""

    def __init__(self, *, storage_dir: Path, save: str | None = None, autosave: bool = False,
                 compare: str | None = None, thresholds: Sequence[Threshold] | None = None,
                 alpha: float = 0.01, strict: bool = False, suggest: str | None = None,
                 margin: float = 1.2, markdown: str | None = None,
                 rootdir: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        from pytest_energy.compare import DEFAULT_FAIL, parse_compare_fail

        self.storage_dir = storage_dir
        self.save = save
        self.autosave = autosave
        self.compare = compare
        self.thresholds: tuple[Threshold, ...] = (
            parse_compare_fail(DEFAULT_FAIL) if thresholds is None else tuple(thresholds))
        self.alpha = alpha
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
        self.suggestions: list[Suggestion] = []
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
        values = {s.name: resolve_setting(s, config, environ) for s in GATE_SETTINGS}
        if not values["compare"].value:
            for name in ("compare_fail", "compare_strict", "compare_alpha"):
                resolved = values[name]
                if resolved.source.startswith("--"):
                    raise EnergyConfigError(
                        f"{resolved.source} has no effect without --energy-compare: add "
                        "--energy-compare (latest run on this machine) or --energy-compare=NAME")
        active = (values["save"].value or values["autosave"].value
                  or values["compare"].value or values["suggest_budgets"].value
                  or values["markdown"].value)
        if not active:
            return None
        thresholds = values["compare_fail"].value
        if isinstance(thresholds, str):  # the default, parsed only when the gate is used
            thresholds = _parse_fail(thresholds, argument="compare_fail")
        invocation_dir = Path(config.invocation_params.dir)
        return cls(
            storage_dir=resolve_storage_dir(values["storage"], invocation_dir=invocation_dir,
                                            rootdir=Path(config.rootpath)),
            save=values["save"].value, autosave=bool(values["autosave"].value),
            compare=values["compare"].value, thresholds=thresholds,
            alpha=float(values["compare_alpha"].value),
            strict=bool(values["compare_strict"].value),
            suggest=values["suggest_budgets"].value,
            margin=float(values["suggest_margin"].value),
            markdown=values["markdown"].value, rootdir=Path(config.rootpath), environ=environ)

    # ----- the API the plugin calls ------------------------------------------------------
    @property
    def saving(self) -> bool:
        return bool(self.save or self.autosave)

    @property
    def fail_enabled(self) -> bool:
        return bool(self.thresholds)

    def finish(self, entries: list[dict[str, Any]], meter: dict[str, Any],
               machine: dict[str, Any]) -> dict[str, Any]:
        """Compare, suggest, save and write the markdown; return the JSON "compare" dict.

        Called once, on the controller, at session finish. Never raises.
        """
        try:
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

    def _finish(self, entries: list[dict[str, Any]], meter: dict[str, Any],
                machine: dict[str, Any]) -> None:
        from pytest_energy.compare import (
            SIGNIFICANCE_TEST,
            cpu_model,
            fingerprint,
            format_thresholds,
            machine_identity,
            meter_identity,
        )
        from pytest_energy.storage import StorageError, db_path, open_storage

        machine = dict(machine)
        if not machine.get("cpu_model"):
            machine["cpu_model"] = cpu_model()
        identity = machine_identity(machine)
        fp = fingerprint(identity)
        meter_ids = {str(e.get("nodeid")): meter_identity(e, meter) for e in entries}
        self.result.update({
            "requested": bool(self.compare), "status": "not requested",
            "storage": str(db_path(self.storage_dir)), "fingerprint": fp,
            "machine_identity": identity, "baseline": None,
            "thresholds": [t.text for t in self.thresholds], "fail_enabled": self.fail_enabled,
            "alpha": self.alpha, "test": SIGNIFICANCE_TEST,
            "rule": (f"a test fails when it is worse beyond {format_thresholds(self.thresholds)} "
                     f"and a {SIGNIFICANCE_TEST} gives p <= {self.alpha:g}"
                     if self.fail_enabled else "report only (--energy-compare-fail=none)"),
            "tests": [], "counts": {}, "regressions": [], "improvements": [], "notes": [],
            "saved": None, "suggestions": None, "markdown": None,
        })
        storage: Storage | None = None
        storage_error: str | None = None
        if self.compare or self.saving or self.suggest:
            try:
                storage = open_storage(self.storage_dir, create=self.saving)
            except StorageError as exc:
                storage_error = str(exc)
                if self.compare or self.saving:
                    self._error(storage_error)
                else:  # suggestions alone can do without history
                    self.messages.append(f"budget suggestions use this run only: {exc}")
        try:
            if self.compare:
                if storage_error is None:
                    self._compare(storage, entries, machine, meter, fp, meter_ids)
                else:
                    self.result["status"] = "error"
            if self.suggest:
                self._suggest(storage, entries, fp)
            if self.saving and storage is not None:
                self._save(storage, entries, machine, meter, fp, meter_ids)
        finally:
            if storage is not None:
                storage.close()
        if self.markdown:
            self._write_markdown(entries)

    def _compare(self, storage: Storage | None, entries: list[dict[str, Any]],
                 machine: dict[str, Any], meter: dict[str, Any], fp: str,
                 meter_ids: dict[str, str]) -> None:
        from pytest_energy.compare import (
            IMPROVED,
            REGRESSED,
            compare_entries,
            count_verdicts,
            identity_differences,
            machine_identity,
            noted_differences,
        )
        from pytest_energy.storage import StorageError

        where = str(self.result["storage"])
        ref = self.compare or "latest"
        try:
            if storage is None:
                self._no_baseline(f"there is no history at {where} yet")
                return
            baseline = storage.run(ref, fingerprint=fp)
            if baseline is None and ref == "latest":
                newest = storage.run("latest")
                elsewhere = ""
                if newest is not None:
                    diffs = identity_differences(machine_identity(newest.machine),
                                                 machine_identity(machine))
                    elsewhere = (f"; the newest stored run {newest.label} was measured on other "
                                 f"hardware ({'; '.join(diffs) or 'fingerprint differs'})")
                self._no_baseline(f"no run saved on this machine (fingerprint {fp}) in "
                                  f"{where}{elsewhere}")
                return
            if baseline is None and not ref.isdigit():
                baseline = storage.run(ref)  # the name exists, but on another machine?
            if baseline is None:
                names = sorted({r.name for r in storage.runs() if r.name})
                self._no_baseline(
                    f"no run {'#' + ref if ref.isdigit() else repr(ref)} in {where} "
                    f"(named runs: {', '.join(names) or 'none'})")
                return
            self._baseline = baseline
            self.result["baseline"] = _run_summary(baseline)
            if baseline.fingerprint != fp:
                diffs = identity_differences(machine_identity(baseline.machine),
                                             machine_identity(machine))
                self._refuse(
                    f"baseline {baseline.label} was measured on different hardware: "
                    f"{'; '.join(diffs) or 'the machine fingerprint differs'} (hostname, "
                    "clocks and temperatures do not count); compare runs of the same machine "
                    "type, or save a baseline on this one")
                return
            base_entries = storage.entries(baseline.id)
            base_ids = storage.meter_identities(baseline.id)
        except StorageError as exc:
            self.result["status"] = "error"
            self._error(str(exc))
            return
        self.comparisons = compare_entries(base_entries, entries, self.thresholds, self.alpha,
                                           baseline_meters=base_ids, current_meters=meter_ids)
        self.result["tests"] = [c.to_dict() for c in self.comparisons]
        self.result["counts"] = count_verdicts(self.comparisons)
        self.result["notes"] = noted_differences(baseline.machine, machine, baseline.meter, meter)
        compared = [c for c in self.comparisons if c.status == "compared"]
        refused = [c for c in self.comparisons if c.status == "not comparable"]
        if refused and not compared:
            self._refuse(f"baseline {baseline.label}: {refused[0].reason}")
            return
        regressed = [c.nodeid for c in compared if c.verdict == REGRESSED]
        self.result["regressions"] = regressed
        self.result["improvements"] = [c.nodeid for c in compared if c.verdict == IMPROVED]
        if regressed and self.fail_enabled:
            self.result["status"] = "failed"
            self._exit = max(self._exit or 0, EXIT_REGRESSION)
        else:
            self.result["status"] = "passed"

    def _no_baseline(self, why: str) -> None:
        self.result["status"] = "no baseline"
        fix = ("save one with --energy-save=NAME or --energy-autosave on this machine")
        if self.strict:
            self._error(f"no baseline to compare with: {why}; {fix} "
                        "(--energy-compare-strict makes this an error)")
        else:
            self.messages.append(f"no baseline to compare with: {why}; {fix}. Passing "
                                 "(--energy-compare-strict makes this an error)")

    def _refuse(self, why: str) -> None:
        self.result["status"] = "refused"
        if self.strict:
            self._error(f"comparison refused: {why} (--energy-compare-strict)")
        else:
            self.messages.append(f"comparison refused: {why}. Passing "
                                 "(--energy-compare-strict makes this an error)")

    def _suggest(self, storage: Storage | None, entries: list[dict[str, Any]], fp: str) -> None:
        from pytest_energy.compare import is_measured, suggest_budgets
        from pytest_energy.jsonreport import atomic_write_text
        from pytest_energy.storage import StorageError

        history: dict[str, list[dict[str, Any]]] = {}
        measured = [str(e["nodeid"]) for e in entries if is_measured(e)]
        if storage is not None and measured:
            try:
                for _run, entry in storage.history(measured, fingerprint=fp,
                                                   limit_runs=HISTORY_RUNS_FOR_SUGGESTIONS):
                    history.setdefault(str(entry.get("nodeid")), []).append(entry)
            except StorageError as exc:
                self.messages.append(f"budget suggestions use this run only: {exc}")
        self.suggestions = suggest_budgets(entries, history, self.margin)
        self.result["suggestions"] = [s.to_dict() for s in self.suggestions]
        if self.suggest and self.suggest != PRINT_ONLY:
            path = self.suggest
            if path.lower().endswith(".json"):
                import json
                text = json.dumps({"margin": self.margin, "statistic": "p95 of per-trial values",
                                   "suggestions": self.result["suggestions"]}, indent=2) + "\n"
            else:
                text = "\n".join(self._suggestion_lines(header=False)) + "\n"
            try:
                written = atomic_write_text(path, text)
            except OSError as exc:
                self._error(f"could not write the budget suggestions to {path}: "
                            f"{type(exc).__name__}: {exc}; check --energy-suggest-budgets")
            else:
                self.infos.append(f"energy budget suggestions written to {written}")

    def _save(self, storage: Storage, entries: list[dict[str, Any]], machine: dict[str, Any],
              meter: dict[str, Any], fp: str, meter_ids: dict[str, str]) -> None:
        from pytest_energy import __version__
        from pytest_energy.storage import NewRun, StorageError

        commit, dirty, branch = git_state(self.rootdir, self.environ)
        import datetime as _dt
        run = NewRun(created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     fingerprint=fp, machine=machine, meter=meter, name=self.save,
                     commit=commit, dirty=dirty, branch=branch, plugin_version=__version__)
        try:
            saved = storage.save_run(run, entries, meter_ids)
        except StorageError as exc:
            self._error(str(exc))
            return
        self.result["saved"] = {"id": saved.id, "name": saved.name, "path": str(storage.path),
                                "tests": saved.tests}
        self.infos.append(f"energy history: saved run {saved.label} ({saved.tests} tests, "
                          f"{saved.commit_label}) to {storage.path}")

    def _write_markdown(self, entries: list[dict[str, Any]]) -> None:
        from pytest_energy.jsonreport import atomic_write_text
        from pytest_energy.markdown import render_markdown

        assert self.markdown is not None
        text = render_markdown(entries, dict(self.result, messages=list(self.messages)))
        if self.extra_markdown:
            text = text.rstrip("\n") + "\n\n" + self.extra_markdown.strip("\n") + "\n"
        try:
            written = atomic_write_text(self.markdown, text)
        except OSError as exc:
            self._error(f"could not write the markdown report to {self.markdown}: "
                        f"{type(exc).__name__}: {exc}; check --energy-markdown")
        else:
            self.result["markdown"] = str(written)
            self.infos.append(f"energy markdown report: {written}")
        step_summary = self.environ.get("GITHUB_STEP_SUMMARY", "").strip()
        if step_summary:
            try:
                with open(step_summary, "a", encoding="utf-8") as handle:
                    handle.write(text + "\n")
            except OSError as exc:
                self.messages.append(f"could not append to $GITHUB_STEP_SUMMARY "
                                     f"({step_summary}): {type(exc).__name__}: {exc}")
            else:
                self.infos.append("energy markdown appended to $GITHUB_STEP_SUMMARY")

    # ----- text ------------------------------------------------------------------------------
    def _summary_lines(self) -> list[str]:
        lines: list[str] = []
        if self.compare:
            lines.extend(self._compare_lines())
        if self.suggest:
            lines.extend(self._suggestion_lines(header=True))
        lines.extend(self.infos)
        lines.extend(f"pytest-energy: {message}" for message in self.messages)
        return lines

    def _compare_lines(self) -> list[str]:
        from pytest_energy.compare import TABLE_HEADERS, comparison_rows, format_thresholds

        status = self.result.get("status")
        if self._baseline is None or status not in ("passed", "failed"):
            return []
        base = self._baseline
        lines = [f"energy compare: baseline {base.label} ({base.created}, {base.commit_label}), "
                 f"rule: worse beyond {format_thresholds(self.thresholds)} and one-sided "
                 f"Mann-Whitney U p <= {self.alpha:g}"]
        rows = comparison_rows(self.comparisons)
        if rows:
            from tabulate import tabulate

            lines.extend(tabulate(rows, headers=TABLE_HEADERS, tablefmt="simple",
                                  disable_numparse=True).splitlines())
        counts = self.result.get("counts") or {}
        lines.append("compared: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        for comparison in self.comparisons:
            if comparison.status == "not comparable":
                lines.append(f"not compared: {comparison.nodeid}: {comparison.reason}")
        for note in self.result.get("notes") or []:
            lines.append(f"note: changed since the baseline: {note}")
        regressed = self.result.get("regressions") or []
        if not any(c.status == "compared" for c in self.comparisons):
            lines.append(f"energy compare: nothing compared: no test measured in both this run "
                         f"and {base.label}")
        elif regressed and self.fail_enabled:
            lines.append(f"energy compare FAILED: {len(regressed)} test(s) regressed beyond "
                         f"{format_thresholds(self.thresholds)} (significant): "
                         + ", ".join(regressed))
        elif regressed:
            lines.append(f"energy compare: {len(regressed)} test(s) regressed (report only, "
                         "--energy-compare-fail=none)")
        else:
            lines.append("energy compare passed: no significant regression")
        return lines

    def _suggestion_lines(self, *, header: bool) -> list[str]:
        if not self.suggestions:
            return ["energy budget suggestions: none (every measured test has budgets using "
                    "at least half of them)"] if header else []
        lines = []
        if header:
            lines.append(f"energy budget suggestions (p95 of per-trial values x "
                         f"{self.margin:g}, from this run and up to "
                         f"{HISTORY_RUNS_FOR_SUGGESTIONS} earlier runs on this machine):")
        for s in self.suggestions:
            est = ", estimated meter" if s.estimated else ""
            lines.append(f"  {s.nodeid}: {s.marker}  # {s.reason}; "
                         f"{s.trials} trials, {s.runs} run(s){est}")
        return lines


def junit_properties(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Suite-level junitxml properties for a finished gate (its ``result`` dict): the
    compare verdict is known only at session end, after the test cases were written."""
    if not result or not result.get("requested"):
        return []
    baseline = result.get("baseline") or {}
    counts = result.get("counts") or {}
    props = [
        ("energy_compare_status", str(result.get("status"))),
        ("energy_compare_baseline", "" if not baseline else f"#{baseline.get('id')}"
         + (f" {baseline['name']!r}" if baseline.get("name") else "")),
        ("energy_compare_regressions", str(len(result.get("regressions") or []))),
        ("energy_compare_improvements", str(len(result.get("improvements") or []))),
        ("energy_compare_counts", ", ".join(f"{n} {k}" for k, n in counts.items())),
    ]
    props += [("energy_compare_regressed", nodeid) for nodeid in result.get("regressions") or []]
    return props


def _run_summary(run: RunInfo) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "created": run.created, "commit": run.commit,
            "dirty": run.dirty, "branch": run.branch, "fingerprint": run.fingerprint}


def git_state(rootdir: Path, environ: Mapping[str, str] | None = None
              ) -> tuple[str | None, bool | None, str | None]:
    """(commit, dirty, branch) of the checkout at ``rootdir``, or CI variables.

    Dirty means tracked files differ from the commit (untracked files do not count).
    Never raises: no git, no repository or a slow git give None.
    """
    environ = os.environ if environ is None else environ

    def git(*args: str) -> str | None:
        import subprocess
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["git", *args], cwd=str(rootdir), capture_output=True,
                                  text=True, timeout=5)
            if done.returncode == 0:
                return done.stdout.strip()
        return None

    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        commit = environ.get("GITHUB_SHA") or environ.get("CI_COMMIT_SHA") or None
        branch = environ.get("GITHUB_REF_NAME") or environ.get("CI_COMMIT_REF_NAME") or None
        return commit, None, branch
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = None if status is None else bool(status)
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":  # detached, as in most CI checkouts
        branch = environ.get("GITHUB_HEAD_REF") or environ.get("GITHUB_REF_NAME") or None
    return commit, dirty, branch
