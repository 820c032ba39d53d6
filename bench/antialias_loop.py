"""The phase-aligned loop written out without the plugin: block readings, their pooled
per-call energy, and phase-offset sequences.

``bench/accuracy.py`` and the tests run the planning of
:mod:`pytest_energy.measure.antialias` against the simulated sensor
(``bench/sensor_sim.py``) with this loop; the plugin runs the same loop in
:mod:`pytest_energy.measure.aligned`, with trials instead of :class:`BlockReading`.
``read`` is one domain's cumulative joules; the period is timed once per device and
session with ``measure_grid(read, clock)``::

    grid = measure_grid(read, clock, period_s=period)     # once per test, device idle
    plan = choose_plan(grid.period_s, call_s=warmup_latency_s, budget_s=2.0,
                       sensor_window_s=meter_window_or_None)
    schedule = PhaseSchedule(plan, shift=random.random())
    readings, call_s = [], warmup_latency_s
    deadline = t0 + max(2.0, plan.expected_s)             # cover: one whole set at least
    while True:
        block = schedule.next_block(grid, clock(), call_s)
        whole = complete_sets([(r.phase_set, r.set_size) for r in readings])
        if readings and block.finish_s > deadline and whole:
            break
        # idle (spin/sleep) until block.start_s; run calls until clock() >= reference_s
        t_ref = clock(); before = read()
        end, min_calls = block_end(schedule.plan, grid, t_ref)
        # run calls until clock() >= end and at least min_calls ran (n calls, timed)
        t_end = clock(); after = read()
        readings.append(BlockReading(after - before, t_ref, t_end, n, sum_of_latencies,
                                     block.phase_set, block.set_size))
        call_s = sum_of_latencies / n
    joules_per_call = per_call_energy(readings, grid)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_energy.measure.antialias import in_complete_sets
from pytest_energy.measure.grid import StepGrid
from pytest_energy.measure.schedule import van_der_corput

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
"""Fractional golden ratio: the additive recurrence ``frac(i * GOLDEN)`` is the most
evenly spread one-dimensional sequence whatever its length."""

Sequence_ = Literal["stratified", "golden", "vdc"]


def phase_offsets(count: int, span_s: float, *, sequence: Sequence_ = "stratified",
                  shift: float = 0.0) -> list[float]:
    """``count`` offsets in ``[0, span_s)``, spread evenly over the span.

    ``"stratified"``: one offset per stratum ``span_s / count``, exactly evenly spaced,
    visited in golden-ratio order so that any prefix is spread too (a loop cut short by
    its time budget keeps a good set). ``"golden"``: ``frac(i * GOLDEN)``. ``"vdc"``:
    base-2 van der Corput. ``shift`` (fraction of the span, use a random number per
    test) rotates the whole set, so that no phase is systematically favoured.
    """
    if count < 0 or not span_s >= 0:
        raise ValueError("need count >= 0 and span_s >= 0")
    if sequence == "stratified":
        order = sorted(range(count), key=lambda i: (i * GOLDEN) % 1.0)
        fractions = [i / count for i in order]  # order[j]: the j-th stratum to visit
    elif sequence == "golden":
        fractions = [(i * GOLDEN) % 1.0 for i in range(count)]
    elif sequence == "vdc":
        fractions = [van_der_corput(i) for i in range(count)]
    else:
        raise ValueError(f"unknown sequence {sequence!r}")
    return [((f + shift) % 1.0) * span_s for f in fractions]


@dataclass(frozen=True)
class BlockReading:
    """What one block measured: counter ``joules`` between the reads at ``start_s`` and
    ``end_s`` (clock just before each read), the ``calls`` between them and, optionally,
    ``busy_s``, the sum of those calls' latencies (default: ``end_s - start_s``), and
    the block's ``phase_set`` and that set's ``set_size`` (:class:`PhaseSchedule`)."""

    joules: float
    start_s: float
    end_s: float
    calls: int
    busy_s: float | None = None
    phase_set: int | None = None
    set_size: int = 1


def per_call_energy(readings: Sequence[BlockReading], grid: StepGrid) -> float | None:
    """Energy of one call: the blocks' counter joules over their counted steps x period
    (the mean power of the calls, every counted sample weighing the same) times the mean
    call duration, over the blocks of whole phase sets (:func:`in_complete_sets`).
    ``None`` when no block spans a counter step."""
    keep = in_complete_sets([(r.phase_set, r.set_size) for r in readings])
    joules = 0.0
    steps = 0
    seconds = 0.0
    calls = 0
    for r, kept in zip(readings, keep, strict=True):
        counted = grid.steps_between(r.start_s, r.end_s)
        if not kept or counted < 1 or r.calls < 1:
            continue
        joules += r.joules
        steps += counted
        seconds += r.busy_s if r.busy_s is not None else r.end_s - r.start_s
        calls += r.calls
    if steps == 0:
        return None
    return joules / (steps * grid.period_s) * seconds / calls

