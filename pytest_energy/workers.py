"""pytest-xdist: a measured test whose worker crashed, or was interrupted, still gets its
entry on the controller.

A measured test's entry travels to the controller on its call report. Two things stop
that report from ever being made:

* **a crash** (segfault, ``os._exit``, the OOM killer): xdist makes a failed report
  for the test that was running (``pytest_handlecrashitem``), with no entry. The
  worker announced the test when its setup passed (``session.PENDING_ATTRIBUTE``, the
  declared budgets), so the controller records it as an error entry, "worker crashed";
* **Ctrl-C**: pytest makes no report for an interrupted test. The worker keeps the
  partial entry and sends it with its ``workeroutput`` (:data:`INTERRUPTED_KEY`) when
  its session finishes. Ctrl-C reaches the controller at the same moment, and the
  controller finishes its session (and its reports) before it reads that event, so it
  waits a little (:data:`WAIT_S`) for the workers that were running a measured test and
  reads their last events itself.

The session imports this module on every run, so it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterable
from typing import Any

INTERRUPTED_KEY = "pytest_energy_interrupted"  # workeroutput: interrupted tests' entries
WAIT_S = 5.0  # longest wait, after Ctrl-C, for the workers running a measured test
INTERRUPTED = "interrupted"

EventHandler = Callable[[str, dict[str, Any]], None]


def worker_id(node: object) -> str | None:
    """The xdist worker id (``gw0``) of a controller-side worker node, when known."""
    workerinput = getattr(node, "workerinput", None)
    return workerinput.get("workerid") if isinstance(workerinput, dict) else None


def crash_entry(pending: dict[str, Any], crash_report: Any) -> dict[str, Any]:
    """The JSON entry of a measured test whose worker crashed while running it."""
    cause = str(getattr(crash_report, "longrepr", "") or "the worker process died")
    return {**pending, "verdict": "not measured",
            "problem": f"worker crashed: {cause}; nothing it measured reached the controller"}


def interrupted_entries(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """The JSON form of a worker's interrupted (partial) entries, for its workeroutput."""
    return [entry.to_json() for entry in entries if str(entry.outcome) == INTERRUPTED]


def drain_worker_events(config: Any, handle: EventHandler, waiting: Callable[[], bool],
                        timeout_s: float | None = None) -> None:
    """Read the xdist controller's pending worker events until ``waiting()`` is false or
    ``timeout_s`` has passed; a second Ctrl-C stops the wait.

    The controller's event loop has stopped (Ctrl-C), so nobody else reads these
    events: the ones handled here are the ones that would otherwise be lost."""
    events = getattr(config.pluginmanager.getplugin("dsession"), "queue", None)
    if events is None:
        return
    deadline = time.monotonic() + (WAIT_S if timeout_s is None else timeout_s)
    with contextlib.suppress(KeyboardInterrupt):
        while waiting():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                name, kwargs = events.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            handle(name, kwargs)
