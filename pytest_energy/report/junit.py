"""junitxml: the run's compare verdict as testsuite properties, and each measured
test's final rating in its ``energy_rating`` property."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree

import pytest
from _pytest.junitxml import xml_key  # the key record_testsuite_property uses

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
