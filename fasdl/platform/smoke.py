"""Smoke handlers (the Lambda signature) and ``run_smoke``, the job behind ``fasdl smoke``.

``handler`` does a small job and, on request, misbehaves in the ways the platform must handle;
``cnn_steps`` trains a tiny CNN for a few SGD steps, a CPU-bound job for checking CPU shares.
Only the standard library is imported at the top: a function at 128 MB must be able to load this.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Echo the event and sum squares; the event's keys ask for more:

    ``n`` (squares to sum, default 1000), ``sleep_s``, ``cpu_s`` (busy loop for that much CPU
    time), ``allocate_mb`` (touch that much memory and hold it), ``raise`` (raise RuntimeError
    with this message), ``exit_code`` (``os._exit``), ``signal`` (kill itself, e.g. "SIGSEGV"),
    ``print`` (write this line to stdout, which the platform keeps as the function's log),
    ``record_path`` (append {"request_id", "start", "end"} as a JSON line when done),
    ``child_allocate_mb`` (start a child process that holds that much memory; its pid goes to
    ``pid_path`` if given), ``fork_hold_s`` (fork: the copy shares every page, writes
    ``fork_write_mb`` MB of its own, holds them that long and exits; the function waits for it).
    """
    start = time.time()
    wall0, cpu0 = time.monotonic(), time.process_time()
    held = b""
    if "print" in event:
        print(event["print"], flush=True)
    if "allocate_mb" in event:
        held = b"\x01" * (int(event["allocate_mb"]) * 1024 * 1024)  # filled, so really resident
    if "child_allocate_mb" in event:
        code = f"b = b'\\x01' * ({int(event['child_allocate_mb'])} * 1024 * 1024)\nimport time\ntime.sleep(600)"
        child = subprocess.Popen([sys.executable, "-c", code])
        if "pid_path" in event:
            with open(event["pid_path"], "w") as f:
                f.write(str(child.pid))
    if "fork_hold_s" in event:
        pid = os.fork()
        if pid == 0:  # the copy: only what it writes is its own
            try:
                own = b"\x02" * (int(event.get("fork_write_mb", 0)) * 1024 * 1024)
                time.sleep(float(event["fork_hold_s"]))
                del own
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    if "sleep_s" in event:
        time.sleep(float(event["sleep_s"]))
    if "cpu_s" in event:
        while time.process_time() - cpu0 < float(event["cpu_s"]):
            pass
    if "raise" in event:
        raise RuntimeError(str(event["raise"]))
    if "exit_code" in event:
        os._exit(int(event["exit_code"]))
    if "signal" in event:
        os.kill(os.getpid(), signal.Signals[str(event["signal"])])
    n = int(event.get("n", 1000))
    result = {
        "echo": event.get("echo"),
        "sum_squares": sum(i * i for i in range(n)),
        "request_id": context.aws_request_id,
        "memory_mb": context.memory_limit_in_mb,
        "vcpus": context.vcpus,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "held_mb": len(held) // (1024 * 1024),
        "pid": os.getpid(),
        "wall_s": time.monotonic() - wall0,
        "cpu_s": time.process_time() - cpu0,
    }
    if "record_path" in event:
        line = json.dumps(
            {"request_id": context.aws_request_id, "start": start, "end": time.time()}
        )
        with open(event["record_path"], "a") as f:
            f.write(line + "\n")
    return result


def cnn_steps(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A few SGD steps of a tiny CNN on random 3x32x32 images (fixed seed).

    ``steps`` (default 5), ``batch_size`` (default 32), ``seed`` (default 0). The time returned
    is measured around the timed steps only: after the torch import, the model's creation and
    one warm-up step, so that process start and imports do not blur the CPU share.
    """
    import torch
    from torch import nn

    steps = int(event.get("steps", 5))
    batch_size = int(event.get("batch_size", 32))
    torch.manual_seed(int(event.get("seed", 0)))
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (batch_size,))

    def step() -> float:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return float(loss)

    step()  # warm-up: first-call allocations and kernel selection
    wall0, cpu0 = time.perf_counter(), time.process_time()
    loss = 0.0
    for _ in range(steps):
        loss = step()
    return {
        "elapsed_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "steps": steps,
        "loss": loss,
        "torch_threads": torch.get_num_threads(),
        "vcpus": context.vcpus,
    }


@dataclass(frozen=True)
class SmokeReport:
    """What ``fasdl smoke`` prints: every invocation's record and result, and the totals."""

    platform: str
    job: str
    wall_s: float
    records: list[dict[str, Any]]
    results: list[Any]

    @property
    def succeeded(self) -> int:
        return sum(r["state"] == "succeeded" for r in self.records)

    @property
    def total_gb_s(self) -> float:
        total: float = sum(r["gb_s"] for r in self.records)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "job": self.job,
            "wall_s": self.wall_s,
            "succeeded": self.succeeded,
            "invocations": len(self.records),
            "total_gb_s": self.total_gb_s,
            "records": self.records,
            "results": self.results,
        }


JOBS = {"cnn": "cnn_steps", "echo": "smoke"}
WAIT_SLACK_S = 60.0  # beyond the functions' timeout, for process start and queueing


def run_smoke(
    *,
    platform: str = "local",
    job: str = "cnn",
    memory_mb: int = 1769,
    timeout_s: float = 120,
    workers: int = 2,
    steps: int = 5,
) -> SmokeReport:
    """Invoke ``workers`` functions asynchronously, wait for all (with a deadline), report."""
    from fasdl.errors import InvalidInput
    from fasdl.platform.base import open_platform

    if job not in JOBS:
        raise InvalidInput("job", f"unknown job {job!r}", f"known: {', '.join(JOBS)}")
    if not 1 <= workers <= 1000:
        raise InvalidInput("workers", f"{workers} is outside 1–1000")
    if steps < 1:
        raise InvalidInput("steps", f"{steps} is below 1")
    started = time.monotonic()
    with open_platform(platform) as plat:
        invocations = [
            plat.invoke(
                JOBS[job],
                {"steps": steps, "seed": i, "echo": i},
                memory_mb=memory_mb,
                timeout_s=timeout_s,
            )
            for i in range(workers)
        ]
        deadline = time.monotonic() + timeout_s + WAIT_SLACK_S
        for inv in invocations:
            inv.wait(max(0.0, deadline - time.monotonic()))
        return SmokeReport(
            platform=platform,
            job=job,
            wall_s=time.monotonic() - started,
            records=[inv.record().to_dict() for inv in invocations],
            results=[inv.result_value for inv in invocations],
        )
