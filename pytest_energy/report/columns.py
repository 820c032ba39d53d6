"""The names of the summary's columns, and the parser of ``--energy-columns``.

Kept apart from the renderers (and free of their imports) because the options table
imports the parser on every pytest run. A column is named by a short word
(``energy``, ``latency``...) or by its header as printed (``J/call``, ``latency med``),
case-insensitive; ``all`` is the full table that ``-v`` prints.
"""

from __future__ import annotations

from pytest_energy.errors import EnergyConfigError

#: Every column of the full table, in its order (the test id always comes first).
COLUMN_NAMES = ("energy", "per_item", "latency", "p95", "calls", "budget", "rating",
                "per_1k_items", "rated_by", "meter", "verdict")
ALL = "all"
#: Headers as the tables print them (compact, then full where it differs), as aliases.
_ALIASES = {
    "j/call": "energy", "j_call": "energy", "j/item": "per_item", "j_item": "per_item",
    "latency_med": "latency", "median": "latency", "budget_use": "budget",
    "per_1k": "per_1k_items", "rated": "rated_by",
}


def _name(word: str) -> str | None:
    key = word.strip().lower().replace(" ", "_").replace("-", "_")
    if key in COLUMN_NAMES:
        return key
    return _ALIASES.get(key)


def parse_columns(value: object, *, argument: str) -> tuple[str, ...] | None:
    """``"energy,rating,verdict"`` -> those columns in that order (the test id is always
    shown first); ``"all"`` -> every column; empty -> None (the compact default).

    An unknown name is a usage error that lists the accepted names.
    """
    words = [w.strip() for w in str(value or "").split(",")]
    if [w.lower() for w in words] == [ALL]:
        return COLUMN_NAMES
    names = [_column(word, value, argument) for word in words if word]
    # the test id is always first; a column named twice is shown once
    return tuple(dict.fromkeys(n for n in names if n != "test")) or None


def _column(word: str, value: object, argument: str) -> str:
    name = "test" if word.lower() == "test" else _name(word)
    if name is None:
        raise EnergyConfigError(
            f"{argument}={value!r} is not valid: unknown column {word!r}; use "
            f"{ALL} or a comma-separated list of {', '.join(COLUMN_NAMES)}")
    return name
