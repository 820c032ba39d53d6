"""A virtual-time GPU for the plugin's own measuring code: realistic workloads, a
part-time power sensor behind a stepped counter, and every timing imperfection the
issue tracker has seen (step jitter, slow reads, idle drift, unknown sensor windows).

Unlike ``bench/sensor_sim.py`` (numpy, many devices, an idealised loop), this runs the
real :class:`pytest_energy.measure.driver.Measurer` on one simulated device: the
Measurer's clock, sleep and meter are this module's, and the measured function is a
call of the simulated workload. Nothing sleeps for real.

Model
-----
* **Power trace.** Piecewise constant: each call appends its profile's segments; pauses
  and meter reads draw the idle power, which may drift (``idle_drift``: relative rise
  per 40 s of session).
* **Calls.** A :class:`Workload` gives each call (by index, so alternating patterns
  follow the call count) a duration and a power shape: ``const``, ``pulsed`` (10 ms busy
  of every 50 ms), ``burst_end`` (base power with a 10 ms burst at the end), ``ramp``
  (linear from low to high over the call).
* **Sensor.** Steps at ``phase + k * period`` plus jitter (independent per step, or
  accumulating as a random walk); at each step the counter grows by the mean power over
  the last ``window_s`` times the period. It reads in whole millijoules.
* **Reads.** A read takes ``read_s`` (plus, with probability ``slow_p``, up to
  ``slow_s`` more); the value is the counter at a uniformly random instant within it.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_W = 60.0
Shape = Callable[[float], list[tuple[float, float]]]  # duration -> (seconds, watts)


def const_shape(watts: float = 300.0) -> Shape:
    return lambda d: [(d, watts)]


def pulsed_shape(busy_w: float = 400.0, low_w: float = 60.0, pulse_s: float = 0.05,
                 duty: float = 0.2) -> Shape:
    def shape(d: float) -> list[tuple[float, float]]:
        period = min(pulse_s, d)
        out: list[tuple[float, float]] = []
        t = 0.0
        while t < d - 1e-12:
            busy = min(duty * period, d - t)
            out.append((busy, busy_w))
            idle = min(period - busy, d - t - busy)
            if idle > 0:
                out.append((idle, low_w))
            t += busy + idle
        return out
    return shape


def burst_end_shape(base_w: float = 100.0, burst_w: float = 450.0,
                    burst_s: float = 0.010) -> Shape:
    def shape(d: float) -> list[tuple[float, float]]:
        burst = min(burst_s, d / 2)
        return [(d - burst, base_w), (burst, burst_w)]
    return shape


def ramp_shape(low_w: float = 80.0, high_w: float = 400.0, pieces: int = 8) -> Shape:
    def shape(d: float) -> list[tuple[float, float]]:
        return [(d / pieces, low_w + (high_w - low_w) * (i + 0.5) / pieces)
                for i in range(pieces)]
    return shape


SHAPES: dict[str, Shape] = {"const": const_shape(), "pulsed": pulsed_shape(),
                            "burst_end": burst_end_shape(), "ramp": ramp_shape()}


@dataclass(frozen=True)
class Workload:
    """Call ``i`` lasts ``durations[i % len(durations)]`` (times a jitter factor, and
    ``gc_factor`` for a ``gc_p`` share of calls), with ``shape``'s power."""

    durations: tuple[float, ...]
    shape: str = "pulsed"
    jitter: float = 0.0  # uniform +- relative
    gc_p: float = 0.0
    gc_factor: float = 5.0
    gc_w: float = 90.0  # a GC pause: the host works, the device idles a little above idle

    def mean_joules(self) -> float | None:
        """The true energy per call over whole cycles of the pattern (``None`` for a
        random workload: the calls actually run are the truth then)."""
        if self.jitter or self.gc_p:
            return None
        return sum(sum(s * w for s, w in SHAPES[self.shape](d))
                   for d in self.durations) / len(self.durations)

    def call(self, index: int, rng: random.Random) -> list[tuple[float, float]]:
        d = self.durations[index % len(self.durations)]
        if self.jitter:
            d *= 1 + rng.uniform(-self.jitter, self.jitter)
        segments = SHAPES[self.shape](d)
        if self.gc_p and rng.random() < self.gc_p:
            segments = [*segments, ((self.gc_factor - 1) * d, self.gc_w)]
        return segments


