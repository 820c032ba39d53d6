"""Per-test configuration: the ``energy_budget`` marker merged over the session options.

Built in exactly one place, :meth:`ItemConfig.from_item`, with the precedence marker >
command line > environment > ini > default (the last four resolved in
:mod:`pytest_energy.options`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.options import (
    MARKER_KEYWORDS,
    MARKER_NAME,
    PER_TEST_SETTINGS,
    SessionConfig,
)
from pytest_energy.units import parse_duration_ms, parse_energy, parse_items


@dataclass(frozen=True)
class ItemConfig:
    """What to measure for one test, and against which budgets. Built by ``from_item``."""

    nodeid: str
    marked: bool
    joules: float | None = None
    latency_ms: float | None = None
    items: float | None = None
    joules_per_item: float | None = None
    group: str | None = None  # explicit group=; see ``rating_group`` for the effective one
    rating_group: str | None = None
    variant: str | None = None  # the parametrization id, e.g. "batch32-bf16"
    default_variant: bool = False
    dynamic: bool = False
    sync: Callable[[], Any] | None = None
    rounds: int | None = None
    warmup: int = 1
    trials: int = 5
    device: str = "auto"
    latency_stat: str = "median"
    max_time: float | None = None  # None: plan.default_max_time for the meter
    max_cv: float = 0.10
    has_marker: bool = False  # marked by an energy_budget marker, not only by --energy-all

    @property
    def has_budget(self) -> bool:
        return (self.joules is not None or self.latency_ms is not None
                or self.joules_per_item is not None)

    @classmethod
    def from_item(cls, item: pytest.Item, session: SessionConfig) -> ItemConfig:
        """Merge the item's energy_budget marker over the session's per-test defaults.

        Raises EnergyConfigError whose message names the test, the argument and what is
        accepted.
        """
        own = _own_markers(item)
        if len(own) > 1:
            raise EnergyConfigError(
                f"{item.nodeid}: {len(own)} energy_budget markers on one test; "
                "merge them into one @pytest.mark.energy_budget(...)"
            )
        marker = item.get_closest_marker(MARKER_NAME)
        try:
            kwargs = _marker_kwargs(marker) if marker is not None else {}
            config = cls.from_values(item.nodeid, kwargs=kwargs, session=session,
                                     marked=marker is not None or session.measure_all)
        except EnergyConfigError as exc:
            raise EnergyConfigError(f"{item.nodeid}: energy_budget marker: {exc}") from None
        callspec = getattr(item, "callspec", None)
        base_name = getattr(item, "originalname", None) or item.name.split("[")[0]
        return dataclasses.replace(
            config,
            has_marker=marker is not None,
            rating_group=config.group or base_name,
            variant=callspec.id if callspec is not None else None,
        )

    @classmethod
    def from_values(cls, nodeid: str, *, marked: bool, kwargs: Mapping[str, Any],
                    session: SessionConfig) -> ItemConfig:
        """Validate marker-style keyword values; ``None`` means "not given"."""
        _reject_unknown(kwargs)
        given = {k: v for k, v in kwargs.items() if v is not None}
        values = _per_test_values(given, session)  # checked in this order: errors stay the same
        _check_plain_keywords(given)
        joules, latency_ms, items, joules_per_item = _budgets(given)
        group = given.get("group")
        return cls(
            nodeid=nodeid,
            marked=marked,
            joules=joules,
            latency_ms=latency_ms,
            items=items,
            joules_per_item=joules_per_item,
            group=group,
            rating_group=group,
            default_variant=given.get("default", False),
            dynamic=given.get("dynamic", False),
            sync=given.get("sync"),
            **values,
        )


def _own_markers(item: pytest.Item) -> list[pytest.Mark]:
    """The distinct energy_budget markers on the test itself: the same marker twice is
    one (a test body that applies it with ``request.applymarker`` does so on every call)."""
    own: list[pytest.Mark] = []
    for mark in getattr(item, "own_markers", []):
        if mark.name == MARKER_NAME and mark not in own:
            own.append(mark)
    return own


def _reject_unknown(kwargs: Mapping[str, Any]) -> None:
    """An unknown marker keyword is an error with a did-you-mean and the accepted list."""
    unknown = [k for k in kwargs if k not in MARKER_KEYWORDS]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, MARKER_KEYWORDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise EnergyConfigError(
        f"unknown keyword argument {name!r}{hint}; accepted: {', '.join(MARKER_KEYWORDS)}"
    )


def _per_test_values(given: Mapping[str, Any], session: SessionConfig) -> dict[str, Any]:
    """Each per-test row: the marker's value through the row's parser, else the session's."""
    return {
        setting.name: (setting.parse(given[setting.name], argument=setting.name)
                       if setting.name in given
                       else session.per_test_defaults[setting.name].value)
        for setting in PER_TEST_SETTINGS
    }


def _check_plain_keywords(given: Mapping[str, Any]) -> None:
    """The keywords that are not options rows: group, default, dynamic, sync."""
    group = given.get("group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise EnergyConfigError(f"group={group!r} is not valid: expected a non-empty string")
    for flag in ("default", "dynamic"):
        if not isinstance(given.get(flag, False), bool):
            raise EnergyConfigError(
                f"{flag}={given[flag]!r} is not valid: expected True or False")
    sync = given.get("sync")
    if sync is not None and not callable(sync):
        raise EnergyConfigError(
            f"sync={sync!r} is not valid: expected a callable taking no arguments that "
            "waits for the device (e.g. torch.cuda.synchronize)")


# The budget keywords and their parsers (each error names its keyword).
_BUDGET_PARSERS: tuple[tuple[str, Callable[[Any], float]], ...] = (
    ("joules", parse_energy),
    ("latency_ms", parse_duration_ms),
    ("items", parse_items),
    ("joules_per_item", lambda value: parse_energy(value, argument="joules_per_item")),
)


def _budgets(given: Mapping[str, Any]) -> tuple[float | None, ...]:
    """joules, latency_ms, items, joules_per_item: parsed when given, else None."""
    return tuple(parse(given[name]) if name in given else None
                 for name, parse in _BUDGET_PARSERS)


def _marker_kwargs(marker: pytest.Mark) -> dict[str, Any]:
    """Map positional marker arguments onto (joules, latency_ms)."""
    if len(marker.args) > 2:
        raise EnergyConfigError(
            f"energy_budget takes at most 2 positional arguments (joules, latency_ms), got "
            f"{len(marker.args)}: {marker.args!r}; pass the others by keyword"
        )
    kwargs = dict(marker.kwargs)
    for name, value in zip(("joules", "latency_ms"), marker.args, strict=False):
        if name in kwargs:
            raise EnergyConfigError(f"{name} given both by position and by keyword")
        kwargs[name] = value
    return kwargs
