"""Datasets: CIFAR-10 files in the standard format, synthetic and digits data, the byte form."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fasdl.data import (
    CIFAR10_NORM,
    ArrayDataset,
    PixelNorm,
    check_dataset_spec,
    dataset_from_bytes,
    dataset_to_bytes,
    digits_dataset,
    load_cifar10,
    load_dataset,
    synthetic_dataset,
    write_cifar10_batches,
)
from fasdl.errors import InvalidInput
from fasdl.store import open_store

BATCHES = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
]
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1)


@pytest.fixture
def cifar_dir(tmp_path):
    write_cifar10_batches(tmp_path, 6, seed=1, n_test=4)
    return tmp_path


# -- CIFAR-10 ---------------------------------------------------------------------------------
def test_writer_uses_the_standard_format(cifar_dir) -> None:
    for name in BATCHES:
        with open(cifar_dir / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # how every CIFAR-10 loader reads them
        n = 4 if name == "test_batch" else 6
        assert isinstance(batch, dict)
        assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (n, 3072)
        assert isinstance(batch[b"labels"], list) and len(batch[b"labels"]) == n
        assert all(isinstance(v, int) and 0 <= v < 10 for v in batch[b"labels"])
        assert isinstance(batch[b"batch_label"], bytes)
        assert len(batch[b"filenames"]) == n
    with open(cifar_dir / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="bytes")[b"label_names"][0] == b"airplane"


def test_reader_round_trip(cifar_dir) -> None:
    train = load_cifar10(cifar_dir)
    test = load_cifar10(str(cifar_dir), train=False)
    assert train.x.shape == (30, 3, 32, 32) and train.x.dtype == np.float32
    assert len(test) == 4 and train.num_classes == 10
    raw = [pickle.loads((cifar_dir / n).read_bytes(), encoding="bytes") for n in BATCHES[:5]]
    pixels = np.concatenate([b[b"data"] for b in raw]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b[b"labels"] for b in raw])
    # red, green, blue planes of 1024 values each, normalised with the CIFAR-10 mean and std
    expected = (pixels / 255.0 - CIFAR_MEAN) / CIFAR_STD
    np.testing.assert_allclose(train.x, expected, atol=1e-5)
    np.testing.assert_array_equal(train.y, labels)
    assert train.pixel_norm == CIFAR10_NORM
    assert len(load_cifar10(cifar_dir, max_batches=2)) == 12


def test_reader_accepts_the_archive_parent_folder(tmp_path) -> None:
    write_cifar10_batches(tmp_path / "cifar-10-batches-py", 3, seed=0)
    assert len(load_cifar10(tmp_path)) == 15


def test_round_trip_through_stores(tmp_path) -> None:
    written = write_cifar10_batches("memory://cifar-test/databucket", 5, seed=2)
    assert set(BATCHES) <= set(written)
    keys = open_store("memory://cifar-test").list("databucket/")
    assert {f"databucket/{name}" for name in BATCHES} <= set(keys)
    from_url = load_cifar10("memory://cifar-test/databucket")
    scoped = open_store("memory://cifar-test").scoped("databucket")
    from_store = load_cifar10(scoped, train=False)
    assert len(from_url) == 25 and len(from_store) == 5
    write_cifar10_batches(tmp_path, 5, seed=2)
    np.testing.assert_array_equal(from_url.x, load_cifar10(tmp_path).x)  # same seed, same images
    file_store = load_cifar10(f"file://{tmp_path}")
    np.testing.assert_array_equal(file_store.y, from_url.y)


def test_missing_file_is_named(cifar_dir) -> None:
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(InvalidInput) as e:
        load_cifar10(cifar_dir)
    assert e.value.field == "dataset"
    assert "data_batch_3" in e.value.problem and "test_batch" in e.value.fix
    load_cifar10(cifar_dir, max_batches=2)  # the first two are still there
    with pytest.raises(InvalidInput, match="data_batch_3"):
        check_dataset_spec(f"cifar10:{cifar_dir}")
    with pytest.raises(InvalidInput, match="data_batch_1"):
        load_cifar10("memory://cifar-empty/nothing")
    with pytest.raises(InvalidInput, match="test_batch"):
        check_dataset_spec("cifar10:memory://cifar-empty/nothing")


def test_reader_runs_no_code_from_the_files(cifar_dir, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (cifar_dir / "data_batch_2").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(InvalidInput, match=r"data_batch_2.*not allowed"):
        load_cifar10(cifar_dir)
    assert not marker.exists()


def test_reader_rejects_wrong_shapes(cifar_dir) -> None:
    bad = {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}
    (cifar_dir / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(InvalidInput, match="not a CIFAR-10 batch"):
        load_cifar10(cifar_dir, train=False)


# -- load_dataset -----------------------------------------------------------------------------
def test_load_dataset_specs(cifar_dir) -> None:
    train, test = load_dataset(f"cifar10:{cifar_dir}", seed=0)
    assert (len(train), len(test)) == (30, 4)
    write_cifar10_batches("memory://spec-test/data", 2, seed=0)
    assert len(load_dataset("cifar10:memory://spec-test/data", seed=0)[0]) == 10
    store = open_store("memory://spec-test").scoped("data")
    check_dataset_spec("cifar10", store=store)
    assert len(load_dataset("cifar10", seed=0, store=store)[1]) == 2
    train, test = load_dataset("synthetic:40", seed=0)
    assert (len(train), len(test), train.input_shape) == (40, 10, (3, 32, 32))
    train, test = load_dataset("digits", seed=0)
    assert len(train) + len(test) == 1797


@pytest.mark.parametrize(
    "spec", ["imagenet", "cifar100:/x", "synthetic:0", "synthetic:ten", "digits:8", "", "cifar10"]
)
def test_bad_dataset_spec(spec: str) -> None:
    with pytest.raises(InvalidInput) as e:
        load_dataset(spec, seed=0)
    assert e.value.field == "dataset"
    with pytest.raises(InvalidInput):
        check_dataset_spec(spec)


def test_unknown_spec_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as e:
        load_dataset("mnist", seed=0)
    assert (
        e.value.fix.startswith("known:") and "digits" in e.value.fix and "synthetic" in e.value.fix
    )


# -- synthetic ----------------------------------------------------------------------------------
def test_synthetic_shape_balance_determinism() -> None:
    train, test = synthetic_dataset(50, 20, seed=4, shape=(3, 8, 8))
    assert test.x.shape == (20, 3, 8, 8) and (test.class_counts() == 2).all()
    assert (
        train.x.shape == (50, 3, 8, 8) and train.x.dtype == np.float32 and train.y.dtype == np.int64
    )
    assert train.class_counts().max() - train.class_counts().min() <= 1
    again, _ = synthetic_dataset(50, 20, seed=4, shape=(3, 8, 8))
    other, _ = synthetic_dataset(50, 20, seed=5, shape=(3, 8, 8))
    np.testing.assert_array_equal(train.x, again.x)
    assert not np.array_equal(train.x, other.x)
    assert abs(float(train.x.mean())) < 0.2 and 0.7 < float(train.x.std()) < 1.3


def nearest_mean_accuracy(train: ArrayDataset, test: ArrayDataset) -> float:
    """Learn one mean image per class from ``train``; classify ``test`` by the nearest mean."""
    x = train.x.reshape(len(train), -1).astype(np.float64)
    means = np.stack([x[train.y == c].mean(axis=0) for c in range(train.num_classes)])
    t = test.x.reshape(len(test), -1).astype(np.float64)
    dist = (t**2).sum(1)[:, None] - 2 * t @ means.T + (means**2).sum(1)[None, :]
    return float((dist.argmin(axis=1) == test.y).mean())


def test_synthetic_is_learnable() -> None:
    train, test = synthetic_dataset(500, 300, seed=0)
    assert nearest_mean_accuracy(train, test) > 0.35  # chance is 0.1
    shuffled = ArrayDataset(train.x, np.random.default_rng(0).permutation(train.y), 10)
    assert nearest_mean_accuracy(shuffled, test) < 0.2  # the labels carry the signal


# -- digits -------------------------------------------------------------------------------------
def test_digits() -> None:
    train, test = digits_dataset(seed=0)
    assert len(train) + len(test) == 1797
    assert train.x.shape[1:] == (1, 8, 8) and train.num_classes == 10
    assert 0.19 < len(test) / 1797 < 0.21
    np.testing.assert_allclose(
        test.class_counts() / train.class_counts(), 0.25, atol=0.02
    )  # stratified
    assert abs(float(train.x.mean())) < 0.05 and abs(float(train.x.std()) - 1) < 0.05
    same, _ = digits_dataset(seed=0)
    other, _ = digits_dataset(seed=1)
    np.testing.assert_array_equal(train.y, same.y)
    assert not np.array_equal(train.y, other.y)
    assert nearest_mean_accuracy(train, test) > 0.85  # real, easy data


# -- ArrayDataset and its byte form ---------------------------------------------------------------
def test_array_dataset_validation_and_read_only() -> None:
    x = np.zeros((3, 1, 2, 2), np.float32)
    y = np.array([0, 1, 2], np.int64)
    ds = ArrayDataset(x, y, 3, "t")
    with pytest.raises(ValueError):
        ds.x[0, 0, 0, 0] = 1.0
    x[0, 0, 0, 0] = 5.0  # the caller's own array stays writable
    for bad in [
        lambda: ArrayDataset(x.astype(np.float64), y, 3),
        lambda: ArrayDataset(x, y[:2], 3),
        lambda: ArrayDataset(x, y.astype(np.int32), 3),
        lambda: ArrayDataset(x, y, 2),
        lambda: ArrayDataset(x[:, 0], y, 3),
    ]:
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("which", ["cifar", "synthetic", "digits"])
def test_bytes_round_trip_exact_and_compact(which: str, cifar_dir) -> None:
    if which == "cifar":
        ds = load_cifar10(cifar_dir)
    elif which == "synthetic":
        ds = synthetic_dataset(40, 1, seed=0)[0]
    else:
        ds = digits_dataset(seed=0)[1]
    data = dataset_to_bytes(ds)
    back = dataset_from_bytes(data)
    np.testing.assert_array_equal(back.x, ds.x)
    np.testing.assert_array_equal(back.y, ds.y)
    assert back.y.dtype == np.int64 and back.x.dtype == np.float32
    assert (back.name, back.num_classes, back.pixel_norm) == (
        ds.name,
        ds.num_classes,
        ds.pixel_norm,
    )
    assert len(data) < ds.x.nbytes / 3  # stored as 8-bit pixels


def test_bytes_fall_back_to_float32() -> None:
    rng = np.random.default_rng(0)
    ds = ArrayDataset(
        rng.normal(size=(5, 2, 3, 3)).astype(np.float32), np.arange(5) % 2, 2, "float"
    )
    back = dataset_from_bytes(dataset_to_bytes(ds))
    np.testing.assert_array_equal(back.x, ds.x)
    assert back.pixel_norm is None
    # values that the declared normalisation cannot produce are kept as floats, exactly
    norm = PixelNorm(255.0, (0.5, 0.5), (0.25, 0.25))
    off = ArrayDataset(ds.x, ds.y, 2, "off", norm)
    np.testing.assert_array_equal(dataset_from_bytes(dataset_to_bytes(off)).x, ds.x)
    assert len(dataset_to_bytes(off)) > ds.x.nbytes


@pytest.mark.parametrize("data", [b"", b"not an archive", pickle.dumps({"x": 1})])
def test_bytes_reject_garbage(data: bytes) -> None:
    with pytest.raises(ValueError):
        dataset_from_bytes(data)
