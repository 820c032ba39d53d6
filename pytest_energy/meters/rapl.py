"""CPU package and DRAM energy from the Linux powercap RAPL interface.

The kernel exposes RAPL (Running Average Power Limit) energy counters under
``/sys/class/powercap``: one zone ``intel-rapl:N`` per package domain (file ``name`` =
``package-N``, or ``package-N-die-D`` on multi-die parts) and subzones
``intel-rapl:N:M`` for ``core``, ``uncore`` and ``dram``. AMD Zen CPUs use the same
driver and directory names (kernel 5.8+/5.11+) but usually have no ``dram`` subzone.

We measure only ``package`` and ``dram``: ``core``/``uncore`` are parts of the
package (summing them would double count), ``psys`` overlaps everything, and
``intel-rapl-mmio`` zones mirror the MSR package zone.

Counter semantics (``energy_uj``, microjoules):
    The hardware counter is 32 bits wide in units of the CPU's energy unit; the kernel
    scales it to microjoules. It counts up to ``max_energy_range_uj`` and wraps to 0.
    A raw value lower than the previous one is taken as exactly one wrap, and the delta
    is ``raw - prev + max_energy_range_uj``. (Strictly the wrap is one energy unit,
    15-61 uJ, more than ``max_energy_range_uj``; sysfs does not expose the unit, and
    the error is below 0.1 mJ per wrap.) Two wraps between reads cannot be detected,
    so reads must be closer together than the wrap time:
    :meth:`RaplMeter.max_read_interval_s` gives a safe bound assuming a 400 W
    worst-case draw (e.g. ~262 kJ range -> 655 s; a 65 kJ range -> 164 s).

Since the CVE-2020-8694 fix (Nov 2020, widely backported) ``energy_uj`` is readable by
root only; the constructor turns that into a :class:`MeterUnavailable` telling the user
how to grant access, rather than silently reporting 0 J.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_energy.meters.base import MeterError, MeterUnavailable
from pytest_energy.meters.locks import CPU_PACKAGES

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
ROOT_ENV_VAR = "PYTEST_ENERGY_POWERCAP_ROOT"
WORST_CASE_POWER_W = 400.0
"""Power assumed when computing how long a counter takes to wrap (a big server socket)."""

_ZONE_DIR = re.compile(r"intel-rapl:(\d+)")
_SUBZONE_DIR = re.compile(r"intel-rapl:(\d+):(\d+)")
_PACKAGE_NAME = re.compile(r"package-(\d+)(-die-\d+)?")


def _read_text(path: Path) -> str:
    """Read a small sysfs attribute with one ``read`` syscall.

    ``os.open``/``os.read`` avoid the buffered-IO layer: ``read()`` is called around every
    measured window, so it should cost microseconds, and a sysfs attribute must be
    read in a single call to get a consistent value.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode("ascii", errors="replace")
    finally:
        os.close(fd)


def _read_uj(path: Path) -> int:
    """Parse a non-negative integer attribute; ``ValueError`` names the bad content."""
    text = _read_text(path)
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"unparsable value {text.strip()[:40]!r}") from None
    if value < 0:
        raise ValueError(f"negative value {value}")
    return value


@dataclass
class _Zone:
    """One measured zone and its wraparound state."""

    domain: str
    path: Path
    name: str
    max_range_uj: int
    prev_uj: int
    total_uj: int = 0

    @property
    def energy_file(self) -> Path:
        return self.path / "energy_uj"


def _permission_message(path: Path, root: Path) -> str:
    return (
        "RAPL unavailable: energy_uj is readable by root only since the CVE-2020-8694 fix "
        f"({path}); run as root or grant read access, e.g. "
        f"`sudo chmod a+r {root}/intel-rapl:*/energy_uj` (or a udev rule)"
    )


def _zone_name(path: Path) -> str | None:
    try:
        return _read_text(path / "name").strip()
    except OSError:
        return None


