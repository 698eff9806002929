"""Clip-level evaluation: mean of 1-s window logits, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint
from .data import ClipFeatures, Dataset, clip_features
from .errors import DssdnError
from .frontend import Frontend, Normalization

EVAL_STRIDE = 25  # frames between scored windows: 0.5 s at the default hop


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
    confusion: np.ndarray  # (true, predicted) counts over the model's labels
    labels: list[str]
    clips: int = 0
    source: str = ""

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "clips": self.clips, "source": self.source, "labels": self.labels,
                "per_class": self.per_class, "confusion": self.confusion.tolist()}


def label_remap(dataset: Dataset, model_labels: list[str]) -> np.ndarray:
    """Dataset target → model output index, matched by class name. A dataset may hold only some of the
    model's classes; a class the model does not know is a ``DssdnError``."""
    unknown = sorted(set(dataset.labels) - set(model_labels))
    if unknown:
        raise DssdnError(f"{dataset.root}: {len(unknown)} class(es) the model does not know "
                         f"(first: {unknown[0]!r}); evaluate a model trained on these labels")
    index = {lab: i for i, lab in enumerate(model_labels)}
    return np.asarray([index[lab] for lab in dataset.labels], np.int64)


def evaluate_dataset(ckpt: Checkpoint, dataset: Dataset, split: str = "test") -> Evaluation:
    """Clip-level accuracy of a checkpoint on one split of a dataset whose classes it knows (by name).

    The dataset may hold only some of the model's classes; a class the model does not know is an error."""
    clips = dataset.split(split)
    if not clips:
        raise DssdnError(f"{dataset.root}: no clips in the {split!r} split")
    remap = label_remap(dataset, list(ckpt.labels))
    fe = Frontend(ckpt.frontend_config)
    feats = clip_features(clips, fe, desc=f"features ({split})")
    logits = clip_logits(ckpt.model, feats, ckpt.normalization, fe.config.segment_frames, EVAL_STRIDE)
    targets = remap[feats.targets]
    ev = summarize(logits, targets, list(ckpt.labels))
    ev.clips, ev.source = len(clips), f"{dataset.root} ({split}, {len(clips)} clips)"
    return ev


def summarize(logits: np.ndarray, targets: np.ndarray, labels: list[str]) -> Evaluation:
    pred = logits.argmax(1)
    n = len(labels)
    conf = np.zeros((n, n), np.int64)
    np.add.at(conf, (targets, pred), 1)
    per_class = {labels[i]: float(conf[i, i] / conf[i].sum()) for i in range(n) if conf[i].sum()}
    return Evaluation(float((pred == targets).mean()), per_class, conf, labels, len(targets))


def plot_confusion(ev: Evaluation, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import atomic_path

    n = len(ev.labels)
    size = min(0.22 * n, 40)  # beyond ~180 classes the labels are unreadable anyway
    fig, ax = plt.subplots(figsize=(size + 3, size + 2.5))
    norm = ev.confusion / np.maximum(ev.confusion.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 200:
        font = 6 if n > 20 else 9
        ax.set_xticks(range(n), ev.labels, rotation=90, fontsize=font)
        ax.set_yticks(range(n), ev.labels, fontsize=font)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} — accuracy {ev.accuracy:.1%}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
