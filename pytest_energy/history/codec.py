"""How a stored result is packed (history schema 3): a few hundred bytes, not 4 KB of JSON.

The entries of one run are alike: the same keys in the same order, the same meter,
domains, budgets and plan, with different numbers. Stored as JSON text per test they
took 21 MB per run of a 5,000-test suite. So each result is packed in two parts:

* **its numbers**, in a binary stream: a float with a short decimal form (``0.27``,
  ``0.040014694``) as that decimal (a varint and an exponent byte), one with a long form
  (an energy: 17 digits) as its 8 bytes XOR the previous such float's, without the
  zero high bytes alike numbers leave, a float met before in the same entry (the energy
  per call again in ``budget_use``) as a back-reference. Whole floats (``1.0``,
  ``50.0``) stay in the JSON. Exact: decoding gives back the same float, bit for bit.
* **the rest**, as JSON with ``NaN`` where a number was taken out (a real NaN is stored
  as null, as JSON has none), compressed with raw deflate primed with a *dictionary*:
  the same text for a sample of the run's entries (:func:`dictionary`, stored once per
  run). What equals the sample (keys, meter, budgets, most strings) costs almost nothing.

Lists of alike objects (the trials) are stored by column (``{"~table": [keys, col,
...]}``) instead of repeating every key per trial. Keys starting with ``~`` are escaped,
so any JSON object round-trips: decoding returns exactly the object that was encoded
(non-finite floats as null, other non-JSON values as their ``str``, like the JSON the
history stored before).

Layout of a packed result: byte 0 the codec version (:data:`CODEC`), a varint length
of the deflated JSON, the deflated JSON, then the numbers up to the end.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

CODEC = 1
TABLE = "~table"  # {"~table": [keys, column, column, ...]}: a list of alike objects
_ESCAPE = "~"
_MARK = float("nan")  # where a number was taken out of the JSON
_TEXT_MAX = 1e6  # whole floats below this ("1.0", "50.0") stay in the JSON
_MANTISSA_MAX = 10 ** 12  # decimals with more digits are stored as 8 raw bytes
# Number tags: 0-127 a decimal with exponent tag - 127 (a varint mantissa follows);
# 128-136 a float's 8 bytes XOR the previous such float's, cut to tag - 128 low bytes
# (alike numbers share their sign, exponent and first digits: the XOR's high bytes are
# zero); 254 a number met before in the entry (a varint index follows).
_BIAS, _XOR, _REPEAT = 127, 128, 254
_FLOAT = struct.Struct("<d")
_BITS = struct.Struct("<Q")
_POWERS = [10 ** k for k in range(_BIAS + 1)]
_PLAIN = frozenset({str, int, bool})  # JSON scalars kept as they are (floats are not)
_DICTIONARY_SAMPLE = 16  # entries whose text primes the compression of a run
_DICTIONARY_MAX = 32768  # deflate's window: a longer dictionary is not used
_WBITS = -15  # raw deflate: no zlib header or checksum (the database has its own)
_MEM_LEVEL = 4  # a smaller compressor state to copy per result; as small a result


class CodecError(ValueError):
    """A packed result that cannot be decoded: the file is damaged."""


# ----- the JSON part: numbers taken out, tables by column ------------------------------------


def _skeleton(value: Any, numbers: list[float]) -> Any:
    """``value`` as JSON-ready data with floats moved to ``numbers`` (see module doc).

    Scalars are handled inline by the container loops: this walk runs for every stored
    test, and a call per value would double its cost."""
    kind = type(value)
    if kind is dict:
        return _dict_skeleton(value, numbers)
    if kind is list:
        return _list_skeleton(value, numbers)
    if kind is float:
        return _float_skeleton(value, numbers)
    if kind in _PLAIN or value is None:
        return value
    return _other_skeleton(value, numbers)


def _dict_skeleton(value: dict[Any, Any], numbers: list[float]) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if type(key) is not str or key[:1] == _ESCAPE:
            key = _escape(str(key))
        out[key] = item if type(item) in _PLAIN or item is None else _skeleton(item, numbers)
    return out


def _float_skeleton(value: float, numbers: list[float]) -> float | None:
    if value.is_integer() and -_TEXT_MAX < value < _TEXT_MAX:
        return value  # 1.0, 50.0: as text they match the dictionary
    if not math.isfinite(value):
        return None
    numbers.append(value)
    return _MARK


def _other_skeleton(value: Any, numbers: list[float]) -> Any:
    """Subclasses and other types: as ``json.dumps(default=str)`` would store them."""
    if isinstance(value, float):
        return _skeleton(float(value), numbers)
    if isinstance(value, (str, int)):
        return value
    if isinstance(value, Mapping):
        return _skeleton(dict(value.items()), numbers)
    if isinstance(value, (list, tuple)):
        return _list_skeleton(list(value), numbers)
    return str(value)


def _list_skeleton(items: list[Any], numbers: list[float]) -> Any:
    keys = _table_keys(items)
    if keys is None:
        return [item if type(item) in _PLAIN or item is None else _skeleton(item, numbers)
                for item in items]
    columns = [_skeleton([item[key] for item in items], numbers) for key in keys]
    return {TABLE: [[_escape(str(key)) for key in keys], *columns]}


def _table_keys(items: list[Any]) -> list[Any] | None:
    """The keys of a list of at least two objects with the same keys in the same order."""
    if len(items) < 2 or not all(isinstance(item, Mapping) for item in items):
        return None
    keys = list(items[0])
    if not keys or any(list(item) != keys for item in items[1:]):
        return None
    return keys


def _escape(key: str) -> str:
    return _ESCAPE + key if key.startswith(_ESCAPE) else key


def _restore(value: Any, numbers: Iterator[float]) -> Any:
    """The inverse of :func:`_skeleton` (``value`` as ``json.loads`` returns it)."""
    if type(value) is list:
        return [_restore_item(item, numbers) for item in value]
    if type(value) is not dict:
        return _restore_item(value, numbers)
    table = value.get(TABLE) if len(value) == 1 else None
    if type(table) is list and table:
        return _restore_table(table, numbers)
    out = {}
    for key, item in value.items():
        if key[:2] == _ESCAPE + _ESCAPE:
            key = key[1:]
        out[key] = _restore_item(item, numbers)
    return out


def _restore_item(item: Any, numbers: Iterator[float]) -> Any:
    kind = type(item)
    if kind is float:
        return next(numbers) if item != item else item
    if kind is dict or kind is list:
        return _restore(item, numbers)
    return item


def _restore_table(table: list[Any], numbers: Iterator[float]) -> list[dict[str, Any]]:
    keys = [key[1:] if key[:2] == _ESCAPE + _ESCAPE else key for key in table[0]]
    columns = [_restore(column, numbers) for column in table[1:]]
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


def _text(skeleton: Any) -> bytes:
    return json.dumps(skeleton, separators=(",", ":")).encode("ascii")


# ----- the numbers -----------------------------------------------------------------------------


def _put_varint(number: int, out: bytearray) -> None:
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return


def _get_varint(data: bytes, at: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        if at >= len(data):
            raise CodecError("a packed number is cut short")
        byte = data[at]
        at += 1
        number |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return number, at


def _decimal(text: str) -> tuple[int, int] | None:
    """(mantissa, exponent) of a float's shortest text (``repr``), or None when 8 raw
    bytes are as short (many digits, an exponent, ``-0.0``)."""
    if "e" in text or text == "-0.0":
        return None
    whole, _, fraction = text.partition(".")
    mantissa = int(whole + fraction)
    if not -_MANTISSA_MAX < mantissa < _MANTISSA_MAX or len(fraction) > _BIAS:
        return None
    return mantissa, -len(fraction)


def _pack_numbers(numbers: Sequence[float]) -> bytes:
    out = bytearray()
    seen: dict[float, int] = {}  # number -> its index among the distinct numbers
    distinct = 0  # numbers stored so far (not as a reference)
    previous = 0  # the bits of the last number stored as bits
    for number in numbers:
        index = seen.get(number) if number else None  # 0.0 == -0.0: never shared
        if index is not None:
            out.append(_REPEAT)
            _put_varint(index, out)
            continue
        if number:
            seen[number] = distinct
        distinct += 1
        decimal = _decimal(repr(number))
        if decimal is None:
            (bits,) = _BITS.unpack(_FLOAT.pack(number))
            xor = bits ^ previous
            size = (xor.bit_length() + 7) // 8
            out.append(_XOR + size)
            out += xor.to_bytes(size, "little")
            previous = bits
            continue
        mantissa, exponent = decimal
        out.append(exponent + _BIAS)
        _put_varint(mantissa * 2 if mantissa >= 0 else -mantissa * 2 - 1, out)  # zigzag
    return bytes(out)


def _unpack_numbers(data: bytes, at: int) -> list[float]:
    numbers: list[float] = []
    distinct: list[float] = []
    previous = 0
    while at < len(data):
        tag = data[at]
        at += 1
        if tag == _REPEAT:
            index, at = _get_varint(data, at)
            if index >= len(distinct):
                raise CodecError("a packed number refers to one that does not exist")
            numbers.append(distinct[index])
            continue
        if tag <= _BIAS:
            zigzag, at = _get_varint(data, at)
            mantissa = zigzag >> 1 if not zigzag & 1 else -((zigzag + 1) >> 1)
            # int / int is correctly rounded: the same float as the decimal text
            number = mantissa / _POWERS[_BIAS - tag]
        elif tag <= _XOR + _FLOAT.size and at + tag - _XOR <= len(data):
            previous ^= int.from_bytes(data[at:at + tag - _XOR], "little")
            at += tag - _XOR
            (number,) = _FLOAT.unpack(_BITS.pack(previous))
        else:
            raise CodecError(f"a packed number has an unknown tag {tag} or is cut short")
        distinct.append(number)
        numbers.append(number)
    return numbers


# ----- entries ---------------------------------------------------------------------------------


def dictionary(entries: Sequence[Mapping[str, Any]]) -> bytes:
    """The compression dictionary of a run: the JSON part of a sample of its entries
    (spread over the run, so each kind of test is likely in it), at most 32 KB."""
    step = max(1, len(entries) // _DICTIONARY_SAMPLE)
    parts = [_text(_skeleton(entry, [])) for entry in entries[::step][:_DICTIONARY_SAMPLE]]
    return b"".join(parts)[-_DICTIONARY_MAX:]


class Packing:
    """Packs and unpacks the results of one run with its dictionary (see module doc).

    The compressor is primed with the dictionary once and copied for each result:
    priming costs more than compressing a result.
    """

    def __init__(self, zdict: bytes) -> None:
        self.zdict = zdict
        self._primed: Any = None  # zlib's compressor (no public type); made when packing

    def encode(self, entry: Mapping[str, Any]) -> bytes:
        """A JSON object (an entry without its node id), packed."""
        numbers: list[float] = []
        text = _text(_skeleton(entry, numbers))
        if self._primed is None:
            self._primed = zlib.compressobj(9, zlib.DEFLATED, _WBITS, _MEM_LEVEL,
                                            zlib.Z_DEFAULT_STRATEGY, self.zdict)
        packer = self._primed.copy()
        body = packer.compress(text) + packer.flush()
        out = bytearray([CODEC])
        _put_varint(len(body), out)
        return bytes(out + body + _pack_numbers(numbers))

    def decode(self, packed: bytes) -> dict[str, Any]:
        """The JSON object :meth:`encode` packed; CodecError when it cannot be read."""
        if not packed or packed[0] != CODEC:
            raise CodecError(f"unknown packing {bytes(packed[:1]).hex() or 'empty'} (a "
                             "newer pytest-energy, or a damaged file)")
        length, at = _get_varint(packed, 1)
        try:
            unpacker = zlib.decompressobj(_WBITS, zdict=self.zdict)
            text = unpacker.decompress(packed[at:at + length]) + unpacker.flush()
            skeleton = json.loads(text)
        except (zlib.error, ValueError) as exc:
            raise CodecError(f"the packed JSON is unreadable ({exc})") from None
        remaining = iter(_unpack_numbers(packed, at + length))
        try:
            value = _restore(skeleton, remaining)
        except (StopIteration, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            raise CodecError(f"the packed numbers do not fit the JSON ({exc!r})") from None
        if next(remaining, None) is not None or not isinstance(value, dict):
            raise CodecError("the packed numbers do not fit the JSON")
        return value
