"""A training run's files: the resumable state (``state.pt``) and the history plot.

The state holds tensors and plain Python types only, so it loads with ``weights_only=True``; it is written
under a temporary name and renamed, so an interrupted save never leaves half a state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import DssdnError
from .fileio import atomic_path

STATE_VERSION = 1


# ------------------------------------------------------------------------------------------- state
def save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, ema: Any,
               rng: np.random.Generator, st: dict[str, Any], aux: nn.Module | None = None) -> None:
    """Everything needed to continue bit for bit, in tensors and plain Python types only (so it loads with
    ``weights_only=True``); written under a temporary name and renamed. The augmentation streams need no
    saving: they are derived from the run's position (``distributed.seed_step``)."""
    state = {
        "version": STATE_VERSION,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "ema": None if ema is None else {"model": ema.model.state_dict(), "updates": ema.updates},
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "loop": {k: v for k, v in st.items() if k not in ("plan", "best_state")},
        "plan": None if st["plan"] is None else torch.from_numpy(st["plan"]),
        "best_state": st["best_state"],
        "aux": None if aux is None else aux.state_dict(),  # training-only modules (the embedding projection)
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, ema: Any,
               rng: np.random.Generator, st: dict[str, Any], aux: nn.Module | None = None) -> None:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file: say which, never unpickle anything else
        raise DssdnError(f"{path}: unreadable training state ({first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise DssdnError(f"{path}: training state of another format version")
    try:
        model.load_state_dict(state["model"])
        if aux is not None:
            aux.load_state_dict(state.get("aux") or {})
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise DssdnError(f"{path}: state does not fit this model ({first_line(exc)})") from None
    sched.load_state_dict(state["scheduler"])
    if ema is not None and state["ema"] is not None:
        ema.model.load_state_dict(state["ema"]["model"])
        ema.updates = state["ema"]["updates"]
    torch.set_rng_state(state["torch_rng"])
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    loop = state["loop"]
    loop["best"] = tuple(loop["best"])
    st.update(loop)
    st["plan"] = None if state["plan"] is None else state["plan"].numpy()
    st["best_state"] = state["best_state"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (an empty file gives an exception without one)."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:120] if lines else type(exc).__name__


# -------------------------------------------------------------------------------------------- plot
def plot_history(history: list[dict[str, Any]], path: Path, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(epochs, [h["loss"] for h in history])
    ax[0].set(xlabel="epoch", ylabel="training loss (mixed inputs)", title=name)
    val = [(h["epoch"], h["val_accuracy"]) for h in history if "val_accuracy" in h]
    if val:
        ax[1].plot(*zip(*val, strict=True), marker=".", label="val (clip level)")
    ax[1].plot(epochs, [h["train_accuracy_mixed"] for h in history], alpha=0.6, label="train (mixed inputs)")
    ax[1].set(xlabel="epoch", ylabel="accuracy")
    ax[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
