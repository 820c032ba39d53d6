"""How many trials a test got and why (issue 12, item 6): the sizing decision, the
reason in the result, the entry, the details and the summary, and the gate's advice.

The sizing tests run on a simulated clock: no timing-dependent assertion."""

from __future__ import annotations

import json

import pytest

from pytest_energy.entry import Entry
from pytest_energy.history.compare import _too_few_trials
from pytest_energy.measure import Measurer
from pytest_energy.measure.windows import (
    auto_trials,
    default_max_time,
    fixed_trials,
    make_plan,
    suggest_max_time,
)
from pytest_energy.report.details import details_section
from pytest_energy.report.summary import summary_notes

RAPL_PERIOD_S = 0.001  # a fast counter: the plain windows plan, default max_time 1 s


class SlowCallMeter:
    """A continuous 100 W meter on a simulated clock; every call lasts ``call_s``."""

    name = "clock"
    estimated = False
    update_period_s = RAPL_PERIOD_S

    def __init__(self, call_s: float) -> None:
        self.call_ns = round(call_s * 1e9)
        self.now_ns = 0
        self.calls = 0

    def call(self) -> None:
        self.now_ns += self.call_ns
        self.calls += 1

    def domains(self) -> list[str]:
        return ["cpu:0"]

    def read(self) -> dict[str, float]:
        return {"cpu:0": 100.0 * self.now_ns / 1e9}

    def close(self) -> None:
        pass


def _run(call_s: float, *, rounds: int | None = None,
         max_time_s: float | None = None) -> tuple[SlowCallMeter, dict[str, object]]:
    meter = SlowCallMeter(call_s)
    measurer = Measurer(meter, device="cpu", clock=lambda: meter.now_ns, isolate=False,
                        read_timeout_s=0)
    _, result = measurer.run(meter.call, warmup=1, rounds=rounds, trials=5,
                             max_time_s=max_time_s)
    return meter, result.to_dict()


# ----- the sizing decision ------------------------------------------------------------
DEFAULT_MAX_TIME = default_max_time(RAPL_PERIOD_S)


@pytest.mark.parametrize(("call_s", "got", "why", "suggested"), [
    # a real 250 ms call lasts a hair longer: 4 windows would need 1.002 s
    (0.2505, 3, "calls of 250 ms fill the 1 s default max_time in 3 windows of 1 call", 1.4),
    (0.5005, 1, "one 500 ms call leaves no room for a second window in the 1 s default "
                "max_time", 2.8),
    (2.65, 1, "one 2.65 s call exceeds the 1 s default max_time", 15.0),  # bert-base
])
def test_long_calls_with_the_default_max_time_get_fewer_trials_and_say_why(
        call_s: float, got: int, why: str, suggested: float) -> None:
    assert DEFAULT_MAX_TIME == 1.0
    count = auto_trials(call_s, 1, trials=5, max_time_s=DEFAULT_MAX_TIME,
                        default_max_time=True)
    assert (count.got, count.asked, count.cut_by_time) == (got, 5, True)
    assert count.reason.startswith(f"{got} of 5 trials: {why} (raise max_time for 5 trials")
    assert f'max_time="{suggest_max_time(5 * call_s):g} s" on the marker' in count.reason
    assert "--energy-max-time" in count.reason and "energy_max_time" in count.reason
    assert "--energy-trials" not in count.reason  # it would change nothing
    assert suggest_max_time(5 * call_s) == pytest.approx(suggested)
    # the suggested max_time does give the trials asked
    enough = auto_trials(call_s, 1, trials=5, max_time_s=suggested)
    assert enough.got == 5 and not enough.cut_by_time


def test_short_calls_get_the_trials_asked() -> None:
    count = auto_trials(0.0101, 3, trials=5, max_time_s=1.0, default_max_time=True)
    assert (count.got, count.cut_by_time) == (5, False)
    assert count.reason == "5 trials of 3 calls, as asked (trials=5, --energy-trials)"


def test_an_explicit_max_time_is_named_as_the_users_setting() -> None:
    count = auto_trials(0.201, 40, trials=5, max_time_s=1.0)
    assert count.got == 4 and count.cut_by_time
    assert count.reason.startswith(
        "4 of 5 trials: windows of 40 calls (201 ms) fill max_time=1 s in 4 windows")


