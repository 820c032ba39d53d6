"""The pure planning functions of the phase-aligned plan (pytest_energy.measure.antialias,
.schedule and .grid) and the reference loop of bench/antialias_loop.py."""

from __future__ import annotations

import bisect
import itertools
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from antialias_loop import BlockReading, per_call_energy, phase_offsets

from pytest_energy.measure.antialias import (
    SET_TOLERANCE,
    choose_plan,
    complete_sets,
    coverage_imbalance,
    in_complete_sets,
    set_size,
)
from pytest_energy.measure.grid import StepGrid, measure_grid, wait_for_step
from pytest_energy.measure.schedule import (
    PhaseSchedule,
    block_end,
    place_block,
    van_der_corput,
)


def _circular_gaps(points: list[float], span: float) -> list[float]:
    ordered = sorted(points)
    return [b - a for a, b in itertools.pairwise(ordered)] + [span - ordered[-1] + ordered[0]]


# ----- offsets -------------------------------------------------------------------------
def test_van_der_corput_base_2_and_3():
    assert [van_der_corput(i) for i in range(6)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625]
    assert van_der_corput(1, 3) == pytest.approx(1 / 3)
    assert van_der_corput(4, 3) == pytest.approx(1 / 3 + 1 / 9)
    with pytest.raises(ValueError):
        van_der_corput(-1)
    with pytest.raises(ValueError):
        van_der_corput(1, base=1)


@given(count=st.integers(1, 80), span=st.floats(1e-4, 1.0), shift=st.floats(0, 0.999))
def test_stratified_offsets_are_one_per_stratum(count, span, shift):
    offsets = phase_offsets(count, span, shift=shift)
    assert len(offsets) == count
    assert all(0 <= o < span for o in offsets)
    # exactly evenly spaced around the circle of length span
    for gap in _circular_gaps(offsets, span):
        assert gap == pytest.approx(span / count, rel=1e-6, abs=1e-12)


@given(count=st.integers(1, 80), shift=st.floats(0, 0.999))
def test_every_prefix_of_the_stratified_offsets_is_spread(count, shift):
    """A loop cut short by its time budget keeps a well spread set of phases."""
    offsets = phase_offsets(count, 1.0, shift=shift)
    for m in range(1, count + 1):
        assert max(_circular_gaps(offsets[:m], 1.0)) <= 2.0 / m + 1e-9


@given(count=st.integers(1, 200))
def test_golden_and_vdc_offsets_cover_the_span(count):
    for sequence, bound in (("golden", 2.7), ("vdc", 2.0)):
        offsets = phase_offsets(count, 2.0, sequence=sequence)
        assert all(0 <= o < 2.0 for o in offsets)
        assert max(_circular_gaps(offsets, 2.0)) <= bound * 2.0 / count + 1e-9


def test_offsets_reject_bad_arguments():
    with pytest.raises(ValueError):
        phase_offsets(-1, 1.0)
    with pytest.raises(ValueError):
        phase_offsets(3, 1.0, sequence="sobol")  # type: ignore[arg-type]
    assert phase_offsets(0, 1.0) == []


# ----- polling for a step --------------------------------------------------------------
class FakeCounter:
    """A counter stepping by 1 at ``steps`` (seconds); every read costs ``cost`` seconds
    of a fake clock."""

    def __init__(self, steps: list[float], cost: float = 1e-4, start: float = 0.0):
        self.steps = steps
        self.cost = cost
        self.t = start
        self.reads = 0

    def clock(self) -> float:
        return self.t

    def read(self) -> float:
        value = float(bisect.bisect_right(self.steps, self.t))
        self.t += self.cost
        self.reads += 1
        return value


@given(step=st.floats(0.001, 0.2), cost=st.floats(2e-5, 5e-4))
def test_wait_for_step_returns_right_after_the_step(step, cost):
    counter = FakeCounter([step], cost=cost)
    got = wait_for_step(counter.read, counter.clock, timeout_s=1.0)
    assert got is not None
    assert got.value == 1.0
    # the read that saw it started at or after the step, one poll at most later; the
    # time is taken after that read, so it is never before the step
    assert step + cost <= got.time_s < step + 2 * cost + 1e-12
    assert got.time_s - got.resolution_s < step
    assert got.resolution_s == pytest.approx(2 * cost)


