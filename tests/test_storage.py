"""The results history: round trips, lookups, names, schema versions, damage, concurrency."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.entry import Entry
from pytest_energy.errors import EnergyConfigError
from pytest_energy.history import schema
from pytest_energy.history import storage as st
from pytest_energy.history.runs import NewRun, parse_run_ref, parse_save_name
from pytest_energy.history.storage import StorageError, open_storage


def opened(directory: Path, *, create: bool = True) -> st.Storage:
    """open_storage for a history that exists (or is created): never None here."""
    storage = open_storage(directory, create=create)
    assert storage is not None
    return storage


def entry_json(nodeid: str, joules: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": "passed", "joules_per_call": joules,
            "latency_ms": {"median": 2.0, "p95": 3.0, "mean": 2.0, "min": 1.0, "max": 3.0},
            "budget": {"joules": 5.0, "latency_ms": None},
            "trials": [{"calls": 4, "window_s": 0.01, "joules": {"package:0": joules * 4}}
                       for _ in range(5)], **extra}


def entry(nodeid: str, joules: float = 1.0, **extra: Any) -> Entry:
    return Entry.from_json(entry_json(nodeid, joules, **extra))


def new_run(name: str | None = None, fp: str = "fp-a", **extra: Any) -> NewRun:
    return NewRun(created="2024-06-01T00:00:00+00:00", fingerprint=fp,
                  machine={"cpu_model": "X", "node": "h"}, meter={"requested": "auto"},
                  name=name, **extra)


def test_save_and_read_back_every_trial(tmp_path: Path) -> None:
    with opened(tmp_path / "h") as storage:
        saved = storage.save_run(new_run("main", commit="abc123", dirty=True, branch="dev"),
                                 [entry("t::a", watts=float("nan")), entry("t::b", 2.0)],
                                 {"t::a": '{"meter":"rapl"}'})
        assert (saved.id, saved.name, saved.tests) == (1, "main", 2)
        assert saved.label == "#1 'main'" and saved.commit_label == "abc123+dirty"
        entries = storage.entries(saved.id)
        assert [e.nodeid for e in entries] == ["t::a", "t::b"]
        assert entries[0].trials == entry("t::a").trials
        assert entries[0].watts is None  # JSON has no NaN: stored as null
        stored = storage.entries_json(saved.id)
        assert stored[0]["watts"] is None and stored[0]["nodeid"] == "t::a"
        assert entries[1] == entry("t::b", 2.0)
        assert storage.meter_identities(saved.id) == {"t::a": '{"meter":"rapl"}'}
        assert storage.run("1") == saved


def test_directory_gets_a_gitignore_once(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "energy"
    opened(directory).close()
    assert (directory / ".gitignore").read_text() == st.GITIGNORE
    (directory / ".gitignore").write_text("custom\n")
    opened(directory).close()
    assert (directory / ".gitignore").read_text() == "custom\n"


def test_reading_creates_nothing(tmp_path: Path) -> None:
    assert open_storage(tmp_path / "none", create=False) is None
    assert not (tmp_path / "none").exists()


def test_read_only_storage_refuses_to_save(tmp_path: Path) -> None:
    opened(tmp_path).close()
    with opened(tmp_path, create=False) as storage, \
            pytest.raises(StorageError, match="opened read-only"):
        storage.save_run(new_run(), [])


def test_lookups_latest_by_name_by_machine(tmp_path: Path) -> None:
    with opened(tmp_path) as storage:
        storage.save_run(new_run("main", fp="fp-a"), [entry("t::a", 1.0)])
        storage.save_run(new_run(None, fp="fp-a"), [entry("t::a", 1.1)])
        storage.save_run(new_run("main", fp="fp-b"), [entry("t::a", 1.2)])
        def run_id(ref: str, fp: str | None = None) -> int | None:
            found = storage.run(ref, fingerprint=fp)
            return None if found is None else found.id

        assert run_id("latest") == 3
        assert run_id("latest", "fp-a") == 2
        assert run_id("main") == 3
        assert run_id("main", "fp-a") == 1
        assert storage.run("missing") is None and storage.run("42") is None
        assert [r.id for r in storage.runs()] == [3, 2, 1]
        assert [r.id for r in storage.runs(fingerprint="fp-a", limit=1)] == [2]


def test_history_by_pattern_glob_and_limit(tmp_path: Path) -> None:
    with opened(tmp_path) as storage:
        for joules in (1.0, 1.1, 1.2):
            storage.save_run(new_run(), [entry("tests/test_m.py::test_mlp[8]", joules),
                                         entry("tests/test_m.py::test_cnn", joules)])
        by_substring = storage.history(pattern="mlp")
        assert [e.joules_per_call for _, e in by_substring] == [1.2, 1.1, 1.0]
        assert len(storage.history(pattern="mlp[8]")) == 3  # brackets are text
        assert storage.history(pattern="tests/*::test_*") == []  # a glob only when asked
        by_glob = storage.history(pattern="tests/*::test_*", glob=True, limit_runs=2)
        assert len(by_glob) == 4
        assert storage.history(nodeids=[]) == []
        exact = storage.history(nodeids=["tests/test_m.py::test_cnn"], fingerprint="fp-a")
        assert len(exact) == 3
        assert storage.history(pattern="mlp", fingerprint="other") == []


@pytest.mark.parametrize("name", ["main", "pr-1234", "v1.2_rc", "a" * 100, "1a"])
def test_valid_names(name: str) -> None:
    assert parse_save_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../main", "only letters, digits"),
        ("a/b", "only letters, digits"),
        ("", "only letters, digits"),
        ("has space", "only letters, digits"),
        ("a" * 101, "1 to 100 characters"),
        ("123", "all-digit names are run ids; add a letter, e.g. run-123"),
        ("latest", "reserved"),
    ],
)
def test_invalid_names(name: str, message: str) -> None:
    with pytest.raises(EnergyConfigError, match="save=") as info:
        parse_save_name(name)
    assert message in str(info.value)


def test_run_refs() -> None:
    assert parse_run_ref("latest") == "latest"
    assert parse_run_ref("#12") == "12"
    assert parse_run_ref("12") == "12"
    assert parse_run_ref("main") == "main"
    with pytest.raises(EnergyConfigError, match="expected latest, a run id"):
        parse_run_ref("../x")


# ----- damage and versions ------------------------------------------------------------------


def test_garbage_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = st.db_path(tmp_path)
    db.write_bytes(b"\x00garbage" * 100)
    before = db.read_bytes()
    for create in (True, False):
        with pytest.raises(StorageError) as info:
            open_storage(tmp_path, create=create)
        message = str(info.value)
        assert str(db) in message and "left untouched" in message
        assert "move it away" in message
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [st.DB_NAME]


def test_truncated_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    with opened(tmp_path) as storage:
        for i in range(30):
            storage.save_run(new_run(), [entry(f"t::{i}-{j}") for j in range(20)])
    db = st.db_path(tmp_path)
    damaged = db.read_bytes()[: 4096 * 3]
    db.write_bytes(damaged)
    with pytest.raises(StorageError, match=r"unreadable|damaged"), opened(tmp_path) as storage:
        storage.entries(1)
        storage.history(pattern="t::")
        storage.save_run(new_run(), [entry("t::new")])
    assert db.read_bytes() == damaged


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = st.db_path(tmp_path)
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER)")
    connection.close()
    before = db.read_bytes()
    with pytest.raises(StorageError, match=r"not a pytest-energy history.*accounts"):
        open_storage(tmp_path, create=True)
    assert db.read_bytes() == before


def test_empty_file_becomes_a_history(tmp_path: Path) -> None:
    st.db_path(tmp_path).write_bytes(b"")
    assert open_storage(tmp_path, create=False) is None  # no schema yet: no runs
    with opened(tmp_path) as storage:
        storage.save_run(new_run(), [entry("t::a")])


def _set_version(db: Path, version: int) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute(f"PRAGMA user_version = {version}")
    connection.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    opened(tmp_path).close()
    db = st.db_path(tmp_path)
    _set_version(db, schema.SCHEMA_VERSION + 1)
    before = db.read_bytes()
    newer, this = schema.SCHEMA_VERSION + 1, schema.SCHEMA_VERSION
    with pytest.raises(StorageError, match=rf"written by a newer pytest-energy \(history schema "
                                           rf"{newer}; this version reads schema {this} and "
                                           r"older\)"):
        open_storage(tmp_path, create=True)
    assert db.read_bytes() == before


def test_older_schema_without_upgrade_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    opened(tmp_path).close()
    db = st.db_path(tmp_path)
    before = db.read_bytes()
    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)  # and no migration to it
    for create in (True, False):
        with pytest.raises(StorageError, match=f"has history schema {current}, older than this "
                           f"pytest-energy's schema {current + 1}, and cannot be upgraded"):
            open_storage(tmp_path, create=create)
    assert db.read_bytes() == before


def test_older_schema_is_upgraded_after_keeping_a_copy(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with opened(tmp_path) as storage:
        storage.save_run(new_run("main"), [entry("t::a")])
    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.MIGRATIONS, current, lambda db: db.execute(
        "ALTER TABLE runs ADD COLUMN note TEXT"))
    before = st.db_path(tmp_path).read_bytes()
    with opened(tmp_path, create=False) as storage:  # reading never upgrades
        assert storage.run("main") is not None and storage.version == current
    assert st.db_path(tmp_path).read_bytes() == before
    with opened(tmp_path) as storage:
        assert storage.run("main") is not None and storage.version == current + 1
    assert (tmp_path / f"{st.DB_NAME}.schema{current}.bak").read_bytes() == before
    with sqlite3.connect(st.db_path(tmp_path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == current + 1
    connection.close()


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_two_processes_saving_at_once(tmp_path: Path) -> None:
    opened(tmp_path).close()
    script = textwrap.dedent(f"""
        import sys
        from pytest_energy.entry import Entry
        from pytest_energy.history.runs import NewRun
        from pytest_energy.history.storage import open_storage
        for i in range(15):
            with open_storage({str(tmp_path)!r}, create=True) as s:
                s.save_run(NewRun("t", "fp", {{}}, {{}}, name=sys.argv[1]),
                           [Entry(nodeid=f"t::{{j}}") for j in range(30)])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, name]) for name in ("one", "two")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with opened(tmp_path, create=False) as storage:
        runs = storage.runs()
        assert len(runs) == 30 and len({r.id for r in runs}) == 30
        assert {r.name for r in runs} == {"one", "two"}
        assert all(len(storage.entries(r.id)) == 30 for r in runs)


