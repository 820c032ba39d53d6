"""The HTML report's trends: each test's energy per call across the recent runs of the
same machine, read from the results history, with the baseline's noise band and the
regressions the gate found.

The band and the regressions are the gate's, never a second opinion: for a pytest run
they come from the gate result of that run (``RunReport._run_gate``); for a stored run
(``pytest-energy report``) from the same judgement ``pytest-energy compare`` makes
(:func:`~pytest_energy.history.gate_compare.decide` against the newest complete runs
saved before it on its machine). The band of a test is where the gate would not call
a change significant: its baseline mean times / divided by ``1 + detectable`` (the
smallest change the run-to-run noise and the threshold let it see). With fewer than
three baseline runs the gate measured no run-to-run spread, so there is no band.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_energy.entry import Entry
from pytest_energy.history.gate_compare import decide, load
from pytest_energy.history.location import StorageLocation, resolve_storage_dir, storage_location
from pytest_energy.history.machine import fingerprint, machine_identity, with_cpu_model
from pytest_energy.history.runrecord import now
from pytest_energy.history.runs import RunInfo
from pytest_energy.history.storage import StorageError, db_path, open_storage
from pytest_energy.history.store import HistoryStore
from pytest_energy.options import SETTINGS_BY_NAME, resolve_setting
from pytest_energy.parsers import parse_thresholds
from pytest_energy.report.html import GateView, HtmlReport, write_html
from pytest_energy.report.html_charts import Trend, TrendPoint
from pytest_energy.report.jsonreport import machine_info

if TYPE_CHECKING:
    from pytest_energy.report.finish import RunReport

TREND_RUNS = 20  # runs per trend line, this one included
_RUNS_READ = 1000  # runs listed to find those before a stored run


@dataclass(frozen=True)
class Trends:
    """The trend lines, and one sentence saying where they come from (or why none)."""

    lines: list[Trend]
    note: str


def _value(entry: Entry | None) -> float | None:
    return entry.joules_per_call if entry is not None and entry.is_measured else None


def _band(metric: Mapping[str, Any]) -> tuple[float, float] | None:
    """The J/call band of one metric comparison, when it is the gate's energy verdict
    and carries the smallest detectable change."""
    base, seen = metric.get("baseline"), metric.get("detectable")
    if metric.get("metric") != "joules" or not isinstance(base, (int, float)) or not \
            isinstance(seen, (int, float)) or base <= 0 or seen < 0:
        return None
    return base / (1.0 + seen), base * (1.0 + seen)


def bands(result: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Each compared test's noise band in J/call, from a gate (or compare) result."""
    found: dict[str, tuple[float, float]] = {}
    for test in (result or {}).get("tests") or []:
        for metric in test.get("metrics") or []:
            band = _band(metric)
            if band is not None:
                found[str(test.get("nodeid"))] = band
    return found


def build_trends(earlier: Sequence[tuple[str, Mapping[str, Entry]]], current: Sequence[Entry],
                 current_label: str, result: Mapping[str, Any] | None) -> list[Trend]:
    """One trend per measured test of ``current``: its value in each ``earlier`` run
    (label, entries by test id; oldest first) that measured it, then this run's."""
    regressed = set((result or {}).get("regressions") or [])
    noise = bands(result)
    trends = []
    for entry in current:
        if not entry.is_measured:
            continue
        points = [TrendPoint(label, _value(by_id.get(entry.nodeid))) for label, by_id in earlier
                  if _value(by_id.get(entry.nodeid)) is not None]
        points.append(TrendPoint(current_label, entry.joules_per_call,
                                 regressed=entry.nodeid in regressed))
        trends.append(Trend(entry.nodeid, tuple(points), noise.get(entry.nodeid),
                            bool(entry.estimated)))
    return trends


def _earlier(storage: HistoryStore, runs: Sequence[RunInfo]) -> list[tuple[str, dict[str, Entry]]]:
    """Each run's entries by test id, oldest first (``runs`` come newest first)."""
    return [(f"#{run.id}", {e.nodeid: e for e in storage.entries(run.id)})
            for run in reversed(runs)]


# ----- a pytest run ------------------------------------------------------------------------------


