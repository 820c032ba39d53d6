"""Right-sizing: group star ratings, variant tables, carbon and cost, hints.

Pure functions over the run's entries (:class:`pytest_energy.entry.Entry`), so they
work the same on the pytest-xdist controller, on a saved report, and in tests. The
session calls them in this order, once the run's groups are known:

1. :func:`apply_ratings` -- returns the rated entries; every other function and every
   report is given those, so a test shows one rating everywhere;
2. :func:`rightsizing_tables`, :func:`carbon_cost`, :func:`hints` -- the JSON-ready
   results;
3. :func:`summary_columns`, :func:`summary_lines`, :func:`render_rightsizing`,
   :func:`render_carbon`, :func:`markdown_sections` -- text for people.

Modules: ``base`` (options, vocabulary, entry predicates), ``ratings``, ``tables``,
``carbon``, ``summary``, ``hints``, ``render``. The star rules themselves live in
:mod:`pytest_energy.stars`.
"""

from __future__ import annotations

from pytest_energy.rightsizing.analysis import Rightsized, rightsize
from pytest_energy.rightsizing.base import RightsizingOptions
from pytest_energy.rightsizing.carbon import (
    carbon_cost,
    format_mass,
    format_money,
    format_wh,
)
from pytest_energy.rightsizing.hints import hints
from pytest_energy.rightsizing.ratings import apply_ratings
from pytest_energy.rightsizing.render import (
    MAX_PRINTED_VARIANTS,
    markdown_sections,
    render_carbon,
    render_carbon_markdown,
    render_rightsizing,
)
from pytest_energy.rightsizing.summary import summary_columns, summary_lines
from pytest_energy.rightsizing.tables import rightsizing_tables
from pytest_energy.stars import group_stars

__all__ = [
    "MAX_PRINTED_VARIANTS",
    "Rightsized",
    "RightsizingOptions",
    "apply_ratings",
    "carbon_cost",
    "format_mass",
    "format_money",
    "format_wh",
    "group_stars",
    "hints",
    "markdown_sections",
    "render_carbon",
    "render_carbon_markdown",
    "render_rightsizing",
    "rightsize",
    "rightsizing_tables",
    "summary_columns",
    "summary_lines",
]
