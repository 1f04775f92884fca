"""The trigger's unequal partition and the per-epoch order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fasdl.data import (
    ArrayDataset,
    PixelNorm,
    batch_indices,
    dataset_from_bytes,
    dataset_to_bytes,
    epoch_order,
    iterations_per_epoch,
    partition_dataset,
    partition_sizes,
)
from fasdl.errors import InvalidInput


def indexed_dataset(labels: np.ndarray, num_classes: int) -> ArrayDataset:
    """Sample i's single pixel holds i, so a partition tells which samples it got."""
    n = labels.size
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    return ArrayDataset(x, labels.astype(np.int64), num_classes, "idx")


def sample_ids(ds: ArrayDataset) -> np.ndarray:
    return ds.x.reshape(-1).astype(np.int64)


def test_partition_sizes_by_hand() -> None:
    # Bg = 64 + 64 + 32 + 32 = 192, ⌊1000 / 192⌋ = 5 iterations per epoch
    assert partition_sizes(1000, [64, 64, 32, 32]) == [320, 320, 160, 160]
    assert iterations_per_epoch(1000, [64, 64, 32, 32]) == 5
    assert partition_sizes(10, [10]) == [10]
    assert partition_sizes(7, [2, 1]) == [4, 2]


@pytest.mark.parametrize(
    ("n", "batches"),
    [
        (50_000, [128, 128, 64, 64, 64, 64]),
        (1797, [32, 8, 8, 8]),
        (999, [7, 5, 3]),
        (100, [1] * 100),
    ],
)
def test_equal_iterations_and_proportional_shares(n: int, batches: list[int]) -> None:
    sizes = partition_sizes(n, batches)
    iters = {size // b for size, b in zip(sizes, batches, strict=True)}
    assert len(iters) == 1  # every worker runs the same number of iterations per epoch
    assert all(size % b == 0 for size, b in zip(sizes, batches, strict=True))
    assert iters.pop() == n // sum(batches)
    assert 0 <= n - sum(sizes) < sum(batches)  # only the remainder is dropped


@pytest.mark.parametrize("seed", [0, 1])
def test_partitions_disjoint_balanced_and_sized(seed: int) -> None:
    rng = np.random.default_rng(7)
    labels = rng.permutation(np.arange(1003) % 10)
    ds = indexed_dataset(labels, 10)
    batches = [24, 24, 8, 8, 8, 8]
    parts = partition_dataset(ds, batches, seed=seed)
    assert [len(p) for p in parts] == partition_sizes(1003, batches)
    ids = np.concatenate([sample_ids(p) for p in parts])
    assert np.unique(ids).size == ids.size  # no sample in two shares
    share = np.bincount(labels, minlength=10) / labels.size
    for p in parts:
        np.testing.assert_array_equal(p.y, labels[sample_ids(p)])  # images keep their labels
        assert np.abs(p.class_counts() - len(p) * share).max() <= 2


def test_imbalanced_classes_keep_their_proportions() -> None:
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    ds = indexed_dataset(np.random.default_rng(0).permutation(labels), 3)
    for p in partition_dataset(ds, [50, 25, 25], seed=3):
        expected = len(p) * np.array([0.6, 0.3, 0.1])
        assert np.abs(p.class_counts() - expected).max() <= 2


def test_partition_is_deterministic_by_seed() -> None:
    ds = indexed_dataset(np.arange(200) % 4, 4)
    a = partition_dataset(ds, [10, 5], seed=11)
    b = partition_dataset(ds, [10, 5], seed=11)
    c = partition_dataset(ds, [10, 5], seed=12)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(sample_ids(p), sample_ids(q))
    assert not np.array_equal(sample_ids(a[0]), sample_ids(c[0]))


def test_partition_keeps_normalisation_and_serialises_compactly() -> None:
    norm = PixelNorm(255.0, (0.5,), (0.25,))
    pixels = np.random.default_rng(0).integers(0, 256, size=(600, 1, 8, 8), dtype=np.uint8)
    ds = ArrayDataset(norm.apply(pixels), np.arange(600) % 3, 3, "px", norm)
    for p in partition_dataset(ds, [4, 2], seed=0):
        data = dataset_to_bytes(p)
        back = dataset_from_bytes(data)
        np.testing.assert_array_equal(back.x, p.x)
        assert back.pixel_norm == norm and len(data) < p.x.nbytes / 3


@pytest.mark.parametrize(
    ("n", "batches", "field", "words"),
    [
        (100, [0, 4], "batch size", "worker 0 has batch size 0"),
        (100, [4, -1], "batch size", "worker 1 has batch size -1"),
        (100, [4, 2.5], "batch size", "2.5"),
        (100, [], "batch size", "non-empty"),
        (100, [60, 41], "global batch", "global batch 101"),
        (10, [11], "global batch", "10 training samples"),
    ],
)
def test_validation(n: int, batches: list, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as e:
        partition_sizes(n, batches)
    assert e.value.field == field
    assert words in str(e.value)
    with pytest.raises(InvalidInput):
        partition_dataset(indexed_dataset(np.arange(n) % 2, 2), batches, seed=0)


def test_epoch_order() -> None:
    order = epoch_order(50, 0, 3)
    np.testing.assert_array_equal(np.sort(order), np.arange(50))
    np.testing.assert_array_equal(order, epoch_order(50, 0, 3))  # a re-invoked worker sees the same
    assert not np.array_equal(order, epoch_order(50, 1, 3))
    assert not np.array_equal(order, epoch_order(50, 0, 4))
    with pytest.raises(InvalidInput):
        epoch_order(50, -1, 3)


def test_batch_indices_walk_the_epochs() -> None:
    n, b = 12, 4  # three iterations per epoch
    first_epoch = np.concatenate([batch_indices(n, b, t, 5) for t in range(3)])
    np.testing.assert_array_equal(first_epoch, epoch_order(n, 0, 5))
    np.testing.assert_array_equal(batch_indices(n, b, 4, 5), epoch_order(n, 1, 5)[4:8])
    with pytest.raises(InvalidInput):
        batch_indices(3, 4, 0, 5)


def test_batch_gives_tensors_of_the_chosen_samples() -> None:
    ds = indexed_dataset(np.arange(12) % 3, 3)
    idx = batch_indices(12, 4, 1, 5)
    x, y = ds.batch(idx)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (4, 1, 1, 1)
    np.testing.assert_array_equal(x.numpy().reshape(-1), idx)
    np.testing.assert_array_equal(y.numpy(), idx % 3)
    x += 1  # a copy: the dataset is unchanged
    assert ds.x.reshape(-1)[idx[0]] == idx[0]
