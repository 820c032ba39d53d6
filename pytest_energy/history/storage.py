"""Results history: one SQLite file (stdlib ``sqlite3``) under ``--energy-storage``.

Layout of the directory (default ``.energy/``)::

    .energy/.gitignore        "*": the history is machine-specific, never committed
    .energy/history.sqlite3   runs and per-test results, schema version in user_version

Each *run* has its time, git commit (and whether the tree was dirty), branch, machine
facts and their fingerprint (see :mod:`pytest_energy.history.machine`), the meters
used, an optional name and a status (see :mod:`pytest_energy.history.runs`). Each
*result* is one test's :class:`~pytest_energy.entry.Entry`, with every trial, packed
(:mod:`.codec`, :mod:`.results`: about 320 bytes a test instead of 4 KB of JSON),
plus the outcome for queries. Nothing is pickled or evaluated: what is read back is
exactly the JSON object ``Entry.to_json()`` gave.

Why these choices:

* **Schema versioned**, upgraded only with a copy kept (:mod:`.schema`).
* **Corrupt files are left untouched**: every problem becomes a
  :class:`StorageError` naming the file and the fix (:mod:`.sqlite`); nothing is
  written to a file that failed to read.
* **Two processes saving at once** (parallel CI jobs on one runner, xdist is not one:
  only its controller saves) wait for each other: a busy timeout and ``BEGIN
  IMMEDIATE`` transactions, so a save is all or nothing.
* Reading never creates anything: ``pytest-energy runs`` in a fresh checkout says
  there is no history instead of leaving an empty database behind.
* **A run holding an interrupted or errored test is stored ``incomplete``**, whatever
  status the caller gave: it is never a baseline (:mod:`.baseline`).
* Results are read one at a time from the cursor (:meth:`Storage.iter_entries_json`),
  so exporting a large history takes bounded memory; :meth:`Storage.vacuum` gives the
  pages of deleted runs back to the file system.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, overload

from pytest_energy.entry import Entry
from pytest_energy.history.location import StorageLocation, storage_location
from pytest_energy.history.results import (
    BROKEN_SQL,
    HistoryQuery,
    history_query,
    insert_results,
    result_rows,
    rows_for,
    run_range,
)
from pytest_energy.history.runs import INCOMPLETE, NewRun, RunInfo
from pytest_energy.history.schema import (
    PACKED_VERSION,
    SCHEMA_VERSION,
    STATUS_COLUMN,
    check_header,
    prepare,
    run_status_sql,
)
from pytest_energy.history.sqlite import (
    BUSY_TIMEOUT_S,
    StorageError,
    dumps,
    immediate_transaction,
    json_object,
    sqlite_errors,
)
from pytest_energy.history.store import HistoryStore, run_by_ref
from pytest_energy.report.jsonreport import create_new_file

__all__ = ["DB_NAME", "DEFAULT_DIR", "GITIGNORE", "HistoryStore", "Storage", "StorageError",
           "StorageLocation", "db_path", "open_storage", "storage_location"]

DB_NAME = "history.sqlite3"
DEFAULT_DIR = ".energy"
GITIGNORE = "# created by pytest-energy: results history of this machine, not for git\n*\n"

# Keep IN (...) lists under SQLite's historic limit of 999 bound parameters.
_IN_CHUNK = 500


class Storage:
    """An open history database. Use :func:`open_storage`; close it (or use ``with``)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, *, writable: bool,
                 version: int = SCHEMA_VERSION) -> None:
        self.path = path
        self._db = connection
        self.writable = writable
        self.version = version  # older than SCHEMA_VERSION only when reading an older file
        # A run's status: the column from schema 2 on; computed in older files (read only)
        self._status = run_status_sql(version)
        self._run_columns = ("runs.*" if self._status == STATUS_COLUMN
                             else f"runs.*, {self._status} AS status")
        self._rows = rows_for(connection, version, PACKED_VERSION)

    @property
    def location(self) -> StorageLocation:
        return storage_location(self.path.parent)

    @property
    def display(self) -> str:
        return str(self.path)

    # ----- context management ---------------------------------------------------------
    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        """Turn sqlite errors into a StorageError that names this file and the fix."""
        return sqlite_errors(self.path, doing)

    def _check_writable(self) -> None:
        if not self.writable:
            raise StorageError(f"{self.path}: opened read-only")

    # ----- writing ----------------------------------------------------------------------
    def save_run(self, run: NewRun, entries: Iterable[Entry],
                 meter_identities: Mapping[str, str] | None = None) -> RunInfo:
        """Store a run and its entries in one transaction; return the stored run.

        A run holding an interrupted or errored test is stored ``incomplete`` whatever
        ``run.status`` says (see module doc).
        """
        self._check_writable()
        rows, status = result_rows(entries, meter_identities or {}, run.status)
        with self._errors("saving the run"), immediate_transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO runs (name, created, commit_sha, dirty, branch, fingerprint, "
                "machine, meter, plugin_version, tests, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run.name, run.created, run.commit,
                 None if run.dirty is None else int(run.dirty), run.branch,
                 run.fingerprint, dumps(run.machine), dumps(run.meter),
                 run.plugin_version, len(rows), status))
            run_id = int(cursor.lastrowid or 0)
            insert_results(self._db, run_id, rows)
        info = self.run(str(run_id))
        assert info is not None
        return info

    def delete_runs(self, run_ids: Iterable[int]) -> int:
        """Delete runs and their results in one transaction; return how many went.
        Node ids no stored result refers to any more go too."""
        self._check_writable()  # so the file is at SCHEMA_VERSION: packed results
        deleted = 0
        with self._errors("deleting runs"), immediate_transaction(self._db):
            for run_id in sorted({int(i) for i in run_ids}):
                self._db.execute("DELETE FROM results WHERE id BETWEEN ? AND ?",
                                 run_range(run_id))
                deleted += self._db.execute("DELETE FROM runs WHERE id = ?",
                                            (run_id,)).rowcount
            self._db.execute("DELETE FROM tests WHERE NOT EXISTS (SELECT 1 FROM results "
                             "WHERE results.test_id = tests.id)")
            self._db.execute("DELETE FROM modules WHERE NOT EXISTS (SELECT 1 FROM tests "
                             "WHERE tests.module = modules.id)")
        return deleted

    def set_status(self, run_id: int, status: str) -> None:
        """Give a run saved ``incomplete`` (pending) its status (see :mod:`.pending`).
        The caller knows its entries complete (the gate saves no other run); one with an
        errored or interrupted result keeps ``incomplete`` all the same."""
        self._check_writable()
        with self._errors("setting a run's status"), immediate_transaction(self._db):
            self._db.execute(
                "UPDATE runs SET status = ? WHERE id = ? AND status = ? AND NOT EXISTS "
                "(SELECT 1 FROM results WHERE results.id BETWEEN ? AND ? AND "
                "(results.outcome IN " + BROKEN_SQL + "))",
                (status, run_id, INCOMPLETE, *run_range(run_id)))

    def vacuum(self) -> int:
        """Rebuild the file without its free pages (what deleted runs left): SQLite
        never shrinks a file by itself. Returns how many bytes the file shrank by."""
        self._check_writable()
        before = _size(self.path)
        with self._errors("compacting the file (VACUUM)"):
            self._db.execute("VACUUM")
        return max(0, before - _size(self.path))

    # ----- reading ----------------------------------------------------------------------
    def runs(self, *, fingerprint: str | None = None, name: str | None = None,
             limit: int | None = None, complete_only: bool = False) -> list[RunInfo]:
        """Stored runs, newest first, optionally of one machine or with one name.

        ``complete_only`` leaves out incomplete runs (a measured test errored or was
        interrupted): never a baseline.
        """
        where, params = _where(("fingerprint = ?", fingerprint), ("name = ?", name),
                               (f"{self._status} IS NOT ?", INCOMPLETE if complete_only else None))
        sql = f"SELECT {self._run_columns} FROM runs" + where + " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._errors("reading the runs"):
            rows = self._db.execute(sql, params).fetchall()
            return [_run_info(row) for row in rows]

    def run(self, ref: str, *, fingerprint: str | None = None,
            complete_only: bool = False) -> RunInfo | None:
        """The run ``ref`` names (see :func:`~pytest_energy.history.runs.parse_run_ref`);
        None when there is none.

        ``latest`` and names pick the newest matching run, on ``fingerprint``'s machine
        when given, and complete when ``complete_only``; ids are exact.
        """
        return run_by_ref(self, ref, self._run_by_id, fingerprint=fingerprint,
                          complete_only=complete_only)

    def _run_by_id(self, run_id: int) -> RunInfo | None:
        with self._errors("reading a run"):
            row = self._db.execute(f"SELECT {self._run_columns} FROM runs WHERE id = ?",
                                   (run_id,)).fetchone()
        return None if row is None else _run_info(row)

    def iter_entries_json(self, run_id: int) -> Iterator[dict[str, Any]]:
        """The stored entries of a run as saved (JSON objects), one at a time from the
        cursor, in the order they were saved: what ``pytest-energy export`` streams."""
        with self._errors("reading results"):
            yield from self._rows.entries(run_id)

    def entries_json(self, run_id: int) -> list[dict[str, Any]]:
        """The stored entries of a run as saved (JSON objects), in the order they were
        saved: what ``show --json`` prints, unchanged."""
        return list(self.iter_entries_json(run_id))

    def entries(self, run_id: int) -> list[Entry]:
        """The stored entries of a run, in the order they were saved."""
        return [_entry(data, self.path) for data in self.iter_entries_json(run_id)]

    def meter_identities(self, run_id: int) -> dict[str, str]:
        """nodeid -> meter identity of each test of a run (see ``meter_identity``)."""
        with self._errors("reading results"):
            return self._rows.identities(run_id)

    def history(self, nodeids: Iterable[str] | None = None, *, pattern: str | None = None,
                glob: bool = False, fingerprint: str | None = None,
                limit_runs: int | None = None, status: str | None = None
                ) -> list[tuple[RunInfo, Entry]]:
        """(run, entry) pairs, newest run first per test, for some tests.

        Select tests by exact ``nodeids`` or a ``pattern``: a literal substring of the
        node id (``[8]`` is text), or with ``glob`` an SQL GLOB (``*?[...]``, case
        sensitive); runs by ``fingerprint`` and ``status`` (e.g. ``passed``: what budget
        suggestions learn from). ``limit_runs`` keeps the newest runs per test.
        """
        query = HistoryQuery(pattern=pattern, glob=glob, fingerprint=fingerprint,
                             status=status)
        if nodeids is None:
            return self._history(None, query, limit_runs)
        ids = list(dict.fromkeys(nodeids))
        out: list[tuple[RunInfo, Entry]] = []
        for start in range(0, len(ids), _IN_CHUNK):
            out.extend(self._history(ids[start:start + _IN_CHUNK], query, limit_runs))
        return out

    def _history(self, ids: list[str] | None, query: HistoryQuery,
                 limit_runs: int | None) -> list[tuple[RunInfo, Entry]]:
        sql, params = history_query(self._rows, query, ids, self._status, self._run_columns)
        out: list[tuple[RunInfo, Entry]] = []
        seen: dict[str, int] = {}
        with self._errors("reading the history"):
            for row in self._db.execute(sql, params):
                nodeid = row["result_nodeid"]
                seen[nodeid] = seen.get(nodeid, 0) + 1
                if limit_runs is not None and seen[nodeid] > limit_runs:
                    continue  # not even unpacked: long histories stay cheap
                out.append((_run_info(row), _entry(self._rows.decode(row), self.path)))
        return out


