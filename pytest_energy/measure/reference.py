"""The reference workload: a fixed piece of CPU work measured once per gated run.

Why: on a shared runner whole runs move by 10-65% (clocks, neighbours, thermals), and
from the tests alone that drift cannot be told from a whole-suite regression. A
workload that no code change touches, measured in the same run with the same meter,
moves only with the machine, so the gate can judge each test relative to it
(``history.noise.judge_run(..., reference=...)``) and cancel the drift out of the run's
common shift.

It is measured at the end of the run, on the process that runs the gate (the xdist
controller), only when a gate option is on (see :mod:`pytest_energy.report.finish`),
through the plugin's own :class:`~pytest_energy.measure.driver.Measurer` with a short
fixed protocol, so two runs' values differ only by the machine. Measuring it never
fails a run: what goes wrong becomes the ``note`` of a value of ``None``.

Values of different :data:`WORKLOAD` versions must never be compared: bump the version
with any change of :func:`workload` (``tests/test_reference.py`` pins its source).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pytest_energy.measure.driver import Measurer
from pytest_energy.meters.base import MeterError
from pytest_energy.meters.guard import DEFAULT_READ_TIMEOUT_S
from pytest_energy.meters.loader import MeterPool
from pytest_energy.meters.locks import set_wait_timeout

if TYPE_CHECKING:  # the settings are read, never imported at run time
    from pytest_energy.options import SessionConfig

WORKLOAD = "lcg-int-20000/v1"
"""Name and version of :func:`workload`, stored with every value it produced."""
WORKLOAD_STEPS = 20_000  # iterations per call: ~2.7 ms on the 2-CPU development VM
DEVICE = "cpu"
MAX_TIME_S = 0.3  # the measuring budget: windows of ~40 ms with the estimate meter
TRIALS = 5  # the plugin's default, fixed so --energy-trials never changes the protocol
WARMUP_CALLS = 1


def workload() -> int:
    """A fixed run of integer arithmetic (a linear congruential generator): pure Python,
    deterministic, no allocation that grows, no I/O, nothing any code under test
    touches. Returns the final value so the work cannot be skipped."""
    value = 1
    for step in range(WORKLOAD_STEPS):
        value = (value * 1_103_515_245 + step) % 2_147_483_648
    return value


class PoolOwner(Protocol):
    """What :func:`session_pool` needs of the session (an ``EnergySession``), named
    here so this module never imports the session module above it."""

    config: SessionConfig
    pool: MeterPool | None
    cleanups: list[Callable[[], object]]


def session_pool(session: PoolOwner) -> MeterPool:
    """The session's meters, created on first use: by the first measured test, or by
    the reference workload on a process that measured nothing (the xdist controller).
    Creating it applies ``--energy-lock-timeout`` to this process's device locks."""
    if session.pool is None:
        config = session.config
        set_wait_timeout(config.lock_timeout)
        session.pool = MeterPool(config.meter, watts_per_core=config.estimate_watts_per_core,
                                 require_hardware=config.require_hardware)
    return session.pool


def reference_dict(joules_per_call: float | None, meter: str | None, estimated: bool,
                   note: str | None) -> dict[str, Any]:
    """The reference as the gate stores it in the run's machine dict and the JSON
    report has it: ``joules_per_call`` is the median over trials of the workload's
    energy per call, in joules; ``meter`` is ``"<meter name> <domains>"`` (``None``
    without a meter); ``note`` says why ``joules_per_call`` is ``None``."""
    return {"joules_per_call": joules_per_call, "meter": meter, "estimated": estimated,
            "workload": WORKLOAD, "note": note}


def measure_reference(pool: MeterPool, *,
                      read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> dict[str, Any]:
    """Measure :func:`workload` with the pool's meter for device ``cpu`` (a meter read
    that takes longer than ``read_timeout_s`` is a failure); never raises: a failing
    reference is a note, and the gate then judges without it."""
    try:
        return _measure(pool, read_timeout_s)
    except Exception as exc:  # a custom meter may fail in any way
        return reference_dict(None, None, False, "the reference workload could not be "
                              f"measured: {type(exc).__name__}: {exc}")


def _measure(pool: MeterPool, read_timeout_s: float) -> dict[str, Any]:
    choice = pool.choose(DEVICE)
    if choice.meter is None:
        why = choice.skip_reason or choice.error or "no meter"
        return reference_dict(None, None, False, f"no CPU meter for the reference: {why}")
    # No settle stage and no idle baseline: each could take a second, and values are
    # only compared with values of the same protocol on the same machine.
    measurer = Measurer(choice.meter, device=DEVICE, meter_note=choice.note,
                        read_timeout_s=read_timeout_s, settle_max_s=0.0)
    result = measurer.new_result()
    label = f"{result.meter} {','.join(result.domains)}".strip()
    try:
        measurer.run(workload, warmup=WARMUP_CALLS, rounds=None, trials=TRIALS,
                     max_time_s=MAX_TIME_S, result=result)
    except MeterError as exc:
        return reference_dict(None, label, result.estimated,
                              f"the meter failed while measuring the reference: {exc}")
    joules = result.joules_per_call
    if joules is None or not math.isfinite(joules) or joules <= 0:
        why = result.invalid_reason or f"no usable value ({joules!r} J/call)"
        return reference_dict(None, label, result.estimated, why)
    return reference_dict(joules, label, result.estimated, None)
