"""Schema 2 (one JSON object per test) -> 3 (packed): old histories read as they are,
upgraded on the next save with a copy kept, every stored result unchanged."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.entry import Entry
from pytest_energy.history import schema
from pytest_energy.history import storage as st
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import open_storage

# Schema 2 as pytest-energy wrote it, verbatim, kept once in the size bench (written
# without the current code, so the test cannot drift with it)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from history_size import SCHEMA_2


def stored(nodeid: str, joules: float, **extra: Any) -> dict[str, Any]:
    """An entry as an older version stored it (some keys missing, as then)."""
    return {"nodeid": nodeid, "outcome": "passed", "joules_per_call": joules, "valid": True,
            "trials": [{"calls": 4, "window_s": 0.0123456789, "joules": {"pkg:0": joules * 4}}
                       for _ in range(5)], **extra}


RUNS = [  # (name, status, entries)
    ("main", "passed", [stored("t.py::a", 1.0 / 3), stored("t.py::b[1]", 2.0)]),
    (None, "failed", [stored("t.py::a", 1.1), stored("t.py::b[1]", 2.0, outcome="failed")]),
    # saved as passed although a test was Ctrl-C'd: never a baseline once upgraded
    ("main", "passed", [stored("t.py::a", 9.0, outcome="interrupted", partial=True),
                        stored("t.py::b[1]", 2.0)]),
]


def schema_2_history(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    db = st.db_path(directory)
    with sqlite3.connect(db) as connection:
        connection.executescript(SCHEMA_2)
        for run_id, (name, status, entries) in enumerate(RUNS, start=1):
            connection.execute(
                "INSERT INTO runs (name, created, fingerprint, machine, meter, tests, status) "
                "VALUES (?, '2024-01-01T00:00:00+00:00', 'fp-a', '{\"node\": \"h\"}', '{}', ?, ?)",
                (name, len(entries), status))
            for data in entries:
                connection.execute(
                    "INSERT INTO results (run_id, nodeid, outcome, meter_identity, entry) "
                    "VALUES (?,?,?,?,?)", (run_id, data["nodeid"], data["outcome"],
                                           f'{{"meter": "rapl{run_id}"}}',
                                           json.dumps(data, sort_keys=True)))
    connection.close()
    return db


def test_a_schema_2_history_is_read_as_it_is(tmp_path: Path) -> None:
    db = schema_2_history(tmp_path)
    before = db.read_bytes()
    storage = open_storage(tmp_path, create=False)
    assert storage is not None
    with storage:  # a compare-only CI job: reads, never upgrades
        assert storage.version == 2
        assert [r.status for r in storage.runs()] == ["passed", "failed", "passed"]
        assert storage.entries_json(1) == RUNS[0][2]
        assert storage.meter_identities(2) == {"t.py::a": '{"meter": "rapl2"}',
                                               "t.py::b[1]": '{"meter": "rapl2"}'}
        assert len(storage.history(["t.py::b[1]"])) == 3
    assert db.read_bytes() == before


def test_the_next_save_packs_every_result_unchanged(tmp_path: Path) -> None:
    db = schema_2_history(tmp_path)
    before = db.read_bytes()
    storage = open_storage(tmp_path, create=True)
    assert storage is not None
    with storage:
        assert storage.version == schema.SCHEMA_VERSION
        for run_id, (_name, _status, entries) in enumerate(RUNS, start=1):
            packed = storage.entries_json(run_id)
            assert packed == entries
            assert [list(e) for e in packed] == [sorted(e) for e in entries]  # as stored
            assert storage.meter_identities(run_id)["t.py::a"] == f'{{"meter": "rapl{run_id}"}}'
        statuses = [(r.id, r.status) for r in storage.runs()]
        storage.save_run(NewRun(created="2025", fingerprint="fp-a", machine={}, meter={},
                                status="passed"), [Entry.from_json(stored("t.py::a", 1.2))])
        trend = [e.joules_per_call for _, e in storage.history(["t.py::a"])]
    # the Ctrl-C'd run #3 is incomplete now: never a baseline
    assert statuses == [(3, "incomplete"), (2, "failed"), (1, "passed")]
    assert trend == [1.2, 9.0, 1.1, 1.0 / 3]
    assert (tmp_path / f"{st.DB_NAME}.schema2.bak").read_bytes() == before
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        nodeids = [row[0] for row in connection.execute("SELECT nodeid FROM nodeids")]
    connection.close()
    assert "results_v2" not in tables and {"tests", "modules", "meter_identities"} <= tables
    assert sorted(nodeids) == ["t.py::a", "t.py::b[1]"]  # each test once, not once a run


def test_a_damaged_schema_2_result_stops_the_upgrade_and_changes_nothing(
        tmp_path: Path) -> None:
    db = schema_2_history(tmp_path)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE results SET entry = '{not json' WHERE run_id = 2")
    connection.close()
    before = db.read_bytes()
    with pytest.raises(st.StorageError, match=r"unreadable.*not valid JSON"):
        open_storage(tmp_path, create=True)
    assert db.read_bytes() == before


def test_a_packed_history_knows_each_test_once_and_forgets_pruned_ones(tmp_path: Path) -> None:
    storage = open_storage(tmp_path, create=True)
    assert storage is not None
    with storage:
        run = NewRun(created="2025", fingerprint="fp", machine={}, meter={})
        first = storage.save_run(run, [Entry(nodeid="a.py::t[1]"), Entry(nodeid="a.py::t[2]"),
                                       Entry(nodeid="no-separator")])
        storage.save_run(run, [Entry(nodeid="a.py::t[1]"), Entry(nodeid="b.py::C::t")])
        storage.delete_runs([first.id])
        assert [e.nodeid for e in storage.entries(first.id + 1)] == ["a.py::t[1]", "b.py::C::t"]
    with sqlite3.connect(st.db_path(tmp_path)) as connection:
        nodeids = sorted(row[0] for row in connection.execute("SELECT nodeid FROM nodeids"))
        modules = sorted(row[0] for row in connection.execute("SELECT path FROM modules"))
    connection.close()
    assert nodeids == ["a.py::t[1]", "b.py::C::t"] and modules == ["a.py", "b.py::C"]
