"""The platform contract, run once against every platform: what ``fasdl.platform.base`` promises.

A handler's result comes back; its exception becomes a failed invocation with the error's text; a
timeout is enforced and recorded; payloads are JSON within Lambda's limits; memory and timeout are
checked before anything runs; every invocation leaves a billing record; up to the concurrency
limit the functions run at the same time, past it they wait in a FIFO queue; a handler's context
counts down its remaining time; a cancelled invocation is finished at once, billed for the time it
ran, and the platform goes on. What one platform does beyond this (processes, CPU shares, memory
limits: tests/integration/test_local_platform.py) is tested with that platform.

A new platform is added to ``CONTRACT_PLATFORMS`` (``test_every_platform_is_under_contract``
fails until it is). The handlers are in ``fasdl.testing.platform_handlers``, importable wherever
fasdl is installed. No test depends on the machine's speed: deadlines are generous and only
bound how long a broken platform takes to fail; the timeout test uses a handler that never ends.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fasdl.errors import FasdlError, InvalidInput, PayloadTooLarge, WaitTimeout
from fasdl.platform import InvocationFailed, Platform, State, open_platform
from fasdl.platform.base import PLATFORMS
from fasdl.testing.platform_handlers import target

CONTRACT_PLATFORMS: list[Any] = [  # names, or pytest.param(name, marks=...)
    "local",
    "inline",
    pytest.param(
        "lithops",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("lithops") is None, reason="pip install 'fasdl[lithops]'"
        ),
    ),
]
# How each platform is opened here: Lithops on its localhost backend (no cloud, no config file).
PLATFORM_OPTIONS: dict[str, dict[str, Any]] = {"lithops": {"backend": "localhost"}}
WAIT_S = (
    120  # a generous deadline for any invocation on a busy machine: only a broken platform hits it
)
MEMORY_MB = 1024
pytestmark = pytest.mark.timeout(300)

ECHO = target("echo")
FAIL = target("fail")
BLOCK = target("block")


@pytest.fixture(params=CONTRACT_PLATFORMS)
def platform_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def release_path(tmp_path: Path) -> Iterator[str]:
    """The file that ends ``block`` handlers; created at clean-up, so they block for the test."""
    path = tmp_path / "release"
    yield str(path)
    path.touch()


@pytest.fixture
def open_plat(platform_name: str, release_path: str) -> Iterator[Callable[..., Platform]]:
    """Opens the platform under test with the given options; shut down at clean-up."""
    opened: list[Platform] = []

    def make(**kwargs: Any) -> Platform:
        plat = open_platform(platform_name, **PLATFORM_OPTIONS.get(platform_name, {}), **kwargs)
        opened.append(plat)
        return plat

    yield make
    for plat in opened:
        plat.shutdown()


@pytest.fixture
def platform(open_plat: Callable[..., Platform]) -> Platform:
    return open_plat()


@pytest.fixture
def barrier_store_url(tmp_path: Path) -> str:
    """A store every function of the platform under test can reach: here, this machine's disk.
    (A platform whose functions run elsewhere gets an s3:// URL, e.g. conftest's ``s3_url``.)"""
    return (tmp_path / "barrier").as_uri()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_S} s waiting for {what}")
        time.sleep(0.01)


def test_every_platform_is_under_contract() -> None:
    # An entry may be a pytest.param (with marks, e.g. for a platform that needs a service).
    names = [p if isinstance(p, str) else p.values[0] for p in CONTRACT_PLATFORMS]
    assert sorted(PLATFORMS) == sorted(names)


# ---- results ------------------------------------------------------------------------------------


def test_a_registered_handlers_result_comes_back(platform: Platform) -> None:
    inv = platform.invoke("smoke", {"echo": {"a": [1, 2]}, "n": 4}, memory_mb=512, timeout_s=30)
    result = inv.result(timeout_s=WAIT_S)
    assert inv.state is State.SUCCEEDED and inv.error is None
    assert result["echo"] == {"a": [1, 2]}
    assert result["sum_squares"] == 0 + 1 + 4 + 9


