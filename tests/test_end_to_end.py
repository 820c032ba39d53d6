"""End-to-end behaviour of the plugin, through pytester with deterministic meters."""

from __future__ import annotations

import json

import pytest

# the full summary layout (the default fits the terminal: tests/test_summary_width.py)
STEP = ["--energy-meter=energy_test_meters:StepMeter", "-p", "no:cacheprovider",
        "--energy-columns=all"]


def test_within_budget_passes_and_is_summarised(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=4)
        def test_small():
            assert 1 + 1 == 2
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(passed=1)
    # 4 measured calls over 4 trials of one call; each window reads exactly 1 J.
    result.stdout.fnmatch_lines([
        "*energy summary*",
        "*test_within_budget_passes_and_is_summarised.py::test_small*1 J*4+1w*J 10%*step step:0*ok",
    ])


def test_over_energy_budget_fails_with_one_clear_line(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules="250 mJ", rounds=2)
        def test_heavy():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    # 2 rounds over 2 trials: 1 J per window, 1 call per window -> 1 J per call.
    result.stdout.fnmatch_lines([
        "*energy budget exceeded: 1 J per call > 250 mJ budget (+300%), step step:0, 2 trials",
        "*OVER BUDGET*test_heavy*",
    ])
    assert "Traceback" not in result.stdout.str()


def test_status_letter_marks_budget_failures(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules="1 mJ", rounds=1)
        def test_heavy():
            pass

        def test_plain():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.stdout.fnmatch_lines(["*test_status_letter_marks_budget_failures.py J.*"])


