"""Training pieces shared by K-Reduce and the profiler: the model as one vector, its chunks,
the seeded model, the optimizer and the training step, checkpoints."""

from fasdl.training.sgd import MomentumSGD
from fasdl.training.step import (
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    seeded_model,
    state_dict_bytes,
    train_step,
)
from fasdl.training.vector import ModelVector, Slot, chunk_bounds

__all__ = [
    "ModelVector",
    "MomentumSGD",
    "Slot",
    "chunk_bounds",
    "load_checkpoint",
    "make_optimizer",
    "save_checkpoint",
    "seeded_model",
    "state_dict_bytes",
    "train_step",
]