def test_sync_invoke_returns_the_finished_invocation(platform: Platform) -> None:
    payload = {"nested": {"list": [1, 2.5, None, True, "é"], "empty": {}}, "n": -3}
    inv = platform.invoke(ECHO, payload, memory_mb=MEMORY_MB, timeout_s=30, sync=True)
    assert inv.done() and inv.state is State.SUCCEEDED, inv.error
    result = inv.result()
    assert result["event"] == payload  # the event arrives as sent, through JSON
    assert inv.result_value == result


def test_the_context_describes_the_invocation(platform: Platform) -> None:
    inv = platform.invoke(ECHO, {}, memory_mb=3538, timeout_s=30, sync=True)
    result = inv.result()
    assert result["function_name"] == ECHO
    assert result["memory_mb"] == 3538
    assert result["request_id"] == inv.request_id
    assert result["vcpus"] == pytest.approx(2.0)
    assert 0 < result["remaining_ms"] <= 30_000


def test_remaining_time_counts_down(platform: Platform) -> None:
    inv = platform.invoke(
        target("remaining_time"), {"sleep_s": 0.2}, memory_mb=MEMORY_MB, timeout_s=60, sync=True
    )
    before, after = inv.result()
    assert 0 < before <= 60_000
    # At least the 0.2 s it slept (less a millisecond of rounding); more on a busy machine.
    assert after <= before - 199


def test_async_invoke_returns_at_once_and_wait_has_a_deadline(
    platform: Platform, release_path: str
) -> None:
    inv = platform.invoke(BLOCK, {"release_path": release_path}, memory_mb=256, timeout_s=300)
    assert not inv.done()
    with pytest.raises(WaitTimeout, match=inv.request_id):
        inv.wait(0.2)
    with pytest.raises(WaitTimeout):
        inv.result(timeout_s=0.2)
    assert inv.state in (State.PENDING, State.RUNNING)
    Path(release_path).touch()
    assert inv.result(timeout_s=WAIT_S) == "released"


# ---- failures -----------------------------------------------------------------------------------


def test_a_handlers_exception_is_a_failed_invocation(platform: Platform) -> None:
    inv = platform.invoke(FAIL, {"message": "boom"}, memory_mb=256, timeout_s=30)
    assert inv.wait(WAIT_S) is State.FAILED
    assert inv.error == "ValueError: boom"
    assert inv.traceback is not None
    assert "Traceback (most recent call last)" in inv.traceback
    assert 'raise ValueError(event["message"])' in inv.traceback
    with pytest.raises(InvocationFailed, match="failed: ValueError: boom") as err:
        inv.result()
    assert err.value.invocation is inv
    (record,) = platform.records()
    assert record.state == "failed" and record.error == "ValueError: boom"


def test_a_result_that_is_not_json_fails(platform: Platform) -> None:
    inv = platform.invoke(target("unserialisable"), {}, memory_mb=256, timeout_s=30, sync=True)
    assert inv.state is State.FAILED
    assert "not JSON-serialisable" in (inv.error or "")


def test_the_timeout_is_enforced_and_recorded(platform: Platform, release_path: str) -> None:
    inv = platform.invoke(BLOCK, {"release_path": release_path}, memory_mb=256, timeout_s=1)
    assert inv.wait(WAIT_S) is State.TIMED_OUT
    assert (inv.error or "").startswith("Task timed out after")
    assert inv.duration_ms >= 1000
    with pytest.raises(InvocationFailed, match="timed_out"):
        inv.result()
    (record,) = platform.records()
    assert record.state == "timed_out"
    assert record.billed_ms >= 1000
    assert record.gb_s == pytest.approx(256 / 1024 * record.billed_ms / 1000)


# ---- records ------------------------------------------------------------------------------------


