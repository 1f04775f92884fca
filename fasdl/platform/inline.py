"""The inline platform: handlers run in threads of this process, for fast tests and ``memory://``.

It keeps the platform's contract (JSON in and out, a Lambda context, states, records, the
concurrency limit with a FIFO queue) but enforces no CPU share and no memory limit, and cannot kill
a thread: at its timeout an invocation is reported TIMED_OUT and its caller released, while the
thread runs on in the background and its result is thrown away. Peak memory is not measured (0).
"""

from __future__ import annotations

import collections
import json
import threading
import time
import traceback
from typing import Any

from fasdl.errors import FasdlError
from fasdl.platform.base import Context, Invocation, Platform, State, load_handler


class InlinePlatform(Platform):
    """Run each invocation in a daemon thread of this process (at most ``concurrency`` at once)."""

    name = "inline"

    def __init__(self, *, concurrency: int = 1000) -> None:
        super().__init__(concurrency=concurrency)
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[Invocation, str]] = collections.deque()
        self._running = 0
        self._closing = False

    def _start(self, inv: Invocation, target: str, body: bytes) -> None:
        with self._lock:
            if self._closing:
                inv.finish(State.FAILED, error="the platform is shut down")
                raise FasdlError(f"invocation of {inv.handler!r}: the platform is shut down")
            if self._running >= self.concurrency:
                self._pending.append((inv, target))
                return
            self._running += 1
        self._launch(inv, target)

    def _launch(self, inv: Invocation, target: str) -> None:
        threading.Thread(
            target=self._run,
            args=(inv, target),
            name=f"fasdl-inline-{inv.request_id[:8]}",
            daemon=True,
        ).start()

    def _run(self, inv: Invocation, target: str) -> None:
        finish_lock = threading.Lock()  # the timer and the handler race to finish it: once only
        start = time.monotonic()
        inv.started_at = time.time()
        inv.state = State.RUNNING

        def finish_once(state: State, **kw: Any) -> None:
            with finish_lock:
                if inv.done():
                    return
                inv.duration_ms = (time.monotonic() - start) * 1000
                inv.ended_at = inv.started_at + inv.duration_ms / 1000  # type: ignore[operator]
                inv.finish(state, **kw)

        timer = threading.Timer(
            inv.timeout_s,
            lambda: finish_once(
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
                deadline_monotonic=start + inv.timeout_s,
                vcpus=inv.vcpus,
            )
            # The handler gets its own copy, as if it had come over the wire.
            event = json.loads(json.dumps(inv.payload))
            result = load_handler(target)(event, context)
            try:
                result = json.loads(json.dumps(result, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise TypeError(f"the handler's result is not JSON-serialisable: {e}") from e
            finish_once(State.SUCCEEDED, result=result)
        except Exception as e:
            finish_once(State.FAILED, error=f"{type(e).__name__}: {e}", tb=traceback.format_exc())
        finally:
            timer.cancel()
            self._next()

    def _next(self) -> None:
        with self._lock:
            if self._pending and not self._closing:
                inv, target = self._pending.popleft()
            else:
                self._running -= 1
                return
        self._launch(inv, target)

    def shutdown(self) -> None:
        """Fail the pending invocations. Running threads cannot be stopped; they finish on their own."""
        with self._lock:
            self._closing = True
            pending = list(self._pending)
            self._pending.clear()
        for inv, _ in pending:
            inv.finish(State.FAILED, error="the platform shut down before the invocation started")
