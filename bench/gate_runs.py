"""The regression gate through real pytest runs: false fails and detection (issue 12).

Run: ``python bench/gate_runs.py [--scenario drift|examples|all] [--quick] [--seed N]
[--quiet-wait S] [--keep] [--json PATH]``. About 1 minute for ``drift`` and 2-4
minutes for ``examples`` on a 2-core box (plus any wait for a quiet machine), under
3 minutes for ``--quick`` (fewer runs per row). Prints one table, one row per group of
runs, and exits 0 whatever the gate did: the figures are the result. Progress, one
line per pytest run, goes to stderr.

Every pytest run is a subprocess (``python -m pytest``) in a fresh temporary directory
with its own history (``--energy-storage``), ``--energy-json`` report and
``pytest.ini``, so nothing touches the repository or its history. The verdicts are
read from the public surface only: the exit status, the JSON report's ``"compare"``
object (``status``, ``regressions``, ``tests[].verdict``), pytest's ``FAILED`` lines
and the gate's terminal lines (``energy compare ...`` and a line about the common
shift when the gate prints one); the saved baselines are counted with
``pytest-energy runs --json``. It measures whichever ``pytest_energy`` this
interpreter imports (named on stderr first; ``PYTHONPATH`` is passed on).

Scenarios:

* **drift**: the 8-test suite of ``bench/gate_suite/`` with
  ``--energy-meter=drift_meter:DriftMeter``: a deterministic synthetic workload whose
  meter scale drifts like a shared CI runner's (per run: log-normal sigma 10%, drawn
  once per pytest process from the seed in ``GATE_SEED``; per test and run: sigma 4%;
  per window: CV 2%). 6 runs saved under one name, then compare runs: 12 unchanged
  (target: at most 1 fails), 12 with one test doing 2x the work (each test in turn;
  target: every one caught, naming only that test), 4 with the whole suite at 1.5x
  (should be caught; the simulation's target is >= 90%). The meter also charges the
  process's CPU time at ``--cpu-watts`` (default 1 W) times the run factor, as a real
  meter whose scale drifted would, so the gate's reference workload (measured with the
  session's meter) drifts with the run; ``--cpu-watts 0`` leaves it at 0 J (unusable).
  The tests' energies do not depend on the machine's speed or load.
* **examples**: the repository's ``examples/`` (copied), default meter (the estimate
  on a machine without RAPL or NVML): 5 quiet runs saved, then 8 compare runs
  alternating quiet and busy (two ``python -c "while True: pass"`` processes beside
  pytest, always killed afterwards); target: at most 1 of the 8 fails the build (for
  any reason: the gate, or a test). Then one quiet run where
  ``test_torch_energy_fixture``'s measured model call runs twice (the copy is
  patched): it must be caught, naming only that test. "Quiet": before each run the
  bench waits (``--quiet-wait``) until other processes use under 0.3 CPUs, and a quiet
  compare run that the plugin reports ``machine busy`` anyway (a neighbour started
  meanwhile) is rerun, up to twice (compare runs leave the history unchanged; saved
  baseline runs are never rerun). The table says how many runs started on a machine
  that was not quiet, were rerun, or were reported ``machine busy``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tabulate import tabulate

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SUITE = BENCH / "gate_suite"
EXAMPLES = REPO / "examples"
NAME = "bench-base"  # the name the baselines are saved under
RUN_TIMEOUT_S = 600
PART_WIDTH = 100  # characters of each gate summary line shown in the table
QUIET_CPUS = 0.3  # other processes' CPU use under which the machine counts as quiet
BUSY_RERUNS = 2  # quiet compare runs found busy are rerun up to this many times
NAMES_SHOWN = 4  # tests listed in "tests named" before "+N more"

DRIFT_TESTS = [f"w{i}" for i in range(1, 9)]  # bench/gate_suite/test_drift.py's ids
DRIFT_METER = "drift_meter:DriftMeter"

# The 2x patch of the examples copy: the measured model call runs twice.
REGRESSED_EXAMPLE = "test_torch_energy_fixture"
PATCH_FILE = "test_torch_inference.py"
PATCH_OLD = "    probs = energy(predict, torch_model, x)  # measured: warmup + rounds calls\n"
PATCH_NEW = ("    probs = energy(lambda m, b: (predict(m, b), predict(m, b))[1], torch_model, x)"
             "  # bench: 2x work\n")

PYTEST_INI = "[pytest]\naddopts = -p no:cacheprovider\n"
ENV_DROPPED = ("PYTEST_ADDOPTS", "GITHUB_STEP_SUMMARY", "PYTEST_CURRENT_TEST")


@dataclass(frozen=True)
class Plan:
    """How many runs each row gets."""

    drift_base: int = 6
    drift_unchanged: int = 12
    drift_single: int = 12
    drift_suite: int = 4
    examples_base: int = 5
    examples_compare: int = 8  # half of them with CPU hogs beside
    hogs: int = 2


QUICK = Plan(drift_unchanged=6, drift_single=4, drift_suite=2, examples_base=3,
             examples_compare=4)


@dataclass
class Run:
    """One pytest run and what the gate said about it."""

    label: str
    rc: int
    seconds: float
    compare: dict[str, Any]
    output: str
    quiet_before: bool | None = None  # the machine was quiet when the run started
    reruns: int = 0  # earlier attempts dropped because the machine was busy

    @property
    def failed_tests(self) -> list[str]:
        """Tests pytest reported FAILED or ERROR (a failing test, not the gate)."""
        return re.findall(r"^(?:FAILED|ERROR) (\S+)", self.output, flags=re.MULTILINE)

    @property
    def gate_failed(self) -> bool:
        return self.compare.get("status") == "failed" or self.compare.get("exit_status") == 1

    @property
    def named(self) -> list[str]:
        return [str(n) for n in self.compare.get("regressions") or []]

    @property
    def errored(self) -> bool:
        """pytest could not run or the gate could not do its job (exit 2-5, timeout)."""
        return self.rc not in (0, 1)

    @property
    def busy_seen(self) -> bool:
        return "machine busy" in self.output

    def gate_summary(self) -> str:
        """The gate's conclusion line, with its common-shift line when it prints one
        (each shortened: test paths dropped, cut at ``PART_WIDTH``)."""
        lines = [ln.strip() for ln in self.output.splitlines()]
        conclusion = [ln for ln in lines if ln.startswith("energy compare")][-1:]
        shift = ([ln for ln in lines if ln.lower().startswith("common shift")]
                 or [ln for ln in lines if "shift" in ln.lower() and ln not in conclusion])
        if not shift:
            shift = [f"shifts: {json.dumps(v)}" for k, v in self.compare.items()
                     if "shift" in k.lower() and v]
        parts = conclusion + shift[:1]
        if self.errored:
            parts.append(f"exit {self.rc}: " + " | ".join(lines[-2:]))
        return " / ".join(_cut(re.sub(r"[\w./-]+\.py::", "", part)) for part in parts
                          ) or "(no gate line)"


def _cut(text: str) -> str:
    return text if len(text) <= PART_WIDTH else text[:PART_WIDTH - 3] + "..."


@dataclass
class Row:
    """One line of the table: a group of runs with one question."""

    scenario: str
    what: str
    runs: list[Run] = field(default_factory=list)
    result: str = ""
    target: str = "-"
    met: str = "-"
    named: str = "-"
    shown: Run | None = None

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    def cells(self) -> list[str]:
        summary = self.shown.gate_summary() if self.shown else "-"
        return [self.scenario, self.what, str(len(self.runs)), self.result, self.target,
                self.met, self.named, summary, f"{self.seconds:.0f} s"]


HEADERS = ["scenario", "runs of", "runs", "result", "target", "met", "tests named",
           "gate's summary (run shown)", "time"]


# ----- running pytest ---------------------------------------------------------------------------


def child_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without pytest-energy settings, with ``workdir`` importable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST_ENERGY_") and k not in ENV_DROPPED}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(workdir), env.get("PYTHONPATH"))
                                        if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run_pytest(workdir: Path, label: str, args: Sequence[str],
               extra_env: dict[str, str] | None = None,
               quiet_before: bool | None = None) -> Run:
    """``python -m pytest ARGS`` in ``workdir`` with its history and a JSON report
    (and the terminal output beside it, in ``reports/LABEL.txt``)."""
    report = workdir / "reports" / f"{label}.json"
    report.parent.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "pytest", *args,
               f"--energy-storage={workdir / 'history'}", f"--energy-json={report}",
               f"--basetemp={workdir / 'basetemp'}"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=workdir, env=child_env(workdir, extra_env),
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                              check=False)
        rc, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        rc = 124
        output = f"timed out after {RUN_TIMEOUT_S} s: {exc.stdout!r}"[-2000:]
    seconds = time.perf_counter() - start
    compare: dict[str, Any] = {}
    if report.exists():
        try:
            compare = json.loads(report.read_text()).get("compare") or {}
        except (OSError, ValueError) as exc:
            output += f"\nbench: unreadable JSON report {report}: {exc}"
    report.with_suffix(".txt").write_text(output)
    run = Run(label, rc, seconds, compare, output, quiet_before)
    named = ", ".join(short(n) for n in run.named) or "-"
    failed = ", ".join(short(n) for n in run.failed_tests) or "-"
    print(f"  {label}: exit {rc}, gate {compare.get('status', '?')}, regressions: {named}, "
          f"failed tests: {failed}{', machine busy' if run.busy_seen else ''} "
          f"({seconds:.1f} s)", file=sys.stderr, flush=True)
    return run


def _cpu_jiffies() -> tuple[int, int, int] | None:
    """(busy, total, CPUs) from /proc/stat; None where it cannot be read."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    fields = [int(v) for v in lines[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    cpus = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
    return sum(fields[:8]) - idle, sum(fields[:8]), max(cpus, 1)


