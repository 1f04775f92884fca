"""Datasets by spec: ``cifar10:PATH``, ``cifar10`` (in a given store), ``synthetic[:N]``, ``digits``."""

from __future__ import annotations

from fasdl.data.arrays import ArrayDataset
from fasdl.data.cifar10 import load_cifar10, missing_cifar10_files
from fasdl.data.digits import digits_dataset
from fasdl.data.synthetic import synthetic_dataset
from fasdl.errors import InvalidInput
from fasdl.store import ObjectStore

DATASET_SPECS = ("cifar10:PATH", "cifar10", "synthetic", "synthetic:N", "digits")
SYNTHETIC_TRAIN = 5000  # training images of plain "synthetic"
_KNOWN = (
    "known: cifar10:DIR or cifar10:URL (the CIFAR-10 python batches), cifar10 (in the data store), "
    "synthetic or synthetic:N (N training images), digits"
)


def check_dataset_spec(spec: str, *, store: ObjectStore | None = None) -> None:
    """Check the spec, and for CIFAR-10 that every batch file exists, without reading any data."""
    kind, arg = _parse(spec, store)
    if kind == "cifar10":
        source = arg if arg is not None else store
        assert source is not None
        missing = missing_cifar10_files(source)
        if missing:
            where = source.url if isinstance(source, ObjectStore) else source
            raise InvalidInput(
                "dataset",
                f"missing CIFAR-10 file(s) {', '.join(missing)} in {where}",
                "expected data_batch_1 … data_batch_5 and test_batch (the python version of CIFAR-10)",
            )


def load_dataset(
    spec: str, *, seed: int, store: ObjectStore | None = None
) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) for ``spec``.

    - ``cifar10:PATH``: PATH a directory or a store URL holding the batch files;
    - ``cifar10``: the batch files at the root of ``store`` (the seed's data bucket);
    - ``synthetic`` / ``synthetic:N``: N (default 5,000) training and N // 5 (at least 10) test
      images, 3x32x32, ten classes, generated from ``seed``;
    - ``digits``: scikit-learn's 8x8 digits, 80/20 split by ``seed``.
    """
    kind, arg = _parse(spec, store)
    if kind == "cifar10":
        source = arg if arg is not None else store
        assert source is not None
        return load_cifar10(source, train=True), load_cifar10(source, train=False)
    if kind == "synthetic":
        n = int(arg) if arg is not None else SYNTHETIC_TRAIN
        return synthetic_dataset(n, max(n // 5, 10), seed=seed)
    return digits_dataset(seed)


def _parse(spec: str, store: ObjectStore | None) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec:
        raise InvalidInput("dataset", f"{spec!r} is not a dataset spec", _KNOWN)
    kind, sep, arg = spec.partition(":")
    if kind == "cifar10":
        if sep and arg:
            return kind, arg
        if store is None:
            raise InvalidInput(
                "dataset", "cifar10 needs a location", "give cifar10:DIR or cifar10:URL"
            )
        return kind, None
    if kind == "synthetic":
        if not sep:
            return kind, None
        if not (arg.isascii() and arg.isdigit()) or int(arg) < 1:  # not '²', which int() refuses
            raise InvalidInput(
                "dataset", f"{spec!r}: N must be a positive integer", "e.g. synthetic:2000"
            )
        return kind, arg
    if kind == "digits" and not sep:
        return kind, None
    raise InvalidInput("dataset", f"unknown dataset {spec!r}", _KNOWN)
