"""Keeping measured windows on one device from overlapping across processes.

Energy counters measure a whole device (a GPU board, a CPU package), so two tests
measured at once on the same device -- two pytest-xdist workers, or two CI jobs on one
runner -- would each count the other's energy. Every measurement therefore holds an
exclusive, cross-process lock per device for its whole duration (warm-up included, so
the device is not heated by someone else between warm-up and measuring).

Locks are ``flock`` locks on files named after the device (GPU by UUID, CPU packages
as one resource), in ``$PYTEST_ENERGY_LOCK_DIR`` or ``<tmp>/pytest-energy-locks``. The
kernel releases them when a process dies, so a crashed worker never blocks the others.
Unmeasured tests take no lock and keep running in parallel. Why locks rather than a
GPU-per-worker assignment: they work for any number of workers and devices, for the
CPU (which cannot be assigned), and across unrelated pytest processes.

Which devices a meter occupies is its ``lock_keys`` capability
(:class:`~pytest_energy.meters.base.MeterCapabilities`). Where ``fcntl`` does not exist
(Windows) measurements are not isolated and results say so.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import IO

from pytest_energy.meters.base import capabilities

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CPU_PACKAGES = "cpu-packages"
"""The one lock key of every CPU meter: RAPL zones and CPU load span all packages."""
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def lock_dir() -> Path:
    return Path(os.environ.get("PYTEST_ENERGY_LOCK_DIR")
                or Path(tempfile.gettempdir()) / "pytest-energy-locks")


_MADE: set[Path] = set()  # lock directories already created by this process


def lock_keys(meter: object, device: str) -> list[str]:
    """The devices a meter's windows occupy: its ``lock_keys()`` capability when it
    declares one, else the CPU packages for CPU devices and ``<meter name>-<device>``
    otherwise."""
    keys = capabilities(meter).lock_keys
    if keys is not None:
        return sorted(set(keys()))
    if device in ("cpu", "auto"):
        return [CPU_PACKAGES]
    return [f"{getattr(meter, 'name', 'meter')}-{device}"]


def _pid_dir() -> Path:
    return lock_dir() / "pids"


def register_process() -> None:
    """Announce this process as a pytest-energy measurer (see :func:`peer_pids`)."""
    with contextlib.suppress(OSError):
        _pid_dir().mkdir(parents=True, exist_ok=True)
        (_pid_dir() / str(os.getpid())).touch()


def unregister_process() -> None:
    with contextlib.suppress(OSError):
        (_pid_dir() / str(os.getpid())).unlink()


def peer_pids() -> set[int]:
    """Live pytest-energy processes sharing this lock directory (xdist workers, other
    sessions). They measure only while holding the device lock, so while this process
    holds it, their CUDA contexts are idle: a GPU meter does not count them as
    contamination. Stale entries (dead pids) are ignored."""
    pids = set()
    with contextlib.suppress(OSError):
        for entry in _pid_dir().iterdir():
            if entry.name.isdigit() and _alive(int(entry.name)):
                pids.add(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


@contextmanager
def exclusive(keys: list[str]) -> Iterator[dict[str, float]]:
    """Hold the locks for ``keys`` (sorted, so two holders never deadlock).

    Yields a dict whose ``"waited_s"`` is how long acquiring took.
    """
    info = {"waited_s": 0.0}
    if fcntl is None:  # pragma: no cover - Windows
        info["isolated"] = 0.0
        yield info
        return
    directory = lock_dir()
    if directory not in _MADE:
        directory.mkdir(parents=True, exist_ok=True)
        _MADE.add(directory)
    handles: list[IO[bytes]] = []
    start = time.perf_counter()
    try:
        for key in sorted(set(keys)):
            handle = open(directory / f"{_SAFE.sub('_', key)}.lock", "a+b")  # noqa: SIM115
            handles.append(handle)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        info["waited_s"] = time.perf_counter() - start
        yield info
    finally:
        for held in reversed(handles):
            try:
                fcntl.flock(held.fileno(), fcntl.LOCK_UN)
            finally:
                held.close()