def test_every_invocation_leaves_a_billing_record(platform: Platform, release_path: str) -> None:
    invs = [
        platform.invoke(ECHO, {}, memory_mb=512, timeout_s=30, sync=True),
        platform.invoke(FAIL, {"message": "no"}, memory_mb=1024, timeout_s=30, sync=True),
        platform.invoke(BLOCK, {"release_path": release_path}, memory_mb=128, timeout_s=1),
    ]
    assert invs[2].wait(WAIT_S) is State.TIMED_OUT
    records = platform.records()
    assert [r.request_id for r in records] == [inv.request_id for inv in invs]
    assert [r.state for r in records] == ["succeeded", "failed", "timed_out"]
    assert [r.handler for r in records] == [ECHO, FAIL, BLOCK]
    assert [r.memory_mb for r in records] == [512, 1024, 128]
    assert [r.timeout_s for r in records] == [30, 30, 1]
    assert [r.error is None for r in records] == [True, False, False]
    for inv, record in zip(invs, records, strict=True):
        assert record.started_at is not None and record.ended_at is not None
        assert record.started_at < record.ended_at
        assert inv.duration_ms > 0
        assert record.billed_ms == max(1, math.ceil(inv.duration_ms))  # 1 ms steps, rounded up
        assert record.gb_s == pytest.approx(record.memory_mb / 1024 * record.billed_ms / 1000)
        assert record.peak_memory_mb >= 0
        assert json.loads(json.dumps(record.to_dict())) == record.to_dict()
    assert [inv.request_id for inv in platform.invocations] == [r.request_id for r in records]


# ---- concurrency --------------------------------------------------------------------------------


def test_functions_up_to_the_limit_run_at_the_same_time(
    platform: Platform, barrier_store_url: str
) -> None:
    # Each waits for all the others: they can only succeed if all of them run at once.
    parties = 4
    invs = [
        platform.invoke(
            target("barrier"),
            {"store": barrier_store_url, "i": i, "parties": parties},
            memory_mb=442,  # 0.25 vCPU each: 1 vCPU for the four
            timeout_s=WAIT_S,
        )
        for i in range(parties)
    ]
    results = [inv.result(timeout_s=WAIT_S + 30) for inv in invs]
    ids = [inv.request_id for inv in invs]
    assert [r["seen"] for r in results] == [ids] * parties
    records = platform.records()
    assert max(r.started_at or 0 for r in records) < min(r.ended_at or 0 for r in records)


def test_beyond_the_limit_invocations_wait_pending(
    open_plat: Callable[..., Platform], release_path: str
) -> None:
    platform = open_plat(concurrency=1)
    first = platform.invoke(BLOCK, {"release_path": release_path}, memory_mb=256, timeout_s=300)
    second = platform.invoke(ECHO, {}, memory_mb=256, timeout_s=300)
    _wait_for(lambda: first.state is State.RUNNING, "the first invocation to run")
    with pytest.raises(WaitTimeout):
        second.wait(0.5)
    assert second.state is State.PENDING and second.started_at is None
    Path(release_path).touch()
    assert first.result(timeout_s=WAIT_S) == "released"
    assert second.wait(WAIT_S) is State.SUCCEEDED
    assert second.started_at is not None and first.ended_at is not None
    assert second.started_at >= first.ended_at


def test_the_concurrency_limit_is_respected(
    open_plat: Callable[..., Platform], tmp_path: Path
) -> None:
    path = tmp_path / "intervals.txt"
    platform = open_plat(concurrency=2)
    invs = [
        platform.invoke(
            target("record_interval"),
            {"path": str(path), "sleep_s": 0.3},
            memory_mb=256,
            timeout_s=WAIT_S,
        )
        for _ in range(5)
    ]
    for inv in invs:
        assert inv.wait(WAIT_S) is State.SUCCEEDED, inv.error
    intervals = [line.split() for line in path.read_text().splitlines()]
    assert len(intervals) == 5
    # A queued handler starts only after a running one has returned: its start comes after the
    # other's end. No timing assumption, just the order of events.
    events = sorted(
        [(float(s), 1) for _, s, _ in intervals] + [(float(e), -1) for *_, e in intervals]
    )
    overlap = peak = 0
    for _, delta in events:
        overlap += delta
        peak = max(peak, overlap)
    assert peak <= 2


