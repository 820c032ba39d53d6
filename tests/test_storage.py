"""The results history: round trips, lookups, names, schema versions, damage, concurrency."""

from __future__ import annotations

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
        by_glob = storage.history(pattern="tests/*::test_*", limit_runs=2)
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
    assert open_storage(tmp_path, create=False) is not None
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
    with pytest.raises(StorageError, match=r"written by a newer pytest-energy \(history schema "
                                           r"2; this version reads schema 1 and older\)"):
        open_storage(tmp_path, create=True)
    assert db.read_bytes() == before


def test_older_schema_without_upgrade_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    opened(tmp_path).close()
    db = st.db_path(tmp_path)
    before = db.read_bytes()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    with pytest.raises(StorageError, match="has history schema 1, older than this "
                                           "pytest-energy's schema 2, and cannot be upgraded"):
        open_storage(tmp_path, create=True)
    assert db.read_bytes() == before


def test_older_schema_is_upgraded_after_keeping_a_copy(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with opened(tmp_path) as storage:
        storage.save_run(new_run("main"), [entry("t::a")])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(schema.MIGRATIONS, 1, lambda db: db.execute(
        "ALTER TABLE runs ADD COLUMN note TEXT"))
    with pytest.raises(StorageError, match="upgraded on the next save"):
        open_storage(tmp_path, create=False)  # reading never upgrades
    with opened(tmp_path) as storage:
        assert storage.run("main") is not None
    assert (tmp_path / f"{st.DB_NAME}.schema1.bak").is_file()
    with sqlite3.connect(st.db_path(tmp_path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
    connection.close()


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
