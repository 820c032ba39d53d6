"""Energy labels as SVG, in the spirit of Hugging Face's AI Energy Score label.

A label shows one measured test at a glance, for a README, a model card or the HTML
report: its name, its energy per 1,000 items in Wh (per 1,000 *calls*, said so, when
the test declared no items), its stars, the hardware, the meter (an estimate is
labelled as one) and the date of the run.

Nothing here measures, rates or reads a clock. The stars are the entry's ``rating``,
decided once at the end of the run (:mod:`pytest_energy.report.finish`) and carried by
the JSON report and the history: a label never recomputes them, so it always agrees
with the terminal, the JSON report and the HTML report. The same entry and date give
the same bytes.

The SVG is standalone SVG 1.1 (``xmlns``, ``width``/``height``/``viewBox``) with no
fonts, images, links, scripts or ``id`` attributes to fetch or collide: it can be
written to a file as it is or placed inline in an HTML page, several per page. Every
text from the run (test ids hold ``<``, ``&`` and quotes) is escaped.

Example::

    from pytest_energy.report.label import label_svg

    svg = label_svg(entry, date=run_created, meter=report["meter"],
                    machine=report["machine"])
    Path("energy-label.svg").write_text(svg, encoding="utf-8")
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pytest_energy.entry import Entry
from pytest_energy.report.label_facts import (
    LabelFacts,
    counted,
    date_text,
    energy_per_1000,
    hardware_text,
    label_problem,
    rating_note,
)
from pytest_energy.stars import STAR_INTERVALS

__all__ = ["LabelFacts", "date_text", "energy_per_1000", "facts_svg", "group_label_svg",
           "hardware_text", "label_problem", "label_svg", "rating_note"]

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH = 340
PAD = 14
FONT = "DejaVu Sans, Verdana, Geneva, Arial, Helvetica, sans-serif"
INK, MUTED, BRAND, PANEL = "#111827", "#4b5563", "#14532d", "#f0fdf4"
STAR_FULL = ('fill="#f59e0b" stroke="#b45309"', "star star-full")
STAR_EMPTY = ('fill="#e5e7eb" stroke="#9ca3af"', "star star-empty")
#: Characters XML 1.0 cannot hold even escaped (a test id may hold any of them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


# ----- drawing ---------------------------------------------------------------------------
def clean_text(text: object) -> str:
    """``text`` as XML character data: characters XML cannot hold replaced, line breaks
    and tabs folded, ``<``, ``&`` and ``>`` escaped."""
    folded = re.sub(r"[\t\r\n]+", " ", str(text))
    return escape(_NOT_XML.sub("\ufffd", folded))


def _attr(text: object) -> str:
    """``text`` as a quoted XML attribute value (quotes escaped)."""
    return quoteattr(_NOT_XML.sub("\ufffd", re.sub(r"[\t\r\n]+", " ", str(text))))


def shorten(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: the middle dropped for an ellipsis, so a
    parametrized id keeps its start and its ``[params]`` end."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 5
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head):]


def text_el(x: float, y: float, text: str, *, size: int = 11, fill: str = INK,
            weight: str = "normal", anchor: str = "start", cls: str = "") -> str:
    """One ``<text>`` element (``text`` is escaped here)."""
    klass = f' class="{cls}"' if cls else ""
    bold = f' font-weight="{weight}"' if weight != "normal" else ""
    end = f' text-anchor="{anchor}"' if anchor != "start" else ""
    return (f'<text x="{x:g}" y="{y:g}" font-size="{size}" fill="{fill}"{bold}{end}'
            f"{klass}>{clean_text(text)}</text>")


def star_points(cx: float, cy: float, outer: float) -> str:
    """A five-pointed star's polygon points, point up (deterministic text)."""
    points = []
    for k in range(10):
        radius = outer if k % 2 == 0 else outer * 0.42
        angle = math.pi / 2 - k * math.pi / 5
        points.append(f"{cx + radius * math.cos(angle):.2f},{cy - radius * math.sin(angle):.2f}")
    return " ".join(points)


def stars_row(x: float, cy: float, rating: int | None, outer: float = 11.0) -> list[str]:
    """Five star shapes from ``x``: ``rating`` of them filled (none when unrated)."""
    filled = rating or 0
    step = outer * 2 + 5
    return [f'<polygon class="{(STAR_FULL if i < filled else STAR_EMPTY)[1]}" '
            f'points="{star_points(x + outer + i * step, cy, outer)}" '
            f'{(STAR_FULL if i < filled else STAR_EMPTY)[0]} stroke-width="1"/>'
            for i in range(STAR_INTERVALS)]


