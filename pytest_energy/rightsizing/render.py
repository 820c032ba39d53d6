"""Right-sizing as people read it: the tables, carbon/cost and hints as terminal text
and as markdown sections (the regression gate's report and ``--energy-markdown``).

Cells come from :mod:`pytest_energy.report.cells`, so an energy or a percentage reads
the same here as in the energy summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_energy.report.cells import duration, energy, md_cell, percent, plain_table, stars
from pytest_energy.report.fit import (
    MIN_FIRST_WIDTH,
    Column,
    ellipsis,
    fit_table,
    kept_width,
    wrap_all,
)
from pytest_energy.rightsizing.base import METRIC_LABEL, PER_ITEM, RightsizingOptions, names
from pytest_energy.rightsizing.carbon import format_wh
from pytest_energy.rightsizing.summary import carbon_table, total_line

#: Right-sizing tables with more variants than this print only their recommendation.
MAX_PRINTED_VARIANTS = 50

RIGHTSIZING_HEADERS = ["variant", "J/item", "per 1k items", "J/call", "latency med",
                       "latency budget", "meets budgets", "rating", "note"]


def _factor(saving: float | None) -> str:
    """", 9.1x less" from a saving of 0.89 (the number people remember)."""
    if saving is None or saving <= 0 or saving >= 1:
        return ""
    return f", {1 / (1 - saving):.2g}x less"


def _note(row: Mapping[str, Any]) -> str:
    parts = []
    if row["recommended"]:
        parts.append("recommended")
    if row["default"]:
        parts.append("default")
    if not row["completed"]:
        parts.append("test failed")
    elif not row["meets_latency"]:
        parts.append("over latency budget")
    return ", ".join(parts)


def _versus_default(table: Mapping[str, Any]) -> str:
    if table["default"] is None:
        return "no variant is marked default=True"
    if table["default"] == table["recommended"]:
        return "it is already the default"
    return (f"{percent(table['saving_vs_default'])} less than the default "
            f"({table['default']}{_factor(table['saving_vs_default'])})")


def _saving_sentence(table: Mapping[str, Any]) -> list[str]:
    """The recommendation, and what it saves against the worst and the default."""
    lines = [f"recommended: {table['recommendation']}"]
    if table["recommended"] is None:
        return lines
    per = METRIC_LABEL[table["metric"]].split("/")[1]
    saves = []
    if table["worst"] != table["recommended"]:
        saves.append(f"{percent(table['saving_vs_worst'])} less energy per {per} than the "
                     f"worst ({table['worst']}{_factor(table['saving_vs_worst'])})")
    saves.append(_versus_default(table))
    lines.append("  " + "; ".join(saves))
    return lines


def _table_rows(table: Mapping[str, Any], encoding: str | None) -> list[list[str]]:
    rows = []
    for row in table["variants"]:
        budget = row["latency_budget_ms"]
        rows.append([
            row["variant"],
            energy(row["joules_per_item"], table["estimated"]),
            format_wh(row["wh_per_1000_items"]),
            energy(row["joules_per_call"], table["estimated"]),
            duration(row["latency_ms_median"]),
            "-" if budget is None else f"{duration(budget)} {row['latency_stat']}",
            "yes" if row["meets_budgets"] else "no",
            stars(row["rating"], encoding),
            _note(row),
        ])
    return rows


def _compact_rows(table: Mapping[str, Any], encoding: str | None, width: int) -> list[str]:
    """The variants within ``width``: the title says the meter (and "estimated"), so the
    cells carry no "est."; the latency and budget columns give way first."""
    rows = table["variants"]
    mark = ellipsis(encoding)

    def column(header: str, cell: Callable[[Mapping[str, Any]], str], priority: int) -> Column:
        return Column(header, [cell(row) for row in rows], priority)

    columns = [
        column("J/item", lambda r: energy(r["joules_per_item"]), 0),
        column("J/call", lambda r: energy(r["joules_per_call"]), 1),
        column("latency", lambda r: duration(r["latency_ms_median"]), 2),
        column("in budget", lambda r: "yes" if r["meets_budgets"] else "no", 3),
        column("rating", lambda r: stars(r["rating"], encoding), 0),
        column("note", _note, 0),
    ]
    first = Column("variant", [str(row["variant"]) for row in rows])
    return fit_table(first, columns, width, MIN_FIRST_WIDTH, mark, ids=False).lines


def _render_table(table: Mapping[str, Any], encoding: str | None,
                  width: int | None = None) -> str:
    """One block: a title saying what is compared by which meter, the variants, the
    recommendation with its savings, notes and the members left out. ``width``: the
    compact table, every line within it; None: the full table."""
    est = ", estimated" if table["estimated"] else ""
    what = "energy per item" if table["metric"] == PER_ITEM else "energy per call"
    lines = [f"{table['title']}: {len(table['variants'])} variants compared by {what} "
             f"(meter {table['meter']}{est})"]
    if len(table["variants"]) > MAX_PRINTED_VARIANTS:
        # a "group" of thousands (a big parametrization) is no variant choice to
        # read row by row: print the recommendation, the rest is in the JSON report
        lines.append(f"  ({len(table['variants'])} variants: the full table is in the JSON "
                     "report)")
    elif width is None:
        lines.append(plain_table(RIGHTSIZING_HEADERS, _table_rows(table, encoding)))
    else:
        lines.extend(_compact_rows(table, encoding, width))
    lines.extend(_saving_sentence(table))
    lines.extend(f"  note: {note}" for note in table["notes"])
    if table["left_out"]:
        lines.append(f"  not measured, left out: {names(table['left_out'])}")
    return "\n".join(wrap_all(lines, width, indent="    "))


def render_rightsizing(tables: Sequence[Mapping[str, Any]], options: RightsizingOptions,
                       encoding: str | None = None, width: int | None = None) -> str:
    """The right-sizing tables as text, to print after the energy summary ("" if none).

    One block per table: a title line saying what is compared and by which meter, the
    variants, and the recommendation with its savings vs the worst and the default.
    ``encoding`` is the terminal's (stars fall back to ``*`` where it cannot print them).
    ``width``: lay every line out within it (the compact table; the summary's default);
    None: the full table (``-v``).
    """
    del options
    return "\n\n".join(_render_table(table, encoding, width) for table in tables)


def render_carbon(carbon: Mapping[str, Any] | None, encoding: str | None = None,
                  width: int | None = None) -> str:
    """A standalone carbon/cost table per test plus the whole-run line ("" when unset).

    An alternative to :func:`summary_columns` for callers that keep the summary narrow.
    ``encoding`` is the terminal's (for the ``…`` of shortened test ids); ``width``: the
    test ids give way and the total line wraps to fit it (None: full ids, one line).
    """
    if carbon is None:
        return ""
    headers, rows = carbon_table(carbon)
    if width is None:
        return plain_table(headers, rows) + "\n" + total_line(carbon)
    columns = [Column(headers[i], [row[i] for row in rows]) for i in range(1, len(headers))]
    first = Column(headers[0], [row[0] for row in rows])
    mark = ellipsis(encoding)
    floor = max((kept_width(row[0], mark) for row in rows), default=0)
    lines = fit_table(first, columns, width, floor, mark).lines
    return "\n".join([*lines, *wrap_all([total_line(carbon)], width)])


# ----- markdown -----------------------------------------------------------------------


def _github_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A padded GitHub table of escaped cells (tabulate: only loaded to write markdown)."""
    from tabulate import tabulate  # lazy: a run without a markdown report never loads it

    return tabulate([[md_cell(cell) for cell in row] for row in rows], headers=headers,
                    tablefmt="github", disable_numparse=True)


def _markdown_table(table: Mapping[str, Any]) -> list[str]:
    est = ", estimated" if table["estimated"] else ""
    return [f"### {md_cell(table['title'])} (meter {table['meter']}{est})\n",
            _github_table(RIGHTSIZING_HEADERS, _table_rows(table, "utf-8")) + "\n",
            *(md_cell(line) + "\n" for line in _saving_sentence(table)),
            *(f"Note: {md_cell(note)}\n" for note in table["notes"])]


def render_carbon_markdown(carbon: Mapping[str, Any]) -> str:
    """The carbon/cost table in GitHub markdown, plus the whole-run line."""
    headers, rows = carbon_table(carbon)
    return _github_table(headers, rows) + "\n\n" + md_cell(total_line(carbon))


def markdown_sections(tables: Sequence[Mapping[str, Any]], carbon: Mapping[str, Any] | None,
                      hints: Sequence[str]) -> str:
    """Markdown for the report writer: "Right-sizing", "Carbon and cost", "Hints".

    Sections with nothing to say are left out; "" when all are empty.
    """
    out: list[str] = []
    if tables:
        out.append("## Right-sizing\n")
        for table in tables:
            out.extend(_markdown_table(table))
    if carbon is not None:
        out.append("## Carbon and cost\n")
        out.append(render_carbon_markdown(carbon) + "\n")
    if hints:
        out.append("## Hints\n")
        out.append("\n".join(f"- {md_cell(hint)}" for hint in hints) + "\n")
    return "\n".join(out)
