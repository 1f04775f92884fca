"""The coordinator (the seed's FasDL trigger): validate, partition, invoke, follow, collect.

It runs where the user runs ``fasdl train``. It validates the job and loads the data before
anything is written or invoked, stores one compact partition per worker, invokes the W workers
asynchronously, holds the start barrier of every round, follows progress, re-invokes the
workers after each checkpoint until training ends, and collects logs, model and cost. If one
worker fails or the time runs out, it stops the others and says which worker and why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from fasdl.data import ArrayDataset, dataset_to_bytes, load_dataset, partition_dataset
from fasdl.errors import CorruptObject, InvalidInput, JobFailed, ObjectNotFound, RoundFailed
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.messages import JobMeta, WorkerResult, WorkerTask, decode_json, json_number
from fasdl.kreduce.state import (
    JobState,
    LeaseKeeper,
    Retry,
    find_job,
    refuse_if_running,
    write_state,
)
from fasdl.kreduce.worker import HANDLER as WORKER_HANDLER
from fasdl.platform import Invocation, Platform, State, open_platform
from fasdl.pricing import Prices, load_prices
from fasdl.store import ObjectStore, open_store
from fasdl.store.base import REQUEST_KINDS
from fasdl.training import ModelVector, seeded_model
from fasdl.training.evaluate import evaluate_weights, load_weights

log = logging.getLogger(__name__)

START_SLACK_S = 120.0  # how long a round may take to start all its functions
BARRIER_POLL_INITIAL_S = 0.01  # the first pause between polls of the start barrier
BARRIER_POLL_MAX_S = 0.05  # the longest: the go follows the last arrival within this


@dataclass(frozen=True)
class ProgressUpdate:
    iteration: int
    total_iterations: int
    epoch: int
    loss: float | None
    seconds_per_iteration: float | None
    cost_usd: float
    round: int
    retry: str | None = None  # set on the update that reports a retried round


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
    retries: list[dict[str, Any]] = field(default_factory=list)  # one per failed attempt
    # Seconds of the job's phases beside the training loop: "evaluation" (the final model on the
    # test set, here), "checkpoint" (worker 0 writing its checkpoints, all rounds) and "setup"
    # (worker 0's start-up to the barrier's go, all rounds). Older summaries have none.
    phases_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, key: str) -> JobSummary:
        """The summary read at ``key`` (``Keys.summary()``); ``CorruptObject`` if it is not one.
        Keys a later version adds are ignored, so older readers can show newer jobs."""
        names = {f.name for f in fields(cls)}
        try:
            if not isinstance(d, dict):
                raise TypeError("not a JSON object")
            missing = names - {"retries", "phases_s"} - set(d)
            if missing:
                raise KeyError(", ".join(sorted(missing)))
            return cls(**{k: v for k, v in d.items() if k in names})
        except (KeyError, TypeError) as e:
            raise CorruptObject(key, f"not a fasdl job summary ({type(e).__name__}: {e})") from e


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
    if cfg.store.startswith("memory://") and platform_name != "inline":
        raise InvalidInput(
            "store",
            f"a memory:// store lives inside one process; {platform_name} functions are separate "
            "processes",
            f"use file:// or s3:// with --platform {platform_name}, or --platform inline",
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
    """Run a new job to the end. A failed round is retried (``cfg.retries`` times per job) from
    the last checkpoint set; if the job stops anyway, its checkpoints and state stay in the store
    for ``resume_job``."""
    job = prepare(cfg, platform_name=platform.name if platform else None)
    keys = Keys.for_job(job.cfg)
    _refuse_existing(job.store, keys)
    state = JobState(config=job.cfg)
    return _drive(job, keys, state, platform, progress, prices, takeover=False)


def resume_job(
    job_id: str,
    store_url: str,
    *,
    platform: Platform | None = None,
    progress: Callable[[ProgressUpdate], None] | None = None,
    prices: Prices | None = None,
) -> JobSummary:
    """Continue a job whose coordinator stopped (killed, interrupted, or out of retries) from its
    store alone: its configuration, its last checkpoint set. Same outputs as an uninterrupted run."""
    store = open_store(store_url)
    state = find_job(store, job_id)
    if state.status == "finished":
        raise InvalidInput("job_id", f"job {job_id!r} has finished already", "nothing to resume")
    cfg = state.config
    if cfg.store != store_url:
        cfg = JobConfig.from_dict({**cfg.to_dict(), "store": store_url})
        state = state.with_(config=cfg)
    job = prepare(cfg, platform_name=platform.name if platform else None)
    keys = Keys.for_job(job.cfg)
    return _drive(job, keys, state, platform, progress, prices, takeover=True)


def _refuse_existing(store: ObjectStore, keys: Keys) -> None:
    if not store.list(keys.output):
        return
    refuse_if_running(store, keys)
    raise InvalidInput(
        "job_id",
        f"job {keys.job_id!r} already has outputs in {store.url}",
        f"continue it with `fasdl resume {keys.job_id} --store {store.url}`, "
        "or choose another --job-id",
    )


def _drive(
    job: PreparedJob,
    keys: Keys,
    state: JobState,
    platform: Platform | None,
    progress: Callable[[ProgressUpdate], None] | None,
    prices: Prices | None,
    *,
    takeover: bool,
) -> JobSummary:
    cfg, store = job.cfg, job.store
    prices = prices or load_prices(arch=cfg.arch)
    own_platform = platform is None
    platform = platform or open_platform(cfg.platform, concurrency=max(1000, cfg.num_workers))
    if platform.concurrency < cfg.num_workers:
        raise InvalidInput(
            "num_workers",
            f"{cfg.num_workers} workers need to run at once, the platform allows {platform.concurrency}",
        )
    t_start = time.time()
    status = "failed"
    run = _Run(state.with_(status="running", error=None))
    with LeaseKeeper(store, keys, takeover=takeover):
        try:
            write_state(store, keys, run.state)
            if state.attempt >= 0:  # a resumed job: what its dead coordinator's attempt left
                _delete_prefixes(store, keys.attempt_prefixes(state.attempt))
            else:  # a new job (or one whose coordinator died before its first round)
                _upload_partitions(store, keys, job)
            while run.state.done < job.total_iterations:
                _next_round(platform, store, keys, job, run, t_start, prices, progress)
            summary = _summarise(job, keys, platform, run.state, t_start, prices)
            store.put(keys.summary(), json.dumps(summary.to_dict(), indent=2).encode())
            status = "finished"
            return summary
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BaseException as e:
            run.state = run.state.with_(error=str(e))
            raise
        finally:
            if status != "finished":
                platform.shutdown()  # stop the workers; the checkpoints stay
            last = run.state
            state = last.with_(
                status=status,
                records=last.records + tuple(r.to_dict() for r in platform.records()),
                coordinator_requests=_add(last.coordinator_requests, store.requests),
                wall_time_s=last.wall_time_s + time.time() - t_start,
            )
            _write_invocations(store, keys, state)
            _best_effort(write_state, store, keys, state, what=f"write {keys.job_state()}")
            if status == "finished":
                _delete_prefixes(store, keys.scratch_prefixes())
            else:  # keep the checkpoints and partitions: `fasdl resume` starts from them
                _delete_prefixes(store, keys.attempt_prefixes(state.attempt))
            if own_platform:
                platform.shutdown()


class _Run:
    """The job's state as the coordinator moves it along (read in ``finally``, however it ends)."""

    def __init__(self, state: JobState) -> None:
        self.state = state


