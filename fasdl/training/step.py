"""The training step both K-Reduce workers and the profiler run, so that what is profiled is
what is trained: the same seeded model, the same optimizer, the same forward-backward-step, and
the checkpoint format a resumed worker reads back.
"""

from __future__ import annotations

import io
import threading

import torch
from torch import nn

from fasdl.models import build_model
from fasdl.training.sgd import MomentumSGD
from fasdl.training.vector import ModelVector

_INIT_LOCK = threading.Lock()  # the global RNG: inline workers share a process


def seeded_model(
    name: str, seed: int, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """The same initial weights for the same seed, whichever thread builds it."""
    with _INIT_LOCK:
        torch.manual_seed(seed)
        return build_model(name, num_classes=num_classes, input_shape=input_shape)


def make_optimizer(
    model: nn.Module, *, lr: float, momentum: float, weight_decay: float = 0.0
) -> MomentumSGD:
    """SGD with momentum: the optimizer of every FasDL job (and of every profiled iteration).
    ``torch.optim.SGD``'s update, without the import of ``torch._dynamo`` it costs
    (``fasdl.training.sgd``)."""
    return MomentumSGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def train_step(model: nn.Module, opt: MomentumSGD, x: torch.Tensor, y: torch.Tensor) -> float:
    """One forward, backward and optimizer step on one batch; returns the batch's loss."""
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _integer_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers the vector does not hold (BatchNorm's ``num_batches_tracked``)."""
    return {n: b for n, b in model.named_buffers() if not b.is_floating_point()}


def save_checkpoint(iteration: int, vec: ModelVector, opt: MomentumSGD, model: nn.Module) -> bytes:
    """The weights (the model's vector), its integer buffers and the optimizer's state after
    ``iteration``: everything a resumed worker needs to go on exactly as if it never stopped."""
    buf = io.BytesIO()
    torch.save(
        {
            "iteration": iteration,
            "vector": vec.flat.clone(),
            "buffers": {n: b.clone() for n, b in _integer_buffers(model).items()},
            "optimizer": opt.state_dict(),
        },
        buf,
    )
    return buf.getvalue()


def load_checkpoint(blob: bytes, vec: ModelVector, opt: MomentumSGD, model: nn.Module) -> int:
    """Restore what ``save_checkpoint`` saved into ``vec``, ``model`` and ``opt``; returns its
    iteration."""
    state = torch.load(io.BytesIO(blob), weights_only=True)
    vec.flat.copy_(state["vector"])
    buffers = _integer_buffers(model)
    if set(state["buffers"]) != set(buffers):
        raise KeyError(
            f"integer buffers {sorted(state['buffers'])}, the model has {sorted(buffers)}"
        )
    with torch.no_grad():
        for name, value in state["buffers"].items():
            buffers[name].copy_(value)
    opt.load_state_dict(state["optimizer"])
    return int(state["iteration"])


def state_dict_bytes(model: nn.Module) -> bytes:
    """The trained model as ``torch.save(model.state_dict())`` bytes."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()
