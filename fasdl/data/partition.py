"""The trigger's unequal partition, and the per-epoch sample order. Pure functions, no I/O.

Worker i trains with batch size b_i (B for aggregators, A for the others). With the global batch
Bg = sum(b_i), an epoch has ⌊N / Bg⌋ iterations and worker i gets exactly that many times b_i
samples, so every worker runs the same number of iterations per epoch; the last N mod Bg samples
are dropped. Each share is stratified: every class appears in it in (nearly) the proportion it
has in the whole dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fasdl.data.arrays import ArrayDataset
from fasdl.errors import InvalidInput
from fasdl.validate import whole_number


def iterations_per_epoch(num_samples: int, batch_sizes: Sequence[int]) -> int:
    """⌊N / Bg⌋, after checking the batch sizes against the data (InvalidInput otherwise)."""
    whole_number(num_samples, "num_samples", minimum=0)
    if (
        isinstance(batch_sizes, str | bytes)
        or not isinstance(batch_sizes, Sequence)
        or not batch_sizes
    ):
        raise InvalidInput(
            "batch size",
            f"{batch_sizes!r} is not a non-empty list of batch sizes",
            "one per worker",
        )
    for i, b in enumerate(batch_sizes):
        try:
            whole_number(b, "batch size", minimum=1)
        except InvalidInput:
            raise InvalidInput(
                "batch size",
                f"worker {i} has batch size {b!r}",
                "every batch size must be a whole number ≥ 1",
            ) from None
    global_batch = int(sum(batch_sizes))
    if global_batch > num_samples:
        raise InvalidInput(
            "global batch",
            f"the global batch {global_batch} (sum of {len(batch_sizes)} workers' batch sizes) "
            f"is larger than the {num_samples} training samples",
            "use smaller batches or fewer workers",
        )
    return num_samples // global_batch


def partition_sizes(num_samples: int, batch_sizes: Sequence[int]) -> list[int]:
    """Samples per worker: iterations per epoch times each worker's batch size."""
    iters = iterations_per_epoch(num_samples, batch_sizes)
    return [iters * int(b) for b in batch_sizes]


def partition_dataset(
    ds: ArrayDataset, batch_sizes: Sequence[int], *, seed: int
) -> list[ArrayDataset]:
    """One class-balanced share per worker, sized by ``partition_sizes``; deterministic by seed.

    Samples are shuffled within each class and then interleaved by their relative position in
    their class; cutting that sequence into consecutive blocks gives every block each class's
    share to within one sample. The tail (N mod Bg samples, also balanced) is dropped.
    """
    sizes = partition_sizes(len(ds), batch_sizes)
    whole_number(seed, "seed", minimum=0)
    rng = np.random.default_rng([seed, 3])
    order = _interleave_classes(ds.y, rng)
    parts, start = [], 0
    for i, size in enumerate(sizes):
        block = rng.permutation(order[start : start + size])
        parts.append(ds.subset(block, name=f"{ds.name}-part{i}" if ds.name else f"part{i}"))
        start += size
    return parts


def epoch_order(n: int, epoch: int, seed: int) -> np.ndarray:
    """A permutation of 0..n-1 that depends only on (n, epoch, seed).

    A worker re-invoked mid-epoch recomputes the same order and resumes at its next batch. Mix
    the worker's rank into ``seed`` if workers should not share orders.
    """
    whole_number(n, "n", minimum=0)
    whole_number(epoch, "epoch", minimum=0)
    whole_number(seed, "seed", minimum=0)
    return np.random.default_rng([seed, 4, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, iteration: int, seed: int) -> np.ndarray:
    """The samples of global iteration ``iteration`` (0-based, counted across epochs) for a
    worker holding ``n`` samples: epoch ``iteration // (n // batch_size)``, its next slice of
    ``epoch_order``. ``n`` should be a multiple of ``batch_size``, as partitions are."""
    whole_number(batch_size, "batch size", minimum=1)
    whole_number(iteration, "iteration", minimum=0)
    iters = n // batch_size
    if iters < 1:
        raise InvalidInput(
            "batch size",
            f"batch size {batch_size} is larger than the {n} samples",
            "use a smaller batch",
        )
    epoch, step = divmod(iteration, iters)
    return epoch_order(n, epoch, seed)[step * batch_size : (step + 1) * batch_size]


def _interleave_classes(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All indices, ordered so that every prefix and every block holds each class pro rata."""
    keys = np.empty(y.shape[0], np.float64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        keys[idx] = (np.arange(idx.size) + 0.5) / idx.size  # relative position within the class
    tiebreak = rng.random((y.shape[0],))  # equal keys (classes of equal size): random class order
    return np.lexsort((tiebreak, keys))
