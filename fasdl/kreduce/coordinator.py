"""The coordinator (the seed's FasDL trigger): validate, partition, invoke, follow, collect.

It runs where the user runs ``fasdl train``. It validates the job and loads the data before
anything is written or invoked, stores one compact partition per worker, invokes the W workers
asynchronously, holds the start barrier of every round, follows progress, re-invokes the
workers after each checkpoint until training ends, and collects logs, model and cost. If one
worker fails or the time runs out, it stops the others and says which worker and why.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fasdl.data import ArrayDataset, dataset_to_bytes, load_dataset, partition_dataset
from fasdl.errors import CorruptObject, InvalidInput, JobFailed, ObjectNotFound
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.messages import JobMeta, WorkerResult, WorkerTask, decode_json, json_number
from fasdl.kreduce.worker import HANDLER as WORKER_HANDLER
from fasdl.platform import Invocation, Platform, State, open_platform
from fasdl.pricing import Prices, load_prices
from fasdl.store import ObjectStore, open_store
from fasdl.store.base import REQUEST_KINDS
from fasdl.training import seeded_model

log = logging.getLogger(__name__)

START_SLACK_S = 120.0  # how long a round may take to start all its functions


@dataclass(frozen=True)
class ProgressUpdate:
    iteration: int
    total_iterations: int
    epoch: int
    loss: float | None
    seconds_per_iteration: float | None
    cost_usd: float
    round: int


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    config: dict[str, Any]
    wall_time_s: float
    train_time_s: float
    comm_time_s: float
    billed_gb_s: float
    invocations: int
    rounds: int
    requests: dict[str, int]
    cost_usd: dict[str, float]
    test_accuracy: float | None
    final_loss: float | None
    iterations: int
    iterations_per_epoch: int
    samples: int
    outputs: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreparedJob:
    """Everything validated and computed before the first write."""

    cfg: JobConfig
    store: ObjectStore
    train: ArrayDataset
    test: ArrayDataset
    partitions: list[ArrayDataset]
    iterations_per_epoch: int

    @property
    def total_iterations(self) -> int:
        return self.iterations_per_epoch * self.cfg.epochs

    def meta(self) -> JobMeta:
        return JobMeta(
            total_iterations=self.total_iterations,
            num_classes=int(self.train.num_classes),
            input_shape=self.train.input_shape,
        )


def prepare(cfg: JobConfig, *, platform_name: str | None = None) -> PreparedJob:
    """Validate the job against its data. Raises InvalidInput; writes nothing."""
    cfg = cfg.resolved()
    platform_name = platform_name or cfg.platform
    if cfg.store.startswith("memory://") and platform_name == "local":
        raise InvalidInput(
            "store",
            "a memory:// store lives inside one process; local functions are separate processes",
            "use file:// or s3:// with --platform local, or --platform inline",
        )
    store = open_store(cfg.store)
    # Plain "cifar10" reads the batch files from the data prefix (the seed's data bucket).
    train, test = load_dataset(cfg.dataset, seed=cfg.seed, store=store.scoped(cfg.data_prefix))
    n = len(train.y)
    if cfg.global_batch > n:
        raise InvalidInput(
            "batch_size_agg",
            f"the global batch K*B + (W-K)*A = {cfg.global_batch} is larger than the {n} training samples",
            "use smaller batches or fewer workers",
        )
    partitions = partition_dataset(train, cfg.batch_sizes, seed=cfg.seed)
    iterations_per_epoch = n // cfg.global_batch
    return PreparedJob(cfg, store, train, test, partitions, iterations_per_epoch)


def run_job(
    cfg: JobConfig,
    *,
    platform: Platform | None = None,
    progress: Callable[[ProgressUpdate], None] | None = None,
    prices: Prices | None = None,
) -> JobSummary:
    job = prepare(cfg, platform_name=platform.name if platform else None)
    cfg, store = job.cfg, job.store
    prices = prices or load_prices()
    keys = Keys.for_job(cfg)
    if store.list(keys.output):
        raise InvalidInput(
            "job_id",
            f"job {cfg.job_id!r} already has outputs in {store.url}",
            "choose another --job-id",
        )
    own_platform = platform is None
    platform = platform or open_platform(cfg.platform, concurrency=max(1000, cfg.num_workers))
    if platform.concurrency < cfg.num_workers:
        raise InvalidInput(
            "num_workers",
            f"{cfg.num_workers} workers need to run at once, the platform allows {platform.concurrency}",
        )
    t_start = time.time()
    results: list[WorkerResult] = []
    rounds = 0
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda w: store.put(keys.partition_of(w), dataset_to_bytes(job.partitions[w])),
                    range(cfg.num_workers),
                )
            )
        done = 0
        while done < job.total_iterations:
            round_results = _run_round(
                platform, store, keys, job, rounds, done, t_start, prices, progress
            )
            last = {r.last_iteration for r in round_results}
            if len(last) != 1:
                raise JobFailed(
                    f"workers stopped at different iterations {sorted(last)} in round {rounds}"
                )
            new_done = last.pop()
            if new_done <= done:
                raise InvalidInput(
                    "func_time_s",
                    f"{cfg.func_time_s:g} s is too short for one iteration (round {rounds} made no progress)",
                    "raise --func-time",
                )
            done = new_done
            results.extend(round_results)
            rounds += 1
        summary = _summarise(job, keys, platform, results, rounds, t_start, prices)
        store.put(keys.summary(), json.dumps(summary.to_dict(), indent=2).encode())
        return summary
    except BaseException:
        platform.shutdown()
        raise
    finally:
        _write_invocations(store, keys, platform)
        _cleanup(store, keys)
        if own_platform:
            platform.shutdown()


def _run_round(
    platform: Platform,
    store: ObjectStore,
    keys: Keys,
    job: PreparedJob,
    rnd: int,
    done: int,
    t_start: float,
    prices: Prices,
    progress: Callable[[ProgressUpdate], None] | None,
) -> list[WorkerResult]:
    cfg = job.cfg
    meta = job.meta()
    invs = [
        platform.invoke(
            WORKER_HANDLER,
            WorkerTask(job=cfg, worker=w, round=rnd, meta=meta).to_dict(),
            memory_mb=cfg.memory_mb,
            timeout_s=cfg.func_time_s,
        )
        for w in range(cfg.num_workers)
    ]
    # Start barrier: every worker says it is ready; then one go, with the earliest deadline.
    arrived: dict[int, float] = {}
    delay = 0.01
    barrier_deadline = time.monotonic() + START_SLACK_S
    while len(arrived) < cfg.num_workers:
        missing = sorted(set(range(cfg.num_workers)) - set(arrived))
        _check_failures(invs, f"starting round {rnd} (workers {missing} not started yet)")
        for w in range(cfg.num_workers):
            if w not in arrived:
                key = keys.arrived(rnd, w)
                with contextlib.suppress(ObjectNotFound):
                    arrived[w] = json_number(decode_json(store.get(key), key), "deadline", key)
        if len(arrived) < cfg.num_workers:
            if time.monotonic() > barrier_deadline:
                raise JobFailed(
                    f"round {rnd}: workers {sorted(set(range(cfg.num_workers)) - set(arrived))} did not start within {START_SLACK_S:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
    store.put(keys.go(rnd), json.dumps({"deadline": min(arrived.values())}).encode())

    # Follow progress until every invocation of the round has finished.
    round_deadline = time.monotonic() + cfg.func_time_s + START_SLACK_S
    last_seen = done
    rate_t0, rate_it0 = time.monotonic(), done
    while True:
        _check_failures(invs, f"round {rnd}")
        pending = [inv for inv in invs if not inv.done()]
        if progress is not None:
            try:
                p = decode_json(store.get(keys.progress()), keys.progress())
            except ObjectNotFound:
                p = None
            if p and json_number(p, "iteration", keys.progress()) > last_seen:
                last_seen = int(p["iteration"])
                elapsed = time.monotonic() - rate_t0
                progress(
                    ProgressUpdate(
                        iteration=last_seen,
                        total_iterations=job.total_iterations,
                        epoch=int(json_number(p, "epoch", keys.progress())),
                        loss=json_number(p, "loss", keys.progress()),
                        seconds_per_iteration=elapsed / (last_seen - rate_it0)
                        if last_seen > rate_it0
                        else None,
                        cost_usd=_function_cost_so_far(platform, prices),
                        round=rnd,
                    )
                )
        if not pending:
            break
        if time.monotonic() > round_deadline:
            raise JobFailed(
                f"round {rnd}: workers still running {cfg.func_time_s + START_SLACK_S:.0f} s after start"
            )
        with contextlib.suppress(TimeoutError):
            pending[0].wait(0.5)
    return [
        WorkerResult.from_dict(inv.result(), f"the result of worker {w} in round {rnd}")
        for w, inv in enumerate(invs)
    ]


def _check_failures(invs: list[Invocation], during: str) -> None:
    for w, inv in enumerate(invs):
        if inv.done() and inv.state is not State.SUCCEEDED:
            detail = inv.error or inv.state.value
            if inv.state is State.TIMED_OUT and during.startswith("starting"):
                raise InvalidInput(
                    "func_time_s",
                    f"{inv.timeout_s:g} s is too short: worker {w} timed out {during}",
                    "raise --func-time (starting a function and loading the model and data must fit in it)",
                )
            raise JobFailed(f"worker {w} {inv.state.value} during {during}: {detail}")


def _function_cost_so_far(platform: Platform, prices: Prices) -> float:
    now = time.time()
    gb_s = 0.0
    for inv in platform.invocations:
        if inv.done():
            gb_s += inv.memory_mb / 1024 * inv.billed_ms / 1000
        elif inv.started_at is not None:
            gb_s += inv.memory_mb / 1024 * (now - inv.started_at)
    return prices.function_cost(gb_s, len(platform.invocations))


def _summarise(
    job: PreparedJob,
    keys: Keys,
    platform: Platform,
    results: list[WorkerResult],
    rounds: int,
    t_start: float,
    prices: Prices,
) -> JobSummary:
    cfg, store = job.cfg, job.store
    wall = time.time() - t_start
    records = platform.records()
    billed_gb_s = sum(r.gb_s for r in records)
    requests = {k: 0 for k in REQUEST_KINDS}
    for r in results:
        for k, v in r.requests.items():
            requests[k] += v
    # The coordinator's own requests (partitions, barrier, progress) are part of the job too.
    for k, v in store.requests.items():
        requests[k] += v
    functions = prices.function_cost(billed_gb_s, len(records))
    storage = prices.storage_cost(requests)
    W = cfg.num_workers
    train_s = sum(r.train_s for r in results) / W
    comm_s = sum(r.comm_s for r in results) / W
    final = [r for r in results if r.worker == 0][-1]
    acc = evaluate(job, store.get(keys.model()), key=keys.model())
    return JobSummary(
        job_id=cfg.job_id,
        config=cfg.to_dict(),
        wall_time_s=round(wall, 3),
        train_time_s=round(train_s, 3),
        comm_time_s=round(comm_s, 3),
        billed_gb_s=round(billed_gb_s, 4),
        invocations=len(records),
        rounds=rounds,
        requests=requests,
        cost_usd={"functions": functions, "storage": storage, "total": functions + storage},
        test_accuracy=acc,
        final_loss=final.final_loss,
        iterations=job.total_iterations,
        iterations_per_epoch=job.iterations_per_epoch,
        samples=len(job.train.y),
        outputs={
            "store": store.url,
            "model": keys.model(),
            "summary": keys.summary(),
            "logs": keys.output + "logs/",
            "invocations": keys.invocations(),
        },
    )


def evaluate(job: PreparedJob, model_blob: bytes, *, key: str = "") -> float | None:
    """Test accuracy of the final model (``model_blob``, read from ``key``), in this process."""
    if len(job.test.y) == 0:
        return None
    meta = job.meta()
    model = seeded_model(job.cfg.model, job.cfg.seed, meta.num_classes, meta.input_shape)
    try:
        model.load_state_dict(torch.load(io.BytesIO(model_blob), weights_only=True))
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CorruptObject(key, f"not this model's weights ({type(e).__name__}: {e})") from e
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(job.test.y), 500):
            x = torch.from_numpy(np.array(job.test.x[i : i + 500]))
            pred = model(x).argmax(dim=1).numpy()
            correct += int((pred == job.test.y[i : i + 500]).sum())
    return correct / len(job.test.y)


def _write_invocations(store: ObjectStore, keys: Keys, platform: Platform) -> None:
    """Best effort (it runs in ``finally``, after a failure too): a failure is logged, not raised."""
    try:
        store.put(
            keys.invocations(),
            json.dumps([r.to_dict() for r in platform.records()], indent=1).encode(),
        )
    except Exception:
        log.warning(
            "could not write the invocation records to %s in %s",
            keys.invocations(),
            store.url,
            exc_info=True,
        )


def _cleanup(store: ObjectStore, keys: Keys) -> None:
    """Delete the job's communication objects, checkpoints and partitions (never another job's).

    Best effort (it runs in ``finally``): what could not be deleted is logged, not raised."""
    for prefix in keys.scratch_prefixes():
        try:
            store.delete(store.list(prefix))
        except Exception:
            log.warning(
                "could not delete the job's objects under %s in %s",
                prefix,
                store.url,
                exc_info=True,
            )
