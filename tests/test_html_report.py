"""The HTML report (--energy-html, pytest-energy report --html): one offline file, the
terminal's numbers and ratings, every string escaped, small enough for big suites."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fakes.counting import COUNTING_METER

from pytest_energy import cli
from pytest_energy.entry import Entry
from pytest_energy.history.machine import cpu_model, fingerprint, machine_identity
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import open_storage
from pytest_energy.report.html import GateView, HtmlReport, charted, render_html, write_html
from pytest_energy.report.html_charts import Trend, TrendPoint, rightsizing_chart, trend_chart
from pytest_energy.report.html_history import bands, build_trends
from pytest_energy.report.jsonreport import machine_info

BENCH = Path(__file__).resolve().parents[1] / "bench" / "html_size.py"
HERE = {**machine_info(), "cpu_model": cpu_model()}
SUITE = '''
import pytest

@pytest.mark.energy_budget(joules=1, latency_ms=1000, items=8, rounds=2, trials=3, warmup=0,
                           group="mlp")
@pytest.mark.parametrize("size", [1, 2, 3], ids=["small", "<script>alert(1)</script>", "big"])
def test_variant(size):
    sum(range(size * 1000))


@pytest.mark.energy_budget(rounds=2, trials=3, warmup=0)
def test_single():
    pass


def test_not_measured():
    pass
'''
ARGS = ["--energy-meter=counting_meter:CountingMeter", "-p", "no:cacheprovider"]


class Rows(HTMLParser):
    """The summary table's rows: each row's cells as (text, data-v)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str | None]]] = []
        self._in_table = self._in_body = False
        self._cell: list[str] | None = None
        self._value: str | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self._in_table = found.get("id") == "summary-table"
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self._cell, self._value = [], found.get("data-v")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(("".join(self._cell), self._value))
            self._cell = None
        elif tag == "table":
            self._in_table = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows_of(text: str) -> Rows:
    parser = Rows()
    parser.feed(text)
    return parser


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(counting_meter=COUNTING_METER, test_suite=SUITE)
    pytester.syspathinsert()
    return pytester


def _network_references(text: str) -> list[str]:
    """src=, href= or url() that would load something from the network."""
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*|"""
                      r"""url\(\s*["']?(?:https?:)?//[^)]*""", text, re.IGNORECASE)


# ----- the plugin: --energy-html ---------------------------------------------------------------


def test_the_report_rows_ratings_escaping_and_no_network(suite: pytest.Pytester) -> None:
    """One run checks it all (each pytester run costs): a row per test of the JSON
    report with its rating, the parametrize id with <script> escaped, nothing loaded
    from the network, and no history read or created where there is none."""
    result = suite.runpytest_inprocess(*ARGS, "--energy-html=out/report.html",
                                       "--energy-json=report.json")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["energy HTML report: out/report.html"])
    text = (suite.path / "out" / "report.html").read_text(encoding="utf-8")
    tests = json.loads((suite.path / "report.json").read_text())["tests"]
    parsed = rows_of(text)
    assert [row[0][0] for row in parsed.rows] == [t["nodeid"] for t in tests]
    assert len(parsed.rows) == 4  # three variants and test_single; test_not_measured: none
    rating_column = 7  # test, J/call, J/item, latency med, p95, calls, budget use, rating
    for row, test in zip(parsed.rows, tests, strict=True):
        text_cell, value = row[rating_column]
        assert value == (None if test["rating"] is None else str(test["rating"]))
        assert text_cell.count("\u2605") == (test["rating"] or 0)
    assert "meter counting count:0 (hardware counter)" in text  # what the numbers are
    assert 'id="rightsizing"' in text and '<svg class="chart"' in text
    # escaping: the id is shown as text, and the report's own script is the only one
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert parsed.scripts == 1 and text.count("<script") == 1
    # offline: no src/href/url() to the network; the only URLs are SVG namespace names
    assert _network_references(text) == []
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in text  # and the browser is told so
    # no history: said so, and none created
    assert "no results history at" in text and "no gate" in text
    assert not (suite.path / ".energy").exists()


