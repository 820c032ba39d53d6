"""The SQLite edge of the history: errors that teach, all-or-nothing writes, JSON columns.

Every problem becomes a :class:`StorageError` naming the file and the fix, so the gate
can report it and the CLI can exit 3 instead of printing a traceback; a damaged file
is reported as such and left untouched, never "repaired" by recreating it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 30.0

# OperationalError texts that mean the file itself is damaged (others: permissions, disk).
_DAMAGE_WORDS = ("malformed", "not a database", "encrypted", "no such table", "no such column",
                 "corrupt")


class StorageError(Exception):
    """The history cannot be read or written; the message names the file and the fix."""


def corrupt_message(path: Path, doing: str, exc: Exception) -> str:
    """The message for an unreadable file: it was left alone, and how to start afresh."""
    return (f"{path}: {doing} failed: the history database is unreadable ({exc}). The file "
            "was left untouched; move it away (or restore it from a backup) and the next "
            "--energy-save / --energy-autosave starts a new history, or point "
            "--energy-storage at another directory")


def _operational_message(path: Path, doing: str, exc: sqlite3.OperationalError) -> str:
    """Locked, damaged, or anything else (permissions, a full disk)."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return (f"{path}: {doing} failed: the database stayed locked by another process for "
                f"{BUSY_TIMEOUT_S:g} s ({exc}); retry when it finishes")
    if any(word in text for word in _DAMAGE_WORDS):
        return corrupt_message(path, doing, exc)
    return (f"{path}: {doing} failed: {exc}; check the permissions and free space of "
            f"{path.parent}, or point --energy-storage elsewhere")


@contextlib.contextmanager
def sqlite_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn sqlite errors into a StorageError that names the file and the fix."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StorageError(_operational_message(path, doing, exc)) from None
    except sqlite3.DatabaseError as exc:
        raise StorageError(corrupt_message(path, doing, exc)) from None


@contextlib.contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (or interrupt), so a
    failed save or schema change never leaves half a run in the history."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def dumps(value: Any) -> str:
    """JSON for storage: NaN/inf become null (JSON has no NaN), unknown objects str()."""
    return json.dumps(json_safe(value), sort_keys=True, default=str, allow_nan=False)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinity as null (JSON has neither; PostgreSQL's ``json``
    refuses them), keys as strings, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_object(text: str) -> dict[str, Any]:
    """A JSON object column of a run (machine, meter); ``{}`` when it is not one."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def float_or_none(value: Any) -> float | None:
    """A number for a query column; None for anything else, NaN included."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None
