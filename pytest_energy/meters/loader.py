"""Choosing, loading and caching the meter for each device a test asks for.

``--energy-meter`` names what to use; the device (marker ``device=``) says what to
measure. ``auto`` picks the best hardware counter that works and says why it fell
back when it did. Loading happens on first use, never at import or configure time, so
sessions that measure nothing pay nothing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pytest_energy.meters.base import (
    Meter,
    MeterUnavailable,
    capabilities,
    meter_problems,
    missing_meter_attributes,
)

BUILTIN_METER_CLASSES = {
    "nvml": ("pytest_energy.meters.nvml", "NvmlMeter"),
    "rapl": ("pytest_energy.meters.rapl", "RaplMeter"),
    "estimate": ("pytest_energy.meters.estimate", "EstimateMeter"),
}
"""Where each built-in meter lives: imported by name on first use, so that a session
that never measures (or measures only estimates) never loads the others."""
BUILTIN_METERS = tuple(BUILTIN_METER_CLASSES)
ENTRY_POINT_GROUP = "pytest_energy.meters"


@dataclass(frozen=True)
class MeterChoice:
    """The outcome of choosing a meter for one device.

    Exactly one of ``meter``, ``skip_reason`` and ``error`` is set: a meter to measure
    with, a reason to skip the test (no GPU counter for a CUDA test), or an error that
    makes the test fail (a meter the user named cannot be loaded).
    """

    device: str
    meter: Meter | None = None
    note: str | None = None  # why auto chose this meter over a better one
    skip_reason: str | None = None
    error: str | None = None


def _instantiate(obj: Any, spec: str) -> Meter:
    """Turn the object a spec names into a Meter instance, or raise MeterUnavailable."""
    if inspect.isclass(obj) or (callable(obj) and missing_meter_attributes(obj)):
        try:
            obj = obj()
        except MeterUnavailable:
            raise
        except Exception as exc:
            raise MeterUnavailable(
                f"--energy-meter={spec}: calling {spec}() failed: {type(exc).__name__}: {exc}"
            ) from exc
    missing = missing_meter_attributes(obj)
    if missing:
        raise MeterUnavailable(
            f"--energy-meter={spec}: {type(obj).__name__} is not a Meter (missing "
            f"{', '.join(missing)}); attr must be a class or a no-argument callable returning "
            "an object with name, estimated, update_period_s, domains(), read(), close()"
        )
    problems = meter_problems(obj)
    if problems:
        raise MeterUnavailable(
            f"--energy-meter={spec}: meter {type(obj).__name__} "
            f"({getattr(obj, 'name', '?')!r}) is not usable: {'; '.join(problems)}")
    return obj  # type: ignore[no-any-return]


def load_custom_meter(spec: str) -> Meter:
    """Load ``package.module:attr`` or an entry point of group ``pytest_energy.meters``.

    Only the module the user named is imported.
    """
    obj = _module_attr(spec) if ":" in spec else _entry_point(spec)
    return _instantiate(obj, spec)


def _module_attr(spec: str) -> Any:
    """The object ``package.module:attr`` names (``attr`` may be dotted)."""
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise MeterUnavailable(
            f"--energy-meter={spec}: cannot import {module_name!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise MeterUnavailable(
                f"--energy-meter={spec}: module {module_name!r} has no attribute {attr_path!r}"
            )
        obj = getattr(obj, part)
    return obj


def _entry_point(spec: str) -> Any:
    """The object the installed entry point ``spec`` of our group loads."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if not matches:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise MeterUnavailable(
            f"--energy-meter={spec}: unknown meter; use auto, {', '.join(BUILTIN_METERS)}, "
            f"package.module:attr, or an entry point of group {ENTRY_POINT_GROUP} "
            f"(installed: {', '.join(known) or 'none'})"
        )
    try:
        return matches[0].load()
    except Exception as exc:
        raise MeterUnavailable(
            f"--energy-meter={spec}: entry point failed to load: {type(exc).__name__}: {exc}"
        ) from exc


def _builtin_class(kind: str) -> Callable[..., Meter]:
    module_name, class_name = BUILTIN_METER_CLASSES[kind]
    meter_class: Callable[..., Meter] = getattr(importlib.import_module(module_name), class_name)
    return meter_class


def _describe(meter: Meter) -> Any:
    """The meter's ``describe()`` fingerprint, if it declares one; never raises."""
    describe = capabilities(meter).describe
    if describe is None:
        return None
    try:
        return describe()
    except Exception as exc:  # a fingerprint must never break a report
        return {"error": f"{type(exc).__name__}: {exc}"}


def domains_of(meter: Meter) -> list[str]:
    """``meter.domains()`` for a report line; a meter that breaks later says so instead
    of turning the report into an INTERNALERROR (it was checked once when loaded)."""
    try:
        return [str(domain) for domain in meter.domains()]
    except Exception as exc:
        return [f"domains() failed: {type(exc).__name__}: {exc}"]


