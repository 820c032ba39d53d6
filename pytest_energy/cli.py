"""``pytest-energy``: read the results history the plugin saves (``--energy-save``).

Commands: ``runs``, ``show RUN``, ``compare A B [--fail EXPR]``, ``history PATTERN``,
``plot``, ``export --json``. A RUN is ``latest``, a run id (``12`` or ``#12``) or a
name given with ``--energy-save``.

Exit codes, meant for scripts and CI:

* ``0`` done (``compare``: no significant regression);
* ``1`` ``compare`` found a significant regression beyond ``--fail``;
* ``2`` bad command line (argparse's usual code);
* ``3`` cannot do it: no history, no such run, an unreadable or newer database, runs
  from different hardware (``compare`` without ``--force``), matplotlib missing for
  ``plot``, an output file that cannot be written.

The history directory is ``--storage DIR``, else ``$PYTEST_ENERGY_STORAGE``, else the
nearest ``.energy/`` holding a history in the current directory or one of its parents
(so the CLI works from a subdirectory of the project), else ``./.energy``. Option
values go through the same parsers as the plugin's options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_energy.errors import EnergyConfigError

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_CANNOT = 0, 1, 2, 3
SPARKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
ASCII_SPARKS = "_.-:=+*#"
EXPORT_VERSION = 1


class CliError(Exception):
    """A reason to stop with exit code 3; the message says what to do."""


def _arg_type(parse: Callable[..., Any], argument: str) -> Callable[[str], Any]:
    """Use a plugin option parser for argparse: a bad value is a usage error that teaches."""

    def convert(text: str) -> Any:
        try:
            return parse(text, argument=argument)
        except EnergyConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = argument
    return convert


def _parse_keep(value: object, *, argument: str) -> int:
    from pytest_energy.units import parse_count

    return parse_count(value, argument=argument, minimum=1)


def build_parser() -> argparse.ArgumentParser:
    from pytest_energy.compare import (
        DEFAULT_ALPHA,
        DEFAULT_FAIL,
        METRICS,
        parse_alpha,
        parse_compare_fail,
    )
    from pytest_energy.storage import parse_run_ref

    run_ref = _arg_type(parse_run_ref, "RUN")
    parser = argparse.ArgumentParser(
        prog="pytest-energy",
        description="Read the pytest-energy results history (saved with --energy-save or "
                    "--energy-autosave).",
        epilog="RUN is latest, a run id (12 or #12) or a saved name. Exit codes: 0 ok, 1 "
               "regression (compare), 2 usage, 3 cannot (no history, no such run, ...).")
    parser.add_argument("--storage", metavar="DIR",
                        help="history directory (default: $PYTEST_ENERGY_STORAGE, else the "
                             "nearest .energy/ with a history here or in a parent directory)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    compare.add_argument("--fail", type=_arg_type(parse_compare_fail, "--fail"),
                         default=None, metavar="EXPR",
                         help=f"thresholds, as --energy-compare-fail (default {DEFAULT_FAIL}); "
                              "none = report only")
    compare.add_argument("--alpha", type=_arg_type(parse_alpha, "--alpha"),
                         default=DEFAULT_ALPHA,
                         help=f"significance level (default {DEFAULT_ALPHA})")
    compare.add_argument("--force", action="store_true",
                         help="compare runs from different hardware anyway")
    compare.add_argument("--all", action="store_true",
                         help="show every test, not only changes beyond a threshold")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")

    history = commands.add_parser("history", help="trend of tests matching a pattern")
    history.add_argument("pattern", metavar="TEST_PATTERN",
                         help="substring of the test id, or a glob (tests/*::test_mlp*)")
    history.add_argument("--metric", choices=list(METRICS), default="joules")
    history.add_argument("--limit", type=int, default=20, help="newest N runs (default 20)")
    history.add_argument("--all-machines", action="store_true",
                         help="include runs from other hardware (default: this machine's "
                              "runs when it has any)")

    plot = commands.add_parser(
        "plot", help="PNG or SVG: energy per test vs budget, or history trends (matplotlib)")
    plot.add_argument("run", type=run_ref, nargs="?", default="latest", metavar="RUN",
                      help="the run to plot (default latest)")
    plot.add_argument("--history", metavar="TEST_PATTERN",
                      help="plot the trend of matching tests instead")
    plot.add_argument("--metric", choices=list(METRICS), default="joules")
    plot.add_argument("-o", "--output", default="energy.png",
                      help="output file, .png or .svg (default energy.png)")

    prune = commands.add_parser(
        "prune", help="delete old runs: keep the newest N per machine (named runs stay)")
    prune.add_argument("--keep", type=_arg_type(_parse_keep, "--keep"), required=True,
                       metavar="N", help="unnamed runs to keep per machine fingerprint")
    prune.add_argument("--named-too", action="store_true",
                       help="also delete named runs (baselines) beyond the newest N")
    prune.add_argument("--dry-run", action="store_true",
                       help="list what would be deleted, delete nothing")

    export = commands.add_parser("export", help="export runs with every test and trial")
    export.add_argument("--json", action="store_true", required=True,
                        help="JSON (the only format so far)")
    export.add_argument("runs", type=run_ref, nargs="*", metavar="RUN",
                        help="runs to export (default: all)")
    export.add_argument("-o", "--output", help="write to this file (default: stdout)")
    return parser


# ----- helpers ---------------------------------------------------------------------------------


def find_storage(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """The history directory (see the module doc for the order)."""
    from pytest_energy.storage import DB_NAME, DEFAULT_DIR

    if explicit:
        return Path(explicit).expanduser()
    if environ.get("PYTEST_ENERGY_STORAGE", "").strip():
        return Path(environ["PYTEST_ENERGY_STORAGE"].strip()).expanduser()
    for directory in (cwd, *cwd.parents):
        if (directory / DEFAULT_DIR / DB_NAME).is_file():
            return directory / DEFAULT_DIR
    return cwd / DEFAULT_DIR


def sparkline(values: Sequence[float | None], encoding: str | None = None) -> str:
    """A one-line trend: ``▁▃▅█`` (ASCII ``_-=#`` where the terminal cannot print it)."""
    try:
        SPARKS.encode(encoding or "ascii")
        ticks = SPARKS
    except (LookupError, UnicodeEncodeError):
        ticks = ASCII_SPARKS
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        elif span <= 0:
            out.append(ticks[len(ticks) // 2])
        else:
            out.append(ticks[min(len(ticks) - 1, int((value - low) / span * len(ticks)))])
    return "".join(out)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def _machine_label(machine: dict[str, Any]) -> str:
    parts = [machine.get("cpu_model") or machine.get("processor"), machine.get("system"),
             machine.get("machine")]
    label = " ".join(str(p) for p in parts if p)
    if machine.get("cpu_count"):
        label += f" x{machine['cpu_count']}"
    return label or "?"


def _meters_label(meter: dict[str, Any]) -> str:
    used = meter.get("used") or {}
    names = sorted({str(m.get("name")) + (" (est.)" if m.get("estimated") else "")
                    for m in used.values() if isinstance(m, dict)})
    return ", ".join(names) or "-"


class Cli:
    """The commands, writing to ``out`` and ``err`` (tests pass StringIO)."""

    def __init__(self, storage_dir: Path, out: TextIO, err: TextIO) -> None:
        self.storage_dir = storage_dir
        self.out = out
        self.err = err

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def open(self) -> Any:
        from pytest_energy.storage import StorageError, db_path, open_storage

        try:
            storage = open_storage(self.storage_dir, create=False)
        except StorageError as exc:
            raise CliError(str(exc)) from None
        if storage is None:
            raise CliError(
                f"no results history at {db_path(self.storage_dir)}: save runs with pytest "
                "--energy-save=NAME or --energy-autosave, or point --storage (or "
                "$PYTEST_ENERGY_STORAGE) at the directory holding one")
        return storage

    def resolve(self, storage: Any, ref: str) -> Any:
        run = storage.run(ref)
        if run is None:
            names = sorted({r.name for r in storage.runs() if r.name})
            shown = f"#{ref}" if ref.isdigit() else repr(ref)
            raise CliError(f"no run {shown} in {storage.path} (named runs: "
                           f"{', '.join(names) or 'none'}; see pytest-energy runs)")
        return run

    # ----- commands ---------------------------------------------------------------------
    def runs(self, args: argparse.Namespace) -> int:
        with self.open() as storage:
            runs = storage.runs(limit=args.limit)
        if args.json:
            self.print(json.dumps([r.to_dict() for r in runs], indent=2))
            return EXIT_OK
        if not runs:
            self.print(f"no runs stored in {self.storage_dir}")
            return EXIT_OK
        rows = [[f"#{r.id}", r.name or "-", r.created, r.commit_label, r.branch or "-",
                 str(r.tests), r.fingerprint[:8], _machine_label(r.machine),
                 _meters_label(r.meter)] for r in runs]
        self.print(_table(rows, ["run", "name", "created", "commit", "branch", "tests",
                                 "machine", "hardware", "meters"]))
        return EXIT_OK

    def show(self, args: argparse.Namespace) -> int:
        from pytest_energy.compare import METRICS

        with self.open() as storage:
            run = self.resolve(storage, args.run)
            entries = storage.entries(run.id)
        if args.json:
            self.print(json.dumps({**run.to_dict(), "tests_results": entries}, indent=2))
            return EXIT_OK
        self.print(f"run {run.label}: {run.created}, {run.commit_label}"
                   + (f" on {run.branch}" if run.branch else "")
                   + f", {_machine_label(run.machine)} (machine {run.fingerprint[:8]}), "
                     f"meters {_meters_label(run.meter)}")
        joules, latency = METRICS["joules"], METRICS["latency_ms"]
        rows = []
        for entry in entries:
            spread = entry.get("joules_spread") or {}
            budget = entry.get("budget") or {}
            est = " est." if entry.get("estimated") and entry.get("joules_per_call") else ""
            rows.append([
                str(entry.get("nodeid")), str(entry.get("outcome") or "-"),
                joules.format(entry.get("joules_per_call")) + est,
                METRICS["joules_per_item"].format(entry.get("joules_per_item")),
                latency.format(latency.value(entry)),
                str(len(entry.get("trials") or [])),
                f"{spread['cv'] * 100:.1f}%" if spread.get("cv") is not None else "-",
                joules.format(budget.get("joules")) if budget.get("joules") else "-",
                str(entry.get("verdict") or "-")])
        self.print(_table(rows, ["test", "outcome", "J/call", "J/item", "latency", "trials",
                                 "CV", "J budget", "verdict"]))
        return EXIT_OK

    def compare(self, args: argparse.Namespace) -> int:
        from pytest_energy.compare import (
            DEFAULT_FAIL,
            REGRESSED,
            SIGNIFICANCE_TEST,
            TABLE_HEADERS,
            compare_entries,
            comparison_rows,
            count_verdicts,
            format_thresholds,
            identity_differences,
            machine_identity,
            parse_compare_fail,
        )

        thresholds = args.fail if args.fail is not None else parse_compare_fail(DEFAULT_FAIL)
        with self.open() as storage:
            base = self.resolve(storage, args.baseline)
            new = self.resolve(storage, args.current)
            if base.fingerprint != new.fingerprint:
                diffs = identity_differences(machine_identity(base.machine),
                                             machine_identity(new.machine))
                message = (f"runs {base.label} and {new.label} come from different hardware: "
                           f"{'; '.join(diffs) or 'the machine fingerprint differs'}")
                if not args.force:
                    raise CliError(message + " (hostname, clocks and temperatures do not "
                                   "count); add --force to compare anyway")
                self.err.write(f"pytest-energy: warning: {message}\n")
            comparisons = compare_entries(
                storage.entries(base.id), storage.entries(new.id), thresholds, args.alpha,
                baseline_meters=storage.meter_identities(base.id),
                current_meters=storage.meter_identities(new.id))
        regressed = [c.nodeid for c in comparisons if c.verdict == REGRESSED]
        failed = bool(regressed and thresholds)
        if args.json:
            self.print(json.dumps({
                "baseline": base.to_dict(), "current": new.to_dict(),
                "thresholds": [t.text for t in thresholds], "alpha": args.alpha,
                "test": SIGNIFICANCE_TEST, "tests": [c.to_dict() for c in comparisons],
                "regressions": regressed, "failed": failed}, indent=2))
            return EXIT_REGRESSION if failed else EXIT_OK
        self.print(f"baseline {base.label} ({base.created}, {base.commit_label}) -> "
                   f"{new.label} ({new.created}, {new.commit_label})")
        self.print(f"rule: worse beyond {format_thresholds(thresholds)} and {SIGNIFICANCE_TEST} "
                   f"p <= {args.alpha:g}")
        rows = comparison_rows(comparisons, notable_only=not args.all)
        if rows:
            self.print(_table(rows, TABLE_HEADERS))
        counts = count_verdicts(comparisons)
        self.print("compared: " + (", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing"))
        if failed:
            self.print(f"FAILED: {len(regressed)} test(s) regressed: {', '.join(regressed)}")
        elif regressed:
            self.print(f"{len(regressed)} test(s) regressed (report only: --fail none)")
        else:
            self.print("passed: no significant regression")
        return EXIT_REGRESSION if failed else EXIT_OK

    def history(self, args: argparse.Namespace) -> int:
        from pytest_energy.compare import METRICS, cpu_model, fingerprint, machine_identity
        from pytest_energy.jsonreport import machine_info

        metric = METRICS[args.metric]
        here = fingerprint(machine_identity({**machine_info(), "cpu_model": cpu_model()}))
        with self.open() as storage:
            only = None
            if not args.all_machines and storage.runs(fingerprint=here, limit=1):
                only = here
            pairs = storage.history(pattern=args.pattern, fingerprint=only,
                                    limit_runs=args.limit)
        if not pairs:
            self.print(f"no stored results for tests matching {args.pattern!r}"
                       + (" on this machine (try --all-machines)" if only else ""))
            return EXIT_OK
        by_test: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        for run, entry in pairs:
            by_test.setdefault(str(entry.get("nodeid")), []).append((run, entry))
        encoding = getattr(self.out, "encoding", None)
        for nodeid, items in by_test.items():
            items.reverse()  # oldest first: trends read left to right
            values = [metric.value(entry) for _, entry in items]
            self.print(f"{nodeid}  {metric.label}  {sparkline(values, encoding)}")
            rows = []
            previous: float | None = None
            for (run, entry), value in zip(items, values, strict=True):
                change = "-"
                if value is not None and previous:
                    change = f"{(value - previous) / previous * 100:+.1f}%"
                rows.append([run.label, run.created, run.commit_label, run.fingerprint[:8],
                             metric.format(value), change, str(entry.get("outcome") or "-")])
                previous = value if value is not None else previous
            self.print(_table(rows, ["run", "created", "commit", "machine", metric.label,
                                     "change", "outcome"]))
            self.print()
        return EXIT_OK

    def plot(self, args: argparse.Namespace) -> int:
        output = Path(args.output)
        if output.suffix.lower() not in (".png", ".svg"):
            raise CliError(f"--output {args.output}: the file name must end in .png or .svg")
        try:
            import matplotlib  # type: ignore[import-not-found, unused-ignore]

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise CliError("pytest-energy plot needs matplotlib, an optional extra: pip "
                           "install 'pytest-energy[plot]' (or pip install matplotlib)") from None
        figure, axes = plt.subplots(figsize=(10, 5))
        try:
            if args.history:
                self._plot_history(args, axes)
            else:
                self._plot_run(args, axes)
            figure.tight_layout()
            output.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(output)
        except OSError as exc:
            raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
        finally:
            plt.close(figure)
        self.print(f"wrote {output}")
        return EXIT_OK

    def _plot_history(self, args: argparse.Namespace, axes: Any) -> None:
        from pytest_energy.compare import METRICS

        metric = METRICS[args.metric]
        with self.open() as storage:
            pairs = storage.history(pattern=args.history, limit_runs=50)
        series: dict[str, list[tuple[int, float]]] = {}
        for stored, entry in pairs:
            value = metric.value(entry)
            if value is not None:
                series.setdefault(str(entry.get("nodeid")), []).append((stored.id, value))
        if not series:
            raise CliError(f"no stored results for tests matching {args.history!r}")
        for nodeid, points in series.items():
            points.sort()
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=nodeid)
        from matplotlib.ticker import MaxNLocator  # type: ignore[import-not-found, unused-ignore]

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylim(bottom=0)
        axes.set_xlabel("run id")
        axes.set_ylabel(f"{metric.label} ({metric.unit})")
        axes.set_title(f"{metric.label} history: {args.history}")
        axes.legend(fontsize="small")

    def _plot_run(self, args: argparse.Namespace, axes: Any) -> None:
        from pytest_energy.compare import METRICS

        metric = METRICS[args.metric]
        with self.open() as storage:
            run = self.resolve(storage, args.run)
            entries = storage.entries(run.id)
        measured = [e for e in entries if metric.value(e) is not None]
        if not measured:
            raise CliError(f"run {run.label} has no measured test to plot")
        positions = list(range(len(measured)))
        axes.barh(positions, [metric.value(e) or 0.0 for e in measured], label=metric.label)
        budgets = [(i, (e.get("budget") or {}).get(metric.name)) for i, e in enumerate(measured)]
        shown = [(i, b) for i, b in budgets if b]
        if shown:
            axes.scatter([b for _, b in shown], [i for i, _ in shown], marker="|", s=400,
                         color="red", label="budget", zorder=3)
        axes.set_yticks(positions, [str(e.get("nodeid")).rsplit("/", 1)[-1] for e in measured],
                        fontsize="small")
        axes.invert_yaxis()  # the suite's order, top to bottom
        axes.set_xscale("log")
        axes.set_xlabel(f"{metric.label} ({metric.unit}, log scale)")
        axes.set_title(f"{metric.label} per test vs budget, run {run.label}")
        axes.legend()

    def prune(self, args: argparse.Namespace) -> int:
        from pytest_energy.storage import open_storage, prune_candidates

        with self.open() as storage:
            runs = storage.runs()
        doomed = prune_candidates(runs, keep=args.keep, include_named=args.named_too)
        listed = ", ".join(f"#{r.id}" for r in sorted(doomed, key=lambda r: r.id))
        if args.dry_run or not doomed:
            verb = "would delete" if args.dry_run else "nothing to delete:"
            self.print(f"{verb} {len(doomed)} of {len(runs)} run(s)"
                       + (f": {listed}" if doomed else ""))
            return EXIT_OK
        writable = open_storage(self.storage_dir, create=True)
        assert writable is not None
        with writable:
            deleted = writable.delete_runs(r.id for r in doomed)
        self.print(f"deleted {deleted} of {len(runs)} run(s): {listed}; kept "
                   f"{len(runs) - deleted}")
        return EXIT_OK

    def export(self, args: argparse.Namespace) -> int:
        from pytest_energy.storage import SCHEMA_VERSION

        with self.open() as storage:
            runs = [self.resolve(storage, ref) for ref in args.runs] or storage.runs()
            data = {"version": EXPORT_VERSION, "schema": SCHEMA_VERSION,
                    "runs": [{**r.to_dict(), "results": storage.entries(r.id)} for r in runs]}
        text = json.dumps(data, indent=2) + "\n"
        if args.output:
            from pytest_energy.jsonreport import atomic_write_text

            try:
                atomic_write_text(args.output, text)
            except OSError as exc:
                raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            self.print(f"exported {len(runs)} run(s) to {args.output}")
        else:
            self.out.write(text)
        return EXIT_OK


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Entry point of the ``pytest-energy`` console script; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    from pytest_energy.storage import StorageError

    cli = Cli(find_storage(args.storage, os.environ, Path.cwd()), out, err)
    try:
        result: int = getattr(cli, args.command)(args)
        return result
    except (CliError, StorageError) as exc:
        err.write(f"pytest-energy {args.command}: {exc}\n")
        return EXIT_CANNOT
    except BrokenPipeError:  # pytest-energy export --json | head
        return EXIT_OK
