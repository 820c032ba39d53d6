"""Right-sizing end to end: real pytester runs, entries read back from --energy-json.

These tests run a suite with a deterministic meter and check what the plugin prints and
writes, or load the JSON report it wrote and apply the right-sizing functions to its
entries, exactly as the plugin does. Options are read back from the plugin's session.

``rs_meters.BurnMeter`` makes energy exact: its counter is a module global that the test
bodies advance with ``burn(millijoules)``, so a call that burns 0.5 mJ measures 0.5 mJ.
(Millijoules in microsecond calls keep the power plausible: the measurer rejects
windows that would need more power than one device can draw.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_energy import rightsizing as rs
from pytest_energy.entry import Entry
from pytest_energy.rightsizing import RightsizingOptions
from pytest_energy.rightsizing import __main__ as rightsizing_report

BURN = ["--energy-meter=rs_meters:BurnMeter", "-p", "no:cacheprovider"]
AUTO = RightsizingOptions()


def run_entries(pytester: pytest.Pytester, *args: str, **outcomes: int) -> list[Entry]:
    """Run the suite with a JSON report; return its entries."""
    report = pytester.path / "energy.json"
    result = pytester.runpytest(*args, f"--energy-json={report}")
    result.assert_outcomes(**outcomes)
    return [Entry.from_json(data) for data in json.loads(report.read_text())["tests"]]


def by_name(entries: list[Entry]) -> dict[str, Entry]:
    return {e.nodeid.split("::", 1)[1]: e for e in entries}


VARIANTS_SUITE = """
    import pytest
    from rs_meters import burn

    # Energy per call 0.5 mJ whatever the batch: per item 500, 62.5 and 15.625 uJ.
    def case(batch, **kw):
        mark = pytest.mark.energy_budget(items=batch, joules="1 mJ", **kw)
        return pytest.param(batch, marks=mark, id=f"batch{batch}")

    @pytest.mark.parametrize("batch", [case(1, default=True), case(8), case(32)])
    def test_predict(batch):
        burn(0.5)

    @pytest.mark.energy_budget(joules="4 mJ", items=4)
    def test_lone():
        burn(0.5)
    """


def test_grouping_by_function_name_and_both_rating_rules(burn: pytest.Pytester) -> None:
    burn.makepyfile(VARIANTS_SUITE)
    entries = run_entries(burn, *BURN, "--energy-rounds=4", "--energy-trials=2", passed=4)
    tests = by_name(entries)
    predict = [tests[f"test_predict[batch{b}]"] for b in (1, 8, 32)]
    assert {e.group for e in predict} == {"test_predict"}
    assert [e.variant for e in predict] == ["batch1", "batch8", "batch32"]
    assert [e.joules_per_item for e in predict] == pytest.approx([5e-4, 6.25e-5, 1.5625e-5])
    # The verdict rated every row by its budget (0.5 mJ of 1 mJ -> 3 stars); the
    # plugin applies the group rule itself and keeps that rating as budget_rating.
    assert [e.budget_rating for e in predict] == [3, 3, 3]

    tests = by_name(rs.apply_ratings(entries, AUTO))
    predict = [tests[f"test_predict[batch{b}]"] for b in (1, 8, 32)]
    # Range [15.6, 500] uJ/item: batch8 is at 10% of it -> 5 stars, batch1 -> 1 star.
    assert [(e.rating, e.rating_rule) for e in predict] == [
        (1, "group"), (5, "group"), (5, "group")]
    assert [e.group_rank for e in predict] == [3, 2, 1]
    assert predict[0].wh_per_1000_items == pytest.approx(5e-4 * 1000 / 3600)
    lone = tests["test_lone"]
    assert (lone.rating, lone.rating_rule) == (5, "budget")  # 0.5 of 4 mJ = 12.5%
    headers, rows = rs.summary_columns(list(tests.values()), None)
    assert headers[1] == "rated by"
    assert [row[1] for row in rows] == ["group", "group", "group", "budget"]

    tests = by_name(rs.apply_ratings(entries, RightsizingOptions(rating_rule="budget")))
    predict = [tests[f"test_predict[batch{b}]"] for b in (1, 8, 32)]
    assert [(e.rating, e.rating_rule) for e in predict] == [(3, "budget")] * 3
    tests = by_name(rs.apply_ratings(entries, RightsizingOptions(rating_rule="group")))
    assert (tests["test_lone"].rating, tests["test_lone"].rating_rule) == (None, None)


def test_explicit_group_joins_runtimes(burn: pytest.Pytester) -> None:
    burn.makepyfile(
        """
        import pytest
        from rs_meters import burn

        @pytest.mark.energy_budget(items=8, group="mlp", rounds=2, trials=2)
        def test_torch():
            burn(2.0)

        @pytest.mark.energy_budget(items=8, group="mlp", rounds=2, trials=2, default=True)
        def test_onnx():
            burn(1.0)

        @pytest.mark.energy_budget(items=8, rounds=2, trials=2)
        def test_other():
            burn(0.25)
        """
    )
    entries = rs.apply_ratings(run_entries(burn, *BURN, passed=3), AUTO)
    tests = by_name(entries)
    assert tests["test_torch"].group == tests["test_onnx"].group == "mlp"
    assert tests["test_torch"].group_explicit is True
    # two variants have no range to rate by (the group rule could only give 5 and 1
    # stars): rated by budget use, here none, and the table says why
    assert (tests["test_torch"].rating, tests["test_onnx"].rating) == (None, None)
    assert tests["test_torch"].group_size == 2 and tests["test_torch"].group_rank == 2
    assert tests["test_other"].group_size == 1  # not part of "mlp"
    (table,) = rs.rightsizing_tables(entries, AUTO)
    assert table["rating_rule"] == "budget"
    assert "rated by budget use, not by the group: 2 variants are too few" in table["notes"][0]
    assert [v["variant"] for v in table["variants"]] == ["test_onnx", "test_torch"]
    assert table["recommended"] == table["default"] == "test_onnx"
    assert table["saving_vs_worst"] == pytest.approx(0.5)


def test_table_recommends_within_latency_and_renders(burn: pytest.Pytester) -> None:
    burn.makepyfile(
        """
        import pytest
        from rs_meters import burn

        def case(batch, joules, seconds, **kw):
            mark = pytest.mark.energy_budget(items=batch, latency_ms=40, rounds=2, trials=2,
                                             **kw)
            return pytest.param(batch, joules, seconds, marks=mark, id=f"batch{batch}")

        @pytest.mark.parametrize(("batch", "joules", "seconds"), [
            case(1, 0.5, 0.0, default=True),
            case(8, 1.0, 0.0),
            case(32, 2.0, 0.08),  # the least energy per item, but too slow
        ])
        def test_predict(batch, joules, seconds):
            burn(joules, seconds)
        """
    )
    entries = rs.apply_ratings(run_entries(burn, *BURN, passed=2, failed=1), AUTO)
    (table,) = rs.rightsizing_tables(entries, AUTO)
    rows = {v["variant"]: v for v in table["variants"]}
    assert rows["batch32"]["meets_latency"] is False and rows["batch32"]["completed"] is True
    assert table["recommended"] == "batch8"
    assert table["default"] == "batch1" and table["worst"] == "batch1"
    # 1/8 J/item vs 1/2 J/item.
    assert table["saving_vs_default"] == pytest.approx(0.75)
    text = rs.render_rightsizing([table], AUTO, "utf-8")
    assert text.splitlines()[0] == ("test_predict: 3 variants compared by energy per item "
                                    "(meter burn)")
    assert re.search(r"^batch32 +62\.5 uJ .* over latency budget$", text, re.MULTILINE)
    assert ("  75% less energy per item than the worst (batch1, 4x less); "
            "75% less than the default (batch1, 4x less)") in text
    assert json.loads(json.dumps(table)) == table  # JSON-able as the plugin will store it


def test_per_item_budget_and_items_from_the_fixture(burn: pytest.Pytester) -> None:
    burn.makepyfile(
        """
        import pytest
        from rs_meters import burn

        @pytest.mark.energy_budget(joules_per_item="100 uJ", items=4, rounds=2, trials=2)
        def test_within():
            burn(0.2)          # 50 uJ per item

        @pytest.mark.energy_budget(joules_per_item="100 uJ", items=4, rounds=2, trials=2)
        def test_over():
            burn(0.8)          # 200 uJ per item

        @pytest.mark.energy_budget(joules_per_item="1 mJ", group="blocks")
        def test_blocks(energy):
            for _ in range(3):
                with energy.measure(items=16):
                    burn(0.8)  # 50 uJ per item
        """
    )
    entries = run_entries(burn, *BURN, passed=2, failed=1)
    tests = by_name(entries)
    assert tests["test_within"].joules_per_item == pytest.approx(5e-5)
    assert tests["test_over"].verdict == "over budget"
    assert tests["test_blocks"].joules_per_item == pytest.approx(5e-5)
    entries = rs.apply_ratings(entries, AUTO)
    tests = by_name(entries)
    assert tests["test_blocks"].wh_per_1000_items == pytest.approx(5e-5 * 1000 / 3600)
    assert tests["test_over"].rating == 0  # lone: budget rule, over budget
    # Per-item budget uses feed the loose-budget hint (50 uJ of 1 mJ = 5%).
    found = rs.hints(entries, rs.rightsizing_tables(entries, AUTO), AUTO)
    assert found == [
        "1 test uses under 25% of its energy budget (test_blocks 5%): a budget at ~2x the "
        "measured use would catch a regression that doubles energy; tighten it (the ratchet, "
        "--energy-suggest-budgets, prints one)"]


def test_carbon_and_cost_from_a_real_run(meters: pytest.Pytester) -> None:
    # StepMeter: exactly 1 J per window; 4 rounds over 4 trials -> 1 J per call.
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, items=10, rounds=4, trials=4, warmup=1)
        def test_a():
            pass

        @pytest.mark.energy_budget(joules=10, rounds=2, trials=2, warmup=0)
        def test_b():
            pass
        """
    )
    entries = run_entries(meters, "--energy-meter=energy_test_meters:StepMeter", passed=2)
    options = RightsizingOptions(carbon_intensity=720.0, price=0.36, currency="EUR")
    carbon = rs.carbon_cost(entries, options)
    assert carbon is not None
    a, b = carbon["tests"]
    assert a["g_co2e_per_call"] == pytest.approx(1 / 3.6e6 * 720)  # 0.2 mg per call
    assert a["cost_per_1000_items"] == pytest.approx(100 / 3.6e6 * 0.36)  # 0.1 J/item x 1000
    assert b["g_co2e_per_1000_items"] is None
    # Whole run: 1 J x (4 + 1) + 1 J x (2 + 0) = 7 J.
    assert carbon["total"]["joules"] == pytest.approx(7.0)
    assert carbon["total"]["g_co2e"] == pytest.approx(7 / 3.6e6 * 720)
    assert carbon["total"]["cost"] == pytest.approx(7 / 3.6e6 * 0.36)
    assert carbon["total"]["calls"] == 7
    lines = rs.summary_lines(entries, carbon, options)
    assert lines[-1].startswith("carbon and cost, whole run: 7 J (1.94e-06 kWh), 1.4 mg CO2e, "
                                "7.00e-07 EUR over 7 calls of 2 measured tests")
    markdown = rs.markdown_sections([], carbon, [])
    assert markdown.startswith("## Carbon and cost\n")
    assert "| test_carbon_and_cost_from_a_real_run.py::test_a | 200 ug" in markdown


