"""History size per saved run. Run: ``python bench/history_size.py [--tests N] [--runs N]``.

Builds a synthetic measured suite (default 5,000 tests) of real
:class:`~pytest_energy.entry.Entry` objects shaped like what the estimate meter records
(5 trials, one domain, a busy condition on some tests, a coarse-window warning on others,
groups and variants, ratings) with fresh numbers in every run, saves ``--runs`` runs
through the real save path (:meth:`Storage.save_run`) and prints one table: the file
size after the first run and the growth per further run, for

* ``schema 2 (JSON per test)``: the layout before schema 3, one JSON object per test
  (built here with that schema's own statements, so the figure does not drift);
* ``this version``: what ``--energy-save`` writes now.

Also the time to save one run and to read one run back (every entry). Target: <= 2 MB
per saved run of a 5,000-test suite (issue 14). Figures are deterministic (seeded).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pytest_energy.entry import Entry
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import db_path, open_storage

MB = 1e6

# Schema 2 as pytest-energy wrote it before schema 3, verbatim.
SCHEMA_2 = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created TEXT NOT NULL,
    commit_sha TEXT, dirty INTEGER, branch TEXT, fingerprint TEXT NOT NULL,
    machine TEXT NOT NULL, meter TEXT NOT NULL, plugin_version TEXT, tests INTEGER NOT NULL,
    status TEXT);
CREATE INDEX runs_by_fingerprint ON runs (fingerprint, id);
CREATE INDEX runs_by_name ON runs (name, id);
CREATE TABLE results (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    nodeid TEXT NOT NULL, outcome TEXT, meter_identity TEXT, joules_per_call REAL,
    joules_per_item REAL, latency_ms REAL, budget_joules REAL, budget_latency_ms REAL,
    entry TEXT NOT NULL, PRIMARY KEY (run_id, nodeid));
CREATE INDEX results_by_nodeid ON results (nodeid, run_id);
PRAGMA user_version = 2;
"""

MACHINE = {"node": "ci-runner-7", "system": "Linux", "release": "6.8.0", "machine": "x86_64",
           "processor": "x86_64", "cpu_count": 16, "python": "3.11.7",
           "python_implementation": "CPython", "cpu_model": "AMD EPYC 7763 64-Core Processor"}
METER = {"requested": "auto", "used": {"estimate": {"name": "estimate", "estimated": True}}}
IDENTITY = '{"domains":["cpu:process"],"estimated":true,"meter":"estimate"}'


def _trial(rng: random.Random, calls: int, per_call_j: float, latency_ms: float
           ) -> dict[str, Any]:
    window = round(calls * latency_ms / 1000 * rng.uniform(0.95, 1.05), 9)  # ns clock
    return {"calls": calls, "window_s": window,
            "joules": {"cpu:process": per_call_j * calls * rng.uniform(0.9, 1.1)},
            "items": None, "latency_ms_median": round(latency_ms * rng.uniform(0.95, 1.05), 7),
            "counted_steps": None, "phase_set": None}


