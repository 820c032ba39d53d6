"""The reference workload: measured once per gated run, on the process that runs the gate,
and handed to the gate (the run's machine dict) and the JSON report; a failing reference
is a note, never a failed run.

The meters here are deterministic (1 J per read, a frozen counter, a read error), so
nothing asserts a wall-clock figure except the one test marked slow.
"""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import Any

import pytest
from fakes.energy_test_meters import FrozenMeter, RaisingMeter, StepMeter

import pytest_energy.measure.reference as reference
import pytest_energy.report.finish as finish
from pytest_energy.history.storage import open_storage
from pytest_energy.meters.loader import MeterPool

REFERENCE_KEYS = {"joules_per_call", "meter", "estimated", "workload", "note"}

# The workload's source, pinned to its version: values of two versions must never be
# compared, so changing the workload without bumping WORKLOAD fails here.
PINNED_SOURCE = {"lcg-int-20000/v1": "f9610ff760284365"}


# ----- the workload and the measurement, without pytest runs ----------------------------------
class BrokenDomainsMeter(StepMeter):
    name = "broken"

    def domains(self) -> list[str]:
        raise RuntimeError("no domains today")


@pytest.fixture
def pool_of(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``pool_of("StepMeter")``: a session pool whose meter is one of the classes above."""
    module = types.ModuleType("reference_unit_meters")
    for meter in (StepMeter, FrozenMeter, RaisingMeter, BrokenDomainsMeter):
        setattr(module, meter.__name__, meter)
    monkeypatch.setitem(sys.modules, module.__name__, module)

    def make(spec: str) -> MeterPool:
        if ":" not in spec and spec not in ("estimate", "nvml", "rapl", "auto"):
            spec = f"{module.__name__}:{spec}"
        return MeterPool(spec, watts_per_core=10.0, require_hardware=False)

    return make


def test_workload_is_deterministic_and_pinned_to_its_version() -> None:
    assert reference.workload() == reference.workload()
    source = inspect.getsource(reference.workload)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert PINNED_SOURCE.get(reference.WORKLOAD) == digest, (
        "the reference workload changed: bump WORKLOAD's version (values of two versions "
        f"must not be compared) and pin {digest!r} for it here")


def test_measured_with_the_cpu_meter(pool_of: Any) -> None:
    measured = reference.measure_reference(pool_of("StepMeter"))
    assert set(measured) == REFERENCE_KEYS
    assert measured["joules_per_call"] > 0  # 1 J per window over its calls
    assert measured["meter"] == "step step:0"
    assert measured["estimated"] is False
    assert measured["workload"] == reference.WORKLOAD
    assert measured["note"] is None
    json.dumps(measured, allow_nan=False)  # stored as JSON with the run


def test_estimate_meter_is_labelled_estimated(pool_of: Any) -> None:
    measured = reference.measure_reference(pool_of("estimate"))
    assert measured["joules_per_call"] is not None and measured["joules_per_call"] > 0
    assert measured["meter"] == "estimate cpu:process"
    assert measured["estimated"] is True


@pytest.mark.parametrize(("meter", "note", "label"), [
    ("FrozenMeter", "meter 'frozen' saw no energy over a *", "frozen step:0"),
    ("RaisingMeter", "the meter failed while measuring the reference: *sensor went away*",
     "raising step:0"),
    ("BrokenDomainsMeter", "no CPU meter for the reference: *BrokenDomainsMeter ('broken') "
     "is not usable: domains() raised RuntimeError: no domains today", None),
    ("nvml", "no CPU meter for the reference: --energy-meter=nvml measures GPUs*", None),
    ("no_such_module:Meter", "no CPU meter for the reference: --energy-meter=no_such_module"
     ":Meter: cannot import 'no_such_module'*", None),
])
def test_a_failing_reference_is_a_note(pool_of: Any, meter: str, note: str,
                                       label: str | None) -> None:
    measured = reference.measure_reference(pool_of(meter))
    assert set(measured) == REFERENCE_KEYS
    assert measured["joules_per_call"] is None
    assert measured["meter"] == label
    assert measured["workload"] == reference.WORKLOAD
    assert fnmatch.fnmatch(measured["note"], note), measured["note"]


@pytest.mark.slow
def test_the_reference_costs_well_under_a_second(pool_of: Any) -> None:
    """Wall clock: the default budget (max_time 0.3 s) holds with the estimate meter,
    whose 4 ms update period asks for the longest windows of the CPU meters."""
    pool = pool_of("estimate")
    durations = []
    for _ in range(3):
        start = time.perf_counter()
        measured = reference.measure_reference(pool)
        durations.append(time.perf_counter() - start)
        assert measured["joules_per_call"] is not None
    assert max(durations) < 0.6, durations


# ----- through pytest runs -----------------------------------------------------------------------
REF_METERS = textwrap.dedent(
    '''
    import os


    CLOSED = []  # once the session closed its meters, none may be read again


    class CountingMeter:
        """1 J per read; a read after the session closed its meters fails (the
        reference must be measured before that)."""

        name = "counting"
        estimated = False
        update_period_s = 0.0
        max_plausible_watts = None

        def __init__(self):
            self.reads = 0

        def domains(self):
            return ["count:0"]

        def read(self):
            if CLOSED:
                raise RuntimeError("read after close")
            self.reads += 1
            return {"count:0": float(self.reads)}

        def close(self):
            CLOSED.append(self.name)


    class RaisingMeter(CountingMeter):
        name = "raising"

        def read(self):
            raise OSError("sensor went away")


    class FrozenMeter(CountingMeter):
        name = "frozen"

        def read(self):
            return {"count:0": 7.0}


    def failing_factory():
        raise RuntimeError("no device here")
    '''
)

SUITE = textwrap.dedent(
    """
    import pytest

    @pytest.mark.energy_budget(rounds=3, trials=3, warmup=0)
    def test_measured():
        pass

    def test_plain():
        pass
    """
)

PLAIN_SUITE = "def test_plain():\n    pass\n"

# A conftest for xdist runs: on a worker, every call of the reference workload is
# logged (none may happen there); the controller runs in the test process.
WORKER_CONFTEST = textwrap.dedent(
    """
    import os

    import pytest_energy.measure.reference as reference

    if os.environ.get("PYTEST_XDIST_WORKER"):
        _workload = reference.workload

        def _logged():
            with open(os.environ["REFERENCE_LOG"], "a") as log:
                log.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
            return _workload()

        reference.workload = _logged
    """
)


class Runs:
    """pytester runs with the counting meters, and what each run measured."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pytester = pytester
        self.calls: list[dict[str, Any]] = []  # measure_reference's results, this process
        original = reference.measure_reference  # the function finish.py calls

        def spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
            measured = original(*args, **kwargs)
            self.calls.append(measured)
            return measured

        monkeypatch.setattr(finish, "measure_reference", spy)

    def run(self, *args: str, meter: str = "CountingMeter") -> pytest.RunResult:
        return self.pytester.runpytest(f"--energy-meter=ref_meters:{meter}",
                                       "-p", "no:cacheprovider", "--energy-json=e.json", *args)

    def json(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.pytester.path / "e.json").read_text())
        return report

    def stored_machines(self) -> list[dict[str, Any]]:
        storage = open_storage(self.pytester.path / ".energy", create=False)
        assert storage is not None, "no history was saved"
        try:
            return [run.machine for run in storage.runs()]
        finally:
            storage.close()