def test_sibling_hint_from_a_real_run(burn: pytest.Pytester) -> None:
    burn.makepyfile(VARIANTS_SUITE)
    entries = run_entries(burn, *BURN, "--energy-rounds=2", "--energy-trials=2", passed=4)
    entries = rs.apply_ratings(entries, AUTO)
    tables = rs.rightsizing_tables(entries, AUTO)
    found = rs.hints(entries, tables, AUTO)
    assert found[0] == (
        "test_predict: energy per item vs batch32 (15.6 uJ/item, recommended): "
        "batch1 (default) 32x, batch8 4x; switch to batch32 where the latency allows")
    assert rs.hints(entries, tables, RightsizingOptions(hints=False)) == []


GPU_SUITE = """
    import pytest
    from rs_meters import burn

    @pytest.mark.energy_budget(device="cuda", rounds=2, trials=2)
    def test_gpu():
        burn(500, 0.01)    # 500 mJ in >= 10 ms: at most 50 W
    """


def test_gpu_hint_from_a_real_run(burn: pytest.Pytester) -> None:
    # A custom meter is used for every device, cuda included (MeterPool only picks
    # nvml itself under auto/nvml); this one declares its board's power limit.
    burn.makepyfile(GPU_SUITE)
    result = burn.runpytest("--energy-meter=rs_meters:LimitedGpuBurnMeter", "-p",
                            "no:cacheprovider", "--energy-json=energy.json",
                            "--energy-columns=all")  # the full layout: one line per hint
    result.assert_outcomes(passed=1)
    # The limit reaches the entry, and 50 W of 700 W is far under it: the plugin says so.
    result.stdout.fnmatch_lines([
        "*energy hints*",
        "- GPU likely under-utilised: test_gpu * W of 700 W (*%) average power in the "
        "measured windows, under 30% of the power limit: try a larger batch*",
    ])
    data = json.loads((burn.path / "energy.json").read_text())
    (gpu,) = [Entry.from_json(test) for test in data["tests"]]
    assert gpu.device == "cuda" and gpu.watts is not None and 0 < gpu.watts <= 50
    assert gpu.power_limit_w == {"gpu:0": 700.0}
    assert [hint for hint in data["hints"] if hint.startswith("GPU likely under-utilised")]


