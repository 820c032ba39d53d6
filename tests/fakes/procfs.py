"""A fake Linux /proc tree: the files :mod:`pytest_energy.measure.busy` reads.

``FakeProc.create(base)`` writes ``stat`` (the ``cpu`` line and one ``cpuN`` line per
CPU), ``self/stat``, ``self/task/<tid>/children`` and ``loadavg`` in the kernel's
formats; point the plugin at it with ``PYTEST_ENERGY_PROC_ROOT=<base>``.

The files are the whole state: :meth:`FakeProc.advance` reads them, adds what a
stretch of time with the given CPU use would add (in jiffies, 100 per second), and
writes them back. So a test body running in another process (a pytester run) can
drive the same tree with ``FakeProc(Path(os.environ["PYTEST_ENERGY_PROC_ROOT"]))``.
Standard library only: pytester suites copy this file in as a module.
"""

from __future__ import annotations

from pathlib import Path

HZ = 100
SELF_PID = 4242
# /proc/stat "cpu" columns: user nice system idle iowait irq softirq steal guest guest_nice
_USER, _IDLE, _STEAL = 0, 3, 7


def pid_stat_line(pid: int, comm: str, utime: int, stime: int = 0, cutime: int = 0,
                  cstime: int = 0) -> str:
    """A ``/proc/<pid>/stat`` line (52 fields, as on Linux 5.x)."""
    head = [str(pid), f"({comm})", "R", "1", str(pid), str(pid), "0", "-1", "4194304",
            "100", "0", "0", "0", str(utime), str(stime), str(cutime), str(cstime)]
    return " ".join(head + ["20", "0", "1", "0"] + ["0"] * 31) + "\n"


class FakeProc:
    """Read and drive a fake /proc tree under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def create(cls, root: Path, *, cpus: int = 2, load: float = 0.25,
               comm: str = "python (pytest) x") -> FakeProc:
        """A machine that has been up a while, with this process's counters at 5 s."""
        root = Path(root)
        (root / "self" / "task" / str(SELF_PID)).mkdir(parents=True)
        fake = cls(root)
        fake._write_stat([50_000, 10, 8_000, 400_000 * cpus, 300, 0, 100, 0, 0, 0], cpus)
        (root / "self" / "stat").write_text(pid_stat_line(SELF_PID, comm, 400, 100))
        (root / "self" / "task" / str(SELF_PID) / "children").write_text("")
        fake.set_load(load)
        return fake

    # ----- the files --------------------------------------------------------------
    def _read_stat(self) -> tuple[list[int], int]:
        lines = (self.root / "stat").read_text().splitlines()
        columns = [int(v) for v in lines[0].split()[1:]]
        cpus = sum(1 for line in lines if line.split()[0][3:].isdigit())
        return columns, cpus

    def _write_stat(self, columns: list[int], cpus: int) -> None:
        per_cpu = [v // cpus for v in columns]
        lines = ["cpu  " + " ".join(map(str, columns))]
        lines += [f"cpu{n} " + " ".join(map(str, per_cpu)) for n in range(cpus)]
        lines += ["intr 12345 0 0", "ctxt 987654", "btime 1700000000", "processes 4321",
                  "procs_running 2", "procs_blocked 0"]
        (self.root / "stat").write_text("\n".join(lines) + "\n")

    def set_load(self, load: float) -> None:
        (self.root / "loadavg").write_text(f"{load:.2f} {load:.2f} {load:.2f} 2/321 {SELF_PID}\n")

    # ----- time passing -----------------------------------------------------------
    def advance(self, seconds: float, *, own_cpus: float = 0.0, foreign_cpus: float = 0.0,
                steal: float = 0.0) -> None:
        """``seconds`` pass while this process uses ``own_cpus`` CPUs, other processes
        ``foreign_cpus`` and the hypervisor steals ``steal`` of all CPU time."""
        columns, cpus = self._read_stat()
        wall = round(seconds * HZ)
        own, foreign = round(own_cpus * wall), round(foreign_cpus * wall)
        stolen = round(steal * wall * cpus)
        idle = wall * cpus - own - foreign - stolen
        if idle < 0:
            raise ValueError("more CPU time used than the CPUs have")
        columns[_USER] += own + foreign
        columns[_IDLE] += idle
        columns[_STEAL] += stolen
        self._write_stat(columns, cpus)
        self._add_own(self.root / "self" / "stat", own)

    @staticmethod
    def _add_own(path: Path, ticks: int) -> None:
        head, paren, rest = path.read_text().rpartition(")")
        fields = rest.split()
        fields[11] = str(int(fields[11]) + ticks)  # utime
        path.write_text(head + paren + " " + " ".join(fields) + "\n")

    def add_child(self, pid: int, ticks: int, parent: str = "self") -> None:
        """A live child of ``parent`` (``"self"`` or a pid) that has used ``ticks``."""
        tasks = self.root / parent / "task"
        children = next(tasks.iterdir()) / "children"
        children.write_text(f"{children.read_text()}{pid} ")
        (self.root / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (self.root / str(pid) / "task" / str(pid) / "children").write_text("")
        (self.root / str(pid) / "stat").write_text(pid_stat_line(pid, "worker", ticks))

    def child_runs(self, pid: int, ticks: int) -> None:
        """Child ``pid`` uses ``ticks`` more (the machine counters are not touched:
        pair it with :meth:`advance` counting those ticks as foreign)."""
        self._add_own(self.root / str(pid) / "stat", ticks)
