"""A test's rating is decided once, when the run's groups are known, and the same
stars show everywhere: the per-test details section, the summary, the JSON report and
junitxml. (Before, the details and junitxml showed the budget rating recorded while
the test ran, and the summary the group rating decided at the end.)"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree

import pytest

# Two variants of one group, both far inside their budget (5 stars by budget use); by the
# group rule the one that uses 4x the energy is at the top of the range: 1 star.
SUITE = """
    import pytest
    from rs_meters import burn

    @pytest.mark.parametrize("millijoules", [
        pytest.param(0.1, marks=pytest.mark.energy_budget(joules="10 mJ"), id="small"),
        pytest.param(0.2, marks=pytest.mark.energy_budget(joules="10 mJ"), id="mid"),
        pytest.param(0.4, marks=pytest.mark.energy_budget(joules="10 mJ"), id="large"),
    ])
    def test_predict(millijoules):
        burn(millijoules)
    """

STARS = re.compile(r"rating ([\u2605\u2606*.]{5})")


def test_details_summary_json_and_junit_show_the_same_rating(burn: pytest.Pytester) -> None:
    pytester = burn  # rs_meters.burn(mJ) advances the meter by exactly that (conftest)
    pytester.makepyfile(SUITE)
    report, junit = pytester.path / "energy.json", pytester.path / "junit.xml"
    result = pytester.runpytest("--energy-meter=rs_meters:BurnMeter", "--energy-rounds=2",
                                "--energy-trials=2", f"--energy-json={report}",
                                f"--junitxml={junit}", "-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    entries = {e["variant"]: e for e in json.loads(report.read_text())["tests"]}
    assert {v: (e["rating"], e["rating_rule"]) for v, e in entries.items()} == {
        "small": (5, "group"), "mid": (4, "group"), "large": (1, "group")}
    assert {e["budget_rating"] for e in entries.values()} == {5}

    text = result.stdout.str()
    details = {}
    for variant in entries:
        section = text.split(f"test_predict[{variant}]", 1)[1]
        match = STARS.search(section)
        assert match is not None, section[:400]
        details[variant] = match.group(1).count("\u2605") or match.group(1).count("*")
    assert details == {v: e["rating"] for v, e in entries.items()}

    junit_ratings = {
        case.get("name", "").split("[")[1].rstrip("]"): int(prop.get("value", "-1"))
        for case in ElementTree.parse(junit).iter("testcase")
        for prop in case.iter("property") if prop.get("name") == "energy_rating"}
    assert junit_ratings == {v: e["rating"] for v, e in entries.items()}
