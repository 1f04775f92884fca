"""The time and cost model of a K-Reduce job: pure functions of numbers, vectorised with numpy.

A configuration is (W workers, K aggregators, M MB per function). Every constant comes from the
coefficients, the transfer times (``put_s``, ``get_s`` of one chunk of S/K MB from a function of
M MB) or the price table. ScatterReduce is K = W, AllReduce K = 1: the same formulas.

Per iteration, with one object transferred at a time by each function:

    aggregator:      train(B) + trans + (K−1)·put + [(W−1)·get + put] + (K−1)·get   = the iteration
    non-aggregator:  train(A) + trans +     K·put                     +     K·get   ≤ the iteration

A is the largest whole batch that keeps the non-aggregator's cycle within the aggregators'
iteration and the global batch K·B + (W−K)·A within its cap. See docs/optimizer.md.

The synchronous baselines (``synchronous=True``): every worker trains the same batch B and
waits for merged(t). With K = W (ScatterReduce) that is the aggregator's cycle above. With K < W
(LambdaML's AllReduce, K = 1) a non-aggregator gets the K merged chunks of t only after they are
put, trains, and puts its pieces of t+1, which the aggregators wait for: its get and put join the
critical path, so the iteration is the aggregator's + get + put.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from fasdl.errors import InvalidInput
from fasdl.optimizer.job import (
    barrier_s,
    checkpoint_s,
    iterations_per_round,
    quota_wait_s,
    request_counts,
    rounds,
    straggler_wait_s,
)
from fasdl.perf.coefficients import Coefficients
from fasdl.perf.transfer import wire_size_mb
from fasdl.platform.limits import MAX_TIMEOUT_S, check_timeout_s, vcpus_for_memory
from fasdl.pricing import Prices
from fasdl.validate import positive_number, whole_number

DEFAULT_GAMMA = 0.8
DEFAULT_MAX_GLOBAL_BATCH = 1024
MB_PER_GB = 1024  # Lambda bills memory in GB of 1,024 MB
_EPS = 1e-9  # absorbs float error before a floor or ceil


class Problem(IntEnum):
    """Why a configuration cannot run (``OK``: it can). The values are stable: they are what
    ``Evaluation.problem`` holds, an int8 array."""

    OK = 0
    K_OUT_OF_RANGE = 1
    AGGREGATOR_BATCHES_OVER_CAP = 2
    NONAGG_CANNOT_TRAIN_ONE_SAMPLE = 3
    NONAGG_BATCH_UNDER_ONE = 4
    ITERATION_OVER_FUNCTION_TIME = 5
    MEMORY_NOT_ABOVE_M = 6
    GLOBAL_BATCH_OVER_DATA = 7
    OVER_MAX_VCPUS = 8
    EQUAL_BATCHES_OVER_CAP = 9

    @property
    def reason(self) -> str:
        return _REASONS[self]


_REASONS = {
    Problem.OK: "",
    Problem.K_OUT_OF_RANGE: "K must be between 1 and W",
    Problem.AGGREGATOR_BATCHES_OVER_CAP: "the aggregators' batches alone exceed the global batch cap",
    Problem.NONAGG_CANNOT_TRAIN_ONE_SAMPLE: "a non-aggregator cannot train one sample within an iteration",
    Problem.NONAGG_BATCH_UNDER_ONE: "the global batch cap leaves less than one sample per non-aggregator",
    Problem.ITERATION_OVER_FUNCTION_TIME: "one iteration takes longer than the function time limit",
    Problem.MEMORY_NOT_ABOVE_M: "M + m ≤ 0: the training model is undefined at this memory",
    Problem.GLOBAL_BATCH_OVER_DATA: "the global batch is larger than the data: no full iteration",
    Problem.OVER_MAX_VCPUS: "the functions running at once ask for more vCPUs than max_vcpus",
    Problem.EQUAL_BATCHES_OVER_CAP: "W equal batches exceed the global batch cap",
}
OK = Problem.OK
PROBLEMS = {p: p.reason for p in Problem if p is not Problem.OK}  # code -> why


def batch_size_agg(b: float, gamma: float) -> int:
    """The aggregators' batch B: the smallest whole B with B/(B + b) ≥ γ.

    γ is the share of an iteration's training time spent on samples rather than on the fixed
    overhead b. For b ≤ 0 the fit shows no fixed overhead, any batch reaches γ, and B is the
    smallest batch with a positive training time (B + b > 0).
    """
    if not 0 < gamma < 1:
        raise InvalidInput("gamma", f"{gamma:g} must be strictly between 0 and 1")
    if b <= 0:
        return max(1, math.floor(-b) + 1)
    return max(1, math.ceil(gamma * b / (1 - gamma) - _EPS))


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Everything fixed about a job: the model's coefficients, the data, the prices, the caps."""

    coeffs: Coefficients
    prices: Prices
    samples: int
    epochs: int
    max_global_batch: int = DEFAULT_MAX_GLOBAL_BATCH
    gamma: float = DEFAULT_GAMMA
    func_time_s: float = MAX_TIMEOUT_S
    max_vcpus: float | None = (
        None  # cap on W·vCPUs(M), e.g. the cores of a machine running the local platform
    )
    test_samples: int = 0  # the final evaluation's samples (coeffs' eval_s_per_sample each)
    wire: str = "fp32"  # how the vector travels (``fasdl train --wire``): sets its bytes

    def __post_init__(self) -> None:
        wire_size_mb(1.0, self.wire)  # validates the wire format
        for name in ("samples", "epochs", "max_global_batch"):
            whole_number(getattr(self, name), name, minimum=1)
        whole_number(self.test_samples, "test_samples", minimum=0)
        check_timeout_s(self.func_time_s, "func_time_s")
        if self.coeffs.model_size_mb is None:
            raise InvalidInput(
                "coeffs: model_size_mb",
                "unknown (null): the model's size sets every transfer time",
                "refit with `fasdl fit --model-size-mb MB`, or write it into coeffs.json",
            )
        batch_size_agg(self.coeffs.b, self.gamma)  # validates gamma
        if self.max_vcpus is not None:
            positive_number(self.max_vcpus, "max_vcpus", unit="vCPUs")

    @property
    def batch_size_agg(self) -> int:
        return batch_size_agg(self.coeffs.b, self.gamma)

    @property
    def model_size_mb(self) -> float:
        """The size of the vector K-Reduce sends (known: ``__post_init__`` refuses null)."""
        assert self.coeffs.model_size_mb is not None
        return self.coeffs.model_size_mb

    @property
    def wire_size_mb(self) -> float:
        """The vector's MB on the wire: float32's ``model_size_mb`` × the wire's bytes per value
        / 4 (fp16 and bf16 half, int8 about a quarter). What every transfer time is taken at."""
        return wire_size_mb(self.model_size_mb, self.wire)

    @property
    def global_batch_cap(self) -> int:
        """The largest global batch: the user's cap, and never more than the data."""
        return min(self.max_global_batch, self.samples)

    @property
    def max_aggregators(self) -> int:
        return self.global_batch_cap // self.batch_size_agg

    def workers_within_vcpus(self, memory_mb: Any) -> np.ndarray:
        """The most functions of ``memory_mb`` that fit ``max_vcpus`` (no cap: a huge number)."""
        m = np.asarray(memory_mb, dtype=float)
        if self.max_vcpus is None:
            return np.full(m.shape, np.iinfo(np.int64).max // 2, dtype=np.int64)
        workers: np.ndarray = np.floor(self.max_vcpus / vcpus_for_memory(m) + _EPS).astype(np.int64)
        return workers

    def max_workers_for(self, num_aggregators: int) -> int:
        """Beyond this W a non-aggregator's share of the global batch cap is below one sample."""
        return num_aggregators + max(
            0, self.global_batch_cap - num_aggregators * self.batch_size_agg
        )


@dataclass(frozen=True)
class Evaluation:
    """The model's numbers for many configurations at once (arrays of one broadcast shape)."""

    num_workers: np.ndarray
    num_aggregators: np.ndarray
    memory_mb: np.ndarray
    batch_size_wor: np.ndarray
    global_batch: np.ndarray
    iterations: np.ndarray
    train_s: np.ndarray  # per iteration, on the aggregators' critical path
    transform_s: np.ndarray
    upload_s: np.ndarray
    aggregate_s: np.ndarray
    download_s: np.ndarray
    iteration_s: np.ndarray  # the critical path of one iteration, without the wait below
    straggler_s: np.ndarray  # per iteration: the expected wait for the slowest of W workers
    quota_s: np.ndarray  # per iteration: the expected wait for a peer stopped by its CPU quota
    loop_s: np.ndarray  # iterations·(iteration_s + straggler_s + quota_s)
    startup_s: np.ndarray  # every round's start-up, in all, and the upload of the partitions
    checkpoint_s: np.ndarray  # every checkpoint between rounds, in all
    evaluation_s: np.ndarray  # the final evaluation
    time_s: np.ndarray  # the whole job: the four terms above and the loop
    invocations: np.ndarray  # per worker: the rounds
    gb_seconds: np.ndarray
    requests: dict[str, np.ndarray]
    functions_usd: np.ndarray
    invocations_usd: np.ndarray
    store_usd: np.ndarray
    cost_usd: np.ndarray
    problem: np.ndarray  # int8 Problem codes: Problem.OK (0) where the configuration can run

    @property
    def ok(self) -> np.ndarray:
        ok: np.ndarray = self.problem == OK
        return ok


def nonagg_batch_by_time(
    scenario: Scenario,
    num_workers: Any,
    num_aggregators: Any,
    memory_mb: Any,
    put_s: Any,
    get_s: Any,
    *,
    batch_size_agg: int | None = None,
) -> np.ndarray:
    """The largest whole batch a non-aggregator trains within the aggregators' iteration
    (before the global batch cap). Nondecreasing in W. May be < 1 (then W > K cannot run)."""
    c = scenario.coeffs
    B = scenario.batch_size_agg if batch_size_agg is None else batch_size_agg
    W, K, M = (np.asarray(x, dtype=float) for x in (num_workers, num_aggregators, memory_mb))
    put, get = np.asarray(put_s, dtype=float), np.asarray(get_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        iteration = _iteration_s(c, B, W, K, M, put, get)[-1]
        spare = iteration - c.k1 * M**c.k2 - K * put - K * get
        batch: np.ndarray = np.floor(spare * (M + c.m) / c.a - c.b + _EPS)
        return batch


def iteration_s(
    scenario: Scenario,
    num_workers: Any,
    num_aggregators: Any,
    memory_mb: Any,
    put_s: Any,
    get_s: Any,
) -> np.ndarray:
    """The aggregators' iteration alone (cheaper than ``evaluate``)."""
    W, K, M, put, get = (
        np.asarray(x, dtype=float) for x in (num_workers, num_aggregators, memory_mb, put_s, get_s)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return _iteration_s(scenario.coeffs, scenario.batch_size_agg, W, K, M, put, get)[-1]


def _iteration_s(
    c: Coefficients,
    B: int,
    W: np.ndarray,
    K: np.ndarray,
    M: np.ndarray,
    put: np.ndarray,
    get: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = c.a * (B + c.b) / (M + c.m)
    trans = c.k1 * M**c.k2
    upload = (K - 1) * put  # every chunk but its own
    aggregate = (W - 1) * get + put  # the W−1 pieces of its chunk, then the merged chunk
    download = (K - 1) * get  # the other aggregators' merged chunks
    return train, trans, upload, aggregate, download, train + trans + upload + aggregate + download


def evaluate(
    scenario: Scenario,
    num_workers: Any,
    num_aggregators: Any,
    memory_mb: Any,
    put_s: Any,
    get_s: Any,
    *,
    synchronous: bool = False,
    batch_size_agg: int | None = None,
) -> Evaluation:
    """Time, cost and feasibility of configurations; ``put_s``/``get_s`` are the times of one
    chunk (S/K MB) at memory M. All arguments broadcast together.

    ``synchronous``: the baselines' rule (every worker trains B and waits for merged(t));
    ``batch_size_agg`` replaces the scenario's B (to price a baseline at a plan's global batch).
    """
    c, p = scenario.coeffs, scenario.prices
    B = scenario.batch_size_agg if batch_size_agg is None else batch_size_agg
    W, K, M, put, get = np.broadcast_arrays(
        *(
            np.asarray(x, dtype=float)
            for x in (num_workers, num_aggregators, memory_mb, put_s, get_s)
        )
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        train, trans, upload, aggregate, download, iteration = _iteration_s(c, B, W, K, M, put, get)
        nonagg = W - K
        if synchronous:
            iteration = iteration + np.where(nonagg > 0, get + put, 0.0)
            by_time = np.full_like(W, B)
            by_cap = np.full_like(W, B)
            A = np.full_like(W, B)
        else:
            by_time = nonagg_batch_by_time(scenario, W, K, M, put, get, batch_size_agg=B)
            by_cap = np.floor((scenario.global_batch_cap - K * B) / np.maximum(nonagg, 1))
            A = np.where(nonagg > 0, np.minimum(by_time, by_cap), B)
        global_batch = K * B + nonagg * A
        # As the trainer runs them: the partition drops D mod Bg samples, so each epoch has
        # floor(D/Bg) iterations (the paper's floor(D*E/Bg) can count one more per few epochs).
        iterations = np.where(
            global_batch > 0,
            np.floor(scenario.samples / np.maximum(global_batch, 1)) * scenario.epochs,
            0,
        )
        # The whole job (fasdl/optimizer/job.py): the loop with the wait for the slowest
        # worker, a start-up per round, checkpoints between rounds, the final evaluation.
        # A round's start: the function, the largest partition's load (partitions follow the
        # batches), the barrier.
        largest = scenario.samples * np.maximum(B, A) / np.maximum(global_batch, 1)
        largest = np.where(np.isfinite(largest), np.maximum(largest, 0.0), 0.0)
        # (the barrier with the start-up it follows: a coeffs.json without it leaves both out)
        barrier = 0.0 if c.startup_fixed_s is None and c.startup_cpu_s is None else barrier_s()
        startup_each = c.startup_s(M) + c.partition_load_s(M, largest) + barrier
        straggler = straggler_wait_s(train, c.train_cv_at(M), W)
        quota = quota_wait_s(M, W, c.cpu_period_s)
        step = iteration + straggler + quota
        loop = iterations * step
        # Workers stop at an iteration boundary before the function time limit, then re-invoke.
        invocations = rounds(
            iterations, iterations_per_round(scenario.func_time_s, startup_each, step, train)
        )
        restarts = invocations - 1
        started = invocations * startup_each
        # the coordinator's upload of the partitions comes before the first round (not billed)
        startup = started + (c.data_upload_s or 0.0)
        checkpoints = restarts * checkpoint_s(K, put, get)
        evaluation = np.full_like(
            W,
            (c.eval_fixed_s or 0.0) + (c.eval_s_per_sample or 0.0) * scenario.test_samples
            if scenario.test_samples > 0
            else 0.0,
        )
        billed_s = started + loop + checkpoints  # each worker, from its invocations' starts to ends
        time_s = startup + loop + checkpoints + evaluation
        gb_seconds = W * M / MB_PER_GB * billed_s
        requests = request_counts(
            iterations=iterations, num_workers=W, num_aggregators=K, rounds=invocations,
            loop_s=loop, job_s=time_s, synchronous=synchronous,
        )  # fmt: skip
        functions_usd = gb_seconds * p.usd_per_gb_second
        invocations_usd = W * invocations * p.usd_per_invocation
        store_usd = sum((n * p.request_usd(kind) for kind, n in requests.items()), np.zeros_like(W))
        cost = functions_usd + invocations_usd + store_usd

    problem = np.zeros(W.shape, dtype=np.int8)
    # Later checks overwrite earlier ones: the most basic reason wins.
    if scenario.max_vcpus is not None:
        problem[scenario.workers_within_vcpus(M) < W] = Problem.OVER_MAX_VCPUS
    if synchronous:
        problem[global_batch > scenario.global_batch_cap] = Problem.EQUAL_BATCHES_OVER_CAP
    problem[iterations < 1] = Problem.GLOBAL_BATCH_OVER_DATA
    problem[startup_each + iteration > scenario.func_time_s] = Problem.ITERATION_OVER_FUNCTION_TIME
    problem[(nonagg > 0) & (by_cap < 1)] = Problem.NONAGG_BATCH_UNDER_ONE
    problem[(nonagg > 0) & (by_time < 1)] = Problem.NONAGG_CANNOT_TRAIN_ONE_SAMPLE
    problem[scenario.global_batch_cap < K * B] = Problem.AGGREGATOR_BATCHES_OVER_CAP
    problem[(K < 1) | (K > W)] = Problem.K_OUT_OF_RANGE
    problem[~(M + c.m > 0)] = Problem.MEMORY_NOT_ABOVE_M
    return Evaluation(
        num_workers=W, num_aggregators=K, memory_mb=M, batch_size_wor=A, global_batch=global_batch,
        iterations=iterations, train_s=train, transform_s=trans, upload_s=upload,
        aggregate_s=aggregate, download_s=download, iteration_s=iteration,
        straggler_s=straggler, quota_s=quota, loop_s=loop, startup_s=startup, checkpoint_s=checkpoints,
        evaluation_s=evaluation, time_s=time_s,
        invocations=invocations, gb_seconds=gb_seconds, requests=requests,
        functions_usd=functions_usd, invocations_usd=invocations_usd, store_usd=store_usd,
        cost_usd=cost, problem=problem,
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The model's numbers for one configuration."""

    num_workers: int
    num_aggregators: int
    memory_mb: int
    batch_size_agg: int
    batch_size_wor: int
    global_batch: int
    iterations: int
    per_iteration_s: dict[str, float]  # train, transform, upload, aggregate, download
    iteration_s: float
    # the whole job's terms: loop (straggler included), straggler, startup, checkpoint, evaluation
    job_s: dict[str, float]
    time_s: float
    invocations_per_worker: int
    gb_seconds: float
    requests: dict[str, int]
    cost_usd: dict[str, float]  # functions, invocations, store, total
    problem: str | None  # None when the configuration can run

    @property
    def total_cost_usd(self) -> float:
        return self.cost_usd["total"]

    def breakdown(self) -> dict[str, Any]:
        return {
            "per_iteration_s": dict(self.per_iteration_s),
            "iteration_s": self.iteration_s,
            "job_s": dict(self.job_s),
            "iterations": self.iterations,
            "global_batch": self.global_batch,
            "invocations_per_worker": self.invocations_per_worker,
            "gb_seconds": self.gb_seconds,
            "requests": dict(self.requests),
            "cost_usd": dict(self.cost_usd),
        }


def prediction_at(ev: Evaluation, batch_size_agg: int, index: Any = ()) -> Prediction:
    """One element of an Evaluation as a Prediction."""

    def f(x: np.ndarray) -> float:
        return float(x[index])

    def i(x: np.ndarray) -> int:
        return round(f(x))

    code = int(ev.problem[index])
    return Prediction(
        num_workers=i(ev.num_workers), num_aggregators=i(ev.num_aggregators), memory_mb=i(ev.memory_mb),
        batch_size_agg=batch_size_agg, batch_size_wor=i(ev.batch_size_wor),
        global_batch=i(ev.global_batch), iterations=i(ev.iterations),
        per_iteration_s={
            "train": f(ev.train_s), "transform": f(ev.transform_s), "upload": f(ev.upload_s),
            "aggregate": f(ev.aggregate_s), "download": f(ev.download_s),
            "quota_wait": f(ev.quota_s),
        },
        iteration_s=f(ev.iteration_s),
        job_s={
            # the waits for peers: the slowest worker's spread and the CPU quota's stops
            "loop": f(ev.loop_s), "straggler": (f(ev.straggler_s) + f(ev.quota_s)) * f(ev.iterations),
            "startup": f(ev.startup_s), "checkpoint": f(ev.checkpoint_s),
            "evaluation": f(ev.evaluation_s),
        },
        time_s=f(ev.time_s),
        invocations_per_worker=i(ev.invocations), gb_seconds=f(ev.gb_seconds),
        requests={k: i(v) for k, v in ev.requests.items()},
        cost_usd={
            "functions": f(ev.functions_usd), "invocations": f(ev.invocations_usd),
            "store": f(ev.store_usd), "total": f(ev.cost_usd),
        },
        problem=Problem(code).reason if code else None,
    )  # fmt: skip
