"""The three light operators of DSSDN (SC, OSC, SPC) and the ECA channel attention.

All of them end in BatchNorm + ReLU so that export folds BN into the preceding convolution and every
op stays inside the TFLite Micro int8 kernel set (CONV_2D, DEPTHWISE_CONV_2D, ADD, MEAN, LOGISTIC, MUL).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class DepthwisePair(nn.Module):
    """A dilated (3,1) time conv and a dilated (1,3) freq conv, summed: a cheap cross-shaped receptive field."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.time = nn.Conv2d(channels, channels, (3, 1), padding=(2, 0), dilation=(2, 1), groups=channels)
        self.freq = nn.Conv2d(channels, channels, (1, 3), padding=(0, 2), dilation=(1, 2), groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.time(x) + self.freq(x)


def _pointwise_groups(cin: int, cout: int) -> int:
    """Group the 1×1 conv when the channel counts allow it (the SC design keeps its 1×1 cheap)."""
    return cout if cin % cout == 0 else 1


class SC(nn.Module):
    """Separable convolution: grouped 1×1, then the depthwise pair, BN, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pw = nn.Conv2d(cin, cout, 1, groups=_pointwise_groups(cin, cout), bias=False)
        self.dw = DepthwisePair(cout)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.dw(self.pw(x))))


class OSC(nn.Module):
    """Orthonormal separable convolution (BSConv-S): a low-rank 1×1 pair whose first factor is pushed
    towards orthonormal rows by ``orth_loss`` so the bottleneck does not collapse."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = min(cin, max(4, math.ceil(cin / 4)))
        self.pw1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.pw2 = nn.Conv2d(mid, cout, 1, bias=False)
        self.dw = DepthwisePair(cout)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.dw(self.pw2(self.pw1(x)))))

    def orth_loss(self) -> torch.Tensor:
        """‖W₁W₁ᵀ − I‖_F with W₁ the first 1×1 weight as (mid, cin)."""
        w = self.pw1.weight.flatten(1)
        gram = w @ w.t()
        return torch.linalg.matrix_norm(gram - torch.eye(len(w), device=w.device), "fro")


class SPC(nn.Module):
    """Separable partial convolution (FasterNet PConv): spatial filtering on the first quarter of the
    channels only, then a full 1×1 mix; most channels cost nothing spatially."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n_part = math.ceil(cin / 4)
        self.dw = DepthwisePair(self.n_part)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part, rest = x[:, : self.n_part], x[:, self.n_part :]
        return F.relu(self.bn(self.pw(torch.cat([self.dw(part), rest], dim=1))))


class ECA(nn.Module):
    """Efficient channel attention: a 3-tap conv over the pooled channel vector, sigmoid gate."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))  # (B, C)
        w = torch.sigmoid(self.conv(w.unsqueeze(1)).squeeze(1))
        return x * w[:, :, None, None]


OPERATORS: dict[str, type[nn.Module]] = {"sc": SC, "osc": OSC, "spc": SPC}
