"""CIFAR-10 in its standard Python format (``cifar-10-batches-py``), from a directory or a store.

Each of ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` is a pickled dict with ``b"data"``
(uint8, N x 3072: 1024 red, 1024 green, 1024 blue values, row-major 32x32) and ``b"labels"``
(a list of N ints), read with ``encoding="bytes"``. The files are unpickled with an allow-list
(dicts, lists, bytes, and numpy's array reconstruction), so a file planted in a bucket cannot run
code. ``write_cifar10_batches`` writes small files in exactly that format, with learnable
synthetic images, since this machine (and CI) cannot download CIFAR-10.
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fasdl.data.arrays import ArrayDataset, PixelNorm
from fasdl.data.synthetic import synthetic_pixels
from fasdl.errors import InvalidInput, ObjectNotFound
from fasdl.store import ObjectStore, open_store
from fasdl.validate import whole_number

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
LABEL_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel mean and standard deviation of the 50,000 training images, in 0..1 units.
CIFAR10_NORM = PixelNorm(255.0, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_LAYOUT = (
    "expected the Python version of CIFAR-10 (cifar-10-batches-py): data_batch_1 … data_batch_5 "
    "and test_batch side by side, in a directory or under a store prefix"
)

Source = str | Path | ObjectStore


def load_cifar10(
    source: Source, *, train: bool = True, max_batches: int | None = None
) -> ArrayDataset:
    """Read the training batches (or ``test_batch``) from a directory, a store URL or an ObjectStore.

    ``max_batches`` (1–5) reads only the first training batches, for smaller runs.
    """
    if max_batches is not None:
        whole_number(
            max_batches,
            "max_batches",
            minimum=1,
            maximum=5,
            fix="CIFAR-10 has five training batches",
        )
    names = (TRAIN_FILES[: max_batches or 5]) if train else (TEST_FILE,)
    read, where = _reader(source)
    pixels, labels = [], []
    for name in names:
        batch = _decode(read(name), name, where)
        pixels.append(batch[b"data"].reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    images = np.concatenate(pixels)
    y = np.concatenate(labels)
    return ArrayDataset(
        CIFAR10_NORM.apply(images),
        y,
        10,
        "cifar10-train" if train else "cifar10-test",
        CIFAR10_NORM,
    )


def missing_cifar10_files(source: Source, *, max_batches: int | None = None) -> list[str]:
    """The batch files ``load_cifar10`` would need that are not there (one HEAD/stat per file)."""
    store, directory = _locate(source)
    needed = [*TRAIN_FILES[: max_batches or 5], TEST_FILE]
    if store is not None:
        return [n for n in needed if not store.exists(n)]
    assert directory is not None
    if not directory.is_dir():
        return needed
    return [n for n in needed if not (directory / n).is_file()]


def write_cifar10_batches(
    target: Source, n_per_batch: int, seed: int, *, n_test: int | None = None
) -> list[str]:
    """Write ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and ``batches.meta`` in the
    standard format, with ``n_per_batch`` (and ``n_test``, default the same) learnable synthetic
    images each. Returns the names written. ``target``: directory, store URL or ObjectStore."""
    whole_number(n_per_batch, "n_per_batch", minimum=1)
    n_test = whole_number(n_per_batch if n_test is None else n_test, "n_test", minimum=1)
    counts = [n_per_batch] * 5 + [n_test]
    store, directory = _locate(target)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    written = []
    start = 0
    for i, (name, n) in enumerate(zip((*TRAIN_FILES, TEST_FILE), counts, strict=True)):
        pixels, labels = synthetic_pixels(n, num_classes=10, shape=(3, 32, 32), seed=seed, stream=i)
        batch = {
            b"batch_label": (
                f"training batch {i + 1} of 5" if name != TEST_FILE else "testing batch 1 of 1"
            ).encode(),
            b"labels": [int(v) for v in labels],
            b"data": np.ascontiguousarray(pixels.reshape(n, 3072)),
            b"filenames": [f"synthetic_{start + j:06d}.png".encode() for j in range(n)],
        }
        start += n
        _write(store, directory, name, pickle.dumps(batch, protocol=4))
        written.append(name)
    meta = {
        b"num_cases_per_batch": n_per_batch,
        b"label_names": [s.encode() for s in LABEL_NAMES],
        b"num_vis": 3072,
    }
    _write(store, directory, META_FILE, pickle.dumps(meta, protocol=4))
    return [*written, META_FILE]


# -- I/O helpers ------------------------------------------------------------------------------
def _locate(source: Source) -> tuple[ObjectStore | None, Path | None]:
    if isinstance(source, ObjectStore):
        return source, None
    if isinstance(source, str) and "://" in source:
        return open_store(source), None
    if isinstance(source, str | Path) and str(source):
        return None, Path(source)
    raise InvalidInput("dataset", f"{source!r} is not a directory, store URL or store", _LAYOUT)


def _reader(source: Source) -> tuple[Callable[[str], bytes], str]:
    store, directory = _locate(source)
    if store is not None:
        where = f"store {store.url}"

        def read(name: str) -> bytes:
            try:
                return store.get(name)
            except ObjectNotFound as e:
                raise InvalidInput(
                    "dataset", f"missing CIFAR-10 file {name!r} in {where}", _LAYOUT
                ) from e

        return read, where
    assert directory is not None
    # Accept the folder that holds the extracted archive as well as the archive's own folder.
    if not (directory / TRAIN_FILES[0]).exists() and (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    where = f"directory {directory}"

    def read_file(name: str) -> bytes:
        try:
            return (directory / name).read_bytes()
        except FileNotFoundError as e:
            raise InvalidInput(
                "dataset", f"missing CIFAR-10 file {name!r} in {where}", _LAYOUT
            ) from e

    return read_file, where


def _write(store: ObjectStore | None, directory: Path | None, name: str, data: bytes) -> None:
    if store is not None:
        store.put(name, data)
    else:
        assert directory is not None
        (directory / name).write_bytes(data)


_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # files pickled with numpy < 2
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles made by Python 3
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not allowed in a CIFAR-10 batch"
            ) from None


def _decode(raw: bytes, name: str, where: str) -> dict[bytes, Any]:
    try:
        batch: dict[bytes, Any] = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
        ok = (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3072
            and len(labels) == data.shape[0]
        )
    except Exception as e:  # any malformed pickle: the message below says what was expected
        raise InvalidInput(
            "dataset", f"{name!r} in {where} is not a CIFAR-10 batch: {e}", _LAYOUT
        ) from e
    if not ok:
        raise InvalidInput(
            "dataset",
            f"{name!r} in {where} is not a CIFAR-10 batch (want uint8 N x 3072 data and N labels)",
            _LAYOUT,
        )
    return batch
