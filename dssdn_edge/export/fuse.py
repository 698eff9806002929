"""Export-time rewrite of a trained model into an equivalent graph that converts to few, MCU-friendly ops.

The training graph is written for learning, not for a microcontroller: BatchNorm after every conv, each
depthwise pair as two dilated convs plus an add, SPC as slice → depthwise → concat, ECA as a Conv1d over
the channel vector (which the converter wraps in transposes), and a 1×1 stem on the full spectrogram
(the largest activation of the whole network). Every rewrite below is exact algebra on the weights, so
the fused model computes the same function (to float rounding, ~1e-6) with far fewer ops:

* BatchNorm (eval statistics) is folded into the conv before it (scale the kernel, shift the bias).
* A ``DepthwisePair`` — a (3,1) time conv and a (1,3) freq conv, both dilation 2 — equals ONE 3×3
  depthwise conv with dilation 2 whose kernel is the cross of both (middle column = time taps, middle
  row = freq taps, centre = their sum) and whose bias is the sum of both biases. (``dilated=False``
  spreads the same cross over a non-dilated 5×5 kernel for runtimes without dilation support.)
* SPC's slice → depthwise → concat becomes one depthwise conv over ALL channels: the untouched
  channels get an identity kernel (centre tap 1, bias 0). Two ops instead of five, no SLICE/CONCAT.
* SC's 1×1 conv with one input per group is a per-channel scale: it is folded into the depthwise
  kernel. A grouped 1×1 with more inputs per group becomes a dense 1×1 with a block-diagonal kernel
  (TFLite Micro has no grouped CONV_2D).
* OSC's two bias-free 1×1 convs are multiplied into one when that is not larger than the pair.
* ECA's Conv1d(1, 1, k) over channels equals a C×C banded matrix: a FULLY_CONNECTED, no transposes.
* The stem commutes with slicing the frequency axis (its freq taps equal its freq stride), so when the first
  block splits, the stem is applied to each half separately and the full-width stem output never exists.
* A block that pools before its output 1×1 gets both as ONE strided conv (each tap = the 1×1 kernel / pool
  size); a block that pools after gets the pool as a constant depthwise conv (XNNPACK keeps it in int8).

For int8 only, :func:`equalize` then rescales the output channels of SC/OSC operators by positive gains
measured on calibration windows and undoes them in the next operator (exact, since ReLU commutes with a
positive scale): int8 activations are quantised per tensor, so narrow channels would otherwise get few
levels.

The module returned by :func:`fuse_model` is only for export: it has no BatchNorm and no dropout and
cannot be trained further.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..model import DSSDB, DSSDN, BasicBlock, ResNet, TimePool
from ..ops import ECA, OSC, SC, SPC, DepthwisePair

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------- primitives
@torch.no_grad()
def fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Kernel and bias of ``bn(conv(x))`` as one conv (``bn`` in eval mode)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = torch.zeros_like(bn.running_mean) if bias is None else bias
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return w, (b - bn.running_mean) * scale + bn.bias


def conv_from(weight: Tensor, bias: Tensor | None, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """A Conv2d holding ``weight``/``bias``, 'same' padding for odd kernels."""
    cout, cin_g, kh, kw = weight.shape
    pad = (dilation * (kh // 2), dilation * (kw // 2))
    conv = nn.Conv2d(
        cin_g * groups, cout, (kh, kw), padding=pad, dilation=dilation, groups=groups, bias=bias is not None
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv.eval()


@torch.no_grad()
def cross_kernel(pair: DepthwisePair, dilated: bool = True) -> tuple[Tensor, Tensor]:
    """(C,1,k,k) kernel and (C,) bias of one depthwise conv equal to ``pair`` (time conv + freq conv).

    dilated=True: 3×3 taps meant for dilation 2; dilated=False: the same taps spread over a 5×5 kernel.
    """
    t, f = pair.time.weight[:, 0, :, 0], pair.freq.weight[:, 0, 0, :]  # (C, 3) each
    c = t.shape[0]
    step, size = (1, 3) if dilated else (2, 5)
    k = torch.zeros(c, 1, size, size, dtype=t.dtype)
    mid = size // 2
    for i in range(3):
        k[:, 0, i * step, mid] += t[:, i]
        k[:, 0, mid, i * step] += f[:, i]
    return k, pair.time.bias + pair.freq.bias


def depthwise_from_kernel(kernel: Tensor, bias: Tensor, dilated: bool) -> nn.Conv2d:
    c = kernel.shape[0]
    return conv_from(kernel, bias, groups=c, dilation=2 if dilated else 1)


def grouped_to_dense(weight: Tensor, groups: int) -> Tensor:
    """A grouped 1×1 kernel (cout, cin/groups, 1, 1) as the equivalent dense block-diagonal kernel."""
    cout, cin_g = weight.shape[:2]
    out_g = cout // groups
    dense = torch.zeros(cout, cin_g * groups, 1, 1, dtype=weight.dtype)
    for g in range(groups):
        dense[g * out_g : (g + 1) * out_g, g * cin_g : (g + 1) * cin_g] = weight[g * out_g : (g + 1) * out_g]
    return dense


def global_mean(x: Tensor) -> Tensor:
    """(B, C, H, W) → (B, C). ``keepdim=True`` lets the converter keep the mean in NHWC; a plain
    ``mean(dim=(2, 3))`` makes it transpose the whole map back to NCHW first (one TRANSPOSE per mean)."""
    return x.mean(dim=(2, 3), keepdim=True).flatten(1)


# --------------------------------------------------------------------------------------- operators
class FusedOp(nn.Sequential):
    """A chain of convs ending in ReLU: what every DSSDN operator becomes after fusion."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


