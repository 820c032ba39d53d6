"""The cross-process device lock (pytest_energy.meters.locks): what is locked, where the
files live and who may touch them, bounded waits, nesting, a removed lock dir, and the
GPU contamination check that must not be fooled by files (issue 14, items 1-7)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes.energy_test_meters import StepMeter
from fakes.fake_pynvml import (
    FakeProcess,
    clean_cuda_environment,  # noqa: F401 (autouse fixture)
    hopper,
    install,
)

from pytest_energy.measure import Measurer
from pytest_energy.meters import locks, peers
from pytest_energy.meters.estimate import EstimateMeter
from pytest_energy.meters.locks import (
    CPU_PACKAGES,
    LOCK_DIR_ENV,
    DeviceLockError,
    DeviceLockTimeout,
    NestedMeasurementError,
    exclusive,
    lock_dir,
    lock_keys,
)
from pytest_energy.meters.nvml import NvmlMeter

HOLD = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY)  # read-only is enough to hold a flock
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


@pytest.fixture
def real_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the real /proc (the suite points busy detection, and these reads, at none)."""
    if not Path("/proc/locks").exists():
        pytest.skip("needs Linux /proc/locks")
    monkeypatch.delenv("PYTEST_ENERGY_PROC_ROOT", raising=False)


@pytest.fixture
def user_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PYTEST_ENERGY_LOCK_DIR, and a temp dir of the test's own: the default path."""
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@contextlib.contextmanager
def held_in_thread(keys: list[str]) -> Iterator[None]:
    """Hold ``keys`` from another thread of this process (a flock of its own) until the
    block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive(keys, timeout_s=5):
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


@contextlib.contextmanager
def held_until_waited(key: str, extra_s: float) -> Iterator[None]:
    """Hold ``key`` from another thread until someone waits for it (the kernel's lock
    table shows a waiter), then ``extra_s`` longer: a wait of at least ``extra_s``."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive([key], timeout_s=5):
            taken.set()
            files = set(locks._held.values())
            deadline = time.monotonic() + 10
            while not peers.waiters(files) and time.monotonic() < deadline:
                if release.wait(0.005):
                    return
            time.sleep(extra_s)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def in_thread(fn: Callable[[], object], timeout_s: float = 5.0) -> object:
    """``fn()`` in a thread, failing (not hanging) when it does not finish in time."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert out, f"did not finish within {timeout_s} s (waiting for a lock?)"
    return out[0]


def holder_process(path: Path, seconds: float) -> subprocess.Popen[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


# ----- 1. scope: only machine-wide devices are locked -------------------------------------------


def test_per_process_meter_takes_no_machine_wide_lock() -> None:
    assert lock_keys(EstimateMeter(), "cpu") == []
    assert lock_keys(StepMeter(), "cpu") == [CPU_PACKAGES]  # undeclared: conservative
    assert lock_keys(StepMeter(), "cuda:0") == ["step-cuda:0"]
    # another run holds the CPU packages: the estimate meter measures without waiting
    measurer = Measurer(EstimateMeter(), device="cpu", settle_max_s=0.0)
    with held_in_thread([CPU_PACKAGES]):
        _, result = in_thread(lambda: measurer.run(  # type: ignore[misc]
            lambda: None, warmup=0, rounds=3, trials=1, max_time_s=None))
    assert result.lock_wait_s == 0.0 and result.calls == 3


def test_a_long_wait_is_recorded_with_its_holder(monkeypatch: pytest.MonkeyPatch,
                                                 real_proc: None) -> None:
    monkeypatch.setattr(locks, "LONG_WAIT_S", 0.05)
    measurer = Measurer(StepMeter(), device="cpu", settle_max_s=0.0)
    with held_until_waited(CPU_PACKAGES, 0.1):
        _, result = measurer.run(lambda: None, warmup=0, rounds=2, trials=1, max_time_s=None)
    assert result.lock_wait_s >= 0.09
    (note,) = [w for w in result.warnings if w.startswith(locks.LOCK_WAIT_PREFIX)]
    assert f"{CPU_PACKAGES} held by pid {os.getpid()}" in note
    # a short, uncontended part does not add a second note
    measurer.run(lambda: None, warmup=0, rounds=2, trials=1, max_time_s=None, result=result)
    assert sum(w.startswith(locks.LOCK_WAIT_PREFIX) for w in result.warnings) == 1


def test_a_long_wait_reaches_the_entry(meters: pytest.Pytester,
                                      monkeypatch: pytest.MonkeyPatch, real_proc: None) -> None:
    """The wait and its holder travel to the JSON report's entry (Entry.lock_wait_s,
    Entry.warnings), where the summary and the details read them."""
    monkeypatch.setattr(locks, "LONG_WAIT_S", 0.05)
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(rounds=2, trials=1)
        def test_waits():
            pass
        """
    )
    with held_until_waited(CPU_PACKAGES, 0.1):
        result = meters.runpytest_inprocess("--energy-meter=energy_test_meters:StepMeter",
                                            "--energy-json=e.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (entry,) = json.loads((meters.path / "e.json").read_text())["tests"]
    assert entry["lock_wait_s"] >= 0.09
    assert any(w.startswith(f"{locks.LOCK_WAIT_PREFIX} ") and f"pid {os.getpid()}" in w
               for w in entry["warnings"])


def test_short_waits_leave_no_warning() -> None:
    measurer = Measurer(StepMeter(), device="cpu", settle_max_s=0.0)
    _, result = measurer.run(lambda: None, warmup=0, rounds=2, trials=1, max_time_s=None)
    assert not [w for w in result.warnings if w.startswith(locks.LOCK_WAIT_PREFIX)]


# ----- 2. other users, 3. symlinks and foreign owners -------------------------------------------


def test_default_lock_dir_is_per_user_and_private(user_tmp: Path) -> None:
    os.umask(old := os.umask(0))  # the loosest umask: the dir must still be 0700
    try:
        with exclusive(["gpu-GPU-x"], timeout_s=1):
            pass
    finally:
        os.umask(old)
    directory = lock_dir()
    assert directory == user_tmp / f"pytest-energy-{os.geteuid()}"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    lock = directory / "gpu-GPU-x.lock"
    assert lock.read_bytes() == b"" and not stat.S_IMODE(lock.stat().st_mode) & 0o222


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0,
                    reason="needs root to become a second user")
