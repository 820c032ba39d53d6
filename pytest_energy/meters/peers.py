"""Who holds or waits for a lock file, and which processes belong to this test session,
as the kernel tells (``/proc``), never from files that processes write about themselves.

Why: the GPU meter must not count this session's own pytest-xdist workers as other
users of the GPU while they are only waiting for the device lock it holds, yet a file
in a shared directory ("I am a peer") is something any process can write, or leave
behind when it dies. The kernel's lock table (``/proc/locks``) says which processes
are blocked on which lock file, and ``/proc/<pid>/stat`` gives each process's parent,
so the session's processes are found from its process tree.

Linux only; elsewhere (or with ``/proc`` unreadable) every function answers "none",
so nothing is excused and no holder is named. ``PYTEST_ENERGY_PROC_ROOT`` points the
reads at another tree (the tests' fake ``/proc``; internal, shared with
:mod:`pytest_energy.measure.busy`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC_ROOT_ENV = "PYTEST_ENERGY_PROC_ROOT"  # the same variable as measure.busy's
MAX_DEPTH = 64  # parents followed from a process before giving up (a loop, a deep tree)

FileId = tuple[int, int, int]
"""A file as ``/proc/locks`` names it: (device major, device minor, inode)."""


def proc_root() -> Path:
    return Path(os.environ.get(PROC_ROOT_ENV) or "/proc")


def file_id(info: os.stat_result) -> FileId:
    """How ``/proc/locks`` names the file ``info`` describes."""
    return os.major(info.st_dev), os.minor(info.st_dev), info.st_ino


@dataclass(frozen=True)
class FileLock:
    """One ``flock`` lock of ``/proc/locks``: held, or waited for (``waiting``)."""

    pid: int
    file: FileId
    waiting: bool


def file_locks(proc: Path | None = None) -> list[FileLock]:
    """The ``flock`` locks of the machine, e.g. ``1: FLOCK  ADVISORY  WRITE 2411
    fe:00:2146913 0 EOF`` (held) and ``1: -> FLOCK  ADVISORY  WRITE 2412 ...`` (a
    process blocked waiting for it). Unreadable or odd lines are skipped."""
    try:
        text = ((proc or proc_root()) / "locks").read_text(errors="replace")
    except OSError:
        return []
    locks = []
    for line in text.splitlines():
        fields = line.split()[1:]
        waiting = bool(fields) and fields[0] == "->"
        fields = fields[1:] if waiting else fields
        if len(fields) < 5 or fields[0] != "FLOCK":
            continue
        parsed = _parse(fields[3], fields[4])
        if parsed is not None:
            locks.append(FileLock(parsed[0], parsed[1], waiting))
    return locks


def _parse(pid: str, where: str) -> tuple[int, FileId] | None:
    try:
        major, minor, inode = where.split(":")
        return int(pid), (int(major, 16), int(minor, 16), int(inode))
    except ValueError:
        return None


def _matches(locks: list[FileLock], files: set[FileId]) -> list[FileLock]:
    """The locks on ``files``; by inode alone when no device matches (some file
    systems show another device number in ``/proc/locks`` than ``stat`` gives)."""
    exact = [lock for lock in locks if lock.file in files]
    if exact:
        return exact
    inodes = {inode for _, _, inode in files}
    return [lock for lock in locks if lock.file[2] in inodes]


def holders(file: FileId, proc: Path | None = None) -> list[int]:
    """The pids holding a ``flock`` lock on ``file`` (for messages)."""
    return sorted({lock.pid for lock in _matches(file_locks(proc), {file})
                   if not lock.waiting})


def waiters(files: set[FileId], proc: Path | None = None) -> set[int]:
    """The pids blocked right now waiting for a ``flock`` lock on one of ``files``."""
    if not files:
        return set()
    return {lock.pid for lock in _matches(file_locks(proc), files) if lock.waiting}


def process_name(pid: int, proc: Path | None = None) -> str | None:
    """The command name of ``pid`` (readable for any user's process), if known."""
    try:
        return ((proc or proc_root()) / str(pid) / "comm").read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def parent_pid(pid: int, proc: Path | None = None) -> int | None:
    """The parent of ``pid`` from ``/proc/<pid>/stat`` (``None``: gone or unreadable).
    The command name in parentheses may itself hold spaces and parentheses, so the
    fields are counted from the last ``)``."""
    try:
        text = ((proc or proc_root()) / str(pid) / "stat").read_text(errors="replace")
        return int(text.rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descends_from(pid: int, root: int, proc: Path | None = None) -> bool:
    """Whether ``pid`` is ``root`` or one of its descendants. A dead pid is not (its
    number may already be another process's)."""
    for _ in range(MAX_DEPTH):
        if pid == root:
            return True
        parent = parent_pid(pid, proc)
        if parent is None or parent <= 0 or parent == pid:
            return False
        pid = parent
    return False


def session_root() -> int:
    """The process at the top of this test session: the pytest-xdist controller when
    this process is one of its workers (xdist sets ``PYTEST_XDIST_WORKER`` in them and
    starts them as the controller's children), else this process."""
    return os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()


def session_members(pids: Iterable[int], proc: Path | None = None) -> set[int]:
    """Those of ``pids`` that belong to this test session (see :func:`session_root`)."""
    root = session_root()
    return {pid for pid in pids if descends_from(pid, root, proc)}
