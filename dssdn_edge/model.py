"""DSSDN networks, the ResNet baseline/teacher, and the ``create_model`` factory.

Input layout is (batch, channels, time, freq) with freq ascending; every split block halves freq by
cutting it into a low and a high band and spends its deep path on the low band only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .ops import ECA, OPERATORS, OSC


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one model; stored in every checkpoint sidecar and export manifest."""

    arch: str = "dssdn"  # "dssdn" or "resnet"
    operator: str = "spc"  # dssdn only: sc / osc / spc
    widths: tuple[int, ...] = (24, 32, 64, 64, 64)
    split: tuple[bool, ...] = (True, True, True, True, True)
    stem: int = 16
    stem_kernel: tuple[int, int] = (1, 1)  # (time, freq) taps of the stem conv
    stem_stride: tuple[int, int] = (1, 1)  # (time, freq) stride; freq taps = freq stride keeps bands apart
    in_channels: int = 2
    n_classes: int = 50
    hidden: int = 100
    dropout: float = 0.3
    pooled_blocks: tuple[int, ...] = (1, 2, 3, 4)  # 0-based blocks whose outputs are pooled
    orth_alpha: float = 0.1  # OSC regulariser weight
    time_pool: tuple[int, ...] = ()  # per block time pooling factor; () = 2 for every block
    pool_first: bool = False  # pool before the block's output 1×1 (half its cost) instead of after
    depth: tuple[int, ...] = field(default=())  # resnet only: basic blocks per stage

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# The DSSDN sizes share a strided stem — a (3, 2) conv with stride (2, 2): 51 frames × 128 bands in, 26 × 64
# out — so every map of the network is a quarter of the spec's full-resolution one (4× faster training on a
# CPU, ¼ the activation memory on a device); its freq taps equal its freq stride, so bands are never mixed
# across the low/high cut. Blocks pool time before their output 1×1, and the last block, at one frame, not at all.
_FAST = dict(stem_kernel=(3, 2), stem_stride=(2, 2), time_pool=(2, 2, 2, 2, 1), pool_first=True)
SIZES: dict[str, ModelConfig] = {
    "dssdn-small": ModelConfig(operator="spc", widths=(24, 32, 48, 48, 64), **_FAST),
    "dssdn-middle": ModelConfig(operator="osc", widths=(24, 64, 96, 96, 96), **_FAST),
    "dssdn-large": ModelConfig(operator="sc", widths=(32, 128, 160, 192, 192), **_FAST),
    "resnet": ModelConfig(
        arch="resnet", operator="", widths=(32, 64, 128, 152), split=(), stem=32, depth=(1, 1, 1, 2),
        pooled_blocks=(),
    ),
}


# Hard limits per 1-s input at the shipped front end (design note); a test enforces them.
BUDGETS: dict[str, dict[str, int]] = {
    "dssdn-small": {"params": 60_000, "macs": 10_000_000},
    "dssdn-middle": {"params": 128_000, "macs": 30_000_000},
    "dssdn-large": {"params": 250_000, "macs": 70_000_000},
}


def model_names() -> list[str]:
    return list(SIZES)


def resolve_name(name: str) -> str:
    """Accept 'small' for 'dssdn-small'; reject unknown names with the list of known ones."""
    full = name if name in SIZES else f"dssdn-{name}"
    if full not in SIZES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(SIZES)}")
    return full


# ------------------------------------------------------------------------------------------ DSSDN
class TimePool(nn.Module):
    """Average ``factor`` consecutive frames (and, for an unsplit block, pairs of bands), dropping a ragged
    end like ``AvgPool2d``. A reshape + mean: several times faster than ``avg_pool2d`` on CPU, same values."""

    def __init__(self, factor: int, freq: int = 1) -> None:
        super().__init__()
        self.factor, self.freq = factor, freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1 and self.freq == 1:
            return x
        b, c, t, f = x.shape
        t2, f2 = t // self.factor, f // self.freq
        x = x[:, :, : t2 * self.factor, : f2 * self.freq]
        return x.reshape(b, c, t2, self.factor, f2, self.freq).mean(dim=(3, 5))


