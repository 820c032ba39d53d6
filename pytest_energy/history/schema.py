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
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from pytest_energy.history.sqlite import (
    BUSY_TIMEOUT_S,
    StorageError,
    corrupt_message,
    immediate_transaction,
    sqlite_errors,
)

SCHEMA_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"
TABLES = frozenset({"runs", "results"})

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


# from_version -> function upgrading a connection (inside a transaction) to from_version + 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _add_run_status}


def run_status_sql(version: int) -> str:
    """The SQL expression for a run's status in a file of schema ``version``: the column
    from schema 2 on, else what the migration would store (reading never upgrades)."""
    return STATUS_COLUMN if version >= 2 else LEGACY_RUN_STATUS


def check_header(path: Path) -> None:
    """Refuse a file that is not SQLite at all before sqlite3 touches it."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the history database: "
                           f"{exc.strerror or exc}") from None
    if head and head != SQLITE_MAGIC:
        raise StorageError(corrupt_message(path, "opening", ValueError(
            "not an SQLite database: the file does not start with the SQLite header")))


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def prepare(path: Path, db: sqlite3.Connection, *, create: bool) -> int:
    """Make an open connection ready: schema created (``create``), upgraded or refused.

    Returns the schema version the connection now has: :data:`SCHEMA_VERSION`, or an
    older one when reading (``create`` false) a file that is upgraded on the next save.
    """
    with sqlite_errors(path, "opening"):
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        version = _version(db)
        tables = _tables(db)
    if version == 0:
        _create(path, db, tables, create=create)
        return SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} was written by a newer pytest-energy (history schema {version}; this "
            f"version reads schema {SCHEMA_VERSION} and older). It was left untouched: "
            "upgrade pytest-energy, or point --energy-storage at another directory")
    if version < SCHEMA_VERSION:
        version = _migrate(path, db, version, create=create)
    with sqlite_errors(path, "opening"):
        db.execute("PRAGMA foreign_keys = ON")
        missing = TABLES - _tables(db)
    if missing:
        raise StorageError(
            f"{path}: history schema {SCHEMA_VERSION} but the tables {sorted(missing)} are "
            "missing; the file is damaged and was left untouched: move it away to start a "
            "new history")
    return version


def _create(path: Path, db: sqlite3.Connection, tables: set[str], *, create: bool) -> None:
    """A file without a schema: refuse another program's tables, else create ours."""
    if tables - {"sqlite_sequence"}:
        raise StorageError(
            f"{path} is an SQLite database but not a pytest-energy history (tables: "
            f"{', '.join(sorted(tables))}); it was left untouched: point --energy-storage "
            "at another directory")
    if not create:
        return  # an empty file: no runs yet
    with sqlite_errors(path, "creating the schema"), immediate_transaction(db):
        # Another process may have created it while we waited for the lock.
        if _version(db) == 0:  # schema 1, then every migration: one way to each version
            for statement in _SCHEMA_V1.split(";"):
                if statement.strip():
                    db.execute(statement)
            for step in range(1, SCHEMA_VERSION):
                MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


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
        for step in range(_version(db), SCHEMA_VERSION):
            MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {step + 1}")
    return SCHEMA_VERSION
