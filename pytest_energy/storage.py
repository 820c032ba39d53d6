"""Results history: one SQLite file (stdlib ``sqlite3``) under ``--energy-storage``.

Layout of the directory (default ``.energy/``)::

    .energy/.gitignore        "*": the history is machine-specific, never committed
    .energy/history.sqlite3   runs and per-test results, schema version in user_version

Each *run* has its time, git commit (and whether the tree was dirty), branch, machine
facts and their fingerprint (see :mod:`pytest_energy.compare`), the meters used and
an optional name. Each *result* is one test's report entry as JSON, with every trial,
plus a few columns for queries. Nothing is pickled or evaluated: JSON in, JSON out.

Why these choices:

* **Schema versioned** with ``PRAGMA user_version``. A newer file is refused with a
  message (never half-read); an older one is upgraded inside one transaction after a
  copy is kept next to it, or refused when no upgrade exists. Never silent loss.
* **Corrupt files are left untouched**: every problem becomes a
  :class:`StorageError` naming the file and the fix; nothing is written to a file
  that failed to read, and the history is not "repaired" by recreating it.
* **Two processes saving at once** (parallel CI jobs on one runner, xdist is not one:
  only its controller saves) wait for each other: a busy timeout and ``BEGIN
  IMMEDIATE`` transactions, so a save is all or nothing.
* Reading never creates anything: ``pytest-energy runs`` in a fresh checkout says
  there is no history instead of leaving an empty database behind.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_energy.errors import EnergyConfigError

SCHEMA_VERSION = 1
DB_NAME = "history.sqlite3"
DEFAULT_DIR = ".energy"
BUSY_TIMEOUT_S = 30.0
GITIGNORE = "# created by pytest-energy: results history of this machine, not for git\n*\n"
SQLITE_MAGIC = b"SQLite format 3\x00"

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
RESERVED_NAMES = ("latest",)

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

# OperationalError texts that mean the file itself is damaged (others: permissions, disk).
_DAMAGE_WORDS = ("malformed", "not a database", "encrypted", "no such table", "no such column",
                 "corrupt")
# Keep IN (...) lists under SQLite's historic limit of 999 bound parameters.
_IN_CHUNK = 500

# from_version -> function upgrading a connection (inside a transaction) to from_version + 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


class StorageError(Exception):
    """The history cannot be read or written; the message names the file and the fix."""


def parse_save_name(value: object, *, argument: str = "save") -> str:
    """A run name: ``[A-Za-z0-9._-]``, 1-100 characters, not all digits, not "latest".

    Names are database keys, never paths; the character set keeps them safe to show,
    to pass on a command line and to use as file names in exports anyway.
    """
    text = value.strip() if isinstance(value, str) else None
    if not text or not _NAME.match(text):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: a run name uses only letters, digits, '.', "
            "'_' and '-' (1 to 100 characters), e.g. main or pr-1234")
    if text.isdigit():
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: all-digit names are run ids; add a letter, "
            f"e.g. run-{text}")
    if text.lower() in RESERVED_NAMES:
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: {text!r} is reserved (it means the newest run)")
    return text


def parse_run_ref(value: object, *, argument: str = "run") -> str:
    """A reference to a stored run: ``latest``, a run id (``12`` or ``#12``) or a name."""
    text = value.strip() if isinstance(value, str) else None
    if text and text.lower() == "latest":
        return "latest"
    if text and text.lstrip("#").isdigit():
        return text.lstrip("#")
    try:
        return parse_save_name(value, argument=argument)
    except EnergyConfigError:
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected latest, a run id (12 or #12) or a "
            "run name (letters, digits, '.', '_', '-')") from None


@dataclass(frozen=True)
class RunInfo:
    """One stored run, without its results."""

    id: int
    name: str | None
    created: str
    commit: str | None
    dirty: bool | None
    branch: str | None
    fingerprint: str
    machine: dict[str, Any]
    meter: dict[str, Any]
    plugin_version: str | None
    tests: int

    @property
    def label(self) -> str:
        """``#12 'main'`` or ``#13``."""
        return f"#{self.id} {self.name!r}" if self.name else f"#{self.id}"

    @property
    def commit_label(self) -> str:
        if not self.commit:
            return "no commit"
        return self.commit[:10] + ("+dirty" if self.dirty else "")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created": self.created,
                "commit": self.commit, "dirty": self.dirty, "branch": self.branch,
                "fingerprint": self.fingerprint, "machine": self.machine, "meter": self.meter,
                "plugin_version": self.plugin_version, "tests": self.tests}