def wait_quiet(max_wait_s: float) -> bool:
    """Wait until other processes use under ``QUIET_CPUS`` CPUs for two seconds in a
    row (this process sleeps meanwhile); False when ``max_wait_s`` ran out first."""
    deadline = time.monotonic() + max_wait_s
    calm = 0
    before = _cpu_jiffies()
    while before is not None:
        time.sleep(1.0)
        after = _cpu_jiffies()
        if after is None:
            break
        total = after[1] - before[1]
        used = (after[0] - before[0]) / total * after[2] if total > 0 else 0.0
        calm = calm + 1 if used < QUIET_CPUS else 0
        if calm >= 2:
            return True
        if time.monotonic() > deadline:
            print(f"  (machine not quiet after {max_wait_s:.0f} s: {used:.1f} CPUs in use; "
                  "running anyway)", file=sys.stderr, flush=True)
            return False
        before = after
    return True  # cannot tell: assume quiet


def saved_runs(workdir: Path) -> int | None:
    """How many runs the history holds under NAME, as ``pytest-energy runs`` lists them."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest_energy", "--storage", str(workdir / "history"),
         "runs", "--json", "--limit", "1000"],
        cwd=workdir, env=child_env(workdir), capture_output=True, text=True, check=False,
        timeout=120)
    try:
        runs = json.loads(done.stdout)
    except ValueError:
        return None
    return sum(1 for r in runs if isinstance(r, dict) and r.get("name") == NAME)


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes beside the block, killed however it ends."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        if procs:
            time.sleep(0.5)  # let them reach full speed
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def short(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def tally(names: Sequence[str]) -> str:
    """``test_a x2, test_b x1, +3 more``: how often each test was named as regressed."""
    counts = Counter(short(n) for n in names).most_common()
    shown = [f"{name} x{n}" for name, n in counts[:NAMES_SHOWN]]
    if len(counts) > NAMES_SHOWN:
        shown.append(f"+{len(counts) - NAMES_SHOWN} more")
    return ", ".join(shown) or "-"


def errors(runs: Sequence[Run]) -> str:
    bad = Counter(r.rc for r in runs if r.errored)
    return "".join(f"; exit {rc} x{n}" for rc, n in sorted(bad.items()))


def verdict_of(run: Run, test: str) -> str:
    """The gate's verdict for one test in a run, as the JSON report gives it."""
    for entry in run.compare.get("tests") or []:
        if isinstance(entry, dict) and short(str(entry.get("nodeid"))) == test:
            return str(entry.get("verdict"))
    return "not in the report"


