"""RaplMeter against fake powercap trees: discovery, joules, wraparound, failures."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fakes.powercap import (
    DRAM_RANGE_UJ,
    PACKAGE_RANGE_UJ,
    FakePowercap,
    amd_zen,
    intel_two_socket,
    laptop_with_psys,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_energy.meters.base import Meter, MeterError, MeterUnavailable, missing_meter_attributes
from pytest_energy.meters.rapl import ROOT_ENV_VAR, RaplMeter


@pytest.fixture(autouse=True)
def _no_root_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_ENV_VAR, raising=False)


def test_meter_protocol(tmp_path: Path) -> None:
    meter = RaplMeter(intel_two_socket(tmp_path).root)
    assert isinstance(meter, Meter)
    assert missing_meter_attributes(meter) == []
    assert (meter.name, meter.estimated, meter.update_period_s) == ("rapl", False, 0.001)


def test_discovers_package_and_dram_on_two_sockets(tmp_path: Path) -> None:
    tree = intel_two_socket(tmp_path)
    meter = RaplMeter(tree.root)
    # core is part of the package and the mmio zone mirrors package-0: neither counted.
    assert meter.domains() == ["package:0", "dram:0", "package:1", "dram:1"]
    zones = {zone["domain"]: zone for zone in meter.describe()["zones"]}
    assert zones["dram:1"]["path"] == str(tree.root / "intel-rapl:1:0")
    assert zones["package:1"]["name"] == "package-1"


def test_socket_comes_from_zone_name_not_directory(tmp_path: Path) -> None:
    tree = laptop_with_psys(tmp_path)
    meter = RaplMeter(tree.root)
    assert meter.domains() == ["package:0", "dram:0"]
    tree.advance("intel-rapl:0", 9_000_000)  # psys: ignored
    tree.advance("intel-rapl:1", 2_000_000)
    tree.advance("intel-rapl:1:2", 300_000)
    assert meter.read() == {"package:0": 2.0, "dram:0": 0.3}


def test_subzones_found_when_only_nested(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0")
    tree.add_zone("intel-rapl:0:0", "dram", link=False)
    assert RaplMeter(tree.root).domains() == ["package:0", "dram:0"]


def test_amd_style_tree_has_packages_only(tmp_path: Path) -> None:
    tree = amd_zen(tmp_path, sockets=2)
    meter = RaplMeter(tree.root)
    assert meter.domains() == ["package:0", "package:1"]
    tree.advance("intel-rapl:1", 4_250_000)
    tree.advance("intel-rapl:1:0", 1_000_000)  # core subzone: not a domain
    assert meter.read() == {"package:0": 0.0, "package:1": 4.25}


def test_multi_die_packages_and_duplicate_names(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0-die-1")
    tree.add_zone("intel-rapl:1", "package-0-die-0")
    tree.add_zone("intel-rapl:2", "package-0-die-0")  # duplicate: would double count
    tree.add_zone("intel-rapl:10", "package-1-die-0")
    meter = RaplMeter(tree.root)
    assert meter.domains() == ["package:0-die-0", "package:0-die-1", "package:1-die-0"]
    assert meter.describe()["zones"][0]["path"].endswith("intel-rapl:1")


def test_joules_are_cumulative_since_construction(tmp_path: Path) -> None:
    tree = intel_two_socket(tmp_path)
    meter = RaplMeter(tree.root)
    assert meter.read() == {"package:0": 0.0, "dram:0": 0.0, "package:1": 0.0, "dram:1": 0.0}
    tree.advance("intel-rapl:0", 1_500_000)
    tree.advance("intel-rapl:0:0", 250_000)
    assert meter.read() == {"package:0": 1.5, "dram:0": 0.25, "package:1": 0.0, "dram:1": 0.0}
    tree.advance("intel-rapl:0", 500_000)
    tree.advance("intel-rapl:1:0", 1)
    assert meter.read() == {
        "package:0": 2.0,
        "dram:0": 0.25,
        "package:1": 0.0,
        "dram:1": 0.000001,
    }


def test_wraparound_adds_the_range_once(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=900_000, max_energy_range_uj=1_000_000)
    meter = RaplMeter(tree.root)
    tree.set_energy("intel-rapl:0", 100_000)  # wrapped: 100 000 uJ before + 100 000 after
    assert meter.read() == {"package:0": 0.2}
    tree.set_energy("intel-rapl:0", 400_000)
    assert meter.read() == {"package:0": 0.5}
    tree.set_energy("intel-rapl:0", 399_999)  # the smallest step backwards is a wrap too
    assert meter.read()["package:0"] == pytest.approx(0.5 + 0.999_999)


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=10_000),
    steps=st.lists(st.integers(min_value=0, max_value=9_999), min_size=1, max_size=30),
)
def test_wraparound_never_negative_and_exact(start: int, steps: list[int]) -> None:
    with tempfile.TemporaryDirectory() as base:
        tree = FakePowercap(Path(base))
        tree.add_zone("intel-rapl:0", "package-0", energy_uj=start, max_energy_range_uj=10_000)
        meter = RaplMeter(tree.root)
        previous = 0.0
        for done, step in enumerate(steps, start=1):
            tree.advance("intel-rapl:0", step)
            joules = meter.read()["package:0"]
            assert joules >= previous
            assert joules == pytest.approx(sum(steps[:done]) / 1e6, abs=1e-12)
            previous = joules


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailable, match=r"no powercap RAPL zones under .*nowhere"):
        RaplMeter(tmp_path / "nowhere")


def test_root_without_rapl_zones(tmp_path: Path) -> None:
    (tmp_path / "some-other-control-type:0").mkdir()
    with pytest.raises(MeterUnavailable, match="no powercap RAPL zones under"):
        RaplMeter(tmp_path)


def test_no_package_zone(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "psys")
    with pytest.raises(MeterUnavailable, match=r"no RAPL package zone .*intel-rapl:0=psys"):
        RaplMeter(tree.root)


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = amd_zen(tmp_path, sockets=1)
    monkeypatch.setenv(ROOT_ENV_VAR, str(tree.root))
    meter = RaplMeter()
    assert meter.describe()["root"] == str(tree.root)
    assert meter.domains() == ["package:0"]


def test_default_root_is_sysfs() -> None:
    try:
        meter = RaplMeter()
    except MeterUnavailable as exc:
        assert "/sys/class/powercap" in str(exc)
    else:  # a machine with readable RAPL counters
        assert meter.describe()["root"] == "/sys/class/powercap"


def test_permission_error_explains_the_cve_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = intel_two_socket(tmp_path)
    tree.deny_read("intel-rapl:1", monkeypatch)
    with pytest.raises(MeterUnavailable) as info:
        RaplMeter(tree.root)
    message = str(info.value)
    assert message.startswith(
        "RAPL unavailable: energy_uj is readable by root only since the CVE-2020-8694 fix"
    )
    assert str(tree.root / "intel-rapl:1" / "energy_uj") in message
    assert f"sudo chmod a+r {tree.root}/intel-rapl:*/energy_uj" in message
    assert "udev rule" in message


def test_unparsable_value_at_read_names_the_file(tmp_path: Path) -> None:
    tree = intel_two_socket(tmp_path)
    meter = RaplMeter(tree.root)
    tree.write_raw("intel-rapl:0:0", "not-a-number\n")
    with pytest.raises(MeterError, match=r"intel-rapl:0:0/energy_uj.*not-a-number"):
        meter.read()


def test_failed_read_leaves_state_consistent(tmp_path: Path) -> None:
    tree = intel_two_socket(tmp_path)
    meter = RaplMeter(tree.root)
    tree.advance("intel-rapl:0", 1_000_000)
    tree.remove("intel-rapl:1:0")
    with pytest.raises(MeterError, match=r"cannot read .*intel-rapl:1:0/energy_uj"):
        meter.read()
    tree.set_energy("intel-rapl:1:0", 1_400_000 + 5)  # back, 5 uJ above its start
    tree.advance("intel-rapl:0", 1_000_000)
    assert meter.read() == {"package:0": 2.0, "dram:0": 0.0, "package:1": 0.0, "dram:1": 5e-6}


def test_unreadable_at_construction(tmp_path: Path) -> None:
    tree = amd_zen(tmp_path, sockets=1)
    tree.write_raw("intel-rapl:0", "")
    with pytest.raises(MeterUnavailable, match=r"cannot read .*intel-rapl:0/energy_uj"):
        RaplMeter(tree.root)


@pytest.mark.parametrize("content", ["0\n", "abc\n"])
def test_bad_max_range(tmp_path: Path, content: str) -> None:
    tree = amd_zen(tmp_path, sockets=1)
    tree.write_raw("intel-rapl:0", content, file="max_energy_range_uj")
    with pytest.raises(MeterUnavailable, match="max_energy_range_uj"):
        RaplMeter(tree.root)


def test_max_read_interval_uses_smallest_range_at_400w(tmp_path: Path) -> None:
    assert RaplMeter(amd_zen(tmp_path / "amd").root).max_read_interval_s() == pytest.approx(
        PACKAGE_RANGE_UJ / 1e6 / 400
    )
    intel = RaplMeter(intel_two_socket(tmp_path / "intel").root)
    assert intel.max_read_interval_s() == pytest.approx(DRAM_RANGE_UJ / 1e6 / 400)
    assert 160 < intel.max_read_interval_s() < 170


def test_describe(tmp_path: Path) -> None:
    tree = laptop_with_psys(tmp_path)
    info = RaplMeter(tree.root).describe()
    assert info == {
        "meter": "rapl",
        "root": str(tree.root),
        "zones": [
            {
                "domain": "package:0",
                "path": str(tree.root / "intel-rapl:1"),
                "name": "package-0",
                "max_energy_range_uj": PACKAGE_RANGE_UJ,
            },
            {
                "domain": "dram:0",
                "path": str(tree.root / "intel-rapl:1:2"),
                "name": "dram",
                "max_energy_range_uj": DRAM_RANGE_UJ,
            },
        ],
        "worst_case_power_w": 400.0,
        "max_read_interval_s": pytest.approx(DRAM_RANGE_UJ / 1e6 / 400),
    }


def test_close_is_idempotent(tmp_path: Path) -> None:
    meter = RaplMeter(amd_zen(tmp_path).root)
    meter.close()
    meter.close()
    with pytest.raises(MeterError, match="after close"):
        meter.read()
