"""The local platform with real processes: what it does beyond the platform contract.

Processes, thread counts, deaths, logs, CPU shares, memory limits, killing on timeout and at
shutdown, and the ``fasdl smoke`` CLI. The promises every platform keeps (results, failures,
timeouts, records, payloads, validation, concurrency and its queue) are in
test_platform_contract.py, run against this platform too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import psutil
import pytest

from fasdl.platform import State
from fasdl.platform.local import LocalPlatform, OversubscriptionWarning

WAIT_S = 60  # a generous deadline for any single invocation on a busy machine
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def plat():
    with LocalPlatform() as p:
        yield p


def _runner_children() -> list[psutil.Process]:
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "fasdl.platform._runner" in " ".join(p.cmdline()):
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
    with pytest.raises(Exception, match="shut down"):
        plat.invoke("smoke", {}, memory_mb=256, timeout_s=30)


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
