"""Reading a meter without letting a hung counter hang the test session.

A meter's ``read()`` may block forever (a wedged driver, a network PDU that stopped
answering). Reads therefore run on one daemon thread per meter, and the measuring
thread waits at most ``timeout_s``. A read that times out makes that test's result an
error and marks the meter as hung: every later test that needs it errors at once with
the same cause instead of waiting again. The stuck thread is a daemon, so it never
keeps the interpreter alive at exit. Meters whose read cannot block (the estimate
meter: a clock read) declare the ``read_never_blocks`` capability and skip the thread
hand-off, which costs a noticeable fraction of a millisecond per read on a busy machine.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

from pytest_energy.meters.base import Meter, MeterError, capabilities

DEFAULT_READ_TIMEOUT_S = 10.0


class ReadGuard:
    """Timed ``read()`` for one meter (see the module docstring)."""

    def __init__(self, meter: Meter, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> None:
        self.meter = meter
        self.timeout_s = timeout_s
        self.hung: str | None = None
        self._never_blocks = capabilities(meter).read_never_blocks
        self._requests: queue.SimpleQueue[queue.SimpleQueue[tuple[bool, Any]]] | None = None

    def _worker(self) -> None:
        assert self._requests is not None
        while True:
            reply = self._requests.get()
            try:
                reply.put((True, self.meter.read()))
            except BaseException as exc:  # handed back to the measuring thread
                reply.put((False, exc))

    def read(self) -> Any:
        """``meter.read()``, or :class:`MeterError` when it takes over ``timeout_s``."""
        if self.hung:
            raise MeterError(self.hung)
        if self.timeout_s <= 0 or self._never_blocks:
            return self.meter.read()
        if self._requests is None:
            self._requests = queue.SimpleQueue()
            threading.Thread(target=self._worker, name=f"pytest-energy-{self.meter.name}-read",
                             daemon=True).start()
        reply: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._requests.put(reply)
        try:
            ok, value = reply.get(timeout=self.timeout_s)
        except queue.Empty:
            self.hung = (
                f"meter {self.meter.name!r} did not answer read() within {self.timeout_s:g} s "
                "(hung counter or driver); it is not used again in this session "
                "(--energy-read-timeout sets the limit)"
            )
            raise MeterError(self.hung) from None
        if not ok:
            raise value
        return value


_GUARDS: weakref.WeakKeyDictionary[Any, ReadGuard] = weakref.WeakKeyDictionary()


def guard_for(meter: Meter, timeout_s: float) -> ReadGuard:
    """The session-wide guard of ``meter`` (its hung state outlives one test)."""
    try:
        guard = _GUARDS.get(meter)
    except TypeError:  # an object that cannot be weakly referenced: no memory across tests
        return ReadGuard(meter, timeout_s)
    if guard is None:
        guard = ReadGuard(meter, timeout_s)
        _GUARDS[meter] = guard
    guard.timeout_s = timeout_s
    return guard
