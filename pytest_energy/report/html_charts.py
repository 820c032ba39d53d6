"""Inline SVG charts for the HTML report, drawn in Python: no script, no library, no
network, so the report opens the same in any browser, offline, and stays small.

Two charts:

* :func:`rightsizing_chart`: one right-sizing group (a table of
  :func:`~pytest_energy.rightsizing.rightsizing_tables`): a bar of energy per item (per
  call where the group has no items) per variant, beside a bar of its latency with its
  latency budget marked, so the variant to ship reads at a glance;
* :func:`trend_chart`: one test's energy per call across recent runs, the baseline's
  noise band shaded and a regression marked.

Every text is escaped here (:func:`esc`): test ids and variant names come from the
test suite (parametrize ids can hold anything) or from a shared history.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_energy.report.cells import duration, energy

# Right-sizing chart geometry (pixels): the label column, the energy and latency panels.
ROW_H, TOP, LABEL_W, ENERGY_W, LATENCY_X, LATENCY_W = 22, 30, 170, 250, 520, 190
CHART_W = LATENCY_X + LATENCY_W + 70
LABEL_CHARS = 26  # a longer variant label is cut (the full one is in its tooltip)
# Trend sparkline geometry (viewBox units; the CSS sizes it).
TREND_W, TREND_H, PAD = 120, 30, 3


def esc(text: object) -> str:
    """``text`` safe inside HTML or SVG text and double-quoted attributes."""
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    """A coordinate, in whole pixels (small files; a screen shows no finer)."""
    return str(round(value))


def _cut(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _finite(value: Any) -> float | None:
    """A positive-or-zero finite number, else None (a JSON table may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") and number >= 0 else None


# ----- right-sizing ---------------------------------------------------------------------------


def _bar_class(row: Mapping[str, Any]) -> str:
    """Recommended, failing (did not complete or over its latency budget), or plain."""
    if row.get("recommended"):
        return "b best"
    if not row.get("completed") or not row.get("meets_latency"):
        return "b bad"
    return "b"


def _energy_bar(row: Mapping[str, Any], y: float, top: float, metric: str,
                estimated: bool) -> list[str]:
    value = _finite(row.get("metric_value"))
    x0 = LABEL_W
    width = 0.0 if value is None or top <= 0 else max(1.0, ENERGY_W * value / top)
    per = "/item" if metric == "joules_per_item" else "/call"
    text = energy(value, estimated) + per if value is not None else "not measured"
    return [f'<rect class="{_bar_class(row)}" x="{x0}" y="{_n(y)}" width="{_n(width)}" '
            f'height="{ROW_H - 6}"/><text x="{_n(x0 + width + 4)}" y="{_n(y + 12)}">'
            f"{esc(text)}</text>"]


def _latency_bar(row: Mapping[str, Any], y: float, top: float) -> list[str]:
    latency = _finite(row.get("latency_ms_median"))
    if latency is None or top <= 0:
        return []
    width = max(1.0, LATENCY_W * latency / top)
    over = _finite(row.get("latency_budget_ms")) is not None and not row.get("meets_latency")
    return [f'<rect class="{"l over" if over else "l"}" x="{LATENCY_X}" y="{_n(y)}" '
            f'width="{_n(width)}" height="{ROW_H - 6}"/><text x="{_n(LATENCY_X + width + 4)}" '
            f'y="{_n(y + 12)}">{esc(duration(latency))}</text>']


def _budget_marks(rows: Sequence[Mapping[str, Any]], top: float) -> str:
    """Each variant's latency budget: one red tick across its row, all in one path."""
    ticks, budgets = [], []
    for index, row in enumerate(rows):
        budget = _finite(row.get("latency_budget_ms"))
        if budget is not None and top > 0:
            x = LATENCY_X + LATENCY_W * budget / top
            ticks.append(f"M{_n(x)} {TOP + index * ROW_H - 3}v{ROW_H}")
            budgets.append(f"{duration(budget)} ({row.get('latency_stat') or 'median'})")
    if not ticks:
        return ""
    return (f'<path class="budget" d="{"".join(ticks)}"><title>latency budget '
            f'{esc(", ".join(dict.fromkeys(budgets)))}</title></path>')


def _latency_top(rows: Sequence[Mapping[str, Any]]) -> float:
    """The latency panel's scale: the largest latency or budget, with room for text."""
    values = [v for row in rows for v in (_finite(row.get("latency_ms_median")),
                                          _finite(row.get("latency_budget_ms"))) if v]
    return max(values, default=0.0) * 1.15


def _chart_head(table: Mapping[str, Any], per: str, height: int) -> list[str]:
    estimated = " (estimated)" if table.get("estimated") else ""
    return [f'<svg class="chart" viewBox="0 0 {CHART_W} {height}" width="{CHART_W}">'
            f'<text class="h" x="{LABEL_W}" y="16">energy per {per}{estimated}</text>'
            f'<text class="h" x="{LATENCY_X}" y="16">latency; <tspan class="bt">|</tspan> '
            "budget</text>"]


def _variant_label(row: Mapping[str, Any], y: float) -> str:
    """The variant's name (its test id is in the summary table), the recommended one
    ticked."""
    label = str(row.get("variant") or row.get("nodeid") or "?")
    mark = " \u2713" if row.get("recommended") else ""
    return f'<text class="v" x="{LABEL_W - 6}" y="{_n(y + 12)}">{esc(_cut(label) + mark)}</text>'



def rightsizing_chart(table: Mapping[str, Any]) -> str:
    """One group's variants as an SVG bar chart (see module doc); ``table`` is one
    right-sizing table as the JSON report stores it."""
    rows = [row for row in table.get("variants") or [] if isinstance(row, Mapping)]
    metric = str(table.get("metric") or "joules_per_call")
    top = max((_finite(r.get("metric_value")) or 0.0 for r in rows), default=0.0) * 1.25
    latency_top = _latency_top(rows)
    height = TOP + ROW_H * len(rows) + 8
    parts = _chart_head(table, "item" if metric == "joules_per_item" else "call", height)
    for index, row in enumerate(rows):
        y = TOP + index * ROW_H
        parts.append(_variant_label(row, y))
        parts += _energy_bar(row, y, top, metric, bool(table.get("estimated")))
        parts += _latency_bar(row, y, latency_top)
    parts.append(_budget_marks(rows, latency_top) + "</svg>")
    return "".join(parts)


# ----- trends ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    """One run's value of a test (J/call), and whether the gate found it regressed."""

    run: str  # how the run is named: "#12", "this run"
    value: float | None
    regressed: bool = False


@dataclass(frozen=True)
class Trend:
    """A test's energy per call over recent runs (oldest first) and the baseline's
    noise band (low, high) in J/call, when the gate measured one."""

    nodeid: str
    points: tuple[TrendPoint, ...]
    band: tuple[float, float] | None = None
    estimated: bool = False

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points if p.value is not None]


