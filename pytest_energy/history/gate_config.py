"""Which regression gate a session asked for: the gate's options, resolved into the
arguments of :class:`~pytest_energy.history.gate.RegressionGate`.

Apart from the gate itself because deciding is cheap and the gate is not: this module
reads only the options table and the threshold parser, so a session that uses no gate
option never needs SQLite, the statistics or the markdown writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.errors import EnergyConfigError
from pytest_energy.options import GATE_SETTINGS, Resolved, resolve_setting
from pytest_energy.parsers import parse_thresholds

# Given on the command line without --energy-compare, these are a mistake worth stopping for.
_NEEDS_COMPARE = ("compare_fail", "compare_strict", "compare_alpha", "baseline_runs")
# Any of these set turns the gate on.
_ACTIVATING = ("save", "autosave", "compare", "suggest_budgets", "markdown")


def gate_arguments(config: pytest.Config, environ: Mapping[str, str] | None = None
                   ) -> dict[str, Any] | None:
    """Keyword arguments for ``RegressionGate(...)``, or None when no gate option is
    active. Raises EnergyConfigError (naming the option and its source) for a bad value."""
    values = {s.name: resolve_setting(s, config, environ) for s in GATE_SETTINGS}
    _check_needs_compare(values)
    if not any(values[name].value for name in _ACTIVATING):
        return None
    from pytest_energy.history.location import resolve_storage_dir  # only when gated

    thresholds = values["compare_fail"].value
    if isinstance(thresholds, str):  # the default, parsed only when the gate is used
        thresholds = parse_thresholds(thresholds, argument="compare_fail")
    rootdir = Path(config.rootpath)
    return {
        "storage_dir": resolve_storage_dir(values["storage"],
                                           invocation_dir=Path(config.invocation_params.dir),
                                           rootdir=rootdir),
        "save": values["save"].value, "autosave": bool(values["autosave"].value),
        "compare": values["compare"].value, "thresholds": thresholds,
        "alpha": float(values["compare_alpha"].value),
        "baseline_runs": int(values["baseline_runs"].value),
        "strict": bool(values["compare_strict"].value),
        "suggest": values["suggest_budgets"].value,
        "margin": float(values["suggest_margin"].value),
        "markdown": values["markdown"].value, "rootdir": rootdir, "environ": environ,
    }


def _check_needs_compare(values: Mapping[str, Resolved]) -> None:
    """``--energy-compare-fail`` and friends alone do nothing: say so instead."""
    if values["compare"].value:
        return
    for name in _NEEDS_COMPARE:
        resolved = values[name]
        if resolved.source.startswith("--"):
            raise EnergyConfigError(
                f"{resolved.source} has no effect without --energy-compare: add "
                "--energy-compare (latest run on this machine) or --energy-compare=NAME")
