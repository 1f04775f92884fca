"""A real store outage: SeaweedFS stopped for ~10 s and started again on the same ports and data.

Calls made during the outage block in their retries and succeed once the server is back; a
whole K-Reduce job on the local platform (its coordinator here, its workers in processes) rides
the outage out and ends with the same weights as a job without one.

Nothing waits on a fixed sleep for something to happen: the outage starts when the test has
seen the job reach an iteration, and the server comes back once the test has seen the calls
fail and retry. Only the outage's length is a measured stretch of time (``OUTAGE_S``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from fasdl.errors import StoreUnavailable
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import final_vector, run_job
from fasdl.kreduce.worker import MIN_ITERATION_ENV
from fasdl.store import open_store
from fasdl.store.s3 import S3Store
from fasdl.testing import SeaweedServer

pytestmark = [pytest.mark.s3, pytest.mark.slow]

OUTAGE_S = 10.0  # how long the server stays down, from the moment it is stopped
GENEROUS_S = 300.0  # every deadline here: the retry budget, the waits, the joins
BUCKET = "outage"


@pytest.fixture(scope="module")
def _server() -> Iterator[SeaweedServer]:
    """A SeaweedFS of our own: the session's server is not ours to stop."""
    with SeaweedServer() as server:
        server.make_bucket(BUCKET)
        yield server


@pytest.fixture
def server(_server: SeaweedServer) -> Iterator[SeaweedServer]:
    yield _server
    if not _server.running:  # a failed test left it down: the next one needs it
        _server.start()


def _url(server: SeaweedServer, prefix: str) -> str:
    """The store under ``prefix``, with a retry budget far longer than any outage here."""
    return server.url(BUCKET, prefix) + f"&retry_s={GENEROUS_S:g}"