def test_suggested_max_time_rounds_up_to_two_digits() -> None:
    assert suggest_max_time(13.25) == 15.0
    assert suggest_max_time(1.2525) == 1.4
    assert suggest_max_time(0.5) == 0.55
    assert suggest_max_time(100.0) == 110.0


def test_explicit_rounds_say_how_they_were_split() -> None:
    full = fixed_trials(make_plan(warmup=1, rounds=7, trials=5), 5)
    assert full.reason == "5 trials of 1-2 calls, as asked (trials=5, --energy-trials; rounds=7)"
    few = fixed_trials(make_plan(warmup=1, rounds=2, trials=5), 5)
    assert (few.got, few.cut_by_time) == (2, False)  # what the user set: no warning
    assert few.reason.startswith("2 of 5 trials: rounds=2 gives one call per trial")


# ----- through the driver, on a simulated clock ----------------------------------------
def test_a_bert_sized_call_gets_one_trial_one_warmup_and_a_warning() -> None:
    meter, data = _run(2.65)
    assert meter.calls == 2 and data["warmup_calls"] == 1 and len(data["trials"]) == 1
    reason = data["trials_reason"]
    assert isinstance(reason, str)
    assert reason.startswith("1 of 5 trials: one 2.65 s call exceeds the 1 s default max_time")
    assert reason in data["warnings"]  # type: ignore[operator]


@pytest.mark.parametrize(("call_s", "trials"), [(0.2505, 3), (0.5005, 3)])
def test_the_driver_gives_what_the_decision_says(call_s: float, trials: int) -> None:
    _, data = _run(call_s)
    assert len(data["trials"]) == trials  # type: ignore[arg-type]
    assert str(data["trials_reason"]).startswith(f"{trials} of 5 trials:")


def test_model_sized_calls_stretch_the_default_max_time_within_its_cap() -> None:
    """A 500 ms call got 1 trial with default options: no spread, no warning worth the
    name. The default max_time now stretches (at most 3x) to give it 3, and says so;
    a call too long for even that keeps the plain reason."""
    _, data = _run(0.5005)
    reason = str(data["trials_reason"])
    assert "1 s default max_time stretched to 1.65 s for at least 3 trials" in reason
    assert sum(t["window_s"] for t in data["trials"]) <= 3.0  # type: ignore[union-attr]
    _, bert = _run(2.65)
    assert "stretched" not in str(bert["trials_reason"])
    _, explicit = _run(0.5005, max_time_s=1.0)
    assert len(explicit["trials"]) == 1  # type: ignore[arg-type]


def test_fast_calls_and_explicit_rounds_are_no_warning() -> None:
    _, auto = _run(0.001)
    assert auto["trials_reason"] == "5 trials of 10 calls, as asked (trials=5, --energy-trials)"
    assert auto["warnings"] == []
    _, fixed = _run(0.001, rounds=2)
    assert str(fixed["trials_reason"]).startswith("2 of 5 trials: rounds=2")
    assert fixed["trials_reason"] not in fixed["warnings"]  # type: ignore[operator]


def test_a_longer_max_time_gives_the_trials_asked() -> None:
    _, data = _run(2.65, max_time_s=15.0)
    assert len(data["trials"]) == 5  # type: ignore[arg-type]
    assert data["warnings"] == []


# ----- entry, details, summary -----------------------------------------------------------
def _entry(call_s: float) -> Entry:
    _, data = _run(call_s)
    return Entry.from_json({**data, "nodeid": "t.py::test_bert"})


def test_the_reason_survives_the_json_edge() -> None:
    entry = _entry(2.65)
    assert entry.trials_reason is not None and entry.trials_reason.startswith("1 of 5")
    again = Entry.from_json(json.loads(json.dumps(entry.to_json())))
    assert again.trials_reason == entry.trials_reason
    assert Entry.from_json({"nodeid": "old"}).trials_reason is None  # older histories


def test_details_say_it_once_and_the_summary_notes_it() -> None:
    entry = _entry(2.65)
    lines = details_section(entry).splitlines()
    assert f"trials: {entry.trials_reason}" in lines
    assert not any(entry.trials_reason in line for line in lines if line.startswith("warn"))
    notes = summary_notes([entry, _entry(0.001)])
    assert notes == [f"t.py::test_bert: {entry.trials_reason}"]  # only the cut test
    assert "max_time" in notes[0]


