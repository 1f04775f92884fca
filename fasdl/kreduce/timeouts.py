"""How long a worker waits for a peer: derived from the job and the measured iterations.

A fixed timeout cannot fit every job: a large model at small memory takes minutes per iteration,
a small one a fraction of a second. Unless the user gives ``comm_timeout_s``, a worker waits in
iteration t for ``FACTOR`` times the slowest of its last ``RECENT_ITERATIONS`` iterations, and at
least ``FLOOR_S`` (a store outage of a minute stalls a job, it does not fail it). Before its first
iteration of an invocation nothing is measured yet: it waits ``FLOOR_S`` plus W times the model's
bytes at a pessimistic bandwidth that grows with the memory (an aggregator receives up to W
vectors' worth of pieces), plus ``FACTOR`` times its own first training step, scaled to the
largest batch of the job (its peers' steps). The start barrier (the coordinator's go) waits
``START_FLOOR_S`` (the coordinator allows 120 s for a round's functions to start) plus the time to
read a checkpoint (weights and momentum) at that bandwidth.

Nothing here asks the store: the rule uses the iteration logs the worker keeps anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.logs import IterationLog

FLOOR_S = 120.0  # never wait less for a peer
FACTOR = 10.0  # times the slowest recent iteration (or the first training step)
RECENT_ITERATIONS = 5
START_FLOOR_S = 300.0  # the go barrier: twice the coordinator's start slack, and a margin
# A pessimistic per-function bandwidth: 1 MB/s per 128 MB of memory, at most 10 MB/s. AWS Lambda
# measures 15-40 MB/s to S3 at 128 MB and 60-90 MB/s from 640 MB up
# (fasdl/presets/aws-lambda-s3-transfer-times.csv).
BANDWIDTH_PER_MB = 1e6 / 128  # bytes/s per MB of function memory
MAX_BANDWIDTH = 10e6  # bytes/s


def pessimistic_bandwidth(memory_mb: float) -> float:
    """Bytes per second a function of ``memory_mb`` surely moves to and from the store."""
    return min(memory_mb * BANDWIDTH_PER_MB, MAX_BANDWIDTH)


def first_iteration_bound_s(
    *, vector_bytes: int, memory_mb: float, num_workers: int, train_s: float
) -> float:
    """The wait before anything is measured: the floor, W vectors at the pessimistic bandwidth,
    and ``FACTOR`` times the slowest peer's training step (``train_s``)."""
    comm_s = num_workers * vector_bytes / pessimistic_bandwidth(memory_mb)
    return FLOOR_S + comm_s + FACTOR * train_s


def peer_wait_s(recent_iteration_s: Sequence[float], first_bound_s: float) -> float:
    """The rule: ``FACTOR`` times the slowest recent iteration, at least ``FLOOR_S``; with no
    iteration measured yet, ``first_bound_s``."""
    if not recent_iteration_s:
        return first_bound_s
    return max(FLOOR_S, FACTOR * max(recent_iteration_s))


def start_wait_s(*, vector_bytes: int, memory_mb: float) -> float:
    """The wait for the coordinator's go: ``START_FLOOR_S`` and a checkpoint (weights and
    momentum, 2 vectors) that the last peer may still be reading."""
    return START_FLOOR_S + 2 * vector_bytes / pessimistic_bandwidth(memory_mb)


@dataclass(frozen=True)
class PeerTimeouts:
    """One worker's waits: the user's ``comm_timeout_s`` if given, else derived (above)."""

    given_s: float | None
    vector_bytes: int
    memory_mb: int
    num_workers: int
    batch_ratio: float  # the job's largest batch / this worker's: its peers train that much longer

    @classmethod
    def for_worker(cls, cfg: JobConfig, worker: int, numel: int) -> PeerTimeouts:
        batches = cfg.batch_sizes
        return cls(
            given_s=cfg.comm_timeout_s,
            vector_bytes=4 * numel,  # float32
            memory_mb=cfg.memory_mb,
            num_workers=cfg.num_workers,
            batch_ratio=max(batches) / batches[worker],
        )

    def start_s(self) -> float:
        """How long to wait for the coordinator's go."""
        if self.given_s is not None:
            return self.given_s
        return start_wait_s(vector_bytes=self.vector_bytes, memory_mb=self.memory_mb)

    def exchange_s(self, logs: Sequence[IterationLog], train_s: float) -> float:
        """How long to wait for a peer in the next exchange, after this invocation's ``logs``
        and the training step ``train_s`` of the iteration about to exchange."""
        if self.given_s is not None:
            return self.given_s
        recent = [r.iteration_s for r in logs[-RECENT_ITERATIONS:]]
        if recent:
            return peer_wait_s(recent, FLOOR_S)
        first = first_iteration_bound_s(
            vector_bytes=self.vector_bytes,
            memory_mb=self.memory_mb,
            num_workers=self.num_workers,
            train_s=train_s * self.batch_ratio,
        )
        return peer_wait_s(recent, first)
