"""Which commit a run measured: git when it answers, else the CI's variables.

A saved run records its commit, whether the tree was dirty and the branch, so that
``pytest-energy runs`` and a compare message can say what a baseline was. Most CI
checkouts are detached (no branch), some have no git at all: the CI's environment
variables fill in, and nothing here ever raises or waits long.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

GIT_TIMEOUT_S = 5


def _git(rootdir: Path, *args: str) -> str | None:
    """``git ARGS`` in ``rootdir``: its output, or None when git fails, is absent or slow."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", *args], cwd=str(rootdir), capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S)
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    """The first of the variables that is set and not empty."""
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


def git_state(rootdir: Path, environ: Mapping[str, str] | None = None
              ) -> tuple[str | None, bool | None, str | None]:
    """(commit, dirty, branch) of the checkout at ``rootdir``, or CI variables.

    Dirty means tracked files differ from the commit (untracked files do not count).
    Never raises: no git, no repository or a slow git give None.
    """
    environ = os.environ if environ is None else environ
    commit = _git(rootdir, "rev-parse", "--verify", "HEAD")
    if not commit:
        return (_first(environ, "GITHUB_SHA", "CI_COMMIT_SHA"), None,
                _first(environ, "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"))
    status = _git(rootdir, "status", "--porcelain", "--untracked-files=no")
    dirty = None if status is None else bool(status)
    branch = _git(rootdir, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":  # detached, as in most CI checkouts
        branch = _first(environ, "GITHUB_HEAD_REF", "GITHUB_REF_NAME")
    return commit, dirty, branch
