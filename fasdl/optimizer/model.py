"""The time and cost model of a K-Reduce job: pure functions of numbers, vectorised with numpy.

A configuration is (W workers, K aggregators, M MB per function). Every constant comes from the
coefficients, the transfer times (``put_s``, ``get_s`` of one chunk of S/K MB from a function of
M MB) or the price table. ScatterReduce is K = W, AllReduce K = 1: the same formulas.

Per iteration, with one object transferred at a time by each function:

    aggregator:      train(B) + trans + (K−1)·put + [(W−1)·get + put] + (K−1)·get   = the iteration
    non-aggregator:  train(A) + trans +     K·put                     +     K·get   ≤ the iteration

A is the largest whole batch that keeps the non-aggregator's cycle within the aggregators'
iteration and the global batch K·B + (W−K)·A within its cap. See docs/optimizer.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fasdl.errors import InvalidInput
from fasdl.optimizer.coeffs import Coefficients
from fasdl.optimizer.prices import REQUEST_KINDS, Prices
from fasdl.platform.limits import MAX_TIMEOUT_S, check_timeout_s, vcpus_for_memory

DEFAULT_GAMMA = 0.8
DEFAULT_MAX_GLOBAL_BATCH = 1024
MB_PER_GB = 1024  # Lambda bills memory in GB of 1,024 MB
KEYS_PER_DELETE = 1000  # S3 DeleteObjects takes up to 1,000 keys in one request
_EPS = 1e-9  # absorbs float error before a floor or ceil

# Why a configuration cannot run; 0 means it can.
OK = 0
PROBLEMS = {
    1: "K must be between 1 and W",
    2: "the aggregators' batches alone exceed the global batch cap",
    3: "a non-aggregator cannot train one sample within an iteration",
    4: "the global batch cap leaves less than one sample per non-aggregator",
    5: "one iteration takes longer than the function time limit",
    6: "M + m ≤ 0: the training model is undefined at this memory",
    7: "the global batch is larger than the data: no full iteration",
    8: "the functions running at once ask for more vCPUs than max_vcpus",
}


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

    def __post_init__(self) -> None:
        for name in ("samples", "epochs", "max_global_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(name, f"{value!r} must be a whole number ≥ 1")
        check_timeout_s(self.func_time_s, "func_time")
        batch_size_agg(self.coeffs.b, self.gamma)  # validates gamma
        if self.max_vcpus is not None and not (
            math.isfinite(self.max_vcpus) and self.max_vcpus > 0
        ):
            raise InvalidInput(
                "max_vcpus", f"{self.max_vcpus!r} must be a positive number of vCPUs"
            )

    @property
    def batch_size_agg(self) -> int:
        return batch_size_agg(self.coeffs.b, self.gamma)

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
        return np.floor(self.max_vcpus / vcpus_for_memory(m) + _EPS).astype(np.int64)

    def max_workers_for(self, pattern_k: int) -> int:
        """Beyond this W a non-aggregator's share of the global batch cap is below one sample."""
        return pattern_k + max(0, self.global_batch_cap - pattern_k * self.batch_size_agg)


@dataclass(frozen=True)
class Evaluation:
    """The model's numbers for many configurations at once (arrays of one broadcast shape)."""

    num_workers: np.ndarray
    pattern_k: np.ndarray
    memory_mb: np.ndarray
    batch_size_wor: np.ndarray
    global_batch: np.ndarray
    iterations: np.ndarray
    train_s: np.ndarray  # per iteration, on the aggregators' critical path
    transform_s: np.ndarray
    upload_s: np.ndarray
    aggregate_s: np.ndarray
    download_s: np.ndarray
    iteration_s: np.ndarray
    time_s: np.ndarray
    invocations: np.ndarray  # per worker
    gb_seconds: np.ndarray
    requests: dict[str, np.ndarray]
    functions_usd: np.ndarray
    invocations_usd: np.ndarray
    store_usd: np.ndarray
    cost_usd: np.ndarray
    problem: np.ndarray  # 0 where the configuration can run, else a key of PROBLEMS

    @property
    def ok(self) -> np.ndarray:
        return self.problem == OK


