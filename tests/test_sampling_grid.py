"""The stepped counter's grid (pytest_energy.measure.grid) and the phase-set arithmetic
of pytest_energy.measure.sampling: pure functions, checked exhaustively."""

from __future__ import annotations

import bisect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_energy.measure.grid import StepGrid, measure_grid, precise_step, wait_for_step
from pytest_energy.measure.sampling import SET_TOLERANCE, coverage_imbalance, set_size
from pytest_energy.measure.tracker import StepTracker


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


def test_a_poll_whose_reads_are_all_slow_takes_the_best_step_after_its_patience():
    """Reads of 2 ms never see a step within 0.5 ms: waiting the whole three periods
    for one before every re-anchoring once took most of a test's time."""
    steps = [0.1 * k for k in range(1, 10)]
    counter = FakeCounter(steps, cost=2e-3)
    got = precise_step(counter.read, counter.clock, timeout_s=0.3, max_resolution_s=5e-4,
                       patience_s=0.15)
    assert got is not None and got.resolution_s == pytest.approx(4e-3)
    assert counter.t < 0.21  # two steps seen, not three periods of waiting
    patient = FakeCounter(steps, cost=2e-3)
    assert precise_step(patient.read, patient.clock, timeout_s=0.3,
                        max_resolution_s=5e-4) is not None
    assert patient.t >= 0.3
    quick = FakeCounter(steps, cost=1e-4)  # a precise step is taken at once
    got = precise_step(quick.read, quick.clock, timeout_s=0.3, max_resolution_s=5e-4,
                       patience_s=0.15)
    assert got is not None and got.time_s < 0.101


def test_a_blurred_step_reanchors_the_grid_but_does_not_refit_the_period():
    """Steps seen across 2 ms reads tilted the least-squares period by 1%, and a
    1.1 s block then counted a step too many."""
    tracker = StepTracker(reader=None, grid=StepGrid(0.0, 0.1),  # type: ignore[arg-type]
                          observations=[0.0])
    for k in (5, 10):
        tracker._observe(0.1 * k)
    assert tracker.period_s == pytest.approx(0.1)
    tracker._observe(1.504, precise=False)  # 4 ms late
    assert tracker.grid.ref_s == 1.504 and tracker.period_s == pytest.approx(0.1)
    tracker._observe(2.004)  # the same lateness, seen precisely, refits
    assert tracker.period_s > 0.1


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
