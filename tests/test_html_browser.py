"""The HTML report of the examples suite in a real browser: headless Debian Chromium,
driven by Playwright (issue 16's "done when").

It opens with no console error, shows one row per test of the JSON report, sorts by a
click on a header (numbers as numbers, a second click reverses), and its charts render:
SVGs whose shapes have a non-zero size. Slow (it runs the examples and a browser):
``pytest -m browser`` (or ``-m slow``). Without Playwright or Chromium it skips with
the reason, except in CI (``CI`` set), where it fails: CI installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("PYTEST_ENERGY_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def _missing(why: str) -> None:
    """Skip with the reason; in CI, where both are installed, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI installs it: see .ci/run)")
    pytest.skip(why)


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python playwright is not installed (pip install playwright; the browser "
                 "is Debian's chromium, never playwright install)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set "
                 "PYTEST_ENERGY_CHROMIUM)")
    return sync_playwright


@pytest.fixture(scope="module")
def examples_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The examples suite run twice into a fresh history (so the report has trends),
    the second time with --energy-html and --energy-json."""
    try:
        import torch  # noqa: F401  (the examples build their models with it)
    except ImportError:
        _missing("the examples need the examples extra (pip install -e '.[examples]')")
    out = tmp_path_factory.mktemp("html")
    html, report = out / "report.html", out / "report.json"
    command = [sys.executable, "-m", "pytest", "examples", "-q", "-p", "no:cacheprovider",
               "-p", "no:randomly", f"--energy-storage={out / 'history'}",
               "--energy-autosave"]
    for extra in ([], [f"--energy-html={html}", f"--energy-json={report}"]):
        done = subprocess.run(command + extra, cwd=ROOT, capture_output=True, text=True,
                              timeout=600, check=False)
        # 1: a budget failed on a loaded machine; the report is what is tested here
        assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    return html, json.loads(report.read_text(encoding="utf-8"))


def _column(page: Any, index: int) -> list[str | None]:
    return list(page.eval_on_selector_all(
        "#summary-table tbody tr",
        f"rows => rows.map(r => r.cells[{index}].getAttribute('data-v'))"))


def _numbers(values: list[str | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def test_the_examples_report_in_headless_chromium(
        examples_report: tuple[Path, dict[str, Any]]) -> None:
    html, report = examples_report
    sync_playwright = _playwright()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: problems.append(f"request: {r.url}")
                    if not r.url.startswith(("file:", "data:")) else None)
            page.goto(html.as_uri())
            page.wait_for_load_state("load")

            ids = page.eval_on_selector_all("#summary-table tbody tr",
                                            "rows => rows.map(r => r.cells[0].textContent)")
            assert ids == [test["nodeid"] for test in report["tests"]]

            headers = page.eval_on_selector_all("#summary-table th",
                                                "hs => hs.map(h => h.textContent)")
            column = headers.index("J/call")
            header = page.locator("#summary-table th").nth(column)
            header.click()
            ascending = _numbers(_column(page, column))
            assert len(ascending) >= 2 and ascending == sorted(ascending)
            assert header.get_attribute("aria-sort") == "ascending"
            header.click()
            descending = _numbers(_column(page, column))
            assert descending == sorted(ascending, reverse=True)
            assert header.get_attribute("aria-sort") == "descending"

            charts = page.eval_on_selector_all("svg.chart, td > svg", """svgs => svgs.map(svg => {
                const box = svg.getBoundingClientRect();
                const shapes = [...svg.querySelectorAll('rect, path, polyline, line, circle')]
                    .filter(s => { const b = s.getBBox(); return b.width > 0 && b.height > 0; });
                return [box.width, box.height, shapes.length, svg.classList.contains('chart')];
            })""")
            assert any(chart[3] for chart in charts), "no right-sizing chart"
            assert any(not chart[3] for chart in charts), "no trend"
            assert all(w > 0 and h > 0 and shapes > 0 for w, h, shapes, _ in charts), charts
            assert problems == []
        finally:
            browser.close()
