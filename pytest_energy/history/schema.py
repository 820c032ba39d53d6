"""The history's schema: created once, versioned, upgraded only with a copy kept.

The version lives in ``PRAGMA user_version``. A newer file is refused with a message
(never half-read); an older one is upgraded inside one transaction after a copy is
kept next to it, or refused when no upgrade exists. Reading an older file with an
upgrade path changes nothing: the reader adapts its queries (see :func:`run_status_sql`),
so a compare-only CI job keeps working until the next save upgrades the file. A file
that is not SQLite, or an SQLite file of another program, is refused before anything
is written. Never silent loss.

Versions:

1. runs and results.
2. ``runs.status``: ``passed``, ``failed`` or ``regressed``, set when the run is saved,
   so budget suggestions can learn from passing runs only. Runs saved under schema 1
   get ``incomplete`` (a measured test errored or was interrupted) or ``failed`` from
   their stored outcomes, else NULL: whether they regressed was never recorded, so they
   are not treated as passing.
3. Results packed (:mod:`.codec`, :mod:`.results`): a ``tests`` table holds each node
   id once, ``meter_identities`` each meter identity once; a result is a packed entry
   (numbers in binary, the rest deflated against the run's dictionary,
   ``runs.packing``) instead of 4 KB of JSON, about 13x smaller. The upgrade packs the
   stored results, marks runs holding an interrupted or errored test ``incomplete``
   (never a baseline), then compacts the file (``VACUUM``).

A new history is created as schema 1 and upgraded step by step, so each version has
one definition. Creating it is safe against other processes creating it at the same
moment (parallel CI jobs on a fresh runner): the version and the tables are read in one
transaction, and checked again under the write lock before anything is created.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from pytest_energy.history.results import pack_stored_results
from pytest_energy.history.sqlite import (
    BUSY_TIMEOUT_S,
    StorageError,
    corrupt_message,
    immediate_transaction,
    sqlite_errors,
)

SCHEMA_VERSION = 3
PACKED_VERSION = 3  # the first schema with packed results
SQLITE_MAGIC = b"SQLite format 3\x00"
TABLES = frozenset({"runs", "results"})
PACKED_TABLES = frozenset({"modules", "tests", "meter_identities"})

_SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    created TEXT NOT NULL,
    commit_sha TEXT,
    dirty INTEGER,
    branch TEXT,
    fingerprint TEXT NOT NULL,
    machine TEXT NOT NULL,
    meter TEXT NOT NULL,
    plugin_version TEXT,
    tests INTEGER NOT NULL
);
CREATE INDEX runs_by_fingerprint ON runs (fingerprint, id);
CREATE INDEX runs_by_name ON runs (name, id);
CREATE TABLE results (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    nodeid TEXT NOT NULL,
    outcome TEXT,
    meter_identity TEXT,
    joules_per_call REAL,
    joules_per_item REAL,
    latency_ms REAL,
    budget_joules REAL,
    budget_latency_ms REAL,
    entry TEXT NOT NULL,
    PRIMARY KEY (run_id, nodeid)
);
CREATE INDEX results_by_nodeid ON results (nodeid, run_id);
"""

STATUS_COLUMN = "runs.status"
# The status a run saved under schema 1 gets, from its stored outcomes (see module doc).
LEGACY_RUN_STATUS = """(CASE
    WHEN EXISTS (SELECT 1 FROM results AS legacy WHERE legacy.run_id = runs.id
                 AND legacy.outcome IN ('error', 'interrupted')) THEN 'incomplete'
    WHEN EXISTS (SELECT 1 FROM results AS legacy WHERE legacy.run_id = runs.id
                 AND legacy.outcome = 'failed') THEN 'failed'
    ELSE NULL END)"""


