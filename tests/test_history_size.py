"""Issue 14's target: a 5,000-test measured suite keeps its history at <= 2 MB per saved
run (it was 21 MB). The suite is bench/history_size.py's, saved through the real path."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.history.storage import db_path, open_storage

MB = 1_000_000
BENCH = Path(__file__).resolve().parents[1] / "bench" / "history_size.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("history_size_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_5000_test_run_takes_at_most_2_mb(tmp_path: Path) -> None:
    bench = _bench()
    rng = random.Random(14)
    sizes = []
    for number in range(2):
        entries = bench.suite(rng, 5000)
        storage = open_storage(tmp_path, create=True)
        assert storage is not None
        with storage:
            storage.save_run(bench._new_run(number), entries,
                             {entry.nodeid: bench.IDENTITY for entry in entries})
        sizes.append(db_path(tmp_path).stat().st_size)
    first, growth = sizes[0], sizes[1] - sizes[0]
    assert first <= 2 * MB and growth <= 2 * MB, (first, growth)
