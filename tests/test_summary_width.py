"""The default summary fits the terminal (issue 15 item 2): a compact set of columns,
the meter said once in the header, long test ids shortened in the middle keeping the
function name and the parameter id; the full table with -v or --energy-columns=all;
chosen columns with --energy-columns. Before, 52 of 73 lines of the examples' summary
were wider than 80 characters (the longest 323)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.report.columns import COLUMN_NAMES, parse_columns
from pytest_energy.report.compact import CELLS
from pytest_energy.report.fit import Column, fit_table, kept_width, short_id, shorten_middle

REPO = Path(__file__).resolve().parent.parent
FUNCTION = "test_classifier_predict"

# A realistic suite: a long path, parametrized variants, a per-item budget, an expected
# over-budget failure, and the estimate meter with its long fall-back notes (no RAPL,
# no NVML).
SUITE = f"""
    import pytest

    @pytest.mark.parametrize("batch", [
        pytest.param(b, id=f"batch{{b}}-bf16-seq128",
                     marks=pytest.mark.energy_budget(joules=10, latency_ms=1000, items=b))
        for b in (1, 8, 32)])
    def {FUNCTION}(batch):
        sum(range(200 * batch))

    @pytest.mark.xfail(strict=True)
    @pytest.mark.energy_budget(joules="1 nJ")
    def test_over_budget_expected():
        sum(range(20000))
    """
MODULE = "test_text_classification_inference_with_transformers"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_ENERGY_POWERCAP_ROOT", str(pytester.path / "no-powercap"))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML bindings
    monkeypatch.setenv("COLUMNS", "80")
    pytester.makepyfile(**{MODULE: SUITE})
    return pytester


def energy_lines(text: str) -> list[str]:
    """Every line from the energy summary's header to the end of the output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "energy summary" in line)
    return lines[start:]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--energy-rounds=2", "--energy-trials=2",
                              "--energy-warmup-settle=0", "-p", "no:cacheprovider", *args)


def test_every_summary_line_fits_80_columns(suite: pytest.Pytester) -> None:
    result = run(suite)
    result.assert_outcomes(passed=3, xfailed=1)
    lines = energy_lines(result.stdout.str())
    wide = [line for line in lines if len(line) > 80]
    assert not wide, "\n".join(wide)
    text = "\n".join(lines)
    # the function name and the parameter id survive the shortening
    for batch in (1, 8, 32):
        # (how much of the path is kept depends on the columns that fit: values vary)
        assert f"{FUNCTION}[batch{batch}-bf16-seq128]" in text
    assert "energy right-sizing" in text and "energy hints" in text  # those fit too
    table = lines[lines.index(next(x for x in lines if x.startswith("test "))):]
    header = table[0].split()
    # the meter is said once, above the table, not on every row; no "est." per cell
    assert "meter" not in header and "estimate cpu:process" in text.split(table[0])[0]
    assert " est." not in "\n".join(table[2:6])
    assert "every energy above is estimated, not measured" in text
    assert "over (xfail)" in text
    # what did not fit is named above the table
    above = lines[:lines.index(table[0])]
    assert any(line.startswith("left out to fit 80 columns: budget, ") for line in above)


def test_wider_terminals_get_more_columns(suite: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "140")
    lines = energy_lines(run(suite).stdout.str())
    assert max(len(line) for line in lines) <= 140
    header = next(line for line in lines if line.startswith("test ")).split()
    assert header == ["test", "J/call", "J/item", "latency", "budget", "rating", "verdict"]
    assert not any(line.startswith("left out to fit") for line in lines)


@pytest.mark.parametrize("option", ["-v", "--energy-columns=all"])
def test_verbose_and_all_print_the_full_table(suite: pytest.Pytester, option: str) -> None:
    lines = energy_lines(run(suite, option).stdout.str())
    header = next(line for line in lines if line.startswith("test "))
    assert header.split()[:8] == ["test", "J/call", "J/item", "latency", "med", "p95",
                                  "calls", "budget"]
    assert "meter" in header.split() and "rated" in header.split()
    assert f"{MODULE}.py::{FUNCTION}[batch8-bf16-seq128]" in "\n".join(lines)