class RaplMeter:
    """Cumulative CPU package and DRAM joules per socket from powercap RAPL.

    Domains are ``package:N`` and ``dram:N`` where ``N`` is the socket number taken
    from the zone's ``name`` (not the directory number: on laptops ``intel-rapl:1`` is
    often ``psys``). ``read()`` returns joules since construction, wraparound included.
    Thread-safe: reads update shared wrap state under a lock.
    """

    name = "rapl"
    estimated = False
    update_period_s = 0.001
    """RAPL counters update about every millisecond."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get(ROOT_ENV_VAR) or DEFAULT_POWERCAP_ROOT
        self._root = Path(root)
        self._lock = threading.Lock()
        self._closed = False
        self._zones = self._discover()

    # -- discovery -----------------------------------------------------------------

    def _zone_dirs(self) -> list[Path]:
        """Package zone directories and their subzones, deduplicated by real path.

        ``/sys/class/powercap`` lists subzones both as top-level symlinks and nested in
        their parent; either layout is accepted.
        """
        top = self._list_root()
        found = {
            path.name: path
            for path in top
            if _ZONE_DIR.fullmatch(path.name) or _SUBZONE_DIR.fullmatch(path.name)
        }
        for path in top:  # subzones present only inside their package zone
            if _ZONE_DIR.fullmatch(path.name) and path.is_dir():
                for child in _nested_subzones(path):
                    found.setdefault(child.name, child)
        return [found[name] for name in sorted(found, key=_zone_sort_key)]

    def _list_root(self) -> list[Path]:
        try:
            return sorted(self._root.iterdir(), key=lambda p: p.name)
        except (FileNotFoundError, NotADirectoryError):
            raise MeterUnavailable(
                f"no powercap RAPL zones under {self._root} (directory missing: no RAPL "
                "driver loaded, or a VM/container without RAPL access)"
            ) from None
        except PermissionError as exc:
            raise MeterUnavailable(f"RAPL unavailable: cannot list {self._root}: {exc}") from None

    def _discover(self) -> list[_Zone]:
        dirs = self._zone_dirs()
        if not dirs:
            raise MeterUnavailable(f"no powercap RAPL zones under {self._root}")
        names: dict[str, str | None] = {path.name: _zone_name(path) for path in dirs}
        packages = _package_zones(dirs, names)
        if not packages:
            seen = ", ".join(f"{p.name}={names[p.name]}" for p in dirs) or "none"
            raise MeterUnavailable(f"no RAPL package zone under {self._root} (zones found: {seen})")
        wanted = [(f"package:{suffix}", path, zone_name)
                  for path, (suffix, zone_name) in packages.items()]
        wanted += _dram_zones(dirs, names, {path.name: suffix
                                            for path, (suffix, _) in packages.items()})
        zones = [self._open_zone(domain, path, zone_name) for domain, path, zone_name in wanted]
        zones.sort(key=lambda z: _domain_sort_key(z.domain))
        return zones

    def _open_zone(self, domain: str, path: Path, zone_name: str) -> _Zone:
        """A zone whose range and current counter value could be read."""
        max_file = path / "max_energy_range_uj"
        energy_file = path / "energy_uj"
        try:
            max_range = _read_uj(max_file)
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"RAPL unavailable: cannot read {max_file}: {exc}") from None
        if max_range <= 0:
            raise MeterUnavailable(
                f"RAPL unavailable: {max_file} is {max_range}; wraparound cannot be handled"
            )
        try:
            start = _read_uj(energy_file)
        except PermissionError:
            raise MeterUnavailable(_permission_message(energy_file, self._root)) from None
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(
                f"RAPL unavailable: cannot read {energy_file}: {exc}"
            ) from None
        return _Zone(domain, path, zone_name, max_range, start)

    # -- Meter protocol ----------------------------------------------------------------

    def lock_keys(self) -> list[str]:
        """RAPL zones cover every package: one lock for all CPU packages, shared with the
        estimate meter (see pytest_energy.meters.locks)."""
        return [CPU_PACKAGES]

    def domains(self) -> list[str]:
        """``package:N`` and ``dram:N`` per socket, socket-major."""
        return [zone.domain for zone in self._zones]

    def read(self) -> dict[str, float]:
        """Joules per domain since construction.

        Raises:
            MeterError: a counter file could not be read or parsed (the file is named).
        """
        with self._lock:
            if self._closed:
                raise MeterError("RAPL meter read after close()")
            raws: list[int] = []
            for zone in self._zones:
                try:
                    raws.append(_read_uj(zone.energy_file))
                except OSError as exc:
                    detail = exc.strerror or str(exc)
                    raise MeterError(f"cannot read {zone.energy_file}: {detail}") from exc
                except ValueError as exc:
                    raise MeterError(f"cannot parse {zone.energy_file}: {exc}") from exc
            # Commit only after every zone was read, so a failed read leaves no zone
            # half-advanced and the next read still sees consistent deltas.
            for zone, raw in zip(self._zones, raws, strict=True):
                zone.total_uj += self._delta_uj(zone, raw)
                zone.prev_uj = raw
            return {zone.domain: zone.total_uj / 1e6 for zone in self._zones}

    @staticmethod
    def _delta_uj(zone: _Zone, raw: int) -> int:
        """Energy since the previous raw value, assuming at most one wrap (never negative)."""
        if raw >= zone.prev_uj:
            return raw - zone.prev_uj
        return raw - zone.prev_uj + zone.max_range_uj

    def close(self) -> None:
        """Nothing to release (files are opened per read); idempotent."""
        with self._lock:
            self._closed = True

    # -- extras --------------------------------------------------------------------------

    def max_read_interval_s(self) -> float:
        """Longest safe gap between reads: the fastest wrap at :data:`WORST_CASE_POWER_W`.

        A counter wraps after ``max_energy_range_uj`` microjoules; at 400 W that takes
        ``max_energy_range_uj / 1e6 / 400`` seconds. Reads further apart than this may
        miss a whole wrap (the energy would be under-reported by the range).
        """
        return min(zone.max_range_uj for zone in self._zones) / 1e6 / WORST_CASE_POWER_W

    def describe(self) -> dict[str, Any]:
        """Meter facts for the JSON report: root, zones and their ranges."""
        return {
            "meter": self.name,
            "root": str(self._root),
            "zones": [
                {
                    "domain": zone.domain,
                    "path": str(zone.path),
                    "name": zone.name,
                    "max_energy_range_uj": zone.max_range_uj,
                }
                for zone in self._zones
            ],
            "worst_case_power_w": WORST_CASE_POWER_W,
            "max_read_interval_s": self.max_read_interval_s(),
        }

    def __repr__(self) -> str:
        return f"RaplMeter(root={str(self._root)!r}, domains={self.domains()!r})"


def _nested_subzones(zone: Path) -> list[Path]:
    return [child for child in sorted(zone.iterdir(), key=lambda p: p.name)
            if _SUBZONE_DIR.fullmatch(child.name)]


def _package_zones(
    dirs: list[Path], names: dict[str, str | None]
) -> dict[Path, tuple[str, str]]:
    """Package zone directory -> (socket suffix such as ``"0"`` or ``"0-die-1"``, name).

    Zones whose name is not ``package-N`` (psys and friends) overlap the packages, and
    a second zone for the same package would double count: both are left out.
    """
    packages: dict[Path, tuple[str, str]] = {}
    for path in dirs:
        zone_name = names[path.name]
        if zone_name is None or not _ZONE_DIR.fullmatch(path.name):
            continue
        match = _PACKAGE_NAME.fullmatch(zone_name)
        if match is None:
            continue
        suffix = match.group(1) + (match.group(2) or "")
        if suffix not in (known for known, _ in packages.values()):
            packages[path] = (suffix, zone_name)
    return packages


def _dram_zones(
    dirs: list[Path], names: dict[str, str | None], package_suffix: dict[str, str]
) -> list[tuple[str, Path, str]]:
    """``(domain, path, name)`` of each ``dram`` subzone of a measured package."""
    wanted: list[tuple[str, Path, str]] = []
    for path in dirs:
        sub = _SUBZONE_DIR.fullmatch(path.name)
        if sub is None or names[path.name] != "dram":
            continue
        parent = f"intel-rapl:{sub.group(1)}"
        if parent in package_suffix:
            wanted.append((f"dram:{package_suffix[parent]}", path, "dram"))
    return wanted


def _zone_sort_key(dir_name: str) -> tuple[int, ...]:
    """Numeric order: ``intel-rapl:10`` after ``intel-rapl:2``."""
    return tuple(int(part) for part in dir_name.split(":")[1:])


def _domain_sort_key(domain: str) -> tuple[int, int, int]:
    """Socket-major order: package:0, dram:0, package:1, dram:1 (dies after their socket)."""
    kind, _, suffix = domain.partition(":")
    match = _PACKAGE_NAME.fullmatch(f"package-{suffix}")
    assert match is not None  # domains are built from names that matched it
    die = int(match.group(2)[len("-die-") :]) if match.group(2) else -1
    return int(match.group(1)), die, 0 if kind == "package" else 1
