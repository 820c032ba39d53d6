"""``python -m pytest_energy.rightsizing REPORT.json [--carbon-intensity G] [--price P]
[--currency C] [--rating-rule R] [--markdown]``: re-render a saved report's right-sizing.

Prints the right-sizing tables, carbon/cost and hints of a saved ``--energy-json``
report, with other factors or another rating rule than the run used (numbers from that
run only: nothing is re-measured). The options are the plugin's own rows of the options
table, so they parse and fail exactly like ``pytest --energy-...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pytest_energy.entry import Entry
from pytest_energy.options import SETTINGS_BY_NAME, add_cli_argument
from pytest_energy.rightsizing import (
    RightsizingOptions,
    apply_ratings,
    carbon_cost,
    hints,
    markdown_sections,
    render_carbon,
    render_rightsizing,
    rightsizing_tables,
)

OPTIONS = ("carbon_intensity", "price", "currency", "rating_rule")


def main(argv: Sequence[str] | None = None) -> int:
    """Re-renders the right-sizing tables, carbon/cost and hints of a saved
    ``--energy-json`` report (numbers from that run only: nothing is re-measured).
    """
    parser = argparse.ArgumentParser(prog="python -m pytest_energy.rightsizing",
                                     description=main.__doc__)
    parser.add_argument("report")
    settings = [SETTINGS_BY_NAME[name] for name in OPTIONS]
    for setting in settings:
        add_cli_argument(parser, setting, "--" + setting.name.replace("_", "-"))
    parser.add_argument("--markdown", action="store_true", help="print markdown instead")
    args = parser.parse_args(argv)
    try:
        with open(args.report, encoding="utf-8") as handle:
            entries = [Entry.from_json(data) for data in json.load(handle)["tests"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{parser.prog}: cannot read {args.report} as an --energy-json report: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    options = RightsizingOptions(**{
        s.name: s.default if getattr(args, s.name) is None else getattr(args, s.name)
        for s in settings})
    entries = apply_ratings(entries, options)
    tables = rightsizing_tables(entries, options)
    carbon = carbon_cost(entries, options)
    found = hints(entries, tables, options)
    if args.markdown:
        print(markdown_sections(tables, carbon, found))
        return 0
    encoding = getattr(sys.stdout, "encoding", None)
    blocks = [render_rightsizing(tables, options, encoding), render_carbon(carbon, encoding)]
    if found:
        blocks.append("hints:\n" + "\n".join(f"- {hint}" for hint in found))
    print("\n\n".join(block for block in blocks if block))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
