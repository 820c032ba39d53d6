"""A deterministic simulated GPU power sensor + energy counter, in simulated time.

Used by ``bench/accuracy.py`` and the tests to study how a measuring plan aliases
against a part-time power sensor. Nothing sleeps for real: the clock is simulated.

Model
-----
* **Workload.** The plan issues *calls*; every call has the same power profile
  (:class:`CallProfile`, piecewise-constant watts over the call's duration). Between
  calls (pauses, counter polling, counter reads) the device draws ``idle_w``. Before the
  simulation starts (t < 0) it is idle too. Ground truth is the integral of that power
  trace (:meth:`SensorSim.true_energy`); the true energy of one call is
  :attr:`CallProfile.energy_j`.
* **Sensor.** Every ``period_s`` (at ``phase + k * period_s``, the phase random per
  device) the sensor averages the power over the last ``window_s`` and the cumulative
  energy counter increases by ``average * period_s``: a part-time sensor extrapolates
  the sampled fraction to the whole period. With ``window_s == period_s`` (full
  coverage) the counter is exact at every step. The counter reads in whole millijoules,
  like NVML's ``nvmlDeviceGetTotalEnergyConsumption``, from a random origin.
* **Reads.** A counter read returns the value at the instant it starts (every step at
  or before that instant is included) and takes ``read_cost_s`` of idle time.

Batching
--------
One :class:`SensorSim` holds ``devices`` independent simulated devices (each with its
own sensor phase and counter origin) driven through the *same sequence of operations*
with per-device arguments, so a plan can be evaluated over hundreds of device phases
with numpy. Every method takes a scalar or a ``(devices,)`` array and returns arrays.
With ``devices=1`` it is an ordinary scalar device; :meth:`SensorSim.meter` and
:meth:`SensorSim.clock` give a Meter-protocol view of device ``i`` for code written
against the plugin's API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Sensor:
    """A part-time power sensor feeding a cumulative energy counter."""

    name: str
    period_s: float  # the counter steps every period_s
    window_s: float  # ... by average power over the last window_s * period_s
    # the sensor window pytest_energy's NVML meter declares for GPUs with this sensor
    # (``sensor_window_s``: published for A100/H100 only); None: unknown to the plugin
    declared_window_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.window_s <= self.period_s:
            raise ValueError("need 0 < window_s <= period_s")

    @property
    def full_coverage(self) -> bool:
        return self.window_s >= self.period_s


SENSORS: dict[str, Sensor] = {
    "a100": Sensor("A100/H100-like 25/100 ms", 0.100, 0.025, declared_window_s=0.025),
    "volta": Sensor("Volta-like 10/20 ms", 0.020, 0.010),
    "turing": Sensor("Turing-like 100/100 ms", 0.100, 0.100),
}


@dataclass(frozen=True)
class CallProfile:
    """The power of one call over its duration: ``segments`` of (seconds, watts)."""

    segments: tuple[tuple[float, float], ...]
    name: str = "call"

    def __post_init__(self) -> None:
        if not self.segments or any(d < 0 or w < 0 for d, w in self.segments):
            raise ValueError("segments must be non-empty (duration >= 0, watts >= 0)")
        if self.duration_s <= 0:
            raise ValueError("a call must last > 0 s")

    @property
    def duration_s(self) -> float:
        return float(sum(d for d, _ in self.segments))

    @property
    def energy_j(self) -> float:
        """Ground truth: the energy of one call."""
        return float(sum(d * w for d, w in self.segments))

    def _knots(self) -> tuple[Array, Array]:
        xs = np.concatenate([[0.0], np.cumsum([d for d, _ in self.segments])])
        es = np.concatenate([[0.0], np.cumsum([d * w for d, w in self.segments])])
        return xs, es

    def cumulative(self, x: ArrayLike) -> Array:
        """Energy from the call's start to ``x`` seconds into it (x clipped to the call)."""
        xs, es = self._knots()
        return np.interp(np.clip(np.asarray(x, dtype=float), 0.0, xs[-1]), xs, es)

    @classmethod
    def from_function(cls, power: Callable[[float], float], duration_s: float,
                      resolution_s: float = 1e-4, name: str = "call") -> CallProfile:
        """Piecewise-constant approximation of ``power(t)`` (W, t in seconds into the
        call), sampled at the middle of every ``resolution_s`` step."""
        n = max(1, math.ceil(duration_s / resolution_s))
        step = duration_s / n
        return cls(tuple((step, float(power((i + 0.5) * step))) for i in range(n)), name)


