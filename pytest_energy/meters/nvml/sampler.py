"""Energy from sampled power, for GPUs that have no total-energy counter.

Pre-Volta GPUs and some virtual GPUs answer NotSupported for the energy counter. For
those the meter runs one background thread that polls power every
:data:`SAMPLE_PERIOD_S` and integrates it (trapezoids over the sample timestamps) into
cumulative joules:

* preferred: the instant-power field value (``NVML_FI_DEV_POWER_INSTANT``), in mW with
  the timestamp at which NVML took it (a repeated timestamp carries no new information
  and is skipped);
* else ``nvmlDeviceGetPowerUsage`` (mW, timed by our own clock). NVML documents it as
  instantaneous on GA100 and older architectures but as a 1 s average on newer ones,
  useless for short windows: that is why the field value is preferred, and why that
  source is labelled "sampled average power".

The period is at least twice as fast as any update rate reported for NVML power
sensors, so no sensor update is missed, at the cost of cheap NVML calls. The thread
always sleeps between samples, even when it falls behind (a poller that never sleeps
is a known bug in another tool), is a daemon, and is stopped by the meter's
``close()`` or a finaliser. A failed sample is kept and raised as :class:`MeterError`
by the next ``read()``: it never becomes 0 J.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from pytest_energy.meters.base import MeterError
from pytest_energy.meters.nvml.bindings import field_number, instant_power_field, sample_reason

SAMPLE_PERIOD_S = 0.01
"""Power sampling period for GPUs without an energy counter (see the module docstring)."""

SOURCE_COUNTER = "energy counter"
SOURCE_INSTANT = "sampled instant power"
SOURCE_AVERAGE = "sampled average power"

# Never sleep less than this between samples, even when behind schedule: no busy loop.
_MIN_SLEEP_S = 0.001
# A field-value timestamp step this much longer than our own clock's step is a jump of
# the wall clock (NTP) the timestamps are taken from, not elapsed time.
_CLOCK_JUMP_S = 0.5


@dataclass
class PowerTrack:
    """Integration state of one GPU whose energy is sampled from its power reading.

    ``api`` is ``"field"`` (instant power field value, timestamped by NVML) or
    ``"usage"`` (``nvmlDeviceGetPowerUsage``, timed by our clock). The integral is a
    chain of trapezoids; ``last_*`` is the chain's end, ``None`` after a reset (an
    error), so a spoiled interval is never interpolated across.
    """

    domain: str
    label: str
    handle: Any
    api: str
    source: str
    joules: float = 0.0
    samples: int = 0
    last_watts: float | None = None
    last_local_s: float = 0.0
    last_stamp_us: int | None = None
    error: str | None = None

    def reset_chain(self) -> None:
        self.last_watts = None
        self.last_stamp_us = None

    def add(self, watts: float, local_s: float, stamp_us: int | None) -> None:
        """Extend the integral to a new sample (see :class:`PowerSampler`)."""
        if not math.isfinite(watts) or watts < 0:
            raise ValueError(f"implausible power reading {watts!r} W")
        if stamp_us is not None and stamp_us == self.last_stamp_us:
            return  # the same sensor sample again: no new information
        if self.last_watts is not None:
            dt = self._interval_s(local_s, stamp_us)
            if dt > 0:
                self.joules += 0.5 * (watts + self.last_watts) * dt
        self.last_watts, self.last_local_s, self.last_stamp_us = watts, local_s, stamp_us
        self.samples += 1

    def _interval_s(self, local_s: float, stamp_us: int | None) -> float:
        """Time since the previous sample: NVML's timestamps when both samples carry
        one and they agree with our clock, else our clock."""
        dt = local_s - self.last_local_s
        if stamp_us is not None and self.last_stamp_us is not None:
            stamped = (stamp_us - self.last_stamp_us) / 1e6
            if 0 < stamped <= dt + _CLOCK_JUMP_S:
                return stamped
        return dt


class PowerSampler:
    """Background thread that polls the power of GPUs without an energy counter.

    Holds no reference to the meter, so a meter dropped without ``close()`` is still
    collected (a finaliser then stops this thread). ``read()`` and the thread share one
    lock; the thread checks the stop flag under it, so after :meth:`stop` returns True
    no NVML call is made any more and NVML can be shut down safely.
    """

    def __init__(self, nvml: Any, tracks: list[PowerTrack], period_s: float) -> None:
        if not period_s > 0:
            raise ValueError(f"sampling period must be > 0 s, got {period_s!r}")
        self._nvml = nvml
        self.tracks = tracks
        self.period_s = period_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pid = os.getpid()
        self.crashed: str | None = None
        self.thread: threading.Thread | None = None

    def _sample(self, track: PowerTrack) -> None:
        """Take one sample of ``track`` and extend its integral; raises on failure."""
        nvml = self._nvml
        before = time.perf_counter()
        if track.api == "field":
            field_value = instant_power_field(nvml, track.handle)
            local_s = 0.5 * (before + time.perf_counter())
            stamp = int(field_value.timestamp)
            track.add(field_number(nvml, field_value) / 1000.0, local_s,
                      stamp if stamp > 0 else None)
        else:
            milliwatts = nvml.nvmlDeviceGetPowerUsage(track.handle)
            track.add(float(milliwatts) / 1000.0, 0.5 * (before + time.perf_counter()), None)

    def _refresh(self, track: PowerTrack) -> str | None:
        """Sample ``track`` now; the reason of a failure (restarting its chain), if any."""
        try:
            self._sample(track)
        except Exception as exc:
            track.reset_chain()
            return sample_reason(exc)
        return None

    def prime(self) -> None:
        """First sample of every track, before the thread starts (errors propagate)."""
        for track in self.tracks:
            self._sample(track)

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._run, name="pytest-energy-nvml-sampler", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        period = self.period_s
        due = time.perf_counter() + period
        try:
            while not self._stop.wait(max(due - time.perf_counter(), _MIN_SLEEP_S)):
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._sample_all()
                due += period
                now = time.perf_counter()
                if due < now:  # fell behind (a stalled call): skip, never catch up in a burst
                    due = now + period
        except BaseException as exc:  # a bug: make every later read fail with the cause
            self.crashed = f"{type(exc).__name__}: {exc}"

    def _sample_all(self) -> None:
        """One round of the thread; a failure is kept for the next ``read()``."""
        for track in self.tracks:
            reason = self._refresh(track)
            if reason is not None and track.error is None:  # keep the first cause
                track.error = reason

    def _check_running(self) -> None:
        """Raise when the thread cannot have sampled since the last read."""
        if self.crashed is not None:
            raise MeterError(f"NVML power sampler thread crashed: {self.crashed}")
        if self.thread is None or not self.thread.is_alive():
            raise MeterError("NVML power sampler thread is not running")

    def read(self) -> dict[str, float]:
        """Joules per sampled domain up to a fresh sample taken now.

        Raises:
            MeterError: the thread has died (a bug, or this process was forked after it
                started), or a sample failed since the last read. A failed track's
                integral restarts at the fresh sample, so only the spoiled window errors.
        """
        if os.getpid() != self._pid:  # checked first: a fork may have copied a held lock
            raise MeterError(
                "NVML power sampler thread is not running: this process was forked after "
                "the meter started, and threads do not survive a fork"
            )
        with self._lock:
            self._check_running()
            problems: list[str] = []
            for track in self.tracks:
                stored, track.error = track.error, None
                fresh = self._refresh(track)  # always: restarts a failed chain now
                pending = stored or fresh
                if pending is not None:
                    problems.append(f"{track.label}: {pending}")
            if problems:
                raise MeterError(
                    "NVML power sampling failed, the energy of this window is unknown: "
                    + "; ".join(problems)
                )
            return {track.domain: track.joules for track in self.tracks}

    def stop(self, timeout_s: float) -> bool:
        """Stop and join the thread; False if it is still inside an NVML call after
        ``timeout_s`` (it is a daemon, so it cannot keep the interpreter alive)."""
        self._stop.set()
        thread = self.thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout_s)
        return not thread.is_alive()


def stop_sampler(sampler: PowerSampler) -> None:
    """Finaliser of a meter that was never closed (or at interpreter exit)."""
    sampler.stop(0.5)
