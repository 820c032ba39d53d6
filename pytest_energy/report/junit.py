"""junitxml: the run's compare verdict as testsuite properties and, when the gate fails
the session, as a failed testcase; and each measured test's final rating in its
``energy_rating`` property."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import pytest
from _pytest.junitxml import bin_xml_escape, xml_key  # xml_key: as record_testsuite_property

from pytest_energy.entry import Entry
from pytest_energy.history.gate_text import junit_properties

RATING_PROPERTY = "energy_rating"


def junit_xml(config: pytest.Config) -> Any:
    """junitxml's writer, or None without ``--junitxml``."""
    return config.stash.get(xml_key, None)


def add_suite_properties(config: pytest.Config, compare: dict[str, Any]) -> None:
    """The compare verdict as junitxml testsuite properties, when --junitxml is on."""
    xml = junit_xml(config)
    if xml is None:
        return
    for name, value in junit_properties(compare):
        xml.add_global_property(name, value)


def set_test_ratings(reporters: Mapping[str, Any], entries: Mapping[str, Entry]) -> None:
    """Set each test's recorded ``energy_rating`` property to its final rating.

    junitxml freezes a test's XML when the test ends, before the groups are known; the
    frozen element is still the one written at the end, so its property is updated in
    place (removed when the final rating is none).
    """
    for nodeid, reporter in reporters.items():
        entry = entries.get(nodeid)
        try:
            element = reporter.to_xml()
        except Exception:  # a junitxml without this shape: leave the file as recorded
            continue
        if entry is not None:
            _set_rating(element, entry.rating)


def _set_rating(element: Any, rating: int | None) -> None:
    properties = element.find("properties")
    found = [] if properties is None else [
        prop for prop in properties if prop.get("name") == RATING_PROPERTY]
    for prop in found:
        if rating is None:
            properties.remove(prop)
        else:
            prop.set("value", str(rating))
    if found or rating is None:
        return
    if properties is None:
        properties = ElementTree.Element("properties")
        element.insert(0, properties)
    ElementTree.SubElement(properties, "property", name=RATING_PROPERTY, value=str(rating))


# ----- the gate as a testcase -------------------------------------------------------------
GATE_CLASSNAME = "pytest-energy"
GATE_TESTNAME = "regression gate"
EXIT_GATE_ERROR = 3  # the gate's exit status when it could not do its job (history.gate)
MAX_NAMED = 10  # regressed tests named in the short failure message; the text has all
WHOLE_RUN = "(the whole run)"


@dataclass(frozen=True)
class GateOutcome:
    """What CI should see of the gate's verdict, read from its JSON "compare" dict.

    ``failed``: the gate failed the session on regressions (exit 1), ``regressed`` the
    tests it named. A report-only compare (``--energy-compare-fail=none``) or a refused
    or missing baseline without ``--energy-compare-strict`` passes the build, so it
    shows nothing. ``error``: a gate error (exit 3: history unreadable, a file
    unwritable, no baseline with ``--energy-compare-strict``).
    """

    regressed: tuple[str, ...] = ()
    failed: bool = False
    error: bool = False
    rule: str = ""
    messages: tuple[str, ...] = ()

    @classmethod
    def of(cls, compare: Mapping[str, Any] | None) -> GateOutcome:
        if not compare:
            return cls()
        failed = compare.get("status") == "failed"
        regressed = (compare.get("regressions") or ()) if failed else ()
        return cls(regressed=tuple(str(nodeid) for nodeid in regressed), failed=failed,
                   error=compare.get("exit_status") == EXIT_GATE_ERROR,
                   rule=str(compare.get("rule") or ""),
                   messages=tuple(str(m) for m in compare.get("messages") or ()))

    @property
    def regressions(self) -> tuple[str, ...]:
        """What regressed, one name each, as counted: the tests, or the whole run when
        the gate failed without naming a test (every test moved together)."""
        if not self.failed:
            return ()
        return self.regressed or (WHOLE_RUN,)

    def failure_message(self) -> str:
        """The one-line ``message`` of the failure: which tests regressed."""
        names = self.regressions
        more = f", and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        noun = "energy regression" if len(names) == 1 else "energy regressions"
        return f"{len(names)} {noun}: {', '.join(names[:MAX_NAMED])}{more}"


def add_gate_testcases(config: pytest.Config, outcome: GateOutcome,
                       details: Sequence[str]) -> None:
    """A failed gate as a failed testcase (and a gate error as an errored one), so the
    testsuite's ``failures``/``errors`` count it and CI dashboards list it.

    junitxml writes its file in its own sessionfinish, after ours (tryfirst), so the
    verdict can still be added. A passing or absent gate adds nothing: the file's
    ``tests`` then match pytest's count. Never raises: a junitxml without this API (the
    private ``_NodeReporter``) leaves the file without the extra testcase.
    """
    xml = junit_xml(config)
    if xml is None:
        return
    cases: list[tuple[str, str, str]] = []
    if outcome.failed:
        cases.append(("failure", outcome.failure_message(), _failure_text(outcome, details)))
    if outcome.error:
        cases.append(("error", "energy regression gate error",
                      "\n".join(outcome.messages or details)))
    for tag, message, text in cases:
        try:
            _add_testcase(xml, tag, message, text)
        except Exception:  # another junitxml: the file stays as pytest wrote it
            return


def _failure_text(outcome: GateOutcome, details: Sequence[str]) -> str:
    """The failure's text: the regressed tests and the rule, then what the terminal said."""
    lines = ["The energy regression gate failed the session.", f"rule: {outcome.rule}",
             "regressed:", *(f"  {name}" for name in outcome.regressions)]
    return "\n".join([*lines, "", *details])


def _add_testcase(xml: Any, tag: str, message: str, text: str) -> None:
    """One testcase named after the gate, through junitxml's node reporters (as junitxml
    itself records an internal error); ``append`` counts the element's tag in the
    testsuite's ``failures`` or ``errors``."""
    reporter = xml.node_reporter(f"{GATE_CLASSNAME}::{GATE_TESTNAME}::{tag}")
    reporter.attrs.update(classname=GATE_CLASSNAME, name=GATE_TESTNAME)
    node = ElementTree.Element(tag, message=bin_xml_escape(message))
    node.text = bin_xml_escape(text)
    reporter.append(node)
