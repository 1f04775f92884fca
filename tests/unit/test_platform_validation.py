"""Bad input is refused before anything runs; the inline platform keeps the platform contract."""

from __future__ import annotations

import json
import math
import threading
import time

import psutil
import pytest

from fasdl.errors import InvalidInput, PayloadTooLarge
from fasdl.platform import State, open_platform
from fasdl.platform.inline import InlinePlatform
from fasdl.platform.local import LocalPlatform

PLATFORMS = ["local", "inline"]


def _child_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(params=PLATFORMS)
def platform(request):
    before = _child_pids()
    plat = open_platform(request.param)
    yield plat
    plat.shutdown()
    # Nothing may have been started by a refused invocation.
    assert _child_pids() <= before


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"handler": "no_such_handler"}, "handler", "unknown handler 'no_such_handler'"),
        ({"memory_mb": 100}, "memory", "100 MB is outside"),
        ({"memory_mb": 20000}, "memory", "20000 MB is outside"),
        ({"memory_mb": 512.5}, "memory", "not a whole number"),
        ({"timeout_s": 0}, "timeout", "0 s is outside"),
        ({"timeout_s": 901}, "timeout", "901 s is outside"),
        ({"timeout_s": "10"}, "timeout", "not a number"),
        ({"payload": {"x": {1, 2}}}, "payload", "is not JSON"),
        ({"payload": {"x": math.nan}}, "payload", "is not JSON"),
        ({"payload": [1, 2]}, "payload", "must be a JSON object"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(platform, kwargs, field, words):
    call = {"handler": "smoke", "payload": {}, "memory_mb": 256, "timeout_s": 10} | kwargs
    handler, payload = call.pop("handler"), call.pop("payload")
    with pytest.raises(InvalidInput) as err:
        platform.invoke(handler, payload, **call)
    assert err.value.field == field
    assert words in str(err.value)
    assert platform.invocations == []
    if isinstance(platform, LocalPlatform):
        assert platform._thread is None  # the supervisor never started: no process was spawned


def test_unknown_handler_lists_the_known_ones(platform):
    with pytest.raises(InvalidInput, match=r"known: .*smoke"):
        platform.invoke("nope", {}, memory_mb=256, timeout_s=10)


@pytest.mark.parametrize("sync", [False, True])
def test_payload_over_the_limit_names_its_size(platform, sync):
    limit = 6 * 1024 * 1024 if sync else 256 * 1024
    payload = {"echo": "x" * limit}
    size = len(json.dumps(payload))
    with pytest.raises(PayloadTooLarge) as err:
        platform.invoke("smoke", payload, memory_mb=256, timeout_s=10, sync=sync)
    assert f"{size:,} bytes" in str(err.value)
    assert f"{limit:,}-byte limit" in str(err.value)
    assert platform.invocations == []


def test_unknown_platform_and_bad_concurrency():
    with pytest.raises(InvalidInput, match="known: local, inline"):
        open_platform("lambda-on-mars")
    for name in PLATFORMS:
        with pytest.raises(InvalidInput, match="concurrency"):
            open_platform(name, concurrency=0)


# ---- the inline platform: the same contract in threads ------------------------------------------


def test_inline_round_trip_and_records():
    with InlinePlatform() as plat:
        inv = plat.invoke("smoke", {"echo": "hi", "n": 4}, memory_mb=2048, timeout_s=10, sync=True)
        assert inv.state is State.SUCCEEDED
        result = inv.result()
        assert result["echo"] == "hi"
        assert result["sum_squares"] == 0 + 1 + 4 + 9
        assert result["request_id"] == inv.request_id
        assert result["memory_mb"] == 2048
        assert 0 < result["remaining_ms"] <= 10_000
        (record,) = plat.records()
        assert record.state == "succeeded"
        assert record.billed_ms >= 1
        assert record.billed_ms == math.ceil(inv.duration_ms) or record.billed_ms == 1
        assert record.gb_s == pytest.approx(2048 / 1024 * record.billed_ms / 1000)


def test_inline_failure_carries_the_traceback():
    with InlinePlatform() as plat:
        inv = plat.invoke("smoke", {"raise": "boom"}, memory_mb=256, timeout_s=10, sync=True)
        assert inv.state is State.FAILED
        assert inv.error == "RuntimeError: boom"
        assert "Traceback" in inv.traceback and "smoke.py" in inv.traceback
        with pytest.raises(Exception, match="failed: RuntimeError: boom"):
            inv.result()


def test_inline_timeout_is_reported_though_the_thread_runs_on():
    with InlinePlatform() as plat:
        inv = plat.invoke("smoke", {"sleep_s": 5}, memory_mb=256, timeout_s=1)
        assert inv.wait(timeout_s=4) is State.TIMED_OUT
        assert "timed out after 1.00 seconds" in inv.error
        assert 1000 <= inv.duration_ms < 4000


# Inline handlers live in this module: the inline platform imports "module:function" in-process.
_gate = threading.Event()
_started: list[int] = []


def _blocking_handler(event, context):
    _started.append(event["i"])
    assert _gate.wait(10)
    return event["i"]


def _bad_result_handler(event, context):
    return {"x": object()}


@pytest.fixture
def gate():
    _gate.clear()
    _started.clear()
    yield _gate
    _gate.set()  # release any thread still waiting


def test_inline_concurrency_limit_queues_fifo(gate):
    with InlinePlatform(concurrency=2) as plat:
        invs = [
            plat.invoke(f"{__name__}:_blocking_handler", {"i": i}, memory_mb=128, timeout_s=20)
            for i in range(5)
        ]
        deadline = time.monotonic() + 10
        while len(_started) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(_started) == [0, 1]
        assert [inv.state for inv in invs[2:]] == [State.PENDING] * 3
        gate.set()
        assert [inv.result(timeout_s=10) for inv in invs] == [0, 1, 2, 3, 4]
        assert sorted(_started) == [0, 1, 2, 3, 4]


def test_inline_queue_is_first_in_first_out(gate):
    with InlinePlatform(concurrency=1) as plat:
        invs = [
            plat.invoke(f"{__name__}:_blocking_handler", {"i": i}, memory_mb=128, timeout_s=20)
            for i in range(4)
        ]
        gate.set()
        assert [inv.result(timeout_s=10) for inv in invs] == [0, 1, 2, 3]
        assert _started == [0, 1, 2, 3]


def test_inline_shutdown_fails_pending(gate):
    plat = InlinePlatform(concurrency=1)
    running = plat.invoke(f"{__name__}:_blocking_handler", {"i": 0}, memory_mb=128, timeout_s=20)
    pending = plat.invoke(f"{__name__}:_blocking_handler", {"i": 1}, memory_mb=128, timeout_s=20)
    plat.shutdown()
    assert pending.wait(1) is State.FAILED
    assert "shut down" in pending.error
    gate.set()
    assert running.wait(10) is State.SUCCEEDED
    assert _started == [0]


def test_inline_result_must_be_json():
    with InlinePlatform() as plat:
        inv = plat.invoke(
            f"{__name__}:_bad_result_handler", {}, memory_mb=128, timeout_s=5, sync=True
        )
        assert inv.state is State.FAILED
        assert "not JSON-serialisable" in inv.error
