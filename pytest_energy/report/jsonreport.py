"""The JSON report (``--energy-json``), written atomically.

Schema version 1::

    {"version": 1, "plugin": {...}, "created": ISO-8601, "meter": {...},
     "machine": {...}, "tests": [entry, ...]}

Each test entry has at least ``nodeid``, ``outcome`` (passed, failed, error, skipped,
xfailed, xpassed), ``joules_per_call`` (number or null, never a fake 0),
``joules_per_item``, ``latency_ms`` ({"median", "p95", ...}), ``calls``,
``estimated``, ``meter``, ``budget`` ({"joules", "latency_ms", ...}), ``rating``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_energy._version import __version__
from pytest_energy.entry import Entry

JSON_REPORT_VERSION = 1


def machine_info() -> dict[str, Any]:
    """Stable facts about the machine (no clocks or temperatures: they are noise)."""
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


def build_report(entries: Sequence[Entry], meter: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": JSON_REPORT_VERSION,
        "plugin": {"name": "pytest-energy", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "meter": meter,
        "machine": machine_info(),
        "tests": [entry.to_json() for entry in entries],
    }


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file in the same directory + rename.

    Readers never see a half-written file, and an existing file is left intact when
    writing fails. Missing parent directories are created (like --junitxml does).
    Raises OSError with the path on failure.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=str(target.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


def write_report(path: str, report: dict[str, Any]) -> Path:
    # No indent: json's C encoder only runs without one (10x faster on big suites).
    return atomic_write_text(path, json.dumps(report, allow_nan=False) + "\n")