# ----- the gate's advice ----------------------------------------------------------------------
def test_the_gate_advises_the_setting_that_gives_more_trials() -> None:
    cut = auto_trials(2.65, 1, trials=5, max_time_s=1.0).reason
    asked = auto_trials(0.01, 3, trials=2, max_time_s=1.0).reason
    by_time = _too_few_trials(1, 1, 0.01, (cut, cut))
    assert by_time is not None and "1 vs 1 trials cannot be significant" in by_time
    assert "raise max_time" in by_time and "--energy-trials" not in by_time
    by_trials = _too_few_trials(2, 2, 0.01, (asked, asked))
    assert by_trials is not None and by_trials.endswith("(--energy-trials)")
    assert "max_time" not in by_trials
    unknown = _too_few_trials(3, 3, 0.01)  # entries from before the reason existed
    assert unknown is not None and "--energy-trials" in unknown and "max_time" in unknown
    assert _too_few_trials(5, 5, 0.01, (cut,)) is None  # enough trials: no note


# ----- end to end ---------------------------------------------------------------------------
def test_a_long_call_gets_one_trial_and_the_reports_say_why(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.energy_budget(max_time="50 ms")
        def test_long():
            time.sleep(0.06)

        @pytest.mark.energy_budget()
        def test_quick():
            pass
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:StepMeter",
                              "--energy-warmup-settle=0", "--energy-json=e.json", "-rA",
                              "-p", "no:cacheprovider", "--energy-columns=all")
    result.assert_outcomes(passed=2)
    tests = {t["nodeid"].split("::")[-1]: t
             for t in json.loads((meters.path / "e.json").read_text())["tests"]}
    long, quick = tests["test_long"], tests["test_quick"]
    assert len(long["trials"]) == 1 and long["warmup_calls"] == 1 and long["calls"] == 1
    assert long["trials_reason"].startswith("1 of 5 trials: one ")
    assert "call exceeds max_time=50 ms (raise max_time for 5 trials" in long["trials_reason"]
    assert quick["trials_reason"].startswith("5 trials of ")
    assert quick["trials_reason"].endswith(", as asked (trials=5, --energy-trials)")
    result.stdout.fnmatch_lines([
        "*trials: 1 of 5 trials: one * call exceeds max_time=50 ms*",  # the details
        "*energy summary*",
        "*::test_long: 1 of 5 trials: one * call exceeds max_time=50 ms (raise max_time*",
    ])
    assert "test_quick: 5 trials" not in result.stdout.str()  # the reason, not a note


def test_with_blocks_give_one_trial_each() -> None:
    meter = SlowCallMeter(0.01)
    measurer = Measurer(meter, device="cpu", clock=lambda: meter.now_ns, isolate=False,
                        read_timeout_s=0)
    result = measurer.new_result()
    for _ in range(3):
        with measurer.block(result):
            meter.call()
    assert result.trials_reason == "3 trials: one per energy.measure() block"
    assert result.trials_reason not in result.warnings


@pytest.mark.slow  # wall-clock: a test that measures for a few seconds
def test_a_long_measurement_shows_progress_on_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.energy_budget(joules=1e6, rounds=4, trials=4)
        def test_long():
            time.sleep(0.7)
        """
    )
    result = pytester.runpytest_inprocess("--energy-meter=estimate", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["energy: measuring *::test_long: * s so far*"])


def test_progress_is_never_reported_inside_a_window() -> None:
    """The progress line was printed from inside a measured block (its terminal write
    counted as the block's energy) and timed from the wrong start (16494 s so far)."""
    meter = SlowCallMeter(1.0)
    meter.now_ns = 10**13  # a clock far from zero: a missing start shows as hours
    seen: list[tuple[float, int]] = []
    measurer = Measurer(meter, device="cpu", clock=lambda: meter.now_ns, isolate=False,
                        read_timeout_s=0,
                        progress=lambda seconds: seen.append((seconds, meter.calls)))
    measurer.run(meter.call, warmup=1, rounds=4, trials=4, max_time_s=None)
    # once before each window, from the start of the measurement
    assert [round(s) for s, _ in seen] == [1, 2, 3, 4]
    result = measurer.new_result()
    with measurer.block(result):
        meter.call()
    assert len(seen) == 4  # a block is one window: nothing reported inside it
