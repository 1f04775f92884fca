"""The local platform with real processes: what it does beyond the platform contract.

Processes, thread counts, deaths, logs, CPU shares, memory limits, killing on timeout, on cancel
and at shutdown, the reaper that ends the functions of a killed owner, and the ``fasdl smoke`` CLI. The promises every platform keeps (results, failures,
timeouts, records, payloads, validation, concurrency and its queue) are in
test_platform_contract.py, run against this platform too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import psutil
import pytest

from fasdl.platform import State
from fasdl.platform._reaper import parse as parse_reaper_lines
from fasdl.platform.local import LocalPlatform, OversubscriptionWarning
from fasdl.testing.platform_handlers import target

WAIT_S = 60  # a generous deadline for any single invocation on a busy machine
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def plat():
    with LocalPlatform() as p:
        yield p


def _runner_children() -> list[psutil.Process]:
    return _children_running("fasdl.platform._runner")


def _reaper_children() -> list[psutil.Process]:
    return _children_running("_reaper.py")


def _children_running(words: str) -> list[psutil.Process]:
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if words in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_a_function_is_a_process_with_its_thread_count_and_peak_memory(plat):
    inv = plat.invoke("smoke", {}, memory_mb=512, timeout_s=30, sync=True)
    result = inv.result()
    assert result["pid"] != os.getpid()
    assert result["omp_num_threads"] == "1"
    (record,) = plat.records()
    assert 1 < record.peak_memory_mb < 512  # measured, and below its memory size


def test_async_invocations_are_fresh_processes(plat):
    invs = [plat.invoke("smoke", {"echo": i}, memory_mb=1024, timeout_s=30) for i in range(3)]
    results = [inv.result(timeout_s=WAIT_S) for inv in invs]
    assert [r["echo"] for r in results] == [0, 1, 2]
    assert len({r["pid"] for r in results}) == 3
    assert {r.state for r in plat.records()} == {"succeeded"}
    assert sum(r.gb_s for r in plat.records()) == pytest.approx(
        sum(inv.record().gb_s for inv in invs)
    )
    assert _runner_children() == []


def test_thread_count_follows_the_vcpus(plat):
    inv = plat.invoke("smoke", {}, memory_mb=3538, timeout_s=30, sync=True)  # 2 vCPUs
    assert inv.result()["omp_num_threads"] == "2"


@pytest.mark.parametrize(
    ("event", "words"),
    [({"exit_code": 3}, "exited with code 3"), ({"signal": "SIGSEGV"}, "killed by SIGSEGV")],
)
def test_process_that_dies_without_a_result_is_failed(plat, event, words):
    inv = plat.invoke(
        "smoke", {"print": "last words", **event}, memory_mb=256, timeout_s=30, sync=True
    )
    assert inv.state is State.FAILED
    assert words in inv.error
    assert inv.error.endswith("its last output:\nlast words")
    assert inv.traceback is None


def test_log_dir_keeps_each_functions_output(tmp_path):
    with LocalPlatform(log_dir=tmp_path / "logs") as plat:
        inv = plat.invoke(
            "smoke", {"print": "hello from the function"}, memory_mb=256, timeout_s=30, sync=True
        )
        assert inv.state is State.SUCCEEDED
    assert (tmp_path / "logs" / f"{inv.request_id}.log").read_text() == "hello from the function\n"


def test_processes_a_function_leaves_behind_are_killed(plat, tmp_path):
    pid_path = tmp_path / "child.pid"
    inv = plat.invoke(
        "smoke", {"child_allocate_mb": 1, "pid_path": str(pid_path)}, memory_mb=512, timeout_s=30
    )
    assert inv.wait(WAIT_S) is State.SUCCEEDED, inv.error
    assert _dies(int(pid_path.read_text()))


@pytest.mark.parametrize("event", [{"sleep_s": 120}, {"cpu_s": 120}], ids=["sleeping", "cpu-bound"])
def test_timeout_kills_the_function(plat, event):
    # The CPU-bound one at 128 MB spends most of its time stopped: it is killed all the same.
    inv = plat.invoke("smoke", event, memory_mb=128, timeout_s=1)
    assert inv.wait(WAIT_S) is State.TIMED_OUT
    assert "timeout 1 s" in inv.error
    assert _runner_children() == []  # killed, not left running


def test_memory_over_the_size_is_out_of_memory(plat):
    inv = plat.invoke("smoke", {"allocate_mb": 300, "sleep_s": 30}, memory_mb=128, timeout_s=60)
    assert inv.wait(WAIT_S) is State.OUT_OF_MEMORY
    assert inv.peak_memory_mb > 128
    assert "128 MB" in inv.error
    assert inv.record().state == "out_of_memory"
    # Also when it grows past its size and returns before a poll sees it.
    inv = plat.invoke("smoke", {"allocate_mb": 300}, memory_mb=128, timeout_s=60, sync=True)
    assert inv.state is State.OUT_OF_MEMORY


def test_memory_of_the_process_tree_counts_and_leftovers_die(plat, tmp_path):
    pid_path = tmp_path / "child.pid"
    event = {"child_allocate_mb": 300, "pid_path": str(pid_path), "sleep_s": 60}
    inv = plat.invoke("smoke", event, memory_mb=256, timeout_s=120)
    assert inv.wait(WAIT_S) is State.OUT_OF_MEMORY, inv.error
    assert inv.peak_memory_mb > 256
    assert _dies(int(pid_path.read_text()))  # the child it started was killed with it


def test_a_fork_counts_only_the_pages_it_writes(plat):
    """A fork shares its parent's pages until it writes them (a cgroup charges them once): a
    function holding 150 MB whose fork writes 60 MB of its own stays within 300 MB, where adding
    the fork's resident size (150 MB + 60 MB more) would not. The fork holds its pages for 4 s,
    long enough for the platform (which looks for new processes every second) to count them."""
    event = {"allocate_mb": 150, "fork_hold_s": 4, "fork_write_mb": 60}
    inv = plat.invoke("smoke", event, memory_mb=300, timeout_s=120, sync=True)
    assert inv.state is State.SUCCEEDED, inv.error
    assert inv.peak_memory_mb > 150 + 60  # the fork's own pages were counted with the function's


def _dies(pid: int, within_s: float = 10) -> bool:
    """Whether ``pid`` is gone (or a zombie: dead, waiting for its new parent) within the time."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)  # a SIGKILLed process still frees its memory before it is gone
    return False