@torch.no_grad()
def fuse_spc(op: SPC, dilated: bool) -> FusedOp:
    """SPC → depthwise over all channels (identity on the untouched ones) → 1×1 with BN folded."""
    cin = op.pw.in_channels
    k, b = cross_kernel(op.dw, dilated)
    size = k.shape[-1]
    full_k = torch.zeros(cin, 1, size, size, dtype=k.dtype)
    full_k[:, 0, size // 2, size // 2] = 1.0  # identity for channels n_part..cin
    full_k[: op.n_part] = k
    full_b = torch.zeros(cin, dtype=b.dtype)
    full_b[: op.n_part] = b
    w, bias = fold_bn(op.pw.weight, None, op.bn)
    return FusedOp(depthwise_from_kernel(full_k, full_b, dilated), conv_from(w, bias))


@torch.no_grad()
def fuse_sc(op: SC, dilated: bool) -> FusedOp:
    """SC → (dense 1×1 if a group has several inputs) → depthwise with the pair, scale and BN folded."""
    k, b = cross_kernel(op.dw, dilated)
    pw = op.pw.weight  # (cout, cin/groups, 1, 1)
    layers: list[nn.Module] = []
    if pw.shape[1] == 1 and op.pw.groups == pw.shape[0]:
        k = k * pw.reshape(-1, 1, 1, 1)  # dw(s ⊙ x) = (dw ⊙ s)(x): the 1×1 is a per-channel scale
    else:
        layers.append(conv_from(grouped_to_dense(pw, op.pw.groups), None))
    k, b = fold_bn(k, b, op.bn)
    return FusedOp(*layers, depthwise_from_kernel(k, b, dilated))


@torch.no_grad()
def fuse_osc(op: OSC, dilated: bool) -> FusedOp:
    """OSC → its 1×1 pair (multiplied into one when that is not larger) → depthwise with BN folded."""
    w1, w2 = op.pw1.weight[:, :, 0, 0], op.pw2.weight[:, :, 0, 0]  # (mid, cin), (cout, mid)
    if w2.shape[0] * w1.shape[1] <= w1.numel() + w2.numel():
        layers: list[nn.Module] = [conv_from((w2 @ w1)[:, :, None, None], None)]
    else:
        layers = [conv_from(op.pw1.weight, None), conv_from(op.pw2.weight, None)]
    k, b = cross_kernel(op.dw, dilated)
    k, b = fold_bn(k, b, op.bn)
    return FusedOp(*layers, depthwise_from_kernel(k, b, dilated))


def fuse_operator(op: nn.Module, dilated: bool) -> FusedOp:
    if isinstance(op, SPC):
        return fuse_spc(op, dilated)
    if isinstance(op, SC):
        return fuse_sc(op, dilated)
    if isinstance(op, OSC):
        return fuse_osc(op, dilated)
    raise TypeError(f"cannot fuse operator {type(op).__name__}")


class FusedECA(nn.Module):
    """ECA with its channel Conv1d as a banded C×C linear layer (no transposes in the exported graph)."""

    def __init__(self, eca: ECA, channels: int) -> None:
        super().__init__()
        w = eca.conv.weight.detach()[0, 0]  # (k,)
        k, pad = w.numel(), eca.conv.padding[0]
        band = torch.zeros(channels, channels, dtype=w.dtype)
        for i in range(channels):
            for j in range(k):
                src = i + j - pad
                if 0 <= src < channels:
                    band[i, src] = w[j]
        self.fc = nn.Linear(channels, channels, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(band)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.fc(global_mean(x)))
        return x * gate[:, :, None, None]


# ------------------------------------------------------------------------------------------ blocks
def pool_as_depthwise(pool: TimePool, channels: int) -> nn.Conv2d | None:
    """The same average as a depthwise conv with constant weights: XNNPACK has no int8 AVERAGE_POOL_2D, so a
    pool splits the int8 graph into pieces that fall back to slow reference kernels; a depthwise conv stays
    delegated (and TFLM runs both). ``None`` for a pool of 1 (no op at all)."""
    kh, kw = pool.factor, pool.freq
    if kh == kw == 1:
        return None
    conv = nn.Conv2d(channels, channels, (kh, kw), stride=(kh, kw), groups=channels, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (kh * kw))
    return conv.eval()


@torch.no_grad()
def pool_into_conv(pool: TimePool, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    """An average pool followed by a 1×1 conv is ONE strided conv whose every tap is the 1×1 kernel divided
    by the pool size: one CONV_2D instead of a depthwise pool and a 1×1 (and no pooled map in memory)."""
    kh, kw = pool.factor, pool.freq
    kernel = weight.expand(-1, -1, kh, kw) / (kh * kw)
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], (kh, kw), stride=(kh, kw), bias=True)
    conv.weight.copy_(kernel)
    conv.bias.copy_(bias)
    return conv.eval()