def _add_run_status(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the run's status, derived for the runs already stored."""
    db.execute("ALTER TABLE runs ADD COLUMN status TEXT")
    db.execute(f"UPDATE runs SET status = {LEGACY_RUN_STATUS}")


# Sizes matter here (a row per test per run). Node ids once: ``modules`` holds the part
# before the last "::" (shared by a file's tests), ``tests`` the rest, without an index
# on them (the saver, holding the write lock, keeps them unique); the view ``nodeids``
# puts them together. A result's rowid is run_id * 2**24 + its position in the run: a
# run's results are one range of the table, in the order saved, appended so that pages
# fill up, with no index on the run. The outcome for ad-hoc SQL; the rest is packed.
_SCHEMA_V3 = """
ALTER TABLE runs ADD COLUMN packing BLOB;
ALTER TABLE results RENAME TO results_v2;
DROP INDEX results_by_nodeid;
CREATE TABLE modules (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE
);
CREATE TABLE tests (
    id INTEGER PRIMARY KEY,
    module INTEGER,
    name TEXT NOT NULL
);
CREATE VIEW nodeids (id, nodeid) AS
    SELECT tests.id, CASE WHEN tests.module IS NULL THEN tests.name
                          ELSE modules.path || '::' || tests.name END
    FROM tests LEFT JOIN modules ON modules.id = tests.module;
CREATE TABLE meter_identities (
    id INTEGER PRIMARY KEY,
    identity TEXT NOT NULL UNIQUE
);
CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    test_id INTEGER NOT NULL,
    outcome TEXT,
    meter_identity INTEGER,
    entry BLOB NOT NULL
);
CREATE INDEX results_by_test ON results (test_id);
"""


def _pack_results(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3: the packed tables, every stored result packed into them."""
    for statement in _SCHEMA_V3.split(";"):
        if statement.strip():
            db.execute(statement)
    pack_stored_results(db, "results_v2")
    db.execute("DROP TABLE results_v2")


# from_version -> function upgrading a connection (inside a transaction) to from_version + 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _add_run_status, 2: _pack_results}


def run_status_sql(version: int) -> str:
    """The SQL expression for a run's status in a file of schema ``version``: the column
    from schema 2 on, else what the migration would store (reading never upgrades)."""
    return STATUS_COLUMN if version >= 2 else LEGACY_RUN_STATUS


def check_header(path: Path) -> None:
    """Refuse a file that is not SQLite at all before sqlite3 touches it.

    An empty file, or the start of the header (another process creating the history
    right now), is not refused."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the history database: "
                           f"{exc.strerror or exc}") from None
    if not SQLITE_MAGIC.startswith(head):
        raise StorageError(corrupt_message(path, "opening", ValueError(
            "not an SQLite database: the file does not start with the SQLite header")))


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _snapshot(db: sqlite3.Connection) -> tuple[int, set[str]]:
    """The version and the tables, read in one transaction: read one after the other,
    another process creating the history in between would make its tables look like
    another program's (no version yet, tables already)."""
    db.execute("BEGIN")
    try:
        return _version(db), _tables(db)
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.execute("COMMIT")


def prepare(path: Path, db: sqlite3.Connection, *, create: bool) -> int:
    """Make an open connection ready: schema created (``create``), upgraded or refused.

    Returns the schema version the connection now has: :data:`SCHEMA_VERSION`, or an
    older one when reading (``create`` false) a file that is upgraded on the next save,
    or 0 when reading a file without a schema yet (empty, or being created right now).
    """
    with sqlite_errors(path, "opening"):
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        version, tables = _snapshot(db)
    if version == 0:
        _refuse_foreign(path, tables)
        if not create:
            return 0  # no runs yet
        version = _create(path, db)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} was written by a newer pytest-energy (history schema {version}; this "
            f"version reads schema {SCHEMA_VERSION} and older). It was left untouched: "
            "upgrade pytest-energy, or point --energy-storage at another directory")
    if version < SCHEMA_VERSION:
        version = _migrate(path, db, version, create=create)
    with sqlite_errors(path, "opening"):
        db.execute("PRAGMA foreign_keys = ON")
        missing = (TABLES | (PACKED_TABLES if version >= PACKED_VERSION else set())
                   ) - _tables(db)
    if missing:
        raise StorageError(
            f"{path}: history schema {version} but the tables {sorted(missing)} are "
            "missing; the file is damaged and was left untouched: move it away to start a "
            "new history")
    return version


def _refuse_foreign(path: Path, tables: set[str]) -> None:
    """A file without a schema but with tables belongs to another program."""
    if tables - {"sqlite_sequence"}:
        raise StorageError(
            f"{path} is an SQLite database but not a pytest-energy history (tables: "
            f"{', '.join(sorted(tables))}); it was left untouched: point --energy-storage "
            "at another directory")


def _create(path: Path, db: sqlite3.Connection) -> int:
    """Create the schema in a file that had none; returns the version the file has now.

    Under the write lock the file is looked at again: another process may have created
    the history (any version: the caller checks it) or put its tables there meanwhile.
    """
    with sqlite_errors(path, "creating the schema"), immediate_transaction(db):
        version = _version(db)
        if version != 0:
            return version
        _refuse_foreign(path, _tables(db))
        for statement in _SCHEMA_V1.split(";"):  # schema 1, then every migration:
            if statement.strip():                 # one way to each version
                db.execute(statement)
        for step in range(1, SCHEMA_VERSION):
            MIGRATIONS[step](db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def _migrate(path: Path, db: sqlite3.Connection, version: int, *, create: bool) -> int:
    """Upgrade an older schema step by step, after keeping a copy; only when saving.
    Returns the version the connection has now (unchanged when only reading)."""
    steps = list(range(version, SCHEMA_VERSION))
    if any(step not in MIGRATIONS for step in steps):
        raise StorageError(
            f"{path} has history schema {version}, older than this pytest-energy's schema "
            f"{SCHEMA_VERSION}, and cannot be upgraded automatically. It was left untouched: "
            "read it with the pytest-energy version that wrote it (pytest-energy export "
            "--json), or move it away to start a new history")
    if not create:
        return version  # read as it is; upgraded on the next save (a copy kept first)
    backup = path.with_name(f"{path.name}.schema{version}.bak")
    try:
        shutil.copy2(path, backup)
    except OSError as exc:
        raise StorageError(f"{path}: cannot keep a copy before upgrading the schema "
                           f"({exc.strerror or exc}); nothing was changed") from None
    doing = f"upgrading the schema from {version} to {SCHEMA_VERSION}"
    with sqlite_errors(path, doing), immediate_transaction(db):
        upgraded = _version(db)  # another process may have upgraded it meanwhile
        for step in range(upgraded, SCHEMA_VERSION):
            MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {step + 1}")
    if upgraded < PACKED_VERSION <= SCHEMA_VERSION:
        # Packing frees most of the file's pages; give them back to the file system.
        # Best effort: the upgrade is done, a busy file is compacted by the next prune.
        with contextlib.suppress(sqlite3.Error):
            db.execute("VACUUM")
    return SCHEMA_VERSION
