"""The ``pytest-energy`` command line: output and exit codes, on a history built in place."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.counting import COUNTING_METER

from pytest_energy import cli
from pytest_energy.entry import Entry
from pytest_energy.history.machine import cpu_model, fingerprint, machine_identity
from pytest_energy.history.runs import NewRun
from pytest_energy.history.schema import SCHEMA_VERSION
from pytest_energy.history.storage import open_storage
from pytest_energy.report.jsonreport import machine_info

HERE = {**machine_info(), "cpu_model": cpu_model()}
HERE_FP = fingerprint(machine_identity(HERE))


def entry(nodeid: str, per_call: list[float], **extra: Any) -> dict[str, Any]:
    ordered = sorted(per_call)
    return {"nodeid": nodeid, "outcome": "passed", "joules_per_call": ordered[len(ordered) // 2],
            "meter": "rapl", "domains": ["package:0"], "estimated": False,
            "latency_ms": dict.fromkeys(("median", "p95", "mean", "min", "max"), 1.5),
            "budget": {"joules": 2.0, "latency_ms": None},
            "joules_spread": {"min": ordered[0], "max": ordered[-1], "cv": 0.01},
            "verdict": "ok", "valid": True,
            "trials": [{"calls": 10, "window_s": 0.01, "joules": {"package:0": v * 10},
                        "latency_ms_median": 1.5} for v in per_call], **extra}


STEADY = [1.0, 1.01, 0.99, 1.0, 1.0]
UP = [1.2, 1.21, 1.19, 1.2, 1.2]


def save(directory: Path, name: str | None, entries: list[dict[str, Any]],
         machine: dict[str, Any] | None = None, status: str | None = None) -> int:
    machine = machine or HERE
    storage = open_storage(directory, create=True)
    assert storage is not None
    with storage:
        run = storage.save_run(
            NewRun(created="2024-06-01T00:00:00+00:00",
                   fingerprint=fingerprint(machine_identity(machine)), machine=machine,
                   meter={"used": {"rapl": {"name": "rapl", "estimated": False}}}, name=name,
                   commit="0123456789abcdef", status=status),
            [Entry.from_json(e) for e in entries])
        return run.id


@pytest.fixture
def history(tmp_path: Path) -> Path:
    directory = tmp_path / ".energy"
    save(directory, "main", [entry("tests/test_m.py::test_mlp", STEADY),
                             entry("tests/test_m.py::test_cnn", STEADY)])
    save(directory, None, [entry("tests/test_m.py::test_mlp", [1.05] * 5),
                           entry("tests/test_m.py::test_cnn", STEADY)])
    save(directory, "pr-7", [entry("tests/test_m.py::test_mlp", UP),
                             entry("tests/test_m.py::test_cnn", STEADY)])
    return directory


@pytest.fixture
def gated(tmp_path: Path) -> Path:
    """Three baseline runs under 'main' (the gate fails nothing with fewer), then pr-7."""
    directory = tmp_path / "gated"
    for _ in range(3):
        save(directory, "main", [entry("tests/test_m.py::test_mlp", STEADY),
                                 entry("tests/test_m.py::test_cnn", STEADY)])
    save(directory, "pr-7", [entry("tests/test_m.py::test_mlp", UP),
                             entry("tests/test_m.py::test_cnn", STEADY)])
    return directory


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_runs_lists_newest_first(history: Path) -> None:
    code, out, _ = run("--storage", str(history), "runs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "name", "created"]
    assert lines[2].startswith("#3") and "pr-7" in lines[2] and "0123456789" in lines[2]
    assert lines[4].startswith("#1") and "main" in lines[4]
    code, out, _ = run("--storage", str(history), "runs", "--json", "--limit", "1")
    assert [r["id"] for r in json.loads(out)] == [3]


def test_runs_shows_each_run_s_status(tmp_path: Path) -> None:
    save(tmp_path, "main", [entry("tests/test_m.py::test_mlp", STEADY)], status="regressed")
    code, out, _ = run("--storage", str(tmp_path), "runs")
    header, _, row = out.splitlines()[:3]
    assert code == 0 and "status" in header.split() and "regressed" in row.split()


def test_show_a_run(history: Path) -> None:
    code, out, _ = run("--storage", str(history), "show", "main")
    assert code == 0
    assert out.startswith("run #1 'main': 2024-06-01T00:00:00+00:00, 0123456789")
    assert "tests/test_m.py::test_mlp" in out and "1 J" in out and "1.5 ms" in out
    code, out, _ = run("--storage", str(history), "show", "#2", "--json")
    assert json.loads(out)["tests_results"][0]["joules_per_call"] == 1.05


def test_unknown_run_and_missing_history_exit_3(history: Path, tmp_path: Path) -> None:
    code, _, err = run("--storage", str(history), "show", "release")
    assert code == 3
    assert "no run 'release' in" in err and "(named runs: main, pr-7;" in err
    code, _, err = run("--storage", str(tmp_path / "nothing"), "runs")
    assert code == 3
    assert "no results history at" in err and "--energy-save=NAME" in err


def test_compare_with_one_baseline_run_reports_and_never_fails(history: Path) -> None:
    code, out, err = run("--storage", str(history), "compare", "main", "pr-7")
    assert code == 0
    assert "worse, not significant (joules:10%); not failed: 1 baseline run(s), 3 needed" in out
    assert "0.00397 (5 vs 5)" in out  # the trial-level comparison, for information
    assert "the baseline holds 1 run; failing needs at least 3" in err


def test_compare_exit_codes(gated: Path) -> None:
    history = gated
    code, out, _ = run("--storage", str(history), "compare", "main", "3")
    assert code == 0
    assert "passed: no significant regression" in out
    code, out, _ = run("--storage", str(history), "compare", "main", "pr-7")
    assert code == 1
    assert "tests/test_m.py::test_mlp  J/call" in out and "REGRESSED (joules:10%)" in out
    assert "+20.0%" in out and "(3 runs)" in out and "and 2 earlier run(s)" in out
    assert "FAILED: 1 test(s) regressed: tests/test_m.py::test_mlp" in out
    code, out, _ = run("--storage", str(history), "compare", "main", "pr-7", "--fail", "none")
    assert code == 0 and "report only" in out
    code, out, _ = run("--storage", str(history), "compare", "main", "pr-7",
                       "--fail", "joules:25%")
    assert code == 0
    code, out, _ = run("--storage", str(history), "compare", "main", "pr-7", "--all")
    assert "test_cnn" in out and "unchanged" in out
    code, out, _ = run("--storage", str(history), "compare", "main", "pr-7", "--json")
    data = json.loads(out)
    assert code == 1 and data["failed"] and data["regressions"] == ["tests/test_m.py::test_mlp"]


def test_compare_bad_expression_is_a_usage_error(history: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run("--storage", str(history), "compare", "main", "pr-7", "--fail", "jouls:5%")
    assert code == 2
    assert "--fail='jouls:5%' is not valid: unknown metric 'jouls' (did you mean 'joules'?)" \
        in capsys.readouterr().err


def test_compare_refuses_other_hardware_unless_forced(gated: Path) -> None:
    history = gated
    other = save(history, "other", [entry("tests/test_m.py::test_mlp", UP)],
                 machine={**HERE, "cpu_model": "Imaginary CPU", "node": "elsewhere"})
    code, _, err = run("--storage", str(history), "compare", "main", str(other))
    assert code == 3
    assert f"runs #3 'main' and #{other} 'other' come from different hardware: cpu_model:" in err
    assert "'Imaginary CPU' (this run)" in err and "add --force" in err
    code, out, err = run("--storage", str(history), "compare", "main", str(other), "--force")
    assert code == 1 and "warning" in err and "REGRESSED" in out


def test_history_trend_with_sparkline(history: Path) -> None:
    code, out, _ = run("--storage", str(history), "history", "mlp")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("tests/test_m.py::test_mlp  J/call  ")
    assert lines[0].endswith(cli.sparkline([1.0, 1.05, 1.2], None))
    assert "#1 'main'" in out and "+5.0%" in out and "+14.3%" in out
    code, out, _ = run("--storage", str(history), "history", "--glob", "tests/*::test_c*")
    assert "test_cnn" in out and "test_mlp" not in out
    code, out, _ = run("--storage", str(history), "history", "nomatch")
    assert code == 0 and "no stored results for tests matching 'nomatch'" in out


def test_sparkline() -> None:
    assert cli.sparkline([1, 2, 3, 4, 5, 6, 7, 8], "utf-8") == "▁▂▃▄▅▆▇█"
    assert cli.sparkline([1, None, 8], "ascii") == "_ #"
    assert cli.sparkline([2, 2], "utf-8") == "▅▅"
    assert cli.sparkline([], "utf-8") == ""


def test_export_json(history: Path, tmp_path: Path) -> None:
    code, out, _ = run("--storage", str(history), "export", "--json", "main")
    data = json.loads(out)
    assert code == 0 and data["version"] == 1 and data["schema"] == SCHEMA_VERSION
    (exported,) = data["runs"]
    assert exported["name"] == "main" and len(exported["results"][0]["trials"]) == 5
    target = tmp_path / "out" / "all.json"
    code, out, _ = run("--storage", str(history), "export", "--json", "-o", str(target))
    assert code == 0 and len(json.loads(target.read_text())["runs"]) == 3
    code, _, _ = run("--storage", str(history), "export")
    assert code == 2  # --json is required: it names the format


def test_plot_without_matplotlib_says_how_to_get_it(history: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    code, _, err = run("--storage", str(history), "plot")
    assert code == 3
    assert "needs matplotlib, an optional extra: pip install 'pytest-energy[plot]'" in err
    code, _, err = run("--storage", str(history), "plot", "-o", "energy.pdf")
    assert code == 3 and "must end in .png or .svg" in err


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_writes_images(history: Path, tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / f"energy{suffix}"
    assert run("--storage", str(history), "plot", "main", "-o", str(target))[0] == 0
    assert target.stat().st_size > 0
    trend = tmp_path / f"trend{suffix}"
    assert run("--storage", str(history), "plot", "--history", "mlp", "-o", str(trend))[0] == 0
    assert trend.stat().st_size > 0


def test_storage_is_found_from_a_subdirectory(history: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """From a subdirectory of the project: the rootdir pytest would use (here the
    directory of pyproject.toml, which has no pytest table)."""
    sub = tmp_path / "tests" / "deep"
    sub.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert cli.find_storage(None, {}, sub) == history
    assert cli.find_storage(None, {"PYTEST_ENERGY_STORAGE": "/x"}, sub) == Path("/x")
    assert cli.find_storage("given", {"PYTEST_ENERGY_STORAGE": "/x"}, sub) == Path("given")
    monkeypatch.chdir(sub)
    code, out, _ = run("runs")
    assert code == 0 and "pr-7" in out


@pytest.mark.slow  # several pytest runs (or processes): run with -m slow
def test_module_and_console_script_entry_points(gated: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_energy", "--storage", str(gated),
                           "compare", "main", "pr-7"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    assert "REGRESSED" in done.stdout
    helped = subprocess.run([sys.executable, "-m", "pytest_energy", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for command in ("runs", "show", "compare", "history", "plot", "export"):
        assert command in helped.stdout


def test_prune_keeps_the_newest_per_machine_and_every_named_run(tmp_path: Path) -> None:
    directory = tmp_path / ".energy"
    other = {**HERE, "hostname": "elsewhere", "cpu_model": "Other CPU 9000"}
    save(directory, "main", [entry("tests/t.py::test_a", STEADY)])  # 1
    for _ in range(4):  # 2-5
        save(directory, None, [entry("tests/t.py::test_a", STEADY)])
    save(directory, None, [entry("tests/t.py::test_a", STEADY)], machine=other)  # 6
    save(directory, None, [entry("tests/t.py::test_a", STEADY)], machine=other)  # 7
    code, out, _ = run("--storage", str(directory), "prune", "--keep", "1", "--dry-run")
    assert (code, out.strip()) == (0, "would delete 4 of 7 run(s): #2, #3, #4, #6")
    code, out, _ = run("--storage", str(directory), "runs", "--json")
    assert len(json.loads(out)) == 7  # a dry run deletes nothing
    code, out, _ = run("--storage", str(directory), "prune", "--keep", "1")
    assert code == 0 and out.splitlines()[0] == "deleted 4 of 7 run(s): #2, #3, #4, #6; kept 3"
    assert out.splitlines()[1].startswith(f"compacted {directory / 'history.sqlite3'}: ")
    code, out, _ = run("--storage", str(directory), "runs", "--json")
    assert [r["id"] for r in json.loads(out)] == [7, 5, 1]
    code, out, _ = run("--storage", str(directory), "show", "#2")
    assert code == 3  # its results went with it
    code, out, _ = run("--storage", str(directory), "prune", "--keep", "1")
    assert out.strip() == "nothing to delete: 0 of 3 run(s)"
    code, out, _ = run("--storage", str(directory), "prune", "--keep", "1", "--named-too")
    assert out.splitlines()[0] == "deleted 1 of 3 run(s): #1; kept 2"


def test_prune_needs_a_positive_keep(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run("--storage", str(history), "prune", "--keep", "0")
    assert code == 2
    assert "--keep" in capsys.readouterr().err
    code, _, _ = run("--storage", str(history), "prune")
    assert code == 2


# ----- the history directory: the plugin's precedence, read from the project's ini ----------

def test_runs_reads_energy_storage_from_the_ini(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A run saved where the ini's energy_storage says is what ``pytest-energy runs`` lists,
    from the project directory and from a subdirectory (relative to the ini file)."""
    monkeypatch.delenv("PYTEST_ENERGY_STORAGE", raising=False)
    pytester.makeini("[pytest]\nenergy_storage = hist\n")
    pytester.makepyfile(counting_meter=COUNTING_METER, test_model=(
        "import pytest\n\n@pytest.mark.energy_budget(rounds=1, trials=3, warmup=0)\n"
        "def test_infer():\n    pass\n"))
    pytester.syspathinsert()
    result = pytester.runpytest("--energy-meter=counting_meter:CountingMeter",
                                "--energy-save=from-ini", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    assert (pytester.path / "hist" / "history.sqlite3").is_file()
    assert not (pytester.path / ".energy").exists()
    sub = pytester.mkdir("sub")
    for where in (pytester.path, sub):
        monkeypatch.chdir(where)
        code, out, err = run("runs")
        assert code == 0, err
        assert "from-ini" in out


def test_storage_precedence_flag_then_env_then_ini(tmp_path: Path) -> None:
    (tmp_path / "tox.ini").write_text("[pytest]\nenergy_storage = ~/from-ini\n")
    env = {"PYTEST_ENERGY_STORAGE": "from-env"}
    assert cli.find_storage("from-flag", env, tmp_path) == Path("from-flag")
    assert cli.find_storage(None, env, tmp_path) == Path("from-env")
    assert cli.find_storage(None, {}, tmp_path) == Path("~/from-ini").expanduser()
    (tmp_path / "tox.ini").write_text("[pytest]\nenergy_storage = /abs/hist\n")
    assert cli.find_storage(None, {"PYTEST_ENERGY_STORAGE": "  "}, tmp_path) == Path("/abs/hist")


@pytest.mark.parametrize(("name", "text"), [
    ("pytest.ini", "[pytest]\nenergy_storage = hist\n"),
    (".pytest.ini", "[pytest]\nenergy_storage = hist\n"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nenergy_storage = "hist"\n'),
    ("pyproject.toml", '[tool.pytest]\nenergy_storage = "hist"\n'),
    ("pytest.toml", '[pytest]\nenergy_storage = "hist"\n'),
    ("tox.ini", "[pytest]\nenergy_storage = hist\n"),
    ("setup.cfg", "[tool:pytest]\nenergy_storage = hist\n"),
])
def test_every_ini_file_pytest_reads(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert cli.find_storage(None, {}, sub) == tmp_path / "hist"


def test_ini_discovery_follows_pytest(tmp_path: Path) -> None:
    """First directory with pytest configuration wins; files without it do not count."""
    project, sub = tmp_path / "project", tmp_path / "project" / "pkg"
    sub.mkdir(parents=True)
    (tmp_path / "pytest.ini").write_text("[pytest]\nenergy_storage = outer\n")
    (project / "tox.ini").write_text("[tox]\nenvlist = py3\n")  # no [pytest]: skipped
    (project / "setup.cfg").write_text("[metadata]\nname = x\n")  # no [tool:pytest]
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest table
    assert cli.find_storage(None, {}, sub) == tmp_path / "outer"
    (project / "setup.cfg").write_text("[tool:pytest]\naddopts = -q\n")  # no energy_storage
    history = project / ".energy"
    save(history, "main", [entry("tests/t.py::test_a", STEADY)])
    assert cli.find_storage(None, {}, sub) == history  # the ini stops the search: fallback
    (project / "pytest.ini").write_text("")  # pytest.ini counts even when empty
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\nenergy_storage = "x"\n')
    assert cli.find_storage(None, {}, sub) == history


def test_an_unreadable_ini_is_an_error_only_when_read(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTEST_ENERGY_STORAGE", raising=False)
    code, _, err = run("runs")
    assert code == 3
    assert "pyproject.toml" in err and err.startswith("pytest-energy runs: cannot read")
    code, _, err = run("--storage", str(tmp_path / "none"), "runs")
    assert code == 3 and "no results history at" in err  # the ini was never read


def test_mirrored_options_come_from_the_options_table() -> None:
    from pytest_energy.history.metrics import DEFAULT_ALPHA, DEFAULT_FAIL
    from pytest_energy.options import SETTINGS_BY_NAME

    assert SETTINGS_BY_NAME["compare_fail"].default == DEFAULT_FAIL
    assert SETTINGS_BY_NAME["compare_alpha"].default == DEFAULT_ALPHA
    helps = {action.dest: action for action in cli.build_parser()._actions}
    assert helps["storage"].help is not None
    assert helps["storage"].help.startswith(SETTINGS_BY_NAME["storage"].help.replace("%", "%%"))
    code, _, _ = run("--storage", "", "runs")
    assert code == 2  # the row's parser: an empty path is a usage error