def gate_facts(runs: Sequence[Run]) -> str:
    """What the gate's JSON says it worked from, where it says so: how many baseline runs,
    and in how many runs the reference workload was used."""
    text = ""
    counts = Counter(r.compare["baseline_runs"] for r in runs if "baseline_runs" in r.compare)
    if counts:
        text += "; baseline runs: " + ", ".join(f"{k}" for k in sorted(counts, key=str))
    used = [r.compare["reference_used"] for r in runs if "reference_used" in r.compare]
    if used:
        text += f"; reference used in {sum(bool(u) for u in used)}/{len(runs)}"
    return text


def quietness(runs: Sequence[Run]) -> str:
    """How many runs the plugin saw as busy, and started on a machine that was not quiet."""
    text = ""
    if any(r.busy_seen for r in runs):
        text += f"; 'machine busy' seen in {sum(r.busy_seen for r in runs)}"
    loud = sum(r.quiet_before is False for r in runs)
    if loud:
        text += f"; {loud} started on a machine that was not quiet"
    reruns = sum(r.reruns for r in runs)
    if reruns:
        text += f"; {reruns} attempt(s) rerun: 'machine busy' on a quiet run"
    return text


def first_failing(runs: Sequence[Run]) -> Run | None:
    """The run to show: the first the gate failed, else the first that failed, else the
    last."""
    failing = [r for r in runs if r.gate_failed] + [r for r in runs if r.rc != 0]
    return failing[0] if failing else (runs[-1] if runs else None)


