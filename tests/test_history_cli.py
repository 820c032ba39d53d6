"""The CLI on a history it did not write: exact test ids, escape sequences, where the
history is looked for, a streamed export and a prune that gives the space back."""

from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_energy import cli
from pytest_energy.cli.commands import write_export
from pytest_energy.entry import Entry
from pytest_energy.history import storage as st
from pytest_energy.history.machine import cpu_model, fingerprint, machine_identity
from pytest_energy.history.runs import NewRun, RunInfo
from pytest_energy.history.storage import Storage, open_storage
from pytest_energy.report.jsonreport import machine_info

HERE = {**machine_info(), "cpu_model": cpu_model()}
ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202e"


def entry(nodeid: str, joules: float = 1.0, **extra: Any) -> Entry:
    return Entry.from_json({
        "nodeid": nodeid, "outcome": "passed", "joules_per_call": joules, "valid": True,
        "meter": "rapl", "domains": ["package:0"],
        "trials": [{"calls": 10, "window_s": 0.01, "joules": {"package:0": joules * 10}}] * 5,
        **extra})


def save(directory: Path, entries: list[Entry], **run: Any) -> int:
    storage = open_storage(directory, create=True)
    assert storage is not None
    with storage:
        new = NewRun(created="2025-01-01T00:00:00+00:00",
                     fingerprint=fingerprint(machine_identity(HERE)), machine=HERE,
                     meter={}, **run)
        return storage.save_run(new, entries).id


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# ----- history TEST: exact ids; a glob only when asked ---------------------------------------


@pytest.fixture
def params(tmp_path: Path) -> Path:
    for joules in (1.0, 2.0):
        save(tmp_path, [entry("x.py::t[8]", joules), entry("x.py::t[80]", joules * 10),
                        entry("x.py::t8", joules * 100)])
    return tmp_path


def _tests_shown(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.startswith("x.py::")]


def test_history_of_a_parametrized_test_by_its_exact_id(params: Path) -> None:
    code, out, _ = run("--storage", str(params), "history", "x.py::t[8]")
    assert code == 0 and _tests_shown(out) == ["x.py::t[8]"]
    code, out, _ = run("--storage", str(params), "history", "t[8")  # text ids contain
    assert _tests_shown(out) == ["x.py::t[8]", "x.py::t[80]"]


def test_history_globs_only_when_asked(params: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("--storage", str(params), "history", "--glob", "x.py::t[8]")
    assert code == 0 and _tests_shown(out) == ["x.py::t8"]  # [8]: one of these characters
    code, out, _ = run("--storage", str(params), "history", "--glob", "x.py::t[[]8*")
    assert _tests_shown(out) == ["x.py::t[8]", "x.py::t[80]"]
    code, out, _ = run("--storage", str(params), "history", "x.py::t*")
    assert "no stored results for tests matching 'x.py::t*'" in out
    assert cli.main(["history", "--help"]) == 0
    helped = " ".join(capsys.readouterr().out.split())
    assert "a test id, exactly as pytest prints it" in helped
    assert "--glob read TEST as a glob instead" in helped


# ----- what a history holds never drives the terminal -----------------------------------------


def test_stored_escape_sequences_are_shown_not_obeyed(tmp_path: Path) -> None:
    nodeid = f"t.py::test_{ESCAPES}"
    save(tmp_path, [entry(nodeid, verdict=f"ok{ESCAPES}")], name="main",
         branch=f"b{ESCAPES}", commit=f"c0ffee{ESCAPES}")
    save(tmp_path, [entry(nodeid, 2.0)], name="pr")
    outputs = [run("--storage", str(tmp_path), *args)
               for args in (["runs"], ["show", "main"], ["history", "test_"],
                            ["compare", "main", "pr", "--all"], ["show", "nothing"])]
    for _code, out, err in outputs:
        for text in (out, err):
            assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text)
    assert "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202e" in outputs[1][1]  # shown escaped
    _, out, _ = run("--storage", str(tmp_path), "show", "main", "--json")
    assert json.loads(out)["tests_results"][0]["nodeid"] == nodeid  # JSON: escaped by JSON


# ----- where the history is: only where configured -----------------------------------------------


