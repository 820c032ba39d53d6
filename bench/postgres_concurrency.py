"""Many writers on one PostgreSQL history: no run lost, no run read half-written.

Run: ``python bench/postgres_concurrency.py [--url URL] [--processes 8] [--rounds 50]``
(the URL defaults to ``$PYTEST_ENERGY_TEST_POSTGRES``; start a server with
``eval "$(bash .ci/postgres-start)"``).

``--processes`` processes (spawned, as separate CI runners would be) each do
``--rounds`` rounds of what a CI job does: save a run (:meth:`save_run`), then read like
a compare (:meth:`runs` with ``complete_only``, then every entry of the newest). Runs
have different sizes, so a run seen before all its results were written would show
fewer entries than its ``tests``. Afterwards the history must hold every run saved,
each with all its results. One table: runs saved, lost, half-read, seconds. The
history lives in a fresh schema of the database, dropped at the end.

``tests/test_postgres_concurrency.py`` runs the same with the issue's figures (8 x 50).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from pytest_energy.entry import Entry
from pytest_energy.history.location import storage_location
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import open_storage

ENV = "PYTEST_ENERGY_TEST_POSTGRES"


@dataclass(frozen=True)
class Outcome:
    """What the processes did and what the history holds afterwards."""

    expected: int  # runs the processes saved (processes x rounds)
    stored: int  # runs in the history afterwards
    lost: int  # saved runs missing, or stored with fewer results than tests
    half_read: int  # reads that saw a run with fewer entries than its tests
    reads: int
    seconds: float


def _entries(size: int, round_no: int) -> list[Entry]:
    return [Entry.from_json({
        "nodeid": f"tests/test_m{k % 3}.py::test_{k}", "outcome": "passed", "valid": True,
        "joules_per_call": 1.0 + round_no / 100, "meter": "bench",
        "trials": [{"calls": 10, "window_s": 0.01, "joules": {"bench:0": 10.0 + k}}] * 3})
        for k in range(size)]


def worker(url: str, index: int, rounds: int) -> tuple[list[tuple[int, int]], int, int]:
    """One process: (saved (run id, tests) pairs, half-read runs seen, reads)."""
    saved: list[tuple[int, int]] = []
    half = reads = 0
    storage = open_storage(storage_location(url), create=True)
    assert storage is not None
    with storage:
        for round_no in range(rounds):
            size = 3 + (index * rounds + round_no) % 17
            run = NewRun(created="2025-01-01T00:00:00+00:00", fingerprint=f"fp{index % 2}",
                         machine={"worker": index}, meter={}, name=f"w{index}",
                         status="passed")
            info = storage.save_run(run, _entries(size, round_no))
            saved.append((info.id, size))
            newest = storage.runs(complete_only=True, limit=5)[0]
            reads += 1
            half += len(storage.entries(newest.id)) != newest.tests
    return saved, half, reads


def hammer(url: str, processes: int = 8, rounds: int = 50) -> Outcome:
    """Run the processes against the history at ``url`` (empty), then check it."""
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(worker, [(url, i, rounds) for i in range(processes)])
    seconds = time.perf_counter() - start
    saved = dict(pair for result in results for pair in result[0])
    storage = open_storage(storage_location(url), create=False)
    assert storage is not None
    with storage:
        stored = {run.id: run.tests for run in storage.runs()}
        lost = sum(1 for run_id, tests in saved.items()
                   if stored.get(run_id) != tests
                   or len(storage.entries_json(run_id)) != tests)
    return Outcome(expected=processes * rounds, stored=len(stored), lost=lost,
                   half_read=sum(r[1] for r in results), reads=sum(r[2] for r in results),
                   seconds=seconds)


def fresh_schema_url(url: str) -> tuple[str, str]:
    schema = "bench_" + uuid.uuid4().hex[:12]
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}", schema


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get(ENV), help=f"default ${ENV}")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    if not args.url:
        parser.error(f"no --url and ${ENV} is not set")
    url, schema = fresh_schema_url(args.url)
    try:
        outcome = hammer(url, args.processes, args.rounds)
    finally:
        drop_schema(args.url, schema)
    rows: list[list[Any]] = [[args.processes, args.rounds, outcome.expected, outcome.stored,
                              outcome.lost, f"{outcome.half_read} of {outcome.reads}",
                              f"{outcome.seconds:.1f}"]]
    print(tabulate(rows, headers=["processes", "rounds", "runs saved", "runs stored", "lost",
                                  "half-read", "seconds"]))
    ok = outcome.stored == outcome.expected and not outcome.lost and not outcome.half_read
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