def _where(*clauses: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a AND b`` for the clauses whose parameter is not None, and the parameters."""
    used = [(clause, param) for clause, param in clauses if param is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in used), [p for _, p in used]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _entry(data: Mapping[str, Any], path: Path) -> Entry:
    try:
        return Entry.from_json(data)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise StorageError(f"{path}: a stored result is not a test entry ({exc}); the file "
                           "is damaged: move it away to start a new history") from None


def _run_info(row: sqlite3.Row) -> RunInfo:
    return RunInfo(id=row["id"], name=row["name"], created=row["created"],
                   commit=row["commit_sha"],
                   dirty=None if row["dirty"] is None else bool(row["dirty"]),
                   branch=row["branch"], fingerprint=row["fingerprint"],
                   machine=json_object(row["machine"]), meter=json_object(row["meter"]),
                   plugin_version=row["plugin_version"], tests=row["tests"],
                   status=row["status"])


def db_path(directory: str | Path) -> Path:
    """Where the history database of a storage directory lives."""
    return Path(directory) / DB_NAME


@overload
def open_storage(location: Path, *, create: bool) -> Storage | None: ...
@overload
def open_storage(location: str | StorageLocation, *, create: bool) -> HistoryStore | None: ...
def open_storage(location: str | Path | StorageLocation, *, create: bool
                 ) -> HistoryStore | None:
    """Open the history at ``location``: a directory (a Path; a str that is not a
    PostgreSQL URL) holding the SQLite file, or a PostgreSQL URL (:mod:`.postgres`).
    With ``create`` (saving), missing directories, the ``.gitignore`` and the schema
    are created. Without it (comparing, the CLI), a missing database, or one without a
    schema yet (another process is creating it), returns None and nothing is created.
    Raises StorageError for an unreadable, foreign, newer or not-upgradable file,
    leaving the file untouched.
    """
    where = storage_location(location)
    if where.url is not None:  # psycopg only when a URL is given
        from pytest_energy.history.postgres import open_postgres
        return open_postgres(where, create=create)
    assert where.directory is not None
    path = db_path(where.directory)
    if path.exists():
        check_header(path)
    elif not create:
        return None
    else:
        _make_directory(path.parent)
    connection = _connect(path, create=create)
    try:
        version = prepare(path, connection, create=create)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.close()
        raise
    if version == 0:  # read only, and no schema yet: no runs
        connection.close()
        return None
    return Storage(path, connection, writable=create, version=version)


def _make_directory(directory: Path) -> None:
    """The storage directory and its ``.gitignore``: an existing one, or anything else
    by that name (a link included, never followed), is left alone."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            create_new_file(directory / ".gitignore", GITIGNORE)
    except OSError as exc:
        raise StorageError(f"cannot create the history directory {directory}: "
                           f"{exc.strerror or exc}; check --energy-storage") from None


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Read-write when saving; read-only (a URI, so nothing is created) otherwise."""
    try:
        if create:
            connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S,
                                         isolation_level=None)
        else:
            connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                                         timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the history database: {exc}; check the "
                           "permissions or point --energy-storage elsewhere") from None
    connection.row_factory = sqlite3.Row
    return connection

