"""Packed results (history schema 3): exact round trips, compact sizes, damage reported."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.entry import Entry
from pytest_energy.history import codec
from pytest_energy.history.codec import CodecError, Packing

BENCH = Path(__file__).resolve().parents[1] / "bench" / "history_size.py"


def _bench() -> Any:
    """bench/history_size.py: the synthetic 5,000-test suite the size target is about."""
    spec = importlib.util.spec_from_file_location("history_size_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _bits(value: Any) -> Any:
    """A JSON value with floats as their bits: equality that tells -0.0 from 0.0."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, dict):
        return {key: _bits(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_bits(item) for item in value]
    return (type(value).__name__, value)


def round_trip(value: dict[str, Any], zdict: bytes = b"") -> dict[str, Any]:
    packing = Packing(zdict)
    return packing.decode(packing.encode(value))


def test_entries_of_a_run_round_trip_exactly() -> None:
    entries = [entry.to_json() for entry in _bench().suite(random.Random(7), 60)]
    for data in entries:
        data.pop("nodeid")
    packing = Packing(codec.dictionary(entries))
    for data in entries:
        back = packing.decode(packing.encode(data))
        assert _bits(back) == _bits(data)
        assert list(back) == list(data)  # key order too: export prints it
        assert Entry.from_json({"nodeid": "t", **back}) == Entry.from_json({"nodeid": "t",
                                                                            **data})


@pytest.mark.parametrize("number", [
    -0.0, 0.0, 5e-324, -1.5e-300, 1e308, 1e16, 0.1, 1 / 3, 2 ** 0.5, -2.5,
    123456789012.5, 0.39937800999999995, 0.040014694, 1e-05, 7.0, 1e6, -123456.0])
def test_every_float_comes_back_bit_for_bit(number: float) -> None:
    value = {"a": [number, number, 1.0], "b": {"c": number}}
    assert _bits(round_trip(value)) == _bits(value)


def test_json_edge_cases_round_trip() -> None:
    value = {
        "~table": [1, 2], "~~x": "y", "~": None,
        "table_like": {"~table": [["a"], [1, 2]]},  # a real key that looks like the marker
        "rows": [{"~k": 1, "v": 0.25}, {"~k": 2, "v": 0.5}],  # a table with escaped keys
        "mixed": [{"a": 1}, {"b": 2}], "one": [{"a": 1.5}], "empty": [], "nested": [[{}]],
        "text": "\x1b[31m\u202e", "big": 10 ** 30, "flags": [True, False, None],
    }
    assert _bits(round_trip(value)) == _bits(value)


def test_what_json_cannot_hold_is_stored_as_the_history_did() -> None:
    value = {"nan": math.nan, "inf": [math.inf], "tuple": (1, 2), "key": {1: "a"},
             "object": Path("/x")}
    assert round_trip(value) == {"nan": None, "inf": [None], "tuple": [1, 2],
                                 "key": {"1": "a"}, "object": "/x"}


hypothesis = pytest.importorskip("hypothesis")
strategies = pytest.importorskip("hypothesis.strategies")

_JSON = strategies.recursive(
    strategies.none() | strategies.booleans() | strategies.integers()
    | strategies.floats(allow_nan=False, allow_infinity=False) | strategies.text(max_size=8),
    lambda children: strategies.lists(children, max_size=4)
    | strategies.dictionaries(strategies.text(max_size=5), children, max_size=4),
    max_leaves=20)


@pytest.mark.slow  # a property test of many examples: run with -m slow
@hypothesis.given(strategies.dictionaries(strategies.text(max_size=6), _JSON, max_size=6),
                  strategies.binary(max_size=64))
@hypothesis.settings(max_examples=60, deadline=None)
def test_any_json_object_round_trips(value: dict[str, Any], zdict: bytes) -> None:
    assert _bits(round_trip(value, zdict)) == _bits(value)


@pytest.mark.parametrize("damage", ["version", "cut", "extra", "empty", "garbled"])
def test_a_damaged_result_is_an_error_not_a_wrong_entry(damage: str) -> None:
    packing = Packing(b"")
    packed = packing.encode({"a": [0.123456789123, 2.5e-7], "b": "x" * 50})
    broken = {"version": b"\x09" + packed[1:], "cut": packed[:-3], "empty": b"",
              "extra": packed + b"\x80\x01", "garbled": packed[:3] + b"\xff" * 8 + packed[11:]}
    with pytest.raises(CodecError):
        packing.decode(broken[damage])


def test_a_run_packs_to_a_few_hundred_bytes_a_test() -> None:
    """What keeps a 5,000-test run under 2 MB: its entries pack to ~250 bytes each,
    against ~3 KB of JSON, and the trials are stored by column."""
    entries = [entry.to_json() for entry in _bench().suite(random.Random(3), 200)]
    for data in entries:
        data.pop("nodeid")
    packing = Packing(codec.dictionary(entries))
    packed = [packing.encode(data) for data in entries]
    as_json = sum(len(json.dumps(data)) for data in entries) / len(entries)
    average = sum(map(len, packed)) / len(packed)
    assert as_json > 2500 and average < 300, (as_json, average)
    skeleton = codec._skeleton(entries[0]["trials"], [])
    assert list(skeleton) == [codec.TABLE]  # one list per field, not a dict per trial


def test_numbers_with_zeros_and_repeats_keep_their_places() -> None:
    numbers = [0.0, 0.123456789012345, -0.0, 0.0, 0.123456789012345, 2.5, 2.5, 5e-324, 0.0]
    packed = codec._pack_numbers(numbers)
    back = codec._unpack_numbers(packed, 0)
    assert [struct.pack("<d", n) for n in back] == [struct.pack("<d", n) for n in numbers]
