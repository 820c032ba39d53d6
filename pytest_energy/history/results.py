"""The results of stored runs: written packed (schema 3), read in either layout.

Schema 3 (:class:`PackedRows`): a ``results`` row holds the test's id in ``tests`` (its
node id: the view ``nodeids``), its meter identity's id in ``meter_identities``, its
outcome (for ad-hoc SQL), and the entry packed by :mod:`.codec` with the run's
dictionary (``runs.packing``); its rowid places it in its run (:func:`run_range`).
Schemas 1 and 2 (:class:`JsonRows`, read only: a save upgrades the file first) hold
the node id and the JSON text of the entry in every row.

Both read rows one at a time from the cursor, so ``pytest-energy export`` streams a
history of any size, and both turn a damaged row into ``sqlite3.DatabaseError`` (the
callers' :func:`~.sqlite.sqlite_errors` makes it a StorageError naming the file).
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_energy.history.codec import CodecError, Packing, dictionary
from pytest_energy.history.runs import BROKEN_OUTCOMES, INCOMPLETE

if TYPE_CHECKING:
    from pytest_energy.entry import Entry

BROKEN_SQL = "(" + ", ".join(f"'{outcome}'" for outcome in BROKEN_OUTCOMES) + ")"
"""The outcomes that make a run incomplete, as an SQL list for ``outcome IN``."""
_PACKINGS_KEPT = 32  # runs whose dictionary stays decoded while reading
POSITION_BITS = 24  # a result's rowid: run_id << POSITION_BITS | position in the run


@dataclass(frozen=True)
class ResultRow:
    """One test's result to store: its entry as JSON (``Entry.to_json()``)."""

    nodeid: str
    data: Mapping[str, Any]
    identity: str | None = None


def is_incomplete(data: Mapping[str, Any]) -> bool:
    """A result that makes its run incomplete: the test errored or was interrupted
    (partial). A run holding one is never a baseline and never learned from."""
    return data.get("outcome") in BROKEN_OUTCOMES or data.get("partial") is True


def damaged(what: str) -> sqlite3.DatabaseError:
    """The error for a stored row that cannot be read (the file is damaged)."""
    return sqlite3.DatabaseError(f"a stored result {what}")


# ----- writing (schema 3) ------------------------------------------------------------------


def result_rows(entries: Iterable[Entry], identities: Mapping[str, str], status: str | None
                ) -> tuple[list[ResultRow], str | None]:
    """A run's results as both backends store them (a node id given twice keeps its last
    result), and the run's status: ``incomplete`` when a test errored or was interrupted,
    whatever ``status`` says."""
    by_id = {entry.nodeid: entry for entry in entries}
    rows = [ResultRow(nodeid, entry.to_json(), identities.get(nodeid))
            for nodeid, entry in by_id.items()]
    return rows, INCOMPLETE if any(is_incomplete(row.data) for row in rows) else status


def insert_results(db: sqlite3.Connection, run_id: int, rows: Sequence[ResultRow]) -> None:
    """Pack and insert the results of run ``run_id``, inside the caller's transaction.

    A node id given twice keeps its last result (as the JSON layout's primary key did).
    """
    rows = list({row.nodeid: row for row in rows}.values())
    if len(rows) >= 1 << POSITION_BITS:
        raise sqlite3.DataError(f"a run of {len(rows)} tests: at most "
                                f"{(1 << POSITION_BITS) - 1} can be stored")
    # The node id lives in ``tests``; its key stays in place (null), so the entry
    # comes back with its keys in the order it was saved in.
    bodies = [{key: None if key == "nodeid" else value for key, value in row.data.items()}
              for row in rows]
    zdict = dictionary(bodies)
    db.execute("UPDATE runs SET packing = ? WHERE id = ?", (zdict, run_id))
    ids = (_test_ids(db, [row.nodeid for row in rows]),
           _ids(db, "meter_identities", "identity",
                [row.identity for row in rows if row.identity is not None]))
    db.executemany(
        "INSERT INTO results (id, run_id, test_id, outcome, meter_identity, entry) "
        "VALUES (?,?,?,?,?,?)", _result_values(run_id, rows, bodies, ids, Packing(zdict)))


