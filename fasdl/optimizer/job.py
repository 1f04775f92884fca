"""The whole job around the training loop: start-up, rounds, the slowest worker, evaluation,
and the requests the protocol really sends. Pure functions of numbers (numpy, vectorised).

    time  = rounds·startup(M) + upload             every round starts W functions (process,
                                                   imports, model; the largest partition's
                                                   load; the barrier); the coordinator puts
                                                   the partitions once
          + I·(T_iter + wait_W + wait_q)           the loop, with the expected wait for the slowest
                                                   of W workers' training (the profile's spread)
                                                   and for a peer stopped by its CPU quota
          + (rounds − 1)·checkpoint                write and read the checkpoints between rounds
          + evaluation                             the final model on the test set (coordinator)
    billed = W·M/1024·(rounds·startup + I·(T_iter + wait_W + wait_q) + (rounds − 1)·checkpoint)

Rounds follow the worker's own stop rule (``kreduce.worker._plan_stop``): aggregator 0 stops the
round at t+1 when fewer than ``STOP_AHEAD_ITERATIONS`` iterations and a margin are left before
the function time limit, counted from the invocation's start (start-up included). The constants
below mirror the trainer's; ``tests/unit/test_optimizer_job.py`` checks them against it (the
optimizer may not import ``kreduce``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fasdl.platform.limits import vcpus_for_memory

# The trainer's constants (mirrored, checked by the tests against kreduce):
STOP_AHEAD_ITERATIONS = 2 * 1.25  # kreduce.worker._plan_stop: stop when < 2.5 iterations are left
PROGRESS_EVERY_S = 1.0  # kreduce.worker: aggregator 0 puts its progress this often
COORDINATOR_POLL_S = 0.5  # kreduce.coordinator: it reads the progress this often while it waits
BARRIER_POLL_MAX_S = 0.05  # kreduce.coordinator: its longest pause between reads of the barrier
GO_POLL_MAX_S = 0.05  # kreduce.worker: a worker's longest pause between reads of the go
CHECKPOINT_VECTORS = 2  # a checkpoint holds the weights and the optimizer's momentum

# GETs sent per GET that carries data: a wait polls the exact key until it appears. Where the
# sender does not wait for the receiver (a non-aggregator's stale merged chunks, an aggregator's
# pieces from non-aggregators) the first GET goes when the sender's stamps say the object is due
# (``kreduce.protocol``), and few miss; aggregators waiting for each other (and synchronous
# non-aggregators for the merged chunk of their own iteration) poll at once, and miss whenever
# the peer is late. Measured in the jobs of benchmarks/predict.py (training between exchanges):
# 1.20 for W=2, K=1 (all scheduled), 1.77 for W=3, K=3 (all in a ring), and W=4, K=2, with 2/3
# of its data GETs scheduled, 1.43 (1.25·2/3 + 1.75·1/3 = 1.42). A user checks them from a run's
# ``requests`` against the plan's.
POLL_FACTOR = 1.25  # scheduled waits
RING_POLL_FACTOR = 1.75  # waits in a ring

KEYS_PER_DELETE = 1000  # S3 DeleteObjects takes up to 1,000 keys in one request
_EPS = 1e-9


def barrier_s() -> float:
    """Seconds from the last worker's arrival at the start barrier to the first iteration: the
    coordinator sees it within ``BARRIER_POLL_MAX_S`` and puts the go, which the waiting workers
    see within ``GO_POLL_MAX_S``; half of each on average."""
    return (BARRIER_POLL_MAX_S + GO_POLL_MAX_S) / 2


def stop_margin_s(func_time_s: Any) -> Any:
    """The margin the worker keeps before the time limit (the checkpoint, the slowest worker's lag)."""
    return np.maximum(1.0, 0.05 * np.asarray(func_time_s, dtype=float))


def iterations_per_round(
    func_time_s: Any, startup_s: Any, iteration_s: Any, train_s: Any
) -> np.ndarray:
    """How many iterations one round runs before the workers checkpoint and are re-invoked.

    Aggregator 0 decides after training iteration t, at (k−1)·T + train into the loop of a
    round that began ``startup_s`` after the invocation: it stops at t+1 as soon as the time
    left is below 2.5·T + margin. So the k-th iteration is the last decision and k+1 run.
    At least 2 (the earliest stop is t+1); ``inf`` where T is not positive.
    """
    F, S, T, tr = (
        np.asarray(x, dtype=float) for x in (func_time_s, startup_s, iteration_s, train_s)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        spare = F - S - tr - STOP_AHEAD_ITERATIONS * T - stop_margin_s(F)
        n = np.where(spare >= 0, np.floor(spare / T + _EPS) + 3, 2.0)
        out: np.ndarray = np.where(T > 0, n, np.inf)
        return out


def rounds(iterations: Any, per_round: Any) -> np.ndarray:
    """Invocations per worker: ⌈I / iterations per round⌉ (at least 1)."""
    its, n = np.asarray(iterations, dtype=float), np.asarray(per_round, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r: np.ndarray = np.maximum(1.0, np.ceil(its / np.maximum(n, 1) - _EPS))
        return r


def expected_max_std_normal(n: Any) -> np.ndarray:
    """E[max of n independent standard normals] (0 for n = 1; 0.564 for 2, 1.539 for 10).

    Integrated numerically, E[max] = ∫ x·n·φ(x)·Φ(x)^(n−1) dx, on a fixed grid; exact to 1e-6."""
    from scipy.special import ndtr

    n_arr = np.asarray(n, dtype=float)
    flat = np.unique(n_arr[np.isfinite(n_arr) & (n_arr >= 1)])
    x = np.linspace(-9.0, 9.0, 4001)
    dx = x[1] - x[0]
    pdf = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    cdf = ndtr(x)
    ks = flat[:, None]
    values = np.where(
        ks > 1, np.sum(x * ks * pdf * cdf ** np.maximum(ks - 1, 0), axis=1, keepdims=True) * dx, 0.0
    )[:, 0]
    out = np.zeros(n_arr.shape, dtype=float)
    valid = np.isin(n_arr, flat)
    out[valid] = values[np.searchsorted(flat, n_arr[valid])]
    return out


def straggler_wait_s(train_s: Any, train_cv: Any, num_workers: Any) -> np.ndarray:
    """Expected seconds per iteration that the critical path waits for the slowest of W workers'
    training: σ·E[max of W standard normals], σ = cv·train (one worker's spread). Non-aggregators
    run at the aggregators' rate (their batch fills the iteration), so all W count."""
    train, cv = np.asarray(train_s, dtype=float), np.asarray(train_cv, dtype=float)
    if not np.any(cv):
        return np.zeros(np.broadcast(train, cv, np.asarray(num_workers)).shape)
    wait: np.ndarray = train * cv * expected_max_std_normal(num_workers)
    return wait


def quota_wait_s(memory_mb: Any, num_workers: Any, cpu_period_s: float | None) -> np.ndarray:
    """Expected seconds per iteration that the workers wait for a peer stopped by its CPU quota.

    A function with q = vCPUs(M) < 1 runs at full speed until its quota of the period P is spent,
    then is stopped for the rest of it, (1 − q)·P. Its own iterations run at the profile's rate
    (the profile times blocks of many periods), but a peer that needs its piece or merged chunk
    while it is stopped waits for the rest of the stop: half of it on average, (1 − q)·P/2 per
    iteration. Measured on the local platform (P = 50 ms, resnet8, benchmarks/predict.py): the
    exchange waited 11 ms per iteration beyond its transfers at W = 4, q = 0.5 (12.5 by this
    formula), 9 ms at W = 3, q = 0.65 (8.75), 1 ms at q = 1 (0). 0 with one worker, at a whole
    vCPU or more, or where the platform's period is not known."""
    q = np.minimum(1.0, vcpus_for_memory(np.asarray(memory_mb, dtype=float)))
    W = np.asarray(num_workers, dtype=float)
    if not cpu_period_s:
        return np.zeros(np.broadcast(q, W).shape)
    wait: np.ndarray = np.where(W > 1, (1.0 - q) * cpu_period_s / 2, 0.0)
    return wait


def checkpoint_s(num_aggregators: Any, put_s: Any, get_s: Any) -> np.ndarray:
    """Seconds to write and later read one worker's checkpoint: ``CHECKPOINT_VECTORS`` vectors of
    S MB, priced as K chunks of S/K (the transfer times at hand), each put once and got once.
    (With a narrower wire than fp32 the chunks are smaller than the checkpoint's float32: the
    term is then low; it is milliseconds against seconds of start-up per round.)"""
    K, put, get = (np.asarray(x, dtype=float) for x in (num_aggregators, put_s, get_s))
    out: np.ndarray = CHECKPOINT_VECTORS * K * (put + get)
    return out


def request_counts(
    *,
    iterations: Any,
    num_workers: Any,
    num_aggregators: Any,
    rounds: Any,
    loop_s: Any,
    job_s: Any,
    synchronous: bool = False,
) -> dict[str, np.ndarray]:
    """The store requests of a whole job, by kind: the protocol's data-carrying requests, its
    polls (``POLL_FACTOR`` for scheduled waits, ``RING_POLL_FACTOR`` for the rest), and the
    per-round and per-job bookkeeping.

    Per iteration: every worker puts the pieces of the chunks it does not own (K−1 or K), each
    aggregator gets W−1 pieces, puts its merged chunk, gets the K−1 other merged chunks and
    deletes what it consumed in one request; each non-aggregator gets the K merged chunks:
    W·K PUTs, 2K(W−1) data GETs, K DELETEs. Of the data GETs, the 2K(K−1) between aggregators
    are in a ring, and so are the non-aggregators' K(W−K) when they are synchronous. Per round and worker: the partition (GET), the
    barrier (PUT arrived, GET go), the log (PUT), and between rounds a checkpoint (PUT, GET).
    Per job: the partitions (W PUTs), the model, the job's state and summary; aggregator 0's
    progress (a PUT per ``PROGRESS_EVERY_S``) and the coordinator's reads of it (a GET per
    ``COORDINATOR_POLL_S``).
    """
    its, W, K, R, loop, job = (
        np.asarray(x, dtype=float)
        for x in (iterations, num_workers, num_aggregators, rounds, loop_s, job_s)
    )
    restarts = R - 1
    ring = 2 * K * (K - 1) + (K * (W - K) if synchronous else 0.0)
    data_gets = its * 2 * K * (W - 1)
    ring_gets = its * ring
    # A resumed aggregator puts its merged chunk again for the non-aggregators (K-Reduce only).
    republish = 0.0 if synchronous else restarts * np.where(K < W, K, 0.0)
    put = (
        its * W * K
        + W  # partitions
        + R * (2 * W + 2)  # arrived and log per worker; go and the job's state per round
        + restarts * W  # checkpoints
        + republish
        + 4  # model, summary, invocations, the job's state at the start
        + np.floor(loop / PROGRESS_EVERY_S)
    )
    get = (
        POLL_FACTOR * (data_gets - ring_gets)
        + RING_POLL_FACTOR * ring_gets
        + R * 2 * W  # partition and go per worker and round
        + restarts * W  # checkpoints
        + 1  # the model, for the final evaluation
        + np.floor(job / COORDINATOR_POLL_S)
    )
    # Waits poll exact keys: the coordinator lists only to clean up (its attempt's prefixes
    # and the stale checkpoints after each round, the scratch prefixes at the end, the job's
    # outputs once at the start), each list followed by one delete.
    cleanups = 3 * R + 4
    return {
        "PUT": put,
        "GET": get,
        "LIST": cleanups,
        # each aggregator deletes what it consumed in one multi-object request per iteration
        "DELETE": its * K * np.ceil(W / KEYS_PER_DELETE) + cleanups,
    }
