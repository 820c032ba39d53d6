"""pytest-xdist: a crashed worker's measured test becomes an error entry "worker crashed"
(issue 14, item 17), and Ctrl-C keeps the interrupted tests' partial entries (item 18).

The fast tests drive the session's hooks with the objects xdist hands them; the slow
ones run a real xdist session (a worker that calls ``os._exit``, a SIGINT to the whole
process group as a terminal's Ctrl-C sends it)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_energy.entry import Entry
from pytest_energy.options import SessionConfig
from pytest_energy.session import PENDING_ATTRIBUTE, EnergySession
from pytest_energy.workers import INTERRUPTED_KEY

NODEID = "test_suite.py::test_measured"


def _session(pytester: pytest.Pytester, *, is_worker: bool = False) -> EnergySession:
    return EnergySession(SessionConfig.from_config(pytester.parseconfig(), environ={}),
                         is_worker=is_worker)


def _node(worker: str, **output: Any) -> SimpleNamespace:
    """The controller's view of a worker (xdist's WorkerController)."""
    return SimpleNamespace(workerinput={"workerid": worker}, workeroutput=output)


def _declared() -> dict[str, Any]:
    return Entry.from_json({"nodeid": NODEID, "budget": {"joules": 1.0}}).to_json()


def _setup_passed(session: EnergySession, worker: str) -> None:
    report = pytest.TestReport(NODEID, ("test_suite.py", 1, "test_measured"), {}, "passed",
                               None, "setup")
    setattr(report, PENDING_ATTRIBUTE, _declared())
    report.node = _node(worker)  # type: ignore[attr-defined]
    session.pytest_runtest_logreport(report)


def test_a_crashed_workers_measured_test_becomes_an_error_entry(
        pytester: pytest.Pytester) -> None:
    session = _session(pytester)
    _setup_passed(session, "gw0")
    crash = pytest.TestReport(NODEID, ("test_suite.py", None, "test_suite.py"), {}, "failed",
                              f"worker 'gw0' crashed while running {NODEID!r}", "???")  # type: ignore[arg-type]
    session.pytest_handlecrashitem(NODEID, crash, sched=None)
    session.pytest_runtest_logreport(crash)
    entry = session.entries[NODEID]
    assert str(entry.outcome) == "error" and entry.budget.joules == 1.0
    assert entry.problem is not None and entry.problem.startswith(
        f"worker crashed: worker 'gw0' crashed while running {NODEID!r}")
    assert not session.pending


def test_a_crash_outside_a_measured_test_adds_no_entry(pytester: pytest.Pytester) -> None:
    session = _session(pytester)
    crash = pytest.TestReport("t.py::plain", ("t.py", None, "t.py"), {}, "failed", "crashed",
                              "???")  # type: ignore[arg-type]
    session.pytest_handlecrashitem("t.py::plain", crash, sched=None)
    session.pytest_runtest_logreport(crash)
    assert not session.entries


def test_a_worker_sends_only_its_interrupted_entries(pytester: pytest.Pytester) -> None:
    worker = _session(pytester, is_worker=True)
    partial = Entry.from_json({"nodeid": NODEID, "outcome": "interrupted", "partial": True})
    worker.entries = {NODEID: partial,
                      "t.py::done": Entry.from_json({"nodeid": "t.py::done",
                                                     "outcome": "passed"})}
    config = SimpleNamespace(workeroutput={})
    worker._exchange_with_workers(SimpleNamespace(config=config))  # type: ignore[arg-type]
    assert [e["nodeid"] for e in config.workeroutput[INTERRUPTED_KEY]] == [NODEID]


class _FakeDSession:
    """xdist's controller plugin: its event queue, where Ctrl-C left the workers' last
    events unread."""

    def __init__(self, *events: tuple[str, dict[str, Any]]) -> None:
        self.queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        for event in events:
            self.queue.put(event)


def _interrupted_controller(pytester: pytest.Pytester, *events: tuple[str, dict[str, Any]]
                            ) -> tuple[EnergySession, float]:
    session = _session(pytester)
    _setup_passed(session, "gw0")
    config = pytester.parseconfig()
    config.pluginmanager.register(_FakeDSession(*events), "dsession")
    start = time.monotonic()
    session._exchange_with_workers(SimpleNamespace(  # type: ignore[arg-type]
        config=config, exitstatus=pytest.ExitCode.INTERRUPTED))
    return session, time.monotonic() - start


def test_ctrl_c_on_the_controller_reads_the_interrupted_workers_entries(
        pytester: pytest.Pytester) -> None:
    partial = Entry.from_json({"nodeid": NODEID, "outcome": "interrupted", "partial": True,
                               "calls": 4}).to_json()
    node = _node("gw0", **{INTERRUPTED_KEY: [partial]})
    session, waited = _interrupted_controller(
        pytester, ("logstart", {"node": node}), ("workerfinished", {"node": node}))
    entry = session.entries[NODEID]
    assert str(entry.outcome) == "interrupted" and entry.partial and entry.calls == 4
    assert waited < 1.0  # no wait once the worker has answered


def test_a_report_that_arrives_after_ctrl_c_is_kept(pytester: pytest.Pytester) -> None:
    node = _node("gw0")
    report = pytest.TestReport(NODEID, ("test_suite.py", 1, "test_measured"), {}, "passed",
                               None, "call")
    report.energy = {**_declared(), "calls": 3}  # type: ignore[attr-defined]
    session, _ = _interrupted_controller(pytester, ("testreport", {"node": node, "rep": report}))
    assert session.entries[NODEID].calls == 3


def test_the_wait_for_a_silent_worker_is_bounded(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_energy.workers.WAIT_S", 0.05)
    session, waited = _interrupted_controller(pytester)
    assert 0.04 < waited < 1.0
    assert NODEID not in session.entries


# ----- a real xdist session --------------------------------------------------------------------

WATT = """
import time


