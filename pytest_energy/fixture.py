"""The ``energy`` fixture: measure exactly the code you choose, and read the result.

Use it when the test body has side effects (so it must run once), when setup inside
the test must not be measured, or to assert on the numbers yourself. When the test
also has an ``energy_budget`` marker, the budgets apply to what the fixture measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from pytest_energy.measure import EnergyResult, Measurer
from pytest_energy.meters.base import MeterError
from pytest_energy.state import ItemState
from pytest_energy.units import parse_items

T = TypeVar("T")


class EnergyFixture:
    """Callable measuring helper handed to tests as ``energy``.

    * ``energy(fn, *args, **kwargs)`` runs ``fn`` under the test's measurement plan
      (warm-up + measured calls) and returns the last call's value;
    * ``with energy.measure(items=n): ...`` measures one block once; several blocks in
      one test are several trials of one call each;
    * ``energy.result`` is the :class:`~pytest_energy.measure.EnergyResult` so far.

    A new ``energy(...)`` call replaces what was measured before: budgets apply to the
    last measurement.
    """

    def __init__(self, state: ItemState, measurer_factory: Callable[[], Measurer]) -> None:
        self._state = state
        self._measurer_factory = measurer_factory
        self._measurer: Measurer | None = None
        self._blocks: EnergyResult | None = None
        self._items_override: float | None = None

    @property
    def items(self) -> float | None:
        """Items one measured call processes (overrides the marker's ``items``)."""
        return self._items_override

    @items.setter
    def items(self, value: float | None) -> None:
        self._items_override = None if value is None else parse_items(value, argument="items")
        result = self._state.result
        if result is not None and result is not self._blocks:  # applies to energy(fn) too
            result.items_per_call = self._items_override

    def _get_measurer(self) -> Measurer:
        if self._measurer is None:
            self._measurer = self._measurer_factory()
        return self._measurer

    @property
    def result(self) -> EnergyResult | None:
        """The current measurement, or None before anything was measured."""
        return self._state.result

    def _items(self, items: float | None) -> float | None:
        config = self._state.config
        if items is not None:
            return items
        if self._items_override is not None:
            return self._items_override
        return config.items if config else None

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        measurer = self._get_measurer()
        config = self._state.config
        assert config is not None
        result = measurer.new_result(self._items(None))
        self._state.result = result  # partial data stays visible if fn fails
        self._blocks = None
        try:
            value, _ = measurer.run(lambda: fn(*args, **kwargs), warmup=config.warmup,
                                    rounds=config.rounds, trials=config.trials,
                                    max_time_s=config.max_time, result=result)
        except MeterError as exc:
            self._meter_failed(exc)
        return value  # type: ignore[no-any-return]

    def _meter_failed(self, exc: MeterError) -> None:
        self._state.problem = str(exc)
        raise pytest.fail.Exception(f"energy meter failed: {exc}", pytrace=False) from None

    @contextmanager
    def measure(self, items: float | None = None) -> Iterator[EnergyResult]:
        measurer = self._get_measurer()
        if self._blocks is None or self._state.result is not self._blocks:
            self._blocks = measurer.new_result(None)
            self._state.result = self._blocks
        try:
            with measurer.block(self._blocks, items=self._items(items)):
                yield self._blocks
        except MeterError as exc:
            self._meter_failed(exc)