def _scale(trend: Trend) -> tuple[float, float]:
    """The y range: the values and the band, padded a little."""
    values = trend.values + (list(trend.band) if trend.band else [])
    low, high = min(values), max(values)
    if high <= low:
        low, high = low * 0.9, high * 1.1 + 1e-12
    pad = (high - low) * 0.08
    return low - pad, high + pad


def _marks(coords: Sequence[tuple[float, float]], points: Sequence[TrendPoint]) -> list[str]:
    """A red dot on each regressed run, a plain one on the last run otherwise."""
    marks = [f'<circle class="reg" cx="{_n(x)}" cy="{_n(y)}" r="3"/>'
             for (x, y), point in zip(coords, points, strict=True) if point.regressed]
    if not points[-1].regressed:
        x, y = coords[-1]
        marks.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2"/>')
    return marks


def trend_chart(trend: Trend) -> str:
    """A small SVG line of ``trend`` (see module doc); ``""`` with no value to draw."""
    points = [p for p in trend.points if p.value is not None]
    if not points:
        return ""
    low, high = _scale(trend)
    step = (TREND_W - 2 * PAD) / max(1, len(points) - 1)

    def y(value: float) -> float:
        return PAD + (TREND_H - 2 * PAD) * (high - value) / (high - low)

    parts = [f'<svg viewBox="0 0 {TREND_W} {TREND_H}"><title>{esc(_trend_title(trend))}</title>']
    if trend.band is not None:
        top, bottom = y(trend.band[1]), y(trend.band[0])
        parts.append(f'<rect class="band" y="{_n(top)}" width="{TREND_W}" '
                     f'height="{_n(max(1.0, bottom - top))}"/>')
    coords = [(PAD + i * step, y(p.value or 0.0)) for i, p in enumerate(points)]
    if len(coords) > 1:
        parts.append('<polyline points="' + " ".join(f"{_n(a)},{_n(b)}" for a, b in coords)
                     + '"/>')
    parts += _marks(coords, points)
    parts.append("</svg>")
    return "".join(parts)


def _trend_title(trend: Trend) -> str:
    """The tooltip (the chart itself has no axis text): the first and last runs' values,
    the band and the regressed runs. Not every run: 1,000 tests x 20 runs of text would
    double the file."""
    points = [p for p in trend.points if p.value is not None]
    first, last = points[0], points[-1]
    text = (f"{len(points)} runs: {first.run} {energy(first.value, trend.estimated)}"
            f" .. {last.run} {energy(last.value, trend.estimated)}")
    if trend.band is not None:
        text += f"; band {energy(trend.band[0])}-{energy(trend.band[1])}"
    regressed = [p.run for p in points if p.regressed]
    return text + (f"; regressed: {', '.join(regressed)}" if regressed else "")