def test_body_runs_exactly_warmup_plus_rounds_times(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        CALLS = []

        @pytest.mark.energy_budget(joules=10, rounds=7, warmup=2)
        def test_counted():
            CALLS.append(1)

        def test_check_count():
            assert len(CALLS) == 9
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_counted*7+2w*"])


def test_latency_budget_fails_on_median(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.energy_budget(latency_ms="2 ms", rounds=3, warmup=0)
        def test_slow():
            time.sleep(0.01)
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*latency budget exceeded: * median per call > 2 ms budget*"])


@pytest.mark.parametrize(
    ("budget", "outcome"),
    [("1.5 kJ", "passed"), ("0.001 Wh", "passed"), ("900 mJ", "failed"), ("1e-3 kJ", "passed")],
)
def test_unit_strings(meters: pytest.Pytester, budget: str, outcome: str) -> None:
    meters.makepyfile(
        f"""
        import pytest

        @pytest.mark.energy_budget(joules={budget!r}, rounds=1, warmup=0)
        def test_one():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(**{outcome: 1})


@pytest.mark.parametrize(
    ("marker_args", "expected"),
    [
        ("jouls=1", "*test_bad: energy_budget marker: unknown keyword argument 'jouls' "
                    "(did you mean 'joules'?)*"),
        ("joules='5 parsecs'", "*test_bad: energy_budget marker: joules='5 parsecs' has an "
                               "unknown unit 'parsecs'*"),
        ("joules=-1", "*test_bad*joules=-1 is not valid: a budget cannot be negative*"),
        ("joules=float('nan')", "*test_bad*joules=nan is not valid: it must be a finite number*"),
        ("latency_ms='fast'", "*test_bad*latency_ms='fast' is not valid: expected a number of "
                              "milliseconds*"),
        ("1, 2, 3", "*test_bad*at most 2 positional arguments*"),
        ("joules=1, rounds=0", "*test_bad*rounds=0 is not valid: it must be >= 1*"),
        ("joules=1, device='tpu'", "*test_bad*device='tpu' is not valid*"),
        ("joules=True", "*test_bad*joules=True is not valid*"),
        ("items=0", "*test_bad*items=0 is not valid*"),
    ],
)
def test_bad_marker_arguments_error_that_test_only(
    meters: pytest.Pytester, marker_args: str, expected: str
) -> None:
    meters.makepyfile(
        f"""
        import pytest

        @pytest.mark.energy_budget({marker_args})
        def test_bad():
            pass

        def test_other():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([expected])
    output = result.stdout.str()
    assert "INTERNALERROR" not in output
    assert "pytest_energy" not in output  # no plugin traceback


def test_two_markers_on_one_test_are_an_error(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=1)
        @pytest.mark.energy_budget(latency_ms=5)
        def test_twice():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_twice: 2 energy_budget markers on one test*"])


def test_fixture_call_measures_and_returns(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        BODY_RUNS = []

        @pytest.mark.energy_budget(joules=10, rounds=3, warmup=1)
        def test_fixture(energy):
            BODY_RUNS.append(1)
            value = energy(lambda a, b: a + b, 2, b=3)
            assert value == 5
            result = energy.result
            assert result.calls == 3 and result.total_calls == 4
            assert result.joules_per_call == 1.0
            assert result.meter == "step" and result.estimated is False
            assert result.latency_ms["median"] >= 0

        def test_body_ran_once():
            assert len(BODY_RUNS) == 1
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(passed=2)


def test_marker_budget_applies_to_fixture_measurement(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules="0.5 J", rounds=1, warmup=0)
        def test_fixture(energy):
            energy(lambda: None)
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*energy budget exceeded: 1 J per call > 500 mJ budget*"])


def test_measure_block_items_and_several_blocks(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        def test_blocks(energy):
            for batch in (4, 4):
                with energy.measure(items=batch):
                    sum(range(100))
            result = energy.result
            assert result.calls == 2
            assert result.joules_per_call == 1.0
            assert result.joules_per_item == 0.25
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_blocks*1 J*250 mJ*measured"])


def test_fixture_requested_but_unused_on_marked_test_fails(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=1)
        def test_forgot(energy):
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*energy budget could not be checked: nothing was measured*"])


def test_exception_in_measured_body_is_the_failure_once(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        CALLS = []

        @pytest.mark.energy_budget(joules="1 mJ", rounds=10, warmup=1)
        def test_breaks():
            CALLS.append(1)
            if len(CALLS) == 4:
                raise ValueError("model exploded in round 3")
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    raised = [line for line in result.stdout.lines
              if line.startswith("E ") and "model exploded in round 3" in line]
    assert len(raised) == 1
    assert "energy budget exceeded" not in output


def test_json_report(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, latency_ms=1000, items=8, rounds=2, group="g")
        def test_ok():
            pass

        @pytest.mark.energy_budget(joules="1 mJ", rounds=1)
        def test_over():
            pass

        @pytest.mark.energy_budget(joules="bad")
        def test_error():
            pass

        def test_unmeasured():
            pass
        """
    )
    result = meters.runpytest(*STEP, "--energy-json=reports/energy.json")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    data = json.loads((meters.path / "reports" / "energy.json").read_text())
    assert data["version"] == 1
    assert {"meter", "machine", "tests"} <= data.keys()
    tests = {t["nodeid"].split("::")[1]: t for t in data["tests"]}
    assert set(tests) == {"test_ok", "test_over", "test_error"}
    ok = tests["test_ok"]
    assert ok["outcome"] == "passed"
    assert ok["joules_per_call"] == 1.0
    assert ok["joules_per_item"] == 0.125
    assert ok["calls"] == 2 and ok["warmup_calls"] == 1
    assert ok["estimated"] is False and ok["meter"] == "step"
    assert ok["budget"]["joules"] == 10 and ok["budget"]["latency_ms"] == 1000
    assert set(ok["latency_ms"]) >= {"median", "p95"}
    assert ok["rating"] == 5 and ok["group"] == "g"
    assert tests["test_over"]["outcome"] == "failed"
    assert tests["test_over"]["rating"] == 0
    error = tests["test_error"]
    assert error["outcome"] == "error" and error["joules_per_call"] is None
    assert "joules='bad'" in error["problem"]
    # atomic write leaves no temp files behind
    assert [p.name for p in (meters.path / "reports").iterdir()] == ["energy.json"]


def test_json_report_write_failure_is_reported_not_raised(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=1)
        def test_ok():
            pass
        """
    )
    (meters.path / "blocker").write_text("a file where a directory should be")
    result = meters.runpytest(*STEP, "--energy-json=blocker/energy.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*pytest-energy: could not write the JSON report to "
                                 "blocker/energy.json*"])
    assert "INTERNALERROR" not in result.stdout.str()
    assert (meters.path / "blocker").read_text() == "a file where a directory should be"


@pytest.mark.slow  # several pytest runs: run with -m slow
def test_plugin_can_be_disabled(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        CALLS = []

        @pytest.mark.energy_budget(joules="1 uJ")
        def test_once():
            CALLS.append(1)

        def test_count():
            assert len(CALLS) == 1
        """
    )
    result = meters.runpytest_subprocess(
        "-p", "no:energy", "-W", "ignore::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=2)
    assert "energy summary" not in result.stdout.str()


def test_no_summary_option(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=1)
        def test_ok():
            pass
        """
    )
    result = meters.runpytest(*STEP, "--energy-no-summary")
    result.assert_outcomes(passed=1)
    assert "energy summary" not in result.stdout.str()


def test_xfail_strict_over_budget_is_xfailed(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.xfail(strict=True, reason="shows a failing budget")
        @pytest.mark.energy_budget(joules="1 mJ", rounds=1)
        def test_demo():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["*test_demo*over budget (xfail)*"])


def test_junitxml_properties(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=2)
        def test_ok():
            pass
        """
    )
    result = meters.runpytest(*STEP, "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    xml = (meters.path / "junit.xml").read_text()
    assert '<property name="energy_joules_per_call" value="1.0"' in xml
    assert '<property name="energy_meter" value="step"' in xml


def test_frozen_counter_is_never_reported_as_zero(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=2)
        def test_frozen():
            pass
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:FrozenMeter",
                              "--energy-json=e.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*energy budget could not be checked: meter 'frozen' saw no "
                                 "energy*"])
    entry = json.loads((meters.path / "e.json").read_text())["tests"][0]
    assert entry["joules_per_call"] is None and entry["valid"] is False


@pytest.mark.parametrize(
    ("meter", "expected"),
    [
        ("RaisingMeter", "*energy meter failed: meter 'raising' failed to read: OSError: sensor "
                         "went away*"),
        ("NanMeter", "*energy meter failed: meter 'nan' returned nan for domain 'step:0'*"),
        ("BackwardsMeter", "*energy meter failed: meter 'backwards' went backwards on step:0*"),
    ],
)
def test_meter_faults_fail_with_the_cause(meters: pytest.Pytester, meter: str,
                                          expected: str) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=3)
        def test_faulty():
            pass

        def test_other():
            pass
        """
    )
    result = meters.runpytest(f"--energy-meter=energy_test_meters:{meter}")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([expected, "*energy summary*"])
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_such_module:Meter", "*cannot import 'no_such_module': ModuleNotFoundError*"),
        ("energy_test_meters:Nope", "*module 'energy_test_meters' has no attribute 'Nope'*"),
        ("energy_test_meters:NOT_A_METER", "*object is not a Meter (missing name*"),
        ("energy_test_meters:failing_factory", "*calling energy_test_meters:failing_factory() "
                                               "failed: RuntimeError: no device here*"),
        ("nosuchmeter", "*--energy-meter=nosuchmeter: unknown meter; use auto, nvml, rapl, "
                        "estimate*"),
    ],
)
def test_custom_meter_load_errors(meters: pytest.Pytester, spec: str, expected: str) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10)
        def test_measured():
            pass

        def test_other():
            pass
        """
    )
    result = meters.runpytest(f"--energy-meter={spec}")
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines([expected])


def test_estimated_meter_is_labelled(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=1)
        def test_modelled():
            pass
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:EstimatedStepMeter", "-v")
    result.stdout.fnmatch_lines(["*test_modelled*1 J est.*", "est. = estimated, not measured*"])


def test_cuda_test_without_gpu_counter_is_skipped(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, device="cuda")
        def test_gpu():
            pass
        """
    )
    result = meters.runpytest("--energy-meter=estimate", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no GPU energy counter for device 'cuda': "
                                 "--energy-meter=estimate cannot measure GPU energy*"])
    strict = meters.runpytest("--energy-meter=estimate", "--energy-require-hardware")
    strict.assert_outcomes(errors=1)
    strict.stdout.fnmatch_lines(["*(--energy-require-hardware)*"])


