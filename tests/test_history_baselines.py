"""Interrupted or partial runs are never baselines: not for the gate, not for the CLI,
whatever status they were saved with."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from pytest_energy import cli
from pytest_energy.entry import Entry
from pytest_energy.history.baseline import find_baseline
from pytest_energy.history.gate import RegressionGate
from pytest_energy.history.machine import fingerprint, machine_identity, with_cpu_model
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import Storage, open_storage

MACHINE = {"system": "Linux", "machine": "x86_64", "cpu_model": "Test CPU", "cpu_count": 4,
           "node": "host"}
FP = fingerprint(machine_identity(with_cpu_model(MACHINE)))


def entry(nodeid: str, joules: float, **extra: Any) -> Entry:
    return Entry.from_json({
        "nodeid": nodeid, "outcome": "passed", "joules_per_call": joules, "meter": "seq",
        "domains": ["seq:0"], "estimated": False, "valid": True,
        "trials": [{"calls": 1, "window_s": 0.001, "joules": {"seq:0": joules}}] * 5,
        **extra})


INTERRUPTED = {"outcome": "interrupted", "partial": True, "verdict": "interrupted"}


def save(storage: Storage, name: str | None, joules: float, **extra: Any) -> int:
    """A run saved the way an older pytest-energy (or any caller) could: status passed,
    whatever its entries say."""
    run = NewRun(created="2025-01-01T00:00:00+00:00", fingerprint=FP, machine=MACHINE,
                 meter={}, name=name, status="passed")
    return storage.save_run(run, [entry("t.py::a", joules, **extra),
                                  entry("t.py::b", 1.0)]).id


@pytest.fixture
def history(tmp_path: Path) -> Storage:
    storage = open_storage(tmp_path, create=True)
    assert storage is not None
    save(storage, "main", 1.0)  # 1: complete
    save(storage, "main", 5.0, **INTERRUPTED)  # 2: Ctrl-C'd, saved as "passed"
    save(storage, "main", 5.0, partial=True)  # 3: partial results
    save(storage, "main", 5.0, outcome="error")  # 4: a measured test errored
    return storage


def test_a_run_holding_an_interrupted_test_is_stored_incomplete(history: Storage) -> None:
    assert [(r.id, r.status) for r in history.runs()] == [
        (4, "incomplete"), (3, "incomplete"), (2, "incomplete"), (1, "passed")]
    assert [r.id for r in history.runs(complete_only=True)] == [1]
    latest = history.run("latest", fingerprint=FP, complete_only=True)
    assert latest is not None and latest.id == 1


def test_the_gate_never_compares_with_an_interrupted_run(history: Storage,
                                                         tmp_path: Path) -> None:
    for ref in ("main", "latest"):
        lookup = find_baseline(history, ref, FP, MACHINE, "here")
        assert lookup.run is not None and lookup.run.id == 1 and lookup.missing is None
    by_id = find_baseline(history, "2", FP, MACHINE, "here")
    assert by_id.missing == ("run #2 'main' in here is incomplete (a measured test was "
                             "interrupted or errored) and is never a baseline")
    history.close()
    gate = RegressionGate(storage_dir=tmp_path, compare="main", environ={})
    result = gate.finish([entry("t.py::a", 1.0), entry("t.py::b", 1.0)], {}, MACHINE)
    assert result["baseline"]["id"] == 1 and result["baseline"]["runs"] == [1]


def test_only_interrupted_runs_mean_no_baseline_and_say_why(tmp_path: Path) -> None:
    storage = open_storage(tmp_path, create=True)
    assert storage is not None
    with storage:
        save(storage, "main", 5.0, **INTERRUPTED)
        named = find_baseline(storage, "main", FP, MACHINE, "here")
        latest = find_baseline(storage, "latest", FP, MACHINE, "here")
    assert named.run is None and latest.run is None
    assert named.missing is not None and "every run 'main' in here is incomplete" in named.missing
    assert latest.missing is not None and "is incomplete" in latest.missing


def test_cli_compare_never_takes_an_interrupted_baseline(history: Storage,
                                                         tmp_path: Path) -> None:
    save(history, "pr", 1.0)  # 5
    history.close()

    def compare(baseline: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["--storage", str(tmp_path), "compare", baseline, "pr", "--force"],
                        out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    code, out, _ = compare("main")
    assert code == 0 and out.startswith("baseline #1 'main'")
    code, _, err = compare("#2")
    assert code == 3 and "run #2 'main' is incomplete" in err and "never a baseline" in err


# ----- a Ctrl-C after the save: the run stays incomplete ------------------------------------


class FakeConfig:
    def __init__(self) -> None:
        self.cleanups: list[Any] = []

    def add_cleanup(self, callback: Any) -> None:
        self.cleanups.append(callback)


class FakeSession:
    """What the gate reads of a pytest session: its exit status and its config."""

    exitstatus = 0
    shouldstop = shouldfail = False

    def __init__(self) -> None:
        self.config = FakeConfig()


def _saved_by_a_session(tmp_path: Path) -> tuple[FakeSession, int]:
    session = FakeSession()
    gate = RegressionGate(storage_dir=tmp_path, save="main", environ={})
    result = gate.finish([entry("t.py::a", 1.0)], {}, MACHINE, session)  # type: ignore[arg-type]
    assert result["saved"]["status"] == "passed"  # what it will be
    return session, result["saved"]["id"]


def _status(tmp_path: Path, run_id: int) -> str | None:
    storage = open_storage(tmp_path, create=False)
    assert storage is not None
    with storage:
        found = storage.run(str(run_id))
        assert found is not None
        return found.status


def test_a_saved_run_gets_its_status_when_pytest_exits_normally(tmp_path: Path) -> None:
    session, run_id = _saved_by_a_session(tmp_path)
    assert _status(tmp_path, run_id) == "incomplete"  # until pytest has exited
    for cleanup in session.config.cleanups:
        cleanup()
    assert _status(tmp_path, run_id) == "passed"


def test_a_ctrl_c_after_the_save_leaves_no_baseline(tmp_path: Path) -> None:
    """Ctrl-C in the terminal summary, after the gate saved: pytest runs its cleanups
    while the KeyboardInterrupt propagates; the run stays incomplete."""
    session, run_id = _saved_by_a_session(tmp_path)

    def pytest_exits_through_an_interrupt() -> None:
        try:
            raise KeyboardInterrupt
        finally:
            for cleanup in session.config.cleanups:
                cleanup()

    with pytest.raises(KeyboardInterrupt):
        pytest_exits_through_an_interrupt()
    assert _status(tmp_path, run_id) == "incomplete"
    storage = open_storage(tmp_path, create=False)
    assert storage is not None
    with storage:
        assert find_baseline(storage, "main", FP, MACHINE, "here").run is None


INTERRUPTED_SUMMARY = '''
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary():
    raise KeyboardInterrupt  # Ctrl-C after the energy reports were written
'''


@pytest.mark.slow
def test_ctrl_c_in_the_terminal_summary_end_to_end(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INTERRUPTED_SUMMARY)
    pytester.makepyfile(test_m=(
        "import pytest\n\n@pytest.mark.energy_budget(rounds=1, trials=3, warmup=0)\n"
        "def test_a():\n    pass\n"))
    result = pytester.runpytest_subprocess("--energy-meter=estimate", "--energy-save=main",
                                           "-p", "no:randomly")
    assert result.ret != 0 and "KeyboardInterrupt" in result.stderr.str() + result.stdout.str()
    storage = open_storage(pytester.path / ".energy", create=False)
    assert storage is not None
    with storage:
        assert [r.status for r in storage.runs()] == ["incomplete"]
