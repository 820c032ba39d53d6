"""``pytest-energy``: read the results history the plugin saves (``--energy-save``).

Commands: ``runs``, ``show RUN``, ``compare A B [--fail EXPR]``, ``history TEST``,
``plot``, ``prune``, ``export --json``, ``label NODEID --svg PATH``, ``push FILE``
(a JSON report's run into the history), ``copy SRC DST`` (a history into another,
SQLite or PostgreSQL), ``report --html PATH [RUN]`` (an offline HTML report). A
RUN is ``latest``, a run id (``12`` or ``#12``) or a name given with
``--energy-save``. ``history TEST`` takes a test id as it is
(``'x.py::t[8]'``: brackets are text), or text that test ids contain; a glob only
with ``--glob``.

Exit codes, meant for scripts and CI:

* ``0`` done (``compare``: no significant regression; ``push``: also when the run
  is already in the history);
* ``1`` ``compare`` found a significant regression beyond ``--fail``;
* ``2`` bad command line (argparse's usual code);
* ``3`` cannot do it: no history, no such run, an unreadable or newer database, runs
  from different hardware (``compare`` without ``--force``), matplotlib missing for
  ``plot``, an output file that cannot be written, an unreadable ini file, a ``push``
  FILE that is not a pytest-energy JSON report or holds no results.

The history directory is resolved like the plugin's ``storage`` option: ``--storage
DIR``, else ``$PYTEST_ENERGY_STORAGE``, else ``energy_storage`` in the project's ini
file (relative to that file's directory), else ``.energy`` in the rootdir pytest would
use here (see :mod:`pytest_energy.cli.locate`). Never a history found in some parent
directory: a history is read only where the user configured it. Options that mirror a
plugin option (``--storage``, ``compare --fail``, ``compare --alpha``) are built from
the same row of the options table: same parser, help and default.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pytest_energy.cli.base import (
    EXIT_CANNOT,
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    CliError,
    clean,
    sparkline,
    version_text,
)
from pytest_energy.cli.commands import Cli
from pytest_energy.cli.labelcmd import add_label_parser
from pytest_energy.cli.locate import find_inifile, find_storage
from pytest_energy.cli.transfer import add_transfer_parsers
from pytest_energy.cli.visual import add_report_parser
from pytest_energy.errors import EnergyConfigError
from pytest_energy.history.metrics import METRICS
from pytest_energy.history.runs import parse_run_ref
from pytest_energy.history.storage import StorageError
from pytest_energy.options import SETTINGS_BY_NAME, add_cli_argument, argparse_type
from pytest_energy.units import parse_count

__all__ = ["CLI_MIRRORS", "EXIT_CANNOT", "EXIT_OK", "EXIT_REGRESSION", "EXIT_USAGE", "Cli",
           "CliError", "build_parser", "find_inifile", "find_storage", "main", "sparkline"]

STORAGE_NOTE = (" [env PYTEST_ENERGY_STORAGE, ini energy_storage; when neither is set: "
                ".energy in the rootdir pytest uses when run here]")
TEST_HELP = ("a test id, exactly as pytest prints it (quote it: 'tests/t.py::test_x[8]'; "
             "brackets are text); when no test has that id, every test whose id contains "
             "the text")
GLOB_HELP = ("read TEST as a glob instead: * any text, ? one character, [...] one of "
             "these characters (tests/*::test_mlp*); case-sensitive")
# Options-table rows the CLI mirrors: row name -> (subcommand, or "" for global; flag).
# A mirrored subcommand option left out takes its row's default (the plugin's default).
CLI_MIRRORS = {"storage": ("", "--storage"), "compare_fail": ("compare", "--fail"),
               "compare_alpha": ("compare", "--alpha"),
               "baseline_runs": ("compare", "--baseline-runs")}


def _add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The subcommands and their own options; mirrored plugin options use the table."""
    run_ref = argparse_type(parse_run_ref, "RUN")
    runs = commands.add_parser("runs", help="list stored runs, newest first")
    runs.add_argument("--limit", type=int, default=30, help="at most N runs (default 30)")
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = commands.add_parser("show", help="one run: every test's numbers")
    show.add_argument("run", type=run_ref, metavar="RUN")
    show.add_argument("--json", action="store_true", help="print the run as JSON")

    compare = commands.add_parser(
        "compare", help="compare run B with baseline A; exit 1 on a significant regression")
    compare.add_argument("baseline", type=run_ref, metavar="A", help="the baseline run")
    compare.add_argument("current", type=run_ref, metavar="B", help="the run to judge")
    for name, (command, flag) in CLI_MIRRORS.items():
        if command == "compare":
            add_cli_argument(compare, SETTINGS_BY_NAME[name], flag)
    compare.add_argument("--force", action="store_true",
                         help="compare runs from different hardware anyway")
    compare.add_argument("--all", action="store_true",
                         help="show every test, not only changes beyond a threshold")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")

    history = commands.add_parser("history", help="trend of one test, or of tests matching")
    history.add_argument("pattern", metavar="TEST", help=TEST_HELP)
    history.add_argument("--glob", action="store_true", help=GLOB_HELP)
    history.add_argument("--metric", choices=list(METRICS), default="joules")
    history.add_argument("--limit", type=int, default=20, help="newest N runs (default 20)")
    history.add_argument("--all-machines", action="store_true",
                         help="include runs from other hardware (default: this machine's "
                              "runs when it has any)")

    plot = commands.add_parser(
        "plot", help="PNG or SVG: energy per test vs budget, or history trends (matplotlib)")
    plot.add_argument("run", type=run_ref, nargs="?", default="latest", metavar="RUN",
                      help="the run to plot (default latest)")
    plot.add_argument("--history", metavar="TEST",
                      help="plot the trend of this test instead (as for history)")
    plot.add_argument("--glob", action="store_true", help=GLOB_HELP)
    plot.add_argument("--metric", choices=list(METRICS), default="joules")
    plot.add_argument("-o", "--output", default="energy.png",
                      help="output file, .png or .svg (default energy.png)")

    prune = commands.add_parser(
        "prune", help="delete old runs: keep the newest N per machine (named runs stay); "
                      "then compact the file (VACUUM)")
    prune.add_argument("--keep", required=True, metavar="N",
                       type=argparse_type(functools.partial(parse_count, minimum=1), "--keep"),
                       help="unnamed runs to keep per machine fingerprint")
    prune.add_argument("--named-too", action="store_true",
                       help="also delete named runs (baselines) beyond the newest N")
    prune.add_argument("--dry-run", action="store_true",
                       help="list what would be deleted, delete nothing")

    export = commands.add_parser(
        "export", help="export runs with every test and trial (streamed as it is read)")
    export.add_argument("--json", action="store_true", required=True,
                        help="JSON (the only format so far)")
    export.add_argument("runs", type=run_ref, nargs="*", metavar="RUN",
                        help="runs to export (default: all)")
    export.add_argument("-o", "--output", help="write to this file (default: stdout)")

    for name, sub in (("runs", runs), ("show", show), ("compare", compare),
                      ("history", history), ("plot", plot), ("prune", prune),
                      ("export", export)):
        sub.set_defaults(handler=getattr(Cli, name))  # the method of that name
    add_label_parser(commands, run_ref)
    add_report_parser(commands, run_ref)
    add_transfer_parsers(commands)