class StoreFailures(logging.Handler):
    """What the stores in this process say when they find the store unavailable."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("store unavailable"):
            with self.changed:
                self.messages.append(message)
                self.changed.notify_all()

    def await_(self, predicate: Callable[[list[str]], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self.messages), GENEROUS_S):
                raise AssertionError(f"never saw {what}; saw {self.messages}")

    def saw(self, text: str) -> bool:
        with self.changed:
            return any(text in m for m in self.messages)


@contextmanager
def watching_store_failures() -> Iterator[StoreFailures]:
    logger = logging.getLogger("fasdl.store.base")
    handler, level = StoreFailures(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _await(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GENEROUS_S
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)


def _in_thread(results: dict[str, Any], name: str, call: Callable[[], Any]) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = call()
        except BaseException as e:
            results[name] = e

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t


def test_put_get_and_wait_block_through_an_outage_and_succeed(server: SeaweedServer) -> None:
    url = _url(server, "calls")
    store = open_store(url)
    store.put("old", b"written before the outage")
    payload = os.urandom(256 << 10)
    results: dict[str, Any] = {}
    with watching_store_failures() as failures:
        # A wait that starts while the server is up, for a key written after the outage.
        waiter = _in_thread(
            results, "wait", lambda: store.wait("new", GENEROUS_S, what="the post-outage key")
        )
        _await(lambda: store.requests["GET"] >= 2, "the wait polling")
        t0 = time.monotonic()
        server.stop(keep=True)
        down_at = time.monotonic()
        putter = _in_thread(results, "put", lambda: store.put("during", payload))
        getter = _in_thread(results, "get", lambda: store.get("old"))
        # A worker opening the job's store during the outage waits for the server.
        opener = _in_thread(results, "open", lambda: open_store(url, patient=True).get("old"))
        calls = (waiter, putter, getter, opener)
        # Each call has found the store down and is retrying (or polling, for the wait).
        expected = (
            "retrying PUT 'during'",
            "retrying GET 'old'",
            "waiting for 'new'",
            f"retrying HEAD bucket '{BUCKET}'",
        )
        failures.await_(
            lambda seen: all(any(text in m for m in seen) for text in expected),
            "every call fail and retry",
        )
        # Giving up, for real: a store with a 2 s budget fails in the outage, naming the call.
        impatient = S3Store(
            BUCKET, "calls", endpoint_url=server.endpoint_url, check=False, retry_s=2
        )
        with pytest.raises(StoreUnavailable, match=r"PUT 'x' failed on .* unavailable for \d"):
            impatient.put("x", b"x")
        time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
        assert results == {}, "the calls should block through the outage, not end"
        assert all(t.is_alive() for t in calls)
        server.start()
        up_at = time.monotonic()
        open_store(url).put("new", b"written after the outage")
        for t in calls:
            t.join(GENEROUS_S)
        done_at = time.monotonic()
    assert results == {
        "put": None,
        "get": b"written before the outage",
        "wait": b"written after the outage",
        "open": b"written before the outage",
    }
    assert store.get("during") == payload
    print(
        f"\noutage: stopped in {down_at - t0:.1f}s, down {up_at - down_at:.1f}s "
        f"(restart included), calls done {done_at - up_at:.1f}s after"
    )


# -- a whole job -------------------------------------------------------------------------------
JOB = {
    "model": "mlp",
    "dataset": "synthetic:600",
    "num_workers": 3,
    "num_aggregators": 1,
    "batch_size_agg": 16,
    "batch_size_wor": 8,
    "epochs": 2,
    "lr": 0.05,
    "memory_mb": 512,
    "func_time_s": 900,
    "comm_timeout_s": GENEROUS_S,
    "platform": "local",
}
OUTAGE_AT_ITERATION = 3
# Every iteration of the stormy job lasts at least this long (a worker test hook), so that the
# job is still running when the server has stopped (it takes ~3 s to stop), however fast the
# machine: (36 - 3 - a few) iterations × 0.5 s is far longer than that.
MIN_ITERATION_S = 0.5


def test_a_whole_job_rides_out_an_outage_with_the_same_weights(
    server: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _url(server, "jobs")
    calm = JobConfig(**JOB, store=url, job_id="calm")
    calm_summary = run_job(calm)
    expected = final_vector(calm)

    stormy = JobConfig(**JOB, store=url, job_id="stormy")
    monkeypatch.setenv(MIN_ITERATION_ENV, str(MIN_ITERATION_S))
    timeline: list[tuple[float, int]] = []  # (monotonic time, iteration) of each progress update
    reached, job_over = threading.Event(), threading.Event()
    outage: dict[str, Any] = {}

    def progress(update: Any) -> None:
        timeline.append((time.monotonic(), int(update.iteration)))
        if update.iteration >= OUTAGE_AT_ITERATION:
            reached.set()

    def make_an_outage(failures: StoreFailures) -> None:
        while not reached.wait(0.1):
            if job_over.is_set():
                return
        outage["iteration"] = timeline[-1][1]
        server.stop(keep=True)
        outage["down"] = time.monotonic()
        # The coordinator (this process) polls the store: it runs into the outage too.
        failures.await_(lambda seen: len(seen) > 0, "the coordinator find the store down")
        outage["coordinator_saw"] = failures.messages[0]
        time.sleep(max(0.0, outage["down"] + OUTAGE_S - time.monotonic()))
        server.start()
        outage["up"] = time.monotonic()

    with watching_store_failures() as failures:
        errors: dict[str, Any] = {}
        controller = _in_thread(errors, "outage", lambda: make_an_outage(failures))
        try:
            t0 = time.monotonic()
            summary = run_job(stormy, progress=progress)
            took = time.monotonic() - t0
        finally:
            job_over.set()
            controller.join(GENEROUS_S)
    assert errors.get("outage") is None, errors
    assert "up" in outage, "the outage never happened"
    assert summary.iterations == calm_summary.iterations > outage["iteration"]
    # the outage stalled the job, it did not fail a round (which a retry would have hidden)
    assert getattr(summary, "retries", []) == [] and summary.rounds == calm_summary.rounds
    # mid-job: the job went on training after the server came back
    after = [it for t, it in timeline if t > outage["up"]]
    assert after and max(after) > outage["iteration"], (outage, timeline)
    np.testing.assert_array_equal(final_vector(stormy), expected)
    print(
        f"\njob: outage at iteration {outage['iteration']} of {summary.iterations}, down "
        f"{outage['up'] - outage['down']:.1f}s; the job took {took:.1f}s "
        f"(the calm one {calm_summary.wall_time_s:.1f}s); coordinator: {outage['coordinator_saw']}"
    )