def test_the_queue_is_first_in_first_out(
    open_plat: Callable[..., Platform], tmp_path: Path
) -> None:
    path = tmp_path / "order.txt"
    platform = open_plat(concurrency=1)
    invs = [
        platform.invoke(
            target("record_interval"), {"path": str(path)}, memory_mb=256, timeout_s=WAIT_S
        )
        for _ in range(4)
    ]
    for inv in invs:
        assert inv.wait(WAIT_S) is State.SUCCEEDED, inv.error
    ran = [line.split()[0] for line in path.read_text().splitlines()]
    assert ran == [inv.request_id for inv in invs]


def test_shutdown_fails_the_pending_and_refuses_new_invocations(
    open_plat: Callable[..., Platform], release_path: str
) -> None:
    platform = open_plat(concurrency=1)
    running = platform.invoke(BLOCK, {"release_path": release_path}, memory_mb=256, timeout_s=300)
    pending = platform.invoke(ECHO, {}, memory_mb=256, timeout_s=300)
    platform.shutdown()
    assert pending.wait(WAIT_S) is State.FAILED
    assert "shut down before the invocation started" in (pending.error or "")
    with pytest.raises(FasdlError, match="shut down"):
        platform.invoke(ECHO, {}, memory_mb=256, timeout_s=30)
    Path(release_path).touch()  # a platform that cannot stop the running one lets it finish
    assert running.wait(WAIT_S).finished


# ---- cancel -------------------------------------------------------------------------------------


def test_cancel_finishes_a_running_invocation_and_the_platform_goes_on(
    platform: Platform, release_path: str, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    event = {"release_path": release_path, "started_path": str(started)}
    inv = platform.invoke(BLOCK, event, memory_mb=256, timeout_s=300)
    _wait_for(started.exists, "the handler to run")
    platform.cancel(inv, "worker 2 failed")
    assert inv.done()  # finished when cancel returns
    assert inv.state is State.CANCELLED and inv.error == "worker 2 failed"
    with pytest.raises(InvocationFailed, match="cancelled: worker 2 failed"):
        inv.result()
    (record,) = platform.records()
    assert record.state == "cancelled" and record.error == "worker 2 failed"
    assert record.started_at is not None and record.ended_at is not None
    assert record.started_at <= record.ended_at
    assert record.billed_ms >= 1  # the time it ran is billed
    assert record.gb_s == pytest.approx(256 / 1024 * record.billed_ms / 1000)
    # The platform accepts and runs new invocations.
    again = platform.invoke(ECHO, {"n": 1}, memory_mb=256, timeout_s=30, sync=True)
    assert again.result()["event"] == {"n": 1}
    assert [r.state for r in platform.records()] == ["cancelled", "succeeded"]


def test_cancel_of_a_pending_invocation_means_it_never_runs(
    open_plat: Callable[..., Platform], release_path: str, tmp_path: Path
) -> None:
    platform = open_plat(concurrency=1)
    path = tmp_path / "ran.txt"
    first = platform.invoke(BLOCK, {"release_path": release_path}, memory_mb=256, timeout_s=300)
    queued = platform.invoke(
        target("record_interval"), {"path": str(path)}, memory_mb=256, timeout_s=300
    )
    assert queued.state is State.PENDING
    platform.cancel(queued, "not needed")
    assert queued.done() and queued.state is State.CANCELLED and queued.error == "not needed"
    assert queued.started_at is None and queued.record().billed_ms == 0
    Path(release_path).touch()
    assert first.result(timeout_s=WAIT_S) == "released"
    after = platform.invoke(
        target("record_interval"), {"path": str(path)}, memory_mb=256, timeout_s=300
    )
    assert after.wait(WAIT_S) is State.SUCCEEDED, after.error
    assert [line.split()[0] for line in path.read_text().splitlines()] == [after.request_id]
    assert [r.state for r in platform.records()] == ["succeeded", "cancelled", "succeeded"]


def test_cancel_of_a_finished_invocation_changes_nothing(
    platform: Platform, release_path: str, tmp_path: Path
) -> None:
    done = platform.invoke(ECHO, {"n": 1}, memory_mb=256, timeout_s=30, sync=True)
    failed = platform.invoke(FAIL, {"message": "no"}, memory_mb=256, timeout_s=30, sync=True)
    before = platform.records()
    platform.cancel(done)
    platform.cancel(failed, "too late")
    assert platform.records() == before
    assert done.result()["event"] == {"n": 1}
    assert failed.state is State.FAILED and failed.error == "ValueError: no"
    # A second cancel keeps the first reason.
    started = tmp_path / "started"
    event = {"release_path": release_path, "started_path": str(started)}
    blocked = platform.invoke(BLOCK, event, memory_mb=256, timeout_s=300)
    _wait_for(started.exists, "the handler to run")
    platform.cancel(blocked)
    platform.cancel(blocked, "again")
    assert blocked.state is State.CANCELLED and blocked.error == "cancelled"


def test_cancel_refuses_what_is_not_its_own(
    open_plat: Callable[..., Platform], platform: Platform
) -> None:
    inv = platform.invoke(ECHO, {}, memory_mb=256, timeout_s=30, sync=True)
    with pytest.raises(InvalidInput, match="not invoked on this"):
        open_plat().cancel(inv)
    with pytest.raises(InvalidInput, match="reason"):
        platform.cancel(inv, "")


# ---- validation: refused before anything runs ---------------------------------------------------


def _child_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"handler": "no_such_handler"}, "handler", "unknown handler 'no_such_handler'"),
        ({"memory_mb": 100}, "memory_mb", "100 MB is outside"),
        ({"memory_mb": 20000}, "memory_mb", "20000 MB is outside"),
        ({"memory_mb": 512.5}, "memory_mb", "not a whole number"),
        ({"timeout_s": 0}, "timeout_s", "0 s is outside"),
        ({"timeout_s": 901}, "timeout_s", "901 s is outside"),
        ({"timeout_s": "10"}, "timeout_s", "not a number"),
        ({"payload": {"x": {1, 2}}}, "payload", "is not JSON"),
        ({"payload": {"x": math.nan}}, "payload", "is not JSON"),
        ({"payload": [1, 2]}, "payload", "must be a JSON object"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    platform: Platform, kwargs: dict[str, Any], field: str, words: str
) -> None:
    before = _child_pids()
    call: dict[str, Any] = {"handler": "smoke", "payload": {}, "memory_mb": 256, "timeout_s": 10}
    call |= kwargs
    handler, payload = call.pop("handler"), call.pop("payload")
    with pytest.raises(InvalidInput) as err:
        platform.invoke(handler, payload, **call)
    assert err.value.field == field
    assert words in str(err.value)
    assert platform.invocations == []
    assert platform.records() == []
    assert _child_pids() <= before  # no function was started


