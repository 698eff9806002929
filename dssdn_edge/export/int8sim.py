"""A torch simulation of the int8 TFLite graph, used to measure where int8 loses agreement with fp32.

Plain post-training quantisation of these thin networks leaves the int8 .tflite disagreeing with fp32 on
5–7 % of fold-5 windows. To know which tensors cost that, ``Int8Sim`` rebuilds the int8 arithmetic in torch
on the fused export graph (traced with torch.fx): weights rounded per output channel (symmetric, ±127, as
ai-edge-quantizer does), every tensor that is int8 in the .tflite rounded per tensor (asymmetric; ranges
measured like ``tflite.calibrate``: the 99.99th percentile for conv/add/mul maps, min/max elsewhere; the
logistic output on its fixed 1/256 grid; the concatenated pooled vector on one shared grid, as TFLite's
CONCATENATION forces). Its logit error and its top-1 disagreement with fp32 match the real LiteRT int8
model's (test), so each rounding point can be switched on alone and its cost measured (``error_budget``),
which the real quantizer cannot do.

The match is statistical, not bit-exact: a grid a few per mille off LiteRT's rounds individual values
differently. That is also why fine-tuning the export weights against this simulation (straight-through
rounding, fp32 logits as the target) was tried and dropped: it raised simulated agreement on the tuning
windows by ~1 point, and the real int8 model's not at all.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from .tflite import INPUT_CLIP, PERCENTILE, clip_inputs

Tensor = torch.Tensor

SAMPLE_STRIDE = 13  # every 13th value of a map estimates its percentile (as tflite.percentile_ranges)
QMIN, QMAX = -128, 127


# ------------------------------------------------------------------------------------ quantisers
def weight_fake_quant(w: Tensor) -> Tensor:
    """Per-output-channel symmetric int8 (±127) with a straight-through gradient."""
    flat = w.detach().abs().reshape(w.shape[0], -1).amax(1)
    scale = torch.clamp(flat / 127.0, min=1e-12)
    zp = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zp, 0, -127, 127)


def affine_params(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's per-tensor asymmetric int8 scale and zero point for a range that contains 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (QMAX - QMIN), 1e-8)
    zp = int(round(QMIN - lo / scale))
    return scale, max(QMIN, min(QMAX, zp))


class ActQuant(nn.Module):
    """Rounds a tensor to its int8 grid. Observes ranges while ``observing``; a fixed grid (sigmoid) is
    given at construction."""

    def __init__(self, kind: str, fixed: tuple[float, int] | None = None) -> None:
        super().__init__()
        self.kind = kind  # "percentile" | "minmax" | "fixed"
        self.observing = False
        self.samples: list[np.ndarray] = []
        self.lo, self.hi = math.inf, -math.inf
        self.params = fixed

    def forward(self, x: Tensor) -> Tensor:
        if self.observing:
            v = x.detach()
            if self.kind == "percentile":
                self.samples.append(v.reshape(-1)[::SAMPLE_STRIDE].numpy().copy())
            self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
            return x
        if self.params is None:
            return x
        scale, zp = self.params
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, QMIN, QMAX)

    def finish(self) -> None:
        """Turn what was observed into the grid."""
        if self.kind == "fixed":
            return
        lo, hi = self.lo, self.hi
        if self.kind == "percentile" and self.samples:
            v = np.concatenate(self.samples)
            lo, hi = (float(p) for p in np.percentile(v, [100.0 - PERCENTILE, PERCENTILE]))
        self.params = affine_params(lo, hi)
        self.samples = []


class QConv(nn.Module):
    """A conv or linear layer whose weights are rounded like the int8 model's (biases stay exact: int32)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear) -> None:
        super().__init__()
        self.layer = layer
        self.quantize = True

    def forward(self, x: Tensor) -> Tensor:
        w = weight_fake_quant(self.layer.weight) if self.quantize else self.layer.weight
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        c = self.layer
        return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)


# ------------------------------------------------------------------------------------- simulation
_RELU = (F.relu, torch.relu)
_ADD = (operator.add, torch.add)
_MUL = (operator.mul, torch.mul)
_SIGMOID = (torch.sigmoid, F.sigmoid)
_CAT = (torch.cat,)
_PASS_METHODS = {"flatten", "reshape", "view", "squeeze", "unsqueeze"}


def _is_call(node: fx.Node, fns: tuple[Callable, ...]) -> bool:
    return node.op == "call_function" and node.target in fns


def _only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _feeds_cat(node: fx.Node) -> bool:
    """A value that reaches a concatenation only through reshapes: TFLite writes it on the concat's grid."""
    user = _only_user(node)
    while user is not None and user.op == "call_method" and user.target in _PASS_METHODS:
        user = _only_user(user)
    return user is not None and _is_call(user, _CAT)