def test_history_of_more_tests_than_sqlite_binds(tmp_path: Path) -> None:
    nodeids = [f"t::test_{i}" for i in range(1200)]
    with opened(tmp_path) as storage:
        storage.save_run(new_run(), [Entry(nodeid=n) for n in nodeids])
        found = storage.history(nodeids, limit_runs=1)
    assert sorted(e.nodeid for _, e in found) == sorted(nodeids)


@pytest.mark.parametrize(
    ("error", "expected", "not_expected"),
    [
        (sqlite3.OperationalError("attempt to write a readonly database"),
         "check the permissions and free space", "unreadable"),
        (sqlite3.OperationalError("database or disk is full"),
         "check the permissions and free space", "unreadable"),
        (sqlite3.OperationalError("database is locked"), "stayed locked by another process",
         "unreadable"),
        (sqlite3.OperationalError("no such table: runs"), "unreadable", "permissions"),
        (sqlite3.DatabaseError("database disk image is malformed"), "left untouched",
         "permissions"),
    ],
)
def test_errors_say_what_kind_of_problem(tmp_path: Path, error: Exception, expected: str,
                                         not_expected: str) -> None:
    with opened(tmp_path) as storage, pytest.raises(StorageError) as info, \
            storage._errors("saving the run"):
        raise error
    assert expected in str(info.value) and not_expected not in str(info.value)
    assert str(st.db_path(tmp_path)) in str(info.value)


