"""Keeping measured windows on one device from overlapping across processes.

Energy counters measure a whole device (a GPU board, a CPU package), so two tests
measured at once on the same device -- two pytest-xdist workers, or two CI jobs on one
runner -- would each count the other's energy. A measurement therefore holds an
exclusive, cross-process lock per device for its whole duration (warm-up included, so
the device is not heated by someone else between warm-up and measuring).

**What is locked.** Only what a meter measures machine-wide, named by its
``lock_keys`` capability (:class:`~pytest_energy.meters.base.MeterCapabilities`): a
GPU by UUID (never an index, which differs between processes), the CPU packages as one
resource (RAPL). A per-process meter (the estimate meter reads this process's CPU
time) declares no key and takes no lock, so unrelated runs never wait for each other.
A meter without the capability is locked conservatively: the CPU packages for CPU
devices, ``<meter name>-<device>`` otherwise. Unmeasured tests take no lock.

**Where.** ``flock`` locks on ``<key>.lock`` in this user's own directory,
``<temp dir>/pytest-energy-<uid>`` (mode 0700, see :mod:`~pytest_energy.meters.statedir`),
or in ``$PYTEST_ENERGY_LOCK_DIR``. The files are never written: created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to the checked directory, opened read-only
with ``O_NOFOLLOW``, so no file is ever created or truncated through a link. Another
user can neither hold nor redirect these locks; their measurement of the same GPU at
the same time is not excluded but seen: NVML lists their process and the result is
marked contaminated (on the CPU, their CPU time marks it busy). A shared directory that
root made sticky (``chmod 1777``), named in ``PYTEST_ENERGY_LOCK_DIR`` by every user,
coordinates users too. The kernel releases a lock when its process dies, so a crashed
worker never blocks the others. A lock file (or the directory) removed while the
session runs is recreated: after taking a lock the name is checked to still be the
locked file, else the new one is locked.

**Waiting** is bounded (``--energy-lock-timeout``, set once per process with
:func:`set_wait_timeout`); the error names the lock file and the holding pid
(``/proc/locks``). A holder that outlived one timeout fails the next tests at once
instead of each waiting again. The blocking ``flock`` runs in a helper thread, so a
waiting process uses no CPU (which would disturb the measurement it waits for) and is
woken as soon as the lock is free. Waits over :data:`LONG_WAIT_S` become a warning of
the result (:func:`record_wait`).

**Nesting.** A measurement started inside another in the same thread (``energy(fn)``
or ``energy.measure()`` inside ``energy.measure()``) would wait for its own lock
forever: it raises :class:`NestedMeasurementError` instead, with or without keys.

Where ``fcntl`` does not exist (Windows) measurements are not isolated.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from pytest_energy.meters.base import MeterError, capabilities
from pytest_energy.meters.peers import (
    file_id,
    holders,
    proc_root,
    process_name,
    session_members,
    waiters,
)
from pytest_energy.meters.statedir import FIX_HINT, UnsafeLocation, open_directory, user_state_dir

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CPU_PACKAGES = "cpu-packages"
"""The one lock key of every CPU-package meter: RAPL zones span all packages."""
LOCK_DIR_ENV = "PYTEST_ENERGY_LOCK_DIR"
DEFAULT_WAIT_TIMEOUT_S = 600.0  # the --energy-lock-timeout default
LONG_WAIT_S = 1.0
"""Waits longer than this (per test, all its parts together) become a result warning."""
LOCK_WAIT_PREFIX = "device lock: waited"
"""How that warning starts (``EnergyResult.warnings``, ``Entry.warnings``)."""
TIMEOUT_HINT = ("raise --energy-lock-timeout (PYTEST_ENERGY_LOCK_TIMEOUT, ini "
                "energy_lock_timeout) or end that process")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FILE_FLAGS = os.O_RDONLY | sum(getattr(os, flag, 0)  # absent flags: Windows (no locks)
                                 for flag in ("O_CLOEXEC", "O_NONBLOCK", "O_NOFOLLOW"))
_FILE_MODE = 0o444  # never written; read access is all flock needs
_REOPENS = 10  # lock files replaced under us before giving up

_wait_timeout_s = DEFAULT_WAIT_TIMEOUT_S
_measuring: dict[int, tuple[str, ...]] = {}  # thread -> keys of its measurement running
_held: dict[str, tuple[int, int, int]] = {}  # key -> the lock file this process holds
_stuck: dict[str, tuple[int, float]] = {}  # lock file -> (pid, since) held past a timeout


class DeviceLockError(MeterError):
    """A device lock could not be taken safely; the message names the file and the fix."""


class DeviceLockTimeout(DeviceLockError):
    """Another process held a device lock longer than the wait limit."""


class NestedMeasurementError(MeterError):
    """A measurement was started inside another one of the same thread."""


def set_wait_timeout(seconds: float) -> None:
    """The longest wait for a device lock in this process (``--energy-lock-timeout``)."""
    global _wait_timeout_s
    _wait_timeout_s = float(seconds)


def lock_dir() -> Path:
    """Where the lock files are: ``$PYTEST_ENERGY_LOCK_DIR``, else this user's own dir."""
    configured = os.environ.get(LOCK_DIR_ENV)
    return Path(configured) if configured else user_state_dir()


