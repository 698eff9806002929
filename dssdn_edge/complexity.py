"""Parameters and MACs per 1-s input, in the DCASE/NeSsi convention (torchinfo mult-adds).

DCASE counts the multiply-accumulates of convolution and linear layers for one input window
(here 1 s: 51 frames × 128 bands); BatchNorm, pooling and element-wise ops are not counted there.
Parameters are counted after folding BatchNorm into the preceding convolution, as on the device.
The full-graph count (every op of the exported graph) lives with the export, where the graph exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torchinfo import summary

from .frontend import FrontendConfig

CONVENTION = (
    "DCASE/NeSsi: torchinfo mult-adds of Conv/Linear layers for one 1-s input window; "
    "params after folding BatchNorm"
)


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: list[int]
    params: int
    macs: int


@dataclass
class Complexity:
    params: int  # inference graph, BN folded
    params_trainable: int  # as trained (BN separate)
    macs: int  # per 1-s window, DCASE convention
    input_shape: list[int]
    convention: str = CONVENTION
    layers: list[LayerRow] = field(default_factory=list)

    def to_dict(self, with_layers: bool = False) -> dict:
        out = {
            "params": self.params,
            "params_trainable": self.params_trainable,
            "macs": self.macs,
            "input_shape": self.input_shape,
            "convention": self.convention,
        }
        if with_layers:
            out["layers"] = [vars(r) for r in self.layers]
        return out


def folded_params(model: nn.Module) -> int:
    """Parameters once every BatchNorm is folded into the bias-less convolution before it: the BN's
    scale and shift vanish and the convolution gains one bias per channel."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            total += m.num_features
        else:
            total += sum(p.numel() for p in m.parameters(recurse=False))
    return total


def measure(model: nn.Module, frontend: FrontendConfig | None = None) -> Complexity:
    fe = frontend or FrontendConfig()
    shape = [1, fe.channels, fe.segment_frames, fe.n_mels]
    was_training = model.training
    model.eval()
    stats = summary(model, input_size=shape, verbose=0, depth=8, col_names=("output_size", "num_params", "mult_adds"))
    model.train(was_training)
    rows = [
        LayerRow(
            name=layer.get_layer_name(show_var_name=True, show_depth=False),
            kind=layer.class_name,
            output_shape=list(layer.output_size),
            params=int(layer.num_params) if layer.is_leaf_layer else 0,
            macs=int(layer.macs) if layer.is_leaf_layer else 0,
        )
        for layer in stats.summary_list
        if layer.is_leaf_layer
    ]
    return Complexity(
        params=folded_params(model),
        params_trainable=int(stats.total_params),
        macs=int(stats.total_mult_adds),
        input_shape=shape,
        layers=rows,
    )


def format_table(c: Complexity) -> str:
    lines = [f"{'layer':48s} {'type':12s} {'output':>20s} {'params':>9s} {'MACs':>12s}"]
    for r in c.layers:
        lines.append(f"{r.name[:48]:48s} {r.kind[:12]:12s} {str(r.output_shape):>20s} {r.params:9,d} {r.macs:12,d}")
    lines.append(f"params (BN folded): {c.params:,}   trainable: {c.params_trainable:,}   "
                 f"MACs per 1-s input: {c.macs:,} ({c.macs / 1e6:.2f} M)")
    lines.append(f"convention: {c.convention}")
    return "\n".join(lines)
