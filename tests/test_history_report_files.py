"""The files pytest-energy writes (JSON report, markdown, exports): mode from the umask,
symbolic links, long names, and values JSON cannot hold."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_energy.report import jsonreport
from pytest_energy.report.jsonreport import (
    EnergyReportWarning,
    atomic_write_text,
    report_text,
    write_report,
)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path: Path, mask: int, mode: int) -> None:
    with umask(mask):
        assert jsonreport._umask() == mask
        written = atomic_write_text(tmp_path / "energy.json", "{}\n")
    assert stat.S_IMODE(written.stat().st_mode) == mode


def test_a_symbolic_link_is_written_through(tmp_path: Path) -> None:
    """The link stays; the file it points to (through a second link) gets the content."""
    target = tmp_path / "reports" / "energy.json"
    target.parent.mkdir()
    target.write_text("old\n")
    (tmp_path / "middle.json").symlink_to(target)
    link = tmp_path / "energy.json"
    link.symlink_to("middle.json")  # relative, as people make them
    assert atomic_write_text(link, "new\n") == link
    assert link.is_symlink() and (tmp_path / "middle.json").is_symlink()
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["energy.json"]  # no temp left


def test_a_dangling_link_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "energy.json"
    link.symlink_to(tmp_path / "made.json")
    atomic_write_text(link, "x\n")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x\n"


@pytest.mark.skipif(not hasattr(os, "lchown") or os.geteuid() != 0,
                    reason="needs root to give a link to another user")
def test_a_link_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    """In a shared directory another user may plant the link: never write through it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "energy.json"
    link.symlink_to(victim)
    os.lchown(link, 12345, 12345)
    with pytest.raises(PermissionError, match="symbolic link owned by another user"):
        atomic_write_text(link, "{}\n")
    assert victim.read_text() == "precious\n" and link.is_symlink()


def test_a_long_valid_file_name_works(tmp_path: Path) -> None:
    name = "r" * 245 + ".json"  # 250 characters: NAME_MAX is 255
    assert atomic_write_text(tmp_path / name, "{}\n").read_text() == "{}\n"
    wide = "é" * 120 + ".json"  # 245 bytes in UTF-8
    assert atomic_write_text(tmp_path / wide, "{}\n").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, wide])


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "energy.json"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), jsonreport.atomic_writer(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["energy.json"]


# ----- values JSON cannot hold ------------------------------------------------------------------


def test_values_json_cannot_hold_become_null_and_are_named(tmp_path: Path) -> None:
    report = {"version": 1, "meter": {
        "used": {"custom": {"calibrated": datetime.date(2024, 5, 1), "offset": math.nan,
                            "ids": {1, 2}, "ok": [1.5, "x", None, True]}}},
        "tests": [{"nodeid": "t::a", "watts": math.inf, "joules_per_call": 1.0}]}
    path = tmp_path / "energy.json"
    with pytest.warns(EnergyReportWarning, match="meter.used.custom.calibrated: a "
                                                 "datetime.date") as caught:
        write_report(str(path), report)
    data = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(name))
    custom = data["meter"]["used"]["custom"]
    assert custom == {"calibrated": None, "offset": None, "ids": None,
                      "ok": [1.5, "x", None, True]}
    assert data["tests"][0] == {"nodeid": "t::a", "watts": None, "joules_per_call": 1.0}
    (message,) = data["warnings"]
    for part in ("meter.used.custom.offset: nan", "meter.used.custom.ids: a builtins.set",
                 "tests[0].watts: inf"):
        assert part in message and part in str(caught[0].message)


def test_a_clean_report_is_unchanged() -> None:
    report = {"version": 1, "meter": {"name": "x"}, "tests": [{"nodeid": "a", "v": 0.5}]}
    assert report_text(report) == (json.dumps(report) + "\n", [])


def test_warnings_as_errors_still_write_the_report(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(str(tmp_path / "e.json"), {"meter": {"when": datetime.datetime.now()}})
    assert json.loads((tmp_path / "e.json").read_text())["meter"] == {"when": None}


DATED_METER = '''
import datetime


class DatedMeter:
    """A custom meter whose description holds what JSON cannot: a date and a NaN."""

    name = "dated"
    estimated = False
    update_period_s = 0.0
    max_plausible_watts = None

    def __init__(self):
        self.reads = 0

    def domains(self):
        return ["dated:0"]

    def read(self):
        self.reads += 1
        return {"dated:0": float(self.reads)}

    def describe(self):
        return {"calibrated": datetime.date(2024, 5, 1), "offset": float("nan")}

    def close(self):
        pass
'''


def test_a_meter_describing_itself_with_a_date_keeps_the_json_report(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(dated_meter=DATED_METER, test_m=(
        "import pytest\n\n@pytest.mark.energy_budget(rounds=1, trials=3, warmup=0)\n"
        "def test_a():\n    pass\n"))
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess("--energy-meter=dated_meter:DatedMeter",
                                          "--energy-json=energy.json", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()  # every test passed: so does the run
    result.stdout.fnmatch_lines(["*EnergyReportWarning*not JSON, written as null*"])
    data = json.loads((pytester.path / "energy.json").read_text())
    assert [t["nodeid"] for t in data["tests"]] == ["test_m.py::test_a"]
    assert "calibrated" in data["warnings"][0]
