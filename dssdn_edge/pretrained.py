"""The model factory: ``create_model("dssdn-small", pretrained=True)`` in the manner of timm."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .checkpoint import Checkpoint, load_checkpoint
from .errors import CheckpointError
from .model import build_model, config_for, resolve_name

REPO_ROOT = Path(__file__).resolve().parents[1]


def models_dir() -> Path:
    """Shipped weights: ``$DSSDN_MODELS`` or ``models/`` at the top of the checkout."""
    env = os.environ.get("DSSDN_MODELS")
    return Path(env) if env else REPO_ROOT / "models"


def pretrained_path(name: str) -> Path:
    return models_dir() / f"{resolve_name(name)}.safetensors"


def load_pretrained(name: str) -> Checkpoint:
    """Shipped weights with their front end, normalisation and labels (checked against the size)."""
    full = resolve_name(name)
    ckpt = load_checkpoint(pretrained_path(full))
    expected = config_for(full, len(ckpt.labels), ckpt.frontend_config.channels)
    if ckpt.model_config != expected:
        raise CheckpointError(f"{ckpt.path}: shipped weights are not a {full} (config differs from the factory)")
    return ckpt


def create_model(name: str, pretrained: bool = False, n_classes: int = 50, in_channels: int = 2) -> nn.Module:
    """A DSSDN size or the ResNet baseline; ``pretrained=True`` loads the weights shipped in models/."""
    if pretrained:
        return load_pretrained(name).model
    return build_model(config_for(name, n_classes, in_channels))