class DSSDB(nn.Module):
    """Distillation block: three chained operators on (split: the low band of) the input, 1×1
    "distilled" shortcuts that fold in what the deep path skipped, ECA, a 1×1 to the next width.

    ``pool_first`` averages time before the output 1×1 rather than after its BN + ReLU: the 1×1, BN and
    ReLU then run on half the frames and on C/2 rather than C' channels pooled, which is most of the
    block's training cost at full resolution."""

    def __init__(self, op: str, cin: int, cout: int, split: bool, time_pool: int = 2, pool_first: bool = False) -> None:
        super().__init__()
        Op = OPERATORS[op]
        half = cin // 2
        self.split = split
        self.op1, self.op2, self.op3 = Op(cin, cin), Op(cin, cin), Op(cin, half)
        self.short_a = nn.Conv2d(cin, half, 1)  # low band (split) or the input (unsplit)
        self.short_b = nn.Conv2d(cin, half, 1)  # high band (split) or op1's output (unsplit)
        mid = half if split else 3 * half
        self.eca = ECA()
        self.out = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = TimePool(time_pool, 1 if split else 2)
        self.pool_first = pool_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            low, high = x.chunk(2, dim=3)
            x3 = self.op3(self.op2(self.op1(low)))
            o = self.short_a(low) + self.short_b(high) + x3
        else:
            x1 = self.op1(x)
            x3 = self.op3(self.op2(x1))
            o = torch.cat([self.short_a(x), self.short_b(x1), x3], dim=1)
        o = self.eca(o)
        if self.pool_first:
            return F.relu(self.bn(self.out(self.pool(o))))
        return self.pool(F.relu(self.bn(self.out(o))))


class Head(nn.Module):
    def __init__(self, cin: int, hidden: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cin, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class DSSDN(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        k, s = cfg.stem_kernel, cfg.stem_stride
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem, k, stride=s, padding=(k[0] // 2, 0), bias=False),
            nn.BatchNorm2d(cfg.stem),
            nn.ReLU(),
        )
        pools = cfg.time_pool or (2,) * len(cfg.widths)
        blocks, cin = [], cfg.stem
        for width, split, pool in zip(cfg.widths, cfg.split, pools, strict=True):
            blocks.append(DSSDB(cfg.operator, cin, width, split, pool, cfg.pool_first))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.head = Head(sum(cfg.widths[i] for i in cfg.pooled_blocks), cfg.hidden, cfg.n_classes, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        pooled = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.config.pooled_blocks:
                pooled.append(x.mean(dim=(2, 3)))
        return self.head(torch.cat(pooled, dim=1))

    def regularization_loss(self) -> torch.Tensor:
        """Sum of α·‖W₁W₁ᵀ − I‖_F over OSC layers (zero for SC/SPC models)."""
        terms = [m.orth_loss() for m in self.modules() if isinstance(m, OSC)]
        if not terms:
            return torch.zeros(())
        return self.config.orth_alpha * torch.stack(terms).sum()


# ----------------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.down is None else self.down(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + skip)


class ResNet(nn.Module):
    """Plain ResNet baseline and distillation teacher: many parameters, deliberately few MACs
    (strided stem, wide late stages) so it can train on a 2-core CPU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem, 3, 2, 1, bias=False), nn.BatchNorm2d(cfg.stem), nn.ReLU()
        )
        layers, cin = [], cfg.stem
        for stage, (width, depth) in enumerate(zip(cfg.widths, cfg.depth, strict=True)):
            for j in range(depth):
                layers.append(BasicBlock(cin, width, 2 if (j == 0 and stage > 0) else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.head = Head(cin, cfg.hidden, cfg.n_classes, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)).mean(dim=(2, 3)))

    def regularization_loss(self) -> torch.Tensor:
        return torch.zeros(())


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "dssdn":
        if cfg.operator not in OPERATORS:
            raise ValueError(f"unknown operator {cfg.operator!r}; known: {', '.join(OPERATORS)}")
        return DSSDN(cfg)
    if cfg.arch == "resnet":
        return ResNet(cfg)
    raise ValueError(f"unknown arch {cfg.arch!r}")


def config_for(name: str, n_classes: int = 50, in_channels: int = 2) -> ModelConfig:
    from dataclasses import replace

    return replace(SIZES[resolve_name(name)], n_classes=n_classes, in_channels=in_channels)