def storage_of(config: Any, gate: Any) -> StorageLocation:
    """The history this run uses: the gate's, else the storage option's."""
    if gate is not None:
        return storage_location(gate.storage_dir)
    return storage_location(resolve_storage_dir(
        resolve_setting(SETTINGS_BY_NAME["storage"], config),
        invocation_dir=Path(config.invocation_params.dir), rootdir=Path(config.rootpath)))


def _this_machine(storage: HistoryStore, here: str | None, saved: int | None
                  ) -> list[tuple[str, dict[str, Entry]]]:
    """The newest complete runs of this machine (``here``: its fingerprint, when the
    gate computed it), but the one the gate just saved (``saved``)."""
    here = here or fingerprint(machine_identity(with_cpu_model(machine_info())))
    runs = [r for r in storage.runs(fingerprint=here, complete_only=True, limit=TREND_RUNS)
            if r.id != saved]
    return _earlier(storage, runs[:TREND_RUNS - 1])


def run_trends(location: StorageLocation, entries: Sequence[Entry],
               result: Mapping[str, Any] | None) -> Trends:
    """Trends for this pytest run from the history at ``location`` (read only, never
    created), this run last; the run itself is left out of the earlier ones when the
    gate just saved it."""
    missing = (f"no results history at {location.display}: save runs with "
               "--energy-save=NAME or --energy-autosave to see trends")
    if location.directory is not None and not db_path(location.directory).exists():
        return Trends([], missing)  # not even opened: a run without history stays fast
    result = result or {}
    try:
        storage = open_storage(location, create=False)
        if storage is None:
            return Trends([], missing)
        with storage:
            earlier = _this_machine(storage, result.get("fingerprint"),
                                    (result.get("saved") or {}).get("id"))
    except StorageError as exc:
        return Trends([], f"the history could not be read: {exc}")
    return Trends(build_trends(earlier, entries, "this run", result),
                  f"{len(earlier)} earlier complete run(s) of this machine from "
                  f"{location.display}, then this run")


def write_run_html(path: str, run: RunReport, meter: Mapping[str, Any],
                   compare: Mapping[str, Any] | None, config: Any) -> str:
    """Write the HTML report of this pytest run: its rated entries and tables, the
    gate's verdict, and trends when a history exists (see module doc)."""
    gate = run.session.gate
    trends = run_trends(storage_of(config, gate), run.entries, compare)
    return write_html(path, HtmlReport(
        title="pytest-energy report", source="this run", created=now(), entries=run.entries,
        meter=meter, machine=machine_info(), tables=run.tables,
        gate=GateView.of_result(compare if gate is not None else None),
        trends=trends.lines, trends_note=trends.note, options=run.options))


# ----- a stored run ------------------------------------------------------------------------------


def stored_compare(storage: HistoryStore, run: RunInfo, earlier: Sequence[RunInfo]
                   ) -> dict[str, Any] | None:
    """The judgement ``pytest-energy compare`` makes of ``run`` against the newest
    complete runs before it (``earlier``, newest first; the options' default baseline
    size, thresholds and alpha), or None with no earlier run."""
    size = int(SETTINGS_BY_NAME["baseline_runs"].default)
    baseline = list(earlier[:size])
    if not baseline:
        return None
    thresholds = parse_thresholds(SETTINGS_BY_NAME["compare_fail"].default,
                                  argument="compare_fail")
    decision = decide(load(storage, baseline, run.machine), storage.entries(run.id),
                      run.machine, storage.meter_identities(run.id), thresholds,
                      float(SETTINGS_BY_NAME["compare_alpha"].default),
                      f"#{baseline[0].id}")
    return {**decision.result, "regressions": decision.regressed}


def stored_trends(storage: HistoryStore, run: RunInfo, entries: Sequence[Entry]) -> Trends:
    """Trends for a stored run: the complete runs of its machine before it, then it."""
    before = [r for r in storage.runs(fingerprint=run.fingerprint, complete_only=True,
                                      limit=_RUNS_READ) if r.id < run.id]
    result = stored_compare(storage, run, before)
    earlier = _earlier(storage, before[:TREND_RUNS - 1])
    judged = ("; noise bands and regressions as pytest-energy compare judges it against "
              f"the newest {min(len(before), int(SETTINGS_BY_NAME['baseline_runs'].default))}"
              " of them" if result is not None else "")
    return Trends(build_trends(earlier, entries, f"#{run.id}", result),
                  f"{len(earlier)} earlier complete run(s) of the same machine, then run "
                  f"#{run.id}{judged}")