def test_wait_for_step_times_out_cleanly():
    counter = FakeCounter([], cost=1e-3)
    assert wait_for_step(counter.read, counter.clock, timeout_s=0.05) is None
    assert 0.05 <= counter.t <= 0.05 + 3e-3  # gave up right after the timeout


def test_wait_for_step_can_sleep_between_polls():
    counter = FakeCounter([0.1], cost=1e-6)
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        counter.t += s

    got = wait_for_step(counter.read, counter.clock, timeout_s=1.0, sleep=sleep,
                           poll_s=0.01)
    assert got is not None and 0.1 <= got.time_s < 0.1 + 0.011
    assert counter.reads < 15 and slept


def test_measure_grid_with_a_known_period_and_by_timing_steps():
    period = 0.1
    steps = [0.0371 + k * period for k in range(20)]
    counter = FakeCounter(steps, cost=2e-5, start=0.01)
    grid = measure_grid(counter.read, counter.clock, period_s=period)
    assert grid is not None and grid.period_s == period
    assert 0.0371 <= grid.ref_s <= 0.0371 + 5e-5
    counter = FakeCounter(steps, cost=2e-5, start=0.01)
    grid = measure_grid(counter.read, counter.clock, intervals=4)
    assert grid is not None
    assert grid.period_s == pytest.approx(period, abs=2e-5)
    assert grid.phase(0.0371) == pytest.approx(0.0, abs=5e-5) or grid.phase(
        0.0371) == pytest.approx(period, abs=5e-5)
    idle = FakeCounter([], cost=1e-3)
    assert measure_grid(idle.read, idle.clock, period_s=0.01) is None
    assert idle.t < 0.04


class SlowReadCounter(FakeCounter):
    """A FakeCounter whose reads starting in ``slow`` (start, end) take ``slow_cost``:
    a read preempted right around a step."""

    def __init__(self, steps: list[float], slow: tuple[float, float], slow_cost: float,
                 **kwargs: float) -> None:
        super().__init__(steps, **kwargs)
        self.slow, self.slow_cost = slow, slow_cost

    def read(self) -> float:
        value = float(bisect.bisect_right(self.steps, self.t))
        slow = self.slow[0] <= self.t < self.slow[1]
        self.t += self.slow_cost if slow else self.cost
        self.reads += 1
        return value


def test_a_slow_read_widens_the_step_instead_of_timing_it_early():
    # the read that sees the step at 0.1 starts just before it and takes 5 ms: the step
    # may have happened anywhere in that read, so its time is the read's end
    counter = SlowReadCounter([0.1], slow=(0.0999, 0.1), slow_cost=5e-3, cost=2e-5,
                              start=0.09)
    got = wait_for_step(counter.read, counter.clock, timeout_s=1.0)
    assert got is not None and got.value == 1.0
    assert got.time_s >= 0.1 and got.resolution_s >= 5e-3
    # ... and measure_grid skips such a step when asked for precision
    steps = [0.1 + k * 0.1 for k in range(10)]
    counter = SlowReadCounter(steps, slow=(0.0999, 0.1), slow_cost=5e-3, cost=2e-5,
                              start=0.09)
    grid = measure_grid(counter.read, counter.clock, period_s=0.1, max_resolution_s=5e-4)
    assert grid is not None and 0.2 <= grid.ref_s <= 0.2 + 5e-5  # the next, precise step
    counter = SlowReadCounter(steps, slow=(0.0999, 0.1), slow_cost=5e-3, cost=2e-5,
                              start=0.09)
    grid = measure_grid(counter.read, counter.clock, intervals=5, max_resolution_s=5e-4)
    assert grid is not None and grid.period_s == pytest.approx(0.1, abs=2e-5)


