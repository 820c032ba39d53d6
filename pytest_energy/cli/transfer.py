"""``pytest-energy push FILE`` and ``pytest-energy copy SRC DST``: runs into a history.

``push`` saves the run of a JSON report (``--energy-json``, or the file a run kept when
its history could not be reached, see :mod:`pytest_energy.history.unsaved`) into the
history the other commands read (``--storage``, ``$PYTEST_ENERGY_STORAGE``, ini
``energy_storage``), as one run with the facts the gate saves (the report's ``run``
key, :mod:`pytest_energy.history.runrecord`). ``copy`` moves a whole history between
SQLite directories and PostgreSQL URLs, oldest run first so the order is kept.

Both are idempotent: a run already in the target (recognised by what it is, see
:func:`~pytest_energy.history.runrecord.run_key`) is not saved again, so a push
retried after a timeout, or a copy run again after an interruption, adds nothing twice.
Each run is saved in one transaction, its results read one at a time from the source:
memory grows with the number of runs (a few numbers each), never with their results.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_energy.cli.base import EXIT_OK, CliError, read_json
from pytest_energy.entry import Entry
from pytest_energy.history.location import StorageLocation, storage_location
from pytest_energy.history.runrecord import (
    RUN_KEY,
    RecordError,
    RunKey,
    entries_digest,
    meter_identities,
    new_run,
    run_key,
)
from pytest_energy.history.runs import NewRun, RunInfo, parse_save_name
from pytest_energy.history.storage import db_path, open_storage
from pytest_energy.options import argparse_type
from pytest_energy.report.jsonreport import JSON_REPORT_VERSION

if TYPE_CHECKING:
    from pytest_energy.cli.commands import Cli
    from pytest_energy.history.store import HistoryStore

LOCATION_HELP = "a history directory (SQLite) or a postgresql:// URL"


def add_transfer_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]
                         ) -> None:
    """The ``push`` and ``copy`` subcommands."""
    push = commands.add_parser(
        "push", help="save the run of a JSON report (--energy-json, or a file kept when "
                     "the history could not be reached) into the history")
    push.add_argument("file", metavar="FILE", help="the JSON report")
    push.add_argument("--name", type=argparse_type(parse_save_name, "--name"),
                      help="save the run under this name (default: the name it was run "
                           "with, --energy-save=NAME)")
    push.set_defaults(handler=run_push)

    copy = commands.add_parser(
        "copy", help="copy every run of one history into another (SQLite <-> "
                     "PostgreSQL); runs already there are skipped")
    copy.add_argument("source", metavar="SRC", help=LOCATION_HELP)
    copy.add_argument("target", metavar="DST", help=f"{LOCATION_HELP} (created if missing)")
    copy.set_defaults(handler=run_copy)


# ----- push -------------------------------------------------------------------------------


@dataclass
class Pushed:
    """The run a report holds, ready to save."""

    run: NewRun
    entries: list[Entry]
    identities: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> RunKey:
        return run_key(self.run, len(self.entries))

    def digest(self) -> str:
        return entries_digest(entry.to_json() for entry in self.entries)


def _not_a_report(path: str, why: str) -> CliError:
    return CliError(f"{path} is not a pytest-energy JSON report ({why}); push takes the "
                    "file pytest --energy-json=PATH writes")


def _read_json(path: str) -> object:
    return read_json(path, name=path, not_json=(
        "{name} is not a pytest-energy JSON report (not JSON: {error}); push takes the "
        "file pytest --energy-json=PATH writes"))


def load_report(path: str) -> dict[str, Any]:
    """The report in ``path``, checked to be one this version can read."""
    report = _read_json(path)
    plugin = report.get("plugin") if isinstance(report, dict) else None
    if not isinstance(report, dict) or not isinstance(plugin, dict) or (
            plugin.get("name") != "pytest-energy"):
        raise _not_a_report(path, "no plugin.name 'pytest-energy'")
    version = report.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _not_a_report(path, f"its version is {version!r}")
    if version > JSON_REPORT_VERSION:
        raise CliError(f"{path} was written by a newer pytest-energy ({plugin.get('version')}"
                       f", report version {version}); upgrade pytest-energy to push it")
    if not isinstance(report.get("tests"), list):
        raise _not_a_report(path, "no 'tests' list")
    return report


def pushed_run(path: str, report: Mapping[str, Any], name: str | None = None) -> Pushed:
    """The run of a loaded report, or a CliError saying why it cannot be saved."""
    if not report["tests"]:
        raise CliError(f"{path} holds no test results: nothing to push")
    record = report.get(RUN_KEY)
    if not isinstance(record, dict):
        plugin = report.get("plugin") or {}
        raise CliError(f"{path} was written by pytest-energy {plugin.get('version')}, whose "
                       "reports lack the run's facts (machine fingerprint, status): it "
                       "cannot be saved exactly; re-run the tests with this version")
    if record.get("not_saved"):
        raise CliError(f"the run in {path} is not one the history keeps: "
                       f"{record['not_saved']}")
    meter: dict[str, Any] = report.get("meter") or {}
    if not isinstance(meter, dict):
        raise _not_a_report(path, "its 'meter' is not an object")
    try:
        run = new_run(record, meter, name)
    except RecordError as exc:
        raise _not_a_report(path, str(exc)) from None
    entries = []
    for index, data in enumerate(report["tests"]):
        try:
            entries.append(Entry.from_json(data))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            raise _not_a_report(path, f"tests[{index}] is not a test entry: {exc}") from None
    return Pushed(run, entries, meter_identities(entries, meter))


def same_run(store: HistoryStore, candidates: list[int], digest: Callable[[], str]
             ) -> int | None:
    """The id of the candidate run whose stored results hash to ``digest()``, or None;
    ``digest`` is called only when there is a candidate."""
    wanted = digest() if candidates else None
    for run_id in candidates:
        if entries_digest(store.iter_entries_json(run_id)) == wanted:
            return run_id
    return None


def run_push(cli: Cli, args: argparse.Namespace) -> int:
    """Save the report's run, unless the history holds it already."""
    pushed = pushed_run(args.file, load_report(args.file), args.name)
    store = open_storage(cli.location, create=True)
    assert store is not None  # create=True: made when missing
    with store:
        key = pushed.key
        there = same_run(store, [run.id for run in store.runs(fingerprint=key[1])
                                 if run_key(run, run.tests) == key], pushed.digest)
        if there is not None:
            cli.print(f"{args.file}: already in the history as run #{there} "
                      f"({store.display})")
            return EXIT_OK
        saved = store.save_run(pushed.run, pushed.entries, pushed.identities)
    cli.print(f"saved run {saved.label} ({saved.tests} tests, {saved.commit_label}, "
              f"{saved.status or '-'}) from {args.file} to {store.display}")
    return EXIT_OK


