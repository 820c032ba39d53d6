"""A saved run gets its status only once pytest has exited normally.

The gate saves at session finish, before pytest prints its summary. A Ctrl-C landing
after the save (in the terminal summary, in another plugin's session finish) ends the
session interrupted, yet the run would stand in the history as ``passed``, and the next
compare would take it as its baseline. So within a pytest session the run is saved
``incomplete`` and given its status by pytest's last cleanup, and only when no
exception (a KeyboardInterrupt) is propagating through it. A run interrupted, killed
or crashed after its save stays ``incomplete``: never a baseline, never learned from.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pytest_energy.history.storage import StorageError, db_path, open_storage

ExitHook = Callable[[Callable[[], None]], None]


def exit_hook(session: object) -> ExitHook | None:
    """``config.add_cleanup`` of a pytest session (its callbacks run when pytest exits,
    last); None for anything else (the gate used on its own: statuses are final)."""
    add_cleanup = getattr(getattr(session, "config", None), "add_cleanup", None)
    return add_cleanup if callable(add_cleanup) else None


def confirm_status(storage_dir: Path, run_id: int, status: str) -> None:
    """Give a run saved ``incomplete`` its status, unless pytest is exiting through an
    exception. Never raises: a run left incomplete is the safe outcome."""
    if sys.exc_info()[0] is not None:  # unwinding: the session did not end normally
        return
    if not db_path(storage_dir).is_file():  # removed meanwhile: never create one here
        return
    try:
        storage = open_storage(storage_dir, create=True)
        if storage is not None:
            with storage:
                storage.set_status(run_id, status)
    except (StorageError, OSError):
        pass
