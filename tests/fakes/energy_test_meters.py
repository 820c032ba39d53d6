"""Deterministic meters for the tests, in one module: in-process tests import them
(``from fakes.energy_test_meters import StepMeter``), and pytester-run suites get this
file's text as ``energy_test_meters`` (the ``meters`` fixture) and name them with
``--energy-meter=energy_test_meters:NAME``."""

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
