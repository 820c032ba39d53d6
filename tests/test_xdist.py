"""pytest-xdist: results reach the controller, and measured windows never overlap."""

from __future__ import annotations

import itertools
import json
import textwrap
from collections import defaultdict

import pytest

pytest.importorskip("xdist")

RECORDING_METER = textwrap.dedent(
    '''
    import os
    import time

    LOG = os.environ["WINDOW_LOG"]


    class RecordingMeter:
        """1 J per read, and every read's (pid, time) appended to a shared log, so the
        test can rebuild each process's windows (pairs of reads)."""

        name = "recording"
        estimated = False
        update_period_s = 0.0
        max_plausible_watts = None

        def __init__(self):
            self.reads = 0

        def domains(self):
            return ["rec:0"]

        def read(self):
            self.reads += 1
            with open(LOG, "a") as handle:
                handle.write(f"{os.getpid()} {time.perf_counter_ns()}\\n")
            return {"rec:0": float(self.reads)}

        def close(self):
            pass
    '''
)

SUITE = """
import time
import pytest

@pytest.mark.parametrize("n", range({measured}))
@pytest.mark.energy_budget(joules=10, rounds=3, warmup=1)
def test_measured(n):
    time.sleep(0.002)

@pytest.mark.parametrize("n", range({plain}))
def test_plain(n):
    time.sleep(0.001)
"""


def _windows(log: str) -> dict[int, list[tuple[int, int]]]:
    reads: dict[int, list[int]] = defaultdict(list)
    for line in log.splitlines():
        pid, stamp = line.split()
        reads[int(pid)].append(int(stamp))
    return {pid: list(zip(times[::2], times[1::2], strict=True)) for pid, times in reads.items()}


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
@pytest.mark.parametrize("workers", ["2"])
def test_xdist_summary_json_and_isolation(pytester: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    log = pytester.path / "windows.log"
    monkeypatch.setenv("WINDOW_LOG", str(log))
    monkeypatch.setenv("PYTEST_ENERGY_LOCK_DIR", str(pytester.path / "locks"))
    pytester.makepyfile(recording_meter=RECORDING_METER)
    pytester.makepyfile(test_suite=SUITE.format(measured=12, plain=30))
    result = pytester.runpytest_subprocess(
        "-n", workers, "-p", "no:cacheprovider", "--energy-json=e.json",
        "--energy-meter=recording_meter:RecordingMeter")
    result.assert_outcomes(passed=42)
    out = result.stdout.str()
    # every measured test exactly once in the summary and in the JSON
    for n in range(12):
        assert out.count(f"test_suite.py::test_measured[{n}]") == 1
    tests = json.loads((pytester.path / "e.json").read_text())["tests"]
    assert sorted(t["nodeid"] for t in tests) == sorted(
        f"test_suite.py::test_measured[{n}]" for n in range(12))
    assert all(t["joules_per_call"] == 1.0 and t["calls"] == 3 for t in tests)
    windows = _windows(log.read_text())
    assert len(windows) == 2, "both workers measured"
    # 3 windows per measured test + one idle-baseline window per worker, all exclusive
    assert sum(len(w) for w in windows.values()) == 12 * 3 + 2
    spans = sorted((start, end, pid) for pid, ws in windows.items() for start, end in ws)
    for (_, end, pid), (start, _, next_pid) in itertools.pairwise(spans):
        if pid != next_pid:
            assert start > end, "windows of two workers overlapped"


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_same_rows_with_and_without_xdist(pytester: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINDOW_LOG", str(pytester.path / "windows.log"))
    monkeypatch.setenv("PYTEST_ENERGY_LOCK_DIR", str(pytester.path / "locks"))
    pytester.makepyfile(recording_meter=RECORDING_METER)
    pytester.makepyfile(test_suite=SUITE.format(measured=6, plain=6))
    rows = {}
    for mode in ("0", "2"):
        result = pytester.runpytest_subprocess(
            "-n", mode, "-p", "no:cacheprovider", f"--energy-json=e{mode}.json",
            "--energy-meter=recording_meter:RecordingMeter")
        result.assert_outcomes(passed=12)
        tests = json.loads((pytester.path / f"e{mode}.json").read_text())["tests"]
        rows[mode] = sorted((t["nodeid"], t["outcome"], t["joules_per_call"], t["calls"],
                             t["rating"]) for t in tests)
    assert rows["0"] == rows["2"]


def test_measure_all_audits_unmarked_tests(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        CALLS = []

        def test_unmarked():
            CALLS.append(1)

        def test_zz_count():
            # test_unmarked ran warm-up + measured calls; this one is measured too
            assert len(CALLS) == 1 + 5
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:StepMeter", "--energy-all",
                              "--energy-rounds=5", "-p", "no:cacheprovider",
                              "--energy-columns=all")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_unmarked*5+1w*measured", "*test_zz_count*measured"])