def test_an_unwritable_path_from_the_environment_is_a_clear_error(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    (suite.path / "afile").write_text("")
    monkeypatch.setenv("PYTEST_ENERGY_HTML", "afile/report.html")
    result = suite.runpytest_inprocess(*ARGS)
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*could not write the HTML report to afile/report.html*"])
    assert "Traceback" not in result.stdout.str()


# ----- pieces ---------------------------------------------------------------------------------


def entry(nodeid: str, joules: float = 1.0, **extra: Any) -> Entry:
    return Entry.from_json({
        "nodeid": nodeid, "outcome": "passed", "joules_per_call": joules, "valid": True,
        "meter": "rapl", "domains": ["package:0"], "calls": 10,
        "trials": [{"calls": 10, "window_s": 0.01, "joules": {"package:0": joules * 10}}] * 5,
        **extra})


def report_of(entries: list[Entry], **fields: Any) -> HtmlReport:
    values: dict[str, Any] = {"title": "t", "source": "this run", "created": "2025-01-01",
                              "entries": entries, "meter": {}, "machine": {}, "tables": [],
                              "gate": GateView("passed"), **fields}
    return HtmlReport(**values)


def test_every_string_is_escaped_in_tables_charts_and_the_gate() -> None:
    evil = '<img src=x onerror="alert(1)">'
    table = {"title": evil, "metric": "joules_per_item", "recommended": evil,
             "variants": [{"variant": evil, "nodeid": evil, "metric_value": 1.0,
                           "completed": True, "meets_latency": True}]}
    report = report_of([entry(evil)], meter={"used": {"x": {"name": evil}}}, tables=[table],
                       gate=GateView("regressed", (evil,), (evil,)),
                       trends=[Trend(evil, (TrendPoint(evil, 1.0), TrendPoint(evil, 2.0)))])
    text = render_html(report)
    assert "<img" not in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text


def test_gate_states_come_from_the_gate_result() -> None:
    assert GateView.of_result({"status": "failed", "regressions": ["a"]}).state == "regressed"
    assert GateView.of_result({"status": "passed"}).state == "passed"
    assert GateView.of_result({"status": "passed", "exit_status": 3}).state == "error"
    assert GateView.of_result({"status": "no baseline"}).state == "no baseline"
    assert GateView.of_result(None).state == "no gate"
    assert GateView.of_status("regressed", "#3").state == "regressed"


def test_trends_carry_the_gates_band_and_regressions() -> None:
    result = {"regressions": ["t.py::a"], "tests": [
        {"nodeid": "t.py::a", "metrics": [{"metric": "joules", "baseline": 1.0,
                                           "detectable": 0.25},
                                          {"metric": "latency_ms", "baseline": 5.0,
                                           "detectable": 0.1}]},
        {"nodeid": "t.py::b", "metrics": [{"metric": "joules", "baseline": 1.0,
                                           "detectable": None}]}]}
    assert bands(result) == {"t.py::a": (0.8, 1.25)}
    earlier = [("#1", {"t.py::a": entry("t.py::a", 1.0)}), ("#2", {})]
    trends = build_trends(earlier, [entry("t.py::a", 1.5), entry("t.py::b", 1.0)],
                          "this run", result)
    first = trends[0]
    assert [p.run for p in first.points] == ["#1", "this run"]
    assert first.band == (0.8, 1.25) and first.points[-1].regressed
    assert trends[1].band is None and not trends[1].points[-1].regressed
    svg = trend_chart(first)
    assert 'class="band"' in svg and 'class="reg"' in svg and "<polyline" in svg


def test_the_rightsizing_chart_marks_the_latency_budget() -> None:
    rows = [{"variant": f"b{n}", "metric_value": 1.0 / n, "latency_ms_median": 2.0 * n,
             "latency_budget_ms": 5.0, "meets_latency": n < 4, "completed": True,
             "recommended": n == 2} for n in (1, 2, 4)]
    svg = rightsizing_chart({"metric": "joules_per_item", "variants": rows})
    assert svg.count('<rect class="b') == 3 and 'class="b best"' in svg
    assert 'class="l over"' in svg  # b4 is over its latency budget
    assert '<path class="budget"' in svg and "latency budget 5 ms (median)" in svg


def test_many_groups_chart_those_that_save_most() -> None:
    tables = [{"saving_vs_worst": n / 100} for n in range(60)]
    shown = charted(tables)
    assert sum(shown) == 40 and shown[-1] and not shown[0]


def test_the_file_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_html(str(tmp_path / "r.html"), report_of([entry("t.py::a")]))
    finally:
        os.umask(old)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o640


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_a_report_of_1000_tests_stays_under_1_mb() -> None:
    spec = importlib.util.spec_from_file_location("html_size_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.synthetic_report(1000, runs=19)  # a full trend: 20 runs per test
    text = render_html(report)
    assert len(text.encode("utf-8")) <= 1_000_000
    assert text.count("<tr><td>") == 1000


# ----- the CLI: pytest-energy report --html ------------------------------------------------------


def save(directory: Path, entries: list[Entry], **run: Any) -> int:
    storage = open_storage(directory, create=True)
    assert storage is not None
    with storage:
        new = NewRun(created="2025-01-01T00:00:00+00:00",
                     fingerprint=fingerprint(machine_identity(HERE)), machine=HERE,
                     meter={}, status="passed", **run)
        return storage.save_run(new, entries).id


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_report_of_the_latest_run_with_trends(tmp_path: Path) -> None:
    for joules in (1.0, 1.02, 0.98, 1.01, 2.0):
        save(tmp_path, [entry("t.py::a", joules), entry("t.py::b", joules * 3),
                        entry("t.py::c", joules * 5)])
    target = tmp_path / "out.html"
    code, out, err = run("--storage", str(tmp_path), "report", "--html", str(target))
    assert code == 0, err
    assert "wrote" in out and "run #5" in out
    text = target.read_text(encoding="utf-8")
    assert [row[0][0] for row in rows_of(text).rows] == ["t.py::a", "t.py::b", "t.py::c"]
    assert text.count("<polyline") == 3  # a trend per test, over the 5 runs
    assert 'class="band"' in text  # 4 baseline runs: the gate measured the spread
    assert "saved with status passed" in text


def test_cli_report_of_a_named_run(tmp_path: Path) -> None:
    save(tmp_path, [entry("t.py::a")], name="main")
    save(tmp_path, [entry("t.py::z")])
    code, _out, err = run("--storage", str(tmp_path), "report", "main", "--html",
                          str(tmp_path / "r.html"))
    assert code == 0, err
    assert "t.py::a" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_cli_report_without_history_or_writable_path_exits_3(tmp_path: Path) -> None:
    code, _out, err = run("--storage", str(tmp_path / "none"), "report", "--html",
                          str(tmp_path / "r.html"))
    assert code == 3 and "no results history" in err
    save(tmp_path, [entry("t.py::a")])
    (tmp_path / "afile").write_text("")
    code, _out, err = run("--storage", str(tmp_path), "report", "--html",
                          str(tmp_path / "afile" / "r.html"))
    assert code == 3 and "cannot write --html" in err
    code, _out, err = run("--storage", str(tmp_path), "report", "#9", "--html",
                          str(tmp_path / "r.html"))
    assert code == 3 and "no run #9" in err


def test_a_pytest_runs_trends_leave_out_the_run_the_gate_just_saved(tmp_path: Path) -> None:
    from pytest_energy.history.location import storage_location
    from pytest_energy.report.html_history import run_trends

    first = save(tmp_path, [entry("t.py::a", 1.0)])
    just_saved = save(tmp_path, [entry("t.py::a", 2.0)])
    here = fingerprint(machine_identity(HERE))
    trends = run_trends(storage_location(tmp_path), [entry("t.py::a", 2.0)],
                        {"saved": {"id": just_saved}, "fingerprint": here})
    assert [p.run for p in trends.lines[0].points] == [f"#{first}", "this run"]
    assert "1 earlier complete run(s)" in trends.note