class FusedBlock(nn.Module):
    """A DSSDB with every operator fused; the forward order is chosen so large maps die early."""

    def __init__(self, block: DSSDB, dilated: bool) -> None:
        super().__init__()
        self.split = block.split
        self.ops = nn.ModuleList(fuse_operator(op, dilated) for op in (block.op1, block.op2, block.op3))
        self.short_a = copy.deepcopy(block.short_a).eval()
        self.short_b = copy.deepcopy(block.short_b).eval()
        self.eca = FusedECA(block.eca, block.out.in_channels)
        w, b = fold_bn(block.out.weight, None, block.bn)
        self.pool_first = block.pool_first
        if block.pool_first:  # pool → 1×1 → BN → ReLU: the pool folds into the conv
            self.out = pool_into_conv(block.pool, w, b)
            self.pool = None
        else:
            self.out = conv_from(w, b)
            self.pool = pool_as_depthwise(block.pool, block.out.out_channels)

    def forward_split(self, low: Tensor, high: Tensor) -> Tensor:
        # shortcuts first: the high band (and its stem output) is dead before the deep path starts
        o = self.short_b(high) + self.short_a(low)
        x = low
        for op in self.ops:
            x = op(x)
        return self._tail(o + x)

    def forward(self, x: Tensor) -> Tensor:
        if self.split:
            half = math.ceil(x.shape[3] / 2)
            return self.forward_split(x[..., :half], x[..., half:])
        x1 = self.ops[0](x)
        x3 = self.ops[2](self.ops[1](x1))
        return self._tail(torch.cat([self.short_a(x), self.short_b(x1), x3], dim=1))

    def _tail(self, o: Tensor) -> Tensor:
        o = F.relu(self.out(self.eca(o)))
        return o if self.pool is None else self.pool(o)