def svg_document(height: int, title: str, body: Sequence[str]) -> str:
    """The standalone SVG around ``body``: border, header band, accessible title."""
    head = (f'<svg xmlns="{SVG_NS}" version="1.1" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label={_attr(title)} '
            f'font-family="{FONT}">')
    frame = [f"<title>{clean_text(title)}</title>",
             f'<rect x="1" y="1" width="{WIDTH - 2}" height="{height - 2}" rx="8" '
             f'fill="#ffffff" stroke="{BRAND}" stroke-width="2"/>',
             f'<path d="M1 9 a8 8 0 0 1 8 -8 H{WIDTH - 9} a8 8 0 0 1 8 8 V34 H1 Z" '
             f'fill="{BRAND}"/>',
             text_el(PAD, 23, "ENERGY LABEL", size=13, fill="#ffffff", weight="bold"),
             text_el(WIDTH - PAD, 23, "pytest-energy", size=11, fill="#dcfce7",
                     anchor="end")]
    return "\n".join([head, *frame, *body, "</svg>"]) + "\n"


def _name_lines(nodeid: str) -> list[str]:
    """The test's file (small) and its name (large): ``a/b.py`` / ``test_x[8]``."""
    path, sep, name = nodeid.rpartition("::")
    lines = []
    if sep and path:
        lines.append(text_el(PAD, 53, shorten(path, 46), size=11, fill=MUTED, cls="path"))
    name = name if sep else nodeid
    size, limit = (16, 31) if len(name) <= 31 else (13, 39)  # long ids: smaller first
    lines.append(text_el(PAD, 74, shorten(name, limit), size=size, weight="bold", cls="name"))
    return lines


def _energy_panel(facts: LabelFacts) -> list[str]:
    sub = facts.per_text + (f" \u00b1{facts.accuracy * 100:.0f}%"
                            if facts.accuracy is not None else "")
    return [f'<rect x="{PAD - 4}" y="86" width="{WIDTH - 2 * PAD + 8}" height="64" rx="6" '
            f'fill="{PANEL}"/>',
            text_el(PAD, 122, facts.figure, size=30, weight="bold", fill=BRAND,
                    cls="energy"),
            text_el(PAD, 141, sub, size=11, fill=MUTED, cls="per")]


def _rating_rows(facts: LabelFacts) -> list[str]:
    score = "unrated" if facts.rating is None else f"{facts.rating}/{STAR_INTERVALS}"
    return [*stars_row(PAD, 174, facts.rating),
            text_el(PAD + 5 * 27 + 8, 179, score, size=15, weight="bold", cls="rating"),
            text_el(PAD, 203, shorten(facts.rating_note, 50), size=10, fill=MUTED,
                    cls="rating-note")]


def _fact_rows(rows: Sequence[tuple[str, str]], top: float) -> list[str]:
    """``Hardware  NVIDIA H100`` rows from ``top``, values shortened to fit."""
    out = [f'<line x1="{PAD}" y1="{top - 16:g}" x2="{WIDTH - PAD}" y2="{top - 16:g}" '
           'stroke="#d1d5db" stroke-width="1"/>']
    for index, (key, value) in enumerate(rows):
        y = top + index * 18
        out.append(text_el(PAD, y, key, size=11, fill=MUTED, weight="bold"))
        out.append(text_el(PAD + 70, y, shorten(value, 36), size=11,
                           cls=key.lower().replace(" ", "-")))
    return out


def _estimate_badge(y: float) -> list[str]:
    return [f'<rect x="{PAD - 4}" y="{y:g}" width="{WIDTH - 2 * PAD + 8}" height="22" rx="4" '
            'fill="#fff7ed" stroke="#ea580c" stroke-width="1"/>',
            text_el(PAD, y + 15, "ESTIMATE: modelled, not read from an energy counter",
                    size=10, fill="#9a3412", weight="bold", cls="estimate")]


def facts_svg(facts: LabelFacts) -> str:
    """The label of ``facts`` (see :func:`label_svg`)."""
    meter = facts.meter
    if facts.estimated and "estimate" not in meter:
        meter += " (estimate)"
    rows = [("Hardware", facts.hardware), ("Meter", meter), ("Date", facts.date or "-")]
    body = [*_name_lines(facts.name), *_energy_panel(facts), *_rating_rows(facts),
            *_fact_rows(rows, 234)]
    height = 234 + 18 * (len(rows) - 1) + 14
    if facts.estimated:
        body += _estimate_badge(height - 4)
        height += 26
    return svg_document(height, facts.summary, body)