class MeterPool:
    """One meter instance per (meter, device) for the whole session; closed at the end."""

    def __init__(self, spec: str, *, watts_per_core: float, require_hardware: bool) -> None:
        self.spec = spec
        self.watts_per_core = watts_per_core
        self.require_hardware = require_hardware
        self._meters: dict[str, Meter] = {}
        self._failures: dict[str, str] = {}
        self._choices: dict[str, MeterChoice] = {}

    # ----- construction of single meters (cached, failures cached too) ---------------
    def _get(self, key: str) -> Meter:
        if key in self._meters:
            return self._meters[key]
        if key in self._failures:
            raise MeterUnavailable(self._failures[key])
        try:
            meter = self._build(key)
        except MeterUnavailable as exc:
            self._failures[key] = str(exc)
            raise
        except Exception as exc:  # a broken meter must not break the session
            self._failures[key] = f"{key.partition('@')[0]}: {type(exc).__name__}: {exc}"
            raise MeterUnavailable(self._failures[key]) from exc
        self._meters[key] = meter
        return meter

    def _build(self, key: str) -> Meter:
        kind, _, device = key.partition("@")
        if kind not in BUILTIN_METER_CLASSES:
            return load_custom_meter(kind)
        meter_class = _builtin_class(kind)
        if kind == "estimate":
            return meter_class(self.watts_per_core)
        if kind == "nvml":
            return meter_class(device)
        return meter_class()

    # ----- choice per device ------------------------------------------------------------
    def choose(self, device: str) -> MeterChoice:
        """The meter for a test that asked for ``device`` (cached per device)."""
        if device not in self._choices:
            self._choices[device] = self._choose(device)
        return self._choices[device]

    def _choose(self, device: str) -> MeterChoice:
        spec = self.spec
        if spec not in ("auto", *BUILTIN_METERS):
            try:
                return MeterChoice(device, meter=self._get(spec))
            except MeterUnavailable as exc:
                return MeterChoice(device, error=str(exc))
        if device == "auto" and spec in ("auto", "nvml"):
            return self._choose_any()
        if device.startswith("cuda"):
            if spec in ("auto", "nvml"):
                return self._choose_gpu(device)
            return self._gpu_unavailable(
                device, f"--energy-meter={spec} cannot measure GPU energy; use nvml or auto"
            )
        if spec == "nvml":
            return MeterChoice(device, error=(
                f"--energy-meter=nvml measures GPUs, but the test asks for device={device!r}; "
                "use device='cuda' or --energy-meter=auto"))
        return self._choose_cpu("cpu" if device == "auto" else device)

    def _choose_any(self) -> MeterChoice:
        """``device="auto"``: the GPUs when NVML works, else the CPU (with the reason)."""
        try:
            self._get("nvml@cuda")
            return self._choose_gpu("cuda")
        except MeterUnavailable as exc:
            if self.spec == "nvml":
                return self._gpu_unavailable("cuda", str(exc))
            return self._choose_cpu("cpu", gpu_note=str(exc))

    def _gpu_unavailable(self, device: str, reason: str) -> MeterChoice:
        message = f"no GPU energy counter for device {device!r}: {reason}"
        if self.require_hardware:
            return MeterChoice(device, error=message + " (--energy-require-hardware)")
        return MeterChoice(device, skip_reason=message)

    def _choose_gpu(self, device: str) -> MeterChoice:
        try:
            return MeterChoice(device, meter=self._get(f"nvml@{device}"))
        except MeterUnavailable as exc:
            return self._gpu_unavailable(device, str(exc))

    def _choose_cpu(self, device: str, gpu_note: str | None = None) -> MeterChoice:
        if self.spec in ("auto", "rapl"):
            try:
                return MeterChoice(device, meter=self._get("rapl"))
            except MeterUnavailable as exc:
                if self.spec == "rapl":
                    return MeterChoice(device, error=str(exc))
                rapl_note = str(exc)
        else:
            rapl_note = "--energy-meter=estimate"
        if self.require_hardware:
            return MeterChoice(device, error=(
                f"no hardware energy counter: {rapl_note} (--energy-require-hardware refuses "
                "estimates)"))
        note = rapl_note if gpu_note is None else f"{rapl_note}; {gpu_note}"
        return MeterChoice(device, meter=self._get("estimate"),
                           note=None if self.spec == "estimate" else f"estimates only: {note}")

    # ----- reporting and teardown --------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The meters this session used, their fingerprints, and why others were skipped."""
        used = {}
        for key, meter in self._meters.items():
            details = _describe(meter)
            used[key] = {
                "name": meter.name,
                "estimated": bool(meter.estimated),
                "update_period_s": meter.update_period_s,
                "domains": domains_of(meter),
                "details": details,
            }
        return {"requested": self.spec, "used": used, "unavailable": dict(self._failures)}

    def close(self) -> list[str]:
        """Close every meter; return the errors (closing must not stop the others)."""
        errors = []
        for key, meter in self._meters.items():
            try:
                meter.close()
            except Exception as exc:
                errors.append(f"closing meter {key}: {type(exc).__name__}: {exc}")
        self._meters.clear()
        return errors


def merge_descriptions(requested: str, described: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``describe()``-shaped dict from several processes' pools (xdist workers)."""
    used: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for description in described:
        used.update(description.get("used") or {})
        unavailable.update(description.get("unavailable") or {})
    return {"requested": requested, "used": used, "unavailable": unavailable}
