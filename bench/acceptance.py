"""The core acceptance scenario as a rerunnable figure. Run: ``python bench/acceptance.py``.

A user meter given as ``--energy-meter=module:attr`` reports 100 W x wall time; a test
sleeps 20 ms per call, so the truth is 2.0 J per call. Printed: the measured J per call
and its error, and the verdicts under ``joules=10`` (pass), ``joules=0.5`` (fail) and
``latency_ms=5`` (fail), with the failure lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from tabulate import tabulate

METER = textwrap.dedent('''
    import time

    class WattMeter:
        name = "watt100"
        estimated = False
        update_period_s = 0.0

        def domains(self):
            return ["wall:0"]

        def read(self):
            return {"wall:0": 100.0 * time.perf_counter()}

        def close(self):
            pass
''')

SUITE = textwrap.dedent('''
    import time
    import pytest

    @pytest.mark.energy_budget(joules=10)
    def test_joules_10():
        time.sleep(0.020)

    @pytest.mark.energy_budget(joules=0.5)
    def test_joules_half():
        time.sleep(0.020)

    @pytest.mark.energy_budget(latency_ms=5)
    def test_latency_5ms():
        time.sleep(0.020)
''')


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "wattmeter.py").write_text(METER)
        (root / "test_sleep.py").write_text(SUITE)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
             "pythonpath=.", "--energy-meter=wattmeter:WattMeter", "--energy-json=e.json"],
            cwd=root, capture_output=True, text=True)
        tests = json.loads((root / "e.json").read_text())["tests"]
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pytest exited {proc.returncode}:\n{proc.stdout[-2000:]}")
    rows = []
    for entry in tests:
        name = entry["nodeid"].split("::")[1]
        jpc = entry["joules_per_call"]
        failure = entry["failures"][0] if entry["failures"] else ""  # the test's message
        rows.append([name, f"{jpc:.3f} J", f"{(jpc / 2.0 - 1) * 100:+.1f}%",
                     f"{entry['latency_ms']['median']:.1f} ms", entry["outcome"], failure])
    print(tabulate(rows, headers=["test", "J/call (truth 2.0 J)", "error", "latency median",
                                  "outcome", "failure line"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