# ----- the grid --------------------------------------------------------------------------
@given(ref=st.floats(-5, 5), period=st.floats(0.005, 0.2), a=st.floats(-3, 3),
       length=st.floats(0, 3))
def test_grid_counts_the_steps_in_a_half_open_interval(ref, period, a, length):
    grid = StepGrid(ref, period)
    b = a + length
    k_lo, k_hi = math.floor((a - ref) / period) - 2, math.ceil((b - ref) / period) + 2
    brute = sum(1 for k in range(k_lo, k_hi + 1) if a < ref + k * period <= b)
    assert abs(grid.steps_between(a, b) - brute) <= (1 if length > 0 else 0)  # float ties
    assert grid.last_step(a) <= a + 1e-9 and a <= grid.next_step(a)
    assert grid.next_step(a) - grid.last_step(a) == pytest.approx(period)
    assert 0 <= grid.phase(a) < period + 1e-12


def test_grid_exact_cases():
    grid = StepGrid(0.05, 0.1)
    assert grid.steps_between(0.05, 0.15) == 1  # (0.05, 0.15] holds 0.15 only
    assert grid.steps_between(0.049, 0.05) == 1
    assert grid.steps_between(0.051, 0.149) == 0
    assert grid.steps_between(0.2, 0.1) == 0
    with pytest.raises(ValueError):
        StepGrid(0.0, 0.0)


# ----- phase sets -------------------------------------------------------------------------
def _coverage(phases: list[float], window: float, span: float, points: int = 2000) -> list[int]:
    """How many sensor windows [phase - window, phase] (cyclic over span) cover each of
    ``points`` evenly spaced points of the span."""
    counts = []
    for k in range(points):
        x = (k + 0.5) / points * span
        counts.append(sum(math.floor((p - x) / span) - math.floor((p - window - x) / span)
                          for p in phases))
    return counts


@pytest.mark.parametrize("window,span,size", [
    (0.025, 0.05, 2), (0.025, 0.03, 6), (0.025, 0.001, 1), (0.025, 0.0001, 1),
    (0.025, 0.01, 2), (0.010, 0.05, 5), (0.025, 0.02, 4),
])
def test_set_size_is_the_fewest_phases_that_cover_the_span_evenly(window, span, size):
    assert set_size(window, span) == size
    counts = _coverage([i * span / size for i in range(size)], window, span)
    assert max(counts) == min(counts)  # every point of the call sampled equally often
    if size > 1:  # one phase fewer would not do
        fewer = _coverage([i * span / (size - 1) for i in range(size - 1)], window, span)
        assert max(fewer) > min(fewer)


@settings(max_examples=200)
@given(window=st.floats(0.001, 0.1), span=st.floats(0.0005, 0.1))
def test_set_size_keeps_the_coverage_imbalance_small_or_least(window, span):
    size = set_size(window, span, cap=16)
    imbalance = coverage_imbalance(size, window, span)
    assert 1 <= size <= 16
    assert imbalance <= SET_TOLERANCE or imbalance <= min(
        coverage_imbalance(n, window, span) for n in range(1, 17)) + 1e-12


def test_coverage_imbalance_rejects_bad_arguments():
    with pytest.raises(ValueError):
        coverage_imbalance(0, 0.025, 0.05)
    with pytest.raises(ValueError):
        coverage_imbalance(2, 0.0, 0.05)


# ----- plans -----------------------------------------------------------------------------
@settings(max_examples=300)
@given(period=st.sampled_from([0.02, 0.05, 0.1]), call=st.floats(1e-5, 1.5),
       budget=st.floats(0.5, 5.0), window=st.sampled_from([None, 0.25, 0.5, 1.0]),
       cover=st.booleans())