def test_an_unknown_handler_lists_the_known_ones(platform: Platform) -> None:
    with pytest.raises(InvalidInput, match=r"known: .*smoke"):
        platform.invoke("nope", {}, memory_mb=256, timeout_s=10)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_a_payload_over_the_limit_names_its_size(platform: Platform, sync: bool) -> None:
    limit = 6 * 1024 * 1024 if sync else 256 * 1024
    payload = {"echo": "x" * limit}
    size = len(json.dumps(payload))
    with pytest.raises(PayloadTooLarge) as err:
        platform.invoke(ECHO, payload, memory_mb=256, timeout_s=10, sync=sync)
    assert f"{size:,} bytes" in str(err.value)
    assert f"{limit:,}-byte limit" in str(err.value)
    assert platform.invocations == []


def test_a_payload_over_the_async_limit_is_fine_synchronously(platform: Platform) -> None:
    big = "x" * 300_000
    with pytest.raises(PayloadTooLarge):
        platform.invoke(ECHO, {"echo": big}, memory_mb=256, timeout_s=30)
    inv = platform.invoke(ECHO, {"echo": big}, memory_mb=256, timeout_s=30, sync=True)
    assert inv.result()["event"]["echo"] == big  # and it comes back whole


def test_concurrency_below_one_is_refused(platform_name: str) -> None:
    with pytest.raises(InvalidInput, match="concurrency"):
        open_platform(platform_name, concurrency=0)


def test_an_unknown_platform_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match=f"known: {', '.join(PLATFORMS)}"):
        open_platform("lambda-on-mars")