def test_auto_meter_without_hardware_falls_back_to_labelled_estimate(
    meters: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PYTEST_ENERGY_POWERCAP_ROOT", str(meters.path / "no-powercap"))
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # no NVML bindings
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=10, rounds=2)
        def test_cpu():
            sum(range(1000))
        """
    )
    result = meters.runpytest("--energy-columns=all")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*test_cpu*est.*estimate cpu:process*ok",
        "meter: estimates only: *powercap*",
    ])
    strict = meters.runpytest("--energy-require-hardware")
    strict.assert_outcomes(errors=1)
    strict.stdout.fnmatch_lines(["*no hardware energy counter*refuses estimates*"])


def test_settings_precedence_marker_cli_env_ini(meters: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    meters.makeini("[pytest]\nenergy_rounds = 3\nenergy_warmup = 0\n")
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=100)
        def test_default():
            pass

        @pytest.mark.energy_budget(joules=100, rounds=2)
        def test_marker():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.stdout.fnmatch_lines(["*test_default*  3  *", "*test_marker*  2  *"])
    monkeypatch.setenv("PYTEST_ENERGY_ROUNDS", "4")
    result = meters.runpytest(*STEP)
    result.stdout.fnmatch_lines(["*test_default*  4  *", "*test_marker*  2  *"])
    result = meters.runpytest(*STEP, "--energy-rounds=5")
    result.stdout.fnmatch_lines(["*test_default*  5  *", "*test_marker*  2  *"])


def test_bad_ini_value_is_a_usage_error_naming_the_source(meters: pytest.Pytester) -> None:
    meters.makeini("[pytest]\nenergy_rounds = many\n")
    meters.makepyfile("def test_x():\n    pass\n")
    result = meters.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-energy: ini option energy_rounds: rounds='many' is "
                                 "not valid: expected a whole number >= 1*"])


def test_bad_env_value_is_a_usage_error_naming_the_source(
    meters: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ENERGY_DEVICE", "gpu")
    meters.makepyfile("def test_x():\n    pass\n")
    result = meters.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*environment variable PYTEST_ENERGY_DEVICE: device='gpu' is "
                                 "not valid*"])


def test_bad_cli_value_is_a_usage_error(meters: pytest.Pytester) -> None:
    meters.makepyfile("def test_x():\n    pass\n")
    result = meters.runpytest("--energy-latency-stat=p99")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --energy-latency-stat: --energy-latency-stat='p99' "
                                 "is not valid: expected one of ('median', 'p95')*"])


def test_unmarked_suite_has_no_energy_output(meters: pytest.Pytester) -> None:
    meters.makepyfile("def test_x():\n    pass\n")
    result = meters.runpytest()
    result.assert_outcomes(passed=1)
    assert "energy summary" not in result.stdout.str()
    assert "J/call" not in result.stdout.str()


def test_p95_latency_stat(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import time
        import pytest

        CALLS = []

        @pytest.mark.energy_budget(latency_ms=20, latency_stat="p95", rounds=20, warmup=0)
        def test_spiky():
            CALLS.append(1)
            # every 10th call is slow: median stays fast, p95 does not
            time.sleep(0.05 if len(CALLS) % 10 == 0 else 0)
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*latency budget exceeded: * p95 per call > 20 ms budget*"])


def test_joules_per_item_budget_and_groups(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("batch", [1, 8])
        @pytest.mark.energy_budget(joules_per_item="200 mJ", items=1, rounds=1, warmup=0)
        def test_variant(batch):
            pass

        @pytest.mark.energy_budget(joules_per_item="0.5 J", items=4, rounds=1, warmup=0,
                                   group="mlp", default=True)
        def test_named():
            pass

        @pytest.mark.energy_budget(joules_per_item="1 J", rounds=1)
        def test_no_items():
            pass
        """
    )
    result = meters.runpytest(*STEP, "--energy-json=e.json")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines([
        "*energy budget exceeded: 1 J per item > 200 mJ budget (+400%), step step:0, 1 trials",
        "*energy-per-item budget could not be checked: no items per call given (items=...)*",
    ])
    tests = {t["nodeid"].split("::")[1]: t for t in
             json.loads((meters.path / "e.json").read_text())["tests"]}
    assert tests["test_variant[1]"]["group"] == "test_variant"
    assert tests["test_variant[1]"]["variant"] == "1"
    assert tests["test_variant[1]"]["group_explicit"] is False
    named = tests["test_named"]
    assert named["group"] == "mlp" and named["group_explicit"] and named["default_variant"]
    assert named["joules_per_item"] == 0.25
    assert named["budget"]["joules_per_item"] == 0.5
    assert named["budget_use"]["joules_per_item"] == 0.5 and named["rating"] == 3


