"""Stored runs as values: what a run is, how people name and refer to one, which to prune.

No SQLite here: the option parsers (``--energy-save``, ``--energy-compare``) import
this module on every pytest run, and pruning decisions are testable without a file.

Which runs enter the history, and with which status, is decided here too
(:class:`SessionOutcome`): a history is only worth learning from
when each run in it is a whole run. An interrupted session (Ctrl-C, a collection error,
``pytest.exit``, ``-x``/``--maxfail`` stopping early), a pytest internal or usage error,
a session that ran no tests, or a measured test that errored or was interrupted leaves
a run that is not comparable with the others: it is not saved. Failing tests (an
assertion, a budget exceeded) still make a complete run; it is saved with the status
``failed``, and a run whose compare found a regression with ``regressed``, so budget
suggestions can learn from ``passed`` runs only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_energy.errors import EnergyConfigError

if TYPE_CHECKING:  # Entry is imported with the first measured report, not here
    from pytest_energy.entry import Entry

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
    status: str | None = None  # RUN_STATUSES, "incomplete" or None (unknown: schema 1)

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
                "plugin_version": self.plugin_version, "tests": self.tests,
                "status": self.status}

    def summary(self) -> dict[str, Any]:
        """The run as the JSON report's ``compare.baseline`` shows it (no machine facts)."""
        return {"id": self.id, "name": self.name, "created": self.created,
                "commit": self.commit, "dirty": self.dirty, "branch": self.branch,
                "fingerprint": self.fingerprint, "status": self.status}


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
    status: str | None = None  # one of RUN_STATUSES; see run_status()


# A run's status in the history. INCOMPLETE: a measured test errored or was interrupted
# (schema 1 saved such runs; the history marks any it is given), or pytest did not exit
# normally after the save (see .pending). Never a baseline, never learned from.
PASSED = "passed"
FAILED = "failed"
REGRESSED = "regressed"
INCOMPLETE = "incomplete"
RUN_STATUSES = (PASSED, FAILED, REGRESSED)

# pytest.ExitCode values by number: the CLI imports this module and needs no pytest.
_EXIT_TESTS_FAILED = 1
_EXIT_WHY = {2: "the session was interrupted", 3: "pytest had an internal error",
             4: "pytest was used wrongly (usage error)", 5: "no tests ran"}
BROKEN_OUTCOMES = ("error", "interrupted")  # Entry.outcome spellings (a str enum)
_NAMED = 3  # tests named in a message before "and N more"


@dataclass(frozen=True)
class SessionOutcome:
    """How the pytest session ended, as far as the history cares: its exit status so
    far (before the gate adds its own) and why it stopped early, if it did."""

    exitstatus: int = 0
    stopped: str | None = None  # session.shouldstop / shouldfail, e.g. -x's reason

    @classmethod
    def of(cls, session: object) -> SessionOutcome:
        """From a ``pytest.Session`` (read defensively: never raises), or as given."""
        if isinstance(session, SessionOutcome):
            return session
        try:
            status = int(getattr(session, "exitstatus", 0) or 0)
        except (TypeError, ValueError):
            status = 0
        stopped = getattr(session, "shouldstop", False) or getattr(session, "shouldfail", False)
        return cls(status, str(stopped) if stopped else None)

    def unsaved_reason(self, entries: Iterable[Entry]) -> str | None:
        """Why this run must not enter the history (see module doc), or None when it may."""
        code = self.exitstatus
        if code in _EXIT_WHY:
            return f"{_EXIT_WHY[code]} (exit {code})"
        if code not in (0, _EXIT_TESTS_FAILED):
            return f"the session ended with exit status {code}"
        if self.stopped:
            return f"the session stopped early ({self.stopped})"
        broken = [e.nodeid for e in entries if e.outcome in BROKEN_OUTCOMES or e.partial]
        if broken:
            more = f" and {len(broken) - _NAMED} more" if len(broken) > _NAMED else ""
            return (f"{len(broken)} measured test(s) errored or were interrupted: "
                    f"{', '.join(broken[:_NAMED])}{more}")
        return None

    def run_status(self, entries: Iterable[Entry], *, regressed: bool) -> str:
        """The status a run is saved with: ``incomplete`` when it may not be saved, else
        ``failed`` when a test failed (pytest's verdict first), ``regressed`` when its
        compare found a regression, else ``passed``."""
        entries = list(entries)
        if self.unsaved_reason(entries) is not None:
            return INCOMPLETE
        if self.exitstatus == _EXIT_TESTS_FAILED or any(e.outcome == FAILED for e in entries):
            return FAILED
        return REGRESSED if regressed else PASSED


def why_not_passing(status: str) -> str | None:
    """Why a run with ``status`` is not learned from, for people; None for a passing run."""
    if status == PASSED:
        return None
    return {FAILED: "a test failed", REGRESSED: "its compare found a regression",
            INCOMPLETE: "the run is incomplete"}.get(status, f"its status is {status}")


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
