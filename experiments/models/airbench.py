"""An airbench-shaped CIFAR network, written from its published description.

Jordan (2024), "94% on CIFAR-10 in 3.29 seconds on a single GPU" (arXiv 2404.00498), describes
a small fast-converging net; this is that architecture (not its training tricks):

- a fixed 2x2 **whitening** convolution, 3 -> 24 channels, no padding: the 12-dimensional 2x2x3
  patches of the training images are decorrelated, ``W = E^T / sqrt(lambda + eps)`` from the
  eigendecomposition ``Sigma = E diag(lambda) E^T`` of their covariance, and the layer holds
  ``[W; -W]`` (so a GELU after it keeps both signs). Its weights are fitted once to the training
  data (:meth:`AirbenchNet.fit_whitening`) and never trained; its bias is trained.
- three blocks of widths 64 / 256 / 256, each ``conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 ->
  BN -> GELU``; convolutions without bias, the first channels of each initialised to the
  identity (``dirac_``), BatchNorm with a frozen unit scale and a trained shift;
- a global max pool, a bias-free linear head and a fixed output scale of 1/9.

About 1.97M parameters and 0.24 GFLOP per 32x32 image forward. What the paper adds on top and the
suite leaves to the optimizer arms or omits: its Lookahead-style EMA of the weights, test-time
augmentation, and the whitening bias being trained for the first epochs only.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

WIDTHS = (64, 256, 256)
WHITEN_EPS = 5e-4
OUTPUT_SCALE = 1 / 9


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a frozen unit scale (only the shift is a trained parameter)."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        conv1 = nn.Conv2d(c_in, c_out, 3, padding="same", bias=False)
        conv2 = nn.Conv2d(c_out, c_out, 3, padding="same", bias=False)
        for conv in (conv1, conv2):  # identity on the first in-channels: the block starts near a skip
            w = conv.weight.data
            nn.init.dirac_(w[: min(w.size(0), w.size(1))])
        super().__init__(conv1, nn.MaxPool2d(2), _BatchNorm(c_out), nn.GELU(), conv2, _BatchNorm(c_out), nn.GELU())


class AirbenchNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: Sequence[int] = WIDTHS) -> None:
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.blocks = nn.Sequential(*(_Block(a, b) for a, b in zip((24, *widths[:-1]), widths)))
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.act = nn.GELU()

    @torch.no_grad()
    def fit_whitening(self, images: torch.Tensor) -> None:
        """Set the whitening filters from normalised training images ``(N, 3, H, W)`` (float)."""
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # N, 3, H-1, W-1, 2, 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / (len(patches) - 1)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        w = (eigvecs.T / torch.sqrt(eigvals + WHITEN_EPS)[:, None]).reshape(12, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([w, -w]).to(self.whiten.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act(self.whiten(x)))
        x = torch.amax(x, dim=(2, 3))  # global max pool
        return self.head(x) * OUTPUT_SCALE