class FusedHead(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.fc1 = copy.deepcopy(head.fc1).eval()
        self.fc2 = copy.deepcopy(head.fc2).eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class FusedDSSDN(nn.Module):
    """Inference-only DSSDN: same input/output as the trained model, far fewer ops once converted."""

    def __init__(self, model: DSSDN, dilated: bool = True, n_bands: int | None = None) -> None:
        super().__init__()
        self.config = model.config
        self.stem = _fuse_conv_bn(model.stem[0], model.stem[1])
        kf, sf = self.stem.kernel_size[1], self.stem.stride[1]
        # the stem commutes with cutting the freq axis when its freq taps never straddle the cut; decided
        # here, not in forward, so the graph has no shape-dependent branch (torch.fx / torch.export)
        self.stem_splits = kf == sf and self.stem.padding[1] == 0 and (n_bands is None or n_bands % (2 * sf) == 0)
        self.blocks = nn.ModuleList(FusedBlock(blk, dilated) for blk in model.blocks)
        self.pooled = tuple(model.config.pooled_blocks)
        self.head = FusedHead(model.head)

    def forward(self, x: Tensor) -> Tensor:
        first = self.blocks[0]
        if first.split and self.stem_splits:
            # the stem commutes with cutting the freq axis: never build the full-width stem output
            half = x.shape[3] // 2
            high = F.relu(self.stem(x[..., half:]))
            low = F.relu(self.stem(x[..., :half]))
            x = first.forward_split(low, high)
        else:
            x = first(F.relu(self.stem(x)))
        pooled = [global_mean(x)] if 0 in self.pooled else []
        for i, block in enumerate(self.blocks[1:], start=1):
            x = block(x)
            if i in self.pooled:
                pooled.append(global_mean(x))
        return self.head(torch.cat(pooled, dim=1))


# ------------------------------------------------------------------------------------------ resnet
def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    w, b = fold_bn(conv.weight, conv.bias, bn)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    )
    with torch.no_grad():
        fused.weight.copy_(w)
        fused.bias.copy_(b)
    return fused.eval()


class FusedResNet(nn.Module):
    """The ResNet with BN folded and a layout-friendly global mean (no TRANSPOSE before MEAN)."""

    def __init__(self, model: ResNet) -> None:
        super().__init__()
        self.config = model.config
        self.stem, self.layers, self.head = model.stem, model.layers, model.head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(global_mean(self.layers(self.stem(x))))


@torch.no_grad()
def fuse_resnet(model: ResNet) -> FusedResNet:
    """The ResNet baseline with every BatchNorm folded (its graph is already plain convs)."""
    out = copy.deepcopy(model).eval()
    out.stem[0] = _fuse_conv_bn(out.stem[0], out.stem[1])
    out.stem[1] = nn.Identity()
    for blk in out.layers:
        assert isinstance(blk, BasicBlock)
        blk.conv1, blk.bn1 = _fuse_conv_bn(blk.conv1, blk.bn1), nn.Identity()
        blk.conv2, blk.bn2 = _fuse_conv_bn(blk.conv2, blk.bn2), nn.Identity()
        if blk.down is not None:
            blk.down[0] = _fuse_conv_bn(blk.down[0], blk.down[1])
            blk.down[1] = nn.Identity()
    out.head.drop = nn.Identity()
    return FusedResNet(out).eval()


# --------------------------------------------------------------------------------------------- api
def fuse_model(model: nn.Module, dilated: bool = True, n_bands: int | None = None) -> nn.Module:
    """The export graph of a trained DSSDN or ResNet (eval mode, exact to float rounding)."""
    if isinstance(model, DSSDN):
        return FusedDSSDN(model.eval(), dilated, n_bands).eval()
    if isinstance(model, ResNet):
        return fuse_resnet(model.eval())
    raise TypeError(f"cannot fuse a {type(model).__name__}")


# ------------------------------------------------------------------------------------ equalization
EQUALIZE_OPERATORS = ("sc", "osc")  # measured: helps SC/OSC (large: 90 → 94 % int8 agreement), not SPC
MAX_GAIN = 32.0


def equalizable(model: nn.Module) -> list[tuple[int, int]]:
    """(block, op) pairs whose output channels can be rescaled exactly: op1 and op2 of every block feed
    only the next operator, whose first layer is per-channel (depthwise) or a 1×1 (columns)."""
    if not isinstance(model, FusedDSSDN) or model.config.operator not in EQUALIZE_OPERATORS:
        return []
    return [(b, o) for b in range(len(model.blocks)) for o in (0, 1)]


def run_with_hooks(model: nn.Module, windows: Tensor, batch: int, hooks: list) -> None:
    """Run ``windows`` through ``model`` in batches so the forward ``hooks`` see them, then detach the hooks
    (also on an error, so the model leaves here as it came)."""
    try:
        for i in range(0, len(windows), batch):
            model(windows[i : i + batch])
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def channel_ranges(model: nn.Module, windows: Tensor, batch: int = 64) -> dict[str, list[float]]:
    """Per-channel maximum of each equalizable operator output over ``windows`` (NCHW, normalised)."""
    pairs = equalizable(model)
    maxes: dict[str, Tensor] = {}
    hooks = []
    for b, o in pairs:
        key = f"blocks.{b}.ops.{o}"

        def hook(_m, _i, out, key=key):
            cur = out.detach().amax(dim=(0, 2, 3))
            maxes[key] = cur if key not in maxes else torch.maximum(maxes[key], cur)

        hooks.append(model.blocks[b].ops[o].register_forward_hook(hook))
    run_with_hooks(model, windows, batch, hooks)
    return {k: [float(v) for v in maxes[k]] for k in sorted(maxes)}