# ----- copy -------------------------------------------------------------------------------


@dataclass
class CopyCount:
    """What a copy did, for its summary line."""

    copied: int = 0
    results: int = 0
    skipped: int = 0

    def line(self) -> str:
        return (f"copied {self.copied} runs ({self.results} results), skipped "
                f"{self.skipped} already there")


def _same_place(source: StorageLocation, target: StorageLocation) -> bool:
    if source.url is not None or target.url is not None:
        return source.url == target.url
    assert source.directory is not None and target.directory is not None
    try:
        return os.path.samefile(db_path(source.directory), db_path(target.directory))
    except OSError:  # the target does not exist yet
        return source.directory.resolve() == target.directory.resolve()


def oldest_first(store: HistoryStore) -> Iterator[RunInfo]:
    """Every run, oldest first; only the ids are held, each run is read when its turn
    comes (a run deleted meanwhile is passed over)."""
    ids = sorted(run.id for run in store.runs())
    for run_id in ids:
        run = store.run(str(run_id))
        if run is not None:
            yield run


def _as_new(run: RunInfo) -> NewRun:
    return NewRun(created=run.created, fingerprint=run.fingerprint, machine=run.machine,
                  meter=run.meter, name=run.name, commit=run.commit, dirty=run.dirty,
                  branch=run.branch, plugin_version=run.plugin_version, status=run.status)


def _entries(store: HistoryStore, run: RunInfo) -> Iterator[Entry]:
    for data in store.iter_entries_json(run.id):
        try:
            yield Entry.from_json(data)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            raise CliError(f"run {run.label} in {store.display} holds a result that is not "
                           f"a test entry ({exc}); nothing of that run was copied") from None


class TargetIndex:
    """The target's run ids by key, for recognising a run already there; the results
    of a run are hashed only when a source run has its key."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self._ids: dict[RunKey, list[int]] = {}
        for run in store.runs():
            self._ids.setdefault(run_key(run, run.tests), []).append(run.id)

    def holds(self, source: HistoryStore, run: RunInfo) -> bool:
        candidates = self._ids.get(run_key(run, run.tests), [])
        return same_run(self.store, candidates, lambda: entries_digest(
            source.iter_entries_json(run.id))) is not None


def copy_runs(source: HistoryStore, target: HistoryStore) -> CopyCount:
    """Copy every run of ``source`` that ``target`` does not hold, oldest first."""
    count = CopyCount()
    index = TargetIndex(target)
    for run in oldest_first(source):
        if index.holds(source, run):
            count.skipped += 1
            continue
        saved = target.save_run(_as_new(run), _entries(source, run),
                                source.meter_identities(run.id))
        count.copied += 1
        count.results += saved.tests
    return count


def run_copy(cli: Cli, args: argparse.Namespace) -> int:
    """Copy the history at SRC into DST (created when missing)."""
    source_at, target_at = storage_location(args.source), storage_location(args.target)
    if _same_place(source_at, target_at):
        raise CliError(f"SRC and DST are the same history ({source_at.display}): nothing "
                       "to copy")
    source = open_storage(source_at, create=False)
    if source is None:
        raise CliError(f"no results history at {source_at.display} (SRC)")
    with source:
        target = open_storage(target_at, create=True)
        assert target is not None  # create=True: made when missing
        with target:
            count = copy_runs(source, target)
    cli.print(count.line())
    return EXIT_OK