def pulsed_call(duration_s: float, *, busy_w: float = 400.0, idle_w: float = 60.0,
                pulse_s: float = 0.050, duty: float = 0.2) -> CallProfile:
    """Structure below the sensor period: ``busy_w`` for the first ``duty`` of every
    ``pulse_s`` (10 ms busy + 40 ms idle by default), then ``idle_w``. A call shorter
    than ``pulse_s`` is one scaled pulse (busy 20% of the call, then idle); a longer
    one is a train of pulses (the last one cut if the duration is not a multiple)."""
    period = min(pulse_s, duration_s)
    segments: list[tuple[float, float]] = []
    t = 0.0
    while t < duration_s - 1e-15:
        busy = min(duty * period, duration_s - t)
        idle = min(period - busy, duration_s - t - busy)
        segments.append((busy, busy_w))
        if idle > 0:
            segments.append((idle, idle_w))
        t += busy + idle
    return CallProfile(tuple(segments), name=f"pulsed {duty:.0%} of {pulse_s * 1e3:g} ms")


def constant_call(duration_s: float, *, watts: float = 400.0) -> CallProfile:
    """A call drawing ``watts`` throughout."""
    return CallProfile(((duration_s, watts),), name="constant")


class SensorSim:
    """``devices`` simulated devices running the same operations (see module doc).

    Args:
        sensor: the sensor model.
        call: the power profile of every call.
        devices: how many independent devices (sensor phases) to simulate at once.
        seed: seeds the per-device sensor phase and counter origin.
        idle_w: power between calls.
        read_cost_s: idle time one counter read takes.
        resolution_j: the counter's resolution (NVML: 1 mJ); 0 for exact.
        phases: explicit sensor phases in [0, period) instead of random ones.
    """

    def __init__(self, sensor: Sensor, call: CallProfile, *, devices: int = 1, seed: int = 0,
                 idle_w: float = 60.0, read_cost_s: float = 20e-6, resolution_j: float = 1e-3,
                 phases: ArrayLike | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.sensor = sensor
        self.call = call
        self.devices = devices
        self.idle_w = float(idle_w)
        self.read_cost_s = float(read_cost_s)
        self.resolution_j = float(resolution_j)
        period = sensor.period_s
        if phases is None:
            self.phase: Array = rng.uniform(0.0, period, devices)
        else:
            self.phase = np.broadcast_to(np.asarray(phases, dtype=float), (devices,)).copy()
        self.origin_j: Array = rng.uniform(1e4, 1e6, devices)
        self._t: Array = np.zeros(devices)
        self._energy: Array = np.zeros(devices)  # true energy since t = 0
        # timeline: one entry per operation, identical kinds across devices
        self._starts: list[Array] = []
        self._ends: list[Array] = []
        self._e0: list[Array] = []
        self._is_call: list[bool] = []
        self._stacked: tuple[Array, Array, Array, NDArray[np.bool_]] | None = None
        # counter: steps already accumulated are those with index < _next_k
        self._next_k: NDArray[np.int64] = np.floor((0.0 - self.phase) / period).astype(np.int64) + 1
        self._acc: Array = np.zeros(devices)
        self.reads = 0
        self.calls: NDArray[np.int64] = np.zeros(devices, dtype=np.int64)
        self.ended_at: Array | None = None  # scratch for plans: when measuring ended

    # ----- helpers ------------------------------------------------------------------
    def _vec(self, value: ArrayLike) -> Array:
        return np.broadcast_to(np.asarray(value, dtype=float), (self.devices,)).astype(float)

    def _append(self, duration: Array, energy: Array, is_call: bool) -> None:
        if np.any(duration < 0) or not np.all(np.isfinite(duration)):
            raise ValueError("durations must be finite and >= 0")
        self._starts.append(self._t.copy())
        self._e0.append(self._energy.copy())
        self._t = self._t + duration
        self._energy = self._energy + energy
        self._ends.append(self._t.copy())
        self._is_call.append(is_call)
        self._stacked = None

    def true_energy(self, t: ArrayLike) -> Array:
        """Ground truth: joules drawn from simulated time 0 to ``t`` (any shape whose
        first axis is the device axis, or broadcastable to ``(devices,)``); t may not be
        later than :meth:`now`."""
        t_arr = np.asarray(t, dtype=float)
        if t_arr.ndim == 0:
            t_arr = np.broadcast_to(t_arr, (self.devices,))
        t2 = t_arr.reshape(self.devices, -1)
        out = self.idle_w * np.minimum(t2, 0.0)  # idle before the start
        if self._starts:
            if self._stacked is None:
                self._stacked = (np.stack(self._starts, axis=1), np.stack(self._ends, axis=1),
                                 np.stack(self._e0, axis=1), np.array(self._is_call))
            starts, ends, e0, is_call = self._stacked
            n_seg = starts.shape[1]
            # row-wise searchsorted: shift each device's times into its own range
            span = float(max(np.max(np.abs(starts)), np.max(np.abs(t2)), 1.0)) * 4.0
            rows = np.arange(self.devices)[:, None] * span
            flat = np.searchsorted((starts + rows).ravel(), (t2 + rows).ravel(), side="right")
            idx = flat.reshape(t2.shape) - np.arange(self.devices)[:, None] * n_seg - 1
            ok = idx >= 0
            j = np.clip(idx, 0, n_seg - 1)
            st = np.take_along_axis(starts, j, axis=1)
            en = np.take_along_axis(ends, j, axis=1)
            base = np.take_along_axis(e0, j, axis=1)
            x = np.clip(t2 - st, 0.0, en - st)
            dur = self.call.duration_s
            m = np.floor(x / dur)
            frac = np.clip(x - m * dur, 0.0, dur)
            call_e = base + m * self.call.energy_j + self.call.cumulative(frac)
            idle_e = base + self.idle_w * x
            inside = np.where(is_call[j], call_e, idle_e)
            out = np.where(ok, inside, out)
        return out.reshape(t_arr.shape)

    def _counter_at(self, t: Array) -> Array:
        period, window = self.sensor.period_s, self.sensor.window_s
        last_k = np.floor((t - self.phase) / period).astype(np.int64)
        count = last_k - self._next_k + 1
        cmax = int(count.max()) if count.size else 0
        if cmax > 0:
            ks = self._next_k[:, None] + np.arange(cmax)[None, :]
            mask = np.arange(cmax)[None, :] < count[:, None]
            steps = self.phase[:, None] + ks * period
            steps = np.where(mask, steps, np.minimum(steps, t[:, None]))
            sampled = self.true_energy(steps) - self.true_energy(steps - window)
            self._acc = self._acc + np.where(mask, sampled * (period / window), 0.0).sum(axis=1)
            self._next_k = np.maximum(self._next_k, last_k + 1)
        value = self.origin_j + self._acc
        if self.resolution_j > 0:
            value = np.floor(value / self.resolution_j) * self.resolution_j
        return value

    # ----- the device API -------------------------------------------------------------
    def now(self) -> Array:
        """Simulated time (s) of every device."""
        return self._t.copy()

    def sleep(self, seconds: ArrayLike) -> None:
        """Idle for ``seconds`` (per device)."""
        duration = self._vec(seconds)
        self._append(duration, duration * self.idle_w, is_call=False)

    def sleep_until(self, t: ArrayLike) -> None:
        """Idle until time ``t`` (no-op where already past it)."""
        self.sleep(np.maximum(self._vec(t) - self._t, 0.0))

    def run_calls(self, n: ArrayLike) -> None:
        """Run ``n`` calls back to back (per device, n >= 0)."""
        n_arr = np.broadcast_to(np.asarray(n), (self.devices,)).astype(np.int64)
        if np.any(n_arr < 0):
            raise ValueError("n must be >= 0")
        self.calls = self.calls + n_arr
        self._append(n_arr * self.call.duration_s, n_arr * self.call.energy_j, is_call=True)

    def run_call(self) -> None:
        """Run one call on every device."""
        self.run_calls(1)

    def run_calls_until(self, t: ArrayLike, minimum: ArrayLike = 0) -> NDArray[np.int64]:
        """Run calls back to back until the clock is at or past ``t`` (at least
        ``minimum`` calls), as a loop checking the clock after each call would; returns
        how many ran on each device."""
        remaining = self._vec(t) - self._t
        n = np.ceil(remaining / self.call.duration_s - 1e-9)
        n = np.maximum(np.maximum(n, 0), np.asarray(minimum)).astype(np.int64)
        self.run_calls(n)
        return n

    def read_counter_j(self) -> Array:
        """Cumulative counter (J) at the start of the read; the read takes read_cost_s."""
        value = self._counter_at(self._t)
        self.reads += 1
        if self.read_cost_s > 0:
            self.sleep(self.read_cost_s)
        return value

    def next_step_time(self) -> Array:
        """When the counter next steps (simulator knowledge, for checks only)."""
        period = self.sensor.period_s
        return self.phase + (np.floor((self._t - self.phase) / period) + 1) * period

    def wait_for_step(self) -> tuple[Array, Array]:
        """Fast equivalent of spinning on :meth:`read_counter_j` until the value changes
        (what :func:`pytest_energy.measure.grid.wait_for_step` does): returns the new value
        and the clock reading taken just after the read that saw it. Needs
        ``read_cost_s > 0``."""
        cost = self.read_cost_s
        if cost <= 0:
            raise ValueError("wait_for_step needs read_cost_s > 0")
        first = self._t.copy()
        self.read_counter_j()
        step = self.phase + (np.floor((first - self.phase) / self.sensor.period_s) + 1) * (
            self.sensor.period_s)
        j = np.maximum(np.ceil((step - first) / cost - 1e-9), 1.0)
        seen_at = first + j * cost
        self.sleep_until(seen_at)
        value = self.read_counter_j()
        self.reads += int(j.max()) - 1  # the polls in between (bookkeeping only)
        return value, self._t.copy()

    # ----- plugin-facing views of one device -------------------------------------------
    def clock(self, device: int = 0) -> Callable[[], float]:
        """A ``clock()`` returning device ``device``'s simulated seconds."""
        return lambda: float(self._t[device])

    def meter(self) -> SimMeter:
        """A Meter-protocol view of a single-device simulation."""
        if self.devices != 1:
            raise ValueError("meter() needs a single-device simulation")
        return SimMeter(self)


class SimMeter:
    """Meter protocol over a one-device :class:`SensorSim` (reads cost simulated time)."""

    name = "sim"
    estimated = False

    def __init__(self, sim: SensorSim) -> None:
        self.sim = sim
        self.update_period_s = sim.sensor.period_s

    def domains(self) -> list[str]:
        return ["gpu:0"]

    def read(self) -> dict[str, float]:
        return {"gpu:0": float(self.sim.read_counter_j()[0])}

    def close(self) -> None:
        pass