def test_default_must_be_bool(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=1, default="yes")
        def test_bad():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*default='yes' is not valid: expected True or False*"])


def test_counter_jump_is_caught(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=100, rounds=2, warmup=0)
        def test_jumpy():
            pass
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:JumpingMeter")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*energy meter failed: meter 'jumping' jumped on step:0: *"
                                 "counter reset or unit error*"])


def test_hung_meter_times_out_and_is_not_waited_for_again(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=100, rounds=2, warmup=0)
        def test_first():
            pass

        @pytest.mark.energy_budget(joules=100, rounds=2, warmup=0)
        def test_second():
            pass

        def test_unmeasured():
            pass
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:HangingMeter",
                              "--energy-read-timeout=200ms")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines([
        "*meter 'hanging' did not answer read() within 0.2 s (hung counter or driver)*",
        "*energy summary*",
    ])
    assert result.duration < 5


def test_exception_in_warmup_is_the_failure(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules="1 mJ", rounds=3, warmup=2)
        def test_breaks_early():
            raise RuntimeError("cold start failed")
        """
    )
    result = meters.runpytest(*STEP, "--energy-json=e.json")
    result.assert_outcomes(failed=1)
    assert "energy budget" not in result.stdout.str()
    entry = json.loads((meters.path / "e.json").read_text())["tests"][0]
    assert entry["outcome"] == "failed" and entry["joules_per_call"] is None
    assert entry["calls"] == 0


@pytest.mark.slow  # subprocesses (xdist, signals): run with -m slow
def test_keyboard_interrupt_keeps_partial_results(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        CALLS = []

        @pytest.mark.energy_budget(joules=100)
        def test_aaa_done():
            pass

        @pytest.mark.energy_budget(joules=100, rounds=10, warmup=0)
        def test_interrupted():
            CALLS.append(1)
            if len(CALLS) == 5:
                raise KeyboardInterrupt

        def test_never_runs():
            pass
        """
    )
    (meters.path / "e.json").write_text('{"old": "report"}')
    # in a subprocess: an in-process run would interrupt this outer session too
    result = meters.runpytest_subprocess(*STEP, "--energy-json=e.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*energy summary*", "*test_interrupted*interrupted*"])
    data = json.loads((meters.path / "e.json").read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in data["tests"]}
    assert tests["test_aaa_done"]["outcome"] == "passed"
    partial = tests["test_interrupted"]
    assert partial["partial"] is True and partial["outcome"] == "interrupted"
    assert partial["calls"] == 4  # two complete windows of 2 calls; the 5th call raised
    assert partial["joules_per_call"] == 0.5