def test_energy_columns_chooses_the_columns(suite: pytest.Pytester) -> None:
    result = run(suite, "--energy-columns=rating,calls, J/call,verdict", "--energy-json=e.json")
    lines = energy_lines(result.stdout.str())
    header = next(line for line in lines if line.startswith("test "))
    assert header.split() == ["test", "rating", "calls", "J/call", "verdict"]
    assert all(len(line) <= 80 for line in lines)
    # JSON keeps every field whatever the terminal shows
    test = json.loads((suite.path / "e.json").read_text())["tests"][0]
    assert {"latency_ms", "meter", "budget_use", "rating_rule", "calls"} <= test.keys()


def test_energy_columns_from_the_environment(suite: pytest.Pytester,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_ENERGY_COLUMNS", "energy,meter")
    lines = energy_lines(run(suite).stdout.str())
    assert next(line for line in lines if line.startswith("test ")).split() == [
        "test", "J/call", "meter"]


def test_unknown_column_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = run(suite, "--energy-columns=energy,watts")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "--energy-columns" in text and "unknown column 'watts'" in text
    assert "Traceback" not in text


# ----- the pieces -----------------------------------------------------------------------


def test_parse_columns() -> None:
    assert parse_columns("all", argument="columns") == COLUMN_NAMES
    assert parse_columns("  ", argument="columns") is None
    assert parse_columns("test,Latency Med,budget-use,J/item,rating,rating",
                         argument="columns") == ("latency", "budget", "per_item", "rating")
    with pytest.raises(EnergyConfigError, match="unknown column 'nope'; use all or"):
        parse_columns("energy,nope", argument="--energy-columns")
    assert tuple(CELLS) == COLUMN_NAMES  # every name has a cell


@pytest.mark.parametrize(("width", "short"), [
    (200, "examples/test_onnx_inference.py::test_onnx_mlp_predict[batch32-fp32]"),
    (45, "example\u2026::test_onnx_mlp_predict[batch32-fp32]"),
    (36, "\u2026test_onnx_mlp_predict[batch32-fp32]"),
    (30, "test_onnx_mlp_p\u2026[batch32-fp32]"),  # the parameter id tells variants apart
    (20, "test_\u2026[batch32-fp32]"),
    (12, "test_o\u2026fp32]"),
])
def test_short_id_keeps_the_function_and_the_parameter_id(width: int, short: str) -> None:
    nodeid = "examples/test_onnx_inference.py::test_onnx_mlp_predict[batch32-fp32]"
    assert short_id(nodeid, width) == short and len(short) <= width
    assert kept_width(nodeid) == 36


def test_shorten_middle() -> None:
    assert shorten_middle("abcdefghij", 7, "...") == "ab...ij"
    assert shorten_middle("abc", 7) == "abc"


def test_fit_table_leaves_out_optional_columns_lowest_priority_first() -> None:
    ids = ["tests/test_model.py::test_predict[batch32-fp32]"]
    columns = [Column("J/call", ["1 mJ"]), Column("latency", ["1 ms"], 2),
               Column("budget", ["J 10%"], 3), Column("verdict", ["ok"])]
    fitted = fit_table(Column("test", ids), columns, 50, kept_width(ids[0]))
    assert fitted.left_out == ["budget", "latency"]
    assert all(len(line) <= 50 for line in fitted.lines)
    assert fitted.lines[0].split() == ["test", "J/call", "verdict"]
    wide = fit_table(Column("test", ids), columns, None, 0)
    assert wide.left_out == [] and ids[0] in wide.lines[2]


@pytest.mark.slow  # runs the examples (torch, onnxruntime): several seconds
def test_the_examples_fit_80_columns() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples", "-p", "no:cacheprovider", "-p",
         "no:randomly", "-q"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300, check=False)
    lines = energy_lines(done.stdout)
    assert [line for line in lines if len(line) > 80] == []


def test_the_meter_header_wraps_to_the_terminal(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The session header named the meter and why on one line of up to 282 characters."""
    monkeypatch.setenv("COLUMNS", "80")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10.0)
        def test_one():
            pass
        """
    )
    result = pytester.runpytest_inprocess("--energy-meter=auto", "-p", "no:randomly")
    header = result.stdout.lines[:result.stdout.lines.index(
        next(line for line in result.stdout.lines if line.startswith("test_")))]
    energy = [line for line in header if line.startswith(("energy:", "    "))]
    assert energy and all(len(line) <= 80 for line in energy), energy
