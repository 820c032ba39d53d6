"""A test's rating is decided once, when the run's groups are known, and the same
stars show everywhere: the per-test details section, the summary, the JSON report,
junitxml and markdown. (Before, the details and junitxml showed the budget rating
recorded while the test ran, and the summary the group rating decided at the end.)

And the ratings do not rate noise (issue 15 item 4): a group of two variants, or one
whose range is within measurement noise, is rated by budget use (and says so), and
variants within noise of each other share their stars."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest

from pytest_energy import rightsizing as rs
from pytest_energy.entry import Entry
from pytest_energy.rightsizing import RightsizingOptions
from pytest_energy.rightsizing.ratings import NOISE_FLOOR, noise, range_problem

BURN = ("--energy-meter=rs_meters:BurnMeter", "--energy-rounds=2", "--energy-trials=2",
        "-p", "no:cacheprovider")

# Three variants of one group, all far inside their budget (5 stars by budget use); by
# the group rule the one that uses 4x the energy is at the top of the range: 1 star.
THREE = {"small": 0.1, "mid": 0.2, "large": 0.4}
STARS = re.compile(r"rating ([\u2605\u2606*.]{5})")
STAR_CELL = re.compile(r"[\u2605\u2606]{5}")


def suite(variants: dict[str, float]) -> str:
    params = ",\n".join(
        f'    pytest.param({mj}, marks=pytest.mark.energy_budget(joules="10 mJ"), id="{name}")'
        for name, mj in variants.items())
    return ("import pytest\nfrom rs_meters import burn\n\n"
            f"@pytest.mark.parametrize('millijoules', [\n{params}\n])\n"
            "def test_predict(millijoules):\n    burn(millijoules)\n")


def count(stars: str) -> int:
    return stars.count("\u2605") or stars.count("*")


def run_everywhere(pytester: pytest.Pytester, variants: dict[str, float], *args: str
                   ) -> dict[str, dict[str, Any]]:
    """Run the suite with every output on; per variant, the rating each output shows."""
    pytester.makepyfile(suite(variants))
    report, junit, md = (pytester.path / name for name in ("e.json", "junit.xml", "e.md"))
    result = pytester.runpytest(*BURN, f"--energy-json={report}", f"--junitxml={junit}",
                                f"--energy-markdown={md}", "-rA", *args)
    result.assert_outcomes(passed=len(variants))
    text = result.stdout.str()
    entries = {e["variant"]: e for e in json.loads(report.read_text())["tests"]}
    shown: dict[str, dict[str, Any]] = {v: {"json": e["rating"]} for v, e in entries.items()}
    for variant in variants:
        section = re.split(rf"_ test_predict\[{variant}\] _", text, maxsplit=1)[1]
        match = STARS.search(section)
        assert match is not None, section[:400]
        shown[variant]["details"] = count(match.group(1))
        summary = text.split("energy summary", 1)[1]
        row = next(line for line in summary.splitlines() if f"[{variant}]" in line)
        shown[variant]["summary"] = count(STAR_CELL.findall(row)[0])
        md_row = next(line for line in md.read_text().splitlines() if f"[{variant}]`" in line)
        shown[variant]["markdown"] = count(STAR_CELL.findall(md_row)[0])
    for case in ElementTree.parse(junit).iter("testcase"):
        variant = case.get("name", "").split("[")[1].rstrip("]")
        ratings = [int(p.get("value", "-1")) for p in case.iter("property")
                   if p.get("name") == "energy_rating"]
        assert len(ratings) == 1, ratings
        shown[variant]["junit"] = ratings[0]
    shown["_entries"] = entries
    shown["_text"] = {"stdout": text}
    return shown


def assert_agree(shown: dict[str, dict[str, Any]], expected: dict[str, int]) -> None:
    for variant, stars in expected.items():
        assert shown[variant] == dict.fromkeys(
            ("json", "details", "summary", "markdown", "junit"), stars), variant


def test_details_summary_json_junit_and_markdown_show_the_same_rating(
        burn: pytest.Pytester) -> None:
    shown = run_everywhere(burn, THREE)
    entries = shown["_entries"]
    assert {v: e["rating_rule"] for v, e in entries.items()} == dict.fromkeys(THREE, "group")
    assert {e["budget_rating"] for e in entries.values()} == {5}
    assert_agree(shown, {"small": 5, "mid": 4, "large": 1})


def test_a_group_of_two_is_rated_by_budget_everywhere_and_says_so(
        burn: pytest.Pytester) -> None:
    # Before: 5 and 1 stars by the group rule, whatever the difference (1.4% swapped them
    # between runs); junitxml said 5 where the summary said 1.
    shown = run_everywhere(burn, {"fp32": 0.2, "bf16": 0.1})
    assert {e["rating_rule"] for e in shown["_entries"].values()} == {"budget"}
    assert_agree(shown, {"fp32": 5, "bf16": 5})
    stdout = " ".join(shown["_text"]["stdout"].split())  # the notes wrap at 80 columns
    assert "rated by budget use, not by the group: 2 variants are too few" in stdout
    assert "(by budget use)" in stdout  # the details say which rule


def test_ratings_agree_in_the_full_verbose_layout(burn: pytest.Pytester) -> None:
    shown = run_everywhere(burn, THREE, "-v")
    assert_agree(shown, {"small": 5, "mid": 4, "large": 1})


@pytest.mark.slow  # starts xdist workers
def test_ratings_agree_under_xdist(burn: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    shown = run_everywhere(burn, {**THREE, "fp16": 0.21}, "-n", "2")
    assert_agree(shown, {"small": 5, "mid": 4, "fp16": 4, "large": 1})


def test_variants_within_noise_share_their_stars(burn: pytest.Pytester) -> None:
    # 1.045 mJ is 22.5% of the way from 1 to 1.2 mJ (4 stars by position), but only 4.5%
    # above 1 mJ: within the noise floor, so it gets the 5 stars of 1 mJ.
    shown = run_everywhere(burn, {"a": 1.0, "b": 1.045, "c": 1.2})
    assert_agree(shown, {"a": 5, "b": 5, "c": 1})


# ----- the rules, on hand-built entries ---------------------------------------------------


def entry(variant: str, joules: float, *, cv: float | None = 0.0, trials: int = 5,
          budget_rating: int | None = 5) -> Entry:
    return Entry.from_json({
        "nodeid": f"t.py::test_p[{variant}]", "outcome": "passed", "joules_per_call": joules,
        "valid": True, "meter": "m", "estimated": False, "verdict": "ok", "group": "test_p",
        "variant": variant, "rating": budget_rating, "rating_rule": "budget",
        "joules_spread": {"min": joules, "max": joules, "cv": cv},
        "trials": [{"calls": 1, "window_s": 0.1, "joules": {"x": joules}}] * trials})


def ratings(entries: list[Entry], rule: str = "auto") -> list[tuple[int | None, str | None]]:
    rated = rs.apply_ratings(entries, RightsizingOptions(rating_rule=rule))
    return [(e.rating, None if e.rating_rule is None else str(e.rating_rule)) for e in rated]


def test_two_variants_1_4_percent_apart_keep_their_stars_when_they_swap() -> None:
    first = [entry("fp32", 1.000), entry("bf16", 1.014, budget_rating=4)]
    swapped = [entry("fp32", 1.014), entry("bf16", 1.000, budget_rating=4)]
    assert ratings(first) == ratings(swapped) == [(5, "budget"), (4, "budget")]
    assert ratings(first, "group") == [(None, None), (None, None)]  # no range: unrated
    assert range_problem(first) is not None and "too few" in str(range_problem(first))


def test_a_range_within_noise_is_rated_by_budget() -> None:
    close = [entry("a", 1.0), entry("b", 1.02), entry("c", 1.04)]
    assert ratings(close) == [(5, "budget")] * 3
    assert "within measurement noise" in str(range_problem(close))
    # noisy trials widen the noise beyond the floor: 10% CV over 5 trials -> ~16%
    noisy = [entry("a", 1.0, cv=0.1), entry("b", 1.1, cv=0.1), entry("c", 1.15, cv=0.1)]
    assert noise(noisy[0], noisy[2]) == pytest.approx(2 * 1.2533 * 0.1 / 5 ** 0.5 * 2 ** 0.5)
    assert ratings(noisy) == [(5, "budget")] * 3
    assert noise(entry("a", 1.0, cv=None), entry("b", 1.0, trials=1)) == NOISE_FLOOR


def test_a_meaningful_range_is_rated_by_group_with_ties_sharing_stars() -> None:
    group = [entry("a", 1.0), entry("b", 1.045), entry("c", 1.5), entry("d", 2.0)]
    assert ratings(group) == [(5, "group"), (5, "group"), (3, "group"), (1, "group")]
    assert ratings(group, "budget") == [(5, "budget")] * 4


def test_the_table_says_which_rule_rated_it() -> None:
    two = rs.apply_ratings([entry("a", 1.0), entry("b", 2.0)], RightsizingOptions())
    (table,) = rs.rightsizing_tables(two, RightsizingOptions())
    assert table["rating_rule"] == "budget"
    assert table["notes"][-1] == ("rated by budget use, not by the group: 2 variants are too "
                                  "few to rate by their range (a group rating needs 3 or more)")
    (grouped,) = rs.rightsizing_tables(two, RightsizingOptions(rating_rule="group"))
    assert grouped["rating_rule"] is None and grouped["notes"][-1].startswith("unrated: 2 ")
