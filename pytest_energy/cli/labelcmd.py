"""``pytest-energy label NODEID --svg PATH``: one test's energy label, for a README
(``--group NAME`` instead of NODEID: a right-sizing group's label, every variant).

The label (:mod:`pytest_energy.report.label`) is drawn from a stored run (``--run``,
default ``latest``, in the history the other commands read) or from a JSON report file
(``--json REPORT.json``, no history needed). NODEID is a test id as pytest prints it;
when no test of the run has exactly that id, the one test whose id contains the text.
Several such tests, none, or a test without a valid measurement: exit 3, saying which.

The file is written atomically with the user's umask (``--svg -``: standard output).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_energy.cli.base import EXIT_OK, EXIT_USAGE, CliError, read_json
from pytest_energy.entry import Entry
from pytest_energy.report.jsonreport import atomic_write_text
from pytest_energy.report.label import group_label_svg, label_problem, label_svg

if TYPE_CHECKING:
    from pytest_energy.cli.commands import Cli

#: Candidates an ambiguous NODEID lists before "and N more".
MAX_CANDIDATES = 10
NODEID_HELP = ("the test: its id as pytest prints it (quote it: 'tests/t.py::test_x[8]'), "
               "or text that only its id contains")


@dataclass(frozen=True)
class Source:
    """The tests of one run and what a label needs besides them."""

    where: str  # "run #12 'main'" or "REPORT.json", for messages
    entries: list[Entry]
    created: str = ""
    meter: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


def add_label_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                     run_ref: Any) -> None:
    """The ``label`` subcommand; ``run_ref`` parses RUN like every other command."""
    label = commands.add_parser(
        "label", help="an energy label (SVG) of one test (or --group), for a README or a "
                 "model card")
    label.add_argument("nodeid", metavar="NODEID", nargs="?", help=NODEID_HELP)
    label.add_argument("--group", metavar="NAME",
                       help="instead of NODEID: the label of a right-sizing group (the "
                            "marker's group=), each variant with its stars")
    label.add_argument("--svg", required=True, metavar="PATH",
                       help="write the label here (- for standard output)")
    source = label.add_mutually_exclusive_group()
    source.add_argument("--run", type=run_ref, default="latest", metavar="RUN",
                        help="the stored run (default latest)")
    source.add_argument("--json", metavar="REPORT", dest="json_report",
                        help="read the test from this JSON report (--energy-json) "
                             "instead of the history")
    label.set_defaults(handler=run_label)


def from_history(cli: Cli, ref: str) -> Source:
    """The run ``ref`` names in the history the CLI resolved (any backend it opens)."""
    with cli.open() as storage:
        run = cli.resolve(storage, ref)
        entries = storage.entries(run.id)
    return Source(f"run {run.label}", entries, run.created, dict(run.meter or {}),
                  dict(run.machine or {}))


def _read_json(path: str) -> Any:
    return read_json(path, name=f"--json {path}",
                     not_json="{name} is not a JSON report ({error})")


def from_json_report(path: str) -> Source:
    """The tests of a JSON report file (``--energy-json``), with its date and meters."""
    report = _read_json(path)
    tests = report.get("tests") if isinstance(report, dict) else None
    if not isinstance(tests, list):
        raise CliError(f"--json {path} is not a pytest-energy JSON report (no 'tests' "
                       "list); write one with pytest --energy-json=PATH")
    try:
        entries = [Entry.from_json(test) for test in tests]
    except (ValueError, TypeError, AttributeError) as exc:
        raise CliError(f"--json {path}: a test entry cannot be read: {exc}") from None
    meter, machine = report.get("meter"), report.get("machine")
    return Source(path, entries, str(report.get("created") or ""),
                  meter if isinstance(meter, dict) else {},
                  machine if isinstance(machine, dict) else {})


def _listed(nodeids: Sequence[str]) -> str:
    shown = "\n  ".join(nodeids[:MAX_CANDIDATES])
    more = len(nodeids) - MAX_CANDIDATES
    return "\n  " + shown + (f"\n  and {more} more" if more > 0 else "")


def pick(source: Source, nodeid: str) -> Entry:
    """The test ``nodeid`` names: its exact id, else the one id containing the text."""
    exact = [entry for entry in source.entries if entry.nodeid == nodeid]
    found = exact or [entry for entry in source.entries if nodeid in entry.nodeid]
    if not found:
        raise CliError(f"no test {nodeid!r} in {source.where} ({len(source.entries)} "
                       "test(s); see pytest-energy show RUN)")
    if len(found) > 1:
        raise CliError(f"{nodeid!r} matches {len(found)} tests in {source.where}; give "
                       f"one id in full:{_listed([entry.nodeid for entry in found])}")
    return found[0]


def group_label(source: Source, group: str) -> str:
    """The label of the right-sizing group ``group`` of the run."""
    members = [entry for entry in source.entries if entry.group == group]
    if not members:
        groups = sorted({entry.group for entry in source.entries if entry.group})
        raise CliError(f"no group {group!r} in {source.where}; its groups: "
                       + (", ".join(groups) or "none (the marker's group= names one)"))
    try:
        return group_label_svg(group, members, date=source.created, meter=source.meter,
                               machine=source.machine)
    except ValueError as exc:
        raise CliError(f"group {group!r} in {source.where}: {exc}") from None


def one_test_label(source: Source, nodeid: str) -> tuple[str, str]:
    """The label of the test ``nodeid`` names, and its full id."""
    entry = pick(source, nodeid)
    problem = label_problem(entry)
    if problem is not None:
        raise CliError(f"{problem} in {source.where}: only a measured test has a label")
    return (label_svg(entry, date=source.created, meter=source.meter,
                      machine=source.machine), entry.nodeid)


def run_label(cli: Cli, args: argparse.Namespace) -> int:
    """Write the label of ``args.nodeid`` (or of ``args.group``) to ``args.svg``."""
    if (args.nodeid is None) == (args.group is None):
        cli.warn("pytest-energy label: give a NODEID or --group NAME (one of them)")
        return EXIT_USAGE
    source = (from_json_report(args.json_report) if args.json_report
              else from_history(cli, args.run))
    if args.group is not None:
        svg, what = group_label(source, args.group), f"group {args.group!r}"
    else:
        svg, what = one_test_label(source, args.nodeid)
    if args.svg == "-":
        cli.out.write(svg)
        return EXIT_OK
    try:
        atomic_write_text(args.svg, svg)
    except OSError as exc:
        raise CliError(f"cannot write --svg {args.svg}: {exc.strerror or exc}") from None
    cli.print(f"wrote {args.svg}: label of {what} ({source.where})")
    return EXIT_OK