@dataclass
class NewRun:
    """What :meth:`Storage.save_run` stores about a run (results come separately)."""

    created: str
    fingerprint: str
    machine: dict[str, Any]
    meter: dict[str, Any]
    name: str | None = None
    commit: str | None = None
    dirty: bool | None = None
    branch: str | None = None
    plugin_version: str | None = None



@contextlib.contextmanager
def _immediate_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (or interrupt), so a
    failed save or schema change never leaves half a run in the history."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _dumps(value: Any) -> str:
    """JSON for storage: NaN/inf become null (JSON has no NaN), unknown objects str()."""
    return json.dumps(_finite(value), sort_keys=True, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


class Storage:
    """An open history database. Use :func:`open_storage`; close it (or use ``with``)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, *, writable: bool) -> None:
        self.path = path
        self._db = connection
        self.writable = writable

    # ----- context management ---------------------------------------------------------
    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn sqlite errors into a StorageError that names the file and the fix."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                raise StorageError(
                    f"{self.path}: {doing} failed: the database stayed locked by another "
                    f"process for {BUSY_TIMEOUT_S:g} s ({exc}); retry when it finishes") from None
            if any(word in text for word in _DAMAGE_WORDS):
                raise StorageError(_corrupt_message(self.path, doing, exc)) from None
            raise StorageError(
                f"{self.path}: {doing} failed: {exc}; check the permissions and free space "
                f"of {self.path.parent}, or point --energy-storage elsewhere") from None
        except sqlite3.DatabaseError as exc:
            raise StorageError(_corrupt_message(self.path, doing, exc)) from None

    # ----- writing ----------------------------------------------------------------------
    def save_run(self, run: NewRun, entries: Iterable[Mapping[str, Any]],
                 meter_identities: Mapping[str, str] | None = None) -> RunInfo:
        """Store a run and its entries in one transaction; return the stored run."""
        if not self.writable:
            raise StorageError(f"{self.path}: opened read-only")
        entries = list(entries)
        identities = meter_identities or {}
        with self._errors("saving the run"):
            db = self._db
            with _immediate_transaction(db):
                cursor = db.execute(
                    "INSERT INTO runs (name, created, commit_sha, dirty, branch, fingerprint, "
                    "machine, meter, plugin_version, tests) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (run.name, run.created, run.commit,
                     None if run.dirty is None else int(run.dirty), run.branch,
                     run.fingerprint, _dumps(run.machine), _dumps(run.meter),
                     run.plugin_version, len(entries)))
                run_id = int(cursor.lastrowid or 0)
                db.executemany(
                    "INSERT OR REPLACE INTO results (run_id, nodeid, outcome, meter_identity, "
                    "joules_per_call, joules_per_item, latency_ms, budget_joules, "
                    "budget_latency_ms, entry) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [_result_row(run_id, entry, identities.get(str(entry.get("nodeid"))))
                     for entry in entries])
        info = self.run(str(run_id))
        assert info is not None
        return info

    def delete_runs(self, run_ids: Iterable[int]) -> int:
        """Delete runs and their results in one transaction; return how many went."""
        if not self.writable:
            raise StorageError(f"{self.path}: opened read-only")
        ids = sorted({int(i) for i in run_ids})
        deleted = 0
        with self._errors("deleting runs"):
            db = self._db
            with _immediate_transaction(db):
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start:start + _IN_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    db.execute(f"DELETE FROM results WHERE run_id IN ({marks})", chunk)
                    cursor = db.execute(f"DELETE FROM runs WHERE id IN ({marks})", chunk)
                    deleted += cursor.rowcount
        return deleted

    # ----- reading ----------------------------------------------------------------------
    def runs(self, *, fingerprint: str | None = None, name: str | None = None,
             limit: int | None = None) -> list[RunInfo]:
        """Stored runs, newest first, optionally of one machine or with one name."""
        clauses, params = [], []
        if fingerprint is not None:
            clauses.append("fingerprint = ?")
            params.append(fingerprint)
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._errors("reading the runs"):
            rows = self._db.execute(sql, params).fetchall()
            return [_run_info(row) for row in rows]

    def run(self, ref: str, *, fingerprint: str | None = None) -> RunInfo | None:
        """The run ``ref`` names (see :func:`parse_run_ref`); None when there is none.

        ``latest`` and names pick the newest matching run, on ``fingerprint``'s machine
        when given; ids are exact.
        """
        if ref.isdigit():
            with self._errors("reading a run"):
                row = self._db.execute("SELECT * FROM runs WHERE id = ?", (int(ref),)).fetchone()
            return None if row is None else _run_info(row)
        found = self.runs(fingerprint=fingerprint, name=None if ref == "latest" else ref,
                          limit=1)
        return found[0] if found else None

    def entries(self, run_id: int) -> list[dict[str, Any]]:
        """The stored entries of a run, in the order they were saved."""
        with self._errors("reading results"):
            rows = self._db.execute(
                "SELECT entry FROM results WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
            return [_loads(row[0], self.path) for row in rows]

    def meter_identities(self, run_id: int) -> dict[str, str]:
        with self._errors("reading results"):
            rows = self._db.execute(
                "SELECT nodeid, meter_identity FROM results WHERE run_id = ?",
                (run_id,)).fetchall()
        return {row[0]: row[1] for row in rows if row[1] is not None}

    def history(self, nodeids: Iterable[str] | None = None, *, pattern: str | None = None,
                fingerprint: str | None = None, limit_runs: int | None = None
                ) -> list[tuple[RunInfo, dict[str, Any]]]:
        """(run, entry) pairs, newest run first per test, for some tests.

        Select tests by exact ``nodeids`` or a ``pattern`` (SQL GLOB when it has
        ``*?[``, else a substring). ``limit_runs`` keeps the newest runs per test.
        """
        if nodeids is None:
            return self._history(None, pattern, fingerprint, limit_runs)
        ids = list(dict.fromkeys(nodeids))
        out: list[tuple[RunInfo, dict[str, Any]]] = []
        for start in range(0, len(ids), _IN_CHUNK):
            out.extend(self._history(ids[start:start + _IN_CHUNK], pattern, fingerprint,
                                     limit_runs))
        return out

    def _history(self, ids: list[str] | None, pattern: str | None, fingerprint: str | None,
                 limit_runs: int | None) -> list[tuple[RunInfo, dict[str, Any]]]:
        clauses: list[str] = []
        params: list[Any] = []
        if ids is not None:
            clauses.append(f"results.nodeid IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if pattern is not None:
            if any(c in pattern for c in "*?["):
                clauses.append("results.nodeid GLOB ?")
            else:
                clauses.append("instr(results.nodeid, ?) > 0")
            params.append(pattern)
        if fingerprint is not None:
            clauses.append("runs.fingerprint = ?")
            params.append(fingerprint)
        sql = ("SELECT runs.*, results.nodeid AS result_nodeid, results.entry FROM results "
               "JOIN runs ON runs.id = results.run_id"
               + (" WHERE " + " AND ".join(clauses) if clauses else "")
               + " ORDER BY runs.id DESC, results.rowid")
        out: list[tuple[RunInfo, dict[str, Any]]] = []
        seen: dict[str, int] = {}
        with self._errors("reading the history"):
            for row in self._db.execute(sql, params):
                nodeid = row["result_nodeid"]
                seen[nodeid] = seen.get(nodeid, 0) + 1
                if limit_runs is not None and seen[nodeid] > limit_runs:
                    continue  # not even parsed: long histories stay cheap
                out.append((_run_info(row), _loads(row["entry"], self.path)))
        return out


def _result_row(run_id: int, entry: Mapping[str, Any], identity: str | None) -> tuple[Any, ...]:
    budget = entry.get("budget") or {}
    latency = entry.get("latency_ms") or {}
    return (run_id, str(entry.get("nodeid")), entry.get("outcome"), identity,
            _float_or_none(entry.get("joules_per_call")),
            _float_or_none(entry.get("joules_per_item")),
            _float_or_none(latency.get("median") if isinstance(latency, Mapping) else None),
            _float_or_none(budget.get("joules")), _float_or_none(budget.get("latency_ms")),
            _dumps(dict(entry)))


def _loads(text: str, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{path}: a stored result is not valid JSON ({exc}); the file is "
                           "damaged: move it away to start a new history") from None
    if not isinstance(value, dict):
        raise StorageError(f"{path}: a stored result is not a JSON object; the file is damaged")
    return value


def _run_info(row: sqlite3.Row) -> RunInfo:
    def obj(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    return RunInfo(id=row["id"], name=row["name"], created=row["created"],
                   commit=row["commit_sha"],
                   dirty=None if row["dirty"] is None else bool(row["dirty"]),
                   branch=row["branch"], fingerprint=row["fingerprint"],
                   machine=obj(row["machine"]), meter=obj(row["meter"]),
                   plugin_version=row["plugin_version"], tests=row["tests"])


def _corrupt_message(path: Path, doing: str, exc: Exception) -> str:
    return (f"{path}: {doing} failed: the history database is unreadable ({exc}). The file "
            "was left untouched; move it away (or restore it from a backup) and the next "
            "--energy-save / --energy-autosave starts a new history, or point "
            "--energy-storage at another directory")


def prune_candidates(runs: Sequence[RunInfo], *, keep: int,
                     include_named: bool = False) -> list[RunInfo]:
    """The runs a prune deletes: all but the newest ``keep`` per machine fingerprint;
    named runs (baselines saved with --energy-save=NAME) are kept unless
    ``include_named``, and never count toward ``keep``."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    seen: dict[str, int] = {}
    doomed = []
    for run in sorted(runs, key=lambda r: r.id, reverse=True):
        if run.name and not include_named:
            continue
        seen[run.fingerprint] = seen.get(run.fingerprint, 0) + 1
        if seen[run.fingerprint] > keep:
            doomed.append(run)
    return doomed


def db_path(directory: str | Path) -> Path:
    return Path(directory) / DB_NAME


def open_storage(directory: str | Path, *, create: bool) -> Storage | None:
    """Open the history under ``directory``.

    With ``create`` (saving), missing directories, the ``.gitignore`` and the schema
    are created. Without it (comparing, the CLI), a missing database returns None and
    nothing is created. Raises StorageError for an unreadable, foreign, newer or
    not-upgradable file, leaving the file untouched.
    """
    path = db_path(directory)
    exists = path.exists()
    if not exists and not create:
        return None
    if exists:
        _check_header(path)
    elif create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            gitignore = path.parent / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text(GITIGNORE, encoding="utf-8")
        except OSError as exc:
            raise StorageError(f"cannot create the history directory {path.parent}: "
                               f"{exc.strerror or exc}; check --energy-storage") from None
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
    storage = Storage(path, connection, writable=create)
    try:
        _prepare(storage, connection, create=create)
    except BaseException:
        storage.close()
        raise
    return storage


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite at all before sqlite3 touches it."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the history database: "
                           f"{exc.strerror or exc}") from None
    if head and head != SQLITE_MAGIC:
        raise StorageError(_corrupt_message(path, "opening", ValueError(
            "not an SQLite database: the file does not start with the SQLite header")))


def _prepare(storage: Storage, db: sqlite3.Connection, *, create: bool) -> None:
    path = storage.path
    with storage._errors("opening"):
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0:
        if tables - {"sqlite_sequence"}:
            raise StorageError(
                f"{path} is an SQLite database but not a pytest-energy history (tables: "
                f"{', '.join(sorted(tables))}); it was left untouched: point --energy-storage "
                "at another directory")
        if not create:
            return  # an empty file: no runs yet
        with storage._errors("creating the schema"), _immediate_transaction(db):
            # Another process may have created it while we waited for the lock.
            if int(db.execute("PRAGMA user_version").fetchone()[0]) == 0:
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} was written by a newer pytest-energy (history schema {version}; this "
            f"version reads schema {SCHEMA_VERSION} and older). It was left untouched: "
            "upgrade pytest-energy, or point --energy-storage at another directory")
    if version < SCHEMA_VERSION:
        _migrate(storage, db, version, create=create)
    with storage._errors("opening"):
        db.execute("PRAGMA foreign_keys = ON")
        missing = {"runs", "results"} - {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if missing:
        raise StorageError(
            f"{path}: history schema {SCHEMA_VERSION} but the tables {sorted(missing)} are "
            "missing; the file is damaged and was left untouched: move it away to start a "
            "new history")


def _migrate(storage: Storage, db: sqlite3.Connection, version: int, *, create: bool) -> None:
    path = storage.path
    steps = list(range(version, SCHEMA_VERSION))
    if any(step not in MIGRATIONS for step in steps):
        raise StorageError(
            f"{path} has history schema {version}, older than this pytest-energy's schema "
            f"{SCHEMA_VERSION}, and cannot be upgraded automatically. It was left untouched: "
            "read it with the pytest-energy version that wrote it (pytest-energy export "
            "--json), or move it away to start a new history")
    if not create:
        raise StorageError(
            f"{path} has history schema {version}, older than this pytest-energy's schema "
            f"{SCHEMA_VERSION}; it is upgraded on the next save (--energy-save or "
            "--energy-autosave), after a copy is kept next to it")
    backup = path.with_name(f"{path.name}.schema{version}.bak")
    try:
        shutil.copy2(path, backup)
    except OSError as exc:
        raise StorageError(f"{path}: cannot keep a copy before upgrading the schema "
                           f"({exc.strerror or exc}); nothing was changed") from None
    doing = f"upgrading the schema from {version} to {SCHEMA_VERSION}"
    with storage._errors(doing), _immediate_transaction(db):
        current = int(db.execute("PRAGMA user_version").fetchone()[0])
        for step in range(current, SCHEMA_VERSION):
            MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {step + 1}")