def test_a_second_user_measures_after_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root has locked a device; then user 'nobody' locks the same device in the same
    temp dir: no PermissionError (the first user's files are not in its way)."""
    shared = Path(tempfile.mkdtemp(prefix="pytest-energy-test-",  # nobody can enter /tmp
                                   dir="/tmp" if Path("/tmp").is_dir() else None))
    shared.chmod(0o1777)  # as /tmp
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    try:
        with exclusive(["gpu-GPU-x"], timeout_s=1):
            pass
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            message = "locked"
            try:
                os.setgid(65534)
                os.setuid(65534)
                with exclusive(["gpu-GPU-x"], timeout_s=1):
                    pass
            except BaseException as exc:
                message = f"{type(exc).__name__}: {exc}"
            os.write(write, message.encode())
            os._exit(0)
        os.close(write)
        deadline = time.monotonic() + 10
        while os.waitpid(child, os.WNOHANG) == (0, 0):  # a hung child fails, not hangs
            if time.monotonic() > deadline:
                os.kill(child, 9)
                os.waitpid(child, 0)
                pytest.fail("the second user's process hung")
            time.sleep(0.01)
        with os.fdopen(read) as answer:
            assert answer.read() == "locked"
        assert (shared / "pytest-energy-65534").stat().st_uid == 65534
    finally:
        shutil.rmtree(shared)


def test_a_planted_symlink_lock_file_is_refused_and_its_target_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "locks"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv(LOCK_DIR_ENV, str(directory))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (directory / "gpu-GPU-a.lock").symlink_to(victim)
    (directory / "gpu-GPU-b.lock").symlink_to(tmp_path / "created-by-attacker")
    for key in ("gpu-GPU-a", "gpu-GPU-b"):
        with pytest.raises(DeviceLockError, match="is a symbolic link"), exclusive([key]):
            pass
    assert victim.read_text() == "precious"
    assert not (tmp_path / "created-by-attacker").exists()


def test_a_planted_symlink_lock_dir_is_refused(user_tmp: Path) -> None:
    elsewhere = user_tmp / "attacker"
    elsewhere.mkdir()
    (user_tmp / f"pytest-energy-{os.geteuid()}").symlink_to(elsewhere)
    with pytest.raises(DeviceLockError, match="symbolic link or not a directory"), \
            exclusive(["gpu-GPU-x"]):
        pass
    assert list(elsewhere.iterdir()) == []


def test_a_lock_dir_owned_by_another_user_is_refused(user_tmp: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mine = os.geteuid()
    (user_tmp / "pytest-energy-4242").mkdir(mode=0o777)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # the dir is someone else's now
    with pytest.raises(DeviceLockError, match=f"owned by uid {mine}, not by you"), \
            exclusive(["gpu-GPU-x"]):
        pass


def test_a_named_dir_must_not_be_writable_by_others_unless_sticky(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    monkeypatch.setenv(LOCK_DIR_ENV, str(directory))
    with pytest.raises(DeviceLockError, match="not sticky"), exclusive(["k"]):
        pass
    directory.chmod(0o1777)  # as /tmp: others cannot replace our files
    with exclusive(["k"], timeout_s=1):
        pass
    assert stat.S_IMODE((directory / "k.lock").stat().st_mode) == 0o444  # others may lock


def test_a_loose_own_state_dir_is_made_private(user_tmp: Path) -> None:
    directory = user_tmp / f"pytest-energy-{os.geteuid()}"
    directory.mkdir()
    directory.chmod(0o755)
    with exclusive(["k"], timeout_s=1):
        pass
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_fifo_in_place_of_a_lock_file_is_refused_without_hanging(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    os.mkfifo(tmp_path / "k.lock")

    def attempt() -> str:
        with pytest.raises(DeviceLockError) as caught, exclusive(["k"], timeout_s=1):
            pass
        return str(caught.value)

    assert "is not a regular file" in str(in_thread(attempt))


# ----- 4. bounded waits ------------------------------------------------------------------------


def test_a_held_lock_times_out_naming_the_file_and_the_holder(real_proc: None) -> None:
    path = lock_dir() / "gpu-GPU-stuck.lock"
    holder = holder_process(path, 30)
    try:
        start = time.monotonic()
        with pytest.raises(DeviceLockTimeout) as caught, exclusive(["gpu-GPU-stuck"],
                                                                   timeout_s=0.2):
            pass
        assert 0.15 < time.monotonic() - start < 2
        message = str(caught.value)
        assert str(path) in message and f"pid {holder.pid}" in message
        assert "--energy-lock-timeout" in message
        # the same holder still holds it: the next test fails at once, not after 0.2 s
        start = time.monotonic()
        with pytest.raises(DeviceLockTimeout), exclusive(["gpu-GPU-stuck"], timeout_s=0.2):
            pass
        assert time.monotonic() - start < 0.15
    finally:
        holder.kill()
        holder.wait()
    with exclusive(["gpu-GPU-stuck"], timeout_s=2) as info:  # freed by the kernel
        assert info.waited_s < 2


def test_lock_timeout_option_reaches_the_measurement(meters: pytest.Pytester) -> None:
    meters.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(rounds=2, trials=1)
        def test_measured():
            pass
        """
    )
    with held_in_thread([CPU_PACKAGES]):
        result = meters.runpytest_inprocess(
            "--energy-meter=energy_test_meters:StepMeter", "--energy-lock-timeout=0.1s",
            "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gave up waiting for the device lock *cpu-packages.lock*"
                                 "longer than the 0.1 s limit*"])


def test_lock_timeout_option_is_validated(meters: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    result = meters.runpytest_inprocess("--energy-lock-timeout=-3s")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--energy-lock-timeout='-3s' is not valid: it must be > 0*"])
    monkeypatch.setenv("PYTEST_ENERGY_LOCK_TIMEOUT", "soon")
    result = meters.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*environment variable PYTEST_ENERGY_LOCK_TIMEOUT*soon*"])


# ----- 5. nested measurement -------------------------------------------------------------------


@pytest.mark.parametrize("meter", ["energy_test_meters:StepMeter", "estimate"])
def test_nested_measurement_is_a_clear_error_not_a_hang(meters: pytest.Pytester,
                                                        meter: str) -> None:
    meters.makepyfile(
        """
        def test_block_in_block(energy):
            with energy.measure():
                with energy.measure():
                    pass

        def test_call_in_block(energy):
            with energy.measure():
                energy(lambda: None)

        def test_call_in_call(energy):
            energy(lambda: energy(lambda: None))

        def test_one_after_another(energy):
            with energy.measure():
                pass
            energy(lambda: None)
            with energy.measure():
                pass
        """
    )
    result = meters.runpytest_inprocess(f"--energy-meter={meter}", "--energy-rounds=2",
                                        "--energy-lock-timeout=3s", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=3, passed=1)
    for name in ("test_block_in_block", "test_call_in_block", "test_call_in_call"):
        result.stdout.fnmatch_lines([
            f"*nested measurement in test_nested_measurement_is_a_clear_error_not_a_hang.py"
            f"::{name}: energy(fn) or energy.measure() was started inside another*"])
    result.stdout.fnmatch_lines(["*Measure the parts one after another*"])


def test_nesting_is_per_thread() -> None:
    def measure_once() -> bool:
        with exclusive([]):
            return True

    with exclusive([]):
        with pytest.raises(NestedMeasurementError), exclusive([]):
            pass
        assert in_thread(measure_once)  # another thread: not nested
    assert measure_once()  # the outer one ended: free again


# ----- 6. the lock dir or file removed while the session runs ----------------------------------


def test_a_removed_lock_dir_is_recreated(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "a" / "locks"
    monkeypatch.setenv(LOCK_DIR_ENV, str(directory))
    with exclusive(["k"], timeout_s=1):
        pass
    shutil.rmtree(tmp_path / "a")
    with exclusive(["k"], timeout_s=1):
        assert (directory / "k.lock").exists()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_lock_file_replaced_while_waiting_is_locked_anew(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    taken, release = threading.Event(), threading.Event()

    def hold_then_delete() -> None:
        with exclusive(["k"], timeout_s=5):
            taken.set()
            release.wait(5)
            (tmp_path / "k.lock").unlink()  # e.g. a temp cleaner, while we are waiting

    thread = threading.Thread(target=hold_then_delete, daemon=True)
    thread.start()
    assert taken.wait(5)
    threading.Timer(0.1, release.set).start()
    with exclusive(["k"], timeout_s=5):
        current = (tmp_path / "k.lock").stat()
        assert locks._held["k"][2] == current.st_ino  # the file now at that name
    thread.join(5)


def test_measured_tests_go_on_after_the_lock_dir_is_removed(meters: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(meters.path / "locks"))
    meters.makepyfile(
        """
        import os, shutil
        import pytest

        @pytest.mark.energy_budget(rounds=2, trials=1)
        def test_a_removes_the_lock_dir():
            shutil.rmtree(os.environ["PYTEST_ENERGY_LOCK_DIR"], ignore_errors=True)

        @pytest.mark.energy_budget(rounds=2, trials=1)
        def test_b_measured_after():
            pass
        """
    )
    result = meters.runpytest_inprocess("--energy-meter=energy_test_meters:StepMeter",
                                        "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


# ----- 7. contamination: the session's workers come from the kernel, not from files -----------


def test_a_pid_file_in_the_lock_dir_no_longer_hides_a_gpu_process(
        monkeypatch: pytest.MonkeyPatch, real_proc: None) -> None:
    foreign = 1  # init: alive, and never this session's process
    if os.getpid() == foreign:
        pytest.skip("this process is pid 1")
    pids = lock_dir() / "pids"  # the old, world-writable peer registry
    pids.mkdir(parents=True, exist_ok=True)
    for pid in (foreign, 999_999):
        (pids / str(pid)).touch()
    install(monkeypatch, [hopper(0, compute_processes=[FakeProcess(foreign)])])
    meter = NvmlMeter()
    try:
        with exclusive(meter.lock_keys(), timeout_s=2):
            assert meter.conditions() == [
                f"contaminated: 1 other compute process on gpu:0 (pid {foreign})"]
    finally:
        meter.close()


def test_only_session_workers_waiting_for_the_lock_are_excused(
        monkeypatch: pytest.MonkeyPatch, real_proc: None) -> None:
    """A sibling blocked on our device lock is idle on the GPU; one running something
    else (an unmeasured GPU test) is not, though it belongs to the session too."""
    install(monkeypatch, [hopper(0)])
    meter = NvmlMeter()
    (key,) = meter.lock_keys()
    wait = (f"import sys; sys.path[:0] = {sys.path!r}\n"
            "from pytest_energy.meters.locks import exclusive\n"
            f"with exclusive([{key!r}], timeout_s=30): pass")
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with exclusive([key], timeout_s=2):
            waiting = subprocess.Popen([sys.executable, "-c", wait])
            deadline = time.monotonic() + 10
            while not locks.idle_session_peers([waiting.pid]):
                assert time.monotonic() < deadline and waiting.poll() is None
                time.sleep(0.02)
            install(monkeypatch, [hopper(0, compute_processes=[
                FakeProcess(os.getpid()), FakeProcess(waiting.pid), FakeProcess(busy.pid)])])
            meter.close()
            meter = NvmlMeter()
            assert meter.conditions() == [
                f"contaminated: 1 other compute process on gpu:0 (pid {busy.pid})"]
        assert waiting.wait(10) == 0  # it got the lock once we let go
    finally:
        busy.kill()
        busy.wait()
        meter.close()


# ----- the kernel's answers, from a fake /proc -------------------------------------------------


def test_lock_table_parsing(tmp_path: Path) -> None:
    (tmp_path / "locks").write_text(
        "1: FLOCK  ADVISORY  WRITE 2411 fe:00:2146913 0 EOF\n"
        "1: -> FLOCK  ADVISORY  WRITE 2412 fe:00:2146913 0 EOF\n"
        "2: POSIX  ADVISORY  READ 4895 fe:00:16040486 128 128\n"
        "3: FLOCK  ADVISORY  WRITE x fe:00:1 0 EOF\n"
        "garbage\n"
        "4: -> FLOCK  ADVISORY  WRITE 2413 08:01:77 0 EOF\n")
    assert peers.file_locks(tmp_path) == [
        peers.FileLock(2411, (0xFE, 0, 2146913), False),
        peers.FileLock(2412, (0xFE, 0, 2146913), True),
        peers.FileLock(2413, (8, 1, 77), True)]
    assert peers.holders((0xFE, 0, 2146913), tmp_path) == [2411]
    assert peers.waiters({(0xFE, 0, 2146913)}, tmp_path) == {2412}
    # a file system that shows another device number: matched by inode
    assert peers.waiters({(0, 42, 77)}, tmp_path) == {2413}
    assert peers.file_locks(tmp_path / "absent") == []


def test_process_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for pid, parent in {10: 1, 11: 10, 12: 11, 20: 1, 30: 31, 31: 30}.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(
            f"{pid} (python (x) y) S {parent} {pid} {pid} 0 -1\n")
    assert peers.parent_pid(12, tmp_path) == 11
    assert peers.descends_from(12, 10, tmp_path) and peers.descends_from(10, 10, tmp_path)
    assert not peers.descends_from(20, 10, tmp_path)
    assert not peers.descends_from(30, 10, tmp_path)  # a cycle ends
    assert not peers.descends_from(99, 10, tmp_path)  # gone: not ours
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert peers.session_root() == os.getppid()  # a worker's session: the controller's
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert peers.session_root() == os.getpid()
