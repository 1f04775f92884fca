"""The FasDL worker: a Lambda-style handler that trains its partition with K-Reduce.

One invocation trains from where the last one stopped until the stop iteration that aggregator 0
announces (when its function is about to run out of time) or the end of training, then saves a
checkpoint into its attempt's set. With the same seed, stopping and resuming gives exactly the
weights of a run that never stops: the data order is a pure function of (seed, worker, epoch),
and the checkpoint holds the weights, the integer buffers and the optimizer's momentum. A resumed
aggregator also puts its merged chunk of the checkpoint's iteration again, under the new attempt:
the non-aggregators read it next, and the failed attempt that wrote it may already be gone.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from fasdl.data import batch_indices, dataset_from_bytes
from fasdl.errors import CorruptObject, JobFailed
from fasdl.kreduce.keys import Keys
from fasdl.kreduce.logs import IterationLog, Progress
from fasdl.kreduce.messages import WorkerResult, WorkerTask, decode_json, json_number
from fasdl.kreduce.protocol import KReduce
from fasdl.kreduce.timeouts import PeerTimeouts
from fasdl.platform import Handler
from fasdl.store import open_store
from fasdl.training import (
    ModelVector,
    MomentumSGD,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    seeded_model,
    state_dict_bytes,
    train_step,
)
from fasdl.training.allocator import steady_allocator

PROGRESS_EVERY_S = 1.0
GO_POLL_MAX_S = 0.05  # the longest pause between a worker's reads of the coordinator's go
# A test hook: every iteration lasts at least this long (seconds), so a test can make a job
# outlast its functions' time limit by construction, whatever the machine's speed.
MIN_ITERATION_ENV = "FASDL_TEST_MIN_ITERATION_S"
# A test hook for fault tests: "W:T:A" makes worker W kill itself with SIGKILL when it reaches
# iteration T in attempt A ("*": in every attempt), a real crash at a point the test chooses.
KILL_AT_ENV = "FASDL_TEST_KILL_AT"
# How the coordinator invokes this module's ``handler``: its short name and its import target.
HANDLER = Handler("kreduce_worker", f"{__name__}:handler")


def worker_batch(
    num_samples: int, batch_size: int, iteration: int, seed: int, worker: int
) -> tuple[int, np.ndarray]:
    """Epoch and sample indices of global iteration ``iteration`` (1-based) for one worker.

    Each worker shuffles its partition in its own order, derived from the job's seed.
    """
    epoch = (iteration - 1) // (num_samples // batch_size)
    return epoch, batch_indices(num_samples, batch_size, iteration - 1, seed * 1_000_003 + worker)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: ``event`` is a ``WorkerTask``, the result a ``WorkerResult`` (as JSON)."""
    return run_worker(WorkerTask.from_dict(event), context).to_dict()


