"""The JSON report (``--energy-json``), written atomically.

Schema version 1::

    {"version": 1, "plugin": {...}, "created": ISO-8601, "meter": {...},
     "machine": {...}, "tests": [entry, ...]}

Each test entry has at least ``nodeid``, ``outcome`` (passed, failed, error, skipped,
xfailed, xpassed), ``joules_per_call`` (number or null, never a fake 0),
``joules_per_item``, ``latency_ms`` ({"median", "p95", ...}), ``calls``,
``estimated``, ``meter``, ``budget`` ({"joules", "latency_ms", ...}), ``rating``.

A value JSON cannot hold (NaN, a date or any other object a custom meter put in its
description) is written as null, named in a ``warnings`` list in the report and in a
warning, instead of losing the whole report.

Files are written atomically (:func:`atomic_writer`): a temp file next to the target,
renamed over it. They get the mode the user's umask gives (``0666 & ~umask``, like
``open()``). A target that is a symbolic link owned by the user is written through
(the link stays, the file it points to is replaced); one owned by another user is
refused, so a link planted in a shared directory cannot redirect the write.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import math
import os
import platform
import stat
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from pytest_energy._version import __version__
from pytest_energy.entry import Entry

JSON_REPORT_VERSION = 1
_TEMP_NAME_BYTES = 96  # of the target's name in the temp file's name (NAME_MAX is 255)
_LINK_HOPS = 40  # like the kernel's limit on symbolic links in a path
_NAMED = 5  # values named in the warning before "and N more"


class EnergyReportWarning(pytest.PytestWarning):
    """A value in the JSON report that JSON cannot hold was written as null."""


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


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it."""
    with contextlib.suppress(OSError, ValueError), \
            open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o22)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _write_target(path: Path) -> Path:
    """The file a write to ``path`` replaces: ``path``, or where the symbolic links it
    is (each owned by this user) lead. A link owned by someone else is refused."""
    for _ in range(_LINK_HOPS):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return path
        if not stat.S_ISLNK(info.st_mode):
            return path
        uid = os.geteuid() if hasattr(os, "geteuid") else info.st_uid  # no owners: Windows
        if info.st_uid != uid:
            raise PermissionError(errno.EPERM, "refusing to write through a symbolic link "
                                  f"owned by another user (uid {info.st_uid})", str(path))
        path = path.parent / os.readlink(path)
    raise OSError(errno.ELOOP, "too many levels of symbolic links", str(path))


def _temp_prefix(name: str) -> str:
    """``.NAME.`` with NAME cut so that the temp file's name stays within NAME_MAX."""
    while len(os.fsencode(name)) > _TEMP_NAME_BYTES:
        name = name[:-1]
    return f".{name}."


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, binary: bool = False) -> Iterator[IO[Any]]:
    """A handle (text, UTF-8; or ``binary``) whose content replaces ``path`` when the
    block ends without error.

    Written to a temp file in the same directory, synced, then renamed: readers never
    see a half-written file, and an existing file is left intact when writing fails.
    Missing parent directories are created (like --junitxml does). Mode and symbolic
    links: see the module doc. Raises OSError with the path on failure.
    """
    target = _write_target(Path(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=".tmp",
                                    dir=str(target.parent))
    try:
        with synced_file(fd, binary=binary) as handle:
            yield handle
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def synced_file(fd: int, *, binary: bool = False) -> Iterator[IO[Any]]:
    """``fd`` as a file (text, UTF-8; or ``binary``) with the mode the user's umask
    gives (mkstemp makes 0600 whatever the umask), synced to disk and closed when the
    block ends: what every file pytest-energy writes goes through."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~_umask())
    with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def create_new_file(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, only where nothing (a link included, never
    followed) has that name: FileExistsError otherwise."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with synced_file(os.open(path, flags, 0o666)) as handle:
        handle.write(text)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`); returns
    ``path`` as given (a symbolic link's target is what changed)."""
    with atomic_writer(path) as handle:
        handle.write(text)
    return Path(path)


def json_safe(value: Any, where: str = "") -> tuple[Any, list[str]]:
    """``value`` with every part JSON cannot hold replaced by None, and where each was
    (``meter.used.custom.calibrated: datetime.date``)."""
    problems: list[str] = []
    return _safe(value, where, problems), problems


def _safe(value: Any, where: str, problems: list[str]) -> Any:
    if value is None or isinstance(value, (str, int)):  # bool is an int; str enums too
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, Mapping):
        return {_safe_key(key, where, problems): _safe(item, f"{where}.{key}".lstrip("."),
                                                       problems)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(item, f"{where}[{index}]", problems) for index, item in enumerate(value)]
    problems.append(f"{where or 'value'}: {_what(value)}")
    return None


def _what(value: Any) -> str:
    """A value JSON cannot hold, for a message: ``nan``, or its type."""
    if isinstance(value, float):
        return repr(value)
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def _safe_key(key: Any, where: str, problems: list[str]) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (int, float)):  # what json.dumps turns into text
        return json.dumps(key)
    problems.append(f"{where or 'value'}: a key of type {type(key).__qualname__}")
    return str(key)


def report_text(report: dict[str, Any]) -> tuple[str, list[str]]:
    """The report as one line of JSON, and what had to be written as null (see module
    doc); such a report gets a ``warnings`` list naming each replaced value."""
    try:
        # No indent: json's C encoder only runs without one (10x faster on big suites).
        return json.dumps(report, allow_nan=False) + "\n", []
    except (ValueError, TypeError):
        pass
    safe, problems = json_safe(report)
    shown = "; ".join(problems[:_NAMED])
    more = f" and {len(problems) - _NAMED} more" if len(problems) > _NAMED else ""
    message = f"not JSON, written as null: {shown}{more}"
    safe["warnings"] = [*safe.get("warnings", []), message]
    return json.dumps(safe, allow_nan=False) + "\n", [message]


def write_report(path: str, report: dict[str, Any]) -> Path:
    """Write the JSON report; a value JSON cannot hold becomes null and a warning
    (never a lost report). Raises OSError when the file cannot be written."""
    text, problems = report_text(report)
    written = atomic_write_text(path, text)
    for problem in problems:
        # warnings turned into errors (-W error): the report is written all the same
        with contextlib.suppress(Warning):
            warnings.warn(EnergyReportWarning(f"energy JSON report {path}: {problem}"),
                          stacklevel=2)
    return written