def _upload_partitions(store: ObjectStore, keys: Keys, job: PreparedJob) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda w: store.put(keys.partition_of(w), dataset_to_bytes(job.partitions[w])),
                range(job.cfg.num_workers),
            )
        )


def _next_round(
    platform: Platform,
    store: ObjectStore,
    keys: Keys,
    job: PreparedJob,
    run: _Run,
    t_start: float,
    prices: Prices,
    progress: Callable[[ProgressUpdate], None] | None,
) -> None:
    """Run the next round, retrying it from the last checkpoint set while retries are left.
    ``run.state`` follows every change, so that the caller records it however this ends."""
    cfg = job.cfg
    state = run.state
    while True:
        attempt = state.attempt + 1
        state = run.state = state.with_(attempt=attempt)
        write_state(store, keys, state)
        invs: list[Invocation] = []
        try:
            results = _run_round(
                platform, store, keys.for_attempt(attempt), job, state, invs, t_start, prices,
                progress,
            )  # fmt: skip
            break
        except RoundFailed as e:
            for inv in invs:
                platform.cancel(inv, f"attempt {attempt} failed: {e}")
            retry = Retry(
                round=state.round,
                attempt=attempt,
                worker=e.worker,
                reason=str(e),
                iterations_lost=max(0, e.reached - state.done),
            )
            state = run.state = state.with_(retries=(*state.retries, retry))
            _delete_prefixes(store, keys.attempt_prefixes(attempt))
            if len(state.retries) > cfg.retries:
                raise JobFailed(
                    f"{e} (after {cfg.retries} retr{'y' if cfg.retries == 1 else 'ies'}; the "
                    f"checkpoints of iteration {state.done} are kept: "
                    f"`fasdl resume {cfg.job_id} --store {store.url}` continues from them)"
                ) from e
            log.warning("round %d, attempt %d failed, retrying: %s", state.round, attempt, e)
            if progress is not None:
                progress(_retry_update(job, state, retry, platform, prices))
    new_done = results[0].last_iteration
    if new_done <= state.done:
        raise InvalidInput(
            "func_time_s",
            f"{cfg.func_time_s:g} s is too short for one iteration (round {state.round} made no progress)",
            "raise --func-time",
        )
    previous_set = state.checkpoint_set
    state = run.state = state.with_(
        round=state.round + 1,
        done=new_done,
        checkpoint_set=None if new_done >= job.total_iterations else attempt,
        results=state.results + tuple(results),
    )
    write_state(store, keys, state)  # the new set is the consistent one from here on
    stale = keys.attempt_prefixes(attempt)
    if previous_set is not None:
        stale.append(keys.checkpoint_set(previous_set))
    _delete_prefixes(store, stale)


