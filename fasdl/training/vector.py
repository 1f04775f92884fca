"""One float32 vector that *is* the model: parameters and floating buffers are views into it.

``ModelVector.attach`` copies each tensor into one flat buffer once and re-points the tensor at
its slice, so flattening is free afterwards (the vector is always current: optimizer steps and
BatchNorm updates write into it in place) and loading a merged vector is one ``copy_``. No
per-layer copy loop runs in the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Slot:
    name: str
    offset: int
    numel: int
    shape: tuple[int, ...]


class ModelVector:
    """The model's floating state (parameters, then floating buffers) as one float32 tensor."""

    def __init__(self, flat: torch.Tensor, slots: list[Slot]) -> None:
        self.flat = flat
        self.slots = slots

    @classmethod
    def attach(cls, model: nn.Module) -> ModelVector:
        tensors: list[tuple[str, torch.Tensor]] = [(n, p) for n, p in model.named_parameters()]
        tensors += [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
        total = sum(t.numel() for _, t in tensors)
        flat = torch.empty(total, dtype=torch.float32)
        slots = []
        offset = 0
        with torch.no_grad():
            for name, t in tensors:
                if t.dtype != torch.float32:
                    raise TypeError(f"{name} is {t.dtype}; K-Reduce sends float32 models only")
                n = t.numel()
                view = flat[offset : offset + n].view_as(t)
                view.copy_(t)
                t.data = view  # the parameter or buffer now lives inside `flat`
                slots.append(Slot(name, offset, n, tuple(t.shape)))
                offset += n
        return cls(flat, slots)

    @property
    def numel(self) -> int:
        return self.flat.numel()

    def numpy(self) -> np.ndarray:
        """A NumPy view (no copy) of the vector."""
        return self.flat.numpy()

    def load(self, values: np.ndarray) -> None:
        """Overwrite the model with ``values`` (one copy, into the existing storage)."""
        if values.shape != (self.numel,):
            raise ValueError(
                f"vector of {values.shape} does not fit a model of {self.numel} floats"
            )
        self.flat.copy_(torch.from_numpy(values))


def chunk_bounds(numel: int, num_chunks: int) -> list[tuple[int, int]]:
    """K balanced contiguous chunks: sizes differ by at most one element."""
    if not 1 <= num_chunks <= max(1, numel):
        raise ValueError(f"cannot split {numel} floats into {num_chunks} chunks")
    base, extra = divmod(numel, num_chunks)
    bounds = []
    start = 0
    for i in range(num_chunks):
        end = start + base + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds
