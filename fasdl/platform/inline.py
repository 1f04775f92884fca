"""The inline platform: handlers run in threads of this process, for fast tests and ``memory://``.

It keeps the platform's contract (JSON in and out, a Lambda context, states, records, the
concurrency limit with a FIFO queue) but enforces no CPU share and no memory limit, and cannot kill
a thread: at its timeout an invocation is reported TIMED_OUT and its caller released, while the
thread runs on in the background and its result is thrown away. A cancelled invocation is the same:
CANCELLED at once for its caller, its context's ``cancelled`` set (and its remaining time 0), its
thread left to end on its own. Peak memory is not measured (0).
"""

from __future__ import annotations

import collections
import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from fasdl.errors import FasdlError
from fasdl.platform.base import Context, Invocation, Platform, State, load_handler


@dataclass(eq=False)
class _Live:
    """One invocation from ``_start`` until its thread ends: what ``cancel`` needs to reach it."""

    inv: Invocation
    target: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # The handler, the timer and cancel race to finish it: once only, under this lock.
    lock: threading.Lock = field(default_factory=threading.Lock)
    start: float | None = None  # monotonic, once its thread has begun

    def finish_once(self, state: State, **kw: Any) -> None:
        with self.lock:
            inv = self.inv
            if inv.done():
                return
            if self.start is not None and inv.started_at is not None:
                inv.duration_ms = (time.monotonic() - self.start) * 1000
                inv.ended_at = inv.started_at + inv.duration_ms / 1000
            inv.finish(state, **kw)


class InlinePlatform(Platform):
    """Run each invocation in a daemon thread of this process (at most ``concurrency`` at once)."""

    name = "inline"

    def __init__(self, *, concurrency: int = 1000) -> None:
        super().__init__(concurrency=concurrency)
        self._lock = threading.Lock()
        self._pending: collections.deque[_Live] = collections.deque()
        self._live: dict[str, _Live] = {}  # by request id: pending, or its thread not yet ended
        self._running = 0
        self._closing = False

    def _start(self, inv: Invocation, target: str, body: bytes) -> None:
        with self._lock:
            if self._closing:
                inv.finish(State.FAILED, error="the platform is shut down")
                raise FasdlError(f"invocation of {inv.handler!r}: the platform is shut down")
            if inv.done():  # cancelled before it got here
                return
            live = _Live(inv, target)
            self._live[inv.request_id] = live
            if self._running >= self.concurrency:
                self._pending.append(live)
                return
            self._running += 1
        self._launch(live)

    def _launch(self, live: _Live) -> None:
        threading.Thread(
            target=self._run,
            args=(live,),
            name=f"fasdl-inline-{live.inv.request_id[:8]}",
            daemon=True,
        ).start()

    def _run(self, live: _Live) -> None:
        inv = live.inv
        with live.lock:
            began = not inv.done()  # not cancelled while it waited for its thread
            if began:
                live.start = time.monotonic()
                inv.started_at = time.time()
                inv.state = State.RUNNING
        if not began:
            self._end(live)
            return
        assert live.start is not None
        timer = threading.Timer(
            inv.timeout_s,
            lambda: live.finish_once(
                State.TIMED_OUT,
                error=f"Task timed out after {inv.timeout_s:.2f} seconds (the inline platform cannot stop the thread)",
            ),
        )
        timer.daemon = True
        timer.start()
        try:
            context = Context(
                function_name=inv.handler,
                memory_limit_in_mb=inv.memory_mb,
                aws_request_id=inv.request_id,
                deadline_monotonic=live.start + inv.timeout_s,
                vcpus=inv.vcpus,
                cancel_event=live.cancel_event,
            )
            # The handler gets its own copy, as if it had come over the wire.
            event = json.loads(json.dumps(inv.payload))
            result = load_handler(live.target)(event, context)
            try:
                result = json.loads(json.dumps(result, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise TypeError(f"the handler's result is not JSON-serialisable: {e}") from e
            live.finish_once(State.SUCCEEDED, result=result)
        except Exception as e:
            live.finish_once(
                State.FAILED, error=f"{type(e).__name__}: {e}", tb=traceback.format_exc()
            )
        finally:
            timer.cancel()
            self._end(live)

    def _end(self, live: _Live) -> None:
        """Its thread has ended: free its slot for the next pending invocation."""
        with self._lock:
            self._live.pop(live.inv.request_id, None)
            if self._pending and not self._closing:
                nxt = self._pending.popleft()
            else:
                self._running -= 1
                return
        self._launch(nxt)

    def _cancel(self, inv: Invocation, reason: str) -> None:
        """Finish it as cancelled now. A pending one never starts; a running thread cannot be
        stopped: its context says ``cancelled``, it keeps its slot until it ends, and its result
        is dropped."""
        with self._lock:
            live = self._live.get(inv.request_id)
            if live is not None and live in self._pending:
                self._pending.remove(live)
                del self._live[inv.request_id]
            if live is None:
                # Not handed to ``_start`` yet (or its thread ended, and it is finished): mark
                # it here, under the lock ``_start`` takes, which then leaves it alone.
                if not inv.done():
                    inv.finish(State.CANCELLED, error=reason)
                return
        live.cancel_event.set()
        live.finish_once(State.CANCELLED, error=reason)

    def shutdown(self) -> None:
        """Fail the pending invocations. Running threads cannot be stopped; they finish on their own."""
        with self._lock:
            self._closing = True
            pending = list(self._pending)
            self._pending.clear()
            for live in pending:
                self._live.pop(live.inv.request_id, None)
        for live in pending:
            live.finish_once(
                State.FAILED, error="the platform shut down before the invocation started"
            )