def nonagg_batch_by_time(
    scenario: Scenario, num_workers: Any, pattern_k: Any, memory_mb: Any, put_s: Any, get_s: Any
) -> np.ndarray:
    """The largest whole batch a non-aggregator trains within the aggregators' iteration
    (before the global batch cap). Nondecreasing in W. May be < 1 (then W > K cannot run)."""
    c = scenario.coeffs
    W, K, M = (np.asarray(x, dtype=float) for x in (num_workers, pattern_k, memory_mb))
    put, get = np.asarray(put_s, dtype=float), np.asarray(get_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        iteration = _iteration_s(c, scenario.batch_size_agg, W, K, M, put, get)[-1]
        spare = iteration - c.k1 * M**c.k2 - K * put - K * get
        return np.floor(spare * (M + c.m) / c.a - c.b + _EPS)


def iteration_s(
    scenario: Scenario, num_workers: Any, pattern_k: Any, memory_mb: Any, put_s: Any, get_s: Any
) -> np.ndarray:
    """The aggregators' iteration alone (cheaper than ``evaluate``)."""
    W, K, M, put, get = (
        np.asarray(x, dtype=float) for x in (num_workers, pattern_k, memory_mb, put_s, get_s)
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
):
    train = c.a * (B + c.b) / (M + c.m)
    trans = c.k1 * M**c.k2
    upload = (K - 1) * put  # every chunk but its own
    aggregate = (W - 1) * get + put  # the W−1 pieces of its chunk, then the merged chunk
    download = (K - 1) * get  # the other aggregators' merged chunks
    return train, trans, upload, aggregate, download, train + trans + upload + aggregate + download


def evaluate(
    scenario: Scenario, num_workers: Any, pattern_k: Any, memory_mb: Any, put_s: Any, get_s: Any
) -> Evaluation:
    """Time, cost and feasibility of configurations; ``put_s``/``get_s`` are the times of one
    chunk (S/K MB) at memory M. All arguments broadcast together."""
    c, p = scenario.coeffs, scenario.prices
    B = scenario.batch_size_agg
    W, K, M, put, get = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (num_workers, pattern_k, memory_mb, put_s, get_s))
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        train, trans, upload, aggregate, download, iteration = _iteration_s(c, B, W, K, M, put, get)
        nonagg = W - K
        by_time = nonagg_batch_by_time(scenario, W, K, M, put, get)
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
        time_s = iterations * iteration
        # Workers stop at an iteration boundary before the function time limit, then re-invoke.
        per_invocation = np.floor(scenario.func_time_s / iteration + _EPS)
        invocations = np.maximum(1, np.ceil(iterations / np.maximum(per_invocation, 1) - _EPS))
        gb_seconds = W * M / MB_PER_GB * time_s
        restarts = invocations - 1
        requests = {
            # Per iteration: W·K chunk objects (K(W−1) pieces and K merged chunks), each put once;
            # each aggregator gets W−1 pieces and K−1 merged chunks, each non-aggregator K merged
            # chunks: 2K(W−1) gets. Per invocation each worker reads its partition; at each restart
            # it writes and reads a checkpoint. Polling beyond one read per object is not counted.
            "PUT": iterations * W * K + W * restarts,
            "GET": iterations * 2 * K * (W - 1) + W * invocations + W * restarts,
            "LIST": np.zeros_like(W),  # waits poll exact keys
            # Each aggregator deletes the W-1 pieces it consumed (and its merged chunk of t-2)
            # in one multi-object request.
            "DELETE": iterations * K * np.ceil(W / KEYS_PER_DELETE),
        }
        functions_usd = gb_seconds * p.usd_per_gb_second
        invocations_usd = W * invocations * p.usd_per_invocation
        store_usd = sum(requests[k] * p.request_usd(k) for k in REQUEST_KINDS)
        cost = functions_usd + invocations_usd + store_usd

    problem = np.zeros(W.shape, dtype=np.int8)
    # Later checks overwrite earlier ones: the most basic reason wins.
    if scenario.max_vcpus is not None:
        problem[scenario.workers_within_vcpus(M) < W] = 8
    problem[iterations < 1] = 7
    problem[iteration > scenario.func_time_s] = 5
    problem[(nonagg > 0) & (by_cap < 1)] = 4
    problem[(nonagg > 0) & (by_time < 1)] = 3
    problem[scenario.global_batch_cap < K * B] = 2
    problem[(K < 1) | (K > W)] = 1
    problem[~(M + c.m > 0)] = 6
    return Evaluation(
        num_workers=W, pattern_k=K, memory_mb=M, batch_size_wor=A, global_batch=global_batch,
        iterations=iterations, train_s=train, transform_s=trans, upload_s=upload,
        aggregate_s=aggregate, download_s=download, iteration_s=iteration, time_s=time_s,
        invocations=invocations, gb_seconds=gb_seconds, requests=requests,
        functions_usd=functions_usd, invocations_usd=invocations_usd, store_usd=store_usd,
        cost_usd=cost, problem=problem,
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The model's numbers for one configuration."""

    num_workers: int
    pattern_k: int
    memory_mb: int
    batch_size_agg: int
    batch_size_wor: int
    global_batch: int
    iterations: int
    per_iteration_s: dict[str, float]  # train, transform, upload, aggregate, download
    iteration_s: float
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
        num_workers=i(ev.num_workers), pattern_k=i(ev.pattern_k), memory_mb=i(ev.memory_mb),
        batch_size_agg=batch_size_agg, batch_size_wor=i(ev.batch_size_wor),
        global_batch=i(ev.global_batch), iterations=i(ev.iterations),
        per_iteration_s={
            "train": f(ev.train_s), "transform": f(ev.transform_s), "upload": f(ev.upload_s),
            "aggregate": f(ev.aggregate_s), "download": f(ev.download_s),
        },
        iteration_s=f(ev.iteration_s), time_s=f(ev.time_s),
        invocations_per_worker=i(ev.invocations), gb_seconds=f(ev.gb_seconds),
        requests={k: i(v) for k, v in ev.requests.items()},
        cost_usd={
            "functions": f(ev.functions_usd), "invocations": f(ev.invocations_usd),
            "store": f(ev.store_usd), "total": f(ev.cost_usd),
        },
        problem=PROBLEMS.get(code) if code else None,
    )  # fmt: skip
