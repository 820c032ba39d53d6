"""A run as the history stores it, carried in the JSON report, and how a stored run is
recognised again.

The JSON report's ``run`` key holds the facts the regression gate saves with a run
(created time, name, git commit and branch, the machine facts with their CPU model and
reference workload, the fingerprint, the plugin version and the run's status), so that
``pytest-energy push REPORT`` saves exactly the run the gate saved or would have saved:
on another machine, later, when the history could not be reached during the run.

A run has no id that survives a copy (ids are per history), and the history keeps no
uuid. So a run is recognised by what it is (:func:`run_key` and :func:`entries_digest`):
its created time, machine fingerprint, commit and number of tests, then a hash of every
stored result. The gate's own save and a later push of its report give the same key, so
pushing a report whose run was saved says "already there" instead of doubling it; ``copy``
uses the same rule to skip runs the target already holds. Two different runs share it
only if, in the same second on the same machine and commit, they measured identical
numbers for every test: then they are the same run.

No storage here: :mod:`pytest_energy.report.finish` imports this module for every JSON
report.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_energy._version import __version__
from pytest_energy.entry import Entry
from pytest_energy.history.git import git_state
from pytest_energy.history.machine import (
    fingerprint,
    machine_identity,
    meter_identity,
    with_cpu_model,
)
from pytest_energy.history.runs import INCOMPLETE, NewRun, RunInfo, SessionOutcome

RUN_KEY = "run"  # the JSON report's key for the run record
_STATUSES = ("passed", "failed", "regressed", INCOMPLETE)

# (created, fingerprint, commit, tests): cheap to compare; the digest settles a match.
RunKey = tuple[str, str, str | None, int]


def now() -> str:
    """A run's created time, as the gate writes it (UTC, whole seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunFacts:
    """What the end of a session knows about its run, before anything is saved."""

    entries: Sequence[Entry]
    machine: Mapping[str, Any]  # machine_info() plus the reference workload, if measured
    name: str | None
    outcome: SessionOutcome  # taken before the gate adds its own exit status
    regressed: bool
    rootdir: Path
    environ: Mapping[str, str]
    created: str | None = None  # the gate's, when it saved the run
    git: tuple[str | None, bool | None, str | None] | None = None  # the same (git_state)


def run_record(facts: RunFacts) -> dict[str, Any]:
    """The JSON report's ``run``: what the gate saves (or would save) for this run.

    ``not_saved`` says why the gate never saves such a run (an interrupted session, an
    errored test), and push refuses it for the same reason.
    """
    machine = with_cpu_model(facts.machine)
    commit, dirty, branch = facts.git or git_state(facts.rootdir, facts.environ)
    return {
        "created": facts.created or now(), "name": facts.name, "commit": commit,
        "dirty": dirty, "branch": branch,
        "fingerprint": fingerprint(machine_identity(machine)), "machine": machine,
        "plugin_version": __version__,
        "status": facts.outcome.run_status(facts.entries, regressed=facts.regressed),
        "not_saved": facts.outcome.unsaved_reason(facts.entries),
    }


class RecordError(ValueError):
    """A report's ``run`` record that cannot be saved; the message says why."""


def _text(record: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = record.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RecordError(f"run.{key} is {value!r}, not text")
    return value


def _object(record: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    if not isinstance(value, dict):
        raise RecordError(f"run.{key} is not an object")
    return value


def new_run(record: Mapping[str, Any], meter: Mapping[str, Any],
            name: str | None = None) -> NewRun:
    """The :class:`NewRun` a report's ``run`` record describes; ``name`` replaces its
    name. Raises RecordError for a record that is not one."""
    dirty = record.get("dirty")
    if dirty is not None and not isinstance(dirty, bool):
        raise RecordError(f"run.dirty is {dirty!r}, not true, false or null")
    status = _text(record, "status", required=True)
    if status not in _STATUSES:
        raise RecordError(f"run.status is {status!r}, not one of {', '.join(_STATUSES)}")
    return NewRun(created=str(_text(record, "created", required=True)),
                  fingerprint=str(_text(record, "fingerprint", required=True)),
                  machine=_object(record, "machine"), meter=dict(meter),
                  name=name or _text(record, "name"), commit=_text(record, "commit"),
                  dirty=dirty, branch=_text(record, "branch"),
                  plugin_version=_text(record, "plugin_version"), status=status)


def meter_identities(entries: Iterable[Entry], meter: Mapping[str, Any]) -> dict[str, str]:
    """nodeid -> meter identity, as the gate computes them when it saves."""
    return {entry.nodeid: meter_identity(entry, meter) for entry in entries}


def run_key(run: NewRun | RunInfo, tests: int) -> RunKey:
    """What two records of one run share wherever they are stored (see module doc)."""
    return (run.created, run.fingerprint, run.commit, tests)


def entries_digest(entries_json: Iterable[Mapping[str, Any]]) -> str:
    """A hash of a run's stored results, in their order, read one at a time."""
    digest = hashlib.sha256()
    for data in entries_json:
        digest.update(json.dumps(data, sort_keys=True, separators=(",", ":"),
                                 default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()