def test_cpu_is_throttled_to_the_memory_share(plat):
    # 442 MB = 0.25 vCPU. Load on the machine can only lower the rate, never raise it.
    inv = plat.invoke("smoke", {"cpu_s": 0.5}, memory_mb=442, timeout_s=60, sync=True)
    result = inv.result()
    rate = result["cpu_s"] / result["wall_s"]
    assert rate < 0.35, f"a 0.25-vCPU function used {rate:.2f} CPUs"


def test_oversubscription_warns_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LocalPlatform(cpu_count=1) as plat:
            for _ in range(2):  # 2 vCPUs each, on "1 core"
                assert (
                    plat.invoke("smoke", {}, memory_mb=3538, timeout_s=30, sync=True).state
                    is State.SUCCEEDED
                )
        with LocalPlatform(cpu_count=4) as plat:
            assert (
                plat.invoke("smoke", {}, memory_mb=3538, timeout_s=30, sync=True).state
                is State.SUCCEEDED
            )
        with LocalPlatform(cpu_count=1, warn_oversubscription=False) as plat:
            assert (
                plat.invoke("smoke", {}, memory_mb=3538, timeout_s=30, sync=True).state
                is State.SUCCEEDED
            )
    ours = [w for w in caught if issubclass(w.category, OversubscriptionWarning)]
    assert len(ours) == 1
    assert "2.00 vCPUs" in str(ours[0].message) and "has 1" in str(ours[0].message)


def test_shutdown_kills_running_and_fails_pending():
    plat = LocalPlatform(concurrency=1)
    running = plat.invoke("smoke", {"sleep_s": 120}, memory_mb=256, timeout_s=300)
    pending = plat.invoke("smoke", {}, memory_mb=256, timeout_s=300)
    plat.shutdown()
    assert running.wait(WAIT_S) is State.FAILED and "shut down" in running.error
    assert pending.wait(WAIT_S) is State.FAILED and "before the invocation started" in pending.error
    assert _runner_children() == []
    assert _reaper_children() == []  # the reaper ends with the platform
    with pytest.raises(Exception, match="shut down"):
        plat.invoke("smoke", {}, memory_mb=256, timeout_s=30)


# ---- cancel -------------------------------------------------------------------------------------


def test_cancel_kills_a_throttled_function_and_its_children(plat, tmp_path):
    # At 128 MB a CPU-bound function is stopped most of the time: cancel kills it all the same,
    # with the process it started, and bills the time it ran.
    pid_path = tmp_path / "pids.json"
    event = {"pid_path": str(pid_path), "release_path": str(tmp_path / "never"), "children": 1}
    inv = plat.invoke(target("spin"), event, memory_mb=128, timeout_s=300)
    _wait_until(pid_path.exists, "the function to start")
    pids = json.loads(pid_path.read_text())
    _wait_until(lambda: _is_stopped(pids["pid"]), "the throttle to stop the function")
    plat.cancel(inv, "its round failed")
    assert inv.done() and inv.state is State.CANCELLED
    assert inv.error == "its round failed"
    assert all(_dies(pid) for pid in [pids["pid"], *pids["children"]])
    record = inv.record()
    assert record.state == "cancelled" and record.error == "its round failed"
    assert record.billed_ms >= 1 and record.started_at is not None
    assert _runner_children() == []
    # The platform goes on.
    assert plat.invoke("smoke", {}, memory_mb=256, timeout_s=30, sync=True).state is State.SUCCEEDED


# ---- a killed owner -----------------------------------------------------------------------------

