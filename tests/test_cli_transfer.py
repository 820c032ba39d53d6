"""``pytest-energy push FILE`` and ``copy SRC DST``, and results kept when the history
cannot be reached (``.energy-unsaved``): end to end with pytester, the rest in process.

PostgreSQL cases run against ``$PYTEST_ENERGY_TEST_POSTGRES`` (a superuser URL; start a
server with ``eval "$(bash .ci/postgres-start)"``), each in a fresh database dropped
afterwards; without it they skip, except in CI (``$CI`` set), where they fail.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sqlite3
import stat
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pg_support import fresh_database

from pytest_energy import cli
from pytest_energy.entry import Entry
from pytest_energy.history.runrecord import RUN_KEY, RunFacts, run_record
from pytest_energy.history.runs import NewRun, SessionOutcome
from pytest_energy.history.storage import open_storage
from pytest_energy.history.unsaved import (
    GITIGNORE,
    UNSAVED_DIR,
    default_path,
    save_failed,
    write_new,
    write_unsaved,
)
from pytest_energy.measure.reference import reference_dict
from pytest_energy.report import finish
from pytest_energy.report.jsonreport import build_report, machine_info

METERS = textwrap.dedent(
    '''
    class Counting:
        """Each read advances the counter by 0.5 J: every window is exactly 0.5 J."""

        name = "counting"
        estimated = False
        update_period_s = 0.0

        def __init__(self):
            self.reads = 0

        def domains(self):
            return ["count:0"]

        def read(self):
            self.reads += 1
            return {"count:0": self.reads * 0.5}

        def close(self):
            pass
    '''
)
SUITE = textwrap.dedent(
    """
    import pytest

    @pytest.mark.energy_budget(rounds=3, trials=3, warmup=0)
    def test_small():
        pass

    @pytest.mark.energy_budget(rounds=3, trials=3, warmup=0)
    def test_large():
        sum(range(100))
    """
)
METER_ARG = "--energy-meter=transfer_meters:Counting"
METER = {"requested": "counting", "used": {"count:0": {"name": "counting"}}}


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def shown(storage: Path | str, ref: str = "latest") -> dict[str, Any]:
    code, out, err = run("--storage", str(storage), "show", ref, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def entry(nodeid: str, joules: float = 1.0, **extra: Any) -> Entry:
    return Entry.from_json({
        "nodeid": nodeid, "outcome": "passed", "joules_per_call": joules, "valid": True,
        "meter": "counting", "domains": ["count:0"],
        "trials": [{"calls": 10, "window_s": 0.01, "joules": {"count:0": joules * 10}}] * 3,
        **extra})


def report(tmp_path: Path, entries: list[Entry], name: str | None = None,
           created: str | None = "2025-01-02T03:04:05+00:00",
           outcome: SessionOutcome | None = None) -> dict[str, Any]:
    """A JSON report as the plugin writes it, without running pytest."""
    data = build_report(entries, METER)
    data[RUN_KEY] = run_record(RunFacts(
        entries, {**machine_info(), "reference": None}, name=name,
        outcome=outcome or SessionOutcome(), regressed=False, rootdir=tmp_path,
        environ={}, created=created))
    return data


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


@pytest.fixture
def counted(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The suite and its meter; the gate's reference workload (0.3 s a run, not what
    these tests are about) is not measured."""
    monkeypatch.setattr(finish, "measure_reference", lambda *_a, **_k: reference_dict(
        None, None, False, "not measured in this test"))
    pytester.makepyfile(transfer_meters=METERS, test_suite=SUITE)
    pytester.syspathinsert()
    return pytester


# ----- push ----------------------------------------------------------------------------------