def label_svg(entry: Entry, *, date: str = "", meter: Mapping[str, Any] | None = None,
              machine: Mapping[str, Any] | None = None, hardware: str | None = None) -> str:
    """One test's energy label as a standalone SVG document (UTF-8 text, no XML
    declaration, so it also goes inline into HTML as it is).

    ``date``: when the run was made (an ISO timestamp: the run's ``created``; the label
    shows its day). ``meter`` and ``machine``: the JSON report's (or a stored run's)
    dicts, from which :func:`hardware_text` names the hardware; ``hardware`` given
    instead is shown as it is. The stars are ``entry.rating``, never recomputed.

    Raises ValueError when the entry has no valid measurement (:func:`label_problem`).

    >>> svg = label_svg(entry, date="2024-06-01T12:00:00+00:00",
    ...                 meter=report["meter"], machine=report["machine"])  # doctest: +SKIP
    """
    problem = label_problem(entry)
    if problem is not None:
        raise ValueError(problem)
    return facts_svg(LabelFacts.of(entry, date=date, meter=meter, machine=machine,
                                   hardware=hardware))


# ----- a group: its variants side by side -------------------------------------------------
def _variant_name(entry: Entry, group: str) -> str:
    """A member's short name: its variant, else its id without the file part."""
    return entry.variant or entry.nodeid.rpartition("::")[2] or group


def _member_row(facts: LabelFacts, name: str, y: float) -> list[str]:
    figure = facts.figure + ("" if facts.per == "items" else " *")
    return [text_el(PAD, y, shorten(name, 22), size=11, cls="variant"),
            *stars_row(178, y - 4, facts.rating, outer=6.0),
            text_el(WIDTH - PAD, y, figure, size=11, weight="bold", anchor="end",
                    cls="energy")]


def _group_facts(entries: Sequence[Entry], group: str,
                 **context: Any) -> list[tuple[str, LabelFacts]]:
    """The measured members' (short name, facts), least energy first."""
    rows = [(_variant_name(e, group), LabelFacts.of(e, **context))
            for e in entries if label_problem(e) is None]
    if not rows:
        raise ValueError(f"group {group} has no test with a valid measurement")
    return sorted(rows, key=lambda row: (math.inf if row[1].wh_per_1000 is None
                                         else row[1].wh_per_1000))


def _group_fact_rows(measured: Sequence[LabelFacts]) -> list[tuple[str, str]]:
    meters = ", ".join(dict.fromkeys(facts.meter for facts in measured))
    if any(facts.estimated for facts in measured) and "estimate" not in meters:
        meters += " (estimate)"
    return [("Hardware", counted(dict.fromkeys(f.hardware for f in measured))),
            ("Meter", meters), ("Date", measured[0].date or "-")]


def group_label_svg(group: str, entries: Sequence[Entry], *, date: str = "",
                    meter: Mapping[str, Any] | None = None,
                    machine: Mapping[str, Any] | None = None,
                    hardware: str | None = None) -> str:
    """A right-sizing group's label: each measured variant with its stars and its energy
    per 1,000 items, least energy first (same arguments as :func:`label_svg`).

    Raises ValueError when no entry has a valid measurement.
    """
    members = _group_facts(entries, group, date=date, meter=meter, machine=machine,
                           hardware=hardware)
    measured = [facts for _, facts in members]
    note = "energy per 1,000 items" + (
        "; * per 1,000 calls (no items declared)"
        if any(facts.per == "calls" for facts in measured) else "")
    body = [text_el(PAD, 53, "group", size=11, fill=MUTED),
            text_el(PAD, 74, shorten(group, 31), size=16, weight="bold", cls="name"),
            text_el(PAD, 94, note, size=10, fill=MUTED, cls="per")]
    for row, (name, facts) in enumerate(members):
        body += _member_row(facts, name, 116 + row * 20)
    top = 116 + len(members) * 20 + 18
    rows = _group_fact_rows(measured)
    body += _fact_rows(rows, top)
    height = top + 18 * (len(rows) - 1) + 14
    if any(facts.estimated for facts in measured):
        body += _estimate_badge(height - 4)
        height += 26
    title = f"group {group}: " + "; ".join(
        f"{name} {facts.figure}, "
        + ("not rated" if facts.rating is None else f"{facts.rating} of 5 stars")
        for name, facts in members)
    return svg_document(height, title, body)
