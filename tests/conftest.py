"""Shared test helpers: deterministic meters that pytester-run suites can name with
``--energy-meter=energy_test_meters:NAME``."""

from __future__ import annotations

import contextlib
import os
import textwrap
from pathlib import Path

import pytest

# Pre-import: pytester's in-process runs would otherwise re-import it per run (~1 s).
with contextlib.suppress(ImportError):  # hypothesis is a dev extra
    import hypothesis

    # In CI (CI=true) property tests are derandomized: the same examples every run, so
    # a merge is never blocked by a newly drawn example; locally they keep exploring.
    hypothesis.settings.register_profile("ci", derandomize=True, deadline=None,
                                         print_blob=True)
    if os.environ.get("CI"):
        hypothesis.settings.load_profile("ci")


TEST_METERS = (Path(__file__).parent / "fakes" / "energy_test_meters.py").read_text(
    encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: opens the HTML report in headless Chromium "
                            "(Playwright); also slow; run with -m browser")


@pytest.fixture
def meters(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester with the module ``energy_test_meters`` importable."""
    pytester.makepyfile(energy_test_meters=TEST_METERS)
    pytester.syspathinsert()
    return pytester


@pytest.fixture(autouse=True)
def _private_lock_dir(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Device locks and the peer-process registry of this test run stay in its own
    temp dir, so concurrent test runs on one machine never see each other."""
    monkeypatch.setenv("PYTEST_ENERGY_LOCK_DIR", str(tmp_path_factory.getbasetemp() / "locks"))


@pytest.fixture(autouse=True)
def _no_busy_detection(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy-machine detection reads no /proc (as on macOS): on a shared machine another
    job's load would turn an asserted budget failure into a warning. tests/test_busy.py
    points it at a fake /proc tree instead."""
    monkeypatch.setenv("PYTEST_ENERGY_PROC_ROOT", str(tmp_path_factory.getbasetemp() / "no-proc"))


BURN_METERS = textwrap.dedent(
    '''
    import time

    COUNTER = [0.0]


    def burn(millijoules, seconds=0.0):
        """Advance the counter by `millijoules`, optionally taking `seconds` of wall time."""
        COUNTER[0] += millijoules / 1000
        if seconds:
            time.sleep(seconds)


    class BurnMeter:
        name = "burn"
        estimated = False
        update_period_s = 0.0

        def domains(self):
            return ["burn:0"]

        def read(self):
            return {"burn:0": COUNTER[0]}

        def close(self):
            pass


    class GpuBurnMeter(BurnMeter):
        """Same counter, but its windows last a known time: 50 W average."""

        name = "gpuburn"

        def domains(self):
            return ["gpu:0"]


    class LimitedGpuBurnMeter(GpuBurnMeter):
        """A GPU meter that knows its board's power limit, as the NVML meter does."""

        name = "limitedgpuburn"

        def power_limits_w(self):
            return {"gpu:0": 700.0}
    '''
)


@pytest.fixture
def burn(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester with ``rs_meters`` importable (by the meter loader and the tests)."""
    pytester.makepyfile(rs_meters=BURN_METERS)
    pytester.syspathinsert()
    return pytester
