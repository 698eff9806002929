"""Clip-level evaluation: mean of 1-s window logits, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import ClipFeatures
from .frontend import Normalization


def clip_logits(
    model: nn.Module, feats: ClipFeatures, norm: Normalization, seg: int, stride: int, batch: int = 256
) -> np.ndarray:
    """(clips, classes): each clip's score is the mean of its non-silent windows' logits."""
    index = feats.windows(seg, stride)
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(index), batch):
            x = torch.from_numpy(norm.apply(feats.gather(index[i : i + batch], seg)))
            outs.append(model(x).float().numpy())
    return mean_by_clip(np.concatenate(outs), index[:, 0], len(feats.targets))


def mean_by_clip(window_logits: np.ndarray, clip_of_window: np.ndarray, n_clips: int) -> np.ndarray:
    sums = np.zeros((n_clips, window_logits.shape[1]))
    np.add.at(sums, clip_of_window, window_logits)
    counts = np.bincount(clip_of_window, minlength=n_clips)[:, None]
    return sums / np.maximum(counts, 1)


@dataclass
class Evaluation:
    accuracy: float
    per_class: dict[str, float]
    confusion: np.ndarray  # (true, predicted) counts
    labels: list[str]

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "per_class": self.per_class, "confusion": self.confusion.tolist()}


def summarize(logits: np.ndarray, targets: np.ndarray, labels: list[str]) -> Evaluation:
    pred = logits.argmax(1)
    n = len(labels)
    conf = np.zeros((n, n), np.int64)
    np.add.at(conf, (targets, pred), 1)
    per_class = {labels[i]: float(conf[i, i] / max(conf[i].sum(), 1)) for i in range(n)}
    return Evaluation(float((pred == targets).mean()), per_class, conf, labels)


def plot_confusion(ev: Evaluation, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(ev.labels)
    fig, ax = plt.subplots(figsize=(0.22 * n + 3, 0.22 * n + 2.5))
    norm = ev.confusion / np.maximum(ev.confusion.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), ev.labels, rotation=90, fontsize=6)
    ax.set_yticks(range(n), ev.labels, fontsize=6)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} — accuracy {ev.accuracy:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
