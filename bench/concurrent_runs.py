"""Many pytest runs at once against one history: every run passes and is stored.

Run: ``python bench/concurrent_runs.py [--processes 8] [--rounds 3] [--url URL]``.

``--processes`` shells each run ``--rounds`` pytest sessions one after another, all at
the same time, on a small suite measured by a counting meter (1 mJ per read), with
``--energy-autosave`` (compare with the previous runs, then save) and ``--energy-json``.
On a 2-core machine 8 such processes preempt most meter reads: this is where a meter's
read latency was once misjudged and tests read "no energy". The history is a fresh
SQLite directory, and a fresh schema of the PostgreSQL database at ``--url`` (default
``$PYTEST_ENERGY_TEST_POSTGRES``; start one with ``eval "$(bash .ci/postgres-start)"``)
when there is one. One table: runs, exit code 0, tests without a valid number, runs
stored, seconds. Exit status 1 when any run failed or was not stored.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from postgres_concurrency import ENV, drop_schema, fresh_schema_url
from tabulate import tabulate

from pytest_energy.history.location import storage_location
from pytest_energy.history.storage import open_storage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fakes.counting import COUNTING_METER

SUITE = """import pytest

@pytest.mark.energy_budget(joules=1.0, rounds=3, trials=3, warmup=0, items=4)
@pytest.mark.parametrize("n", range(5))
def test_infer(n):
    pass
"""


def one_shell(project: Path, storage: str, shell: int, rounds: int
              ) -> list[tuple[int, list[str]]]:
    """``rounds`` pytest sessions one after another: (exit code, why each test without a
    number has none)."""
    outcomes = []
    for round_no in range(rounds):
        report = project / f"report-{shell}-{round_no}.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
             "no:randomly", "test_suite.py", "--energy-meter=counting_meter:CountingMeter",
             f"--energy-storage={storage}", "--energy-autosave", f"--energy-json={report}"],
            cwd=project, capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONPATH": str(project)})
        tests = json.loads(report.read_text(encoding="utf-8"))["tests"] if report.exists() else []
        outcomes.append((done.returncode, [f"{t['nodeid']}: {t.get('invalid_reason')}"
                                           for t in tests if not t.get("valid")]))
    return outcomes


def hammer(storage: str, processes: int, rounds: int) -> list[Any]:
    """One row of the table for the history at ``storage``."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "counting_meter.py").write_text(COUNTING_METER, encoding="utf-8")
        (project / "test_suite.py").write_text(SUITE, encoding="utf-8")
        began = time.perf_counter()
        with ThreadPoolExecutor(processes) as pool:
            shells = list(pool.map(lambda i: one_shell(project, storage, i, rounds),
                                   range(processes)))
        seconds = time.perf_counter() - began
    outcomes = [o for shell in shells for o in shell]
    history = open_storage(storage_location(storage), create=False)
    stored = 0
    if history is not None:
        with history:
            stored = len(history.runs())
    for _, reasons in outcomes:
        for reason in reasons:
            print(f"  {storage_location(storage).kind}: {reason}", file=sys.stderr)
    return [storage_location(storage).kind, processes, rounds, len(outcomes),
            sum(code == 0 for code, _ in outcomes), sum(len(bad) for _, bad in outcomes),
            stored, f"{seconds:.1f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get(ENV),
                        help=f"a PostgreSQL server (default ${ENV}); none: SQLite only")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(hammer(str(Path(tmp) / "history"), args.processes, args.rounds))
    if args.url:
        url, schema = fresh_schema_url(args.url)
        try:
            rows.append(hammer(url, args.processes, args.rounds))
        finally:
            drop_schema(args.url, schema)
    print(tabulate(rows, headers=["history", "processes", "rounds", "runs", "exit 0",
                                  "tests without a number", "runs stored", "seconds"]))
    ok = all(row[4] == row[3] and row[5] == 0 and row[6] == row[3] for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