def run_worker(task: WorkerTask, context: Any) -> WorkerResult:
    """Train from the task's checkpoint set (or from scratch) until the agreed stop or the end of
    training."""
    started_at, started = time.time(), time.monotonic()
    phases: dict[str, float] = {}  # where the setup went (``WorkerResult.setup_phases_s``)
    lap = [started]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name], lap[0] = now - lap[0], now

    steady_allocator()  # train at the speed the profile measured (fasdl.training.allocator)
    cfg, w, rnd, meta = task.job, task.worker, task.round, task.meta
    total_iterations = meta.total_iterations
    store = open_store(cfg.store, patient=True)  # a worker may start during a store outage
    keys = Keys.for_job(cfg, attempt=task.attempt)
    batch = cfg.batch_sizes[w]

    partition_key = keys.partition_of(w)
    lap[0] = time.monotonic()
    data = dataset_from_bytes(store.get(partition_key), key=partition_key)
    x_all = torch.from_numpy(np.array(data.x))  # a writable copy: the decoded arrays are read-only
    y_all = torch.from_numpy(np.array(data.y))
    phase("data")
    model = seeded_model(cfg.model, cfg.seed, meta.num_classes, meta.input_shape)
    vec = ModelVector.attach(model)
    opt = make_optimizer(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    done = 0
    if task.resume_set is not None:
        ckpt = keys.checkpoint(w, task.resume_set)
        done = _resume(store.get(ckpt), ckpt, vec, opt, model)
        if done != task.start_iteration:
            raise CorruptObject(ckpt, f"holds iteration {done}, not {task.start_iteration}")

    phase("model")
    timeouts = PeerTimeouts.for_worker(cfg, w, vec.numel)
    comm = KReduce(
        store,
        keys,
        worker=w,
        batch_sizes=cfg.batch_sizes,
        num_aggregators=cfg.num_aggregators,
        numel=vec.numel,
        timeout_s=timeouts.start_s(),  # set before each exchange (``timeouts.exchange_s``)
        merge=cfg.merge,
        synchronous=cfg.synchronous,
        wire=cfg.wire,
    )
    if (
        done
        and comm.is_aggregator
        and not cfg.synchronous
        and cfg.num_aggregators < cfg.num_workers
    ):
        # The non-aggregators continue from merged(done): this aggregator's vector is exactly it.
        comm.republish_merged(done, vec.numpy())
    # Start barrier: say we are here (with our deadline), wait for the coordinator's go, which
    # carries the earliest deadline of all workers: the stop is planned against it.
    phase("comm")
    my_deadline = time.time() + context.get_remaining_time_in_millis() / 1000
    store.put(keys.arrived(w), json.dumps({"deadline": my_deadline}).encode())
    go = decode_json(
        store.wait(
            keys.go(),
            timeouts.start_s(),
            what=f"the coordinator's start signal of round {rnd} (attempt {task.attempt})",
            poll_max_s=GO_POLL_MAX_S,
        ),
        keys.go(),
    )
    deadline = json_number(go, "deadline", keys.go())
    phase("barrier")
    setup_s = time.monotonic() - started

    min_iteration_s = float(os.environ.get(MIN_ITERATION_ENV) or 0.0)
    kill_at = _kill_point(task)
    logs: list[IterationLog] = []
    stop_at = total_iterations
    announced = 0
    last_progress = 0.0
    loop_started = time.time()
    t = done
    try:
        while t < min(stop_at, total_iterations):
            t += 1
            if t == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if context.get_remaining_time_in_millis() <= 0:
                # out of time, or cancelled (a platform that cannot kill a thread says 0):
                # stop before writing anything more into the attempt's keys
                raise JobFailed(f"worker {w}: stopped at iteration {t} (no time left)")
            it0 = time.perf_counter()
            epoch, idx = worker_batch(len(y_all), batch, t, cfg.seed, w)
            loss = train_step(model, opt, x_all[idx], y_all[idx])
            if min_iteration_s:
                time.sleep(max(0.0, it0 + min_iteration_s - time.perf_counter()))
            train_s = time.perf_counter() - it0

            if w == 0 and not announced:
                announced = _plan_stop(t, logs, train_s, deadline, cfg.func_time_s)
                if (
                    cfg.max_iterations_per_invocation
                    and t + 1 - done >= cfg.max_iterations_per_invocation
                ):
                    announced = t + 1
            comm.timeout_s = timeouts.exchange_s(logs, train_s)
            res = comm.exchange(t, vec.numpy(), stop_at=announced)
            if res.vector is not None:
                vec.load(res.vector)
            if res.stop_at >= t:  # an announcement of an earlier round names an iteration before t
                stop_at = res.stop_at
            tm = res.timings
            logs.append(
                IterationLog(
                    t,
                    epoch,
                    loss,
                    train_s,
                    tm.upload_s,
                    tm.aggregate_s,
                    tm.download_s,
                    time.perf_counter() - it0,
                    end_s=time.time(),
                )
            )
            if w == 0 and (
                time.monotonic() - last_progress >= PROGRESS_EVERY_S or t == total_iterations
            ):
                last_progress = time.monotonic()
                report = Progress(
                    iteration=t,
                    epoch=epoch,
                    loss=loss,
                    time=time.time(),
                    round=rnd,
                    attempt=task.attempt,
                    start_iteration=done,
                    loop_started=loop_started,
                    total_iterations=total_iterations,
                )
                store.put(keys.progress(), json.dumps(report.to_dict()).encode())
    finally:
        comm.close()

    c0 = time.perf_counter()
    finished = t >= total_iterations
    if finished:
        if w == 0:
            store.put(keys.model(), state_dict_bytes(model))
    else:
        store.put(keys.checkpoint(w, task.attempt), save_checkpoint(t, vec, opt, model))
    checkpoint_s = time.perf_counter() - c0
    store.put(keys.worker_log(w, rnd), "\n".join(json.dumps(asdict(r)) for r in logs).encode())
    return WorkerResult(
        worker=w,
        round=rnd,
        first_iteration=done + 1,
        last_iteration=t,
        finished=finished,
        setup_s=setup_s,
        checkpoint_s=checkpoint_s,
        train_s=sum(r.train_s for r in logs),
        comm_s=sum(r.upload_s + r.aggregate_s + r.download_s for r in logs),
        final_loss=logs[-1].loss if logs else None,
        requests=dict(store.requests),
        started_at=started_at,
        setup_phases_s=phases,
    )


def _kill_point(task: WorkerTask) -> int:
    """The iteration at which ``KILL_AT_ENV`` kills this worker (0: never)."""
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return 0
    worker, iteration, attempt = spec.split(":")
    if int(worker) != task.worker or attempt not in ("*", str(task.attempt)):
        return 0
    return int(iteration)


def _resume(
    blob: bytes, key: str, vec: ModelVector, opt: MomentumSGD, model: torch.nn.Module
) -> int:
    """Load the checkpoint ``blob`` (read at ``key``); the iteration it was saved at."""
    try:
        return load_checkpoint(blob, vec, opt, model)
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CorruptObject(key, f"not a checkpoint of this model ({type(e).__name__}: {e})") from e


def _plan_stop(
    t: int, logs: list[IterationLog], train_s: float, deadline: float, func_time_s: float
) -> int:
    """Aggregator 0's decision, made while putting merged chunk 0 of iteration t.

    Announced in merged(t), the stop is seen by the aggregators in t and by the non-aggregators
    in t+1, so the earliest stop is t+1. Stop there if one more iteration after this one, a
    checkpoint and a margin would not fit before the earliest deadline of all workers.
    """
    recent = [r.iteration_s for r in logs[-5:]]
    iteration_s = max([*recent, 2 * train_s])  # before any full iteration: guess comm = train
    margin_s = max(1.0, 0.05 * func_time_s)  # the checkpoint and the slowest worker's lag
    remaining = deadline - time.time()
    if remaining < 2 * 1.25 * iteration_s + margin_s:
        return t + 1
    return 0