def _entry(rng: random.Random, index: int) -> Entry:
    """One measured test as the estimate meter records it, with this run's numbers."""
    group, variant = divmod(index, 8)
    calls = rng.choice((40, 138, 250, 690))
    latency = rng.uniform(0.1, 20.0)
    per_call = latency / 1000 * 10 * rng.uniform(0.8, 1.2)
    items = 2 ** (variant % 6)
    trials = [_trial(rng, calls // 5, per_call, latency) for _ in range(5)]
    values = sorted(t["joules"]["cpu:process"] / t["calls"] for t in trials)
    spread = {"min": values[0], "max": values[-1], "cv": rng.uniform(0.005, 0.08)}
    busy = rng.random() < 0.3
    return Entry.from_json({
        "nodeid": f"tests/models/test_family_{group // 25:03d}.py::"
                  f"test_infer[model{group}-bs{items}-v{variant}]",
        "outcome": "passed", "joules_per_call": values[2],
        "joules_per_item": values[2] / items, "joules_per_call_by_domain": {
            "cpu:process": values[2]},
        "conditions": [f"busy: other processes used {rng.uniform(0.5, 2):.1f} of 16 CPUs "
                       f"while measuring (this test {rng.uniform(0.5, 1):.1f}, load "
                       f"{rng.uniform(0.5, 3):.1f})"] if busy else [],
        "machine_load": {"busy": busy, "judged": True, "foreign_cpus": round(rng.random(), 3),
                         "own_cpus": round(rng.random(), 3), "cpus": 16,
                         "threshold_cpus": 0.5, "steal": 0.0,
                         "load_1m": round(rng.uniform(0, 3), 2),
                         "seconds": round(rng.uniform(0.05, 2), 2)},
        "joules_spread": spread, "watts": rng.uniform(5, 15),
        "latency_ms": {"median": round(latency, 7), "p95": round(latency * 1.2, 7),
                       "mean": latency * rng.uniform(0.99, 1.05),
                       "min": round(latency * 0.9, 6), "max": round(latency * 3, 6)},
        "calls": calls, "warmup_calls": 1, "items": items, "estimated": True,
        "meter": "estimate", "domains": ["cpu:process"], "device": "cpu",
        "update_period_s": 0.004, "lock_wait_s": rng.uniform(1e-5, 1e-4), "plan": "windows",
        "valid": True,
        "warnings": [f"coarse windows: a {latency * calls / 5:.1f} ms window spans "
                     f"{latency * calls / 20:.1f} updates of the 4 ms counter (recommended >= "
                     "10): per-call energy is coarse; raise rounds or max_time"]
        if rng.random() < 0.2 else [],
        "trials": trials,
        "trials_reason": f"5 trials of {calls // 5} calls, as asked (trials=5, --energy-trials)",
        "budget": {"joules": 1.0, "joules_per_item": None, "latency_ms": 50.0,
                   "latency_stat": "median"},
        "group": f"model{group}", "group_explicit": True, "variant": f"bs{items}-v{variant}",
        "budget_use": {"joules": values[2], "latency": latency / 50, "joules_per_item": None},
        "rating": rng.randint(1, 5), "rating_rule": "group", "verdict": "ok",
        "budget_rating": 5, "wh_per_1000_items": values[2] / items / 3.6,
        "group_rank": variant + 1, "group_size": 8, "rating_metric": "J/item"})


def suite(rng: random.Random, tests: int) -> list[Entry]:
    return [_entry(rng, index) for index in range(tests)]


def _new_run(number: int) -> NewRun:
    return NewRun(created=f"2025-01-{number + 1:02d}T00:00:00+00:00", fingerprint="0123abcd",
                  machine=MACHINE, meter=METER, name="main" if number == 0 else None,
                  commit="0123456789abcdef0123456789abcdef01234567", dirty=False,
                  branch="main", plugin_version="0.1.0", status="passed")


def _schema_2_save(db: sqlite3.Connection, number: int, entries: Sequence[Entry]) -> None:
    """A run saved the way schema 2 stored it: one JSON object per test."""
    run = _new_run(number)
    with db:
        run_id = db.execute(
            "INSERT INTO runs (name, created, commit_sha, dirty, branch, fingerprint, machine, "
            "meter, plugin_version, tests, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run.name, run.created, run.commit, 0, run.branch, run.fingerprint,
             json.dumps(run.machine), json.dumps(run.meter), run.plugin_version,
             len(entries), run.status)).lastrowid
        db.executemany(
            "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(run_id, e.nodeid, "passed", IDENTITY, e.joules_per_call, e.joules_per_item,
              e.latency("median"), e.budget.joules, e.budget.latency_ms,
              json.dumps(e.to_json(), sort_keys=True, allow_nan=False)) for e in entries])


def _measure(label: str, directory: Path, runs: Sequence[list[Entry]]) -> list[str]:
    """Save every run (through the real save path unless ``label`` says schema 2)."""
    path = db_path(directory)
    sizes: list[int] = []
    save_s: list[float] = []
    legacy = label.startswith("schema 2")
    if legacy:
        directory.mkdir(parents=True)
        connection = sqlite3.connect(path)
        connection.executescript(SCHEMA_2)
    for number, entries in enumerate(runs):
        start = time.perf_counter()
        if legacy:
            _schema_2_save(connection, number, entries)
        else:
            with open_storage(directory, create=True) as storage:  # type: ignore[union-attr]
                storage.save_run(_new_run(number), entries, {e.nodeid: IDENTITY
                                                            for e in entries})
        save_s.append(time.perf_counter() - start)
        sizes.append(path.stat().st_size)
    if legacy:
        connection.close()
    read_s = _read_time(directory)  # a schema 2 file is read as it is (read only)
    growth = (sizes[-1] - sizes[0]) / (len(sizes) - 1) if len(sizes) > 1 else sizes[0]
    return [label, f"{sizes[0] / MB:.2f} MB", f"{growth / MB:.2f} MB",
            f"{sizes[-1] / MB:.2f} MB", f"{min(save_s):.2f} s",
            f"{read_s:.2f} s"]


def _read_time(directory: Path) -> float:
    storage = open_storage(directory, create=False)
    assert storage is not None
    with storage:
        start = time.perf_counter()
        storage.entries(storage.runs(limit=1)[0].id)
        return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=5000, help="tests per run (5000)")
    parser.add_argument("--runs", type=int, default=4, help="runs saved (4)")
    args = parser.parse_args(argv)
    rng = random.Random(14)
    runs = [suite(rng, args.tests) for _ in range(args.runs)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("schema 2 (JSON per test)", "this version"):
            rows.append(_measure(label, Path(tmp) / label.split()[0], runs))
    print(f"{args.tests} measured tests per run, {args.runs} runs saved; target <= 2 MB per run")
    print(tabulate(rows, headers=["layout", "first run", "per further run", "file",
                                  "save one run", "read one run"], disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
