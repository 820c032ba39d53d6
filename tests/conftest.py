"""Shared test helpers: deterministic meters that pytester-run suites can name with
``--energy-meter=energy_test_meters:NAME``."""

from __future__ import annotations

import contextlib
import os
import textwrap

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


TEST_METERS = textwrap.dedent(
    '''
    import math
    import time


    class StepMeter:
        """Deterministic: every read advances the counter by exactly 1 J, so one
        window (two reads) is 1 J whatever it contains."""

        name = "step"
        estimated = False
        update_period_s = 0.0
        max_plausible_watts = None  # 1 J per microsecond-long window is not physical

        def __init__(self):
            self.reads = 0

        def domains(self):
            return ["step:0"]

        def read(self):
            self.reads += 1
            return {"step:0": float(self.reads)}

        def close(self):
            pass


    class WattMeter:
        """100 W x wall time: energy proportional to elapsed time."""

        name = "watt100"
        estimated = False
        update_period_s = 0.0
        max_plausible_watts = None

        def domains(self):
            return ["wall:0"]

        def read(self):
            return {"wall:0": 100.0 * time.perf_counter()}

        def close(self):
            pass


    def make_watt_meter():
        return WattMeter()


    class FrozenMeter(StepMeter):
        """A counter that never advances (an unsupported counter read as a constant)."""

        name = "frozen"

        def read(self):
            return {"step:0": 42.0}


    class RaisingMeter(StepMeter):
        name = "raising"

        def read(self):
            self.reads += 1
            if self.reads >= 3:
                raise OSError("sensor went away")
            return {"step:0": float(self.reads)}


    class NanMeter(StepMeter):
        name = "nan"

        def read(self):
            return {"step:0": math.nan}


    class BackwardsMeter(StepMeter):
        name = "backwards"

        def read(self):
            self.reads += 1
            return {"step:0": 100.0 - self.reads}


    class EstimatedStepMeter(StepMeter):
        name = "modelled"
        estimated = True


    class JumpingMeter(StepMeter):
        """A realistic 50 W counter that jumps by 1 MJ on its second read (a reset to
        garbage): the plausibility check must catch it."""

        name = "jumping"
        max_plausible_watts = 100_000.0

        def read(self):
            self.reads += 1
            watts = 50.0 * time.perf_counter()
            return {"step:0": watts + (1e6 if self.reads >= 2 else 0.0)}


    class HangingMeter(StepMeter):
        """Answers twice, then blocks forever on read()."""

        name = "hanging"

        def read(self):
            self.reads += 1
            if self.reads >= 3:
                time.sleep(3600)
            return {"step:0": float(self.reads)}


    class ContaminatedMeter(StepMeter):
        name = "shared"

        def conditions(self):
            return ["contaminated: 1 other compute process on step:0 (pid 42)"]


    class NoisyMeter(StepMeter):
        """Window energies alternate 1 J / 3 J: a CV far above any sane threshold."""

        name = "noisy"

        def read(self):
            self.reads += 1
            windows, within = divmod(self.reads - 1, 2)
            total = sum(1.0 if w % 2 == 0 else 3.0 for w in range(windows))
            return {"step:0": total + (0.0 if within == 0 else (1.0 if windows % 2 == 0 else 3.0))}


    BUSY_JOULES = 0.0


    class IdlePlusBusyMeter:
        """10 W idle floor (wall time) plus whatever the test body adds to BUSY_JOULES:
        a device whose dynamic energy the test controls exactly."""

        name = "idleplus"
        estimated = False
        update_period_s = 0.0
        max_plausible_watts = None

        def domains(self):
            return ["dev:0"]

        def read(self):
            return {"dev:0": 10.0 * time.perf_counter() + BUSY_JOULES}

        def close(self):
            pass


    NOT_A_METER = object()


    def failing_factory():
        raise RuntimeError("no device here")
    '''
)


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