# ----- schema 1 (before run statuses) ----------------------------------------------------------

# The schema pytest-energy 0.x wrote as version 1, verbatim: an old file is made here
# without the current code, so the test cannot drift with it.
SCHEMA_1 = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created TEXT NOT NULL,
    commit_sha TEXT, dirty INTEGER, branch TEXT, fingerprint TEXT NOT NULL,
    machine TEXT NOT NULL, meter TEXT NOT NULL, plugin_version TEXT, tests INTEGER NOT NULL);
CREATE INDEX runs_by_fingerprint ON runs (fingerprint, id);
CREATE INDEX runs_by_name ON runs (name, id);
CREATE TABLE results (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    nodeid TEXT NOT NULL, outcome TEXT, meter_identity TEXT, joules_per_call REAL,
    joules_per_item REAL, latency_ms REAL, budget_joules REAL, budget_latency_ms REAL,
    entry TEXT NOT NULL, PRIMARY KEY (run_id, nodeid));
CREATE INDEX results_by_nodeid ON results (nodeid, run_id);
PRAGMA user_version = 1;
"""


def _schema_1_history(db: Path) -> None:
    """Three runs as schema 1 stored them: all passed; a test failed; a test errored."""
    with sqlite3.connect(db) as connection:
        connection.executescript(SCHEMA_1)
        for run_id, (name, outcome) in enumerate(
                [("main", "passed"), (None, "failed"), (None, "error")], start=1):
            connection.execute(
                "INSERT INTO runs (name, created, fingerprint, machine, meter, tests) "
                "VALUES (?, '2024-01-01T00:00:00+00:00', 'fp-a', '{}', '{}', 2)", (name,))
            for nodeid, this in (("t::a", "passed"), ("t::b", outcome)):
                connection.execute(
                    "INSERT INTO results (run_id, nodeid, outcome, entry) VALUES (?,?,?,?)",
                    (run_id, nodeid, this, json.dumps(entry_json(nodeid, outcome=this))))
    connection.close()


def test_schema_1_history_is_read_as_it_is(tmp_path: Path) -> None:
    db = st.db_path(tmp_path)
    _schema_1_history(db)
    before = db.read_bytes()
    with opened(tmp_path, create=False) as storage:  # a compare-only CI job: still works
        assert storage.version == 1
        statuses = [(r.id, r.status) for r in storage.runs()]
        passing = storage.history(["t::a"], status="passed")
        everything = storage.history(["t::a"])
        outcomes = [e.outcome for e in storage.entries(3)]
    assert statuses == [(3, "incomplete"), (2, "failed"), (1, None)]
    assert passing == []  # whether run 1 regressed was never recorded
    assert len(everything) == 3
    assert outcomes == ["passed", "error"]
    assert db.read_bytes() == before


def test_schema_1_history_is_upgraded_on_the_next_save(tmp_path: Path) -> None:
    db = st.db_path(tmp_path)
    _schema_1_history(db)
    before = db.read_bytes()
    with opened(tmp_path) as storage:  # saving upgrades, after keeping a copy
        version = storage.version
        saved = storage.save_run(new_run("main", status="passed"), [entry("t::a")])
        statuses = [(r.id, r.status) for r in storage.runs()]
        passing = [r.id for r, _ in storage.history(["t::a"], status="passed")]
    assert version == schema.SCHEMA_VERSION
    assert saved.status == "passed"
    assert statuses == [(4, "passed"), (3, "incomplete"), (2, "failed"), (1, None)]
    assert passing == [4]
    assert (tmp_path / f"{st.DB_NAME}.schema1.bak").read_bytes() == before
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    connection.close()


def test_incomplete_runs_are_never_found_as_baselines(tmp_path: Path) -> None:
    _schema_1_history(st.db_path(tmp_path))
    with opened(tmp_path, create=False) as storage:
        latest = storage.run("latest", fingerprint="fp-a", complete_only=True)
        assert latest is not None and latest.id == 2  # failed, but complete
        assert [r.id for r in storage.runs(complete_only=True)] == [2, 1]
        assert storage.run("3", complete_only=True) is not None  # an id is exact


def test_a_new_history_is_created_at_the_current_schema(tmp_path: Path) -> None:
    with opened(tmp_path) as storage:
        assert storage.version == schema.SCHEMA_VERSION
        storage.save_run(new_run(status="regressed"), [entry("t::a")])
        (run,) = storage.runs()
        assert run.status == "regressed" and run.to_dict()["status"] == "regressed"
        assert run.summary()["status"] == "regressed"
    assert not list(tmp_path.glob("*.bak"))