def _retry_update(
    job: PreparedJob, state: JobState, retry: Retry, platform: Platform, prices: Prices
) -> ProgressUpdate:
    who = "the round" if retry.worker is None else f"worker {retry.worker}"
    return ProgressUpdate(
        iteration=state.done,
        total_iterations=job.total_iterations,
        epoch=state.done // max(1, job.iterations_per_epoch),
        loss=None,
        seconds_per_iteration=None,
        cost_usd=_function_cost_so_far(platform, prices),
        round=state.round,
        retry=f"retry {len(state.retries)}/{job.cfg.retries}: {who} failed",
    )


def _run_round(
    platform: Platform,
    store: ObjectStore,
    keys: Keys,
    job: PreparedJob,
    state: JobState,
    invs: list[Invocation],
    t_start: float,
    prices: Prices,
    progress: Callable[[ProgressUpdate], None] | None,
) -> list[WorkerResult]:
    """One attempt at round ``state.round`` (``keys.attempt``); the invocations go into ``invs``
    as they start, so that the caller can cancel them when the attempt fails."""
    cfg = job.cfg
    meta = job.meta()
    rnd, done = state.round, state.done
    for w in range(cfg.num_workers):
        task = WorkerTask(
            job=cfg,
            worker=w,
            round=rnd,
            meta=meta,
            attempt=keys.attempt,
            start_iteration=done,
            resume_set=state.checkpoint_set,
        )
        invs.append(
            platform.invoke(
                WORKER_HANDLER, task.to_dict(), memory_mb=cfg.memory_mb, timeout_s=cfg.func_time_s
            )
        )
    # Start barrier: every worker says it is ready; then one go, with the earliest deadline.
    # The workers start together, so the first missing one is polled alone (a GET per pause, not
    # one per missing worker); once it is there, the others are read in turn until one misses.
    # So the pause can stay short (the go follows the last arrival within BARRIER_POLL_MAX_S)
    # without a GET per worker per pause.
    arrived: dict[int, float] = {}
    delay = BARRIER_POLL_INITIAL_S
    barrier_deadline = time.monotonic() + START_SLACK_S
    while len(arrived) < cfg.num_workers:
        missing = sorted(set(range(cfg.num_workers)) - set(arrived))
        _check_failures(invs, f"starting round {rnd} (workers {missing} not started yet)", done)
        for w in missing:
            key = keys.arrived(w)
            try:
                arrived[w] = json_number(decode_json(store.get(key), key), "deadline", key)
            except ObjectNotFound:
                break
        if len(arrived) < cfg.num_workers:
            if time.monotonic() > barrier_deadline:
                raise RoundFailed(
                    f"round {rnd}: workers {sorted(set(range(cfg.num_workers)) - set(arrived))} did not start within {START_SLACK_S:.0f} s",
                    worker=min(set(range(cfg.num_workers)) - set(arrived)),
                    reached=done,
                )
            time.sleep(delay)
            delay = min(delay * 1.5, BARRIER_POLL_MAX_S)
    store.put(keys.go(), json.dumps({"deadline": min(arrived.values())}).encode())

    # Follow progress until every invocation of the round has finished.
    round_deadline = time.monotonic() + cfg.func_time_s + START_SLACK_S
    last_seen = done
    rate_t0, rate_it0 = time.monotonic(), done
    while True:
        p = _read_progress(store, keys)
        iteration = int(json_number(p, "iteration", keys.progress())) if p else 0
        if iteration > last_seen:
            last_seen = iteration
            if progress is not None:
                progress(
                    ProgressUpdate(
                        iteration=last_seen,
                        total_iterations=job.total_iterations,
                        epoch=int(json_number(p, "epoch", keys.progress())),
                        loss=json_number(p, "loss", keys.progress()),
                        seconds_per_iteration=(time.monotonic() - rate_t0) / (last_seen - rate_it0),
                        cost_usd=_function_cost_so_far(platform, prices),
                        round=rnd,
                    )
                )
        _check_failures(invs, f"round {rnd}", last_seen)
        pending = [inv for inv in invs if not inv.done()]
        if not pending:
            break
        if time.monotonic() > round_deadline:
            raise RoundFailed(
                f"round {rnd}: workers still running {cfg.func_time_s + START_SLACK_S:.0f} s after start",
                worker=None,
                reached=last_seen,
            )
        with contextlib.suppress(TimeoutError):
            pending[0].wait(0.5)
    try:
        results = [
            WorkerResult.from_dict(inv.result(), f"the result of worker {w} in round {rnd}")
            for w, inv in enumerate(invs)
        ]
    except CorruptObject as e:
        raise RoundFailed(str(e), worker=None, reached=last_seen) from e
    last = {r.last_iteration for r in results}
    if len(last) != 1:
        raise RoundFailed(
            f"workers stopped at different iterations {sorted(last)} in round {rnd}",
            worker=None,
            reached=last_seen,
        )
    return results


