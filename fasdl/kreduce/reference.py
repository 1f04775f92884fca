"""A serial reference of K-Reduce: all W workers in one loop, whole vectors, no store.

It applies the same rule as the protocol (aggregators continue from merged(t), non-aggregators
from merged(t-1), keeping their own weights in iteration 1; with a synchronous pattern everyone
continues from merged(t)) and is what the distributed run is tested against.

With a lossy wire (``cfg.wire``) it applies the protocol's rounding too, chunk by chunk: each
worker's pieces of the chunks it does not own travel in the wire format (int8 with one residual
per worker and chunk), the aggregator of a chunk averages them with its own full-precision part,
and everyone continues from the merged chunk as decoded (int8: with the aggregator's residual).
So a distributed run in one invocation equals it bit for bit in every format.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fasdl.data import ArrayDataset
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.messages import JobMeta
from fasdl.kreduce.protocol import merge_weights, merged_header, weighted_sum
from fasdl.kreduce.worker import worker_batch
from fasdl.training import ModelVector, chunk_bounds, make_optimizer, seeded_model, train_step
from fasdl.training.wire import ErrorFeedback, wire_nbytes


def reference_run(
    cfg: JobConfig,
    partitions: list[ArrayDataset],
    meta: JobMeta,
    iterations: int,
    *,
    on_iteration: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """The model vector that aggregator 0 holds after ``iterations`` iterations.

    ``on_iteration(t, merged)`` sees merged(t) after each iteration (to trace accuracy)."""
    cfg = cfg.resolved()
    W, K = cfg.num_workers, cfg.num_aggregators
    models = [
        seeded_model(cfg.model, cfg.seed, meta.num_classes, meta.input_shape) for _ in range(W)
    ]
    vecs = [ModelVector.attach(m) for m in models]
    opts = [
        make_optimizer(m, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for m in models
    ]
    data = [(torch.from_numpy(np.array(p.x)), torch.from_numpy(np.array(p.y))) for p in partitions]
    weights = merge_weights(cfg.batch_sizes, cfg.merge)
    previous: np.ndarray | None = None
    feedback = ErrorFeedback(cfg.wire)
    merged = vecs[0].numpy().copy()
    for t in range(1, iterations + 1):
        for w in range(W):
            x, y = data[w]
            _, idx = worker_batch(len(y), cfg.batch_sizes[w], t, cfg.seed, w)
            train_step(models[w], opts[w], x[idx], y[idx])
        if cfg.wire == "fp32":
            merged = weighted_sum([v.numpy().copy() for v in vecs], weights)
        else:
            merged = _merge_on_the_wire([v.numpy().copy() for v in vecs], weights, K, feedback)
        for w in range(W):
            if w < K or cfg.synchronous:
                vecs[w].load(merged)
            elif previous is not None:
                vecs[w].load(previous)
        previous = merged
        if on_iteration is not None:
            on_iteration(t, merged)
    return merged


def _merge_on_the_wire(
    vecs: list[np.ndarray], weights: np.ndarray, num_aggregators: int, feedback: ErrorFeedback
) -> np.ndarray:
    """The merged vector as the workers decode it, when pieces and merged chunks travel in
    ``feedback.wire`` (streams named as ``KReduce`` names them, plus the sender)."""
    merged = np.empty_like(vecs[0])
    for c, (a, b) in enumerate(chunk_bounds(len(merged), num_aggregators)):
        parts = [
            v[a:b] if s == c else feedback.encode(("piece", s, c), v[a:b])[1]
            for s, v in enumerate(vecs)
        ]
        merged[a:b] = feedback.encode(("merged", c), weighted_sum(parts, weights))[1]
    return merged


def bytes_per_iteration(numel: int, num_workers: int, num_aggregators: int, wire: str) -> int:
    """The bytes one iteration moves through the store, PUT and GET counted once each (polls
    that miss move none): each chunk's W-1 pieces are put and got once, its merged chunk is put
    once and got by the W-1 workers that do not aggregate it."""
    W = num_workers
    merged_extra = len(merged_header(0, 0))
    total = 0
    for a, b in chunk_bounds(numel, num_aggregators):
        piece = wire_nbytes(b - a, wire)
        total += 2 * (W - 1) * piece + W * (piece + merged_extra)
    return total
