"""The one function-platform interface: invoke a registered handler by name with a JSON payload.

A handler is Lambda's: ``handler(event: dict, context) -> JSON-serialisable``, so the same code
runs on the local platform, inline (threads, for tests) and on real clouds. Each platform is a
small adapter: it implements ``_start`` and ``_cancel`` and inherits validation, records and
waiting from here.
"""

from __future__ import annotations

import enum
import importlib
import json
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fasdl.errors import InvalidInput, InvocationFailed, PayloadTooLarge, WaitTimeout
from fasdl.platform.limits import (
    ASYNC_PAYLOAD_LIMIT_BYTES,
    SYNC_PAYLOAD_LIMIT_BYTES,
    check_memory_mb,
    check_timeout_s,
    vcpus_for_memory,
)
from fasdl.validate import whole_number

# The platform's own handlers by name -> "module:function". Users add theirs with
# register_handler; a package passes its own ``Handler`` instead (the platform names no package).
HANDLERS: dict[str, str] = {
    "smoke": "fasdl.platform.smoke:handler",
    "cnn_steps": "fasdl.platform.smoke:cnn_steps",
}


@dataclass(frozen=True)
class Handler:
    """A handler as the package that owns it names it: ``name``, short and readable, for records
    and logs (Lambda's function name), and ``target``, the "package.module:function" that any
    process imports to run it. The target travels with each invocation, so a fresh process (the
    local platform's) finds the handler without any registry having been filled in it.
    """

    name: str
    target: str

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInput("handler", "a handler needs a name")
        if ":" not in self.target:
            raise InvalidInput("handler", f"{self.target!r} is not 'module:function'")


def register_handler(name: str, target: str) -> None:
    """Register ``target`` ("package.module:function") under ``name``."""
    if ":" not in target:
        raise InvalidInput("handler", f"{target!r} is not 'module:function'")
    HANDLERS[name] = target


def resolve_handler(name: str) -> str:
    """The 'module:function' target of a handler name (a 'module:function' name stands for itself)."""
    if name in HANDLERS:
        return HANDLERS[name]
    if ":" in name:
        return name
    raise InvalidInput(
        "handler",
        f"unknown handler {name!r}",
        f"known: {', '.join(sorted(HANDLERS))}, or 'module:function'",
    )


def load_handler(target: str) -> Callable[[dict[str, Any], Any], Any]:
    module_name, func_name = target.split(":", 1)
    module = importlib.import_module(module_name)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, func_name)
    return handler


