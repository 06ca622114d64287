"""ResNets for 32x32 images.

- :func:`resnet18`: the CIFAR ResNet-18 of the paper's code base (uoguelph-mlrg/Cutout, after
  kuangliu/pytorch-cifar): 3x3 stride-1 stem, no max-pool, four stages of two basic blocks with
  64-128-256-512 channels, 1x1-conv projection shortcuts, global average pool, linear. 11.2M
  parameters for 10 classes.
- :func:`resnet_he`: He et al. (2016, §4.2) CIFAR ResNet-(6n+2) (20, 32, 56): three stages of
  n basic blocks with 16-32-64 channels and parameter-free "option A" shortcuts (stride-2
  subsampling plus zero-padded channels). ResNet-20 has 0.27M parameters.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        self.stride, self.pad = stride, c_out - c_in
        self.option_a = (stride != 1 or c_in != c_out) and shortcut != "projection"
        if (stride != 1 or c_in != c_out) and shortcut == "projection":
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option_a:  # identity on the subsampled input; the extra channels are zeros
            skip = x[:, :, :: self.stride, :: self.stride]
            skip = F.pad(skip, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            skip = self.shortcut(x)
        return F.relu(out + skip)


class CifarResNet(nn.Module):
    def __init__(self, blocks: List[int], widths: List[int], num_classes: int, shortcut: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, c_in = [], widths[0]
        for i, (n, c) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(BasicBlock(c_in, c, 2 if (j == 0 and i > 0) else 1, shortcut))
                c_in = c
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet18(num_classes: int = 10, width: int = 64) -> CifarResNet:
    return CifarResNet([2, 2, 2, 2], [width, 2 * width, 4 * width, 8 * width], num_classes, "projection")


def resnet_he(depth: int, num_classes: int = 10, width: int = 16) -> CifarResNet:
    if (depth - 2) % 6:
        raise ValueError(f"Invalid CIFAR ResNet depth: {depth}; use 6n+2 (20, 32, 44, 56, 110)")
    n = (depth - 2) // 6
    return CifarResNet([n, n, n], [width, 2 * width, 4 * width], num_classes, "option_a")


def build(name: str, num_classes: int, width: int = 0, bn_momentum: float | None = None) -> nn.Module:
    """The CIFAR net ``name``; ``bn_momentum`` (torch's convention) replaces every BatchNorm's own."""
    if name == "airbench":  # the fast near-converged protocol's net (experiments/models/airbench.py)
        from experiments.models.airbench import AirbenchNet

        model = AirbenchNet(num_classes)
    elif name == "resnet18":
        model = resnet18(num_classes, width or 64)
    elif name.startswith("resnet") and name[6:].isdigit():
        model = resnet_he(int(name[6:]), num_classes, width or 16)
    else:
        raise ValueError(f"Unknown CIFAR model: {name!r}; use resnet18, resnet20, resnet32, resnet56 or airbench")
    if bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = bn_momentum
    return model
