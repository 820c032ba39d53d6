"""The ``energy`` fixture: measure exactly the code you choose, and read the result.

Use it when the test body has side effects (so it must run once), when setup inside
the test must not be measured, or to assert on the numbers yourself. When the test
also has an ``energy_budget`` marker, the budgets apply to what the fixture measured.

With ``--energy-disable`` the fixture is a :class:`DisabledEnergy`: the same calls,
each running its code once, and a result whose every field is None. This module
imports the measuring code for type checking only, so that object costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_energy.meters.base import MeterError
from pytest_energy.units import parse_items

if TYPE_CHECKING:
    from pytest_energy.measure import EnergyResult, Measurer
    from pytest_energy.state import ItemState

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


class DisabledResult:
    """``energy.result`` under ``--energy-disable``: every field of a real result reads
    None (never a made-up number); a name a real result does not have is still an
    AttributeError, so a typo is not hidden."""

    disabled = True

    def __getattr__(self, name: str) -> None:
        from pytest_energy.measure import EnergyResult  # only when a field is read

        fields = getattr(EnergyResult, "__dataclass_fields__", {})
        if name.startswith("_") or not (name in fields or hasattr(EnergyResult, name)):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return None

    def __repr__(self) -> str:
        return "DisabledResult(measuring disabled by --energy-disable)"


class DisabledEnergy:
    """The ``energy`` fixture under ``--energy-disable``: runs the code once, measures
    nothing, and keeps the fixture's interface so tests need no change."""

    def __init__(self) -> None:
        self._result: DisabledResult | None = None
        self.items: float | None = None

    @property
    def result(self) -> DisabledResult | None:
        """None before anything ran, as with the real fixture; then a result of Nones."""
        return self._result

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` once and return its value."""
        self._result = DisabledResult()
        return fn(*args, **kwargs)

    @contextmanager
    def measure(self, items: float | None = None) -> Iterator[DisabledResult]:
        """Run the block once."""
        self._result = DisabledResult()
        yield self._result