@pytest.fixture
def runs(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Runs:
    for name in ("GITHUB_STEP_SUMMARY", "PYTEST_ENERGY_STORAGE", "PYTEST_ENERGY_COMPARE",
                 "PYTEST_ENERGY_SAVE", "PYTEST_ENERGY_AUTOSAVE", "PYTEST_ENERGY_MARKDOWN",
                 "PYTEST_ENERGY_SUGGEST_BUDGETS"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(ref_meters=REF_METERS, test_suite=SUITE)
    pytester.syspathinsert()
    return Runs(pytester, monkeypatch)


@pytest.mark.parametrize("gate", ["--energy-save=main", "--energy-autosave",
                                  "--energy-compare"])
def test_measured_when_the_gate_runs(runs: Runs, gate: str) -> None:
    result = runs.run(gate)
    assert result.ret == 0
    assert len(runs.calls) == 1
    measured = runs.json()["reference"]
    assert measured == runs.calls[0]
    assert set(measured) == REFERENCE_KEYS
    # measured with the tests' meter, before the session closed it
    assert measured["joules_per_call"] > 0
    assert measured["note"] is None
    assert measured["meter"] == "counting count:0"
    assert measured["workload"] == reference.WORKLOAD
    if gate != "--energy-compare":  # a saved run carries its reference
        assert [m["reference"] for m in runs.stored_machines()] == [measured]


def test_not_measured_without_a_gate_option(runs: Runs) -> None:
    result = runs.run()
    assert result.ret == 0
    assert runs.calls == []
    report = runs.json()
    assert "reference" not in report and "compare" not in report


def test_the_run_keeps_its_meters_when_no_test_measured(runs: Runs) -> None:
    """Where no test measured, the reference creates the pool; the run's meters (its
    meter fingerprint) are still the tests' meters: none."""
    runs.pytester.makepyfile(test_suite=PLAIN_SUITE)
    result = runs.run("--energy-save=main")
    assert result.ret == 0
    report = runs.json()
    assert report["reference"]["joules_per_call"] > 0
    assert report["meter"]["used"] == {}
    assert runs.stored_machines()[0]["reference"] == report["reference"]


@pytest.mark.slow  # measures the reference workload in each of several runs
@pytest.mark.parametrize(("meter", "note"), [
    ("RaisingMeter", "the meter failed while measuring the reference: *sensor went away*"),
    ("FrozenMeter", "meter 'frozen' saw no energy *"),
    ("failing_factory", "no CPU meter for the reference: *RuntimeError: no device here"),
])
@pytest.mark.parametrize("tests_fail", [False, True])
def test_a_failing_reference_leaves_the_exit_status_alone(runs: Runs, meter: str, note: str,
                                                          tests_fail: bool) -> None:
    body = "    assert False\n" if tests_fail else "    pass\n"
    runs.pytester.makepyfile(test_suite=f"def test_plain():\n{body}")
    expected = runs.run("--energy-save=main").ret  # a working meter
    assert expected == (1 if tests_fail else 0)
    result = runs.run("--energy-save=main", meter=meter)
    assert result.ret == expected
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    stored = runs.stored_machines()[0]["reference"]  # newest first
    assert stored == runs.json()["reference"]
    assert stored["joules_per_call"] is None
    assert fnmatch.fnmatch(stored["note"], note), stored["note"]


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_measured_once_on_the_xdist_controller(runs: Runs,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    log = runs.pytester.path / "reference.log"
    monkeypatch.setenv("REFERENCE_LOG", str(log))
    # this process is the controller, even when the suite itself runs under xdist
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    runs.pytester.makeconftest(WORKER_CONFTEST)
    result = runs.run("-n", "2", "--energy-save=main")
    assert result.ret == 0
    result.assert_outcomes(passed=2)
    assert len(runs.calls) == 1, "measured once, on the controller (this process)"
    assert not log.exists(), f"a worker ran the reference workload: {_read(log)}"
    measured = runs.json()["reference"]
    assert measured == runs.calls[0]
    assert measured["joules_per_call"] > 0  # with a pool created on the controller
    assert runs.stored_machines()[0]["reference"] == measured


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
