"""Datasets as arrays, the trigger's unequal partition, and a compact byte form for the store.

``load_dataset("cifar10:/data/cifar-10-batches-py" | "synthetic" | "digits", seed=0)`` returns
(train, test) ``ArrayDataset``s; ``partition_dataset(train, batch_sizes, seed=0)`` splits the
training set among the workers; ``dataset_to_bytes`` / ``dataset_from_bytes`` move a share
through the store as one object.
"""

from fasdl.data.arrays import ArrayDataset, PixelNorm, dataset_from_bytes, dataset_to_bytes
from fasdl.data.catalog import DATASET_SPECS, check_dataset_spec, load_dataset
from fasdl.data.cifar10 import CIFAR10_NORM, load_cifar10, write_cifar10_batches
from fasdl.data.digits import digits_dataset
from fasdl.data.partition import (
    batch_indices,
    epoch_order,
    iterations_per_epoch,
    partition_dataset,
    partition_sizes,
)
from fasdl.data.synthetic import synthetic_dataset

__all__ = [
    "CIFAR10_NORM",
    "DATASET_SPECS",
    "ArrayDataset",
    "PixelNorm",
    "batch_indices",
    "check_dataset_spec",
    "dataset_from_bytes",
    "dataset_to_bytes",
    "digits_dataset",
    "epoch_order",
    "iterations_per_epoch",
    "load_cifar10",
    "load_dataset",
    "partition_dataset",
    "partition_sizes",
    "synthetic_dataset",
    "write_cifar10_batches",
]
