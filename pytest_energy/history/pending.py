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

from pytest_energy.history.location import StorageLocation, storage_location
from pytest_energy.history.storage import StorageError, db_path, open_storage

ExitHook = Callable[[Callable[[], None]], None]


def exit_hook(session: object) -> ExitHook | None:
    """``config.add_cleanup`` of a pytest session (its callbacks run when pytest exits,
    last); None for anything else (the gate used on its own: statuses are final)."""
    add_cleanup = getattr(getattr(session, "config", None), "add_cleanup", None)
    return add_cleanup if callable(add_cleanup) else None


def confirm_status(storage_dir: Path | StorageLocation, run_id: int, status: str) -> None:
    """Give a run saved ``incomplete`` its status, unless pytest is exiting through an
    exception. Never raises: a run left incomplete is the safe outcome."""
    if sys.exc_info()[0] is not None:  # unwinding: the session did not end normally
        return
    where = storage_location(storage_dir)
    try:
        if not _still_there(where):  # removed meanwhile: never create one here
            return
        storage = open_storage(where, create=True)
        if storage is not None:
            with storage:
                storage.set_status(run_id, status)
    except (StorageError, OSError):
        pass


def _still_there(where: StorageLocation) -> bool:
    """Whether the history the run was saved to still exists (opening it to write
    would create it again)."""
    if where.directory is not None:
        return db_path(where.directory).is_file()
    reader = open_storage(where, create=False)
    if reader is not None:
        reader.close()
    return reader is not None
