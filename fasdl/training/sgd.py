"""SGD with momentum and weight decay, the update of ``torch.optim.SGD`` (dampening 0, not
Nesterov) written out, so that a function does not import ``torch._dynamo``.

Why not ``torch.optim.SGD``: every ``torch.optim`` optimizer imports ``torch._dynamo`` when it is
built (``add_param_group`` is wrapped in ``torch._disable_dynamo``) and on every step
(``_use_grad_for_differentiable``). That import costs 1.2 CPU-seconds with torch 2.13, more than
the rest of a worker's imports and its model together, and every worker pays it again in every
round: 2.4 s of a 0.5-vCPU function's start-up (``benchmarks/startup.py``).

The update is torch's single-tensor path, the one it takes for CPU tensors, operation for
operation, so the weights are bit-for-bit those ``torch.optim.SGD`` gives
(``tests/unit/test_sgd.py``)::

    g = grad + weight_decay · p
    buf = g (first step),  buf = momentum · buf + g (after)
    p = p − lr · buf

``state_dict`` holds the momentum buffers by parameter index; ``load_state_dict`` also reads
``torch.optim.SGD``'s own format, so a checkpoint written before this class still resumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class MomentumSGD:
    """``torch.optim.SGD(params, lr, momentum, weight_decay)``'s update without ``torch.optim``."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not value >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.params = list(params)
        if not self.params:
            raise ValueError("the optimizer got no parameters")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = torch.clone(g).detach()
                else:
                    buf.mul_(self.momentum).add_(g)
                g = buf
            p.add_(g, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {
            "momentum_buffers": {i: b for i, b in enumerate(self.buffers) if b is not None},
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the momentum buffers (this class's format, or ``torch.optim.SGD``'s)."""
        if "momentum_buffers" in state:
            found = dict(state["momentum_buffers"])
        elif "state" in state:  # torch.optim.SGD: {"state": {i: {"momentum_buffer": t}}, ...}
            found = {
                int(i): s["momentum_buffer"]
                for i, s in state["state"].items()
                if s.get("momentum_buffer") is not None
            }
        else:
            raise KeyError("no momentum buffers in the optimizer's state")
        buffers: list[torch.Tensor | None] = [None] * len(self.params)
        for i, b in found.items():
            i = int(i)
            if not 0 <= i < len(self.params) or b.shape != self.params[i].shape:
                raise KeyError(
                    f"momentum buffer {i} of shape {tuple(b.shape)} does not fit the model's "
                    f"{len(self.params)} parameters"
                )
            buffers[i] = b.detach().clone().to(self.params[i].dtype)
        self.buffers = buffers
