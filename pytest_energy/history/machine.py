"""Fingerprints: when two runs were measured on comparable hardware with the same meter.

A baseline is only meaningful on the same hardware and meter. The machine fingerprint
hashes the stable hardware facts (OS, architecture, CPU model, CPU count) and leaves
out what changes between identical machines or between runs on one machine: the
hostname (CI runners get a new one per job), clocks, temperatures, kernel and Python
versions. Per test, the meter identity (meter name, estimated or not, domains, GPU
model names, RAPL zones, the estimate meter's watts per core) must match too; GPU
UUIDs and PCI ids are left out so that two runners with the same GPU model compare.
Differences that may explain a change without making the runs incomparable (kernel,
Python, GPU driver, power limit) are reported as notes.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pytest_energy.entry import Entry

MACHINE_IDENTITY_FIELDS = ("system", "machine", "cpu_model", "cpu_count")
MACHINE_NOTED_FIELDS = ("release", "python", "python_implementation")
_CPU_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model")
_GPU_NOTED_KEYS = ("driver_version", "power_limit_w")


def cpu_model() -> str | None:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in _CPU_MODEL_KEYS:
                    return " ".join(value.split()) or None
    except OSError:
        pass
    return platform.processor() or None


def with_cpu_model(machine: Mapping[str, Any]) -> dict[str, Any]:
    """``machine`` (see ``machine_info``) with its CPU model filled in when missing:
    the fingerprint needs it, and ``platform`` does not know it on Linux."""
    machine = dict(machine)
    if not machine.get("cpu_model"):
        machine["cpu_model"] = cpu_model()
    return machine


def machine_identity(machine: Mapping[str, Any]) -> dict[str, Any]:
    """The hardware facts that must match for two runs to be compared."""
    identity = {key: machine.get(key) for key in MACHINE_IDENTITY_FIELDS}
    if identity["cpu_model"] is None:
        identity["cpu_model"] = machine.get("processor")
    return identity


def fingerprint(identity: Mapping[str, Any]) -> str:
    """A short stable hash of an identity dict (canonical JSON)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_differences(baseline: Mapping[str, Any], current: Mapping[str, Any],
                         fields: Iterable[str] = MACHINE_IDENTITY_FIELDS) -> list[str]:
    """``cpu_model: 'A' (baseline) vs 'B' (this run)`` for each field that differs."""
    return [f"{key}: {baseline.get(key)!r} (baseline) vs {current.get(key)!r} (this run)"
            for key in fields if baseline.get(key) != current.get(key)]


def hardware_differences(baseline_machine: Mapping[str, Any],
                         current_machine: Mapping[str, Any]) -> str:
    """Why two machines' fingerprints differ, for a message; never empty."""
    diffs = identity_differences(machine_identity(baseline_machine),
                                 machine_identity(current_machine))
    return "; ".join(diffs) or "the machine fingerprint differs"


# ----- meter identities ------------------------------------------------------------------------


def _used_details(meter: Mapping[str, Any]) -> Iterator[tuple[object, Mapping[str, Any]]]:
    """(name, ``describe()`` details) of each meter the run used that described itself."""
    for used in (meter.get("used") or {}).values():
        if isinstance(used, Mapping) and isinstance(used.get("details"), Mapping):
            yield used.get("name"), used["details"]


def _mappings(items: object) -> Iterator[Mapping[str, Any]]:
    for item in items or []:  # type: ignore[attr-defined]
        if isinstance(item, Mapping):
            yield item


def _hardware(details: Mapping[str, Any], domains: Iterable[str]) -> list[str]:
    """The stable hardware names in one meter's details, for the measured domains."""
    wanted = list(domains)
    hardware = [f"{part.get('domain')}={part.get('name')}"
                for key in ("devices", "zones") for part in _mappings(details.get(key))
                if part.get("domain") in wanted]
    if "watts_per_core" in details:
        hardware.append(f"watts_per_core={details['watts_per_core']}")
    return hardware


def meter_identity(entry: Entry, meter: Mapping[str, Any]) -> str:
    """Canonical JSON of what a test was measured with, without per-device noise.

    Kept: meter name, estimated, domains, GPU model names (NVML), RAPL zone names and
    the estimate meter's watts per core. Left out: UUIDs, PCI ids, clocks, temperatures,
    driver versions, power limits, and any details of third-party meters (their
    ``describe()`` may hold anything, including per-run values).
    """
    domains = list(entry.domains)
    hardware = [part for name, details in _used_details(meter) if name == entry.meter
                for part in _hardware(details, domains)]
    identity = {"meter": entry.meter, "estimated": bool(entry.estimated),
                "domains": domains, "hardware": sorted(set(map(str, hardware)))}
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def meters_match(baseline: str, current: str) -> bool:
    """Same meter name, estimated flag and domains; same hardware when both runs know it.

    Under pytest-xdist the controller has no meter objects to describe, so a run's
    hardware list can be empty; that is "unknown", not "different".
    """
    if baseline == current:
        return True
    try:
        old, new = json.loads(baseline), json.loads(current)
    except ValueError:
        return False
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    if any(old.get(key) != new.get(key) for key in ("meter", "estimated", "domains")):
        return False
    return not (old.get("hardware") and new.get("hardware")) or (
        old.get("hardware") == new.get("hardware"))


def _meter_label(identity: str) -> str:
    try:
        data = json.loads(identity)
    except ValueError:
        return identity
    label = f"{data.get('meter')} {','.join(data.get('domains') or [])}".strip()
    if data.get("estimated"):
        label += " (estimated)"
    if data.get("hardware"):
        label += f" [{'; '.join(data['hardware'])}]"
    return label


def meter_difference(baseline: str, current: str) -> str:
    """Why a test is "not comparable": both meters, as people name them."""
    return (f"measured with a different meter: {_meter_label(baseline)} in the baseline, "
            f"{_meter_label(current)} in this run")


def noted_differences(baseline_machine: Mapping[str, Any], current_machine: Mapping[str, Any],
                      baseline_meter: Mapping[str, Any], current_meter: Mapping[str, Any]
                      ) -> list[str]:
    """Changes that do not make runs incomparable but may explain a difference."""
    notes = identity_differences(baseline_machine, current_machine, MACHINE_NOTED_FIELDS)
    old, new = _gpu_settings(baseline_meter), _gpu_settings(current_meter)
    for key in sorted(set(old) & set(new)):
        if old[key] != new[key]:
            notes.append(f"{key}: {old[key]!r} (baseline) vs {new[key]!r} (this run)")
    return notes


def _gpu_settings(meter: Mapping[str, Any]) -> dict[str, Any]:
    """Driver version and power limit per GPU domain: they change energy, not identity."""
    settings: dict[str, Any] = {}
    for _name, details in _used_details(meter):
        for device in _mappings(details.get("devices")):
            for key in _GPU_NOTED_KEYS:
                if device.get(key) is not None:
                    settings[f"{device.get('domain')} {key}"] = device[key]
    return settings