def test_plan_respects_the_time_budget_unless_told_to_cover(period, call, budget, window,
                                                            cover):
    sensor_window = None if window is None else window * period
    plan = choose_plan(period, call, budget_s=budget, sensor_window_s=sensor_window,
                          cover=cover)
    assert plan.blocks >= 1 and plan.set_size >= 1
    assert plan.mode == ("short" if call < period - 2 * plan.guard_s else "long")
    if plan.blocks == 1:  # one block of one call is the floor, even over budget
        assert plan.expected_s <= max(budget, period + 0.5 * period + 2 * call) + 1e-9
    elif plan.expected_s > budget + 1e-9:
        # over budget only to finish the first whole set, and only when asked to
        assert plan.cover and plan.blocks == plan.set_size
    if plan.blocks >= plan.set_size:
        assert plan.blocks % plan.set_size == 0  # whole sets only
    for phase in plan.long_phases_s:
        assert plan.clean_before_s <= phase <= period - plan.guard_s + 1e-12


def test_plan_block_counts_for_the_default_budget():
    # unknown sensor window: a lead-in per block, two periods a block
    assert choose_plan(0.1, 0.001).blocks == 9
    # A100/H100 window known: most blocks start clean, about one period each
    assert choose_plan(0.1, 0.001, sensor_window_s=0.025).blocks == 19
    assert choose_plan(0.1, 0.05, sensor_window_s=0.025).set_size == 2
    # long calls, window known: four clean phases whose windows tile the period
    plan = choose_plan(0.1, 0.3, sensor_window_s=0.025)
    assert (plan.mode, plan.set_size, plan.blocks, plan.clean_before_s) == (
        "long", 4, 4, pytest.approx(0.025 + 0.25 * plan.guard_s))
    assert plan.long_phases_s == pytest.approx((0.02525, 0.04983, 0.07442, 0.099), abs=1e-5)
    assert plan.expected_s <= 2.0
    # 1 s calls: a set takes ~4 s; cover (default) runs it, otherwise the budget rules
    assert choose_plan(0.1, 1.0, sensor_window_s=0.025).blocks == 4
    capped = choose_plan(0.1, 1.0, sensor_window_s=0.025, cover=False)
    assert capped.blocks == 1 and not capped.covered and capped.expected_s <= 2.0
    # unknown window and a call as long as the budget: one block right after a step
    plan = choose_plan(0.1, 1.5)
    assert plan.blocks == 1 and plan.long_phases_s == (0.1 - plan.guard_s,)
    assert plan.clean_before_s == 0.0
    with pytest.raises(ValueError):
        choose_plan(0.0, 0.01)


# ----- placing blocks --------------------------------------------------------------------
@settings(max_examples=300)
@given(period=st.sampled_from([0.02, 0.1]), call=st.floats(1e-4, 0.3),
       window=st.sampled_from([None, 0.25, 0.5]), now=st.floats(0, 10),
       fraction=st.floats(0, 0.999), ref=st.floats(0, 1), drift=st.floats(0.97, 1.03))
def test_place_block_puts_the_counted_samples_at_the_phase(
        period, call, window, now, fraction, ref, drift):
    plan = choose_plan(period, call, sensor_window_s=None if window is None
                          else window * period)
    grid = StepGrid(ref, period)
    actual = call * drift  # the measured call, a little off the warm-up estimate
    if plan.mode == "short":
        phase = fraction * actual
    else:
        phase = plan.guard_s + fraction * (period - 2 * plan.guard_s)
    start, reference, finish, *_ = place_block(plan, grid, now, phase, actual)
    assert now <= start <= reference <= finish
    lead_calls = math.ceil((reference - start) / actual - 1e-9) if reference > start else 0
    first_read = start + lead_calls * actual
    if reference == start:
        # clean: the sensor window behind the first counted step lies in the block
        assert grid.next_step(start) - start >= plan.clean_before_s - 1e-9
    else:
        assert first_read >= grid.last_step(reference) + plan.guard_s - 1e-9
    end, calls = block_end(plan, grid, first_read)
    first_counted = grid.next_step(first_read)
    if plan.mode == "short":
        into_call = (first_counted - start) % actual
        assert min(abs(into_call - phase), actual - abs(into_call - phase)) < 1e-7
        assert grid.steps_between(first_read, end) == plan.steps_per_block
        assert first_counted - period * plan.steps_per_block <= first_read
    else:
        # On phase, or (rarely: a call within a few % of the period, found by
        # hypothesis) the documented fallback: a lead-in that still reads after the
        # step's guard, at another phase. Its rate is checked below.
        assert first_counted - first_read == pytest.approx(phase, abs=1e-7) or (
            first_read >= grid.last_step(reference) + plan.guard_s - 1e-9)
        assert calls == plan.calls_per_block
    assert finish >= max(end, first_read + calls * actual) - 1e-9


