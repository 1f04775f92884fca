"""``ArrayDataset``: images and labels as two arrays, and a compact byte form for the store.

Images are float32 NCHW, already normalised. Datasets made of 8-bit pixels carry their
``PixelNorm`` (``x = (pixels / max_value - mean[c]) / std[c]``), so ``dataset_to_bytes`` can store
the pixels as uint8 (4x smaller than float32) and ``dataset_from_bytes`` recomputes exactly the
same float32 values: both sides go through ``PixelNorm.apply``. The byte form is an ``.npz``
archive read with ``allow_pickle=False``: loading a partition never runs code.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fasdl.errors import CorruptObject

if TYPE_CHECKING:
    import torch

_FORMAT = 1
_CHUNK = 4096  # samples per step when converting back to pixels


@dataclass(frozen=True)
class PixelNorm:
    """Per-channel normalisation of integer pixels in ``0..max_value``."""

    max_value: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (self.max_value > 0 and len(self.mean) == len(self.std) >= 1 and min(self.std) > 0):
            raise ValueError(
                f"bad PixelNorm {self}: need max_value > 0, one mean and one std > 0 per channel"
            )

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NCHW pixels -> normalised float32 (the one place this is computed)."""
        c = pixels.shape[1]
        if c != len(self.mean):
            raise ValueError(f"{c} channels but the normalisation has {len(self.mean)}")
        mean = np.asarray(self.mean, np.float32).reshape(1, c, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, c, 1, 1)
        # In place after the one conversion: a worker decodes its whole partition before its
        # first iteration, and every fresh array of that size is page faults in a new process.
        x = pixels.astype(np.float32)
        x /= np.float32(self.max_value)
        x -= mean
        x /= std
        return x

    def invert(self, x: np.ndarray) -> np.ndarray | None:
        """The uint8 pixels that ``apply`` maps to exactly ``x``, or None if there are none."""
        if self.max_value > 255 or x.ndim != 4 or x.shape[1] != len(self.mean):
            return None
        c = x.shape[1]
        mean = np.asarray(self.mean, np.float32).reshape(1, c, 1, 1)
        scale = (np.asarray(self.std, np.float32) * np.float32(self.max_value)).reshape(1, c, 1, 1)
        pixels = np.empty(x.shape, np.uint8)
        for start in range(0, x.shape[0], _CHUNK):  # chunks keep the float temporaries small
            part = x[start : start + _CHUNK]
            q = np.rint(part * scale + mean * np.float32(self.max_value))
            if q.size and (q.min() < 0 or q.max() > self.max_value):
                return None
            pixels[start : start + _CHUNK] = q
            if not np.array_equal(self.apply(pixels[start : start + _CHUNK]), part):
                return None
        return pixels


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Normalised images ``x`` (float32, N x C x H x W) and labels ``y`` (int64, N).

    The arrays are read-only views: a partition handed to a worker cannot be changed in place.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    pixel_norm: PixelNorm | None = field(default=None)

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.dtype != np.float32 or x.ndim != 4:
            raise ValueError(f"x must be float32 N x C x H x W, got {x.dtype} with shape {x.shape}")
        if y.dtype != np.int64 or y.shape != (x.shape[0],):
            raise ValueError(
                f"y must be int64 of shape ({x.shape[0]},), got {y.dtype} with shape {y.shape}"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if y.size and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in 0..{self.num_classes - 1}, got {y.min()}..{y.max()}"
            )
        x, y = x.view(), y.view()
        x.flags.writeable = False
        y.flags.writeable = False
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image: what ``build_model(..., input_shape=...)`` wants."""
        _, c, h, w = self.x.shape
        return (int(c), int(h), int(w))

    def subset(self, indices: np.ndarray, name: str | None = None) -> ArrayDataset:
        """The samples at ``indices``, in that order (copies)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(
            self.x[idx],
            self.y[idx],
            self.num_classes,
            self.name if name is None else name,
            self.pixel_norm,
        )

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels at ``indices`` as torch tensors (fresh, writable copies)."""
        import torch  # only the training side needs torch

        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.num_classes)


def dataset_to_bytes(ds: ArrayDataset) -> bytes:
    """An ``.npz`` archive: uint8 pixels when ``ds.pixel_norm`` reproduces ``ds.x`` exactly,
    float32 otherwise; labels as uint8 when there are at most 256 classes."""
    pixels = ds.pixel_norm.invert(ds.x) if ds.pixel_norm is not None else None
    x = pixels if pixels is not None else np.ascontiguousarray(ds.x)
    y = ds.y.astype(np.uint8) if ds.num_classes <= 256 else np.ascontiguousarray(ds.y)
    norm = ds.pixel_norm
    meta = {
        "format": _FORMAT,
        "name": ds.name,
        "num_classes": ds.num_classes,
        "x": "pixels" if pixels is not None else "float32",
        "pixel_norm": None
        if norm is None
        else {"max_value": norm.max_value, "mean": list(norm.mean), "std": list(norm.std)},
    }
    buf = io.BytesIO()
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(buf, x=x, y=y, meta=meta_bytes)
    return buf.getvalue()


def dataset_from_bytes(data: bytes, *, key: str = "") -> ArrayDataset:
    """Inverse of ``dataset_to_bytes``; raises ``CorruptObject`` (a ``ValueError``) naming
    ``key``, the object ``data`` was read from, on anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            x, y = z["x"], z["y"]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CorruptObject(key, f"not a fasdl dataset archive ({len(data)} bytes): {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CorruptObject(key, f"unsupported dataset archive format {meta!r}")
    try:
        norm = None
        if meta["pixel_norm"] is not None:
            p = meta["pixel_norm"]
            norm = PixelNorm(float(p["max_value"]), tuple(p["mean"]), tuple(p["std"]))
        if meta["x"] == "pixels":
            if norm is None or x.dtype != np.uint8:
                raise CorruptObject(
                    key, "dataset archive says pixels but has no uint8 pixels and normalisation"
                )
            x = norm.apply(x)
        return ArrayDataset(
            x, y.astype(np.int64), int(meta["num_classes"]), str(meta["name"]), norm
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CorruptObject):
            raise
        raise CorruptObject(key, f"a bad dataset archive: {type(e).__name__}: {e}") from e


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, part): ``part`` takes ``round(fraction * n_c)`` samples of every class c."""
    rest, part = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = round(fraction * idx.size)
        part.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(part))
