"""The child side of a local-platform invocation: ``python -m fasdl.platform._runner SPEC_PATH``.

The spec file (JSON, written by ``local.py``) holds the target "module:function", the event, the
context and where to write the outcome. The outcome file is written atomically (a temporary name,
then a rename), so the parent either finds a whole outcome or none: none means the process died.

A watchdog thread ends the process if its parent disappears or if it outlives its deadline by a
grace period. It cannot act while the CPU throttle has the process stopped: the platform's reaper
(``_reaper.py``) is what ends a killed owner's functions; the watchdog covers the moment between a
function's start and the reaper hearing of it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import traceback
from typing import Any

RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024  # Lambda's limit on a synchronous response
WATCHDOG_GRACE_S = 10.0
WATCHDOG_INTERVAL_S = 0.5


def _watchdog(parent_pid: int, hard_deadline_monotonic: float) -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL_S)
        if os.getppid() != parent_pid or time.monotonic() > hard_deadline_monotonic:
            os._exit(137)


def _write_outcome(path: str, outcome: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(outcome, allow_nan=False))
    os.replace(tmp, path)


def _set_torch_threads(threads: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Load and call the handler; return the outcome (never raises for the handler's faults)."""
    from fasdl.platform.base import Context, load_handler
    from fasdl.platform.proctree import self_peak_rss_mb

    remaining_s = spec["deadline_epoch"] - time.time()
    context = Context(
        function_name=spec["function_name"],
        memory_limit_in_mb=spec["memory_mb"],
        aws_request_id=spec["request_id"],
        deadline_monotonic=time.monotonic() + remaining_s,
        vcpus=spec["vcpus"],
        cpu_period_s=spec.get("cpu_period_s"),
    )
    threads = max(1, math.ceil(spec["vcpus"]))
    started = time.monotonic()
    try:
        # The parent set OMP/MKL_NUM_THREADS, which torch obeys when imported later; a handler
        # module that imports torch at the top gets the count set here as well.
        func = load_handler(spec["target"])
        _set_torch_threads(threads)
        result = func(spec["event"], context)
        try:
            body = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"the handler's result is not JSON-serialisable: {e}") from e
        if len(body) > RESPONSE_LIMIT_BYTES:
            raise ValueError(
                f"response of {len(body):,} bytes is over the {RESPONSE_LIMIT_BYTES:,}-byte limit"
            )
        outcome: dict[str, Any] = {"ok": True, "result": result}
    except Exception as e:
        outcome = {
            "ok": False,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }
    outcome["handler_s"] = time.monotonic() - started
    outcome["peak_rss_mb"] = self_peak_rss_mb()
    return outcome


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m fasdl.platform._runner SPEC_PATH", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    sys.path[:] = spec.get("sys_path") or sys.path
    hard_deadline = time.monotonic() + (spec["deadline_epoch"] - time.time()) + WATCHDOG_GRACE_S
    threading.Thread(
        target=_watchdog, args=(spec["parent_pid"], hard_deadline), daemon=True
    ).start()
    outcome = run(spec)
    _write_outcome(spec["outcome_path"], outcome)
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (and stray non-daemon threads): the outcome is already written.
    os._exit(code)
