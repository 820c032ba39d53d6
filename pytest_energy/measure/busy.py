"""Was the machine busy while a test was measured? Other processes' CPU time and steal.

Energy counters measure a whole device, and CPU contention slows every call: a test
measured beside a CPU-bound neighbour reads more energy and more latency than the
same code on a quiet machine. On a shared CI runner that is the commonest reason a
budget or the regression gate fails unchanged code, so the plugin looks for it.

**What is read.** Two samples per measured part (its start and its end; one per
``with energy.measure()`` block), each a handful of small ``/proc`` reads:

* ``/proc/stat``, the ``cpu`` line: jiffies all CPUs spent running anything (user,
  nice, system, irq, softirq), stolen by the hypervisor (steal), and in total; the
  ``cpuN`` lines give the number of online CPUs. Wall time is total / CPUs, so every
  figure is a ratio of one file's counters and needs no clock.
* ``/proc/self/stat``: this process's user + system time, its reaped children's
  included; plus the same for its live descendants (found through
  ``/proc/<pid>/task/*/children``, at most ``MAX_DESCENDANTS``), so a test's own
  DataLoader workers or subprocesses are never "other processes".
* ``/proc/loadavg``: the 1-minute load, reported as context only (it is a minute-long
  average, not a figure of the measured seconds).

**The rule** (:meth:`CpuUsage.is_busy`). Busy when, on average over the measured part,

* other processes used at least ``max(BUSY_MIN_CPUS, BUSY_CPU_SHARE x CPUs)`` CPUs
  (0.5 of a CPU on machines of up to 10 CPUs), or
* steal took at least ``BUSY_STEAL`` (10%) of the CPU time.

Measured on the 2-CPU development VM (``python bench/busy_probe.py``, see
docs/measurements.md): quiet, other processes read 0.00-0.05 CPUs while a test is
measured; one CPU-bound neighbour reads 1.0, two 1.3-2.0. Half a CPU sits ten times
above the quiet reading and half-way to one neighbour. The share of the CPUs
keeps the background of a big machine (whose daemons grow with it) from flagging
every run; it is a judgement, not measured here.

A measured part shorter than ``MIN_WALL_TICKS`` jiffies per CPU (0.1 s at the usual
100 Hz) is too short for jiffy counters to tell 0.5 of a CPU from rounding: it is not
judged, unless several parts of one test (several blocks) add up to enough. On the
development VM (tick accounting, CONFIG_HZ=250) quiet 0.1 s intervals read at most
0.10 CPUs of others; the estimate meter's default measured part lasts about 0.2 s.

Where ``/proc`` is absent or unreadable (macOS, Windows, a locked-down container)
detection is off and says nothing: it never reports a machine busy that it could not
read. ``PYTEST_ENERGY_PROC_ROOT`` points it at another tree (the tests' fake /proc);
it is internal, not an option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_energy.entry import BUSY_PREFIX

PROC_ROOT_ENV = "PYTEST_ENERGY_PROC_ROOT"
DEFAULT_PROC_ROOT = "/proc"
"""How a busy condition starts in ``EnergyResult.conditions`` (and an entry's)."""
BUSY_MIN_CPUS = 0.5
BUSY_CPU_SHARE = 0.05
BUSY_STEAL = 0.10
MIN_WALL_TICKS = 10
MAX_DESCENDANTS = 256

# /proc/stat "cpu" fields: user nice system idle iowait irq softirq steal (guest and
# guest_nice are already counted in user and nice).
_RUNNING = (0, 1, 2, 5, 6)
_STEAL = 7
_FIELDS = 8
# /proc/<pid>/stat fields after the ")" that closes the command name: utime, stime,
# cutime, cstime are fields 14-17 of the line, 11-14 of what follows the name.
_OWN_TIMES = slice(11, 15)


def proc_root() -> Path:
    """The /proc tree to read (``PYTEST_ENERGY_PROC_ROOT`` for the tests' fakes)."""
    return Path(os.environ.get(PROC_ROOT_ENV) or DEFAULT_PROC_ROOT)


def _ticks_per_second() -> int:
    """USER_HZ, the unit of every /proc time figure (100 on Linux)."""
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not Linux
        return 100


@dataclass(frozen=True)
class CpuSample:
    """The machine's and this process's CPU counters at one instant (jiffies)."""

    running: int  # all CPUs, anything running
    steal: int
    total: int  # all CPUs, every state
    cpus: int
    own: int  # this process and its live descendants, children reaped included
    load_1m: float | None


def parse_stat(text: str) -> tuple[int, int, int, int]:
    """``/proc/stat`` -> (running, steal, total jiffies over all CPUs, online CPUs).

    Raises ValueError on a file that does not look like ``/proc/stat``.
    """
    aggregate: list[int] | None = None
    cpus = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name == "cpu":
            aggregate = [int(v) for v in rest.split()[:_FIELDS]]
        elif name.startswith("cpu") and name[3:].isdigit():
            cpus += 1
    if aggregate is None or cpus == 0:
        raise ValueError("no 'cpu' and 'cpuN' lines")
    aggregate += [0] * (_FIELDS - len(aggregate))  # old kernels: fewer columns
    running = sum(aggregate[i] for i in _RUNNING)
    return running, aggregate[_STEAL], sum(aggregate), cpus


def parse_pid_stat(text: str) -> int:
    """``/proc/<pid>/stat`` -> utime + stime + cutime + cstime (jiffies).

    The command name may hold spaces and parentheses: fields are counted from the last
    ``)``. Raises ValueError on anything else.
    """
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < _OWN_TIMES.stop:
        raise ValueError("not a /proc/<pid>/stat line")
    return sum(int(v) for v in fields[_OWN_TIMES])


def parse_loadavg(text: str) -> float | None:
    """``/proc/loadavg`` -> the 1-minute load (None when unreadable)."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def _children(root: Path, pid: str) -> list[str]:
    """Direct children of every thread of ``pid`` (empty where the kernel lacks
    CONFIG_PROC_CHILDREN)."""
    found: list[str] = []
    try:
        tasks = list((root / pid / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend((task / "children").read_text().split())
        except OSError:
            continue
    return found


def _descendants_time(root: Path) -> int:
    """CPU time of this process's live descendants (their reaped children included)."""
    total = 0
    seen: set[str] = set()
    pending = _children(root, "self")
    while pending and len(seen) < MAX_DESCENDANTS:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            total += parse_pid_stat((root / pid / "stat").read_text())
        except (OSError, ValueError):  # exited since it was listed
            continue
        pending.extend(_children(root, pid))
    return total


def cpu_sample(root: Path | None = None) -> CpuSample | None:
    """Read the counters now; ``None`` where /proc is absent or unreadable."""
    root = proc_root() if root is None else root
    try:
        running, steal, total, cpus = parse_stat((root / "stat").read_text())
        own = parse_pid_stat((root / "self" / "stat").read_text())
    except (OSError, ValueError):
        return None
    own += _descendants_time(root)
    try:
        load = parse_loadavg((root / "loadavg").read_text())
    except OSError:
        load = None
    return CpuSample(running, steal, total, cpus, own, load)


@dataclass(frozen=True)
class CpuUsage:
    """CPU use over a measured part (or several, summed): jiffies over all CPUs."""

    running: int
    steal: int
    total: int
    own: int
    cpus: int
    load_1m: float | None = None  # at the end of the last part

    def __add__(self, other: CpuUsage) -> CpuUsage:
        return CpuUsage(self.running + other.running, self.steal + other.steal,
                        self.total + other.total, self.own + other.own,
                        other.cpus, other.load_1m)

    @property
    def wall_ticks(self) -> float:
        """Elapsed jiffies (per CPU)."""
        return self.total / self.cpus

    @property
    def foreign_cpus(self) -> float:
        """CPUs other processes used on average (never below 0: jiffy rounding)."""
        return max(0, self.running - self.own) / self.wall_ticks if self.total else 0.0

    @property
    def own_cpus(self) -> float:
        return self.own / self.wall_ticks if self.total else 0.0

    @property
    def steal_share(self) -> float:
        return self.steal / self.total if self.total else 0.0

    @property
    def judged(self) -> bool:
        """Long enough for jiffy counters to tell the threshold from rounding."""
        return self.wall_ticks >= MIN_WALL_TICKS

    @property
    def threshold_cpus(self) -> float:
        return max(BUSY_MIN_CPUS, BUSY_CPU_SHARE * self.cpus)

    @property
    def is_busy(self) -> bool:
        """The rule of the module docstring."""
        return self.judged and (self.foreign_cpus >= self.threshold_cpus
                                or self.steal_share >= BUSY_STEAL)

    def condition(self) -> str | None:
        """``busy: other processes used 1.7 of 2 CPUs while measuring (...)``, or None."""
        if not self.is_busy:
            return None
        causes = []
        if self.foreign_cpus >= self.threshold_cpus:
            load = "" if self.load_1m is None else f", load {self.load_1m:.1f}"
            causes.append(f"other processes used {self.foreign_cpus:.1f} of {self.cpus} "
                          f"CPUs while measuring (this test {self.own_cpus:.1f}{load})")
        if self.steal_share >= BUSY_STEAL:
            causes.append(f"the hypervisor took {self.steal_share:.0%} of the CPU time "
                          "for other machines (steal) while measuring")
        return f"{BUSY_PREFIX} " + "; ".join(causes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's ``machine_load``: the figures and the rule's answer."""
        return {"busy": self.is_busy, "judged": self.judged,
                "foreign_cpus": round(self.foreign_cpus, 3),
                "own_cpus": round(self.own_cpus, 3), "cpus": self.cpus,
                "threshold_cpus": self.threshold_cpus,
                "steal": round(self.steal_share, 4), "load_1m": self.load_1m,
                "seconds": round(self.wall_ticks / _ticks_per_second(), 3)}


def cpu_usage(start: CpuSample | None, end: CpuSample | None) -> CpuUsage | None:
    """What happened between two samples; None when either is missing or they do not
    fit together (CPUs went on- or offline, a machine counter went backwards)."""
    if start is None or end is None or start.cpus != end.cpus:
        return None
    deltas = (end.running - start.running, end.steal - start.steal, end.total - start.total)
    if min(deltas) < 0:
        return None
    # Our own time can drop when a descendant exits without being reaped by us.
    return CpuUsage(*deltas, own=max(0, end.own - start.own), cpus=end.cpus,
                    load_1m=end.load_1m)