def _result_values(run_id: int, rows: Sequence[ResultRow], bodies: Sequence[Mapping[str, Any]],
                   ids: tuple[dict[str, int], dict[str, int]], packing: Packing
                   ) -> Iterator[tuple[Any, ...]]:
    """The ``results`` rows of a run, packed one at a time as SQLite takes them."""
    test_ids, identity_ids = ids
    first, _ = run_range(run_id)
    for position, (row, body) in enumerate(zip(rows, bodies, strict=True)):
        outcome = row.data.get("outcome")
        yield (first + position, run_id, test_ids[row.nodeid],
               None if outcome is None else str(outcome),
               None if row.identity is None else identity_ids[row.identity],
               packing.encode(body))


def run_range(run_id: int) -> tuple[int, int]:
    """The first and last rowid the results of run ``run_id`` may have (schema 3)."""
    first = int(run_id) << POSITION_BITS
    return first, first + (1 << POSITION_BITS) - 1


def _ids(db: sqlite3.Connection, table: str, column: str, values: Sequence[str]
         ) -> dict[str, int]:
    """value -> id in a small lookup table (``modules``, ``meter_identities``), new
    values added (the caller holds the write lock: nobody adds one meanwhile)."""
    ids = {value: row_id for row_id, value in db.execute(f"SELECT id, {column} FROM {table}")}
    for value in dict.fromkeys(values):
        if value not in ids:
            cursor = db.execute(f"INSERT INTO {table} ({column}) VALUES (?)", (value,))
            ids[value] = int(cursor.lastrowid or 0)
    return ids


def _test_ids(db: sqlite3.Connection, nodeids: Sequence[str]) -> dict[str, int]:
    """nodeid -> id in ``tests``, new tests added: the part before the last ``::`` in
    ``modules`` (shared by a file's tests), the rest in ``tests`` (see the schema)."""
    ids = {nodeid: row_id for row_id, nodeid in db.execute("SELECT id, nodeid FROM nodeids")}
    new = [nodeid for nodeid in dict.fromkeys(nodeids) if nodeid not in ids]
    modules = _ids(db, "modules", "path", [nodeid.rpartition("::")[0] for nodeid in new
                                           if "::" in nodeid])
    for nodeid in new:
        path, separator, name = nodeid.rpartition("::")
        cursor = db.execute("INSERT INTO tests (module, name) VALUES (?, ?)",
                            (modules[path] if separator else None, name))
        ids[nodeid] = int(cursor.lastrowid or 0)
    return ids


def pack_stored_results(db: sqlite3.Connection, legacy_table: str) -> None:
    """Schema 2 -> 3: pack every run's JSON results from ``legacy_table`` (one run in
    memory at a time), and mark a run holding an interrupted or errored test
    ``incomplete``, whatever status it was saved with."""
    run_ids = [row[0] for row in db.execute("SELECT id FROM runs ORDER BY id")]
    for run_id in run_ids:
        rows = [ResultRow(nodeid, json_entry(entry), identity)
                for nodeid, identity, entry in db.execute(
                    f"SELECT nodeid, meter_identity, entry FROM {legacy_table} "
                    "WHERE run_id = ? ORDER BY rowid", (run_id,))]
        insert_results(db, run_id, rows)
        if any(is_incomplete(row.data) for row in rows):
            db.execute("UPDATE runs SET status = 'incomplete' WHERE id = ?", (run_id,))


