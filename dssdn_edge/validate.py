"""The checkpoint validator: everything a sidecar claims, checked before any model is built.

Manifests have one validator (``bench.runner.manifest_problem``); this is its twin for checkpoints, so a
sidecar cannot make the tools print a forged line, answer with NaN, name two classes alike, or allocate
40 GB. Labels must be as many as the model's outputs, unique, non-empty and printable (no newline or other
control character that could forge an output line); the normalisation must be finite with a positive std
of the front end's shape; the architecture must be a known one; and the tensor shapes the architecture
implies (computed on torch's "meta" device, which allocates nothing) must equal the shapes in the
safetensors header, read as JSON before any tensor is loaded.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .labels import label_problem, safe_label

__all__ = ["check_checkpoint", "label_problem", "safe_label"]

MAX_HEADER_BYTES = 16 << 20  # a safetensors header of a model this size is a few kB
MAX_WIDTH = 4096  # channels of one layer; the shipped models use <= 192


def normalization_problem(norm: Any, channels: int, n_mels: int) -> str | None:
    if not isinstance(norm, dict) or "mean" not in norm or "std" not in norm:
        return "normalization needs 'mean' and 'std'"
    for key in ("mean", "std"):
        rows = norm[key]
        if (not isinstance(rows, list) or len(rows) != channels
                or any(not isinstance(r, list) or len(r) != n_mels for r in rows)):
            return f"normalization {key} is not {channels} x {n_mels} numbers (channels x mel bands)"
        for r in rows:
            for v in r:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    return f"normalization {key} holds {v!r}, not a finite number"
    if any(v <= 0 for r in norm["std"] for v in r):
        return "normalization std holds a value <= 0"
    return None


def read_safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's JSON header, without reading any tensor."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (shorter than its header)")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path}: not a safetensors file (header of {n} bytes)")
            header = json.loads(fh.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: unreadable safetensors header (not an object)")
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: safetensors header gives no valid shape for {name!r}")
        out[name] = tuple(shape)
    return out


def config_problem(model_config: Any) -> str | None:
    """A known architecture with sane sizes, before anything is built from it."""
    from .model import OPERATORS, ModelConfig

    if not isinstance(model_config, dict):
        return "model_config is not an object"
    arch = model_config.get("arch", "dssdn")
    if arch not in ("dssdn", "resnet"):
        return f"unknown architecture {arch!r} (known: dssdn, resnet)"
    if arch == "dssdn" and model_config.get("operator", "spc") not in OPERATORS:
        return f"unknown operator {model_config.get('operator')!r} (known: {', '.join(OPERATORS)})"
    try:
        cfg = ModelConfig.from_dict(model_config)
    except TypeError as exc:
        return f"invalid model_config ({exc})"
    ints = {"widths": cfg.widths, "stem": (cfg.stem,), "hidden": (cfg.hidden,), "in_channels": (cfg.in_channels,),
            "n_classes": (cfg.n_classes,), "depth": cfg.depth}
    for key, values in ints.items():
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_WIDTH for v in values):
            return f"model_config {key} {list(values)} is not a list of sizes in 1..{MAX_WIDTH}"
    if not cfg.widths:
        return "model_config widths is empty"
    n = len(cfg.widths)
    if arch == "dssdn" and (len(cfg.split) != n or (cfg.time_pool and len(cfg.time_pool) != n)
                            or any(not isinstance(b, int) or not 0 <= b < n for b in cfg.pooled_blocks)):
        return "model_config split / time_pool / pooled_blocks do not match its widths"
    if arch == "resnet" and len(cfg.depth) != len(cfg.widths):
        return "model_config depth does not match its widths"
    return None


def expected_shapes(model_config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes the architecture implies, built on the meta device (no memory allocated)."""
    import torch

    from .model import ModelConfig, build_model

    with torch.device("meta"):
        model = build_model(ModelConfig.from_dict(model_config))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_checkpoint(path: Path, side: dict[str, Any]) -> None:
    """Raise ``CheckpointError`` (one line, naming the sidecar or weights) unless the checkpoint is usable."""
    from .frontend import FrontendConfig

    side_path = path.with_suffix(".json")
    why = config_problem(side.get("model_config"))
    if why:
        raise CheckpointError(f"{side_path}: {why}")
    try:
        fe = FrontendConfig.from_dict(side["frontend_config"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{side_path}: invalid frontend_config ({exc})") from None
    have = read_safetensors_shapes(path)
    want = expected_shapes(side["model_config"])
    if set(have) != set(want):
        bad = sorted(set(have) ^ set(want))[0]
        raise CheckpointError(f"{path}: weights do not fit the model in its sidecar (tensor {bad!r} "
                              f"{'missing' if bad in want else 'unexpected'})")
    for k, shape in want.items():
        if have[k] != shape:
            raise CheckpointError(f"{path}: weights do not fit the model in its sidecar ({k}: {list(have[k])} "
                                  f"in the file, {list(shape)} from the sidecar's widths)")
    outputs = side["model_config"].get("n_classes")
    why = label_problem(side.get("labels"), outputs) or normalization_problem(
        side.get("normalization"), fe.channels, fe.n_mels)
    if why:
        raise CheckpointError(f"{side_path}: {why}")
