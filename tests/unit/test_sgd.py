"""``MomentumSGD`` is ``torch.optim.SGD``'s update bit for bit, reads its checkpoints, and keeps
``torch._dynamo`` out of a function's process."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fasdl.training import MomentumSGD, load_checkpoint, save_checkpoint, seeded_model, train_step
from fasdl.training.vector import ModelVector


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    ("momentum", "weight_decay"), [(0.9, 0.0), (0.9, 5e-4), (0.0, 1e-3), (0.0, 0.0)]
)
def test_the_update_is_torch_sgds_bit_for_bit(momentum: float, weight_decay: float) -> None:
    ours, theirs = (seeded_model("cnn", 3, 10, (3, 8, 8)) for _ in range(2))
    opt = MomentumSGD(ours.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    ref = torch.optim.SGD(
        theirs.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay
    )
    for x, y in _batches(5):
        assert train_step(ours, opt, x, y) == train_step(theirs, ref, x, y)  # type: ignore[arg-type]
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_of_torch_sgd_resumes_the_same() -> None:
    """A checkpoint written with torch.optim.SGD (fasdl before MomentumSGD) goes on exactly."""
    batches = _batches(6)
    old = seeded_model("cnn", 3, 10, (3, 8, 8))
    ref = torch.optim.SGD(old.parameters(), lr=0.05, momentum=0.9)
    for x, y in batches[:3]:
        train_step(old, ref, x, y)  # type: ignore[arg-type]
    blob = save_checkpoint(3, ModelVector.attach(old), ref, old)  # type: ignore[arg-type]
    for x, y in batches[3:]:
        train_step(old, ref, x, y)  # type: ignore[arg-type]

    new = seeded_model("cnn", 4, 10, (3, 8, 8))
    opt = MomentumSGD(new.parameters(), lr=0.05, momentum=0.9)
    assert load_checkpoint(blob, ModelVector.attach(new), opt, new) == 3
    for x, y in batches[3:]:
        train_step(new, opt, x, y)
    for a, b in zip(new.state_dict().values(), old.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_its_own_checkpoint_round_trips_and_a_wrong_one_is_refused() -> None:
    model = seeded_model("cnn", 3, 10, (3, 8, 8))
    opt = MomentumSGD(model.parameters(), lr=0.05, momentum=0.9)
    for x, y in _batches(2):
        train_step(model, opt, x, y)
    state = opt.state_dict()
    again = MomentumSGD(model.parameters(), lr=0.05, momentum=0.9)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(again.buffers, opt.buffers, strict=True))  # type: ignore[arg-type]
    other = seeded_model("mlp", 3, 10, (3, 8, 8))
    with pytest.raises(KeyError, match="does not fit"):
        MomentumSGD(other.parameters(), lr=0.05, momentum=0.9).load_state_dict(state)
    with pytest.raises(KeyError, match="no momentum buffers"):
        again.load_state_dict({})
    with pytest.raises(ValueError, match="lr must be >= 0"):
        MomentumSGD(model.parameters(), lr=-1.0)


def test_a_worker_never_imports_dynamo() -> None:
    """What a worker runs (model, optimizer, steps, checkpoint and back) leaves torch._dynamo
    unimported: its import would cost a function 1.2 CPU-seconds per start."""
    code = """
import sys, torch
from fasdl.kreduce import worker
from fasdl.training import ModelVector, load_checkpoint, make_optimizer, save_checkpoint, seeded_model, train_step
m = seeded_model("resnet8", 0, 10, (3, 32, 32))
opt = make_optimizer(m, lr=0.1, momentum=0.9, weight_decay=1e-4)
for _ in range(2):
    train_step(m, opt, torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
load_checkpoint(save_checkpoint(2, ModelVector.attach(m), opt, m), ModelVector.attach(m), opt, m)
print(sorted(k for k in sys.modules if k.startswith("torch._dynamo")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
