"""8 processes, 50 rounds each of save + compare-like read, against one PostgreSQL history:
no run lost, every read sees complete runs only (issue 16). The work is
``bench/postgres_concurrency.py``'s, so the bench and this test cannot disagree."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_support import pg_database_fixture, pg_url_fixture  # noqa: F401

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
def test_eight_writers_lose_no_run_and_readers_see_whole_runs(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # spawned workers import the bench by name
    import postgres_concurrency as bench

    outcome = bench.hammer(pg_url, processes=8, rounds=50)
    assert (outcome.expected, outcome.stored, outcome.lost) == (400, 400, 0)
    assert (outcome.half_read, outcome.reads) == (0, 400)
