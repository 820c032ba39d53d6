"""A fake Linux powercap sysfs tree, laid out like the kernel's.

The kernel keeps the zone directories under ``/sys/devices/virtual/powercap/<type>/``
(subzones nested in their package zone) and ``/sys/class/powercap`` holds a symlink per
zone and subzone. :class:`FakePowercap` builds exactly that in a temporary directory;
``FakePowercap.root`` is the ``class/powercap`` directory to hand to the meter.

Counters are plain files the test rewrites. :meth:`FakePowercap.advance` wraps like the
hardware as the meter models it: values stay in ``[0, max_energy_range_uj]`` and a step
past the maximum continues from 0 (modulo ``max_energy_range_uj``).

Permission errors: tests here run as root, and root reads a ``chmod 000`` file anyway
(CAP_DAC_OVERRIDE). :meth:`FakePowercap.deny_read` therefore chmods the file and, only
if it is still readable, makes ``os.open`` raise the same ``PermissionError(EACCES)``
the kernel gives a non-root reader for that one path, so the meter's real open/except
path runs either way.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, TypeAlias

import pytest

StrPath: TypeAlias = "str | os.PathLike[str]"

PACKAGE_RANGE_UJ = 262_143_328_850
"""``max_energy_range_uj`` of a typical Intel package zone (~262 kJ)."""
DRAM_RANGE_UJ = 65_712_999_613
"""A typical server DRAM zone (15.3 uJ energy unit x 2**32)."""


class FakePowercap:
    """Build and drive a fake powercap tree under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.devices = base / "devices" / "virtual" / "powercap"
        self.root = base / "class" / "powercap"
        self.root.mkdir(parents=True)
        self._zones: dict[str, Path] = {}
        self._max: dict[str, int] = {}

    def _control_type(self, control: str) -> Path:
        directory = self.devices / control
        if not directory.exists():
            directory.mkdir(parents=True)
            (directory / "enabled").write_text("1\n")
            (self.root / control).symlink_to(directory)
        return directory

    def add_zone(
        self,
        zone: str,
        name: str,
        *,
        energy_uj: int = 0,
        max_energy_range_uj: int | None = None,
        link: bool = True,
    ) -> Path:
        """Create zone ``zone`` (e.g. ``"intel-rapl:0"`` or ``"intel-rapl:0:2"``).

        Subzones go inside their parent zone, which must exist. ``link=False`` omits the
        ``class/powercap`` symlink (the meter must then find the subzone nested).
        """
        control, *numbers = zone.split(":")
        if len(numbers) == 1:
            directory = self._control_type(control) / zone
        else:
            directory = self._zones[f"{control}:{numbers[0]}"] / zone
        if max_energy_range_uj is None:
            max_energy_range_uj = DRAM_RANGE_UJ if name == "dram" else PACKAGE_RANGE_UJ
        directory.mkdir()
        (directory / "name").write_text(f"{name}\n")
        (directory / "enabled").write_text("1\n")
        (directory / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        (directory / "energy_uj").write_text(f"{energy_uj}\n")
        if link:
            (self.root / zone).symlink_to(directory)
        self._zones[zone] = directory
        self._max[zone] = max_energy_range_uj
        return directory

    def energy_file(self, zone: str) -> Path:
        return self._zones[zone] / "energy_uj"

    def energy(self, zone: str) -> int:
        return int(self.energy_file(zone).read_text())

    def set_energy(self, zone: str, energy_uj: int) -> None:
        self.energy_file(zone).write_text(f"{energy_uj}\n")

    def advance(self, zone: str, delta_uj: int) -> None:
        """Add ``delta_uj`` to the counter, wrapping past ``max_energy_range_uj``."""
        maximum = self._max[zone]
        assert 0 <= delta_uj < maximum, "more than one wrap between reads is undetectable"
        value = self.energy(zone) + delta_uj
        if value > maximum:
            value -= maximum
        self.set_energy(zone, value)

    def write_raw(self, zone: str, text: str, file: str = "energy_uj") -> None:
        """Put arbitrary content in a zone file (unparsable values)."""
        (self._zones[zone] / file).write_text(text)

    def remove(self, zone: str, file: str = "energy_uj") -> None:
        (self._zones[zone] / file).unlink()

    def deny_read(self, zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make ``energy_uj`` of ``zone`` unreadable, as for a non-root user."""
        target = self.energy_file(zone)
        target.chmod(0)
        try:
            os.close(os.open(target, os.O_RDONLY))
        except PermissionError:
            return  # not root: the kernel itself refuses
        denied = os.path.realpath(target)
        real_open = os.open

        def guarded_open(path: StrPath, flags: int, *args: Any, **kwargs: Any) -> int:
            if os.path.realpath(path) == denied:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", guarded_open)


def intel_two_socket(base: Path) -> FakePowercap:
    """A 2-socket Intel server: package, dram and core per socket, plus an mmio zone."""
    tree = FakePowercap(base)
    for socket in (0, 1):
        tree.add_zone(
            f"intel-rapl:{socket}", f"package-{socket}", energy_uj=5_000_000 * (socket + 1)
        )
        tree.add_zone(f"intel-rapl:{socket}:0", "dram", energy_uj=700_000 * (socket + 1))
        tree.add_zone(f"intel-rapl:{socket}:1", "core", energy_uj=123)
    # Newer kernels also expose the package through MMIO; it must not be counted twice.
    tree.add_zone("intel-rapl-mmio:0", "package-0", energy_uj=42)
    return tree


def amd_zen(base: Path, sockets: int = 2) -> FakePowercap:
    """AMD Zen through the same driver: package zones (+ core), no dram."""
    tree = FakePowercap(base)
    for socket in range(sockets):
        tree.add_zone(f"intel-rapl:{socket}", f"package-{socket}", energy_uj=10_000 + socket)
        tree.add_zone(f"intel-rapl:{socket}:0", "core", energy_uj=77)
    return tree


def laptop_with_psys(base: Path) -> FakePowercap:
    """A client machine where ``intel-rapl:0`` is psys and the package is ``intel-rapl:1``."""
    tree = FakePowercap(base)
    tree.add_zone("intel-rapl:0", "psys", energy_uj=999)
    tree.add_zone("intel-rapl:1", "package-0", energy_uj=1_000)
    tree.add_zone("intel-rapl:1:0", "core", energy_uj=10)
    tree.add_zone("intel-rapl:1:1", "uncore", energy_uj=10)
    tree.add_zone("intel-rapl:1:2", "dram", energy_uj=500)
    return tree