def test_no_gpu_hint_without_a_power_limit(burn: pytest.Pytester) -> None:
    burn.makepyfile(GPU_SUITE)
    entries = run_entries(burn, "--energy-meter=rs_meters:GpuBurnMeter", "-p",
                          "no:cacheprovider", passed=1)
    (gpu,) = entries
    assert gpu.device == "cuda" and gpu.watts is not None and 0 < gpu.watts <= 50
    # Without the board's power limit there is no claim to make.
    assert rs.hints(entries, [], AUTO) == []


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_tables_are_the_same_under_xdist(burn: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    burn.makepyfile(VARIANTS_SUITE)
    serial = run_entries(burn, *BURN, "--energy-rounds=2", "--energy-trials=2", passed=4)
    parallel = run_entries(burn, *BURN, "--energy-rounds=2", "--energy-trials=2", "-n", "2",
                           passed=4)
    tables = [rs.rightsizing_tables(sorted(e, key=lambda x: x.nodeid), AUTO)
              for e in (serial, list(reversed(parallel)))]
    def summary(table: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(v["variant"], f"{v['joules_per_item']:.9g}", v["recommended"], v["default"])
                for v in table["variants"]]

    assert [summary(t) for t in tables[0]] == [summary(t) for t in tables[1]]
    assert [t["recommended"] for t in tables[1]] == ["batch32"]


# ----- options, as the plugin registers and resolves them ------------------------------------

OPTIONS_CONFTEST = """
    from pytest_energy.rightsizing import RightsizingOptions
    from pytest_energy.session import SESSION

    def pytest_terminal_summary(terminalreporter, config):
        # as the run's report builds them from the resolved settings
        options = RightsizingOptions(**config.stash[SESSION].rightsizing_values)
        terminalreporter.write_line(f"OPTIONS {options!r}")
    """


@pytest.fixture
def with_options(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(OPTIONS_CONFTEST)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    return pytester


def test_options_defaults(with_options: pytest.Pytester) -> None:
    result = with_options.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["OPTIONS RightsizingOptions(carbon_intensity=None, price=None, "
                                 "currency='', rating_rule='auto', hints=True)"])


def test_options_cli_over_env_over_ini(with_options: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with_options.makeini(
        """
        [pytest]
        energy_carbon_intensity = 100
        energy_price = 0.10
        energy_currency = EUR
        energy_rating_rule = budget
        energy_hints = false
        """
    )
    monkeypatch.setenv("PYTEST_ENERGY_CARBON_INTENSITY", "200 gCO2e/kWh")
    monkeypatch.setenv("PYTEST_ENERGY_RATING_RULE", "group")
    result = with_options.runpytest("-p", "no:cacheprovider", "--energy-carbon-intensity=300",
                                    "--energy-price=0.25")
    result.stdout.fnmatch_lines(["OPTIONS RightsizingOptions(carbon_intensity=300.0, "
                                 "price=0.25, currency='EUR', rating_rule='group', "
                                 "hints=False)"])


def test_no_hints_flag(with_options: pytest.Pytester) -> None:
    result = with_options.runpytest("-p", "no:cacheprovider", "--energy-no-hints")
    result.stdout.fnmatch_lines(["OPTIONS *hints=False)"])


def test_bad_env_value_names_the_source(with_options: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_ENERGY_PRICE", "-1")
    result = with_options.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-energy: environment variable PYTEST_ENERGY_PRICE: "
                                 "price='-1' is not valid: a price cannot be negative*"])


def test_bad_ini_value_names_the_source(with_options: pytest.Pytester) -> None:
    with_options.makeini("[pytest]\nenergy_rating_rule = stars\n")
    result = with_options.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option energy_rating_rule: rating_rule='stars' is not "
                                 "valid: expected one of auto, budget, group*"])


