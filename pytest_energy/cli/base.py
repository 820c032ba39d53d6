"""What every ``pytest-energy`` command shares: exit codes, the error, and table cells."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from pytest_energy.history.printable import printable

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_CANNOT = 0, 1, 2, 3
SPARKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
ASCII_SPARKS = "_.-:=+*#"


class CliError(Exception):
    """A reason to stop with exit code 3; the message says what to do."""


def read_json(path: str, *, name: str, not_json: str = "{name} is not JSON ({error})") -> Any:
    """The JSON value in the file ``path``, else a CliError: "cannot read" naming it as
    the user gave it (``name``), or ``not_json`` filled with ``name`` and the error."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(not_json.format(name=name, error=exc)) from None


def clean(text: str) -> str:
    """``text`` safe to print: what a history holds was written by whoever ran the
    tests (see :mod:`pytest_energy.history.printable`)."""
    return printable(text)


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


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain text table, numbers left as formatted (no re-parsing by tabulate), each
    cell :func:`clean` before its width is taken (newlines too: one row, one line)."""
    cells = [[clean(str(cell)).replace("\n", "\\n").replace("\t", "\\t") for cell in row]
             for row in rows]
    return str(tabulate(cells, headers=headers, tablefmt="simple", disable_numparse=True))


def machine_label(machine: dict[str, Any]) -> str:
    """CPU model, OS and architecture of a stored run, e.g. ``Xeon Linux x86_64 x16``."""
    parts = [machine.get("cpu_model") or machine.get("processor"), machine.get("system"),
             machine.get("machine")]
    label = " ".join(str(p) for p in parts if p)
    if machine.get("cpu_count"):
        label += f" x{machine['cpu_count']}"
    return label or "?"


def meters_label(meter: dict[str, Any]) -> str:
    """The meters a run used, estimates marked, e.g. ``nvml, rapl (est.)``."""
    used = meter.get("used") or {}
    names = sorted({str(m.get("name")) + (" (est.)" if m.get("estimated") else "")
                    for m in used.values() if isinstance(m, dict)})
    return ", ".join(names) or "-"


def version_text() -> str:
    """What ``pytest-energy --version`` prints: the installed plugin's version."""
    from pytest_energy._version import __version__

    return f"pytest-energy {__version__}"
