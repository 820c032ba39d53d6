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
    markdown_sections,
    render_carbon,
    render_rightsizing,
    rightsize,
)

OPTIONS = ("carbon_intensity", "price", "currency", "rating_rule")
SETTINGS = [SETTINGS_BY_NAME[name] for name in OPTIONS]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_energy.rightsizing",
                                     description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("report")
    for setting in SETTINGS:
        add_cli_argument(parser, setting, "--" + setting.name.replace("_", "-"))
    parser.add_argument("--markdown", action="store_true", help="print markdown instead")
    return parser


def _render(entries: list[Entry], options: RightsizingOptions, markdown: bool) -> str:
    done = rightsize(entries, options)
    if markdown:
        return markdown_sections(done.tables, done.carbon, done.hints)
    encoding = getattr(sys.stdout, "encoding", None)
    blocks = [render_rightsizing(done.tables, options, encoding),
              render_carbon(done.carbon, encoding)]
    if done.hints:
        blocks.append("hints:\n" + "\n".join(f"- {hint}" for hint in done.hints))
    return "\n\n".join(block for block in blocks if block)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the right-sizing of a saved report; exit 3 when it cannot be read."""
    parser = _parser()
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
        for s in SETTINGS})
    print(_render(entries, options, args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