def json_entry(text: Any) -> dict[str, Any]:
    """A stored JSON entry (schemas 1 and 2)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise damaged(f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise damaged("is not a JSON object")
    return value


# ----- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryQuery:
    """What :meth:`Rows.history` selects: tests by exact ids or a pattern (a literal
    substring, or a GLOB with ``glob``), runs by fingerprint and status."""

    nodeids: Sequence[str] | None = None
    pattern: str | None = None
    glob: bool = False
    fingerprint: str | None = None
    status: str | None = None


class JsonRows:
    """Results of schemas 1 and 2: node id and JSON text in every row."""

    nodeid = "results.nodeid"
    joins = "results JOIN runs ON runs.id = results.run_id"
    order = "results.rowid"

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def entries(self, run_id: int) -> Iterator[dict[str, Any]]:
        """The entries of a run as stored (JSON objects, node id included), in order."""
        for text, in self._db.execute(
                "SELECT entry FROM results WHERE run_id = ? ORDER BY rowid", (run_id,)):
            yield json_entry(text)

    def identities(self, run_id: int) -> dict[str, str]:
        rows = self._db.execute("SELECT nodeid, meter_identity FROM results WHERE run_id = ?",
                                (run_id,))
        return {nodeid: identity for nodeid, identity in rows if identity is not None}

    def decode(self, row: sqlite3.Row) -> dict[str, Any]:
        """The entry of a :meth:`history` row."""
        return json_entry(row["entry"])

    def tests_where(self, condition: str) -> str:
        """A WHERE clause selecting the results of the tests ``condition`` (on
        :attr:`nodeid`) selects."""
        return condition


class PackedRows(JsonRows):
    """Results of schema 3: ids into ``tests`` and ``meter_identities``, packed entries."""

    nodeid = "nodeids.nodeid"
    joins = ("results JOIN runs ON runs.id = results.run_id "
             "JOIN nodeids ON nodeids.id = results.test_id")
    order = "results.id"

    def __init__(self, db: sqlite3.Connection) -> None:
        super().__init__(db)
        self._packings: OrderedDict[int, Packing] = OrderedDict()

    def _packing(self, run_id: int) -> Packing:
        """The run's dictionary, decoded once (the newest few runs' are kept)."""
        packing = self._packings.pop(run_id, None)
        if packing is None:
            row = self._db.execute("SELECT packing FROM runs WHERE id = ?", (run_id,)).fetchone()
            packing = Packing(bytes(row[0] or b"") if row is not None else b"")
        self._packings[run_id] = packing
        while len(self._packings) > _PACKINGS_KEPT:
            self._packings.popitem(last=False)
        return packing

    def _unpack(self, run_id: int, nodeid: str, packed: bytes) -> dict[str, Any]:
        try:
            body = self._packing(run_id).decode(packed)
        except CodecError as exc:
            raise damaged(f"cannot be unpacked ({exc})") from None
        body["nodeid"] = nodeid  # in its place (see insert_results)
        return body

    def entries(self, run_id: int) -> Iterator[dict[str, Any]]:
        for nodeid, packed in self._db.execute(
                "SELECT nodeids.nodeid, results.entry FROM results "
                "JOIN nodeids ON nodeids.id = results.test_id "
                "WHERE results.id BETWEEN ? AND ? ORDER BY results.id", run_range(run_id)):
            yield self._unpack(run_id, nodeid, packed)

    def identities(self, run_id: int) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT nodeids.nodeid, meter_identities.identity FROM results "
            "JOIN nodeids ON nodeids.id = results.test_id "
            "JOIN meter_identities ON meter_identities.id = results.meter_identity "
            "WHERE results.id BETWEEN ? AND ?", run_range(run_id))
        return dict(rows.fetchall())

    def decode(self, row: sqlite3.Row) -> dict[str, Any]:
        return self._unpack(row["result_run_id"], row["result_nodeid"], row["entry"])

    def tests_where(self, condition: str) -> str:
        # The tests first (a scan of the small table), then their results by index:
        # never a scan of every stored result.
        return f"results.test_id IN (SELECT nodeids.id FROM nodeids WHERE {condition})"


def rows_for(db: sqlite3.Connection, version: int, packed_from: int) -> JsonRows:
    """The reader for a file of schema ``version``."""
    return PackedRows(db) if version >= packed_from else JsonRows(db)


def history_query(rows: JsonRows, query: HistoryQuery, ids: Sequence[str] | None,
                  status_sql: str, run_columns: str) -> tuple[str, list[Any]]:
    """The SELECT behind :meth:`Storage.history` for this layout, newest run first."""
    tests: list[str] = []
    params: list[Any] = []
    if ids is not None:
        tests.append(f"{rows.nodeid} IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    if query.pattern is not None:
        tests.append(f"{rows.nodeid} GLOB ?" if query.glob else f"instr({rows.nodeid}, ?) > 0")
        params.append(query.pattern)
    clauses = [rows.tests_where(" AND ".join(tests))] if tests else []
    for clause, param in (("runs.fingerprint = ?", query.fingerprint),
                          (f"{status_sql} = ?", query.status)):
        if param is not None:
            clauses.append(clause)
            params.append(param)
    sql = (f"SELECT {run_columns}, {rows.nodeid} AS result_nodeid, "
           f"results.run_id AS result_run_id, results.entry FROM {rows.joins}"
           + (" WHERE " + " AND ".join(clauses) if clauses else "")
           + f" ORDER BY runs.id DESC, {rows.order}")
    return sql, params
