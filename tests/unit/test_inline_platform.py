"""The inline platform beyond the platform contract: it cannot stop a thread.

At its timeout an invocation is reported TIMED_OUT and its caller released while the thread runs
on; its result is then thrown away. A cancelled one is the same, and its context says so. At
shutdown the pending invocations fail and the running ones finish. What every platform promises is in tests/integration/test_platform_contract.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from fasdl.platform import State
from fasdl.platform.inline import InlinePlatform

WAIT_S = 60  # only a broken platform gets near it

# Inline handlers may live in this module: the inline platform imports "module:function" here.
_gate = threading.Event()
_returned: list[int] = []


def _blocking_handler(event, context):
    assert _gate.wait(WAIT_S)
    _returned.append(event["i"])
    return event["i"]


_started = threading.Event()
_seen: list[tuple[bool, int]] = []


def _cancel_aware_handler(event, context):
    """Runs until its context says it is cancelled, then reports what the context says."""
    _seen.append((context.cancelled, context.get_remaining_time_in_millis()))
    _started.set()
    assert context.cancel_event.wait(WAIT_S)
    _seen.append((context.cancelled, context.get_remaining_time_in_millis()))
    return "a late result"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    _gate.clear()
    _returned.clear()
    yield _gate
    _gate.set()  # release any thread still waiting


def test_a_timed_out_thread_runs_on_and_its_result_is_thrown_away(gate) -> None:
    with InlinePlatform() as plat:
        inv = plat.invoke(f"{__name__}:_blocking_handler", {"i": 7}, memory_mb=256, timeout_s=1)
        assert inv.wait(WAIT_S) is State.TIMED_OUT
        assert "timed out after 1.00 seconds" in (inv.error or "")
        assert "cannot stop the thread" in (inv.error or "")
        gate.set()
        _wait_until(lambda: _returned == [7])
        assert inv.state is State.TIMED_OUT and inv.result_value is None


def test_shutdown_lets_the_running_finish(gate) -> None:
    plat = InlinePlatform(concurrency=1)
    running = plat.invoke(f"{__name__}:_blocking_handler", {"i": 0}, memory_mb=128, timeout_s=60)
    pending = plat.invoke(f"{__name__}:_blocking_handler", {"i": 1}, memory_mb=128, timeout_s=60)
    plat.shutdown()
    assert pending.wait(WAIT_S) is State.FAILED
    gate.set()
    assert running.result(timeout_s=WAIT_S) == 0
    assert _returned == [0]


def test_a_cancelled_thread_sees_it_and_its_late_result_is_dropped(gate) -> None:
    _started.clear()
    _seen.clear()
    with InlinePlatform(concurrency=1) as plat:
        inv = plat.invoke(f"{__name__}:_cancel_aware_handler", {}, memory_mb=256, timeout_s=60)
        queued = plat.invoke(f"{__name__}:_blocking_handler", {"i": 1}, memory_mb=256, timeout_s=60)
        assert _started.wait(WAIT_S)
        plat.cancel(inv, "stop")
        assert inv.done() and inv.state is State.CANCELLED and inv.error == "stop"
        assert inv.record().billed_ms >= 1
        # The thread sees the cancel, returns, and its result is dropped.
        _wait_until(lambda: len(_seen) == 2)
        (before, after) = _seen
        assert before[0] is False and before[1] > 0
        assert after == (True, 0)
        gate.set()
        # It keeps its slot until its thread ends, so once the queued one has run, the cancelled
        # one has returned its late result: dropped.
        assert queued.result(timeout_s=WAIT_S) == 1
        assert inv.state is State.CANCELLED and inv.result_value is None


def _wait_until(condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)
