"""Small models for tests, demos and CPU runs: a two-layer CNN (with BatchNorm) and an MLP."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv-BN-ReLU-pool, conv-BN-ReLU, pool to 4x4, linear: ~30 k parameters, fast on CPU.

    The BatchNorm layers give it buffers (running statistics), which the collectives must carry
    like the big models' buffers. The 2x2 max-pool is left out for inputs narrower than 2 pixels.
    """

    def __init__(
        self, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)
    ) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2) if min(height, width) >= 2 else nn.Identity(),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Linear(64 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(torch.flatten(self.features(x), 1))
        return logits


class MLP(nn.Module):
    """Flatten, two hidden ReLU layers (256, 128), linear. Its input layer depends on input_shape."""

    def __init__(
        self, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x)
        return logits
