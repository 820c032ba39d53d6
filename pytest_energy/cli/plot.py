"""``pytest-energy plot``: a PNG or SVG of one run against its budgets, or of a trend.

matplotlib is an optional extra, so it is imported only here and only when a plot is
asked for; without it the command says how to install it (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_energy.cli.base import CliError
from pytest_energy.entry import Entry
from pytest_energy.history.metrics import Metric
from pytest_energy.history.runs import RunInfo
from pytest_energy.report.jsonreport import atomic_writer

PLOT_SUFFIXES = (".png", ".svg")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed), or a CliError."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise CliError("pytest-energy plot needs matplotlib, an optional extra: pip "
                       "install 'pytest-energy[plot]' (or pip install matplotlib)") from None
    return plt


def check_output(output: str) -> Path:
    """The output path, if its suffix names a format we write."""
    path = Path(output)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise CliError(f"--output {output}: the file name must end in .png or .svg")
    return path


def save_figure(plt: Any, output: Path, draw: Callable[[Any], None]) -> None:
    """Run ``draw(axes)`` on a new figure and write it to ``output``."""
    figure, axes = plt.subplots(figsize=(10, 5))
    try:
        draw(axes)
        figure.tight_layout()
        with atomic_writer(output, binary=True) as handle:  # umask, links: as reports
            figure.savefig(handle, format=output.suffix.lower().lstrip("."))
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def draw_history(axes: Any, pairs: list[tuple[RunInfo, Entry]], metric: Metric,
                 pattern: str) -> None:
    """One line per matching test: the metric over run ids."""
    series: dict[str, list[tuple[int, float]]] = {}
    for stored, entry in pairs:
        value = metric.value(entry)
        if value is not None:
            series.setdefault(entry.nodeid, []).append((stored.id, value))
    if not series:
        raise CliError(f"no stored results for tests matching {pattern!r}")
    for nodeid, points in series.items():
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=nodeid)
    axes.locator_params(axis="x", integer=True)  # run ids: whole ticks only
    axes.set_ylim(bottom=0)
    axes.set_xlabel("run id")
    axes.set_ylabel(f"{metric.label} ({metric.unit})")
    axes.set_title(f"{metric.label} history: {pattern}")
    axes.legend(fontsize="small")


def _draw_budgets(axes: Any, measured: list[Entry], metric: Metric) -> None:
    """A red tick at each test's budget for the metric, where it has one."""
    budgets = [(i, getattr(e.budget, metric.name, None)) for i, e in enumerate(measured)]
    shown = [(i, b) for i, b in budgets if b]
    if shown:
        axes.scatter([b for _, b in shown], [i for i, _ in shown], marker="|", s=400,
                     color="red", label="budget", zorder=3)


def draw_run(axes: Any, entries: list[Entry], metric: Metric, label: str) -> None:
    """One bar per measured test (log scale, the suite's order), budgets as ticks."""
    measured = [e for e in entries if metric.value(e) is not None]
    if not measured:
        raise CliError(f"run {label} has no measured test to plot")
    positions = list(range(len(measured)))
    axes.barh(positions, [metric.value(e) or 0.0 for e in measured], label=metric.label)
    _draw_budgets(axes, measured, metric)
    axes.set_yticks(positions, [e.nodeid.rsplit("/", 1)[-1] for e in measured],
                    fontsize="small")
    axes.invert_yaxis()  # the suite's order, top to bottom
    axes.set_xscale("log")
    axes.set_xlabel(f"{metric.label} ({metric.unit}, log scale)")
    axes.set_title(f"{metric.label} per test vs budget, run {label}")
    axes.legend()
