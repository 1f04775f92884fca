"""VGG-11 and VGG-16 with BatchNorm, CIFAR variant (one 512-wide linear classifier).

A 32x32 input passes all five 2x2 max-pools and reaches the classifier at 1x1, as in the common
CIFAR code. Smaller inputs (an 8x8 digit) would shrink to nothing, so pools past the point where
the feature map is 1 pixel wide are left out (they hold no parameters: the state_dict keys stay
the same) and an adaptive average pool brings larger inputs down to 1x1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Conv widths, "M" for a 2x2 max-pool.
_CFG = {
    "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
    "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
}


class VGG(nn.Module):
    def __init__(self, cfg: str, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        max_pools = int(math.log2(min(height, width)))  # halvings before the map is 1 pixel
        layers: list[nn.Module] = []
        pools = 0
        for v in cfg.split():
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2) if pools < max_pools else nn.Identity())
                pools += 1
            else:
                width = int(v)
                layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width)]
                layers.append(nn.ReLU(inplace=True))
                in_channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(torch.flatten(self.pool(self.features(x)), 1))
        return logits


def vgg11(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> VGG:
    return VGG(_CFG["vgg11"], num_classes, input_shape)


def vgg16(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> VGG:
    return VGG(_CFG["vgg16"], num_classes, input_shape)
