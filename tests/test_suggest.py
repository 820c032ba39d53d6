"""Budget suggestions: what they learn from, and paste-ready markers per test function.

Unit tests of the pure parts (:mod:`pytest_energy.history.suggest`), then pytester
runs with a meter whose energies are exact (``SUGGEST_MJ="t_a=1;*=2"``, mJ per call),
so which runs a suggestion learned from shows in its numbers.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from pytest_energy.entry import Entry
from pytest_energy.history.gate_text import SuggestionBasis, suggestion_lines
from pytest_energy.history.suggest import (
    function_id,
    kept_keywords,
    marker_text,
    suggest_budgets,
    suggest_markers,
    variant_id,
)


def entry(nodeid: str, mj: float, latency_ms: float = 1.0, **extra: Any) -> Entry:
    """A measured entry: 5 one-call trials of exactly ``mj`` mJ and ``latency_ms``."""
    return Entry.from_json({
        "nodeid": nodeid, "outcome": "passed", "joules_per_call": mj * 1e-3, "valid": True,
        "meter": "seq", "domains": ["seq:0"], "estimated": False,
        "trials": [{"calls": 1, "window_s": 0.01, "joules": {"seq:0": mj * 1e-3},
                    "latency_ms_median": latency_ms} for _ in range(5)], **extra})


# ----- pure parts ---------------------------------------------------------------------------


def test_function_and_variant_ids() -> None:
    assert function_id("t.py::test_x[b8-fp32]") == "t.py::test_x"
    assert function_id("t.py::Test::test_x[a[1]]") == "t.py::Test::test_x"
    assert function_id("t.py::test_x") == "t.py::test_x"
    assert variant_id(entry("t.py::test_x[b8]", 1)) == "b8"
    assert variant_id(entry("t.py::test_x[b8]", 1, variant="given")) == "given"
    assert variant_id(entry("t.py::test_x", 1)) is None


def test_marker_keeps_items_group_default_and_per_item_budget() -> None:
    kept = entry("t::a", 1, items=8, group="mlp", group_explicit=True, default_variant=True,
                 budget={"joules_per_item": 2e-4})
    assert kept_keywords(kept) == {"items": 8, "joules_per_item": "200 uJ", "group": "mlp",
                                   "default": True}
    implicit = entry("t::a", 1, items=0.5, group="test_a", group_explicit=False)
    assert kept_keywords(implicit) == {"items": 0.5}  # the group by function name is implicit
    assert marker_text(1.3e-3, None, {"items": 8.0, "group": 'my "g"', "default": True}) == (
        '@pytest.mark.energy_budget(joules="1.3 mJ", items=8, group="my \\"g\\"", '
        'default=True)')
    (found,) = suggest_budgets([kept], {})
    assert found.marker == ('@pytest.mark.energy_budget(joules="1.2 mJ", latency_ms="1.2 ms", '
                            'items=8, joules_per_item="200 uJ", group="mlp", default=True)')


def test_a_single_test_gets_its_own_suggestion_as_marker() -> None:
    (marker,) = suggest_markers([entry("t::a", 1, items=4)], {})
    (suggestion,) = marker.suggestions
    assert marker.marker == suggestion.marker and marker.note is None
    assert not marker.parametrized and marker.variant_marks() == []


def test_variants_close_together_share_one_marker_at_the_worst_budget() -> None:
    variants = [entry("t::f[fp32]", 1.0, 1.0, group="g", group_explicit=True),
                entry("t::f[int8]", 1.5, 1.5, group="g", group_explicit=True)]
    (marker,) = suggest_markers(variants, {})
    assert marker.function == "t::f" and marker.worst == "int8"
    assert marker.marker == ('@pytest.mark.energy_budget(joules="1.8 mJ", latency_ms="1.8 ms", '
                             'group="g")')
    assert marker.note is None and marker.variant_marks() == []
    lines = suggestion_lines([marker], 1.2, header=False)
    assert lines == ['  t::f: @pytest.mark.energy_budget(joules="1.8 mJ", latency_ms="1.8 ms", '
                     'group="g")  # 2 variants, worst int8; unbudgeted; 10 trials, 1 run(s)']


def test_variants_far_apart_get_a_note_with_per_variant_marks() -> None:
    variants = [entry("t::f[b1]", 1.0, items=1, default_variant=True),
                entry("t::f[b32]", 10.0, items=32)]
    (marker,) = suggest_markers(variants, {})
    assert marker.marker == '@pytest.mark.energy_budget(joules="12 mJ", latency_ms="1.2 ms")'
    assert marker.note == ("joules 1.2 mJ (b1) to 12 mJ (b32), 10.0x; default, items set per "
                           "variant")
    assert [mark for _, mark in marker.variant_marks()] == [
        'pytest.param(..., id="b1", marks=pytest.mark.energy_budget(joules="1.2 mJ", '
        'latency_ms="1.2 ms", items=1, default=True))',
        'pytest.param(..., id="b32", marks=pytest.mark.energy_budget(joules="12 mJ", '
        'latency_ms="1.2 ms", items=32))']
    lines = suggestion_lines([marker], 1.2, header=False)
    assert lines[0].startswith("  t::f: @pytest.mark.energy_budget(joules=\"12 mJ\"")
    assert lines[1].startswith("    # note: variants differ: joules 1.2 mJ (b1) to 12 mJ")
    assert lines[2:] == [f"    #   {mark}," for _, mark in marker.variant_marks()]
    data = marker.to_dict()
    assert data["worst"] == "b32" and len(data["variant_marks"]) == 2
    assert data["tests"] == ["t::f[b1]", "t::f[b32]"] and data["trials"] == 10


def test_a_shared_budget_is_never_loosened_for_the_function() -> None:
    shared = {"joules": 10e-3, "latency_ms": None}
    loose = entry("t::f[a]", 1.0, budget=shared, budget_use={"joules": 0.1})
    busy = entry("t::f[b]", 9.0, budget=shared, budget_use={"joules": 0.9})
    (marker,) = suggest_markers([loose, busy], {})
    assert [s.nodeid for s in marker.suggestions] == ["t::f[a]"]  # b uses 90%: no news
    assert marker.marker is None  # b needs 11 mJ: no one budget under the shared 10 mJ
    assert marker.note is not None and "variants differ" not in marker.note
    assert [mark for _, mark in marker.variant_marks()] == [
        'pytest.param(..., id="a", marks=pytest.mark.energy_budget(joules="1.2 mJ"))',
        'pytest.param(..., id="b", marks=pytest.mark.energy_budget(joules="10 mJ"))']
    tighter = entry("t::f[b]", 4.0, budget=shared, budget_use={"joules": 0.4})
    (marker,) = suggest_markers([loose, tighter], {})
    assert marker.marker == '@pytest.mark.energy_budget(joules="4.8 mJ")'


def test_without_this_run_only_the_history_counts() -> None:
    now = entry("t::a", 5.0)
    history = {"t::a": [entry("t::a", 1.0), entry("t::a", 1.0)]}
    (marker,) = suggest_markers([now], history, use_current=False)
    (suggestion,) = marker.suggestions
    assert suggestion.joules == pytest.approx(1.2e-3) and suggestion.runs == 2
    assert suggest_markers([now], {}, use_current=False) == []
    (with_now,) = suggest_markers([now], history)
    assert with_now.suggestions[0].joules == pytest.approx(6e-3)


def test_which_runs_a_suggestion_learned_from_is_said() -> None:
    assert SuggestionBasis.for_run("passed", 3).text() == (
        "this run and 3 earlier complete, passing run(s) on this machine")
    regressed = SuggestionBasis.for_run("regressed", 2)
    assert not regressed.current
    assert regressed.text() == ("2 earlier complete, passing run(s) on this machine; this run "
                                "is not used: its compare found a regression")
    assert suggestion_lines([], 1.2, header=True, basis=SuggestionBasis.for_run("failed", 0)) == [
        "energy budget suggestions: none: this run is not used (a test failed) and no earlier "
        "complete, passing run on this machine measured these tests"]


# ----- through pytest -----------------------------------------------------------------------

METERS = textwrap.dedent(
    '''
    import os

    TOTAL = [0.0]


    def tick(name):
        """One call of ``name``: the counter advances by its mJ from SUGGEST_MJ."""
        spec = dict(part.split("=", 1) for part in os.environ["SUGGEST_MJ"].split(";"))
        TOTAL[0] += float(spec.get(name, spec["*"])) * 1e-3


    class ExactMeter:
        name = "exact"
        estimated = False
        update_period_s = 0.0

        def domains(self):
            return ["exact:0"]

        def read(self):
            return {"exact:0": TOTAL[0]}

        def close(self):
            pass
    '''
)

SUITE = textwrap.dedent(
    """
    import pytest
    import suggest_meters

    @pytest.mark.energy_budget(joules=1, rounds=5, trials=5, warmup=0)
    def test_a():
        suggest_meters.tick("a")

    def case(batch, **kw):
        mark = pytest.mark.energy_budget(items=batch, group="mlp", rounds=5, trials=5, warmup=0,
                                         **kw)
        return pytest.param(batch, marks=mark, id=f"b{batch}")

    @pytest.mark.parametrize("batch", [case(1, default=True), case(8)])
    def test_predict(batch):
        suggest_meters.tick(f"b{batch}")
    """
)

STEADY = "*=1"
A_SLOWER = "a=1.2;*=1"  # test_a +20%: a regression


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("PYTEST_ENERGY_STORAGE", "PYTEST_ENERGY_SAVE", "PYTEST_ENERGY_AUTOSAVE",
                 "PYTEST_ENERGY_COMPARE", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(suggest_meters=METERS, test_model=SUITE)
    pytester.syspathinsert()

    def run(energies: str, *args: str) -> pytest.RunResult:
        monkeypatch.setenv("SUGGEST_MJ", energies)
        return pytester.runpytest("--energy-meter=suggest_meters:ExactMeter", "-p",
                                  "no:cacheprovider", *args)

    return run


def _a_line(result: pytest.RunResult) -> str:
    (line,) = [s for s in result.stdout.lines if s.startswith("  test_model.py::test_a:")]
    return line


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_suggestions_learn_from_passing_runs_only(run: Any, pytester: pytest.Pytester) -> None:
    for _ in range(3):  # the gate needs 3 baseline runs before it fails anything
        assert run(STEADY, "--energy-save=main").ret == 0  # passed
    assert run(A_SLOWER, "--energy-compare=main", "--energy-autosave").ret == 1  # regressed
    assert run("a=2000;*=1", "--energy-autosave").ret == 1  # 2 J > 1 J budget: failed
    result = run(STEADY, "--energy-suggest-budgets=budgets.json")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "energy budget suggestions (p95 of per-trial values x 1.2, from this run and 3 "
        "earlier complete, passing run(s) on this machine; up to 10 runs per test; failed, "
        "regressed and interrupted runs are never used):"])
    # 1 mJ in every run used; the regressed 1.2 mJ or failed 2 J would show in the p95
    assert _a_line(result) == ('  test_model.py::test_a: @pytest.mark.energy_budget('
                               'joules="1.2 mJ")  # joules budget 1 J <1% used; 20 trials, '
                               '4 run(s)')
    data = json.loads((pytester.path / "budgets.json").read_text())
    assert data["runs"] == {"current": True, "why_not_current": None, "earlier_runs": 3}
    assert {s["nodeid"] for s in data["suggestions"]} == {
        "test_model.py::test_a", "test_model.py::test_predict[b1]",
        "test_model.py::test_predict[b8]"}


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_a_regressed_run_does_not_teach_its_own_budgets(run: Any) -> None:
    for _ in range(3):  # the gate needs 3 baseline runs before it fails anything
        assert run(STEADY, "--energy-save=main").ret == 0
    result = run(A_SLOWER, "--energy-compare=main", "--energy-suggest-budgets",
                 "--energy-json=report.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "energy budget suggestions (*from 3 earlier complete, passing run(s) on this machine; "
        "this run is not used: its compare found a regression; *"])
    assert _a_line(result).endswith("15 trials, 3 run(s)")
    assert '"1.2 mJ"' in _a_line(result)  # from the baseline's 1 mJ, not this run's 1.2


def test_markers_keep_items_group_and_default(run: Any, pytester: pytest.Pytester) -> None:
    result = run("b1=1;b8=4;*=1", "--energy-suggest-budgets=budgets.json")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        '  test_model.py::test_predict: @pytest.mark.energy_budget(joules="4.8 mJ", '
        'latency_ms=*, group="mlp")  # 2 variants, worst b8; unbudgeted; 10 trials, 1 run(s)',
        "    # note: variants differ: joules 1.2 mJ (b1) to 4.8 mJ (b8), 4.0x; *default, items "
        "set per variant. *per variant instead:",
        '    #   pytest.param(..., id="b1", marks=pytest.mark.energy_budget(joules="1.2 mJ", '
        'latency_ms=*, items=1, group="mlp", default=True)),',
        '    #   pytest.param(..., id="b8", marks=pytest.mark.energy_budget(joules="4.8 mJ", '
        'latency_ms=*, items=8, group="mlp")),',
    ])
    data = json.loads((pytester.path / "budgets.json").read_text())
    markers = {m["function"]: m for m in data["markers"]}
    predict = markers["test_model.py::test_predict"]
    assert predict["keywords"] == {"group": "mlp"} and predict["worst"] == "b8"
    assert predict["joules"] == pytest.approx(4.8e-3)
    assert [v["nodeid"] for v in predict["variant_marks"]] == [
        "test_model.py::test_predict[b1]", "test_model.py::test_predict[b8]"]
    text = run("b1=1;b8=4;*=1", "--energy-suggest-budgets=budgets.txt")
    assert text.ret == 0
    written = (pytester.path / "budgets.txt").read_text()
    assert written.startswith("  test_model.py::test_a: @pytest.mark.energy_budget(")
    assert 'items=1, group="mlp", default=True)),' in written