def test_a_history_in_a_parent_directory_is_not_read(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare directory under a shared one (/tmp/work under /tmp): another user's
    /tmp/.energy is not this user's history."""
    save(tmp_path / ".energy", [entry(f"t.py::{ESCAPES}")], name="planted")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.delenv("PYTEST_ENERGY_STORAGE", raising=False)
    monkeypatch.chdir(work)
    assert cli.find_storage(None, {}, work) == work / ".energy"
    code, out, err = run("runs")
    assert code == 3 and "planted" not in out and f"no results history at {work}" in err
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # now it is the project's rootdir
    assert cli.find_storage(None, {}, work) == tmp_path / ".energy"


def test_the_rootdir_is_the_one_pytest_uses(tmp_path: Path) -> None:
    project, sub = tmp_path / "project", tmp_path / "project" / "src" / "pkg"
    sub.mkdir(parents=True)
    (project / "setup.py").write_text("")
    assert cli.find_storage(None, {}, sub) == project / ".energy"
    (project / "src" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert cli.find_storage(None, {}, sub) == project / "src" / ".energy"
    (tmp_path / "tox.ini").write_text("[pytest]\n")  # an ini file wins over both
    assert cli.find_storage(None, {}, sub) == tmp_path / ".energy"


# ----- export streams; prune shrinks the file ---------------------------------------------------


class Recorder(io.StringIO):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def write(self, text: str) -> int:
        self.log.append("write")
        return super().write(text)


def test_export_writes_each_result_as_it_is_read(tmp_path: Path) -> None:
    log: list[str] = []

    def results(run_id: int) -> Iterator[dict[str, Any]]:
        for index in range(3):
            log.append(f"read {run_id}.{index}")
            yield {"nodeid": f"t::{index}", "trials": [{"calls": 1}]}

    runs = [RunInfo(id=i, name=None, created="c", commit=None, dirty=None, branch=None,
                    fingerprint="f", machine={}, meter={}, plugin_version=None, tests=3)
            for i in (1, 2)]
    out = Recorder(log)
    assert write_export(out, runs, results) == 2
    reads = [i for i, event in enumerate(log) if event.startswith("read")]
    # each result is written before the next is read: never all in memory
    assert all("write" in log[a:b] for a, b in itertools.pairwise(reads))
    expected = {"version": 1, "schema": st.SCHEMA_VERSION,
                "runs": [{**r.to_dict(), "results": list(results(r.id))} for r in runs]}
    assert out.getvalue() == json.dumps(expected, indent=2) + "\n"  # same text as before
    empty = io.StringIO()
    write_export(empty, [], results)
    assert json.loads(empty.getvalue())["runs"] == []


def test_export_never_loads_a_whole_run(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    save(tmp_path, [entry("t.py::a"), entry("t.py::b")], name="main")
    save(tmp_path, [], name="empty")

    def whole_run(self: Storage, run_id: int) -> list[dict[str, Any]]:
        raise AssertionError("export read a whole run into memory")

    monkeypatch.setattr(Storage, "entries_json", whole_run)
    code, out, _ = run("--storage", str(tmp_path), "export", "--json")
    data = json.loads(out)
    assert code == 0 and [len(r["results"]) for r in data["runs"]] == [0, 2]
    target = tmp_path / "out" / "export.json"
    code, out, _ = run("--storage", str(tmp_path), "export", "--json", "-o", str(target))
    assert code == 0 and json.loads(target.read_text()) == data


def test_prune_gives_the_space_back(tmp_path: Path) -> None:
    for _ in range(6):
        save(tmp_path, [entry(f"t.py::test_{i}", 1.0 + i / 7) for i in range(60)])
    db = st.db_path(tmp_path)
    before = db.stat().st_size
    code, out, _ = run("--storage", str(tmp_path), "prune", "--keep", "1")
    after = db.stat().st_size
    assert code == 0 and after < before / 2, (before, after)
    assert "deleted 5 of 6 run(s)" in out and f"compacted {db}: " in out
    code, out, _ = run("--storage", str(tmp_path), "show", "latest")
    assert code == 0 and "t.py::test_59" in out


def test_prune_says_how_to_compact_when_it_cannot(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):
        save(tmp_path, [entry("t.py::a")])

    def busy(self: Storage) -> int:
        raise st.StorageError("database is locked")

    monkeypatch.setattr(Storage, "vacuum", busy)
    code, out, err = run("--storage", str(tmp_path), "prune", "--keep", "1")
    assert code == 0 and "deleted 1 of 2 run(s)" in out
    assert f"sqlite3 {st.db_path(tmp_path)} VACUUM" in err
    assert os.path.exists(st.db_path(tmp_path))


def test_the_gate_summary_shows_stored_escapes_escaped(tmp_path: Path) -> None:
    """The plugin's own summary quotes the baseline (commit, branch, machine facts)."""
    from pytest_energy.history.gate import RegressionGate

    save(tmp_path, [entry("t.py::a")], name="main", commit=f"c0ffee{ESCAPES}")
    gate = RegressionGate(storage_dir=tmp_path, compare="main", environ={})
    gate.finish([entry("t.py::a", 1.01)], {}, HERE)
    lines = gate.summary_lines()
    assert any("c0ffee\\x1b" in line for line in lines), lines
    assert not any(c in "".join(lines) for c in "\x1b\x07\x9b\u202e")
