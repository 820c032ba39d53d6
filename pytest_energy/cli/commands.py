"""The ``pytest-energy`` commands, one method each, writing to ``out`` and ``err``.

A method returns the exit code, or raises :class:`CliError` (exit 3) with a message
that says what to do. Tests pass ``io.StringIO`` streams and read what was printed.

Everything printed as text goes through :func:`~pytest_energy.cli.base.clean`: a
history is written by whoever ran the tests, and its strings reach the terminal.
JSON output escapes control characters by itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, TextIO

from pytest_energy.cli.base import (
    EXIT_OK,
    EXIT_REGRESSION,
    CliError,
    clean,
    machine_label,
    meters_label,
    sparkline,
    table,
)
from pytest_energy.cli.plot import check_output, draw_history, draw_run, pyplot, save_figure
from pytest_energy.entry import Entry
from pytest_energy.history.compare import comparison_summary
from pytest_energy.history.gate_compare import Decision, baseline_runs, decide, load, shift_lines
from pytest_energy.history.location import StorageLocation, storage_location
from pytest_energy.history.machine import (
    cpu_model,
    fingerprint,
    identity_differences,
    machine_identity,
)
from pytest_energy.history.metrics import METRICS, Metric, Threshold
from pytest_energy.history.runs import INCOMPLETE, RunInfo, prune_candidates
from pytest_energy.history.schema import SCHEMA_VERSION
from pytest_energy.history.storage import HistoryStore, StorageError, open_storage
from pytest_energy.report.jsonreport import atomic_writer, machine_info

EXPORT_VERSION = 1
RUN_HEADERS = ["run", "name", "created", "commit", "branch", "tests", "status", "machine",
               "hardware", "meters"]
SHOW_HEADERS = ["test", "outcome", "J/call", "J/item", "latency", "trials", "CV", "J budget",
                "verdict"]
HISTORY_HEADERS = ["run", "created", "commit", "machine", "{metric}", "change", "outcome"]


def _show_row(entry: Entry) -> list[str]:
    """One test of ``show``: its numbers, budget and verdict, ``-`` where absent."""
    joules, latency = METRICS["joules"], METRICS["latency_ms"]
    cv = entry.joules_spread.cv if entry.joules_spread is not None else None
    est = " est." if entry.estimated and entry.joules_per_call else ""
    return [
        entry.nodeid, str(entry.outcome or "-"),
        joules.format(entry.joules_per_call) + est,
        METRICS["joules_per_item"].format(entry.joules_per_item),
        latency.format(latency.value(entry)),
        str(len(entry.trials)),
        f"{cv * 100:.1f}%" if cv is not None else "-",
        joules.format(entry.budget.joules) if entry.budget.joules else "-",
        str(entry.verdict or "-")]


def _trend_rows(items: list[tuple[RunInfo, Entry]], values: list[float | None],
                metric: Metric) -> list[list[str]]:
    """``history`` rows for one test, oldest first, each with its change since the last."""
    rows = []
    previous: float | None = None
    for (run, entry), value in zip(items, values, strict=True):
        change = "-"
        if value is not None and previous:
            change = f"{(value - previous) / previous * 100:+.1f}%"
        rows.append([run.label, run.created, run.commit_label, run.fingerprint[:8],
                     metric.format(value), change, str(entry.outcome or "-")])
        previous = value if value is not None else previous
    return rows


def select_tests(storage: HistoryStore, test: str, *, glob: bool = False,
                 **where: Any) -> list[tuple[RunInfo, Entry]]:
    """The stored results ``history`` and ``plot --history`` show: with ``glob``, tests
    matching the glob; else the test with exactly this id (``t.py::t[8]``: brackets are
    text) and, when there is none, tests whose id contains the text."""
    if glob:
        return storage.history(pattern=test, glob=True, **where)
    return storage.history([test], **where) or storage.history(pattern=test, **where)


def _indented(value: Any, indent: int) -> str:
    """``value`` as ``json.dumps(indent=2)`` writes it ``indent`` spaces deep."""
    return json.dumps(value, indent=2).replace("\n", "\n" + " " * indent)


def write_export(out: IO[str], runs: Iterable[RunInfo],
                 results: Callable[[int], Iterable[Mapping[str, Any]]]) -> int:
    """Write the export JSON to ``out`` as it is read: one run's header, then its results
    one at a time from ``results(run_id)``, so memory does not grow with the history.
    The text is what ``json.dumps(export, indent=2)`` gives. Returns the runs written."""
    out.write(f'{{\n  "version": {EXPORT_VERSION},\n  "schema": {SCHEMA_VERSION},\n  "runs": [')
    count = 0
    for count, run in enumerate(runs, start=1):
        out.write(",\n    {" if count > 1 else "\n    {")
        for key, value in run.to_dict().items():
            out.write(f"\n      {json.dumps(key)}: {_indented(value, 6)},")
        out.write('\n      "results": [')
        written = 0
        for written, entry in enumerate(results(run.id), start=1):
            out.write(("," if written > 1 else "") + "\n        " + _indented(entry, 8))
        out.write("\n      ]\n    }" if written else "]\n    }")
    out.write("\n  ]\n}\n" if count else "]\n}\n")
    return count


def _verdict_line(regressed: list[str], failed: bool) -> str:
    if failed:
        return f"FAILED: {len(regressed)} test(s) regressed: {', '.join(regressed)}"
    if regressed:
        return f"{len(regressed)} test(s) regressed (report only: --fail none)"
    return "passed: no significant regression"


class Cli:
    """The commands, writing to ``out`` and ``err`` (tests pass StringIO)."""

    def __init__(self, storage_dir: Path | StorageLocation, out: TextIO, err: TextIO) -> None:
        self.storage_dir = storage_dir
        self.out = out
        self.err = err

    def print(self, text: str = "") -> None:
        self.out.write(clean(text) + "\n")

    def warn(self, text: str) -> None:
        self.err.write(clean(text) + "\n")

    @property
    def location(self) -> StorageLocation:
        """Where the history is: a directory (SQLite) or a PostgreSQL URL."""
        return storage_location(self.storage_dir)

    def open(self) -> HistoryStore:
        """The history, read-only; a CliError that says how to make one when there is none."""
        try:
            storage = open_storage(self.location, create=False)
        except StorageError as exc:
            raise CliError(str(exc)) from None
        if storage is None:
            raise CliError(
                f"no results history at {self.location.display}: save runs with pytest "
                "--energy-save=NAME or --energy-autosave, or point --storage (or "
                "$PYTEST_ENERGY_STORAGE) at the directory holding one")
        return storage

    def resolve(self, storage: HistoryStore, ref: str) -> RunInfo:
        """The run ``ref`` names, or a CliError listing the named runs there are."""
        run = storage.run(ref)
        if run is None:
            names = sorted({r.name for r in storage.runs() if r.name})
            shown = f"#{ref}" if ref.isdigit() else repr(ref)
            raise CliError(f"no run {shown} in {storage.display} (named runs: "
                           f"{', '.join(names) or 'none'}; see pytest-energy runs)")
        return run

    def resolve_baseline(self, storage: HistoryStore, ref: str) -> RunInfo:
        """The baseline ``ref`` names: never an incomplete run (a test was interrupted
        or errored). A name or ``latest`` means its newest complete run; an id of an
        incomplete run is refused."""
        run = storage.run(ref, complete_only=True) or self.resolve(storage, ref)
        if run.status == INCOMPLETE:
            raise CliError(f"run {run.label} is incomplete (a measured test was interrupted "
                           "or errored): it is never a baseline")
        return run

    # ----- commands ---------------------------------------------------------------------
    def runs(self, args: argparse.Namespace) -> int:
        with self.open() as storage:
            runs = storage.runs(limit=args.limit)
        if args.json:
            self.print(json.dumps([r.to_dict() for r in runs], indent=2))
            return EXIT_OK
        if not runs:
            self.print(f"no runs stored in {self.storage_dir}")
            return EXIT_OK
        rows = [[f"#{r.id}", r.name or "-", r.created, r.commit_label, r.branch or "-",
                 str(r.tests), r.status or "-", r.fingerprint[:8], machine_label(r.machine),
                 meters_label(r.meter)] for r in runs]
        self.print(table(rows, RUN_HEADERS))
        return EXIT_OK

    def show(self, args: argparse.Namespace) -> int:
        with self.open() as storage:
            run = self.resolve(storage, args.run)
            if args.json:  # as stored, unchanged
                entries_json = storage.entries_json(run.id)
                self.print(json.dumps({**run.to_dict(), "tests_results": entries_json},
                                      indent=2))
                return EXIT_OK
            entries = storage.entries(run.id)
        self.print(f"run {run.label}: {run.created}, {run.commit_label}"
                   + (f" on {run.branch}" if run.branch else "")
                   + f", {machine_label(run.machine)} (machine {run.fingerprint[:8]}), "
                     f"meters {meters_label(run.meter)}")
        self.print(table([_show_row(entry) for entry in entries], SHOW_HEADERS))
        return EXIT_OK

    def _check_same_hardware(self, base: RunInfo, new: RunInfo, force: bool) -> None:
        """Runs from different hardware: an error, or with ``--force`` a warning."""
        if base.fingerprint == new.fingerprint:
            return
        diffs = identity_differences(machine_identity(base.machine),
                                     machine_identity(new.machine))
        message = (f"runs {base.label} and {new.label} come from different hardware: "
                   f"{'; '.join(diffs) or 'the machine fingerprint differs'}")
        if not force:
            raise CliError(message + " (hostname, clocks and temperatures do not "
                           "count); add --force to compare anyway")
        self.warn(f"pytest-energy: warning: {message}")

    def compare(self, args: argparse.Namespace) -> int:
        """B against the baseline A: the newest --baseline-runs runs of A's name saved
        before B (A alone when A is a run id), judged like the plugin's gate."""
        thresholds: tuple[Threshold, ...] = args.fail
        with self.open() as storage:
            base = self.resolve_baseline(storage, args.baseline)
            new = self.resolve(storage, args.current)
            self._check_same_hardware(base, new, args.force)
            runs = [r for r in baseline_runs(storage, base, args.baseline, 1000)
                    if r.id < new.id][:args.baseline_runs] or [base]
            decision = decide(load(storage, runs, new.machine), storage.entries(new.id),
                              new.machine,
                              storage.meter_identities(new.id), thresholds, args.alpha,
                              base.label)
        failed = bool(decision.regressed and thresholds)
        if args.json:
            self.print(json.dumps({
                "baseline": base.to_dict(), "current": new.to_dict(),
                "baseline_runs": [r.id for r in runs],
                "thresholds": [t.text for t in thresholds], "alpha": args.alpha,
                **decision.result, "regressions": decision.regressed, "failed": failed},
                indent=2))
        else:
            self._print_comparison(args, base, new, decision, len(runs))
            self.print(_verdict_line(decision.regressed, failed))
        return EXIT_REGRESSION if failed else EXIT_OK

    def _print_comparison(self, args: argparse.Namespace, base: RunInfo, new: RunInfo,
                          decision: Decision, runs: int) -> None:
        earlier = f" and {runs - 1} earlier run(s)" if runs > 1 else ""
        self.print(f"baseline {base.label} ({base.created}, {base.commit_label}){earlier} -> "
                   f"{new.label} ({new.created}, {new.commit_label})")
        self.print(f"rule: {decision.result.get('rule')}")
        for line in comparison_summary(decision.comparisons, notable_only=not args.all,
                                       nothing="nothing"):
            self.print(line)
        for line in shift_lines(decision.result):
            self.print(line)
        if decision.message:
            self.warn(f"warning: {decision.message}")

    def history(self, args: argparse.Namespace) -> int:
        metric = METRICS[args.metric]
        here = fingerprint(machine_identity({**machine_info(), "cpu_model": cpu_model()}))
        with self.open() as storage:
            only = None
            if not args.all_machines and storage.runs(fingerprint=here, limit=1):
                only = here
            pairs = select_tests(storage, args.pattern, glob=args.glob, fingerprint=only,
                                 limit_runs=args.limit)
        if not pairs:
            self.print(f"no stored results for tests matching {args.pattern!r}"
                       + (" on this machine (try --all-machines)" if only else ""))
            return EXIT_OK
        by_test: dict[str, list[tuple[RunInfo, Entry]]] = {}
        for run, entry in pairs:
            by_test.setdefault(entry.nodeid, []).append((run, entry))
        encoding = getattr(self.out, "encoding", None)
        headers = [h.format(metric=metric.label) for h in HISTORY_HEADERS]
        for nodeid, items in by_test.items():
            items.reverse()  # oldest first: trends read left to right
            values = [metric.value(entry) for _, entry in items]
            self.print(f"{nodeid}  {metric.label}  {sparkline(values, encoding)}")
            self.print(table(_trend_rows(items, values, metric), headers))
            self.print()
        return EXIT_OK

    def plot(self, args: argparse.Namespace) -> int:
        output = check_output(args.output)
        plt = pyplot()  # before reading the history: a missing extra is said first
        metric = METRICS[args.metric]
        with self.open() as storage:
            if args.history:
                pairs = select_tests(storage, args.history, glob=args.glob, limit_runs=50)
            else:
                run = self.resolve(storage, args.run)
                entries = storage.entries(run.id)
        if args.history:
            save_figure(plt, output, lambda axes: draw_history(
                axes, pairs, metric, args.history))
        else:
            save_figure(plt, output, lambda axes: draw_run(
                axes, entries, metric, run.label))
        self.print(f"wrote {output}")
        return EXIT_OK

    def prune(self, args: argparse.Namespace) -> int:
        with self.open() as storage:
            runs = storage.runs()
        doomed = prune_candidates(runs, keep=args.keep, include_named=args.named_too)
        listed = ", ".join(f"#{r.id}" for r in sorted(doomed, key=lambda r: r.id))
        if args.dry_run or not doomed:
            verb = "would delete" if args.dry_run else "nothing to delete:"
            self.print(f"{verb} {len(doomed)} of {len(runs)} run(s)"
                       + (f": {listed}" if doomed else ""))
            return EXIT_OK
        writable = open_storage(self.location, create=True)
        assert writable is not None
        with writable:
            deleted = writable.delete_runs(r.id for r in doomed)
            self.print(f"deleted {deleted} of {len(runs)} run(s): {listed}; kept "
                       f"{len(runs) - deleted}")
            self._compact(writable)
        return EXIT_OK

    def _compact(self, storage: HistoryStore) -> None:
        """VACUUM after a prune: SQLite keeps a deleted run's pages inside the file
        (PostgreSQL's autovacuum reuses them by itself: nothing to do or claim)."""
        try:
            freed = storage.vacuum()
        except StorageError as exc:  # the runs are deleted all the same
            self.warn(f"pytest-energy prune: the file was not compacted: {exc}; run prune "
                      f"again later, or: sqlite3 {storage.display} VACUUM")
            return
        if freed is None:
            self.print(f"{storage.display}: the server reuses the space of deleted runs by "
                       "itself (autovacuum)")
            return
        self.print(f"compacted {storage.display}: {freed / 1e6:.1f} MB given back")

    def export(self, args: argparse.Namespace) -> int:
        """Stream the runs as JSON (see :func:`write_export`), to a file atomically."""
        with self.open() as storage:
            runs = [self.resolve(storage, ref) for ref in args.runs] or storage.runs()
            if not args.output:
                write_export(self.out, runs, storage.iter_entries_json)
                return EXIT_OK
            try:
                with atomic_writer(args.output) as handle:
                    write_export(handle, runs, storage.iter_entries_json)
            except OSError as exc:
                raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        self.print(f"exported {len(runs)} run(s) to {args.output}")
        return EXIT_OK