class State(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OUT_OF_MEMORY = "out_of_memory"
    CANCELLED = "cancelled"  # stopped by ``Platform.cancel``: ``error`` holds the reason

    @property
    def finished(self) -> bool:
        return self not in (State.PENDING, State.RUNNING)


@dataclass(frozen=True)
class Context:
    """What Lambda hands a handler as ``context``, with the same attribute names.

    Beyond Lambda's: ``cancelled``, true once the platform was asked to cancel the invocation
    and could not stop the handler (the inline platform's threads); from then on
    ``get_remaining_time_in_millis()`` is 0, so a handler that bounds its waits by its remaining
    time gives up at once. (A platform that can stop the handler, like the local one, kills it.)
    """

    function_name: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline_monotonic: float
    vcpus: float
    # The period in which the platform hands out a fraction of a CPU (the local platform's duty
    # cycle), where the platform says; None elsewhere (Lambda does not say).
    cpu_period_s: float | None = None
    cancel_event: threading.Event = field(
        default_factory=threading.Event, repr=False, compare=False
    )

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def get_remaining_time_in_millis(self) -> int:
        if self.cancelled:
            return 0
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


@dataclass(frozen=True)
class InvocationRecord:
    """One invocation as billed: what the job keeps, because cost is computed from it."""

    request_id: str
    handler: str
    memory_mb: int
    timeout_s: float
    state: str
    started_at: float | None
    ended_at: float | None
    duration_ms: float
    billed_ms: int
    gb_s: float
    peak_memory_mb: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def billed_ms(duration_ms: float) -> int:
    """Lambda bills in 1 ms steps, rounding up (at least 1 ms)."""
    return max(1, math.ceil(duration_ms))


@dataclass
class Invocation:
    """A handle on one invocation. Platforms fill it in; ``wait`` blocks until it is finished."""

    request_id: str
    handler: str
    memory_mb: int
    timeout_s: float
    payload: dict[str, Any]
    state: State = State.PENDING
    result_value: Any = None
    error: str | None = None
    traceback: str | None = None
    started_at: float | None = None  # epoch seconds
    ended_at: float | None = None
    duration_ms: float = 0.0
    peak_memory_mb: float = 0.0
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def vcpus(self) -> float:
        cpus: float = vcpus_for_memory(self.memory_mb)
        return cpus

    @property
    def billed_ms(self) -> int:
        return billed_ms(self.duration_ms) if self.started_at is not None else 0

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> State:
        """Block until finished; ``WaitTimeout`` names the invocation if ``timeout_s`` passes first."""
        if not self._done.wait(timeout_s):
            raise WaitTimeout(
                f"invocation {self.request_id} of {self.handler!r} still {self.state.value} after {timeout_s:.1f}s"
            )
        return self.state

    def result(self, timeout_s: float | None = None) -> Any:
        """The handler's return value; raises ``InvocationFailed`` if it did not succeed."""
        self.wait(timeout_s)
        if self.state is not State.SUCCEEDED:
            raise InvocationFailed(self)
        return self.result_value

    def finish(
        self, state: State, *, result: Any = None, error: str | None = None, tb: str | None = None
    ) -> None:
        """Called once by the platform when the invocation ends."""
        self.state = state
        self.result_value = result
        self.error = error
        self.traceback = tb
        if self.ended_at is None:
            self.ended_at = time.time()
        self._done.set()

    def record(self) -> InvocationRecord:
        return InvocationRecord(
            request_id=self.request_id,
            handler=self.handler,
            memory_mb=self.memory_mb,
            timeout_s=self.timeout_s,
            state=self.state.value,
            started_at=self.started_at,
            ended_at=self.ended_at,
            duration_ms=round(self.duration_ms, 3),
            billed_ms=self.billed_ms,
            gb_s=self.memory_mb / 1024 * self.billed_ms / 1000,
            peak_memory_mb=round_up_mb(self.peak_memory_mb),
            error=self.error,
        )


def round_up_mb(mb: float) -> float:
    """Megabytes to one decimal, never below the measure: a peak just over a limit stays over it."""
    return math.ceil(mb * 10 - 1e-9) / 10


class Platform(ABC):
    """Invoke handlers by name. Subclasses implement ``_start``, ``_cancel`` (and ``shutdown``)."""

    name: str = "abstract"

    def __init__(self, *, concurrency: int = 1000) -> None:
        self.concurrency = whole_number(concurrency, "concurrency", minimum=1)
        self._records_lock = threading.Lock()
        self._invocations: list[Invocation] = []

    def invoke(
        self,
        handler: str | Handler,
        payload: dict[str, Any],
        *,
        memory_mb: int,
        timeout_s: float,
        sync: bool = False,
    ) -> Invocation:
        """Start ``handler`` with ``payload``. Asynchronous (Lambda's ``Event``) unless ``sync``.

        ``handler`` is a package's ``Handler``, a registered name or "module:function". Everything
        is validated before anything runs: the handler, memory, timeout, and the payload (JSON,
        within 256 KB async or 6 MB sync).
        """
        if isinstance(handler, Handler):
            name, target = handler.name, handler.target
        else:
            name, target = handler, resolve_handler(handler)
        memory_mb = check_memory_mb(memory_mb)
        timeout_s = check_timeout_s(timeout_s)
        body = encode_payload(payload, sync=sync)
        inv = Invocation(
            request_id=uuid.uuid4().hex,
            handler=name,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            payload=json.loads(body),
        )
        with self._records_lock:
            self._invocations.append(inv)
        self._start(inv, target, body)
        if sync:
            inv.wait()
        return inv

    @abstractmethod
    def _start(self, inv: Invocation, target: str, body: bytes) -> None:
        """Run the invocation (now or when a concurrency slot frees) and call ``inv.finish``."""

    def cancel(self, inv: Invocation, reason: str = "cancelled") -> None:
        """Stop ``inv`` and finish it as ``State.CANCELLED``, with ``reason`` as its ``error``.

        When this returns, ``inv`` is finished (``done()``) and its record bills the time it ran
        (nothing if it was still pending). The platform goes on: other invocations are not
        touched and new ones are accepted. A platform that can stop the function does so (local:
        its process group is killed before this returns); one that cannot (inline: a thread)
        sets its context's ``cancelled`` and drops whatever it returns later. Cancelling an
        invocation that has already finished, in whatever state, changes nothing.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason", f"must be a non-empty string, not {reason!r}")
        with self._records_lock:
            ours = any(known is inv for known in self._invocations)
        if not ours:
            raise InvalidInput(
                "invocation", f"{inv.request_id} was not invoked on this {self.name} platform"
            )
        if inv.done():
            return
        self._cancel(inv, reason)

    @abstractmethod
    def _cancel(self, inv: Invocation, reason: str) -> None:
        """Stop ``inv`` (not finished, invoked here) and finish it as ``CANCELLED`` before returning."""

    @property
    def invocations(self) -> list[Invocation]:
        with self._records_lock:
            return list(self._invocations)

    def records(self) -> list[InvocationRecord]:
        """The record of every invocation so far (finished or not)."""
        return [inv.record() for inv in self.invocations]

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Stop whatever still runs."""

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def encode_payload(payload: Any, *, sync: bool) -> bytes:
    """The payload as JSON bytes, checked against Lambda's size limits."""
    if not isinstance(payload, dict):
        raise InvalidInput("payload", f"must be a JSON object, not {type(payload).__name__}")
    try:
        body = json.dumps(payload, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise InvalidInput("payload", f"is not JSON: {e}") from e
    limit = SYNC_PAYLOAD_LIMIT_BYTES if sync else ASYNC_PAYLOAD_LIMIT_BYTES
    if len(body) > limit:
        kind = "synchronous" if sync else "asynchronous"
        raise PayloadTooLarge(
            "payload",
            f"{len(body):,} bytes is over the {limit:,}-byte limit for {kind} invocations",
            "put large inputs in the object store and pass their keys",
        )
    return body


PLATFORMS: dict[str, str] = {
    "local": "fasdl.platform.local:LocalPlatform",
    "inline": "fasdl.platform.inline:InlinePlatform",
    "lithops": "fasdl.platform.lithops:LithopsPlatform",  # needs the lithops extra
}


def open_platform(name: str, **kwargs: Any) -> Platform:
    """A platform by name: ``local`` (processes, the default), ``inline`` (threads, for tests) or
    ``lithops`` (Lithops' backends: AWS Lambda, ..., localhost; ``backend=``, ``config_file=``)."""
    if name not in PLATFORMS:
        raise InvalidInput(
            "platform", f"unknown platform {name!r}", f"known: {', '.join(PLATFORMS)}"
        )
    module_name, cls_name = PLATFORMS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    platform: Platform = cls(**kwargs)
    return platform