def test_contaminated_over_budget_warns_by_default(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules="100 mJ", rounds=2)
        def test_shared():
            pass
        """
    )
    spec = "--energy-meter=energy_test_meters:ContaminatedMeter"
    result = meters.runpytest(spec, "--energy-json=e.json", "--energy-columns=all")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([
        "*EnergyVerdictWarning*not failed: energy budget exceeded: 1 J per call*pid 42*",
        "*test_shared*over budget (contaminated)*",
    ])
    entry = json.loads((meters.path / "e.json").read_text())["tests"][0]
    assert entry["contaminated"] is True and entry["outcome"] == "passed"
    strict = meters.runpytest(spec, "--energy-contention=fail")
    strict.assert_outcomes(failed=1)


def test_noisy_trials_make_an_inconclusive_verdict(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules="2 J", rounds=4, warmup=0)
        def test_noisy():
            pass

        @pytest.mark.energy_budget(joules="2 J", rounds=4, warmup=0, max_cv="200%")
        def test_noisy_tolerated():
            pass
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:NoisyMeter")
    # per-call energies 1, 3, 1, 3 J: median 2 J = budget, CV 58% > 10%
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*inconclusive: 2 J per call is within the 2 J budget, but the trials spread 1 J "
        "to 3 J (CV 58% > 10%)*",
        "*test_noisy *inconclusive*",
    ])


def test_dynamic_budget_uses_energy_above_idle(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import time
        import pytest
        import energy_test_meters

        def work():
            energy_test_meters.BUSY_JOULES += 0.5
            time.sleep(0.02)

        @pytest.mark.energy_budget(joules="0.6 J", dynamic=True, rounds=3, warmup=0)
        def test_dynamic():
            work()

        @pytest.mark.energy_budget(joules="0.6 J", rounds=3, warmup=0)
        def test_gross():
            work()
        """
    )
    result = meters.runpytest("--energy-meter=energy_test_meters:IdlePlusBusyMeter",
                              "--energy-json=e.json")
    result.assert_outcomes(passed=1, failed=1)
    tests = {t["nodeid"].split("::")[1]: t for t in
             json.loads((meters.path / "e.json").read_text())["tests"]}
    dyn = tests["test_dynamic"]
    assert dyn["outcome"] == "passed"
    assert dyn["idle_watts"]["dev:0"] == pytest.approx(10.0, rel=0.05)
    assert dyn["dynamic_joules_per_call"] == pytest.approx(0.5, abs=0.02)
    assert tests["test_gross"]["joules_per_call"] == pytest.approx(0.7, abs=0.05)
    result.stdout.fnmatch_lines(["*energy budget exceeded: 7*mJ per call > 600 mJ budget*"])


def test_sync_callable_runs_after_each_call(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        SYNCS = []

        @pytest.mark.energy_budget(joules=100, rounds=4, warmup=1,
                                   sync=lambda: SYNCS.append(1))
        def test_synced():
            pass

        def test_count():
            # once after every call (5), plus before each of 4 windows and the idle baseline
            assert len(SYNCS) >= 5

        @pytest.mark.energy_budget(joules=100, sync="torch.cuda.synchronize")
        def test_bad_sync():
            pass
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*sync='torch.cuda.synchronize' is not valid: expected a "
                                 "callable*"])


def test_fixture_items_attribute(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        def test_items_after(energy):
            energy(lambda: None)
            energy.items = 4
            assert energy.result.joules_per_item == energy.result.joules_per_call / 4

        def test_items_before(energy):
            energy.items = 8
            energy(lambda: None)
            assert energy.result.items_per_call == 8

        def test_items_bad(energy):
            with pytest.raises(ValueError, match="items=0 is not valid"):
                energy.items = 0
        """
    )
    result = meters.runpytest(*STEP)
    result.assert_outcomes(passed=3)


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*energy budgets (pytest-energy)*", "*--energy-max-cv=MAX_CV*",
                                 "*(default 10%*"])