def build_parser() -> argparse.ArgumentParser:
    """The command line: global ``--storage`` (a table row) and the subcommands."""
    parser = argparse.ArgumentParser(
        prog="pytest-energy",
        description="Read the pytest-energy results history (saved with --energy-save or "
                    "--energy-autosave).",
        epilog="RUN is latest, a run id (12 or #12) or a saved name. Exit codes: 0 ok, 1 "
               "regression (compare), 2 usage, 3 cannot (no history, no such run, ...).")
    add_cli_argument(parser, SETTINGS_BY_NAME["storage"], CLI_MIRRORS["storage"][1],
                     note=STORAGE_NOTE)
    parser.add_argument("-V", "--version", action="version", version=version_text(),
                        help="print the plugin's version and exit")
    _add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return parser


def _fill_table_defaults(args: argparse.Namespace) -> None:
    """A mirrored option left out takes its row's default, parsed by its row's parser."""
    for name, (command, flag) in CLI_MIRRORS.items():
        dest = flag.lstrip("-").replace("-", "_")
        if command and args.command == command and getattr(args, dest) is None:
            setting = SETTINGS_BY_NAME[name]
            setattr(args, dest, setting.parse(setting.default, argument=setting.name))


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Entry point of the ``pytest-energy`` console script; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        _fill_table_defaults(args)
        cli = Cli(find_storage(args.storage, os.environ, Path.cwd()), out, err)
        result: int = args.handler(cli, args)  # every command sets its handler
        return result
    except (CliError, StorageError, EnergyConfigError) as exc:
        err.write(clean(f"pytest-energy {args.command}: {exc}") + "\n")
        return EXIT_CANNOT
    except BrokenPipeError:  # pytest-energy export --json | head
        return EXIT_OK