class WattMeter:
    name = "watt"
    estimated = False
    update_period_s = 0.0
    max_plausible_watts = None

    def domains(self):
        return ["w:0"]

    def read(self):
        return {"w:0": 100.0 * time.perf_counter()}

    def close(self):
        pass
"""


@pytest.mark.slow  # xdist starts worker processes, twice (one crashes)
def test_crashed_worker_is_an_error_entry_in_the_json(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(watt_meter=WATT, test_suite="""
        import os
        import pytest

        @pytest.mark.energy_budget(joules=1000, rounds=2)
        def test_crash():
            os._exit(3)

        @pytest.mark.energy_budget(joules=1000, rounds=2)
        def test_ok():
            pass
    """)
    result = pytester.runpytest_subprocess(
        "-n", "1", "-p", "no:cacheprovider", "--energy-json=e.json", "--energy-save=main",
        "--energy-meter=watt_meter:WattMeter")
    result.assert_outcomes(passed=1, failed=1)
    # only complete runs are saved: the history says which test kept this one out
    result.stdout.fnmatch_lines(["*not saved to the history*test_suite.py::test_crash*"])
    tests = {t["nodeid"]: t for t in json.loads((pytester.path / "e.json").read_text())["tests"]}
    crashed = tests["test_suite.py::test_crash"]
    assert crashed["outcome"] == "error" and crashed["budget"]["joules"] == 1000
    assert crashed["problem"].startswith("worker crashed: worker 'gw0' crashed while running")
    assert tests["test_suite.py::test_ok"]["verdict"] == "ok"


@pytest.mark.slow  # real processes and a real SIGINT
def test_ctrl_c_under_xdist_keeps_the_interrupted_partial_entries(
        pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(watt_meter=WATT, test_suite="""
        import time
        import pytest

        @pytest.mark.energy_budget(joules=1000, rounds=5, warmup=1, trials=5)
        def test_long():
            with open("calls", "a") as log:
                log.write("call\\n")
            if len(open("calls").read().splitlines()) >= 3:
                time.sleep(60)  # warm-up, one measured window, then Ctrl-C arrives

        def test_plain():
            pass
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
         "--energy-json=e.json", "--energy-meter=watt_meter:WattMeter",
         "--energy-idle-baseline=false", "--energy-warmup-settle=0"],
        cwd=pytester.path, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while (_lines(pytester.path / "calls") < 3 and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)
    time.sleep(0.1)  # inside the blocking call
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = process.communicate(timeout=60)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    tests = json.loads((pytester.path / "e.json").read_text())["tests"]
    assert [t["nodeid"] for t in tests] == ["test_suite.py::test_long"], output
    assert tests[0]["outcome"] == "interrupted" and tests[0]["partial"] is True
    assert tests[0]["calls"] == 1  # the window completed before Ctrl-C


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
