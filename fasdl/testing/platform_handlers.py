"""Handlers for the platform contract suite (tests/integration/test_platform_contract.py).

They live in the package, not under tests/, so that every platform can import them where its
functions run: a child process of the local platform, a thread of the inline one, a remote worker
that has fasdl installed. Only the standard library is imported at the top (the barrier imports
the store when called), so a function at 128 MB starts quickly.

Each is named by ``target(name)``: "fasdl.testing.platform_handlers:NAME".
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

RELEASE_POLL_S = 0.05


def target(name: str) -> str:
    """The "module:function" target of the handler ``name`` of this module."""
    if not callable(globals().get(name)) or name.startswith("_") or name == "target":
        raise ValueError(f"{name!r} is not a handler of {__name__}")
    return f"{__name__}:{name}"


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The event as received, and what the context says."""
    return {
        "event": event,
        "function_name": context.function_name,
        "memory_mb": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
        "vcpus": context.vcpus,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def fail(event: dict[str, Any], context: Any) -> None:
    """Raise ``ValueError(event["message"])``."""
    raise ValueError(event["message"])


def unserialisable(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Return what JSON cannot carry."""
    return {"x": {1, 2}}


def block(event: dict[str, Any], context: Any) -> str:
    """Block until the file ``event["release_path"]`` exists: in a test, for ever.

    A timeout test never creates the file; its clean-up does, so that a platform that cannot
    stop a running handler (inline: a thread) does not keep it after the test. With
    ``event["started_path"]`` it first creates that file, so a test sees that it runs.
    """
    path = event["release_path"]
    if "started_path" in event:
        _write_atomically(event["started_path"], context.aws_request_id)
    while not os.path.exists(path):
        time.sleep(RELEASE_POLL_S)
    return "released"


def spin(event: dict[str, Any], context: Any) -> str:
    """Burn CPU until the file ``event["release_path"]`` exists, so a throttled platform keeps
    stopping and resuming it. It first starts ``event.get("children", 0)`` child processes that
    sleep (members of its process group) and writes ``{"pid": ..., "children": [...]}`` to
    ``event["pid_path"]`` (atomically), so a test knows every process of the function.
    """
    import subprocess
    import sys

    children = [
        subprocess.Popen(
            [sys.executable, "-c", "import time\nwhile True: time.sleep(60)"],
            stdin=subprocess.DEVNULL,
        ).pid
        for _ in range(int(event.get("children", 0)))
    ]
    _write_atomically(event["pid_path"], json.dumps({"pid": os.getpid(), "children": children}))
    path = event["release_path"]
    next_look = 0.0
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003
        now = time.monotonic()
        if now >= next_look:
            if os.path.exists(path):
                return "released"
            next_look = now + RELEASE_POLL_S


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def remaining_time(event: dict[str, Any], context: Any) -> list[int]:
    """``get_remaining_time_in_millis()`` before and after sleeping ``event["sleep_s"]``."""
    before = context.get_remaining_time_in_millis()
    time.sleep(float(event["sleep_s"]))
    return [before, context.get_remaining_time_in_millis()]


def barrier(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Party ``event["i"]`` of ``event["parties"]``: announce itself in the store
    ``event["store"]``, then wait for every other party, so that it returns only if all of them
    ran at the same time. It gives up (WaitTimeout) a second before its function's timeout.
    """
    from fasdl.store import open_store

    store = open_store(event["store"])
    store.put(f"arrived/{event['i']}", context.aws_request_id.encode())
    keys = [f"arrived/{j}" for j in range(int(event["parties"]))]
    seen = store.wait_all(
        keys,
        max(0.0, context.get_remaining_time_in_millis() / 1000 - 1.0),
        what=[f"party {j}" for j in range(len(keys))],
    )
    return {"i": event["i"], "seen": [blob.decode() for blob in seen]}


def record_interval(event: dict[str, Any], context: Any) -> None:
    """Append "REQUEST_ID START END" (epoch seconds, taken in the handler) to ``event["path"]``,
    after sleeping ``event.get("sleep_s", 0)``: the order and overlap of handlers, as they ran.
    """
    start = time.time()
    time.sleep(float(event.get("sleep_s", 0)))
    end = time.time()
    with open(event["path"], "a") as f:
        f.write(f"{context.aws_request_id} {start!r} {end!r}\n")
