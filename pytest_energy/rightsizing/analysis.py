"""The whole right-sizing of a run in one call: ratings first (the groups decide them),
then the tables, carbon/cost and hints, all from the rated entries. The plugin's end
of run and ``python -m pytest_energy.rightsizing`` both use it, so they cannot differ."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.rightsizing.base import RightsizingOptions
from pytest_energy.rightsizing.carbon import carbon_cost
from pytest_energy.rightsizing.hints import hints
from pytest_energy.rightsizing.ratings import apply_ratings
from pytest_energy.rightsizing.tables import rightsizing_tables


@dataclass(frozen=True)
class Rightsized:
    """The rated entries and everything derived from them."""

    entries: list[Entry]
    tables: list[dict[str, Any]]
    carbon: dict[str, Any] | None
    hints: list[str]


def rightsize(entries: Sequence[Entry], options: RightsizingOptions) -> Rightsized:
    """Rate ``entries`` once, then build the tables, carbon/cost and hints from them."""
    rated = apply_ratings(entries, options)
    tables = rightsizing_tables(rated, options)
    return Rightsized(rated, tables, carbon_cost(rated, options),
                      hints(rated, tables, options))
