"""Results history in a PostgreSQL database: one history for a team, its runners and CI.

``--energy-storage=postgresql://USER@HOST:PORT/DB`` (env, ini, the CLI's ``--storage``
too) puts the history on a server instead of the SQLite file: same semantics, same
commands (the :class:`~pytest_energy.history.store.HistoryStore` Protocol, one test
suite for both). Tables and migrations: :mod:`.pg_schema`; how to set it up:
``docs/postgres.md``.

Many writers at once (runners on several machines, parallel CI jobs):

* a save is one transaction: the run row (its id from ``BIGSERIAL ... RETURNING``)
  and every result, so a reader never sees half a run and a failed save leaves
  nothing; no read-modify-write anywhere, so nothing is lost between writers;
* :meth:`PostgresStorage.set_status` is one conditional ``UPDATE``;
* reads run in autocommit: each statement sees committed runs only.

psycopg 3 is imported only when a URL is used; without it the message says which
extra to install. Every error becomes a StorageError naming the URL without its
password (:attr:`~.location.StorageLocation.display`) and the fix.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.history.location import StorageLocation
from pytest_energy.history.metrics import METRICS
from pytest_energy.history.pg_schema import (
    connect,
    glob_regex,
    import_psycopg,
    pg_errors,
    prepare,
    schema_name,
)
from pytest_energy.history.results import BROKEN_SQL, ResultRow, result_rows
from pytest_energy.history.runs import INCOMPLETE, NewRun, RunInfo
from pytest_energy.history.sqlite import StorageError, dumps, json_safe
from pytest_energy.history.store import run_by_ref

__all__ = ["PostgresStorage", "open_postgres"]

_RUN_COLUMNS = ("runs.id, runs.name, runs.created, runs.commit_sha, runs.dirty, runs.branch, "
                "runs.fingerprint, runs.machine::text AS machine, runs.meter::text AS meter, "
                "runs.plugin_version, runs.tests, runs.status")
_STREAM_ROWS = 200  # results fetched per round trip while streaming a run


class PostgresStorage:
    """An open PostgreSQL history. Use :func:`open_postgres` (or ``open_storage``)."""

    def __init__(self, location: StorageLocation, connection: Any, *, writable: bool,
                 schema: str, version: int, psycopg: Any) -> None:
        self._location = location
        self._db = connection
        self.writable = writable
        self.schema = schema
        self.version = version
        self._psycopg = psycopg

    @property
    def location(self) -> StorageLocation:
        return self._location

    @property
    def display(self) -> str:
        return self._location.display

    def __enter__(self) -> PostgresStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return pg_errors(self._location, doing, self._psycopg)

    def _check_writable(self) -> None:
        if not self.writable:
            raise StorageError(f"{self.display}: opened read-only")

    # ----- writing ----------------------------------------------------------------------
    def save_run(self, run: NewRun, entries: Iterable[Entry],
                 meter_identities: Mapping[str, str] | None = None) -> RunInfo:
        """Store a run and its entries in one transaction; return the stored run.
        A run holding an interrupted or errored test is stored ``incomplete``."""
        self._check_writable()
        by_id = {entry.nodeid: entry for entry in entries}  # the numbers' columns
        rows, status = result_rows(by_id.values(), meter_identities or {}, run.status)
        with self._errors("saving the run"), self._db.transaction():
            found = self._db.execute(
                "INSERT INTO runs (name, created, created_at, commit_sha, dirty, branch, "
                "fingerprint, machine, meter, plugin_version, tests, status) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s) RETURNING id",
                (run.name, run.created, _timestamp(run.created), run.commit, run.dirty,
                 run.branch, run.fingerprint, dumps(run.machine), dumps(run.meter),
                 run.plugin_version, len(rows), status)).fetchone()
            run_id = int(found[0])
            with self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO results (run_id, position, nodeid, outcome, meter_identity, "
                    "joules_per_call, joules_per_item, latency_ms, entry) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [_result_values(run_id, position, row, by_id[row.nodeid])
                     for position, row in enumerate(rows)])
        info = self.run(str(run_id))
        assert info is not None
        return info

    def delete_runs(self, run_ids: Iterable[int]) -> int:
        """Delete runs and (cascading) their results in one transaction."""
        self._check_writable()
        ids = sorted({int(i) for i in run_ids})
        with self._errors("deleting runs"), self._db.transaction():
            return int(self._db.execute("DELETE FROM runs WHERE id = ANY(%s)", (ids,)).rowcount)

    def set_status(self, run_id: int, status: str) -> None:
        """Give a run saved ``incomplete`` its status in one statement; a run holding an
        errored or interrupted result keeps ``incomplete``."""
        self._check_writable()
        with self._errors("setting a run's status"):
            self._db.execute(
                "UPDATE runs SET status = %s WHERE id = %s AND status = %s AND NOT EXISTS "
                "(SELECT 1 FROM results WHERE results.run_id = runs.id AND "
                "results.outcome IN " + BROKEN_SQL + ")", (status, run_id, INCOMPLETE))

    def vacuum(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum reuses the space of deleted runs, and
        a VACUUM FULL (locking the tables) is the database owner's call."""
        self._check_writable()

    # ----- reading ----------------------------------------------------------------------
    def runs(self, *, fingerprint: str | None = None, name: str | None = None,
             limit: int | None = None, complete_only: bool = False) -> list[RunInfo]:
        """Stored runs, newest first (see ``Storage.runs``)."""
        clauses = [clause for clause, value in (
            ("fingerprint = %(fingerprint)s", fingerprint), ("name = %(name)s", name),
            ("status IS DISTINCT FROM %(incomplete)s", complete_only or None))
            if value is not None]
        sql = (f"SELECT {_RUN_COLUMNS} FROM runs"
               + (" WHERE " + " AND ".join(clauses) if clauses else "")
               + " ORDER BY id DESC" + (" LIMIT %(limit)s" if limit is not None else ""))
        params = {"fingerprint": fingerprint, "name": name, "incomplete": INCOMPLETE,
                  "limit": limit}
        with self._errors("reading the runs"):
            return [_run_info(row) for row in self._db.execute(sql, params).fetchall()]

    def run(self, ref: str, *, fingerprint: str | None = None,
            complete_only: bool = False) -> RunInfo | None:
        """The run ``ref`` names (latest, an id, a name); None when there is none."""
        return run_by_ref(self, ref, self._run_by_id, fingerprint=fingerprint,
                          complete_only=complete_only)

    def _run_by_id(self, run_id: int) -> RunInfo | None:
        with self._errors("reading a run"):
            row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = %s",
                                   (run_id,)).fetchone()
        return None if row is None else _run_info(row)

    def iter_entries_json(self, run_id: int) -> Iterator[dict[str, Any]]:
        """A run's entries as saved, streamed from the server in the order saved."""
        with self._errors("reading results"), self._db.cursor() as cursor:
            for text, in cursor.stream("SELECT entry::text FROM results WHERE run_id = %s "
                                       "ORDER BY position", (run_id,), size=_STREAM_ROWS):
                yield self._json(text)

    def entries_json(self, run_id: int) -> list[dict[str, Any]]:
        return list(self.iter_entries_json(run_id))

    def entries(self, run_id: int) -> list[Entry]:
        return [self._entry(data) for data in self.iter_entries_json(run_id)]

    def meter_identities(self, run_id: int) -> dict[str, str]:
        with self._errors("reading results"):
            return dict(self._db.execute(
                "SELECT nodeid, meter_identity FROM results WHERE run_id = %s AND "
                "meter_identity IS NOT NULL", (run_id,)).fetchall())

    def history(self, nodeids: Iterable[str] | None = None, *, pattern: str | None = None,
                glob: bool = False, fingerprint: str | None = None,
                limit_runs: int | None = None, status: str | None = None
                ) -> list[tuple[RunInfo, Entry]]:
        """(run, entry) pairs, newest run first per test (see ``Storage.history``): exact
        ``nodeids``, a literal substring ``pattern``, or with ``glob`` SQLite's GLOB
        (as an anchored regular expression, a parameter like every user value)."""
        sql, params = _history_sql(nodeids, pattern, glob, fingerprint, status, limit_runs)
        with self._errors("reading the history"):
            rows = self._db.execute(sql, params).fetchall()
        return [(_run_info(row), self._entry(self._json(row[-2]))) for row in rows]

    # ----- decoding ---------------------------------------------------------------------
    def _damaged(self, what: str) -> StorageError:
        return StorageError(f"{self.display}: a stored result {what}; the history in schema "
                            f"{self.schema!r} was changed by hand or is damaged")

    def _json(self, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise self._damaged(f"is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise self._damaged("is not a JSON object")
        return value

    def _entry(self, data: Mapping[str, Any]) -> Entry:
        try:
            return Entry.from_json(data)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise self._damaged(f"is not a test entry ({exc})") from None


def _history_sql(nodeids: Iterable[str] | None, pattern: str | None, glob: bool,
                 fingerprint: str | None, status: str | None, limit_runs: int | None
                 ) -> tuple[str, dict[str, Any]]:
    """The SELECT behind :meth:`PostgresStorage.history`: fixed SQL, every user value a
    parameter; ``limit_runs`` per test by a window function, newest run first."""
    params: dict[str, Any] = {"ids": None if nodeids is None else list(nodeids),
                              "pattern": pattern, "fingerprint": fingerprint,
                              "status": status, "limit": limit_runs}
    clauses = [clause for clause, key in (
        ("results.nodeid = ANY(%(ids)s)", "ids"),
        ("runs.fingerprint = %(fingerprint)s", "fingerprint"),
        ("runs.status = %(status)s", "status")) if params[key] is not None]
    if pattern is not None and glob:
        params["pattern"] = glob_regex(pattern)
        clauses.append("results.nodeid ~ %(pattern)s" if params["pattern"] else "FALSE")
    elif pattern is not None:
        clauses.append("strpos(results.nodeid, %(pattern)s) > 0")
    sql = (f"SELECT * FROM (SELECT {_RUN_COLUMNS}, results.nodeid AS result_nodeid, "
           "results.position AS result_position, results.entry::text AS entry_text, "
           "row_number() OVER (PARTITION BY results.nodeid ORDER BY runs.id DESC) AS nth "
           "FROM results JOIN runs ON runs.id = results.run_id"
           + (" WHERE " + " AND ".join(clauses) if clauses else "") + ") AS picked"
           + (" WHERE nth <= %(limit)s" if limit_runs is not None else "")
           + " ORDER BY id DESC, result_position")
    return sql, params


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _result_values(run_id: int, position: int, row: ResultRow, entry: Entry) -> tuple[Any, ...]:
    """A ``results`` row: the entry's JSON text as saved, and the dashboard columns."""
    outcome = row.data.get("outcome")
    return (run_id, position, row.nodeid, None if outcome is None else str(outcome),
            row.identity, _number(entry.joules_per_call), _number(entry.joules_per_item),
            _number(METRICS["latency_ms"].value(entry)),
            json.dumps(json_safe(row.data), default=str, allow_nan=False))


def _timestamp(created: str) -> _dt.datetime | None:
    """``created`` as a timestamp for dashboards; None when it is not an aware ISO time."""
    try:
        moment = _dt.datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _object(text: Any) -> dict[str, Any]:
    """A JSONB column as the SQLite history gives it: keys sorted (JSONB reorders them)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return json.loads(json.dumps(value, sort_keys=True)) if isinstance(value, dict) else {}


def _run_info(row: Any) -> RunInfo:
    (run_id, name, created, commit, dirty, branch, fingerprint, machine, meter,
     plugin_version, tests, status) = row[:12]
    return RunInfo(id=int(run_id), name=name, created=created, commit=commit,
                   dirty=None if dirty is None else bool(dirty), branch=branch,
                   fingerprint=fingerprint, machine=_object(machine), meter=_object(meter),
                   plugin_version=plugin_version, tests=int(tests), status=status)


def open_postgres(location: StorageLocation, *, create: bool) -> PostgresStorage | None:
    """Open the PostgreSQL history at ``location`` (see ``open_storage``): with
    ``create`` the schema is created or migrated; without it nothing is created, a
    database without our schema is None (no history), and the session is read-only."""
    psycopg = import_psycopg()
    connection = connect(location, psycopg)
    try:
        schema = schema_name(connection, location)
        version = prepare(connection, location, schema, create=create, psycopg=psycopg)
        if version and not create:
            with pg_errors(location, "opening the history", psycopg):
                connection.execute("SET default_transaction_read_only = on")
    except BaseException:
        with contextlib.suppress(Exception):
            connection.close()
        raise
    if version == 0:
        connection.close()
        return None
    return PostgresStorage(location, connection, writable=create, schema=schema,
                           version=version, psycopg=psycopg)