def yes(ok: bool) -> str:
    return "yes" if ok else "NO"


# ----- scenarios ------------------------------------------------------------------------------


def baseline_row(scenario: str, workdir: Path, runs: list[Run]) -> Row:
    saved = saved_runs(workdir)
    ok = sum(r.rc == 0 for r in runs)
    return Row(scenario, f"baseline, saved as {NAME!r}", runs,
               result=f"exit 0 in {ok}/{len(runs)}; {saved} saved{errors(runs)}"
                      + quietness(runs),
               target=f"{len(runs)} saved", met=yes(saved == len(runs)), shown=runs[-1])


def unchanged_row(scenario: str, what: str, runs: list[Run], allowed: int | None) -> Row:
    failed = sum(r.rc != 0 for r in runs)
    by_gate = sum(r.gate_failed for r in runs)
    result = f"{failed}/{len(runs)} failed the build ({by_gate} by the gate){errors(runs)}"
    failed_tests = [n for r in runs for n in r.failed_tests]
    if failed_tests:
        result += f"; tests failed: {tally(failed_tests)}"
    result += gate_facts(runs) + quietness(runs)
    return Row(scenario, what, runs, result=result,
               target="-" if allowed is None else f"<= {allowed} failed",
               met="-" if allowed is None else yes(failed <= allowed),
               named=tally([n for r in runs for n in r.named]),
               shown=first_failing(runs))


