"""Reliability of the files the plugin writes, the meter loader, and the compare parser."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_energy.meters.loader import load_custom_meter
from pytest_energy.meters.locks import exclusive
from pytest_energy.report import jsonreport
from pytest_energy.report.jsonreport import atomic_write_text


def _disk_full(fd: int) -> None:
    """Stands in for os.fsync on a full disk."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_leaves_the_old_file_intact_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "energy.json"
    target.write_text('{"old": true}\n')

    monkeypatch.setattr(jsonreport.os, "fsync", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, '{"new": true}\n')
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["energy.json"]


def test_json_report_in_unwritable_directory_is_reported(
    meters: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=1)
        def test_ok():
            pass
        """
    )

    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", "reports/.energy.json.tmp")

    monkeypatch.setattr(jsonreport.tempfile, "mkstemp", denied)
    result = meters.runpytest("--energy-meter=energy_test_meters:StepMeter",
                              "--energy-json=reports/energy.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*pytest-energy: could not write the JSON report to "
                                 "reports/energy.json: PermissionError*Permission denied*"])
    assert "INTERNALERROR" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_json_report_disk_full_keeps_the_previous_report(
    meters: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=1)
        def test_ok():
            pass
        """
    )
    previous = {"version": 1, "tests": []}
    (meters.path / "energy.json").write_text(json.dumps(previous))

    monkeypatch.setattr(jsonreport.os, "fsync", _disk_full)
    result = meters.runpytest("--energy-meter=energy_test_meters:StepMeter",
                              "--energy-json=energy.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*could not write the JSON report to energy.json: OSError*"
                                 "No space left on device*"])
    assert json.loads((meters.path / "energy.json").read_text()) == previous
    assert not [p for p in meters.path.iterdir() if p.name.endswith(".tmp")]


def test_module_attr_loader_imports_only_the_named_module(meters: pytest.Pytester) -> None:
    before = set(sys.modules)
    meter = load_custom_meter("energy_test_meters:StepMeter")
    assert meter.name == "step"
    assert set(sys.modules) - before <= {"energy_test_meters"}


def test_stored_data_is_never_unpickled_or_evaluated() -> None:
    """The modules that read stored or user data use json and sqlite only."""
    root = Path(__file__).resolve().parent.parent / "pytest_energy"
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for forbidden in ("import pickle", "pickle.load", "eval(", "exec(", "marshal.load",
                          "yaml.load("):
            assert forbidden not in text, f"{path.name} uses {forbidden}"


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pytest_energy.errors import EnergyConfigError  # noqa: E402
from pytest_energy.history.metrics import parse_compare_fail  # noqa: E402

expression = st.one_of(
    st.text(max_size=30),
    st.builds(lambda m, v: f"{m}:{v}",
              st.sampled_from(["joules", "latency_ms", "joules_per_item", "watts", ""]),
              st.one_of(st.floats().map(lambda f: f"{f}%"), st.floats().map(lambda f: f"+{f}"),
                        st.text(max_size=8))),
)


@pytest.mark.slow  # a property test of many examples: run with -m slow
@settings(max_examples=300, deadline=None)
@given(st.lists(expression, min_size=1, max_size=3).map(",".join))
def test_compare_expression_parser_raises_only_the_documented_error(text: str) -> None:
    try:
        thresholds = parse_compare_fail(text)
    except EnergyConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(thresholds, tuple)


def test_environment_is_not_leaked_into_tests() -> None:
    assert os.environ.get("PYTEST_ENERGY_LOCK_DIR")  # set by the autouse fixture


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_device_lock_waits_for_another_process_and_reports_it(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("PYTEST_ENERGY_LOCK_DIR", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from pytest_energy.meters.locks import exclusive
        with exclusive(["gpu-GPU-test"]):
            print("held", flush=True)
            time.sleep(0.4)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        with exclusive(["gpu-GPU-test"]) as info:
            waited = time.perf_counter() - start
        assert waited >= 0.2 and info.waited_s >= 0.2
        with exclusive(["gpu-GPU-other"]) as free:  # another device: no wait
            assert free.waited_s < 0.2
    finally:
        holder.wait(timeout=10)
