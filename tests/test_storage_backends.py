"""One storage suite, two backends: the SQLite file and a PostgreSQL database behave alike.

Every test taking ``history`` runs against both (see ``tests/pg_support.py`` for the
server: without ``$PYTEST_ENERGY_TEST_POSTGRES`` the PostgreSQL half skips, under CI it
fails). PostgreSQL-only behaviour (migrations, connection errors, GLOB translation)
follows; the end-to-end runs and the CLI are in ``test_storage_postgres_e2e.py``.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pg_support import admin, pg_database_fixture, pg_url_fixture, with_schema  # noqa: F401

from pytest_energy.entry import Entry
from pytest_energy.history.location import StorageLocation, resolve_storage_dir, storage_location
from pytest_energy.history.pg_schema import SCHEMA_VERSION, glob_regex
from pytest_energy.history.runs import INCOMPLETE, PASSED, NewRun
from pytest_energy.history.storage import HistoryStore, StorageError, open_storage
from pytest_energy.history.store import entries_by_test
from pytest_energy.options import Resolved

FP_A, FP_B = "a" * 16, "b" * 16


class History:
    """A fresh, empty history of one backend, and how to open it."""

    def __init__(self, location: StorageLocation) -> None:
        self.location = location

    def open(self, *, create: bool = True) -> HistoryStore:
        storage = open_storage(self.location, create=create)
        assert storage is not None
        return storage

    def save(self, entries: list[Entry], *, name: str | None = None, fingerprint: str = FP_A,
             status: str | None = PASSED, identities: dict[str, str] | None = None) -> int:
        with self.open() as storage:
            run = NewRun(created="2025-01-02T03:04:05+00:00", fingerprint=fingerprint,
                         machine={"system": "Linux", "cpu_count": 4, "a": {"z": 1, "b": [1]}},
                         meter={"name": "seq"}, name=name, commit="c0ffee", dirty=True,
                         branch="main", plugin_version="1.0", status=status)
            return storage.save_run(run, entries, identities).id


@pytest.fixture(params=["sqlite", "postgresql"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> History:
    if request.param == "sqlite":
        return History(storage_location(tmp_path / "energy"))
    return History(storage_location(request.getfixturevalue("pg_url")))


def entry(nodeid: str, joules: float = 1.0, **extra: Any) -> Entry:
    return Entry.from_json({
        "nodeid": nodeid, "outcome": "passed", "joules_per_call": joules, "valid": True,
        "meter": "seq", "domains": ["seq:0"], "warnings": ["w \u00e9\u2603 \x1b[1m"],
        "trials": [{"calls": 10, "window_s": 0.01, "joules": {"seq:0": joules * 10}}] * 3,
        **extra})


# ----- both backends -------------------------------------------------------------------------


def test_reading_an_empty_location_is_no_history_and_creates_nothing(history: History) -> None:
    assert open_storage(history.location, create=False) is None
    assert open_storage(history.location, create=False) is None  # still nothing created


def test_save_and_read_back_exactly_what_was_saved(history: History) -> None:
    entries = [entry("x.py::t[8]", 1.5), entry("x.py::t9", 2.0, outcome="failed"),
               entry("no_module_test", 3.0)]
    run_id = history.save(entries, name="main", identities={"x.py::t[8]": "rapl:pkg"})
    with history.open(create=False) as storage:
        assert not storage.writable
        assert storage.entries_json(run_id) == [e.to_json() for e in entries]
        assert [list(d) for d in storage.entries_json(run_id)] == [
            list(e.to_json()) for e in entries]  # key order too
        assert storage.entries(run_id) == entries
        assert list(storage.iter_entries_json(run_id)) == storage.entries_json(run_id)
        assert storage.meter_identities(run_id) == {"x.py::t[8]": "rapl:pkg"}
        run = storage.run(str(run_id))
        assert run is not None and run.to_dict() == {
            "id": run_id, "name": "main", "created": "2025-01-02T03:04:05+00:00",
            "commit": "c0ffee", "dirty": True, "branch": "main", "fingerprint": FP_A,
            "machine": {"a": {"b": [1], "z": 1}, "cpu_count": 4, "system": "Linux"},
            "meter": {"name": "seq"}, "plugin_version": "1.0", "tests": 3, "status": PASSED}
        assert list(run.machine) == ["a", "cpu_count", "system"]  # sorted, as SQLite


def test_read_only_storage_refuses_writes(history: History) -> None:
    history.save([entry("x.py::t")])
    with history.open(create=False) as storage, pytest.raises(StorageError, match="read-only"):
        storage.delete_runs([1])


def test_run_refs_names_fingerprints_and_complete_only(history: History) -> None:
    first = history.save([entry("x.py::t")], name="main")
    other = history.save([entry("x.py::t")], name="main", fingerprint=FP_B)
    broken = history.save([entry("x.py::t", outcome="error")], name="main")
    with history.open(create=False) as storage:
        assert [r.id for r in storage.runs()] == [broken, other, first]
        assert storage.run(str(broken)).status == INCOMPLETE  # type: ignore[union-attr]
        assert storage.run("latest").id == broken  # type: ignore[union-attr]
        assert storage.run("latest", complete_only=True).id == other  # type: ignore[union-attr]
        assert storage.run("main", fingerprint=FP_A,
                           complete_only=True).id == first  # type: ignore[union-attr]
        assert storage.run("nope") is None and storage.run("999") is None
        assert [r.id for r in storage.runs(name="main", limit=2)] == [broken, other]
        assert [r.id for r in storage.runs(fingerprint=FP_A, complete_only=True)] == [first]


def test_history_queries_exact_substring_glob_limit_status(history: History) -> None:
    ids = ["x.py::t[8]", "x.py::t[80]", "x.py::t8", "X.py::t8"]
    runs = [history.save([entry(n, float(k + 1)) for n in ids], name="main",
                         status=PASSED if k != 1 else "failed") for k in range(3)]
    with history.open(create=False) as storage:
        def nodeids(**where: Any) -> list[str]:
            return [e.nodeid for _run, e in storage.history(**where)]

        assert nodeids(nodeids=["x.py::t[8]"]) == ["x.py::t[8]"] * 3
        assert nodeids(pattern="t[8", limit_runs=1) == ["x.py::t[8]", "x.py::t[80]"]
        assert nodeids(pattern="x.py::t[8]", glob=True, limit_runs=1) == ["x.py::t8"]
        assert nodeids(pattern="x.py::t[[]8*", glob=True, limit_runs=1) == [
            "x.py::t[8]", "x.py::t[80]"]
        assert nodeids(pattern="x.py::t[", glob=True) == []  # unclosed set: no match
        assert nodeids(pattern="x.py*", glob=True, limit_runs=1) == ids[:3]  # case-sensitive
        pairs = storage.history(["x.py::t8"], limit_runs=2)
        assert [run.id for run, _e in pairs] == [runs[2], runs[1]]  # newest first
        assert [run.id for run, _e in storage.history(["x.py::t8"], status="failed")] == [
            runs[1]]
        assert storage.history(["x.py::t8"], fingerprint=FP_B) == []
        by_test, count = entries_by_test(storage, ["x.py::t8", "x.py::t[8]"], FP_A, PASSED, 5)
        assert count == 2 and [e.joules_per_call for e in by_test["x.py::t8"]] == [3.0, 1.0]


def test_delete_runs_takes_their_results(history: History) -> None:
    kept, gone = (history.save([entry("x.py::t")]) for _ in range(2))
    with history.open() as storage:
        assert storage.delete_runs([gone, 12345]) == 1
        assert [r.id for r in storage.runs()] == [kept]
        assert storage.entries_json(gone) == [] and len(storage.entries(kept)) == 1
        freed = storage.vacuum()  # PostgreSQL: None, the server reclaims space itself
        assert freed is None if storage.location.is_postgres else freed >= 0  # type: ignore[operator]


def test_set_status_confirms_only_pending_complete_runs(history: History) -> None:
    pending = history.save([entry("x.py::t")], status=INCOMPLETE)
    errored = history.save([entry("x.py::t", outcome="error")], status=INCOMPLETE)
    failed = history.save([entry("x.py::t")], status="failed")
    with history.open() as storage:
        for run_id in (pending, errored, failed):
            storage.set_status(run_id, PASSED)
        assert [storage.run(str(i)).status for i in (pending, errored, failed)  # type: ignore[union-attr]
                ] == [PASSED, INCOMPLETE, "failed"]


def test_a_test_id_given_twice_keeps_its_last_result(history: History) -> None:
    run_id = history.save([entry("x.py::t", 1.0), entry("x.py::u"), entry("x.py::t", 2.0)])
    with history.open() as storage:
        assert [e.joules_per_call for e in storage.entries(run_id)] == [2.0, 1.0]


# ----- locations: directories and URLs, passwords never shown ----------------------------------


def test_location_hides_passwords_everywhere() -> None:
    where = storage_location("postgresql://me:s3cret@db.example:5433/energy?password=s3cret"
                             "&sslmode=require")
    assert where.is_postgres and where.kind == "postgresql"
    for text in (where.display, str(where), repr(where)):
        assert "s3cret" not in text and "me@db.example:5433/energy" in text
    assert "sslmode=require" in where.display
    assert storage_location("postgres://db/x").is_postgres
    assert storage_location(Path("postgresql:/x")).directory == Path("postgresql:/x")
    assert storage_location("rel/dir").display == str(Path("rel/dir/history.sqlite3"))
    with pytest.raises(ValueError):
        StorageLocation()


def test_a_url_from_ini_is_not_joined_to_the_rootdir(tmp_path: Path) -> None:
    url = "postgresql://ci@db:5432/energy"
    for source in ("ini option energy_storage", "--energy-storage", "environment X"):
        got = resolve_storage_dir(Resolved(url, source), invocation_dir=tmp_path,
                                  rootdir=tmp_path)
        assert got == StorageLocation(url=url)
    assert resolve_storage_dir(Resolved("h", "ini option x"), invocation_dir=Path("/i"),
                               rootdir=tmp_path) == tmp_path / "h"


def test_without_psycopg_the_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StorageError, match=r"pytest-energy\[postgres\]"):
        open_storage(storage_location("postgresql://u:pw@localhost/x"), create=False)


# ----- PostgreSQL only: GLOB as a regular expression -------------------------------------------

GLOBS = ["*", "x*", "*8", "?", "x.py::t[8]", "x.py::t[[]8*", "[^x]*", "[]]*", "[]-a]*",
         "[a-c-e]*", "[z-a]*", "[^z-a]*", "*[", "a\\b*", "*.py*", "t?", "[!x]*", "*[0-9]",
         "X*", "*(*", "*$*", "^*", "é*", "[é]*", "*{1}*"]
TEXTS = ["x.py::t[8]", "x.py::t8", "X.py::t8", "]x", "-x", "bx", "dx", "a\\bc", "t1", "t",
         "!x", "é", "é8", "a(b", "x$y", "^z", "a{1}b", "", "\n", "e", "c"]


def test_glob_translation_matches_sqlite_glob(pg_url: str) -> None:
    sqlite = sqlite3.connect(":memory:")
    expected = [[bool(sqlite.execute("SELECT ? GLOB ?", (t, g)).fetchone()[0]) for t in TEXTS]
                for g in GLOBS]
    with admin(pg_url) as db:  # type: ignore[attr-defined]
        got = [[False] * len(TEXTS) if glob_regex(g) is None else
               [bool(row[0]) for row in db.execute(
                   "SELECT t ~ %s FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) "
                   "ORDER BY n", (glob_regex(g), TEXTS))] for g in GLOBS]
    assert dict(zip(GLOBS, got, strict=True)) == dict(zip(GLOBS, expected, strict=True))


# ----- PostgreSQL only: schema, migrations, refusals -------------------------------------------


def _schema(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


def test_fresh_database_is_created_at_the_current_version_once(pg_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def first_run() -> None:
        try:
            barrier.wait()
            History(storage_location(pg_url)).save([entry("x.py::t")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with admin(pg_url) as db:  # type: ignore[attr-defined]
        versions = db.execute(f"SELECT version FROM {_schema(pg_url)}.schema_version").fetchall()
        runs = db.execute(f"SELECT count(*) FROM {_schema(pg_url)}.runs").fetchone()[0]
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)] and runs == 4


@pytest.mark.parametrize("create", [True, False])
def test_a_newer_schema_is_refused_and_left_untouched(pg_url: str, create: bool) -> None:
    History(storage_location(pg_url)).save([entry("x.py::t")])
    schema = _schema(pg_url)
    with admin(pg_url) as db:  # type: ignore[attr-defined]
        db.execute(f"INSERT INTO {schema}.schema_version (version) VALUES (99)")
    with pytest.raises(StorageError, match=r"newer pytest-energy.*schema 99.*left untouched"):
        open_storage(storage_location(pg_url), create=create)
    with admin(pg_url) as db:  # type: ignore[attr-defined]
        assert db.execute(f"SELECT count(*) FROM {schema}.runs").fetchone()[0] == 1


@pytest.mark.parametrize("table", ["runs (id int)", "schema_version (x text)"])
@pytest.mark.parametrize("create", [True, False])
def test_foreign_tables_are_refused(pg_url: str, table: str, create: bool) -> None:
    schema = _schema(pg_url)
    with admin(pg_url) as db:  # type: ignore[attr-defined]
        db.execute(f"CREATE SCHEMA {schema}")
        db.execute(f"CREATE TABLE {schema}.{table}")
    with pytest.raises(StorageError, match=r"not a pytest-energy history.*left untouched"):
        open_storage(storage_location(pg_url), create=create)


def test_the_default_schema_is_pytest_energy(pg_database: str) -> None:
    with admin(pg_database) as db:  # type: ignore[attr-defined]
        db.execute("DROP SCHEMA IF EXISTS pytest_energy CASCADE")
    History(storage_location(pg_database)).save([entry("x.py::t")])
    with admin(pg_database) as db:  # type: ignore[attr-defined]
        assert db.execute("SELECT count(*) FROM pytest_energy.results").fetchone()[0] == 1
        db.execute("DROP SCHEMA pytest_energy CASCADE")


# ----- PostgreSQL only: connection errors say what to do, never the password -------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_server_down_is_a_clear_error_without_the_password() -> None:
    url = f"postgresql://energy:hunter2@127.0.0.1:{_free_port()}/energy"
    with pytest.raises(StorageError) as error:
        open_storage(storage_location(url), create=True)
    text = str(error.value)
    assert "hunter2" not in text and "cannot connect" in text and "server is running" in text
    assert f"postgresql://energy@127.0.0.1:{urlsplit(url).port}/energy" in text


def test_wrong_password_says_where_credentials_come_from(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    wrong = pg_url.replace(f":{parts.password}@", ":not-the-Password@")
    with pytest.raises(StorageError, match="PGPASSWORD") as error:
        open_storage(storage_location(wrong), create=False)
    assert "not-the-Password" not in str(error.value)


def test_pgpassword_serves_a_url_without_password(pg_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    parts = urlsplit(pg_url)
    monkeypatch.setenv("PGPASSWORD", parts.password or "")
    bare = pg_url.replace(f":{parts.password}@", "@")
    assert open_storage(storage_location(bare), create=False) is None  # connected, empty
    History(storage_location(bare)).save([entry("x.py::t")])


def test_unknown_database_is_named(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    url = pg_url.replace(parts.path, "/no_such_db_here")
    with pytest.raises(StorageError, match=r"does not exist.*createdb"):
        open_storage(storage_location(url), create=False)


def test_with_schema_helper_builds_urls() -> None:
    assert with_schema("postgresql://h/db", "s") == "postgresql://h/db?options=-csearch_path%3Ds"


def test_a_stuck_statement_is_bounded_unless_the_url_sets_a_limit(pg_url: str) -> None:
    """A server that accepts the connection and then hangs (a lock never released) must
    not hang the run: every statement has a limit, the URL's own if it gives one."""
    from pytest_energy.history.pg_schema import STATEMENT_TIMEOUT_S, connect, import_psycopg

    psycopg = import_psycopg()
    with connect(storage_location(pg_url), psycopg) as db:
        shown = db.execute("SHOW statement_timeout").fetchone()[0]
        assert shown == f"{int(STATEMENT_TIMEOUT_S / 60)}min"
    own = pg_url + ("&" if "?" in pg_url else "?") + "options=-cstatement_timeout%3D1234"
    with connect(storage_location(own), psycopg) as db:
        assert db.execute("SHOW statement_timeout").fetchone()[0] == "1234ms"