def caught_row(scenario: str, what: str, runs: list[Run], targets: Sequence[str | None],
               target: str) -> Row:
    """``targets[i]``: the one test run i regressed (None: the whole suite)."""
    caught = sum(r.rc == 1 and r.gate_failed for r in runs)
    single = [(r, t) for r, t in zip(runs, targets, strict=True) if t is not None]
    only = sum(r.gate_failed and [short(n) for n in r.named] == [t] for r, t in single)
    result = f"caught {caught}/{len(runs)}"
    if single:
        result += f", naming only that test {only}/{len(runs)}"
        met = caught == only == len(runs)
    else:
        met = caught == len(runs)
        result += f" ({sum(len(r.named) for r in runs)} test names in all)"
    others = [n for r, t in single for n in r.named if short(n) != t]
    if not single or not caught:
        named = tally([n for r in runs for n in r.named])
    else:
        named = f"also named: {tally(others)}" if others else "only the regressed test"
    missed = [verdict_of(r, t) for r, t in single if not r.gate_failed]
    if missed:
        result += f"; missed, its verdict: {tally(missed)}"
    failed_tests = [n for r in runs for n in r.failed_tests]
    if failed_tests:
        result += f"; tests failed: {tally(failed_tests)}"
    return Row(scenario, what, runs,
               result=result + errors(runs) + gate_facts(runs) + quietness(runs),
               target=target,
               met=yes(met), named=named, shown=runs[-1] if runs else None)


def drift_scenario(plan: Plan, seed: int, cpu_watts: float, root: Path) -> list[Row]:
    workdir = root / "drift"
    workdir.mkdir()
    for name in ("drift_meter.py", "test_drift.py"):
        shutil.copy(SUITE / name, workdir / name)
    (workdir / "pytest.ini").write_text(PYTEST_INI)
    meter = f"--energy-meter={DRIFT_METER}"

    def run(label: str, gate: str, scale: str = "") -> Run:
        return run_pytest(workdir, label, [meter, gate],
                          {"GATE_SEED": f"{seed}:{label}", "GATE_SCALE": scale,
                           "GATE_CPU_WATTS": str(cpu_watts)})

    print("drift scenario:", file=sys.stderr)
    base = [run(f"base{i}", f"--energy-save={NAME}") for i in range(plan.drift_base)]
    compare = f"--energy-compare={NAME}"
    unchanged = [run(f"same{i}", compare) for i in range(plan.drift_unchanged)]
    singles = [DRIFT_TESTS[i % len(DRIFT_TESTS)] for i in range(plan.drift_single)]
    single = [run(f"x2-{t}-{i}", compare, f"{t}=2") for i, t in enumerate(singles)]
    suite = [run(f"suite{i}", compare, "*=1.5") for i in range(plan.drift_suite)]
    return [
        baseline_row("drift", workdir, base),
        unchanged_row("drift", "unchanged compare", unchanged, allowed=1),
        caught_row("drift", "one test x2 (each in turn)", single,
                   [f"test_work[{t}]" for t in singles], "all caught, only that test"),
        caught_row("drift", "whole suite x1.5", suite, [None] * len(suite),
                   "all caught (sim.: >= 90%)"),
    ]


def patch_examples(examples: Path) -> None:
    path = examples / PATCH_FILE
    text = path.read_text()
    if text.count(PATCH_OLD) != 1:
        raise SystemExit(f"bench: cannot make {REGRESSED_EXAMPLE} do 2x the work: "
                         f"{PATCH_FILE} no longer holds {PATCH_OLD.strip()!r}")
    path.write_text(text.replace(PATCH_OLD, PATCH_NEW))