# Opens a local platform, starts N CPU-bound functions at 128 MB (so the throttle keeps stopping
# them), each with a sleeping child, and prints every process it started once the functions say
# they run. With "fork" it first forks a child that sleeps on (as multiprocessing's "fork" does):
# the child must not keep the owner's death from the reaper.
OWNER = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import psutil
    from fasdl.platform.local import LocalPlatform
    from fasdl.testing.platform_handlers import target

    tmp, n, fork = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "fork"
    plat = LocalPlatform()
    paths = [os.path.join(tmp, f"pids-{i}.json") for i in range(n)]
    for path in paths:
        event = {"pid_path": path, "release_path": os.path.join(tmp, "never"), "children": 1}
        plat.invoke(target("spin"), event, memory_mb=128, timeout_s=600)
    forked = None
    if fork:
        forked = os.fork()
        if forked == 0:
            while True:
                time.sleep(60)
    deadline = time.monotonic() + 120
    while not all(os.path.exists(p) for p in paths):
        if time.monotonic() > deadline or any(inv.done() for inv in plat.invocations):
            sys.exit(f"the functions did not start: {[i.error for i in plat.invocations]}")
        time.sleep(0.01)
    functions = [json.load(open(p)) for p in paths]
    others = [p.pid for p in psutil.Process().children(recursive=True) if p.pid != forked]
    print(json.dumps({"functions": functions, "processes": others, "forked": forked}), flush=True)
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("fork", [False, True], ids=["alone", "with-a-forked-child"])
def test_a_killed_owners_functions_end_within_seconds_even_when_stopped(tmp_path, fork):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path), "3", "fork" if fork else "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    forked = None
    processes: set[int] = set()
    try:
        line = owner.stdout.readline()
        assert line, f"the owner printed nothing: {owner.communicate()[1]}"
        started = json.loads(line)
        forked = started["forked"]
        leaders = [f["pid"] for f in started["functions"]]
        processes = set(started["processes"])  # the functions, their children, the reaper
        assert {*leaders, *(c for f in started["functions"] for c in f["children"])} < processes
        # Freeze the owner at a moment when the throttle has a function stopped: no one will
        # resume that one, as after a SIGKILL at that moment.
        _freeze_with_one_stopped(owner.pid, leaders)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        gone_in = _seconds_until_all_gone(processes, within_s=30)
        assert gone_in is not None, f"still there 30 s after the owner died: {_alive(processes)}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pid in _alive([*processes, *([forked] if forked else [])]):
            os.kill(pid, signal.SIGKILL)


def _freeze_with_one_stopped(owner: int, pids: list[int]) -> list[int]:
    """SIGSTOP ``owner`` at a moment when one of ``pids`` is stopped; returns the stopped ones."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        os.kill(owner, signal.SIGSTOP)
        _wait_until(lambda: _all_threads_stopped(owner), "the owner to stop")
        stopped = [pid for pid in pids if _is_stopped(pid)]
        if stopped:
            return stopped
        os.kill(owner, signal.SIGCONT)
        time.sleep(0.01)  # let the throttle run
    raise AssertionError(f"no function was ever seen stopped within {WAIT_S} s")


def _is_stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` has stopped (the signal reaches them one by one)."""
    task_dir = Path(f"/proc/{pid}/task")
    if not task_dir.is_dir():  # no /proc (macOS): the process's state is all there is
        return _is_stopped(pid)
    states = []
    for stat in task_dir.glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue  # a thread that just ended
    return bool(states) and all(state in ("T", "t") for state in states)


def _alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _seconds_until_all_gone(pids, within_s: float) -> float | None:
    start = time.monotonic()
    while _alive(pids):
        if time.monotonic() - start > within_s:
            return None
        time.sleep(0.05)
    return time.monotonic() - start


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_S} s waiting for {what}")
        time.sleep(0.01)


def test_the_reaper_keeps_the_groups_it_is_told_about():
    groups: set[int] = set()
    parse_reaper_lines([b"+100", b"+200", b"-100", b"+0", b"+1", b"junk", b"", b"+-5"], groups)
    assert groups == {200}


def _fasdl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fasdl.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_cli_smoke_help():
    out = _fasdl("smoke", "--help")
    assert out.returncode == 0
    for option in ("--platform", "--memory", "--timeout", "--workers", "--json"):
        assert option in out.stdout


def test_cli_smoke_bad_memory_exits_2():
    out = _fasdl("smoke", "--memory", "100")
    assert out.returncode == 2
    assert "100 MB is outside" in out.stderr


@pytest.mark.slow
def test_cli_smoke_local_two_workers():
    out = _fasdl("smoke", "--platform", "local", "--workers", "2")
    assert out.returncode == 0, out.stderr
    assert "2/2 succeeded on the local platform" in out.stdout
    assert out.stdout.count("succeeded ") >= 2


def test_cli_smoke_json():
    out = _fasdl("smoke", "--job", "echo", "--workers", "3", "--memory", "256", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["succeeded"] == 3
    assert [r["state"] for r in report["records"]] == ["succeeded"] * 3
    assert report["total_gb_s"] == pytest.approx(sum(r["gb_s"] for r in report["records"]))
