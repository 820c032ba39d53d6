"""Text that fits the terminal: test ids shortened in the middle, tables whose first
column gives way, notes wrapped.

A summary row that wraps onto three terminal lines cannot be read as a table, so the
compact reports are laid out for the terminal's width: the first column (a test id or
a variant) is shortened in its middle, keeping what tells rows apart (the function name
and the parameter id at its end); columns the caller marked optional are left out,
lowest priority first, when the rest would not fit otherwise.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_energy.report.cells import can_print

ELLIPSIS, ASCII_ELLIPSIS = "\u2026", "..."
#: The first column never gets narrower than this (below it an id says nothing).
MIN_FIRST_WIDTH = 16
GAP = "  "  # between columns, as tabulate's "simple" format
MIN_HEAD = 4  # a path cut to fewer characters ("ex…") says nothing: leave it out


def ellipsis(encoding: str | None) -> str:
    """``…`` where the terminal's encoding can print it, else ``...``."""
    return ELLIPSIS if can_print(ELLIPSIS, encoding) else ASCII_ELLIPSIS


def shorten_middle(text: str, width: int, mark: str = ELLIPSIS) -> str:
    """``text`` cut to ``width`` by replacing its middle with ``mark``."""
    if len(text) <= width:
        return text
    keep = width - len(mark)
    if keep < 2:
        return text[:width]
    tail = keep // 2
    return text[:keep - tail] + mark + text[len(text) - tail:]


def short_id(nodeid: str, width: int, mark: str = ELLIPSIS) -> str:
    """A test id cut to ``width`` in its middle, keeping the function name and the
    parameter id: ``examples/…::test_predict[batch8-fp32]``.

    The path goes first, from its end; then the "::"; only when the function name and
    the parameter id alone are wider than ``width`` is the function name cut (the
    parameter id tells the variants of one function apart), and last both, keeping the
    start of the name and the end of the parameter id.
    """
    if len(nodeid) <= width:
        return nodeid
    head, sep, name = nodeid.rpartition("::")
    if not sep:
        return shorten_middle(nodeid, width, mark)
    room = width - len(mark) - len(sep) - len(name)
    if room >= MIN_HEAD:
        return head[:room] + mark + sep + name
    if len(mark) + len(name) <= width:
        return mark + name
    function, bracket, param = name.partition("[")
    room = width - len(mark) - len(bracket) - len(param)
    if bracket and room >= MIN_HEAD:  # the parameter id tells variants apart: keep it
        return function[:room] + mark + bracket + param
    return shorten_middle(name, width, mark)


def kept_width(nodeid: str, mark: str = ELLIPSIS) -> int:
    """The narrowest width at which :func:`short_id` keeps the whole function name and
    parameter id of ``nodeid``."""
    name = nodeid.rpartition("::")[2]
    return min(len(nodeid), len(mark) + len(name))


def wrap(line: str, width: int | None, indent: str = "  ") -> list[str]:
    """One long line as several of at most ``width`` characters (continuations
    indented); ``width=None`` leaves it whole. Words are broken only when one alone is
    wider than the line."""
    if width is None or len(line) <= width:
        return [line]
    return textwrap.wrap(line, width=width, subsequent_indent=indent,
                         break_on_hyphens=False, drop_whitespace=True) or [line]


def wrap_all(lines: Sequence[str], width: int | None, indent: str = "  ") -> list[str]:
    return [part for line in lines for part in wrap(line, width, indent)]


@dataclass(frozen=True)
class Column:
    """One column of a fitted table: its header, its cells, and its priority (0 =
    always kept; higher numbers are left out first when the table does not fit)."""

    header: str
    cells: list[str]
    priority: int = 0


def _widths(columns: Sequence[Column]) -> list[int]:
    return [max([len(c.header), *(len(cell) for cell in c.cells)]) for c in columns]


@dataclass(frozen=True)
class Fitted:
    """A table laid out for a width: its lines, and the columns left out to fit."""

    lines: list[str]
    left_out: list[str]


def fit_table(first: Column, columns: Sequence[Column], width: int | None,
              first_floor: int, mark: str = ELLIPSIS, *, ids: bool = True) -> Fitted:
    """``first`` (test ids when ``ids``, else plain labels) and ``columns``, within
    ``width`` where that can be done.

    Optional columns (priority > 0) are left out, highest priority number first, while
    the first column would have to be cut below ``first_floor`` (the width at which
    its ids keep their function name and parameter id); then the first column takes
    the width left, never under :data:`MIN_FIRST_WIDTH`.
    """
    kept = list(columns)
    left_out: list[str] = []
    natural = max([len(first.header), *(len(cell) for cell in first.cells)])
    floor = min(natural, max(first_floor, MIN_FIRST_WIDTH))

    def others() -> int:
        return sum(_widths(kept)) + len(GAP) * len(kept)

    while width is not None and others() + floor > width:
        optional = [c for c in kept if c.priority > 0]
        if not optional:
            break
        dropped = max(optional, key=lambda c: c.priority)
        kept.remove(dropped)
        left_out.append(dropped.header)
    first_width = natural if width is None else max(
        min(natural, width - others()), min(natural, MIN_FIRST_WIDTH))
    cut = short_id if ids else shorten_middle
    shown = Column(first.header, [cut(cell, first_width, mark) for cell in first.cells])
    return Fitted(table_lines([shown, *kept]), left_out)


def table_lines(columns: Sequence[Column]) -> list[str]:
    """Left-aligned columns, each as wide as its widest cell or header (no padding
    beyond it: every character counts at 80 columns), two spaces apart."""
    widths = _widths(columns)
    rows = zip(*(c.cells for c in columns), strict=True)

    def line(cells: Sequence[str]) -> str:
        return GAP.join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line([c.header for c in columns]), GAP.join("-" * w for w in widths),
            *(line(cells) for cells in rows)]