def test_short_blocks_wait_at_most_a_call():
    plan = choose_plan(0.1, 0.003)
    schedule = PhaseSchedule(plan, shift=0.4)
    grid = StepGrid(0.0, 0.1)
    for i in range(plan.blocks):
        now = 0.1 * i + 0.0123
        assert schedule.next_block(grid, now, 0.003).start_s - now < 0.003 + 1e-12


def test_long_call_fallback_placements_are_rare():
    """Over a grid of calls near and above the period, drifts of +-3% and start times,
    blocks land on their planned phase in all but a small fraction of placements."""
    placements = off_phase = 0
    for period in (0.02, 0.1):
        for factor in (0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0, 1.2, 1.5, 2, 3):
            call = period * factor
            for window in (None, period / 4):
                plan = choose_plan(period, call, sensor_window_s=window)
                if plan.mode != "long" or plan.clean_before_s == 0.0:
                    continue
                grid = StepGrid(0.0123, period)
                phases = plan.long_phases_s or tuple(
                    plan.guard_s + (i + 0.3) / 4 * (period - 2 * plan.guard_s)
                    for i in range(4))
                for drift in (0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 1.03):
                    actual = call * drift
                    for phase in phases:
                        for now in (0.0, 0.37, 1.234):
                            start, reference, *_ = place_block(plan, grid, now, phase,
                                                                  actual)
                            lead = (math.ceil((reference - start) / actual - 1e-9)
                                    if reference > start else 0)
                            first_read = start + lead * actual
                            placements += 1
                            if abs(grid.next_step(first_read) - first_read - phase) > 1e-7:
                                off_phase += 1
    assert placements > 1000
    assert off_phase / placements < 0.01


# ----- the schedule ------------------------------------------------------------------------
def test_long_sets_hand_out_the_tiling_with_short_pauses():
    plan = choose_plan(0.1, 0.3, sensor_window_s=0.025, budget_s=4.0)
    schedule = PhaseSchedule(plan, shift=0.7)
    grid = StepGrid(0.0, 0.1)
    now, handed = 0.05, []
    for _ in range(2 * plan.set_size):
        block = schedule.next_block(grid, now, 0.3)
        first_step = grid.next_step(block.start_s)
        handed.append((block.phase_set, block.set_size,
                       round(first_step - block.start_s, 9)))
        assert block.reference_s == block.start_s  # clean: no lead-in call
        if len(handed) > 1:
            assert block.start_s - now <= 0.025 + 2 * plan.guard_s  # about a window
        now = block.start_s + 0.3
    assert [h[0] for h in handed] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(h[1] == 4 for h in handed)
    for index in (0, 1):
        phases = sorted(h[2] for h in handed if h[0] == index)
        assert phases == pytest.approx(sorted(plan.long_phases_s), abs=1e-9)


def test_short_sets_are_spaced_evenly_over_the_measured_call():
    plan = choose_plan(0.1, 0.05, sensor_window_s=0.025)
    schedule = PhaseSchedule(plan, shift=0.1)
    grid = StepGrid(0.0, 0.1)
    now, by_set = 0.0, {}
    for _ in range(6):
        block = schedule.next_block(grid, now, 0.05)
        counted = grid.next_step(block.reference_s)
        # the counted step sits `phase` into a call started at block.start_s
        by_set.setdefault(block.phase_set, []).append(
            round((counted - block.start_s) % 0.05, 9))
        now = counted + 0.001
    assert sorted(by_set) == [0, 1, 2]
    for phases in by_set.values():
        a, b = sorted(phases)
        assert b - a == pytest.approx(0.025, abs=1e-9)  # two phases half a call apart
    assert len({min(p) for p in by_set.values()}) == 3  # sets rotated against each other


