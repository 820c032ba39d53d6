"""Stored runs as values: what a run is, how people name and refer to one, which to prune.

No SQLite here: the option parsers (``--energy-save``, ``--energy-compare``) import
this module on every pytest run, and pruning decisions are testable without a file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_energy.errors import EnergyConfigError

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
RESERVED_NAMES = ("latest",)
LATEST = "latest"


def parse_save_name(value: object, *, argument: str = "save") -> str:
    """A run name: ``[A-Za-z0-9._-]``, 1-100 characters, not all digits, not "latest".

    Names are database keys, never paths; the character set keeps them safe to show,
    to pass on a command line and to use as file names in exports anyway.
    """
    text = value.strip() if isinstance(value, str) else None
    if not text or not _NAME.match(text):
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: a run name uses only letters, digits, '.', "
            "'_' and '-' (1 to 100 characters), e.g. main or pr-1234")
    if text.isdigit():
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: all-digit names are run ids; add a letter, "
            f"e.g. run-{text}")
    if text.lower() in RESERVED_NAMES:
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: {text!r} is reserved (it means the newest run)")
    return text


def parse_run_ref(value: object, *, argument: str = "run") -> str:
    """A reference to a stored run: ``latest``, a run id (``12`` or ``#12``) or a name."""
    text = value.strip() if isinstance(value, str) else None
    if text and text.lower() == LATEST:
        return LATEST
    if text and text.lstrip("#").isdigit():
        return text.lstrip("#")
    try:
        return parse_save_name(value, argument=argument)
    except EnergyConfigError:
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: expected latest, a run id (12 or #12) or a "
            "run name (letters, digits, '.', '_', '-')") from None


def ref_label(ref: str) -> str:
    """How messages name a run reference: ``#12`` for an id, ``'main'`` for a name."""
    return "#" + ref if ref.isdigit() else repr(ref)


@dataclass(frozen=True)
class RunInfo:
    """One stored run, without its results."""

    id: int
    name: str | None
    created: str
    commit: str | None
    dirty: bool | None
    branch: str | None
    fingerprint: str
    machine: dict[str, Any]
    meter: dict[str, Any]
    plugin_version: str | None
    tests: int

    @property
    def label(self) -> str:
        """``#12 'main'`` or ``#13``."""
        return f"#{self.id} {self.name!r}" if self.name else f"#{self.id}"

    @property
    def commit_label(self) -> str:
        """``0123456789+dirty``, or ``no commit`` outside git."""
        if not self.commit:
            return "no commit"
        return self.commit[:10] + ("+dirty" if self.dirty else "")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created": self.created,
                "commit": self.commit, "dirty": self.dirty, "branch": self.branch,
                "fingerprint": self.fingerprint, "machine": self.machine, "meter": self.meter,
                "plugin_version": self.plugin_version, "tests": self.tests}

    def summary(self) -> dict[str, Any]:
        """The run as the JSON report's ``compare.baseline`` shows it (no machine facts)."""
        return {"id": self.id, "name": self.name, "created": self.created,
                "commit": self.commit, "dirty": self.dirty, "branch": self.branch,
                "fingerprint": self.fingerprint}


@dataclass
class NewRun:
    """What :meth:`Storage.save_run` stores about a run (results come separately)."""

    created: str
    fingerprint: str
    machine: dict[str, Any]
    meter: dict[str, Any]
    name: str | None = None
    commit: str | None = None
    dirty: bool | None = None
    branch: str | None = None
    plugin_version: str | None = None


def prune_candidates(runs: Sequence[RunInfo], *, keep: int,
                     include_named: bool = False) -> list[RunInfo]:
    """The runs a prune deletes: all but the newest ``keep`` per machine fingerprint;
    named runs (baselines saved with --energy-save=NAME) are kept unless
    ``include_named``, and never count toward ``keep``."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    seen: dict[str, int] = {}
    doomed = []
    for run in sorted(runs, key=lambda r: r.id, reverse=True):
        if run.name and not include_named:
            continue
        seen[run.fingerprint] = seen.get(run.fingerprint, 0) + 1
        if seen[run.fingerprint] > keep:
            doomed.append(run)
    return doomed