def test_bad_cli_value_is_a_usage_error(with_options: pytest.Pytester) -> None:
    result = with_options.runpytest("-p", "no:cacheprovider", "--energy-carbon-intensity=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --energy-carbon-intensity: "
                                 "--energy-carbon-intensity='0' is not valid: it must be > 0"])


def test_options_are_registered_with_the_plugin_group(with_options: pytest.Pytester) -> None:
    config = with_options.parseconfig("--energy-carbon-intensity=56", "--energy-no-hints")
    assert config.getoption("energy_carbon_intensity") == 56.0
    assert config.getoption("energy_no_hints") is True
    assert config.getini("energy_price") == ""


def test_command_line_renders_a_report(burn: pytest.Pytester, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    burn.makepyfile(VARIANTS_SUITE)
    run_entries(burn, *BURN, "--energy-rounds=2", "--energy-trials=2", passed=4)
    capsys.readouterr()
    assert rightsizing_report.main([str(burn.path / "energy.json"), "--price", "0.3",
                                    "--currency", "$"]) == 0
    out = capsys.readouterr().out
    assert "test_predict: 3 variants compared by energy per item (meter burn)" in out
    assert "carbon and cost, whole run:" in out and "0.3 $/kWh" in out
    assert "- test_predict: energy per item vs batch32" in out


def test_plugin_prints_rightsizing_hints_and_writes_them_to_json(burn: pytest.Pytester) -> None:
    burn.makepyfile(VARIANTS_SUITE)
    result = burn.runpytest(*BURN, "--energy-rounds=2", "--energy-trials=2",
                            "--energy-json=energy.json", "--energy-price=0.3")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([
        "*energy right-sizing*",
        "test_predict: 3 variants compared by energy per item (meter burn)",
        "*recommended*",
        "*energy carbon and cost*",
        "*energy hints*",
        "- test_predict: energy per item vs batch32*",
    ])
    data = json.loads((burn.path / "energy.json").read_text())
    assert [t["recommended"] for t in data["rightsizing"]] == ["batch32"]
    assert data["carbon_cost"] is not None and data["hints"]
    quiet = burn.runpytest(*BURN, "--energy-rounds=2", "--energy-trials=2", "--energy-no-hints")
    assert "energy hints" not in quiet.stdout.str()