def test_first_set_is_abandoned_when_the_first_block_measures_another_call():
    # the warm-up said 95 ms (a short call); the first block measured 100 ms (long)
    plan = choose_plan(0.1, 0.095, sensor_window_s=0.025)
    assert plan.mode == "short"
    schedule = PhaseSchedule(plan, shift=0.0)
    grid = StepGrid(0.0, 0.1)
    first = schedule.next_block(grid, 0.0, 0.095)
    second = schedule.next_block(grid, first.finish_s, 0.1)
    assert (first.phase_set, second.phase_set) == (0, 1)
    assert schedule.plan.mode == "long" and second.set_size == 4
    sets = [(first.phase_set, first.set_size), (second.phase_set, second.set_size)]
    assert complete_sets(sets) == 0


# ----- combining blocks -----------------------------------------------------------------
def test_per_call_energy_is_power_per_counted_step_times_call_duration():
    grid = StepGrid(0.0, 0.1)
    watts, call = 250.0, 0.004
    readings = [
        # block over one step, 25 calls; block over two steps, 50 calls
        BlockReading(watts * 0.1, 0.05, 0.151, 25, busy_s=25 * call),
        BlockReading(watts * 0.2, 0.32, 0.52, 50, busy_s=50 * call),
    ]
    assert per_call_energy(readings, grid) == pytest.approx(watts * call)
    # without busy time, the reads' span / calls is the call duration
    readings = [BlockReading(watts * 0.1, 0.05, 0.15, 25)]
    assert per_call_energy(readings, grid) == pytest.approx(watts * 0.1 / 25)
    # a block that spans no step carries no information
    assert per_call_energy([BlockReading(1.0, 0.01, 0.09, 3)], grid) is None
    assert per_call_energy([], grid) is None


def test_only_whole_sets_are_pooled_unless_none_is_whole():
    sets = [(0, 2), (0, 2), (1, 2), (None, 1)]
    assert in_complete_sets(sets) == [True, True, False, True]
    assert complete_sets(sets) == 1
    assert in_complete_sets([(0, 4), (0, 4)]) == [True, True]  # partial: all count
    assert complete_sets([(0, 4), (0, 4)]) == 0
    grid = StepGrid(0.0, 0.1)
    whole = [BlockReading(10.0, 0.05, 0.151, 1, 0.1, 0, 2),
             BlockReading(30.0, 0.25, 0.351, 1, 0.1, 0, 2)]
    unfinished = BlockReading(1000.0, 0.45, 0.551, 1, 0.1, 1, 2)
    # 40 J over two counted steps of 0.1 s: 200 W x 0.1 s per call; the unfinished
    # set's block is left out
    assert per_call_energy([*whole, unfinished], grid) == pytest.approx(20.0)


@pytest.mark.parametrize("window,grown", [(0.025, 0.3), (0.025, 1.0), (None, 0.12),
                                          (None, 0.4)])
def test_a_call_that_grows_mid_set_gets_a_new_plan_not_a_hang(window, grown):
    """A short-call set (40 ms) whose calls suddenly last longer than the period (a
    stall, a recompile): the next block replans instead of searching forever."""
    plan = choose_plan(0.1, 0.04, sensor_window_s=window)
    schedule = PhaseSchedule(plan, shift=0.3)
    grid = StepGrid(0.0, 0.1)
    now = 0.0
    for call in (0.04, 0.04, 0.04, grown, grown):
        block = schedule.next_block(grid, now, call)
        assert block.start_s >= now
        now = block.finish_s
    assert schedule.plan.mode == "long"


def test_short_placement_is_bounded_even_for_an_impossible_phase():
    plan = choose_plan(0.1, 0.04, sensor_window_s=0.025)
    grid = StepGrid(0.0, 0.1)
    # a 300 ms call in a short plan: no clean or lead-in start matches; still returns
    start, reference, finish, *_ = place_block(plan, grid, 0.05, 0.02, 0.3)
    assert 0.05 <= start <= reference <= finish
