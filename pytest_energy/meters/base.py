"""The Meter protocol and the errors every meter speaks.

A meter is deliberately tiny: it reports *cumulative* joules per domain since an
arbitrary origin, and the measuring code takes differences. That keeps meters free of
any notion of windows, trials or budgets, so a user can plug in their own (a PDU, a
smart plug, a simulator) with a dozen lines of code.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Meter(Protocol):
    """What the plugin needs from an energy counter.

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


REQUIRED_METER_ATTRIBUTES = ("name", "estimated", "update_period_s", "domains", "read", "close")


def missing_meter_attributes(obj: object) -> list[str]:
    """Names of the protocol members ``obj`` lacks (empty when it is a usable Meter)."""
    return [attr for attr in REQUIRED_METER_ATTRIBUTES if not hasattr(obj, attr)]