def test_push_saves_the_reports_run_exactly(counted: pytest.Pytester) -> None:
    """A run measured without a history, pushed later: `show --json` gives back the
    report's entries, and the run has the facts the gate would have saved."""
    result = counted.runpytest_inprocess(METER_ARG, "--energy-json=r.json", "-p", "no:randomly")
    assert result.ret == 0
    written = json.loads((counted.path / "r.json").read_text())
    history = counted.path / "history"
    code, out, err = run("--storage", str(history), "push", "r.json")
    assert code == 0, err
    assert "saved run #1 (2 tests" in out
    stored = shown(history)
    assert stored["tests_results"] == written["tests"]
    facts = written[RUN_KEY]
    for key in ("created", "name", "commit", "dirty", "branch", "fingerprint", "machine",
                "plugin_version", "status"):
        assert stored[key] == facts[key], key
    assert stored["status"] == "passed" and stored["meter"] == written["meter"]
    assert stored["machine"]["cpu_model"] and stored["tests"] == 2
    with open_storage(history, create=False) as storage:  # type: ignore[union-attr]
        assert set(storage.meter_identities(1)) == {t["nodeid"] for t in written["tests"]}


def test_pushing_twice_saves_once(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", report(tmp_path, [entry("t.py::a"), entry("t.py::b")]))
    history = tmp_path / "h"
    assert run("--storage", str(history), "push", path)[0] == 0
    code, out, _ = run("--storage", str(history), "push", path)
    assert code == 0
    assert f"{path}: already in the history as run #1" in out
    code, out, _ = run("--storage", str(history), "push", path, "--name", "other")
    assert code == 0 and "already in the history as run #1" in out  # one run, one record
    assert len(json.loads(run("--storage", str(history), "runs", "--json")[1])) == 1


def test_push_takes_a_name_and_keeps_the_runs_own(tmp_path: Path) -> None:
    named = write(tmp_path / "n.json", report(tmp_path, [entry("t.py::a")], name="main"))
    renamed = write(tmp_path / "r.json", report(tmp_path, [entry("t.py::a", 2.0)]))
    history = tmp_path / "h"
    assert run("--storage", str(history), "push", named)[0] == 0
    assert run("--storage", str(history), "push", renamed, "--name", "pr-7")[0] == 0
    assert shown(history, "main")["id"] == 1 and shown(history, "pr-7")["id"] == 2
    assert run("--storage", str(history), "push", renamed, "--name", "bad name")[0] == 2


def test_a_different_run_with_the_same_time_is_not_a_duplicate(tmp_path: Path) -> None:
    """Same second, machine and commit, other numbers: a second run, not "already there"."""
    history = tmp_path / "h"
    for number, joules in enumerate((1.0, 1.5), start=1):
        path = write(tmp_path / f"{number}.json", report(tmp_path, [entry("t.py::a", joules)]))
        code, out, _ = run("--storage", str(history), "push", path)
        assert code == 0 and f"saved run #{number}" in out


def test_push_keeps_the_would_be_status(tmp_path: Path) -> None:
    failing = [entry("t.py::a"), entry("t.py::b", outcome="failed")]
    path = write(tmp_path / "r.json", report(tmp_path, failing))
    assert run("--storage", str(tmp_path / "h"), "push", path)[0] == 0
    assert shown(tmp_path / "h")["status"] == "failed"


def _old_report(tmp_path: Path) -> dict[str, Any]:
    data = report(tmp_path, [entry("t.py::a")])
    del data[RUN_KEY]
    return data


def _with(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    return {**report(tmp_path, [entry("t.py::a")]), **changes}


REFUSED: dict[str, tuple[Any, str]] = {
    "not json": ("{nope", "is not a pytest-energy JSON report (not JSON"),
    "a list": ([1, 2], "no plugin.name 'pytest-energy'"),
    "another tool": ({"plugin": {"name": "pytest-benchmark"}, "tests": []},
                     "no plugin.name 'pytest-energy'"),
    "newer": (lambda p: _with(p, version=99), "written by a newer pytest-energy"),
    "no tests": (lambda p: {k: v for k, v in _with(p).items() if k != "tests"},
                 "no 'tests' list"),
    "empty": (lambda p: _with(p, tests=[]), "holds no test results: nothing to push"),
    "old report": (_old_report, "lack the run's facts"),
    "incomplete run": (lambda p: report(p, [entry("t.py::a")], outcome=SessionOutcome(2)),
                       "not one the history keeps: the session was interrupted"),
    "bad entry": (lambda p: _with(p, tests=[{"outcome": "passed"}]),
                  "tests[0] is not a test entry"),
    "bad run facts": (lambda p: _with(p, run={"status": "passed", "created": 5}),
                      "run.created is 5, not text"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_push_refuses_what_is_not_a_complete_report(tmp_path: Path, case: str) -> None:
    content, message = REFUSED[case]
    path = write(tmp_path / "r.json", content(tmp_path) if callable(content) else content)
    code, out, err = run("--storage", str(tmp_path / "h"), "push", path)
    assert code == 3 and out == ""
    assert err.startswith("pytest-energy push: ") and message in err
    assert not (tmp_path / "h").exists()  # nothing created for a refused file


def test_push_of_a_missing_file_says_so(tmp_path: Path) -> None:
    code, _, err = run("--storage", str(tmp_path / "h"), "push", str(tmp_path / "gone.json"))
    assert code == 3 and "cannot read" in err and "gone.json" in err


# ----- copy ----------------------------------------------------------------------------------


def save(directory: Path | str, entries: list[Entry], **facts: Any) -> None:
    storage = open_storage(directory, create=True)
    assert storage is not None
    values: dict[str, Any] = {"created": "2025-01-01T00:00:00+00:00", "fingerprint": "f" * 16,
                              "machine": {"system": "Linux", "cpu_model": "X"},
                              "meter": METER, "status": "passed", **facts}
    with storage:
        storage.save_run(NewRun(**values), entries,
                         {e.nodeid: f'{{"meter":"{e.meter}"}}' for e in entries})


def three_runs(directory: Path | str) -> None:
    """Runs with every fact set differently, and an incomplete one."""
    save(directory, [entry("t.py::a"), entry("t.py::b[1]", 2.0)], name="main",
         commit="a" * 40, dirty=False, branch="main", plugin_version="0.1.0")
    save(directory, [entry("t.py::a", 1.1)], created="2025-01-02T00:00:00+00:00",
         commit="b" * 40, dirty=True, status="regressed", fingerprint="e" * 16,
         machine={"system": "Darwin"})
    save(directory, [entry("t.py::a", 1.2), entry("t.py::c", outcome="error")],
         created="2025-01-03T00:00:00+00:00")


def exported(storage: Path | str) -> dict[str, Any]:
    code, out, err = run("--storage", str(storage), "export", "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    data["runs"].reverse()  # oldest first
    with open_storage(storage, create=False) as opened:  # type: ignore[union-attr]
        for stored in data["runs"]:
            stored["meter_identities"] = opened.meter_identities(stored["id"])
    return data


def without_ids(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "id"} for r in data["runs"]]


def test_copy_sqlite_to_sqlite_keeps_every_fact_and_the_order(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    three_runs(source)
    code, out, err = run("copy", str(source), str(target))
    assert code == 0, err
    assert out == "copied 3 runs (5 results), skipped 0 already there\n"
    copied = exported(target)
    assert copied == exported(source)  # ids too: a fresh target numbers them the same
    assert [r["status"] for r in copied["runs"]] == ["passed", "regressed", "incomplete"]


def test_copy_again_copies_nothing_new(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    three_runs(source)
    assert run("copy", str(source), str(target))[0] == 0
    code, out, _ = run("copy", str(source), str(target))
    assert (code, out) == (0, "copied 0 runs (0 results), skipped 3 already there\n")
    save(source, [entry("t.py::a", 9.0)], created="2025-02-01T00:00:00+00:00")
    code, out, _ = run("copy", str(source), str(target))
    assert (code, out) == (0, "copied 1 runs (1 results), skipped 3 already there\n")
    assert without_ids(exported(target)) == without_ids(exported(source))


def test_copy_into_a_history_with_other_runs_appends_in_order(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    three_runs(source)
    save(target, [entry("x.py::other")], name="theirs", created="2030-01-01T00:00:00+00:00")
    assert run("copy", str(source), str(target))[1].startswith("copied 3 runs")
    runs = exported(target)["runs"]
    assert [r["name"] for r in runs] == ["theirs", "main", None, None]
    assert [r["created"][:10] for r in runs[1:]] == ["2025-01-01", "2025-01-02", "2025-01-03"]


def test_copy_refuses_the_same_history_and_a_missing_source(tmp_path: Path) -> None:
    three_runs(tmp_path / "src")
    code, _, err = run("copy", str(tmp_path / "src"), str(tmp_path / "src" / "."))
    assert code == 3 and "the same history" in err
    code, _, err = run("copy", str(tmp_path / "none"), str(tmp_path / "dst"))
    assert code == 3 and "no results history at" in err and "(SRC)" in err
    assert not (tmp_path / "dst").exists()


# ----- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards (skips without a server,
    fails under CI: see tests/pg_support.py)."""
    with fresh_database("pe_transfer_") as url:
        yield url


@pytest.mark.slow
def test_copy_sqlite_to_postgres_and_back_is_equal(tmp_path: Path, pg_url: str) -> None:
    source, back = tmp_path / "src", tmp_path / "back"
    three_runs(source)
    code, out, err = run("copy", str(source), pg_url)
    assert (code, out) == (0, "copied 3 runs (5 results), skipped 0 already there\n"), err
    code, out, _ = run("copy", str(source), pg_url)
    assert (code, out) == (0, "copied 0 runs (0 results), skipped 3 already there\n")
    assert run("copy", pg_url, str(back))[1].startswith("copied 3 runs (5 results)")
    assert without_ids(exported(back)) == without_ids(exported(source))
    code, out, _ = run("copy", pg_url, str(back))
    assert (code, out) == (0, "copied 0 runs (0 results), skipped 3 already there\n")


@pytest.mark.slow
def test_push_into_postgres_is_idempotent(tmp_path: Path, pg_url: str) -> None:
    path = write(tmp_path / "r.json", report(tmp_path, [entry("t.py::a"), entry("t.py::b")]))
    code, out, err = run("--storage", pg_url, "push", path)
    assert code == 0 and "saved run #" in out, err
    code, out, _ = run("--storage", pg_url, "push", path)
    assert code == 0 and "already in the history as run #" in out
    assert shown(pg_url)["tests_results"] == json.loads(Path(path).read_text())["tests"]


# ----- results kept when the history cannot be reached -----------------------------------------


def _kept_file(output: str, storage: str) -> Path:
    """The file the push hint names; its command names the run's storage."""
    line = next(line for line in output.splitlines() if " push " in line)
    command = shlex.split(line.split("`", 2)[1])
    assert command[:3] == ["pytest-energy", "--storage", storage] and command[3] == "push"
    return Path(command[4])


def _unreadable_sqlite(path: Path) -> str:
    (path / "broken").mkdir()
    (path / "broken" / "history.sqlite3").write_bytes(b"this is not a database" * 10)
    return str(path / "broken")


def _newer_sqlite(path: Path) -> str:
    save(path / "newer", [entry("t.py::a")])
    with sqlite3.connect(path / "newer" / "history.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    return str(path / "newer")


UNREACHABLE: dict[str, Callable[[Path], str]] = {
    "unreadable sqlite": _unreadable_sqlite, "newer sqlite": _newer_sqlite,
    "postgres down": lambda _path: "postgresql://energy:s3cret@127.0.0.1:1/energy"}


@pytest.mark.parametrize("where", list(UNREACHABLE))
def test_results_are_kept_when_the_history_cannot_be_saved_to(
        counted: pytest.Pytester, where: str) -> None:
    if where == "postgres down":
        pytest.importorskip("psycopg")
    storage = UNREACHABLE[where](counted.path)
    result = counted.runpytest_inprocess(METER_ARG, "--energy-save=main", "-p", "no:randomly",
                                         f"--energy-storage={storage}")
    assert result.ret == 3
    output = result.stdout.str()
    assert "s3cret" not in output + result.stderr.str()
    kept = _kept_file(output, storage.replace(":s3cret", ""))
    assert kept.parent == counted.path / UNSAVED_DIR and kept.is_file()
    assert (kept.parent / ".gitignore").read_text() == GITIGNORE
    data = json.loads(kept.read_text())
    assert [t["nodeid"] for t in data["tests"]] == ["test_suite.py::test_small",
                                                    "test_suite.py::test_large"]
    assert data[RUN_KEY]["name"] == "main" and data[RUN_KEY]["status"] == "passed"
    good = counted.path / "good"
    code, out, err = run("--storage", str(good), "push", str(kept))
    assert code == 0 and "saved run #1 'main' (2 tests" in out, err
    assert shown(good, "main")["tests_results"] == data["tests"]


@pytest.mark.slow
def test_results_are_kept_when_the_password_is_wrong(counted: pytest.Pytester,
                                                     pg_url: str) -> None:
    parts = urlsplit(pg_url)
    wrong = pg_url.replace(f"{parts.username}:{parts.password}@", f"{parts.username}:nope@")
    result = counted.runpytest_inprocess(METER_ARG, "--energy-autosave", "-p", "no:randomly",
                                         f"--energy-storage={wrong}")
    assert result.ret == 3 and "nope" not in result.stdout.str()
    kept = _kept_file(result.stdout.str(), wrong.replace(":nope", ""))
    code, out, err = run("--storage", pg_url, "push", str(kept))
    assert code == 0 and "saved run #1 (2 tests" in out, err


def test_the_energy_json_file_is_named_when_given(counted: pytest.Pytester) -> None:
    storage = _unreadable_sqlite(counted.path)
    result = counted.runpytest_inprocess(METER_ARG, "--energy-autosave", "-p", "no:randomly",
                                         f"--energy-storage={storage}", "--energy-json=r.json")
    assert result.ret == 3
    assert _kept_file(result.stdout.str(), storage) == Path("r.json")
    assert not (counted.path / UNSAVED_DIR).exists()


def test_a_saved_run_pushed_again_is_already_there(counted: pytest.Pytester) -> None:
    """The gate saved it: its report names the same run, so a push adds nothing."""
    result = counted.runpytest_inprocess(METER_ARG, "--energy-save=main", "-p", "no:randomly",
                                         "--energy-storage=h", "--energy-json=r.json")
    assert result.ret == 0
    code, out, _ = run("--storage", str(counted.path / "h"), "push", "r.json")
    assert code == 0 and "already in the history as run #1" in out


def test_save_failed_only_when_a_save_was_asked_for_and_did_not_happen() -> None:
    assert save_failed(True, {"saved": None, "not_saved": None})
    assert not save_failed(True, {"saved": {"id": 1}, "not_saved": None})
    assert not save_failed(True, {"saved": None, "not_saved": "interrupted"})
    assert not save_failed(False, {"saved": None, "not_saved": None})
    assert not save_failed(True, None)


def test_the_kept_file_has_the_umask_mode_and_never_replaces_a_file(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        first = write_unsaved(tmp_path, "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(first.stat().st_mode) == 0o600 and first.read_text() == "{}\n"
    taken = default_path(tmp_path, attempt=5)
    taken.symlink_to(tmp_path / "victim")  # someone's link on the next name: not followed
    assert not write_new(taken, "x")
    assert taken.is_symlink() and not (tmp_path / "victim").exists()
    second = write_unsaved(tmp_path, "{}\n")
    assert second != first and second.read_text() == "{}\n"
    assert sorted(p.name for p in (tmp_path / UNSAVED_DIR).iterdir()
                  if p.name.startswith(".")) == [".gitignore"]  # no temp file left


def test_a_linked_unsaved_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / UNSAVED_DIR).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotADirectoryError, match="symbolic link is not followed"):
        write_unsaved(tmp_path, "{}\n")
    assert list((tmp_path / "elsewhere").iterdir()) == []
