"""Finding the baseline a run is compared with, or saying exactly why there is none.

``--energy-compare`` names a run (``latest``, an id or a name). Only a run of the same
machine type is a fair baseline, so ``latest`` and names are looked up among this
machine's runs first; a name found only on other hardware is reported as refused, not
silently skipped, and a missing baseline names what the history does hold.

An incomplete run (a measured test was interrupted or errored: a Ctrl-C'd run, stored
``incomplete`` whatever status it was saved with) is never a baseline: ``latest`` and
names skip it, and an id naming one is reported as missing, with why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_energy.history.machine import (
    hardware_differences,
    identity_differences,
    machine_identity,
)
from pytest_energy.history.runs import INCOMPLETE, LATEST, RunInfo, ref_label
from pytest_energy.history.store import HistoryStore


@dataclass(frozen=True)
class BaselineLookup:
    """The outcome of a lookup: a usable baseline, none (``missing``), or one on other
    hardware (``refused``; ``run`` is still set, so the report can name it)."""

    run: RunInfo | None = None
    missing: str | None = None
    refused: str | None = None


def find_baseline(storage: HistoryStore | None, ref: str, fingerprint: str,
                  machine: Mapping[str, Any], where: str) -> BaselineLookup:
    """Look up ``ref`` for a run of ``machine`` (fingerprint ``fingerprint``) in the
    history at ``where``. Raises StorageError when the history cannot be read."""
    if storage is None:
        return BaselineLookup(missing=f"there is no history at {where} yet")
    # Never an incomplete run (only schema 1 saved those): it is not a whole run.
    baseline = storage.run(ref, fingerprint=fingerprint, complete_only=True)
    if baseline is None and ref == LATEST:
        return BaselineLookup(missing=_nothing_on_this_machine(storage, fingerprint, machine,
                                                               where))
    if baseline is None and not ref.isdigit():
        baseline = storage.run(ref, complete_only=True)  # the name exists elsewhere?
    if baseline is None:
        return BaselineLookup(missing=_no_such_run(storage, ref, where))
    if baseline.status == INCOMPLETE:  # only an id can name one
        return BaselineLookup(missing=(
            f"run {baseline.label} in {where} is incomplete (a measured test was "
            "interrupted or errored) and is never a baseline"))
    if baseline.fingerprint != fingerprint:
        return BaselineLookup(baseline, refused=(
            f"baseline {baseline.label} was measured on different hardware: "
            f"{hardware_differences(baseline.machine, machine)} (hostname, clocks and "
            "temperatures do not count); compare runs of the same machine type, or save a "
            "baseline on this one"))
    return BaselineLookup(baseline)


def _no_such_run(storage: HistoryStore, ref: str, where: str) -> str:
    """A run that does not exist (or only incomplete): name the ones that do."""
    if storage.run(ref) is not None:
        return (f"every run {ref_label(ref)} in {where} is incomplete (a measured test was "
                "interrupted or errored): none is a baseline")
    names = sorted({r.name for r in storage.runs() if r.name})
    return f"no run {ref_label(ref)} in {where} (named runs: {', '.join(names) or 'none'})"


def _nothing_on_this_machine(storage: HistoryStore, fingerprint: str, machine: Mapping[str, Any],
                             where: str) -> str:
    """Why ``latest`` found no baseline, and where the newest run was measured instead."""
    if storage.run(LATEST, fingerprint=fingerprint) is not None:
        return (f"every run saved on this machine (fingerprint {fingerprint}) in {where} is "
                "incomplete (a measured test was interrupted or errored): none is a baseline")
    newest = storage.run(LATEST)
    elsewhere = ""
    if newest is not None:
        diffs = "; ".join(identity_differences(machine_identity(newest.machine),
                                               machine_identity(machine)))
        elsewhere = (f"; the newest stored run {newest.label} was measured on other "
                     f"hardware ({diffs or 'fingerprint differs'})")
    return f"no run saved on this machine (fingerprint {fingerprint}) in {where}{elsewhere}"
