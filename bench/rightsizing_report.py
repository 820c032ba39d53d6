"""Re-render a saved report's right-sizing. Run: ``python bench/rightsizing_report.py
REPORT.json [--carbon-intensity G] [--price P] [--currency C] [--rating-rule R] [--markdown]``.

Prints the right-sizing tables, carbon/cost and hints of a saved ``--energy-json``
report, with other factors or another rating rule than the run used (numbers from that
run only: nothing is re-measured). A tool for people exploring a report, kept out of
the package: the plugin prints and writes all of this itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.errors import EnergyConfigError
from pytest_energy.parsers import (
    RATING_RULE_AUTO,
    parse_carbon_intensity,
    parse_currency,
    parse_price,
    parse_rating_rule,
)
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


def _argument(parse: Callable[..., Any], option: str) -> Callable[[str], Any]:
    """A parser as an argparse type: a bad value is a usage error naming the option
    as the plugin spells it (the same message as ``pytest --energy-...``)."""

    def convert(text: str) -> Any:
        try:
            return parse(text, argument=option)
        except EnergyConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option.removeprefix("--energy-").replace("-", "_")
    return convert


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/rightsizing_report.py REPORT.json [--carbon-intensity G] ...``.

    Re-renders the right-sizing tables, carbon/cost and hints of a saved
    ``--energy-json`` report (numbers from that run only: nothing is re-measured).
    """
    parser = argparse.ArgumentParser(prog="python bench/rightsizing_report.py",
                                     description=main.__doc__)
    parser.add_argument("report")
    parser.add_argument("--carbon-intensity",
                        type=_argument(parse_carbon_intensity, "--energy-carbon-intensity"))
    parser.add_argument("--price", type=_argument(parse_price, "--energy-price"))
    parser.add_argument("--currency", type=_argument(parse_currency, "--energy-currency"),
                        default="")
    parser.add_argument("--rating-rule", type=_argument(parse_rating_rule, "--energy-rating-rule"),
                        default=RATING_RULE_AUTO)
    parser.add_argument("--markdown", action="store_true", help="print markdown instead")
    args = parser.parse_args(argv)
    with open(args.report, encoding="utf-8") as handle:
        entries = [Entry.from_json(data) for data in json.load(handle)["tests"]]
    options = RightsizingOptions(carbon_intensity=args.carbon_intensity, price=args.price,
                                 currency=args.currency, rating_rule=args.rating_rule)
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
