"""``pytest-energy report --html PATH [RUN]``: the HTML report of a stored run.

The same page ``pytest --energy-html=PATH`` writes (:mod:`pytest_energy.report.html`),
built from the history instead of a live run: the run's entries as saved (with the
ratings decided when it ran: nothing is re-rated), its right-sizing charts, each
test's trend over the complete runs of the same machine before it, and its saved
status as the gate's verdict. RUN defaults to ``latest``.

No history, no such run, or a file that cannot be written: exit 3, saying why. The
file is written atomically with the user's umask.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from pytest_energy.cli.base import EXIT_OK, CliError
from pytest_energy.report.html import GateView, HtmlReport, write_html
from pytest_energy.report.html_history import stored_trends
from pytest_energy.rightsizing import RightsizingOptions, rightsizing_tables

if TYPE_CHECKING:
    from pytest_energy.cli.commands import Cli


def add_report_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                      run_ref: Any) -> None:
    """The ``report`` subcommand; ``run_ref`` parses RUN like every other command."""
    report = commands.add_parser(
        "report", help="an HTML report of a stored run: sortable summary, right-sizing "
                       "charts, trends, the gate's verdict (one offline file)")
    report.add_argument("run", type=run_ref, nargs="?", default="latest", metavar="RUN",
                        help="the run to report (default latest)")
    report.add_argument("--html", required=True, metavar="PATH",
                        help="write the HTML report here")
    report.set_defaults(handler=run_report)


def run_report(cli: Cli, args: argparse.Namespace) -> int:
    """Write the HTML report of ``args.run`` to ``args.html``."""
    with cli.open() as storage:
        run = cli.resolve(storage, args.run)
        entries = storage.entries(run.id)
        trends = stored_trends(storage, run, entries)
    # the tables from the stored, already rated entries (the ratings are not redone)
    tables = rightsizing_tables(entries, RightsizingOptions())
    report = HtmlReport(
        title=f"pytest-energy report: run {run.label}",
        source=f"run {run.label}, {run.commit_label}"
               + (f" on {run.branch}" if run.branch else ""),
        created=run.created, entries=entries, meter=dict(run.meter or {}),
        machine=dict(run.machine or {}), tables=tables,
        gate=GateView.of_status(run.status, run.label), trends=trends.lines,
        trends_note=trends.note)
    try:
        written = write_html(args.html, report)
    except OSError as exc:
        raise CliError(f"cannot write --html {args.html}: {exc.strerror or exc}") from None
    cli.print(f"wrote {written} (run {run.label}, {len(entries)} test(s))")
    return EXIT_OK