class Int8Sim(nn.Module):
    """The export graph with int8 rounding where the .tflite has int8 tensors (see the module docstring).
    ``fused`` itself is left as it is (the simulation wraps its conv/linear modules, it does not copy them)."""

    def __init__(self, fused: nn.Module) -> None:
        super().__init__()
        gm = fx.symbolic_trace(fused)
        self.quants = nn.ModuleDict()
        gm.add_submodule("quants", self.quants)
        graph = gm.graph
        for node in list(graph.nodes):
            if node.op == "call_module":
                mod = gm.get_submodule(node.target)
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    _set_submodule(gm, node.target, QConv(mod))
            kind = self._kind(gm, node)
            if kind is None:
                continue
            name = f"q{len(self.quants)}"
            self.quants[name] = ActQuant("fixed", (1.0 / 256.0, -128)) if kind == "fixed" else ActQuant(kind)
            with graph.inserting_after(node):
                q = graph.call_module(f"quants.{name}", (node,))
            node.replace_all_uses_with(q, delete_user_cb=lambda user, q=q: user is not q)
        graph.lint()
        gm.recompile()
        self.gm = gm

    @staticmethod
    def _kind(gm: fx.GraphModule, node: fx.Node) -> str | None:
        """How ``node``'s output is quantised in the int8 .tflite, or None if it is not a new int8 tensor."""
        user = _only_user(node)
        fused_into_user = user is not None and _is_call(user, _RELU)  # conv/add + ReLU is one TFLite op
        if node.op == "placeholder":
            return "input"
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if isinstance(mod, QConv):
                if fused_into_user:
                    return None
                return "percentile" if isinstance(mod.layer, nn.Conv2d) else "minmax"
            return None
        if _is_call(node, _RELU):
            src = node.args[0]
            producer_is_map = isinstance(src, fx.Node) and (
                _is_call(src, _ADD + _MUL)
                or (src.op == "call_module" and isinstance(gm.get_submodule(src.target), (QConv, nn.Conv2d)))
            )
            return "percentile" if producer_is_map else "minmax"
        if _is_call(node, _ADD):
            return None if fused_into_user else "percentile"
        if _is_call(node, _MUL):
            return "percentile"
        if _is_call(node, _SIGMOID):
            return "fixed"
        if _is_call(node, _CAT):
            return "minmax"
        if node.op == "call_method" and node.target == "mean":
            return None if _feeds_cat(node) else "minmax"
        return None

    def forward(self, x: Tensor) -> Tensor:
        return self.gm(x)

    # -- calibration ------------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, windows: Tensor, batch: int = 64) -> None:
        """Measure every activation range on ``windows`` (the fp32 graph, weights rounded)."""
        for q in self.quants.values():
            q.observing = True
            q.samples, q.lo, q.hi = [], math.inf, -math.inf
        try:
            for start in range(0, len(windows), batch):
                self(windows[start : start + batch])
        finally:
            for q in self.quants.values():
                q.observing = False
        for name, q in self.quants.items():
            if q.kind == "input":
                q.params = affine_params(-INPUT_CLIP, INPUT_CLIP)
            else:
                q.finish()
            if q.params is None:
                raise RuntimeError(f"int8 simulation: {name} saw no data")


def _set_submodule(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


# ------------------------------------------------------------------------------------- error budget
@dataclass
class BudgetRow:
    """Top-1 agreement with fp32 (and mean |logit error|) when only ``point`` is rounded."""

    point: str  # "all", "weights only", "activations only", or the graph node whose output is rounded
    kind: str
    agreement: float
    mean_abs_logit_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch: int = 256) -> Tensor:
    return torch.cat([model(x[s : s + batch]) for s in range(0, len(x), batch)])


def error_budget(
    fused: nn.Module,
    calib_windows: np.ndarray,
    eval_windows: np.ndarray,
    progress: Callable[[list, str], Any] | None = None,
) -> list[BudgetRow]:
    """Agreement of the simulated int8 model with ``fused`` (fp32) on ``eval_windows``: everything rounded,
    weights only, activations only, then each activation tensor alone (worst first). Ranges come from
    ``calib_windows``, as in the real export."""
    ref = _logits(fused.eval(), torch.from_numpy(eval_windows))
    x = torch.from_numpy(clip_inputs(eval_windows))
    sim = Int8Sim(fused)
    sim.calibrate(torch.from_numpy(clip_inputs(calib_windows)))
    convs = [m for m in sim.modules() if isinstance(m, QConv)]
    grids = {name: q.params for name, q in sim.quants.items()}
    source = {
        n.target.split(".")[-1]: n.args[0].name
        for n in sim.gm.graph.nodes
        if n.op == "call_module" and str(n.target).startswith("quants.")
    }

    def row(point: str, kind: str, weights: bool, acts: set[str]) -> BudgetRow:
        for m in convs:
            m.quantize = weights
        for name, q in sim.quants.items():
            q.params = grids[name] if name in acts else None
        out = _logits(sim, x)
        agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
        return BudgetRow(point, kind, agree, float((out - ref).abs().mean()))

    everything = set(grids)
    rows = [
        row("all", "weights + activations", True, everything),
        row("weights only", "per-channel int8", True, set()),
        row("activations only", "per-tensor int8", False, everything),
    ]
    names = list(grids)
    singles = [
        row(source[n], sim.quants[n].kind, False, {n})
        for n in (progress(names, "int8 error budget") if progress else names)
    ]
    for m in convs:
        m.quantize = True
    for name, q in sim.quants.items():
        q.params = grids[name]
    return rows + sorted(singles, key=lambda r: (r.agreement, -r.mean_abs_logit_error))
