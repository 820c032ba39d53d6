"""The one formatting layer: how a number, a rating or a row is written, for the
terminal and markdown alike. Every report module formats through these functions, so a
percentage or an estimated energy reads the same in every table."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pytest_energy.units import format_duration_ms, format_energy

FULL_STAR, EMPTY_STAR = "\u2605", "\u2606"
MISSING = "-"


def percent(fraction: float | None) -> str:
    """``"42%"``; ``"<1%"`` for a positive fraction that rounds to 0; ``-`` for None."""
    if fraction is None:
        return MISSING
    return "<1%" if 0 < fraction < 0.005 else f"{fraction * 100:.0f}%"


def energy(joules: float | None, estimated: bool | None = False) -> str:
    """``"1.2 mJ"``, with ``" est."`` when the meter models rather than measures."""
    if joules is None:
        return MISSING
    return format_energy(joules) + (" est." if estimated else "")


def duration(ms: float | None) -> str:
    return MISSING if ms is None else format_duration_ms(ms)


def can_print(text: str, encoding: str | None) -> bool:
    """Whether ``text`` can be written in ``encoding`` (None: standard output's)."""
    encoding = encoding if encoding is not None else getattr(sys.stdout, "encoding", None)
    try:
        text.encode(encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return False
    return True


def can_print_stars(encoding: str | None) -> bool:
    return can_print(FULL_STAR + EMPTY_STAR, encoding)


def stars(rating: int | None, encoding: str | None = None) -> str:
    """``★★★★☆`` (or ``****.`` where the terminal cannot print stars); ``-`` unrated."""
    if rating is None:
        return MISSING
    full, empty = (FULL_STAR, EMPTY_STAR) if can_print_stars(encoding) else ("*", ".")
    return full * rating + empty * (5 - rating)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """tabulate's "simple" format for left-aligned string cells, in linear time."""
    # tabulate pads each header by 2 (its MIN_PADDING) when sizing a column
    widths = [max([len(h) + 2, *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths),
                      *(line(r) for r in rows)])


def md_cell(text: object) -> str:
    """A markdown table cell: pipes and backslashes escaped, newlines folded (test ids
    from parametrize may hold either)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table, one line per row."""
    lines = ["| " + " | ".join(md_cell(h) for h in headers) + " |",
             "|" + "|".join(" --- " for _ in headers) + "|"]
    lines.extend("| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows)
    return lines
