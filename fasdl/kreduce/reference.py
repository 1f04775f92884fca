"""A serial reference of K-Reduce: all W workers in one loop, whole vectors, no store.

It applies the same rule as the protocol (aggregators continue from merged(t), non-aggregators
from merged(t-1), keeping their own weights in iteration 1; with a synchronous pattern everyone
continues from merged(t)) and is what the distributed run is tested against.
"""

from __future__ import annotations

import numpy as np
import torch

from fasdl.data import ArrayDataset
from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.messages import JobMeta
from fasdl.kreduce.protocol import merge_weights, weighted_sum
from fasdl.kreduce.worker import worker_batch
from fasdl.training import ModelVector, make_optimizer, seeded_model, train_step


def reference_run(
    cfg: JobConfig, partitions: list[ArrayDataset], meta: JobMeta, iterations: int
) -> np.ndarray:
    """The model vector that aggregator 0 holds after ``iterations`` iterations."""
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
    merged = vecs[0].numpy().copy()
    for t in range(1, iterations + 1):
        for w in range(W):
            x, y = data[w]
            _, idx = worker_batch(len(y), cfg.batch_sizes[w], t, cfg.seed, w)
            train_step(models[w], opts[w], x[idx], y[idx])
        merged = weighted_sum([v.numpy().copy() for v in vecs], weights)
        for w in range(W):
            if w < K or cfg.synchronous:
                vecs[w].load(merged)
            elif previous is not None:
                vecs[w].load(previous)
        previous = merged
    return merged
