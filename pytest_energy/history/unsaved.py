"""Nothing measured is lost when the history cannot be reached.

When the gate was asked to save a run and could not (server down, wrong credentials,
an old or newer schema, a locked or unreadable SQLite file), the session already ends
with exit 3 and the gate's message. The results are kept as a JSON report: at
``--energy-json`` when given, else at ``.energy-unsaved/<time>-<pid>.json`` under the
rootdir; the report carries the run's facts (see :mod:`.runrecord`), so
``pytest-energy push FILE`` saves exactly that run later.

The default file is written atomically with the user's umask (a temp file, then a hard
link to a name that must not exist yet: a link or file already there is never written
through or replaced), in a directory that must be a real directory (not a symbolic
link), with a ``.gitignore`` so the files stay out of commits.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import shlex
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_energy.history.location import StorageLocation
from pytest_energy.report.jsonreport import create_new_file, synced_file

UNSAVED_DIR = ".energy-unsaved"
GITIGNORE = "# created by pytest-energy: results not yet saved to the history\n*\n"
_ATTEMPTS = 100  # names tried when <time>-<pid>.json is taken (a second run, same second)


def save_failed(saving: bool, compare: Mapping[str, Any] | None) -> bool:
    """The gate was asked to save and neither saved the run nor decided against saving
    it (an incomplete session is never saved, so there is nothing to keep for later)."""
    return bool(saving and compare is not None and compare.get("saved") is None
                and compare.get("not_saved") is None)


def push_hint(path: Path | str, storage: str) -> str:
    """The message that names the kept file and the command that saves it; ``storage``
    is the history as ``--storage`` takes it (a URL without its password: libpq reads
    it from ``PGPASSWORD`` or ``~/.pgpass``)."""
    command = f"pytest-energy --storage {shlex.quote(storage)} push {shlex.quote(str(path))}"
    return (f"the results are kept in {path}: `{command}` saves them to the history once "
            "it can be reached")


def storage_argument(location: StorageLocation) -> str:
    """A history as ``pytest-energy --storage`` takes it, never with a password."""
    return str(location.directory) if location.directory is not None else location.display


def default_path(rootdir: Path, when: _dt.datetime | None = None, pid: int | None = None,
                 attempt: int = 0) -> Path:
    """``<rootdir>/.energy-unsaved/<UTC time>-<pid>[-<attempt>].json``."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    suffix = f"-{attempt}" if attempt else ""
    return (rootdir / UNSAVED_DIR /
            f"{when:%Y%m%dT%H%M%SZ}-{os.getpid() if pid is None else pid}{suffix}.json")


def write_unsaved(rootdir: Path, text: str) -> Path:
    """Write ``text`` to a new file under ``rootdir/.energy-unsaved``; return its path.
    Raises OSError (with the path) when it cannot."""
    directory = rootdir / UNSAVED_DIR
    _real_directory(directory)
    when = _dt.datetime.now(_dt.timezone.utc)
    for attempt in range(_ATTEMPTS):
        target = default_path(rootdir, when, attempt=attempt)
        if write_new(target, text):
            return target
    raise OSError(errno.EEXIST, "no free file name", str(directory))


def _real_directory(directory: Path) -> None:
    """Create the directory (and its .gitignore) or accept an existing real one."""
    with contextlib.suppress(FileExistsError):
        directory.mkdir(parents=True)  # the umask decides its mode
        with contextlib.suppress(OSError):
            create_new_file(directory / ".gitignore", GITIGNORE)
    if not stat.S_ISDIR(os.lstat(directory).st_mode):
        raise OSError(errno.ENOTDIR, "not a directory (a symbolic link is not followed)",
                      str(directory))


def write_new(target: Path, text: str) -> bool:
    """Write ``text`` to ``target`` atomically, only if no file (or link) has that name:
    False when one has. A temp file, synced, then hard-linked to its name; where the
    file system has no hard links, created exclusively and written in place."""
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with synced_file(fd) as handle:
            handle.write(text)
        try:
            os.link(temp, target)  # atomic, and never replaces or follows what is there
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network or FAT file systems)
            try:
                create_new_file(target, text)
            except FileExistsError:
                return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
