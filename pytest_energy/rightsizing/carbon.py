"""Carbon and cost: grams of CO2e and money per call, per 1,000 items and for the run.

Only from numbers the user gave (``--energy-carbon-intensity`` in gCO2e/kWh,
``--energy-price`` per kWh): nothing is looked up, because a test run must not depend
on the network, and the right number is the one for where the model will run, not
where CI runs. The figures are tiny (micrograms per call), so the formatters here
scale their unit rather than print ``0.00``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_energy.entry import Entry
from pytest_energy.rightsizing.base import (
    ITEMS_PER_LABEL,
    PER_CALL,
    RightsizingOptions,
    finite,
    metric_value,
)
from pytest_energy.units import format_scaled

#: Joules in one kilowatt-hour: electricity prices and carbon intensities are per kWh.
J_PER_KWH = 3.6e6

#: What the whole-run total covers, stored with it in the JSON report.
SCOPE = ("measured code only: sum over measured tests of joules_per_call x (calls + "
         "warmup_calls); excludes setup, teardown, unmeasured tests and idle time")


def _per_kwh(joules: float | None, factor: float | None) -> float | None:
    """``joules`` valued at ``factor`` per kWh; None when either is unknown."""
    return None if joules is None or factor is None else joules / J_PER_KWH * factor


def _test_figures(entry: Entry, options: RightsizingOptions) -> dict[str, Any]:
    """One measured test's carbon and cost per call, per 1,000 items and for the run."""
    intensity, price = options.carbon_intensity, options.price
    jpc = metric_value(entry, PER_CALL)
    jpi = finite(entry.joules_per_item)
    per_1000 = None if jpi is None else jpi * ITEMS_PER_LABEL
    calls = entry.calls + entry.warmup_calls
    run_joules = jpc * calls
    return {
        "nodeid": entry.nodeid,
        "estimated": bool(entry.estimated),
        "joules_per_call": jpc,
        "joules_per_1000_items": per_1000,
        "calls_total": calls,
        "joules_total": run_joules,
        "g_co2e_per_call": _per_kwh(jpc, intensity),
        "g_co2e_per_1000_items": _per_kwh(per_1000, intensity),
        "g_co2e_total": _per_kwh(run_joules, intensity),
        "cost_per_call": _per_kwh(jpc, price),
        "cost_per_1000_items": _per_kwh(per_1000, price),
        "cost_total": _per_kwh(run_joules, price),
    }


def carbon_cost(entries: Sequence[Entry], options: RightsizingOptions) -> dict[str, Any] | None:
    """gCO2e and cost per call, per 1,000 items and for the whole run; None when unset.

    Uses only the numbers the user gave (``carbon_intensity`` in gCO2e/kWh, ``price``
    per kWh): nothing is looked up. A figure whose factor is unset is None.

    Per test: ``joules_per_call`` (median over trials) x factor / 3.6e6 J per kWh; per
    1,000 items the same from ``joules_per_item`` x 1,000 (None without items).

    Whole run (``total``): the sum over measured tests of ``joules_per_call`` x
    ``calls + warmup_calls``, i.e. every call of the measured code, warm-up included,
    valued at its median per-call energy. It covers what the meter saw during the
    measured code only: not setup, teardown, unmeasured tests or idle time between
    tests; and it is an estimate when the meter is (``estimated``).
    """
    intensity, price = options.carbon_intensity, options.price
    if intensity is None and price is None:
        return None
    tests = [_test_figures(entry, options) for entry in entries if entry.is_measured]
    total_joules = sum((t["joules_total"] for t in tests), 0.0)
    return {
        "carbon_intensity_g_per_kwh": intensity,
        "price_per_kwh": price,
        "currency": options.currency,
        "estimated": any(t["estimated"] for t in tests),
        "tests": tests,
        "total": {
            "joules": total_joules,
            "kwh": total_joules / J_PER_KWH,
            "g_co2e": _per_kwh(total_joules, intensity),
            "cost": _per_kwh(total_joules, price),
            "calls": sum(t["calls_total"] for t in tests),
            "tests": len(tests),
        },
        "scope": SCOPE,
    }


def format_wh(wh: float | None, digits: int = 3) -> str:
    """``"0.33 mWh"``: Wh per 1,000 items of small models are tiny, so scale the unit."""
    if wh is None:
        return "-"
    if wh == 0:
        return "0 Wh"
    return format_scaled(wh, [(1e3, "kWh"), (1.0, "Wh"), (1e-3, "mWh"), (1e-6, "uWh"),
                              (1e-9, "nWh")], digits)


def format_mass(grams: float | None, digits: int = 3) -> str:
    """``"1.2 mg"``, ``"350 ng"``: carbon per inference call is tiny, so scale it."""
    if grams is None:
        return "-"
    if grams == 0:
        return "0 g"
    return format_scaled(grams, [(1e3, "kg"), (1.0, "g"), (1e-3, "mg"), (1e-6, "ug"),
                                 (1e-9, "ng")], digits)


def format_money(amount: float | None, currency: str = "", digits: int = 3) -> str:
    """``"0.42 EUR"``; tiny amounts in scientific notation (``"3.1e-09 EUR"``)."""
    if amount is None:
        return "-"
    text = "0" if amount == 0 else (f"{amount:.2f}" if abs(amount) >= 0.01
                                    else f"{amount:.{digits - 1}e}")
    return f"{text} {currency}".strip()