def lock_keys(meter: object, device: str) -> list[str]:
    """The machine-wide resources a meter's windows occupy: its ``lock_keys()``
    capability when it declares one (empty: a per-process meter, no lock), else the
    CPU packages for CPU devices and ``<meter name>-<device>`` otherwise."""
    keys = capabilities(meter).lock_keys
    if keys is not None:
        return sorted(set(keys()))
    if device in ("cpu", "auto"):
        return [CPU_PACKAGES]
    return [f"{getattr(meter, 'name', 'meter')}-{device}"]



@dataclass
class LockInfo:
    """What taking the locks of one measurement cost."""

    waited_s: float = 0.0
    isolated: bool = True  # False where locks do not exist (Windows)
    # key -> the pid that held its lock when this process had to wait (None: unknown)
    holders: dict[str, int | None] = field(default_factory=dict)

    def holders_text(self) -> str:
        return "; ".join(f"{key} held by {_describe(pid)}" for key, pid in self.holders.items())


def record_wait(warnings: list[str], total_s: float, info: LockInfo) -> None:
    """When a test's waits (``total_s``, all its parts) exceed :data:`LONG_WAIT_S` and
    this part had to wait, keep one warning saying so, naming the holders."""
    if not info.holders or total_s <= LONG_WAIT_S:
        return
    warnings[:] = [w for w in warnings if not w.startswith(LOCK_WAIT_PREFIX)]
    warnings.append(f"{LOCK_WAIT_PREFIX} {total_s:.3g} s for other measurements of the "
                    f"same device ({info.holders_text()}); the wait is not in the numbers")


def idle_session_peers(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that are this test session's own processes (its xdist workers,
    found from the process tree) blocked right now waiting for a device lock this
    process holds: idle on the device while it is measured. Read from the kernel
    (``/proc``), never from a file a process could write; empty without ``/proc``."""
    files = set(_held.values())
    candidates = set(pids) - {os.getpid()}
    if not files or not candidates:
        return set()
    proc = proc_root()
    return session_members(waiters(files, proc) & candidates, proc)


@contextmanager
def exclusive(keys: Iterable[str], *, timeout_s: float | None = None) -> Iterator[LockInfo]:
    """Hold the locks for ``keys`` (sorted, so two holders never deadlock) around the
    body, waiting at most ``timeout_s`` in all (default: :func:`set_wait_timeout`).

    Raises :class:`NestedMeasurementError` when this thread is inside ``exclusive``
    already (also with no keys), :class:`DeviceLockTimeout`, or
    :class:`DeviceLockError` when a lock file or its directory is not safe to use.
    """
    wanted = sorted(set(keys))
    thread = threading.get_ident()
    if thread in _measuring:
        raise NestedMeasurementError(_nested_message())
    info = LockInfo(isolated=fcntl is not None or not wanted)
    _measuring[thread] = tuple(wanted)
    taken: list[_Lock] = []
    try:
        if fcntl is not None and wanted:
            limit = _wait_timeout_s if timeout_s is None else timeout_s
            start = time.monotonic()
            for key in wanted:
                taken.append(_acquire(key, start + limit, limit, info))
            info.waited_s = time.monotonic() - start
        yield info
    finally:
        for lock in reversed(taken):
            lock.release()
        del _measuring[thread]


def _nested_message() -> str:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    return (f"nested measurement{f' in {test}' if test else ''}: energy(fn) or "
            "energy.measure() was started inside another measurement that has not ended "
            "(an energy.measure() block or an energy(fn) call); a measurement cannot "
            "contain another (it would wait for its own device lock). Measure the parts "
            "one after another: end the with-block before the next energy.measure() or "
            "energy(fn)")


def _describe(pid: int | None) -> str:
    if pid is None:
        return "an unknown process"
    name = process_name(pid)
    return f"pid {pid}" + (f" ({name})" if name else "")


@dataclass
class _Lock:
    key: str
    fd: int

    def release(self) -> None:
        _held.pop(self.key, None)
        try:
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def _acquire(key: str, deadline: float, limit: float, info: LockInfo) -> _Lock:
    """Lock ``key``'s file; lock it anew when it was removed or replaced meanwhile."""
    path = lock_dir() / f"{_SAFE.sub('_', key)}.lock"
    private = not os.environ.get(LOCK_DIR_ENV)
    for _ in range(_REOPENS):
        dir_fd, fd = _open(path, private)
        try:
            _take(fd, key, path, deadline, limit, info)
            current = _is_current(dir_fd, path.name, fd)
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.close(dir_fd)
        if current:
            _held[key] = file_id(os.fstat(fd))
            _stuck.pop(str(path), None)
            return _Lock(key, fd)
        os.close(fd)
    raise DeviceLockError(f"the device lock {path} was removed or replaced {_REOPENS} "
                          "times while this process waited for it; something keeps "
                          f"deleting it: stop that, or {FIX_HINT}")


