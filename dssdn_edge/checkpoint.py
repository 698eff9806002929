"""Checkpoints: safetensors weights + a JSON sidecar that says what they are.

The sidecar carries everything needed to use the weights without the training code: model and
front-end config, normalisation stats, labels, metrics, data licence, code version and the SHA-256 of
the weights file, so that a truncated file or a sidecar paired with the wrong weights is caught before
any number is computed. safetensors holds only tensors, so loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError
from .fileio import atomic_path
from .frontend import FrontendConfig, Normalization
from .model import ModelConfig, build_model
from .paths import regular_file
from .validate import check_checkpoint

FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()  # streamed; Python 3.11 (the device copy has its own)


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


@dataclass
class Checkpoint:
    """A loaded model with everything that travels with it."""

    name: str
    model: nn.Module
    model_config: ModelConfig
    frontend_config: FrontendConfig
    normalization: Normalization
    labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def save_checkpoint(
    path: Path,
    name: str,
    model: nn.Module,
    model_config: ModelConfig,
    frontend_config: FrontendConfig,
    normalization: Normalization,
    labels: list[str],
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``path`` (.safetensors) and its sidecar atomically. ``dtype=float16`` halves the file
    for large baselines; loading always returns float32."""
    from .version import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    side_path = sidecar_path(path)
    with atomic_path(side_path) as tmp_side, atomic_path(path) as tmp:  # weights land first, sidecar last
        save_file(state, str(tmp), metadata={"name": name})
        sidecar = {
            "format": FORMAT_VERSION,
            "name": name,
            "weights_file": path.name,
            "weights_sha256": sha256_file(tmp),
            "weights_dtype": str(dtype).removeprefix("torch."),
            "model_config": model_config.to_dict(),
            "frontend_config": frontend_config.to_dict(),
            "normalization": normalization.to_dict(),
            "labels": list(labels),
            "code_version": __version__,
            **(meta or {}),
        }
        tmp_side.write_text(json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"{side}: sidecar missing (a checkpoint is <name>.safetensors + <name>.json)")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{side}: sidecar is not valid JSON ({exc})") from None
    missing = {"weights_sha256", "model_config", "frontend_config", "normalization", "labels"} - set(data)
    if missing:
        raise CheckpointError(f"{side}: sidecar lacks {', '.join(sorted(missing))}")
    return data


def load_checkpoint(
    path: str | Path,
    expect_model: ModelConfig | None = None,
    expect_frontend: FrontendConfig | None = None,
) -> Checkpoint:
    """Load and verify a checkpoint; every mismatch is a ``CheckpointError`` naming the file."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    regular_file(path, "checkpoint", CheckpointError)
    side = read_sidecar(path)
    digest = sha256_file(path)
    if digest != side["weights_sha256"]:
        raise CheckpointError(
            f"{path}: weights do not match their sidecar (sha256 {digest[:12]}… != {side['weights_sha256'][:12]}…);"
            " the file is truncated, modified, or paired with another model's sidecar"
        )
    check_checkpoint(path, side)  # labels, normalisation, architecture and shapes, before anything is built
    try:
        model_cfg = ModelConfig.from_dict(side["model_config"])
        fe_cfg = FrontendConfig.from_dict(side["frontend_config"])
        norm = Normalization.from_dict(side["normalization"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{sidecar_path(path)}: invalid config in sidecar ({exc})") from None
    if expect_model is not None and expect_model != model_cfg:
        raise CheckpointError(
            f"{path}: checkpoint is a {describe(model_cfg)}, expected a {describe(expect_model)}"
        )
    if expect_frontend is not None and expect_frontend != fe_cfg:
        diff = {k: (v, expect_frontend.to_dict()[k]) for k, v in fe_cfg.to_dict().items()
                if expect_frontend.to_dict()[k] != v}
        raise CheckpointError(f"{path}: checkpoint was trained with another front end (have, want): {diff}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None
    model = build_model(model_cfg)
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        bad = sorted(set(state) ^ set(expected)) or [k for k in expected if state[k].shape != expected[k].shape]
        raise CheckpointError(f"{path}: weights do not fit the model in its sidecar (first mismatch: {bad[0]})")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    model.eval()
    if norm.mean.shape != (fe_cfg.channels, fe_cfg.n_mels):
        raise CheckpointError(f"{sidecar_path(path)}: normalisation shape {norm.mean.shape} does not fit the front end")
    return Checkpoint(side.get("name", path.stem), model, model_cfg, fe_cfg, norm, list(side["labels"]), side, path)


def describe(cfg: ModelConfig) -> str:
    if cfg.arch == "resnet":
        return f"resnet (widths {list(cfg.widths)})"
    return f"dssdn/{cfg.operator} (widths {list(cfg.widths)})"
