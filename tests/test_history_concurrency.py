"""Processes creating and saving to a new history at the same moment (parallel CI jobs on
a fresh runner): no run lost, never "not a pytest-energy history"."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_energy.entry import Entry
from pytest_energy.history import schema
from pytest_energy.history import storage as st
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import open_storage

# What another process's creation leaves: the tables and the version, in one commit.
OTHER_PROCESS_CREATES = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created TEXT NOT NULL,
    commit_sha TEXT, dirty INTEGER, branch TEXT, fingerprint TEXT NOT NULL,
    machine TEXT NOT NULL, meter TEXT NOT NULL, plugin_version TEXT, tests INTEGER NOT NULL,
    status TEXT);
CREATE TABLE results (run_id INTEGER NOT NULL, nodeid TEXT NOT NULL, outcome TEXT,
    meter_identity TEXT, joules_per_call REAL, joules_per_item REAL, latency_ms REAL,
    budget_joules REAL, budget_latency_ms REAL, entry TEXT NOT NULL,
    PRIMARY KEY (run_id, nodeid));
CREATE INDEX results_by_nodeid ON results (nodeid, run_id);
PRAGMA user_version = 2;
"""


def _run() -> NewRun:
    return NewRun(created="2025-01-01T00:00:00+00:00", fingerprint="fp", machine={},
                  meter={}, name="main", status="passed")


def test_a_history_created_between_two_reads_is_not_taken_for_another_program_s(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race behind "not a pytest-energy history": the version read before another
    process committed its schema, the tables after. Read in one transaction, the other
    process cannot commit in between (it waits, here: gives up at once)."""
    db = st.db_path(tmp_path)
    sqlite3.connect(db).close()  # an empty file: the first process is just starting
    real_tables = schema._tables

    def tables_after_another_process_created_the_history(db_: sqlite3.Connection
                                                         ) -> set[str]:
        monkeypatch.setattr(schema, "_tables", real_tables)
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        with contextlib.suppress(sqlite3.OperationalError):  # "locked": it must wait
            other.executescript(OTHER_PROCESS_CREATES)
        other.close()
        return real_tables(db_)

    monkeypatch.setattr(schema, "_tables", tables_after_another_process_created_the_history)
    storage = open_storage(tmp_path, create=True)
    assert storage is not None
    with storage:
        saved = storage.save_run(_run(), [Entry(nodeid="t::a")])
        assert saved.tests == 1 and storage.version == schema.SCHEMA_VERSION


def test_a_schema_created_before_the_write_lock_is_used_not_recreated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Looked at again under the write lock: the other process's history is upgraded
    and saved to, not created a second time (and never refused)."""
    db = st.db_path(tmp_path)
    with sqlite3.connect(db) as other:
        other.executescript(OTHER_PROCESS_CREATES)
    other.close()
    monkeypatch.setattr(schema, "_snapshot", lambda db_: (0, set()))  # read before that
    storage = open_storage(tmp_path, create=True)
    assert storage is not None
    with storage:
        storage.save_run(_run(), [Entry(nodeid="t::a")])
        assert [r.name for r in storage.runs()] == ["main"]


def test_a_header_being_written_is_not_refused(tmp_path: Path) -> None:
    """Another process creating the file: its first bytes may be there before the rest."""
    db = st.db_path(tmp_path)
    db.write_bytes(schema.SQLITE_MAGIC[:6])
    schema.check_header(db)  # no error
    db.write_bytes(b"not sqlite at all")
    with pytest.raises(st.StorageError, match="not an SQLite database"):
        schema.check_header(db)


SAVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pytest_energy.entry import Entry
    from pytest_energy.history.runs import NewRun
    from pytest_energy.history.storage import StorageError, open_storage

    root, name, rounds, start, step = (Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                       float(sys.argv[4]), float(sys.argv[5]))
    failures = 0
    for round_ in range(rounds):
        while time.time() < start + round_ * step:  # every process at the same moment
            pass
        try:
            with open_storage(root / f"round{round_}", create=True) as storage:
                storage.save_run(NewRun("2025", "fp", {}, {}, name=name),
                                 [Entry(nodeid=f"t::{i}") for i in range(20)])
        except StorageError as exc:
            failures += 1
            print(exc)
    sys.exit(3 if failures else 0)
""")


@pytest.mark.slow
def test_six_processes_saving_to_a_new_history_at_once(tmp_path: Path) -> None:
    """Six processes create and save to each of 25 new histories at the same moment:
    every run is stored, none is refused (before the fix: about 1 round in 8)."""
    processes, rounds, step = 6, 25, 0.12
    start = time.time() + 2.0  # after every interpreter has started
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), f"p{i}", str(rounds),
                               str(start), str(step)], stdout=subprocess.PIPE, text=True)
             for i in range(processes)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * processes, outputs
    for round_ in range(rounds):
        storage = open_storage(tmp_path / f"round{round_}", create=False)
        assert storage is not None
        with storage:
            runs = storage.runs()
            assert sorted(r.name for r in runs) == [f"p{i}" for i in range(processes)]
            assert all(len(storage.entries(r.id)) == 20 for r in runs)