def _read_progress(store: ObjectStore, keys: Keys) -> Any:
    try:
        return decode_json(store.get(keys.progress()), keys.progress())
    except ObjectNotFound:
        return None


def _check_failures(invs: list[Invocation], during: str, reached: int) -> None:
    for w, inv in enumerate(invs):
        if inv.done() and inv.state is not State.SUCCEEDED:
            detail = inv.error or inv.state.value
            if inv.state is State.TIMED_OUT and during.startswith("starting"):
                raise InvalidInput(
                    "func_time_s",
                    f"{inv.timeout_s:g} s is too short: worker {w} timed out {during}",
                    "raise --func-time (starting a function and loading the model and data must fit in it)",
                )
            raise RoundFailed(
                f"worker {w} {inv.state.value} during {during}: {detail}", worker=w, reached=reached
            )


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
    state: JobState,
    t_start: float,
    prices: Prices,
) -> JobSummary:
    """The job's summary over every coordinator and attempt: its records, results and requests."""
    cfg, store = job.cfg, job.store
    wall = state.wall_time_s + time.time() - t_start
    records = [*state.records, *(r.to_dict() for r in platform.records())]
    billed_gb_s = sum(float(r["gb_s"]) for r in records)
    # The workers' requests (of the rounds that completed) and every coordinator's own
    # (partitions, barriers, progress, state): the requests of failed attempts' workers died
    # with them and are not counted.
    requests = _add(state.coordinator_requests, store.requests)
    for r in state.results:
        requests = _add(requests, r.requests)
    functions = prices.function_cost(billed_gb_s, len(records))
    storage = prices.storage_cost(requests)
    W = cfg.num_workers
    results = state.results
    train_s = sum(r.train_s for r in results) / W
    comm_s = sum(r.comm_s for r in results) / W
    final = [r for r in results if r.worker == 0][-1]
    e0 = time.monotonic()
    acc = evaluate(job, store.get(keys.model()), key=keys.model())
    evaluation_s = time.monotonic() - e0
    worker0 = [r for r in results if r.worker == 0]
    return JobSummary(
        job_id=cfg.job_id,
        config=cfg.to_dict(),
        wall_time_s=round(wall, 3),
        train_time_s=round(train_s, 3),
        comm_time_s=round(comm_s, 3),
        billed_gb_s=round(billed_gb_s, 4),
        invocations=len(records),
        rounds=state.round,
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
        retries=[r.to_dict() for r in state.retries],
        phases_s={
            "evaluation": round(evaluation_s, 4),
            "checkpoint": round(sum(r.checkpoint_s for r in worker0), 4),
            "setup": round(sum(r.setup_s for r in worker0), 4),
        },
    )


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Request counts by kind, added (every kind present, in ``REQUEST_KINDS`` order)."""
    return {k: int(a.get(k, 0)) + int(b.get(k, 0)) for k in REQUEST_KINDS}


def final_vector(cfg: JobConfig) -> np.ndarray:
    """A finished job's trained model as its float32 vector (parameters and floating buffers),
    what the tests and benchmarks compare bit for bit."""
    job = prepare(cfg)
    key = Keys.for_job(job.cfg).model()
    meta = job.meta()
    model = seeded_model(cfg.model, cfg.seed, meta.num_classes, meta.input_shape)
    load_weights(model, job.store.get(key), key=key)
    vector: np.ndarray = ModelVector.attach(model).numpy().copy()
    return vector


def evaluate(job: PreparedJob, model_blob: bytes, *, key: str = "") -> float | None:
    """Test accuracy of the final model (``model_blob``, read from ``key``), in this process."""
    if len(job.test.y) == 0:
        return None
    meta = job.meta()
    return evaluate_weights(
        job.cfg.model,
        job.cfg.seed,
        meta.num_classes,
        meta.input_shape,
        model_blob,
        job.test.x,
        job.test.y,
        key=key,
    )


def _write_invocations(store: ObjectStore, keys: Keys, state: JobState) -> None:
    """Every invocation of the job, over every coordinator (``state.records``)."""
    _best_effort(
        lambda: store.put(keys.invocations(), json.dumps(list(state.records), indent=1).encode()),
        what=f"write the invocation records to {keys.invocations()} in {store.url}",
    )


def _delete_prefixes(store: ObjectStore, prefixes: list[str]) -> None:
    """Delete this job's objects under ``prefixes`` (never another job's). Best effort: it also
    runs in ``finally``, after a failure; what could not be deleted is logged, not raised."""
    for prefix in prefixes:
        try:
            store.delete(store.list(prefix))
        except Exception:
            log.warning(
                "could not delete the objects under %s in %s", prefix, store.url, exc_info=True
            )


def _best_effort(fn: Callable[..., object], *args: object, what: str = "") -> None:
    """Run ``fn(*args)`` after the job's outcome is decided: a failure is logged, not raised."""
    try:
        fn(*args)
    except Exception:
        log.warning("could not %s", what or getattr(fn, "__name__", "clean up"), exc_info=True)
