"""Energy labels (SVG): the figure, the stars the run decided, escaping, and the
``pytest-energy label`` command from a saved run and from a JSON report."""

from __future__ import annotations

import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from fakes.counting import COUNTING_METER

from pytest_energy import cli
from pytest_energy.entry import AccuracyRecord, Entry, RatingRule, TrialRecord, Verdict
from pytest_energy.history.runs import NewRun
from pytest_energy.history.storage import open_storage
from pytest_energy.report.label import (
    LabelFacts,
    group_label_svg,
    hardware_text,
    label_problem,
    label_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
NVML_METER = {"used": {"nvml@cuda:0": {"name": "nvml", "estimated": False, "details": {
    "devices": [{"domain": "gpu:0", "name": "NVIDIA H100 80GB HBM3"},
                {"domain": "gpu:1", "name": "NVIDIA L4"}]}}}}


def measured(nodeid: str = "tests/test_m.py::test_predict[batch8]", **extra: Any) -> Entry:
    """A valid measurement: 1.8 J per item (= 0.5 Wh per 1,000 items), 3 stars."""
    values: dict[str, Any] = {
        "joules_per_call": 14.4, "joules_per_item": 1.8, "items": 8.0, "valid": True,
        "trials": (TrialRecord(calls=4, window_s=0.1, joules={"gpu:0": 57.6}),),
        "meter": "nvml", "domains": ("gpu:0",), "device": "cuda:0", "estimated": False,
        "rating": 3, "rating_rule": RatingRule.BUDGET, "verdict": Verdict.OK}
    values.update(extra)
    return Entry(nodeid=nodeid, **values)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in (el.get("class") or "").split()]


def text_of(root: ET.Element, name: str) -> str:
    found = by_class(root, name)
    assert len(found) == 1, name
    return found[0].text or ""


def wh(figure: str) -> float:
    """``"500 mWh"`` -> 0.5 (Wh)."""
    number, unit = figure.split()
    scale = {"kWh": 1e3, "Wh": 1.0, "mWh": 1e-3, "\u00b5Wh": 1e-6, "nWh": 1e-9}[unit]
    return float(number) * scale


# ----- the label ---------------------------------------------------------------------------
def test_label_is_standalone_svg_with_the_stars_and_the_energy_figure() -> None:
    svg = label_svg(measured(), date="2024-06-01T12:30:00+00:00", meter=NVML_METER)
    root = parse(svg)
    assert root.get("width") == "340" and root.get("viewBox") == f"0 0 340 {root.get('height')}"
    assert len(by_class(root, "star-full")) == 3 and len(by_class(root, "star-empty")) == 2
    assert text_of(root, "rating") == "3/5"
    # 1.8 J/item x 1,000 items / 3,600 J per Wh = 0.5 Wh
    assert text_of(root, "energy") == "500 mWh"
    assert wh(text_of(root, "energy")) == pytest.approx(0.5)
    assert text_of(root, "per") == "per 1,000 items"
    assert text_of(root, "name") == "test_predict[batch8]"
    assert text_of(root, "path") == "tests/test_m.py"
    assert text_of(root, "hardware") == "NVIDIA H100 80GB HBM3"
    assert text_of(root, "meter") == "nvml gpu:0"
    assert text_of(root, "date") == "2024-06-01"
    assert "estimate" not in svg.lower()
    assert root.find(f"{SVG}title") is not None


def test_without_items_the_figure_is_per_1000_calls_and_says_so() -> None:
    entry = measured(joules_per_item=None, items=None, joules_per_call=7.2)
    root = parse(label_svg(entry))
    assert wh(text_of(root, "energy")) == pytest.approx(2.0)  # 7.2 J x 1,000 / 3,600
    assert text_of(root, "per") == "per 1,000 calls (the test declared no items)"


def test_the_stars_are_the_entry_s_rating_never_recomputed() -> None:
    # budget use 10% would be 5 stars by the budget rule; the run decided 2 (a group)
    entry = measured(rating=2, rating_rule=RatingRule.GROUP, group="test_predict",
                     group_rank=3, group_size=4, rating_metric="J/item",
                     wh_per_1000_items=0.25)
    root = parse(label_svg(entry))
    assert len(by_class(root, "star-full")) == 2
    assert text_of(root, "rating-note") == "within group test_predict, 3 of 4 by J/item"
    assert text_of(root, "energy") == "250 mWh"  # the run's own wh_per_1000_items
    unrated = parse(label_svg(measured(rating=None, rating_rule=None)))
    assert not by_class(unrated, "star-full") and len(by_class(unrated, "star-empty")) == 5
    assert text_of(unrated, "rating") == "unrated"
    over = parse(label_svg(measured(rating=0, verdict=Verdict.OVER_BUDGET)))
    assert text_of(over, "rating") == "0/5"
    assert text_of(over, "rating-note") == "over its energy budget"


