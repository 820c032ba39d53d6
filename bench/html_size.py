"""HTML report size and build time. Run: ``python bench/html_size.py [--runs N]``.

Builds the report (:func:`pytest_energy.report.html.render_html`) of a synthetic
measured suite of 100, 1,000 and 5,000 real :class:`~pytest_energy.entry.Entry`
objects (parametrized groups of 4 variants with items and budgets, rated through the
real right-sizing, so the right-sizing charts are there), each with a trend over
``--runs`` earlier runs (default 10) with a noise band on every test and a regression on
a few, and the gate's verdict: everything the page can hold but labels (at most 24 per
page, whatever the suite's size). Prints one table: entries, size, size per entry,
build time. Target: <= 1 MB for 1,000 tests (issue 16). Deterministic (seeded).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence

from tabulate import tabulate

from pytest_energy.entry import Entry
from pytest_energy.report.html import GateView, HtmlReport, render_html
from pytest_energy.report.html_charts import Trend, TrendPoint
from pytest_energy.rightsizing import RightsizingOptions, rightsize

SIZES = (100, 1000, 5000)
MB = 1e6
METER = {"used": {"cpu": {"name": "rapl", "domains": ["package:0"], "estimated": False}}}


def synthetic_entries(count: int, seed: int = 1) -> list[Entry]:
    """``count`` measured entries: groups of 4 batch-size variants (not rated yet)."""
    rng = random.Random(seed)
    entries = []
    for index in range(count):
        group, batch = divmod(index, 4)
        items = 2 ** (2 * batch)
        joules = 0.002 * items ** 0.7 * rng.uniform(0.9, 1.1)
        latency = 0.5 * items ** 0.8 * rng.uniform(0.9, 1.1)
        entries.append(Entry.from_json({
            "nodeid": f"tests/models/test_model_{group:04d}.py::test_predict[batch{items}]",
            "outcome": "passed", "valid": True, "meter": "rapl", "domains": ["package:0"],
            "estimated": False, "joules_per_call": joules, "joules_per_item": joules / items,
            "items": items, "calls": 50, "warmup_calls": 1,
            "latency_ms": {"median": latency, "p95": latency * 1.2},
            "budget": {"joules": joules * 2, "latency_ms": 12.0},
            "budget_use": {"joules": 0.5, "latency": latency / 12.0},
            "group": f"model_{group:04d}", "variant": f"batch{items}", "verdict": "ok",
            "trials": [{"calls": 10, "window_s": 0.1, "joules": {"package:0": joules * 10}}]}))
    return entries


def synthetic_report(count: int, runs: int = 10, seed: int = 1) -> HtmlReport:
    """The report of :func:`synthetic_entries` with trends, bands and a gate verdict."""
    rng = random.Random(seed)
    rated = rightsize(synthetic_entries(count, seed), RightsizingOptions())
    trends, regressed = [], []
    for index, entry in enumerate(rated.entries):
        value = entry.joules_per_call or 0.0
        points = [TrendPoint(f"#{run + 1}", value * rng.uniform(0.93, 1.07))
                  for run in range(runs)]
        worse = index % 97 == 5
        points.append(TrendPoint("this run", value * (1.3 if worse else 1.0), regressed=worse))
        regressed += [entry.nodeid] if worse else []
        trends.append(Trend(entry.nodeid, tuple(points), (value * 0.9, value * 1.1)))
    gate = GateView("regressed", tuple(regressed), ("worse beyond joules:10%",))
    return HtmlReport(title="pytest-energy report", source="this run",
                      created="2025-01-01T00:00:00+00:00", entries=rated.entries,
                      meter=METER, machine={"system": "Linux", "machine": "x86_64"},
                      tables=rated.tables, gate=gate, trends=trends,
                      trends_note=f"{runs} earlier runs")


def measure(count: int, runs: int) -> tuple[int, float]:
    """(bytes, seconds) of one build of the report of ``count`` entries."""
    report = synthetic_report(count, runs)
    start = time.perf_counter()
    text = render_html(report)
    return len(text.encode("utf-8")), time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="earlier runs per trend")
    args = parser.parse_args(argv)
    rows = []
    for count in SIZES:
        size, seconds = measure(count, args.runs)
        rows.append([f"{count:,}", f"{size / MB:.2f} MB", f"{size / count:.0f} B",
                     f"{seconds * 1000:.0f} ms"])
    print(tabulate(rows, headers=["entries", "size", "per entry", "build time"],
                   disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