def examples_scenario(plan: Plan, root: Path, quiet_wait_s: float) -> list[Row]:
    workdir = root / "examples-run"
    workdir.mkdir()
    shutil.copytree(EXAMPLES, workdir / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".energy"))
    (workdir / "pytest.ini").write_text(PYTEST_INI)

    def run(label: str, gate: str, hogs: int = 0) -> Run:
        """On a quiet machine (waiting for one), with ``hogs`` CPU hogs beside. A quiet
        compare run that the plugin found busy anyway (a neighbour started meanwhile)
        is rerun, up to ``BUSY_RERUNS`` times: quiet is the scenario's premise, and a
        compare run leaves the history as it was. Baseline runs are saved, so never
        rerun."""
        reruns = 0
        while True:
            quiet = wait_quiet(quiet_wait_s)
            with cpu_hogs(hogs):
                done = run_pytest(workdir, label + (f"-rerun{reruns}" if reruns else ""),
                                  ["examples", gate], quiet_before=quiet)
            if hogs or "--energy-save" in gate or not done.busy_seen or reruns >= BUSY_RERUNS:
                done.reruns = reruns
                return done
            reruns += 1

    print("examples scenario:", file=sys.stderr)
    base = [run(f"base{i}", f"--energy-save={NAME}") for i in range(plan.examples_base)]
    compare = f"--energy-compare={NAME}"
    quiet: list[Run] = []
    busy: list[Run] = []
    for i in range(plan.examples_compare):
        if i % 2:
            busy.append(run(f"busy{i}", compare, plan.hogs))
        else:
            quiet.append(run(f"quiet{i}", compare))
    patch_examples(workdir / "examples")
    regressed = [run("x2-model", compare)]
    every = unchanged_row("examples", f"all {len(quiet) + len(busy)} compare runs",
                          quiet + busy, allowed=1)
    every.shown = None
    return [
        baseline_row("examples", workdir, base),
        unchanged_row("examples", "compare, quiet", quiet, allowed=None),
        unchanged_row("examples", f"compare, {plan.hogs} CPU hogs beside", busy, allowed=None),
        every,
        caught_row("examples", f"{REGRESSED_EXAMPLE}: model call 2x, quiet", regressed,
                   [REGRESSED_EXAMPLE], "caught, only that test"),
    ]


# ----- main -----------------------------------------------------------------------------------


def gate_under_test() -> str:
    done = subprocess.run(  # from elsewhere than the repository, as the runs import it
        [sys.executable, "-c", "import pytest_energy; print(pytest_energy.__file__)"],
        cwd=tempfile.gettempdir(), env=child_env(Path(tempfile.gettempdir())),
        capture_output=True, text=True, check=False)
    return done.stdout.strip() or done.stderr.strip()[-200:]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through cpu_hogs' finally


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("drift", "examples", "all"), default="all")
    parser.add_argument("--quick", action="store_true",
                        help="fewer runs per row (under ~3 minutes in all)")
    parser.add_argument("--seed", type=int, default=20241201,
                        help="seed of the drift meter's factors")
    parser.add_argument("--cpu-watts", type=float, default=1.0, metavar="W",
                        help="drift: the meter also charges the process's CPU time at W "
                             "watts x the run factor, so a reference workload measured "
                             "with it drifts with the run (default 1; 0: burn() only)")
    parser.add_argument("--quiet-wait", type=float, metavar="S",
                        help="examples: before each run, wait up to S seconds for other "
                             "processes to leave the CPUs alone (default 120, --quick 15)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directories (histories, reports) and say where")
    parser.add_argument("--json", metavar="PATH",
                        help="also write every run (exit, compare status, regressions)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    plan = QUICK if args.quick else Plan()
    print(f"gate under test: {gate_under_test()}", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="gate_runs-"))
    rows: list[Row] = []
    timing: list[str] = []
    try:
        for scenario in ("drift", "examples"):
            if args.scenario not in (scenario, "all"):
                continue
            start = time.perf_counter()
            if scenario == "drift":
                rows.extend(drift_scenario(plan, args.seed, args.cpu_watts, root))
            else:
                wait = args.quiet_wait if args.quiet_wait is not None else (
                    15.0 if args.quick else 120.0)
                rows.extend(examples_scenario(plan, root, wait))
            timing.append(f"{scenario} {time.perf_counter() - start:.0f} s")
    finally:
        if args.keep:
            print(f"kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(tabulate([row.cells() for row in rows], HEADERS, tablefmt="github"))
    print(f"\n{'quick' if args.quick else 'full'} plan, seed {args.seed}; wall time: "
          + ", ".join(timing))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"scenario": row.scenario, "what": row.what,
              "runs": [{"label": r.label, "rc": r.rc, "seconds": round(r.seconds, 2),
                        "status": r.compare.get("status"), "regressions": r.named,
                        "summary": r.gate_summary()} for r in row.runs]} for row in rows],
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
