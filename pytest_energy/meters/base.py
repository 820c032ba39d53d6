"""The Meter protocol and the errors every meter speaks.

A meter is deliberately tiny: it reports *cumulative* joules per domain since an
arbitrary origin, and the measuring code takes differences. That keeps meters free of
any notion of windows, trials or budgets, so a user can plug in their own (a PDU, a
smart plug, a simulator) with a dozen lines of code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Meter(Protocol):
    """What the plugin needs from an energy counter.

    These six members are all a meter must have. Anything more a meter knows (how to
    wait for its device, which devices it occupies, its sensor's timing, a hardware
    fingerprint...) it declares through optional members, listed with what the plugin
    does with each in :class:`MeterCapabilities` and read only through
    :func:`capabilities`; ``docs/meters.md`` shows how to write one.

    Attributes:
        name: short label shown in the header and the report, e.g. ``"nvml"``.
        estimated: ``True`` when the joules are modelled rather than read from a
            hardware counter; every number from such a meter is labelled "est.".
        update_period_s: how often the underlying counter changes value; ``0.0`` means
            continuous. The measurement plan makes each window span many updates.
    """

    name: str
    estimated: bool
    update_period_s: float

    def domains(self) -> list[str]:
        """Names of the measured domains, e.g. ``["gpu:0"]`` or ``["package:0", "dram:0"]``."""
        ...

    def read(self) -> dict[str, float]:
        """Cumulative joules per domain since an arbitrary (but fixed) origin."""
        ...

    def close(self) -> None:
        """Release handles and stop any background sampler. Must be idempotent."""
        ...


class MeterUnavailable(Exception):
    """A meter cannot be used on this machine; the message says why and what to do.

    Raised by meter constructors (never by ``read``), so that ``auto`` selection can
    fall back to the next meter and tell the user why the better one was skipped.
    """


class MeterError(Exception):
    """A meter failed while measuring (read error, counter reset, NaN...).

    The test whose window it spoils gets an error naming the cause; the plugin never
    turns a failed read into a number.
    """


MAX_PLAUSIBLE_WATTS = 100_000.0
"""Default ceiling on a window's mean power: more means the counter jumped (a reset, a
wrap, a bad read), and the window is refused rather than reported. A meter whose
device can draw more declares ``max_plausible_watts``; ``None`` disables the check."""


@dataclass(frozen=True)
class MeterCapabilities:
    """The optional members a meter may declare, read in this one place.

    Every member is optional; a meter that declares none is measured with plain
    windows, a device lock named after the meter, no conditions and the default ceiling.

    Attributes:
        sync: ``sync()`` waits until work queued on the device has finished, called
            right before each read so a window holds the work of its calls (GPUs).
        describe: ``describe() -> dict`` fingerprints the hardware for the JSON
            report and the history (model, driver, power limit...).
        conditions: ``conditions() -> list[str]`` says what else uses the device right
            before measuring ("contaminated: ...", "shared: ...").
        lock_keys: ``lock_keys() -> list[str]`` names the devices a window occupies,
            so two pytest processes never measure the same device at once.
        power_limits_w: ``power_limits_w() -> {domain: W or None}`` the enforced board
            power limit, for the under-utilisation hint.
        stepped_counter: ``True`` when the counter changes in steps of
            ``update_period_s`` (NVML's total energy): the phase-aligned plan.
        sensor_window_s: the sensor's averaging window within each step period, when
            published for the device (``None``: unknown, the plan assumes the worst).
        max_plausible_watts: the ceiling above (``None`` disables the check).
        read_never_blocks: ``True`` when ``read()`` cannot hang (a clock, a model), so
            reads skip the timeout thread.
    """

    sync: Callable[[], Any] | None = None
    describe: Callable[[], dict[str, Any]] | None = None
    conditions: Callable[[], list[str]] | None = None
    lock_keys: Callable[[], list[str]] | None = None
    power_limits_w: Callable[[], dict[str, float | None]] | None = None
    stepped_counter: bool = False
    sensor_window_s: float | None = None
    max_plausible_watts: float | None = MAX_PLAUSIBLE_WATTS
    read_never_blocks: bool = False


def _method(meter: object, name: str) -> Callable[..., Any] | None:
    member = getattr(meter, name, None)
    return member if callable(member) else None


def capabilities(meter: object) -> MeterCapabilities:
    """The optional members ``meter`` declares (see :class:`MeterCapabilities`)."""
    window = getattr(meter, "sensor_window_s", None)
    return MeterCapabilities(
        sync=_method(meter, "sync"),
        describe=_method(meter, "describe"),
        conditions=_method(meter, "conditions"),
        lock_keys=_method(meter, "lock_keys"),
        power_limits_w=_method(meter, "power_limits_w"),
        stepped_counter=bool(getattr(meter, "stepped_counter", False)),
        sensor_window_s=float(window) if isinstance(window, float) and window > 0 else None,
        max_plausible_watts=getattr(meter, "max_plausible_watts", MAX_PLAUSIBLE_WATTS),
        read_never_blocks=bool(getattr(meter, "read_never_blocks", False)),
    )


REQUIRED_METER_ATTRIBUTES = ("name", "estimated", "update_period_s", "domains", "read", "close")


def missing_meter_attributes(obj: object) -> list[str]:
    """Names of the protocol members ``obj`` lacks (empty when it is a usable Meter)."""
    return [attr for attr in REQUIRED_METER_ATTRIBUTES if not hasattr(obj, attr)]


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, which is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def _required_attribute_problems(meter: object) -> list[str]:
    """What is wrong with ``name``, ``estimated`` and ``update_period_s``."""
    problems = []
    name = getattr(meter, "name", None)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"name={name!r}: expected a non-empty string")
    estimated = getattr(meter, "estimated", None)
    if not isinstance(estimated, bool):
        problems.append(f"estimated={estimated!r}: expected True or False")
    period: Any = getattr(meter, "update_period_s", None)
    if not (_is_number(period) and period >= 0):
        problems.append(f"update_period_s={period!r} ({type(period).__name__}): expected a "
                        "number of seconds >= 0, e.g. 0.1 (0.0: a continuous counter)")
    return problems


def _optional_attribute_problems(meter: object) -> list[str]:
    """What is wrong with the optional plain attributes (see :class:`MeterCapabilities`)."""
    problems = []
    for attr in ("sensor_window_s", "max_plausible_watts"):
        value = getattr(meter, attr, None)
        if value is not None and not (_is_number(value) and value > 0):
            problems.append(f"{attr}={value!r} ({type(value).__name__}): expected a number > 0 "
                            "or None")
    for attr in ("stepped_counter", "read_never_blocks"):
        value = getattr(meter, attr, False)
        if not isinstance(value, bool):
            problems.append(f"{attr}={value!r}: expected True or False")
    return problems


def _domain_problems(meter: object) -> list[str]:
    """What is wrong with ``meter.domains()``: it must return a non-empty list of names."""
    try:
        domains = meter.domains()  # type: ignore[attr-defined]
    except Exception as exc:  # a broken meter is reported, never propagated
        return [f"domains() raised {type(exc).__name__}: {exc}"]
    if not isinstance(domains, (list, tuple)) or not domains or not all(
            isinstance(d, str) and d for d in domains):
        return [f"domains() returned {domains!r}: expected a non-empty list of domain names, "
                'e.g. ["gpu:0"]']
    return []


def meter_problems(meter: object) -> list[str]:
    """Why a loaded meter cannot be used (empty when it can).

    Checked once, when a custom meter is loaded, so a meter declaring
    ``update_period_s = "0.1"`` or a ``domains()`` that raises makes every test that
    needs it error with one message naming the meter, instead of a raw ``TypeError``
    in each test or an INTERNALERROR in the header."""
    return (_required_attribute_problems(meter) + _optional_attribute_problems(meter)
            + _domain_problems(meter))