def _open(path: Path, private: bool) -> tuple[int, int]:
    """Descriptors of the lock directory (created if missing) and of the lock file."""
    try:
        dir_fd = open_directory(path.parent, private=private)
    except UnsafeLocation as exc:
        raise DeviceLockError(f"cannot use the device lock directory: {exc}") from None
    try:
        return dir_fd, _open_file(dir_fd, path, private)
    except BaseException:
        os.close(dir_fd)
        raise


def _open_file(dir_fd: int, path: Path, private: bool) -> int:
    """Open (or create) the lock file read-only, never through a link."""
    shared = not private and os.fstat(dir_fd).st_mode & 0o022
    for _ in range(_REOPENS):
        try:
            fd = os.open(path.name, _FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            try:
                fd = os.open(path.name, _FILE_FLAGS | os.O_CREAT | os.O_EXCL, _FILE_MODE,
                             dir_fd=dir_fd)
            except FileExistsError:  # another process created it first: open that one
                continue
            if shared:  # other users lock it too, whatever this user's umask
                os.fchmod(fd, _FILE_MODE)
        except OSError as exc:
            raise DeviceLockError(_refused(path, exc, dir_fd)) from None
        _check_file(fd, path, private)
        return fd
    raise DeviceLockError(f"cannot open the device lock {path}: it keeps disappearing")


def _refused(path: Path, exc: OSError, dir_fd: int) -> str:
    try:
        info = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        return (f"the device lock {path} is a symbolic link; pytest-energy never follows "
                f"links there: remove it, or {FIX_HINT}")
    what = "" if info is None else f" (owner uid {info.st_uid}, mode {info.st_mode & 0o7777:o})"
    return (f"cannot open the device lock {path}{what}: {exc.strerror or exc}; remove it, "
            f"or {FIX_HINT}")


def _check_file(fd: int, path: Path, private: bool) -> None:
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif private and info.st_uid != os.geteuid():
        problem = f"belongs to uid {info.st_uid}, not to you, in your own directory"
    if problem is not None:
        os.close(fd)
        raise DeviceLockError(f"the device lock {path} {problem}: remove it, or {FIX_HINT}")


def _is_current(dir_fd: int, name: str, fd: int) -> bool:
    """Whether ``name`` still is the file locked through ``fd``."""
    try:
        linked = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    locked = os.fstat(fd)
    return (linked.st_dev, linked.st_ino) == (locked.st_dev, locked.st_ino)


def _take(fd: int, key: str, path: Path, deadline: float, limit: float,
          info: LockInfo) -> None:
    """``flock`` at once when free; else wait until ``deadline`` or raise. A holder
    already seen holding the lock at an earlier timeout is timed from then, so a stuck
    holder fails the next tests at once instead of each waiting again."""
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    found = holders(file_id(os.fstat(fd)))
    holder = found[0] if found else None
    info.holders[key] = holder
    first = deadline - limit  # when this measurement started asking
    seen = _stuck.get(str(path))
    if holder is not None and seen is not None and seen[0] == holder:
        first = seen[1]
    if not _wait(fd, path, min(deadline, first + limit)):
        if holder is not None:
            _stuck[str(path)] = (holder, first)
        raise DeviceLockTimeout(
            f"gave up waiting for the device lock {path}: {_describe(holder)} has held it "
            f"for at least {time.monotonic() - first:.3g} s, longer than the {limit:g} s limit "
            f"(another measurement of the same device has not ended): {TIMEOUT_HINT}")


def _wait(fd: int, path: Path, deadline: float) -> bool:
    """Block in ``flock`` on a duplicate of ``fd`` in a helper thread; ``False`` when
    ``deadline`` passes first. The duplicate shares the lock: once taken it is held
    through ``fd``. Given up, the helper keeps waiting and frees the lock when it gets
    it (closing the last descriptor releases it)."""
    assert fcntl is not None
    flock, exclusive_lock = fcntl.flock, fcntl.LOCK_EX
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    waiter = os.dup(fd)
    done = threading.Event()
    failed: list[OSError] = []

    def wait() -> None:
        try:
            flock(waiter, exclusive_lock)
        except OSError as exc:
            failed.append(exc)
        finally:
            os.close(waiter)
            done.set()

    threading.Thread(target=wait, name="pytest-energy-lock-wait", daemon=True).start()
    if not done.wait(remaining):
        return False
    if failed:
        raise DeviceLockError(f"waiting for the device lock {path} failed: {failed[0]}")
    return True
