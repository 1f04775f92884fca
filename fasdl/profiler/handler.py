"""The profiling function (Lambda's signature): time training and transformation at one config.

One invocation is one (memory, batch size) pair: the platform's memory setting is what is being
measured. The function reads a sample of real training data from the store, builds the model
on its input shape, runs warm-up iterations, then times training iterations (forward, backward,
SGD step, as the K-Reduce worker does) and the transformation (the model's flat vector cut into
K chunks and turned into bytes: what a K-Reduce worker sends each iteration).

Why blocks of at least ``sample_s`` rather than single iterations: a function's CPU share is
enforced in periods (Lambda's cgroup quota; the local platform's duty cycle of 50 ms), so a 1 ms
iteration either runs at full speed or waits for the next period. One timed sample is the mean
over a block of iterations lasting at least ``sample_s`` (many periods), which is the rate the
function really gets; the result is the median of the samples. A slow iteration (longer than
``sample_s``) is a block by itself, so big models are timed one iteration at a time.

``event["kind"] == "transfer"`` runs the store's transfer profile instead (``storage.py``), so
one deployed function serves both. Only the standard library (and fasdl's platform interface,
for ``HANDLER``) is imported at the top: torch is imported inside, so the transfer profile runs
at 128 MB.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from fasdl.errors import InvalidInput
from fasdl.platform.base import Handler
from fasdl.profiler.task import ProfileTask
from fasdl.validate import json_object

# How the profiler invokes this module's ``handler``: its short name and its import target.
HANDLER = Handler("profile", f"{__name__}:handler")
DEADLINE_MARGIN_S = 5.0
SINGLE_ITERATIONS = 20  # single training iterations timed for their spread  # stop timing this long before the function's timeout, to return in time


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    kind = json_object(event, "event").get("kind", "train")
    if kind == "transfer":
        from fasdl.profiler.storage import transfer_handler

        return transfer_handler(event, context)
    if kind != "train":
        raise InvalidInput("event.kind", f"unknown profiling kind {kind!r}", "train or transfer")
    return train_handler(event, context)


def time_samples(
    work: Callable[[], object],
    *,
    samples: int,
    sample_s: float,
    deadline: float,
) -> list[float]:
    """Seconds per call of ``work``: ``samples`` means, each over a block lasting >= ``sample_s``.

    Stops early (with at least one sample) when the next block would end past ``deadline``
    (``time.monotonic()``), so a slow configuration returns what it has instead of timing out.
    """
    out: list[float] = []
    for _ in range(samples):
        calls = 0
        start = time.perf_counter()
        elapsed = 0.0
        while calls == 0 or elapsed < sample_s:
            work()
            calls += 1
            elapsed = time.perf_counter() - start
        out.append(elapsed / calls)
        if time.monotonic() + elapsed > deadline:
            break
    return out


def train_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``event``: a ``ProfileTask``. Returns the medians and every sample, in seconds."""
    return run_task(ProfileTask.from_dict(event), context)


def run_task(task: ProfileTask, context: Any) -> dict[str, Any]:
    """Time ``task``'s training and transformation within the function's remaining time."""
    started = time.monotonic()
    import numpy as np
    import torch

    from fasdl.data import dataset_from_bytes
    from fasdl.models import count_parameters
    from fasdl.store import open_store
    from fasdl.training import ModelVector, chunk_bounds, make_optimizer, seeded_model, train_step
    from fasdl.training.allocator import steady_allocator

    steady_allocator()  # the worker's allocation regime, so its iterations take what these do

    batch_size, iterations, warmup = task.batch_size, task.iterations, task.warmup
    seed, sample_s = task.seed, task.sample_s
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_S

    store = open_store(task.store)
    # The data as a worker loads its partition (get, decode, a writable copy), timed: a worker
    # loads D/W samples, this function a sample of them, so the start-up below leaves it out
    # and the profile gives it per sample (``load_s_per_sample``).
    load_started = time.monotonic()
    data = dataset_from_bytes(store.get(task.data_key), key=task.data_key)
    x_all = torch.from_numpy(np.array(data.x))  # a writable copy: the dataset is read-only
    y_all = torch.from_numpy(np.array(data.y))
    data_load_s = time.monotonic() - load_started
    model = seeded_model(task.model, seed, data.num_classes, data.input_shape)
    vec = ModelVector.attach(model)
    opt = make_optimizer(model, lr=task.lr, momentum=task.momentum)
    bounds = chunk_bounds(vec.numel, min(task.chunks, vec.numel))
    rng = np.random.default_rng(seed)
    n = len(data)

    def train_iteration() -> None:
        # The batch is picked inside the timed step, as the worker's train_s includes it.
        idx = torch.from_numpy(rng.choice(n, batch_size, replace=n < batch_size))
        train_step(model, opt, x_all[idx], y_all[idx])

    def transform() -> None:
        flat = vec.numpy()
        for a, b in bounds:
            flat[a:b].tobytes()

    # What a worker does before its first iteration (imports, store, data, model, optimizer):
    # with the platform's start of the process (billed duration - handler_s), the start-up.
    model_ready_s = time.monotonic() - started
    for _ in range(warmup):
        train_iteration()
    transform()
    setup_s = time.monotonic() - started
    train = time_samples(train_iteration, samples=iterations, sample_s=sample_s, deadline=deadline)
    trans = time_samples(transform, samples=iterations, sample_s=sample_s, deadline=deadline)
    # Single iterations, as a worker runs them: their spread is what makes W workers wait for
    # the slowest (the blocks above average it away).
    single = time_samples(
        train_iteration, samples=max(SINGLE_ITERATIONS, iterations), sample_s=0.0, deadline=deadline
    )
    mean = statistics.fmean(single)
    train_cv = statistics.pstdev(single) / mean if len(single) > 1 and mean > 0 else None
    return {
        "model_ready_s": model_ready_s,
        "data_load_s": data_load_s,
        "data_samples": len(data),
        "train_single_s": single,
        "train_cv": train_cv,
        "handler_s": time.monotonic() - started,
        "train_s": statistics.median(train),
        "trans_s": statistics.median(trans),
        "train_samples_s": train,
        "trans_samples_s": trans,
        "numel": vec.numel,
        "num_params": count_parameters(model),
        "chunks": len(bounds),
        "input_shape": list(data.input_shape),
        "setup_s": setup_s,
        "torch_threads": torch.get_num_threads(),
        "vcpus": getattr(context, "vcpus", None),
        "cpu_period_s": getattr(context, "cpu_period_s", None),
    }
