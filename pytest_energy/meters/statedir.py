"""Directories pytest-energy keeps files in, opened so that another local user cannot
redirect them.

Why: a name under the shared temp dir can be taken by anyone first. A directory that
another user created (or a symbolic link they planted in its place) would let them
choose where our files go or hold our locks. So a directory is opened once with
``O_NOFOLLOW`` and checked through that descriptor (owner, mode), and files are then
opened relative to the descriptor: what was checked is what is used, with no window
in which the path could be swapped.

* :func:`user_state_dir`: ``<temp dir>/pytest-energy-<uid>``, created ``0700``, must be
  owned by this user (the convention of pytest's own ``pytest-of-<user>``; the same
  name from every shell, CI service and ssh session of the user, unlike
  ``$XDG_RUNTIME_DIR``, which only login sessions have).
* a directory the user names (``PYTEST_ENERGY_LOCK_DIR``): created ``0700`` when
  missing; when it exists it must be owned by this user or root, and when others can
  write to it, it must be sticky (as ``/tmp``) so they cannot replace our files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | sum(getattr(os, flag, 0)  # absent flags: Windows (no locks)
                                for flag in ("O_CLOEXEC", "O_DIRECTORY", "O_NOFOLLOW"))
PRIVATE_MODE = 0o700
FIX_HINT = "set PYTEST_ENERGY_LOCK_DIR to a directory of yours"


class UnsafeLocation(Exception):
    """A directory or file that another user could control; the message names it,
    says why and what to do."""


def user_state_dir() -> Path:
    """This user's own state directory (see the module docstring); not created here."""
    import tempfile  # only on first use: the plugin's import time matters

    return Path(tempfile.gettempdir()) / f"pytest-energy-{os.geteuid()}"


def open_directory(path: Path, *, private: bool) -> int:
    """A descriptor of directory ``path``, created (mode 0700) when missing.

    ``private``: this user's own state directory; it must be owned by this user and
    is tightened to 0700 if its mode is looser. Otherwise the rules of a directory
    the user named apply (see the module docstring). Raises :class:`UnsafeLocation`.
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        _make(path)
        fd = _open_existing(path)
    except OSError as exc:
        raise _refused(path, exc) from None
    try:
        _check(fd, path, private=private)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_existing(path: Path) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise _refused(path, exc) from None


def _make(path: Path) -> None:
    """Create ``path`` with mode 0700 (its parents as ``mkdir -p`` would). ``mkdir``
    never follows a link: a planted one makes it fail, and the open then refuses it."""
    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process was first: checked next
        os.mkdir(path, PRIVATE_MODE)


def _refused(path: Path, exc: OSError) -> UnsafeLocation:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return UnsafeLocation(f"{path} is a symbolic link or not a directory; pytest-energy "
                              f"does not follow links there: remove it, or {FIX_HINT}")
    return UnsafeLocation(f"cannot open the directory {path}: {exc.strerror or exc}; "
                          f"{FIX_HINT}")


def _check(fd: int, path: Path, *, private: bool) -> None:
    """The owner and mode rules, read through the descriptor."""
    info = os.fstat(fd)
    me = os.geteuid()
    allowed = (me,) if private else (me, 0)
    if info.st_uid not in allowed:
        raise UnsafeLocation(
            f"{path} is owned by uid {info.st_uid}, not by you (uid {me}"
            f"{'' if private else ' or root'}): another user could control what is in "
            f"it; remove it, or {FIX_HINT}")
    if private:
        if stat.S_IMODE(info.st_mode) != PRIVATE_MODE:
            os.fchmod(fd, PRIVATE_MODE)  # ours: made private again
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise UnsafeLocation(
            f"{path} can be written by other users and is not sticky (mode "
            f"{stat.S_IMODE(info.st_mode):o}): they could replace its files; make it "
            f"sticky (chmod +t) or private, or {FIX_HINT}")
