"""Training: 1-s windows, mixup + masking (+ optional Freq-MixStyle), cosine schedule, teacher distillation.

Recipe (design note, DSMN + CP-JKU): AdamW, warm-up then cosine, mixup Beta(0.2), time/freq masks;
the best epoch is picked on fold 4 (``calib``) and fold 5 (``test``) is touched once, at the end.
With a teacher, its logits for every training window are computed once and cached, and the student
minimises λ·CE + (1−λ)·T²·KL(teacher ‖ student).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint, sha256_file
from .data import DATA_LICENCE, ClipFeatures, Dataset, clip_features, default_cache_dir
from .evaluate import clip_logits
from .frontend import Frontend, FrontendConfig, Normalization
from .model import ModelConfig, build_model, config_for, resolve_name
from .progress import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    model: str = "dssdn-small"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_epochs: int = 2
    mixup_alpha: float = 0.2
    time_masks: int = 2
    time_mask_max: int = 8  # frames
    freq_masks: int = 2
    freq_mask_max: int = 16  # bands
    freq_mixstyle: float = 0.0  # probability per batch; 0 disables
    windows_per_clip: int = 4  # training windows drawn per clip and epoch
    window_stride: int = 10  # grid of candidate training windows (frames)
    eval_stride: int = 25  # window stride for clip-level evaluation (frames)
    teacher: str | None = None  # None, "resnet" (shipped/trained) or a checkpoint path
    kd_lambda: float = 0.02
    kd_temperature: float = 2.0
    limit_per_class: int | None = None  # small subsets for tests / quick runs
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    calib_accuracy: float = 0.0
    test_accuracy: float = 0.0
    seconds: float = 0.0


@dataclass
class Splits:
    train: ClipFeatures
    calib: ClipFeatures
    test: ClipFeatures
    labels: list[str]
    normalization: Normalization


def prepare_splits(dataset: Dataset, frontend: Frontend, limit_per_class: int | None = None) -> Splits:
    feats = {
        name: clip_features(dataset.split(name, limit_per_class), frontend, desc=f"features ({name})")
        for name in ("train", "calib", "test")
    }
    seg = frontend.config.segment_frames
    train = feats["train"]
    norm = Normalization.fit(train.gather(train.windows(seg, seg), seg))
    return Splits(feats["train"], feats["calib"], feats["test"], list(dataset.labels), norm)


# ----------------------------------------------------------------------------------- augmentation
def mask_(x: torch.Tensor, n: int, max_width: int, dim: int, gen: torch.Generator) -> None:
    """SpecAugment masks in place on normalised features (0 = the training mean)."""
    size = x.shape[dim]
    for _ in range(n):
        widths = torch.randint(0, max_width + 1, (x.shape[0],), generator=gen)
        starts = (torch.rand(x.shape[0], generator=gen) * (size - widths + 1)).long()
        pos = torch.arange(size)
        m = (pos[None] >= starts[:, None]) & (pos[None] < (starts + widths)[:, None])  # (B, size)
        shape = [x.shape[0], 1, 1, 1]
        shape[dim] = size
        x.masked_fill_(m.view(shape), 0.0)


def freq_mixstyle(x: torch.Tensor, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """Freq-MixStyle (CP-JKU): mix per-band statistics between examples to simulate other devices."""
    mu = x.mean(dim=(1, 2), keepdim=True)
    sig = (x.var(dim=(1, 2), keepdim=True) + 1e-6).sqrt()
    normed = (x - mu) / sig
    lam = torch.distributions.Beta(alpha, alpha).sample((x.shape[0], 1, 1, 1))
    perm = torch.randperm(x.shape[0], generator=gen)
    return normed * (lam * sig + (1 - lam) * sig[perm]) + lam * mu + (1 - lam) * mu[perm]


# ------------------------------------------------------------------------------------------ loop
def lr_lambda(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress_, 1.0)))


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


def train(
    cfg: TrainConfig,
    out_dir: Path,
    dataset: Dataset | None = None,
    frontend_config: FrontendConfig | None = None,
    log: Any = print,
) -> TrainResult:
    """Train ``cfg.model``; write ``out_dir/<model>.safetensors`` (+ sidecar, history, curve PNG)."""
    start = time.time()
    torch.set_num_threads(cfg.threads)
    name = resolve_name(cfg.model)
    dataset = dataset or Dataset.load()
    frontend = Frontend(frontend_config or FrontendConfig())
    fe = frontend.config
    splits = prepare_splits(dataset, frontend, cfg.limit_per_class)
    model_cfg = config_for(name, n_classes=len(splits.labels), in_channels=fe.channels)
    seg = fe.segment_frames
    grid = splits.train.windows(seg, cfg.window_stride)

    teacher_logits = None
    teacher_info: dict[str, Any] | None = None
    if cfg.teacher:
        teacher = resolve_teacher(cfg, out_dir, dataset, fe, log)
        teacher_logits = cached_teacher_logits(teacher, splits, grid, seg)
        teacher_info = {
            "name": teacher.name,
            "file": teacher.path.name if teacher.path else None,
            "sha256": teacher.meta.get("weights_sha256"),
            "test_accuracy": teacher.meta.get("metrics", {}).get("test_accuracy"),
            "kd_lambda": cfg.kd_lambda,
            "kd_temperature": cfg.kd_temperature,
        }

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = min(len(grid), cfg.windows_per_clip * len(splits.train.targets))
    steps = max(1, per_epoch // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, cfg.warmup_epochs * steps, cfg.epochs * steps)
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / f"{name}.safetensors"
    history: list[dict[str, float]] = []
    best = (-1.0, 0)
    best_state: dict[str, torch.Tensor] | None = None
    with progress_bar() as bar:
        task = bar.add_task(f"train {name}", total=cfg.epochs * steps, info="")
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = rng.permutation(len(grid))[: steps * cfg.batch_size].reshape(steps, cfg.batch_size)
            tot_loss = tot_correct = tot_n = 0.0
            for rows in order:
                x = torch.from_numpy(splits.normalization.apply(splits.train.gather(grid[rows], seg)))
                y = torch.from_numpy(splits.train.targets[grid[rows, 0]])
                t = None if teacher_logits is None else torch.from_numpy(teacher_logits[rows])
                loss, logits = train_step(model, x, y, t, cfg, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot_loss += loss.item() * len(y)
                tot_correct += (logits.argmax(1) == y).sum().item()
                tot_n += len(y)
                bar.update(task, advance=1, info=f"epoch {epoch} loss {tot_loss / tot_n:.3f}")
            calib_acc = accuracy(model, splits.calib, splits.normalization, seg, cfg.eval_stride)
            row = {
                "epoch": epoch,
                "loss": tot_loss / tot_n,
                "train_accuracy": tot_correct / tot_n,
                "calib_accuracy": calib_acc,
                "lr": sched.get_last_lr()[0],
                "seconds": time.time() - start,
            }
            history.append(row)
            log(
                f"epoch {epoch:3d}/{cfg.epochs}  loss {row['loss']:.4f}  train acc {row['train_accuracy']:.3f}"
                f"  fold-4 acc {calib_acc:.3f}"
            )
            if calib_acc > best[0]:
                best = (calib_acc, epoch)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    test_acc = accuracy(model, splits.test, splits.normalization, seg, cfg.eval_stride)
    seconds = time.time() - start
    meta = {
        "metrics": {
            "calib_accuracy": best[0],
            "test_accuracy": test_acc,
            "best_epoch": best[1],
            "eval": f"clip level (mean of 1-s window logits, stride {cfg.eval_stride} frames); "
            "calib = fold 4, test = fold 5",
        },
        "training": {**cfg.to_dict(), "seconds": round(seconds, 1), "teacher_info": teacher_info},
        "data": {"name": "ESC-50 (16 kHz)", "licence": DATA_LICENCE,
                 "train": "folds 1-3", "select": "fold 4", "test": "fold 5"},
    }
    dtype = torch.float16 if model_cfg.arch == "resnet" else torch.float32
    save_checkpoint(ckpt_path, name, model, model_cfg, fe, splits.normalization, splits.labels, meta, dtype)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_history(history, out_dir / "history.png", name)
    log(f"best fold-4 accuracy {best[0]:.3f} at epoch {best[1]}; fold-5 accuracy {test_acc:.3f}; "
        f"{seconds / 60:.1f} min -> {ckpt_path}")
    return TrainResult(ckpt_path, history, best[1], best[0], test_acc, seconds)


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher: torch.Tensor | None,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    if cfg.freq_mixstyle and torch.rand((), generator=gen).item() < cfg.freq_mixstyle:
        x = freq_mixstyle(x, 0.3, gen)
    mask_(x, cfg.time_masks, cfg.time_mask_max, 2, gen)
    mask_(x, cfg.freq_masks, cfg.freq_mask_max, 3, gen)
    perm, lam = torch.arange(len(y)), 1.0
    if cfg.mixup_alpha > 0:
        lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (), generator=gen))).beta(
            cfg.mixup_alpha, cfg.mixup_alpha))
        perm = torch.randperm(len(y), generator=gen)
        x = lam * x + (1 - lam) * x[perm]
    logits = model(x)
    ce = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    if teacher is not None:
        t = lam * teacher + (1 - lam) * teacher[perm]
        loss = cfg.kd_lambda * ce + (1 - cfg.kd_lambda) * kd_loss(logits, t, cfg.kd_temperature)
    else:
        loss = ce
    return loss + model.regularization_loss(), logits


def accuracy(model: nn.Module, feats: ClipFeatures, norm: Normalization, seg: int, stride: int) -> float:
    logits = clip_logits(model, feats, norm, seg, stride)
    return float((logits.argmax(1) == feats.targets).mean())


# --------------------------------------------------------------------------------------- teacher
def resolve_teacher(
    cfg: TrainConfig, out_dir: Path, dataset: Dataset, fe: FrontendConfig, log: Any
) -> Checkpoint:
    """A checkpoint path, the shipped ResNet, or (none shipped) a ResNet trained now with this recipe."""
    from .pretrained import pretrained_path

    if cfg.teacher != "resnet":
        return load_checkpoint(cfg.teacher, expect_frontend=fe)
    shipped = pretrained_path("resnet")
    if shipped.is_file() and cfg.limit_per_class is None:
        return load_checkpoint(shipped, expect_frontend=fe)
    log("no shipped ResNet teacher for this setting: training one with the same recipe first")
    teacher_cfg = replace(cfg, model="resnet", teacher=None)
    result = train(teacher_cfg, Path(out_dir) / "teacher", dataset, fe, log)
    return load_checkpoint(result.checkpoint, expect_frontend=fe)


def cached_teacher_logits(teacher: Checkpoint, splits: Splits, grid: np.ndarray, seg: int) -> np.ndarray:
    """Teacher logits for every training window, computed once per (teacher, windows) and cached."""
    import hashlib

    key = hashlib.sha256(
        (sha256_file(teacher.path) if teacher.path else teacher.name).encode() + grid.tobytes()
        + splits.train.targets.tobytes()
    ).hexdigest()[:16]
    path = default_cache_dir() / f"teacher-{key}.npy"
    if path.is_file():
        return np.load(path)
    out = []
    model = teacher.model.eval()
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task("teacher logits", total=len(grid), info="")
        for i in range(0, len(grid), 256):
            rows = grid[i : i + 256]
            x = torch.from_numpy(teacher.normalization.apply(splits.train.gather(rows, seg)))
            out.append(model(x).numpy())
            bar.advance(task, len(rows))
    logits = np.concatenate(out).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # one per process: runs may share a cache
    np.save(tmp, logits)
    tmp.replace(path)
    return logits


def plot_history(history: list[dict[str, float]], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(epochs, [h["loss"] for h in history])
    ax[0].set(xlabel="epoch", ylabel="training loss", title=name)
    ax[1].plot(epochs, [h["train_accuracy"] for h in history], label="train (mixed)")
    ax[1].plot(epochs, [h["calib_accuracy"] for h in history], label="fold 4 (clip)")
    ax[1].set(xlabel="epoch", ylabel="accuracy")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["TrainConfig", "TrainResult", "train", "ModelConfig"]
