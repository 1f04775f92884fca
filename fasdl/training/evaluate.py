"""The final evaluation, written once: the coordinator runs it on the trained model, and the
profiler times it (cold, as the coordinator runs it) for the whole-job prediction."""

from __future__ import annotations

import io
import pickle

import numpy as np
import torch
from torch import nn

from fasdl.errors import CorruptObject
from fasdl.training.allocator import steady_allocator
from fasdl.training.step import seeded_model

EVAL_BATCH = 500  # test samples per forward pass


def load_weights(model: nn.Module, blob: bytes, *, key: str = "") -> None:
    """Load ``torch.save(state_dict)`` bytes into ``model``; ``CorruptObject`` naming ``key`` if
    they are not this model's weights."""
    try:
        model.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CorruptObject(key, f"not this model's weights ({type(e).__name__}: {e})") from e


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float | None:
    """The share of ``x`` that ``model`` classifies as ``y`` (None for no samples)."""
    if len(y) == 0:
        return None
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), EVAL_BATCH):
            batch = torch.from_numpy(np.array(x[i : i + EVAL_BATCH]))
            pred = model(batch).argmax(dim=1).numpy()
            correct += int((pred == y[i : i + EVAL_BATCH]).sum())
    return correct / len(y)


def evaluate_weights(
    name: str,
    seed: int,
    num_classes: int,
    input_shape: tuple[int, int, int],
    blob: bytes,
    x: np.ndarray,
    y: np.ndarray,
    *,
    key: str = "",
) -> float | None:
    """Test accuracy of the weights ``blob`` (read from ``key``) of model ``name``: the model is
    built, loaded and run on (x, y) in this process."""
    steady_allocator()
    model = seeded_model(name, seed, num_classes, input_shape)
    load_weights(model, blob, key=key)
    return accuracy(model, x, y)