def test_every_text_is_escaped() -> None:
    nodeid = 't.py::test_x[<a&b>-"q"-\'s\'-\x01-</text><script>alert(1)</script>]'
    svg = label_svg(measured(nodeid), hardware='GPU "<x>" & co', date="today")
    root = parse(svg)
    assert not [el for el in root.iter() if el.tag.endswith("script")]
    assert "<script" not in svg
    name = text_of(root, "name")
    assert name.startswith('test_x[<a&b>-"q') and name.endswith("</script>]")
    title = root.find(f"{SVG}title")
    assert title is not None and (title.text or "").startswith(nodeid.replace("\x01", "\ufffd"))
    assert text_of(root, "hardware") == 'GPU "<x>" & co'
    assert nodeid.replace("\x01", "\ufffd") in (root.get("aria-label") or "")
    assert text_of(root, "date") == "today"


def test_an_estimate_is_labelled_as_one() -> None:
    entry = measured(estimated=True, meter="estimate", domains=("cpu:process",),
                     device="cpu")
    root = parse(label_svg(entry, machine={"cpu_model": "Xeon 8480+"}))
    assert "ESTIMATE" in text_of(root, "estimate")
    assert "estimate" in text_of(root, "meter")
    assert text_of(root, "hardware") == "Xeon 8480+"
    assert "estimated by" in (root.get("aria-label") or "")


def test_labels_are_deterministic_and_self_contained() -> None:
    entry = measured(accuracy=AccuracyRecord(checked=True, relative=0.031))
    first = label_svg(entry, date="2024-06-01", meter=NVML_METER)
    assert first == label_svg(entry, date="2024-06-01", meter=NVML_METER)
    assert re.findall(r"https?://[^\"']+", first) == ["http://www.w3.org/2000/svg"]
    for external in ("href", "@import", "url(", "<image", "<script", "font-face", " id="):
        assert external not in first
    assert text_of(parse(first), "per") == "per 1,000 items \u00b13%"


def test_hardware_names_the_measured_gpus_else_the_cpu() -> None:
    assert hardware_text(measured(domains=("gpu:0", "gpu:1")), NVML_METER) == \
        "NVIDIA H100 80GB HBM3, NVIDIA L4"
    rapl = measured(meter="rapl", domains=("package:0", "dram:0"), device="cpu")
    assert hardware_text(rapl, NVML_METER, {"cpu_model": "EPYC 9654"}) == "EPYC 9654"
    custom = measured(meter="counting", domains=("count:0",), device="cpu")
    assert hardware_text(custom, {}, {"processor": "x86_64"}) == "cpu on x86_64"
    assert hardware_text(custom) == "cpu"


def test_an_unmeasured_test_has_no_label() -> None:
    broken = measured(valid=False, verdict=Verdict.INVALID, invalid_reason="counter frozen")
    assert label_problem(broken) == ("tests/test_m.py::test_predict[batch8] has no valid "
                                     "measurement (invalid: counter frozen)")
    with pytest.raises(ValueError, match="no valid measurement"):
        label_svg(broken)
    assert LabelFacts.of(measured()).rating == 3


def test_group_label_lists_variants_least_energy_first() -> None:
    members = [measured(f"t.py::test_p[{v}]", variant=v, joules_per_item=j, rating=r,
                        rating_rule=RatingRule.GROUP)
               for v, j, r in (("b1", 3.6, 1), ("b32", 0.36, 5), ("b8", 1.8, 3))]
    members.append(measured("t.py::test_p[bad]", valid=False))
    root = parse(group_label_svg("test_p", members, date="2024-06-01", meter=NVML_METER))
    assert [el.text for el in by_class(root, "variant")] == ["b32", "b8", "b1"]
    assert [wh(el.text or "") for el in by_class(root, "energy")] == \
        pytest.approx([0.1, 0.5, 1.0])
    assert len(by_class(root, "star-full")) == 5 + 3 + 1
    with pytest.raises(ValueError, match="no test with a valid measurement"):
        group_label_svg("test_p", members[3:])


# ----- the command -------------------------------------------------------------------------
def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def save(directory: Path, entries: list[Entry]) -> None:
    storage = open_storage(directory, create=True)
    assert storage is not None
    with storage:
        storage.save_run(NewRun(created="2024-06-01T00:00:00+00:00", fingerprint="f" * 16,
                                machine={"cpu_model": "Xeon"}, meter=NVML_METER, name="main"),
                         entries)


def test_label_command_exit_codes(tmp_path: Path) -> None:
    history = tmp_path / "hist"
    code, _, err = run("--storage", str(history), "label", "test_p", "--svg", "x.svg")
    assert code == 3 and "no results history" in err
    save(history, [measured("t.py::test_p[b1]"), measured("t.py::test_p[b8]"),
                   measured("t.py::test_q", valid=False, verdict=Verdict.NOT_MEASURED)])
    code, _, err = run("--storage", str(history), "label", "test_p", "--svg", "x.svg")
    assert code == 3 and "matches 2 tests" in err
    assert "t.py::test_p[b1]" in err and "t.py::test_p[b8]" in err
    code, _, err = run("--storage", str(history), "label", "nothing", "--svg", "x.svg")
    assert code == 3 and "no test 'nothing' in run #1 'main'" in err
    code, _, err = run("--storage", str(history), "label", "test_q", "--svg", "x.svg")
    assert code == 3 and "t.py::test_q has no valid measurement (not measured)" in err
    code, _, err = run("--storage", str(history), "label", "test_p[b8]", "--run", "9",
                       "--svg", "x.svg")
    assert code == 3 and "no run #9" in err
    (tmp_path / "file").write_text("")  # a parent that is a file: cannot write
    code, _, err = run("--storage", str(history), "label", "test_p[b8]", "--svg",
                       str(tmp_path / "file" / "x.svg"))
    assert code == 3 and "cannot write --svg" in err
    code, out, _ = run("--storage", str(history), "label", "test_p[b8]", "--svg", "-")
    assert code == 0 and len(by_class(parse(out), "star-full")) == 3
    assert text_of(parse(out), "hardware") == "NVIDIA H100 80GB HBM3"
    code, _, err = run("label", "x", "--svg", "-", "--json", "a.json", "--run", "1")
    assert code == 2


def test_label_from_a_json_report_file(tmp_path: Path) -> None:
    report = tmp_path / "energy.json"
    report.write_text(json.dumps({"created": "2025-01-02T03:04:05+00:00", "meter": NVML_METER,
                                  "machine": {}, "tests": [measured().to_json()]}))
    svg = tmp_path / "label.svg"
    code, out, err = run("--storage", str(tmp_path / "none"), "label", "batch8", "--json",
                         str(report), "--svg", str(svg))
    assert code == 0, err
    assert "wrote" in out
    root = parse(svg.read_text(encoding="utf-8"))
    assert text_of(root, "date") == "2025-01-02"
    for bad in ("{", '{"tests": 1}'):
        report.write_text(bad)
        code, _, err = run("label", "batch8", "--json", str(report), "--svg", str(svg))
        assert code == 3 and f"--json {report}" in err
    code, _, err = run("label", "batch8", "--json", str(tmp_path / "missing.json"),
                       "--svg", str(svg))
    assert code == 3 and "cannot read --json" in err


def test_a_group_label_from_the_command(tmp_path: Path) -> None:
    """``label --group NAME``: the group's variants, least energy first; NODEID and
    --group together (or neither) is a usage error; an unknown group lists the run's."""
    members = [measured(f"t.py::test_p[{v}]", variant=v, joules_per_item=j, rating=r,
                        rating_rule=RatingRule.GROUP, group="mlp")
               for v, j, r in (("b1", 3.6, 1), ("b32", 0.36, 5))]
    report = tmp_path / "energy.json"
    report.write_text(json.dumps({"created": "2025-01-02T03:04:05+00:00", "meter": NVML_METER,
                                  "tests": [m.to_json() for m in members]}))
    svg = tmp_path / "group.svg"
    code, out, err = run("label", "--group", "mlp", "--json", str(report), "--svg", str(svg))
    assert code == 0, err
    assert "group 'mlp'" in out
    root = parse(svg.read_text(encoding="utf-8"))
    assert [el.text for el in by_class(root, "variant")] == ["b32", "b1"]
    code, _, err = run("label", "--group", "cnn", "--json", str(report), "--svg", str(svg))
    assert code == 3 and "no group 'cnn'" in err and "mlp" in err
    for args in (("label", "test_p", "--group", "mlp"), ("label",)):
        code, _, err = run(*args, "--json", str(report), "--svg", str(svg))
        assert code == 2 and "NODEID or --group" in err


def test_label_command_end_to_end(pytester: pytest.Pytester,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A run saved by the plugin, then ``pytest-energy label``: the file holds the
    stars the run's JSON report gives the test, written with the user's umask."""
    monkeypatch.delenv("PYTEST_ENERGY_STORAGE", raising=False)
    pytester.makepyfile(counting_meter=COUNTING_METER, test_model=(
        "import pytest\n\n"
        "@pytest.mark.energy_budget(joules=1.0, rounds=1, trials=3, warmup=0, items=4)\n"
        "def test_infer():\n    pass\n"))
    pytester.syspathinsert()
    result = pytester.runpytest("--energy-meter=counting_meter:CountingMeter",
                                "--energy-save=e2e", "--energy-json=report.json",
                                "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    tested = json.loads((pytester.path / "report.json").read_text())["tests"][0]
    assert tested["rating"] in range(6)
    monkeypatch.chdir(pytester.path)
    code, _, err = run("label", "test_model.py::test_infer", "--svg", "out.svg")
    assert code == 0, err
    written = pytester.path / "out.svg"
    root = parse(written.read_text(encoding="utf-8"))
    assert len(by_class(root, "star-full")) == tested["rating"]
    expected = tested["joules_per_item"] * 1000 / 3600
    assert wh(text_of(root, "energy")) == pytest.approx(expected, rel=5e-3)
    assert text_of(root, "meter") == "counting count:0"
    mask = os.umask(0)
    os.umask(mask)
    assert written.stat().st_mode & 0o777 == 0o666 & ~mask
    from_json = pytester.path / "from-json.svg"
    code, _, err = run("label", "infer", "--json", "report.json", "--svg", str(from_json))
    assert code == 0, err
    assert len(by_class(parse(from_json.read_text()), "star-full")) == tested["rating"]