@dataclass
class SensorModel:
    period_s: float = 0.100
    window_s: float = 0.025
    declared_window_s: float | None = 0.025
    step_jitter_s: float = 0.0
    jitter_accumulates: bool = False


@dataclass
class ReadModel:
    read_s: float = 1e-4
    slow_p: float = 0.0
    slow_s: float = 0.0


@dataclass
class SimDevice:
    """One simulated device: its clock, power trace, sensor and counter."""

    sensor: SensorModel
    reads: ReadModel
    workload: Workload
    seed: int = 0
    idle_drift: float = 0.0
    t: float = 0.0
    calls: int = 0
    call_joules: float = 0.0
    _starts: list[float] = field(default_factory=list)
    _cum: list[float] = field(default_factory=list)  # energy before each segment
    _watts: list[float] = field(default_factory=list)
    _energy: float = 0.0
    _next_step: float = 0.0
    _counter: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._next_step = self.rng.uniform(0, self.sensor.period_s)
        self._counter = self.rng.uniform(1e4, 1e6)
        self.t = 0.0
        # history before t = 0: idle
        self._append(0.0, self.idle_w())

    # ----- the power trace ------------------------------------------------------------
    def idle_w(self) -> float:
        return IDLE_W * (1 + self.idle_drift * self.t / 40.0)

    def _append(self, seconds: float, watts: float) -> None:
        self._starts.append(self.t)
        self._cum.append(self._energy)
        self._watts.append(watts)
        self._energy += seconds * watts
        self.t += seconds

    def energy_at(self, t: float) -> float:
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0:
            return (t - self._starts[0]) * self._watts[0]
        return self._cum[i] + (t - self._starts[i]) * self._watts[i]

    def idle(self, seconds: float) -> None:
        if seconds > 0:
            self._append(seconds, self.idle_w())

    # ----- the sensor -----------------------------------------------------------------
    def _advance_counter(self, until: float) -> None:
        s = self.sensor
        while self._next_step <= until:
            step = self._next_step
            sampled = self.energy_at(step) - self.energy_at(step - s.window_s)
            self._counter += sampled / s.window_s * s.period_s
            if s.jitter_accumulates:
                self._next_step = step + s.period_s + self.rng.uniform(-s.step_jitter_s,
                                                                       s.step_jitter_s)
            else:
                k = round((step - self._base_phase()) / s.period_s) + 1
                self._next_step = self._base_phase() + k * s.period_s + self.rng.uniform(
                    -s.step_jitter_s, s.step_jitter_s)

    def _base_phase(self) -> float:
        if not hasattr(self, "_phase0"):
            self._phase0 = self._next_step
        return self._phase0

    def read_counter(self) -> float:
        r = self.reads
        duration = r.read_s + (self.rng.uniform(0, r.slow_s) if self.rng.random() < r.slow_p
                               else 0.0)
        instant = self.t + self.rng.uniform(0, duration)
        self.idle(duration)
        self._advance_counter(instant)
        return math.floor(self._counter * 1000) / 1000

    # ----- the workload -----------------------------------------------------------------
    def run_call(self) -> None:
        joules = 0.0
        for seconds, watts in self.workload.call(self.calls, self.rng):
            self._append(seconds, watts)
            joules += seconds * watts
        self.calls += 1
        self.call_joules += joules

    # ----- plugin-facing ----------------------------------------------------------------
    def clock_ns(self) -> int:
        return int(self.t * 1e9)

    def sleep(self, seconds: float) -> None:
        self.idle(max(0.0, seconds))


class SimNvmlMeter:
    """The Meter protocol over a :class:`SimDevice` (an NVML-like stepped counter)."""

    name = "simnvml"
    estimated = False
    stepped_counter = True
    read_never_blocks = True

    def __init__(self, device: SimDevice) -> None:
        self.device = device
        self.update_period_s = device.sensor.period_s
        self.sensor_window_s = device.sensor.declared_window_s

    def domains(self) -> list[str]:
        return ["gpu:0"]

    def read(self) -> dict[str, float]:
        return {"gpu:0": self.device.read_counter()}

    def close(self) -> None:
        pass