def equalization_gains(ranges: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-channel gains that lift every channel to the range of the widest one (at most ``MAX_GAIN``)."""
    out = {}
    for key, r in ranges.items():
        r_t = torch.tensor(r, dtype=torch.float64).clamp_min(1e-6)
        out[key] = [float(v) for v in (r_t.max() / r_t).clamp(max=MAX_GAIN)]
    return out


@torch.no_grad()
def equalize(model: nn.Module, gains: dict[str, list[float]]) -> nn.Module:
    """Scale the output channels of op1/op2 by ``gains`` and undo it in the next operator's input.

    Exact: the gains are positive, so they commute with ReLU; a depthwise consumer takes 1/gain on its
    kernel, a 1×1 consumer on its columns. It matters for int8 because activations are quantised per
    tensor: a channel whose values span 1/20 of the widest one would get 1/20 of the levels. Gains come
    from real calibration windows (``channel_ranges``); weight- or BN-based estimates did not help.
    """
    for key, g in gains.items():
        _, b, _, o = key.split(".")
        block = model.blocks[int(b)]
        a = torch.tensor(g, dtype=torch.float32)
        last = block.ops[int(o)][-1]
        last.weight.mul_(a.view(-1, 1, 1, 1))
        last.bias.mul_(a)
        first = block.ops[int(o) + 1][0]
        if first.groups == first.in_channels == first.out_channels and first.groups > 1:
            first.weight.div_(a.view(-1, 1, 1, 1))  # depthwise: per-channel input = per-channel kernel
        else:
            first.weight.div_(a.view(1, -1, 1, 1))
    return model


# ----------------------------------------------------------------------------------- bias correction
def int8_weights(w: Tensor) -> Tensor:
    """``w`` rounded as ai-edge-quantizer stores it: per output channel, symmetric, ±127."""
    scale = w.abs().reshape(w.shape[0], -1).amax(1).clamp_min(1e-12) / 127.0
    scale = scale.view(-1, *([1] * (w.dim() - 1)))
    return torch.round(w / scale) * scale


@torch.no_grad()
def bias_corrections(model: nn.Module, windows: Tensor, batch: int = 64) -> dict[str, list[float]]:
    """Per conv/linear layer, the mean output shift that rounding its weights to int8 causes on real
    ``windows`` (empirical bias correction, Nagel et al. 2019): E[(W_q − W)·x] per output channel, with x the
    layer's own input in the float graph. Subtracting it from the bias removes the systematic part of the
    weight-rounding error — the largest single cost of int8 for these thin networks
    (benchmarks/results/int8-error-budget-dssdn-small.md)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def fn(m: nn.Module, inputs: tuple[Tensor, ...], _out: Tensor) -> None:
            x = inputs[0]
            dw = int8_weights(m.weight) - m.weight
            if isinstance(m, nn.Linear):
                d = F.linear(x, dw).sum(0)
                n = x.shape[0]
            else:
                d = F.conv2d(x, dw, None, m.stride, m.padding, m.dilation, m.groups)
                n = d.shape[0] * d.shape[2] * d.shape[3]
                d = d.sum((0, 2, 3))
            sums[name] = sums.get(name, 0) + d
            counts[name] = counts.get(name, 0) + n
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]
    run_with_hooks(model, windows, batch, handles)
    return {name: [float(v) for v in sums[name] / counts[name]] for name in sorted(sums)}


@torch.no_grad()
def correct_biases(model: nn.Module, corrections: dict[str, list[float]]) -> nn.Module:
    """A copy of ``model`` whose layer biases absorb ``corrections`` (what the int8 file is quantised from;
    the fp32 artifacts keep the exact weights). A layer without a bias gets one."""
    out = copy.deepcopy(model)
    layers = dict(out.named_modules())
    for name, delta in corrections.items():
        m = layers[name]
        d = torch.tensor(delta, dtype=m.weight.dtype)
        if m.bias is None:
            m.bias = nn.Parameter(-d)
        else:
            m.bias -= d
    return out.eval()
