"""What every history backend provides: the methods the gate, the CLI and tools use.

Two backends implement :class:`HistoryStore`: the embedded SQLite file
(:class:`~pytest_energy.history.storage.Storage`, the default) and a PostgreSQL database
(:class:`~pytest_energy.history.postgres.PostgresStorage`, for a team's shared
history). Both keep the same semantics, checked by one test suite run against both
(``tests/test_storage_backends.py``):

* a save is one transaction: readers never see half a run; a run holding an
  interrupted or errored test is stored ``incomplete`` (never a baseline);
* what is read back is the JSON object ``Entry.to_json()`` gave;
* reading never creates or upgrades anything; a missing history is None from
  :func:`~pytest_energy.history.storage.open_storage`, not an empty one;
* every problem is a :class:`~pytest_energy.history.sqlite.StorageError` whose
  message names :attr:`HistoryStore.display` (never a password) and the fix.

Only a Protocol here, so callers type against it without importing either backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from pytest_energy.history.runs import LATEST

if TYPE_CHECKING:
    from pytest_energy.entry import Entry
    from pytest_energy.history.location import StorageLocation
    from pytest_energy.history.runs import NewRun, RunInfo

__all__ = ["HistoryStore", "entries_by_test", "run_by_ref"]


class HistoryStore(Protocol):
    """An open results history (see module doc). Close it, or use ``with``."""

    writable: bool

    @property
    def location(self) -> StorageLocation:
        """Where it lives."""

    @property
    def display(self) -> str:
        """How messages name it: a file path, or a URL without its password."""

    def __enter__(self) -> HistoryStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    # ----- writing (``writable`` only: opened with create=True) ----------------------------
    def save_run(self, run: NewRun, entries: Iterable[Entry],
                 meter_identities: Mapping[str, str] | None = None) -> RunInfo:
        """Store a run and its entries in one transaction; return the stored run."""

    def delete_runs(self, run_ids: Iterable[int]) -> int:
        """Delete runs and their results in one transaction; return how many went."""

    def set_status(self, run_id: int, status: str) -> None:
        """Give a run saved ``incomplete`` (pending) its status, atomically; one holding
        an errored or interrupted result stays ``incomplete``."""

    def vacuum(self) -> int | None:
        """Give the space of deleted runs back: bytes freed, or None where the backend
        reclaims space by itself (PostgreSQL's autovacuum)."""

    # ----- reading --------------------------------------------------------------------------
    def runs(self, *, fingerprint: str | None = None, name: str | None = None,
             limit: int | None = None, complete_only: bool = False) -> list[RunInfo]:
        """Stored runs, newest first."""

    def run(self, ref: str, *, fingerprint: str | None = None,
            complete_only: bool = False) -> RunInfo | None:
        """The run ``ref`` (latest, an id, a name) names; None when there is none."""

    def iter_entries_json(self, run_id: int) -> Iterator[dict[str, Any]]:
        """A run's entries as saved, one at a time, in the order saved."""

    def entries_json(self, run_id: int) -> list[dict[str, Any]]:
        """A run's entries as saved (JSON objects), in the order saved."""

    def entries(self, run_id: int) -> list[Entry]:
        """A run's entries, in the order saved."""

    def meter_identities(self, run_id: int) -> dict[str, str]:
        """nodeid -> meter identity of each test of a run."""

    def history(self, nodeids: Iterable[str] | None = None, *, pattern: str | None = None,
                glob: bool = False, fingerprint: str | None = None,
                limit_runs: int | None = None, status: str | None = None
                ) -> list[tuple[RunInfo, Entry]]:
        """(run, entry) pairs, newest run first per test, for some tests."""


def run_by_ref(store: HistoryStore, ref: str, by_id: Callable[[int], RunInfo | None], *,
               fingerprint: str | None, complete_only: bool) -> RunInfo | None:
    """The run ``ref`` names, the same on every backend: an id exactly (``by_id``),
    ``latest`` or a name as the newest matching run, on ``fingerprint``'s machine when
    given and complete when ``complete_only``; None when there is none."""
    if ref.isdigit():
        return by_id(int(ref))
    found = store.runs(fingerprint=fingerprint, name=None if ref == LATEST else ref,
                       limit=1, complete_only=complete_only)
    return found[0] if found else None


def entries_by_test(store: HistoryStore, nodeids: Iterable[str], fingerprint: str,
                    status: str, limit_runs: int) -> tuple[dict[str, list[Entry]], int]:
    """nodeid -> its entries in the newest ``limit_runs`` runs with ``status`` on
    ``fingerprint``'s machine, newest first, and how many runs they come from."""
    by_test: dict[str, list[Entry]] = {}
    pairs = store.history(nodeids, fingerprint=fingerprint, status=status,
                          limit_runs=limit_runs)
    for _run, entry in pairs:
        by_test.setdefault(entry.nodeid, []).append(entry)
    return by_test, len({run.id for run, _entry in pairs})
