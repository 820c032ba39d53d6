"""The PostgreSQL history end to end: pytest runs that save and compare through a URL, and
every ``pytest-energy`` command reading it. Needs the test server (``tests/pg_support.py``):
skipped without ``$PYTEST_ENERGY_TEST_POSTGRES``, a failure under CI (the server-down
test needs none)."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pg_support import pg_database_fixture, pg_url_fixture  # noqa: F401
from test_gate_e2e import A_PLUS_20, GATE_METERS, STEADY, SUITE

from pytest_energy import cli
from pytest_energy.entry import Entry
from pytest_energy.history.location import storage_location
from pytest_energy.history.machine import cpu_model, fingerprint, machine_identity
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import open_storage
from pytest_energy.report.jsonreport import machine_info


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_save_then_compare_through_a_url(pytester: pytest.Pytester,
                                         monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    """Three saves, a passing compare and a regressed one, the URL from the command line
    and from the environment; the JSON report names the history without its password."""
    for name in ("GITHUB_STEP_SUMMARY", "PYTEST_ENERGY_STORAGE", "PYTEST_ENERGY_COMPARE"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(gate_meters=GATE_METERS, test_model=SUITE)
    pytester.syspathinsert()
    base = ("--energy-meter=gate_meters:SeqMeter", "-p", "no:cacheprovider")
    monkeypatch.setenv("GATE_MJ", STEADY)
    for _ in range(3):
        saved = pytester.runpytest(*base, f"--energy-storage={pg_url}", "--energy-save=main")
        assert saved.ret == 0
    password = f":{urlsplit(pg_url).password}@"  # the test server's password is "energy"
    saved.stdout.fnmatch_lines(["energy history: saved run #3 'main' (2 tests, *) to "
                                "postgresql://energy@*"])
    assert password not in saved.stdout.str()
    monkeypatch.setenv("PYTEST_ENERGY_STORAGE", pg_url)
    passed = pytester.runpytest(*base, "--energy-compare=main", "--energy-json=r.json")
    assert passed.ret == 0
    compare = json.loads((pytester.path / "r.json").read_text())["compare"]
    assert compare["status"] == "passed" and compare["baseline"]["runs"] == [3, 2, 1]
    assert compare["storage"] == storage_location(pg_url).display
    assert password not in (pytester.path / "r.json").read_text()
    monkeypatch.setenv("GATE_MJ", A_PLUS_20)
    regressed = pytester.runpytest(*base, "--energy-compare=main", "--energy-autosave")
    assert regressed.ret == 1
    regressed.stdout.fnmatch_lines(["*test_model.py::test_a*"])
    with open_storage(storage_location(pg_url), create=False) as storage:  # type: ignore[union-attr]
        newest = storage.run("latest")
        assert newest is not None and (newest.id, newest.status) == (4, "regressed")


def test_cli_commands_read_a_postgres_history(pg_url: str, tmp_path: Path) -> None:
    here = {**machine_info(), "cpu_model": cpu_model()}
    entries = [Entry.from_json({"nodeid": f"x.py::t[{i}]", "outcome": "passed",
                                "joules_per_call": 1.0 + i, "valid": True, "meter": "seq",
                                "trials": [{"calls": 1, "window_s": 0.1,
                                            "joules": {"seq:0": 1.0 + i}}] * 3})
               for i in range(2)]
    storage = open_storage(storage_location(pg_url), create=True)
    assert storage is not None
    with storage:
        for name in ("main", None, None):
            storage.save_run(NewRun(created="2025-01-01T00:00:00+00:00",
                                    fingerprint=fingerprint(machine_identity(here)),
                                    machine=here, meter={}, name=name, status="passed"),
                             entries)
    password = f":{urlsplit(pg_url).password}@"
    code, out, _ = run_cli("--storage", pg_url, "runs")
    assert code == 0 and "#3" in out and "main" in out
    code, out, _ = run_cli("--storage", pg_url, "show", "main", "--json")
    assert code == 0 and json.loads(out)["tests_results"] == [e.to_json() for e in entries]
    code, out, _ = run_cli("--storage", pg_url, "export", "--json")
    assert code == 0 and [len(r["results"]) for r in json.loads(out)["runs"]] == [2, 2, 2]
    code, out, _ = run_cli("--storage", pg_url, "history", "t[1]")
    assert code == 0 and "x.py::t[1]" in out
    code, out, _ = run_cli("--storage", pg_url, "compare", "main", "latest")
    assert code == 0 and "passed" in out
    code, out, _ = run_cli("--storage", pg_url, "prune", "--keep", "1")
    assert code == 0 and "deleted 1 of 3" in out and "autovacuum" in out
    assert "compacted" not in out and password not in out
    code, _, err = run_cli("--storage", pg_url, "show", "nope")
    assert code == 3 and "no run 'nope' in postgresql://energy@" in err
    assert password not in err


def test_cli_on_an_empty_database_says_there_is_no_history(pg_url: str) -> None:
    code, _, err = run_cli("--storage", pg_url, "runs")
    assert code == 3 and "no results history at postgresql://energy@" in err
    assert f":{urlsplit(pg_url).password}@" not in err


def test_server_down_is_exit_3_and_the_json_report_is_kept(pytester: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """No server needed: a port nobody listens on."""
    monkeypatch.delenv("PYTEST_ENERGY_STORAGE", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pytester.makepyfile(gate_meters=GATE_METERS, test_model=SUITE)
    pytester.syspathinsert()
    monkeypatch.setenv("GATE_MJ", STEADY)
    url = f"postgresql://ci:hunter2@127.0.0.1:{port}/energy"
    result = pytester.runpytest("--energy-meter=gate_meters:SeqMeter", "-p", "no:cacheprovider",
                                f"--energy-storage={url}", "--energy-save=main",
                                "--energy-json=r.json")
    assert result.ret == 3
    result.stdout.fnmatch_lines([f"pytest-energy: postgresql://ci@127.0.0.1:{port}/energy: "
                                 "cannot connect to the PostgreSQL history*"])
    report = (pytester.path / "r.json").read_text()
    assert len(json.loads(report)["tests"]) == 2 and "hunter2" not in report
    assert "hunter2" not in result.stdout.str()
