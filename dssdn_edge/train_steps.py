"""The pieces one training step is made of: batches, the learning-rate schedule, the distillation loss, the
weight average and the loss of one batch.

``train`` composes them into the resumable loop; ``benchmarks/train_speed.py`` times them on their own,
which is why they live apart from the loop's bookkeeping (run folder, checkpoints, data-parallel ranks).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .augment import filter_augment_, freq_mixstyle, mask_, mix, random_gain_
from .data import ClipFeatures
from .embedding_kd import EmbeddingDistiller
from .evaluate import clip_logits
from .frontend import Normalization
from .teacher import TeacherTable
from .train_config import TrainConfig


def lr_lambda(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress_, 1.0)))


def kd_loss(student: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(p ‖ softmax(s/T)) for teacher probabilities ``p`` already at temperature T."""
    log_q = F.log_softmax(student / temperature, dim=1)
    return F.kl_div(log_q, target_probs, reduction="batchmean") * temperature**2


class EMA:
    """Exponential moving average of the weights (buffers copied), with the usual warm-up of the decay."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_p = [p for p in self.model.parameters()]
        cur_p = [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, cur_p, alpha=1 - d)
        for e, b in zip(self.model.buffers(), model.buffers(), strict=True):
            e.copy_(b)


@dataclass
class Batcher:
    """Draws each epoch's crops and turns rows of them into augmented training batches."""

    cfg: TrainConfig
    feats: ClipFeatures
    norm: Normalization
    seg: int
    log_floor: float
    teacher: TeacherTable | None
    embedding: TeacherTable | None = None

    def __post_init__(self) -> None:
        grid = self.feats.windows(self.seg, self.cfg.window_stride, keep_silent_clips=False)
        self.grid = grid
        # every clip's candidate windows; a clip that is silent throughout is not a training target
        self.by_clip = [np.flatnonzero(grid[:, 0] == i) for i in range(len(self.feats))]
        self.clips = np.asarray([i for i, rows in enumerate(self.by_clip) if len(rows)], np.int64)

    def steps_per_epoch(self) -> int:
        return max(1, len(self.clips) * self.cfg.windows_per_clip // self.cfg.batch_size)

    def epoch_plan(self, rng: np.random.Generator) -> np.ndarray:
        """(steps, batch, 3) rows of (clip, grid start, shifted start) for one epoch. A dataset with fewer
        windows per epoch than one batch fills the batch by drawing clips again."""
        clips = np.repeat(self.clips, self.cfg.windows_per_clip)
        if len(clips) < self.cfg.batch_size:
            clips = np.concatenate([clips, rng.choice(self.clips, self.cfg.batch_size - len(clips))])
        rows = np.array([self.by_clip[c][rng.integers(len(self.by_clip[c]))] for c in clips], np.int64)
        chosen = self.grid[rows]
        shift = rng.integers(-self.cfg.shift_frames, self.cfg.shift_frames + 1, len(chosen))
        max_start = self.feats.lengths[chosen[:, 0]] - self.seg
        shifted = np.clip(chosen[:, 1] + shift, 0, max_start)
        plan = np.column_stack([chosen, shifted])[rng.permutation(len(chosen))]
        steps = self.steps_per_epoch()
        return plan[: steps * self.cfg.batch_size].reshape(steps, self.cfg.batch_size, 3)

    def batch(self, rows: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = torch.from_numpy(self.feats.gather(rows[:, [0, 2]], self.seg))
        random_gain_(x, self.cfg.gain_db, self.log_floor, gen)
        filter_augment_(x, self.cfg.filter_aug_db, self.log_floor, gen)
        x = torch.from_numpy(self.norm.apply(x.numpy()))
        y = torch.from_numpy(self.feats.targets[rows[:, 0]])
        t = None if self.teacher is None else torch.from_numpy(self.teacher.lookup(rows[:, :2]))
        return x, y, t

    def embeddings(self, rows: np.ndarray) -> torch.Tensor | None:
        return None if self.embedding is None else torch.from_numpy(self.embedding.lookup(rows[:, :2]))


def train_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None, cfg: TrainConfig,
    gen: torch.Generator, distiller: EmbeddingDistiller | None = None, emb: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one batch: masks, mixup on every batch, CE on the mixed labels and KD on the mixed teacher
    (and, with a ``distiller``, the distance of the projected features to the mixed teacher embeddings)."""
    if cfg.freq_mixstyle and torch.rand((), generator=gen).item() < cfg.freq_mixstyle:
        x = freq_mixstyle(x, 0.3, gen)
    mask_(x, cfg.time_masks, cfg.time_mask_max, 2, gen)
    mask_(x, cfg.freq_masks, cfg.freq_mask_max, 3, gen)
    perm, lam = torch.arange(len(y)), torch.ones(len(y))
    if cfg.mixup_alpha > 0:
        x, perm, lam = mix(x, cfg.mixup_alpha, gen)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    logits = model(x)
    logp = F.log_softmax(logits, dim=1)
    ce = -(lam * logp.gather(1, y[:, None])[:, 0] + (1 - lam) * logp.gather(1, y[perm][:, None])[:, 0]).mean()
    if teacher is not None:
        p = F.softmax(teacher / cfg.kd_temperature, dim=1)
        p = lam[:, None] * p + (1 - lam[:, None]) * p[perm]  # the same mix of the two teachers' outputs
        loss = cfg.kd_lambda * ce + (1 - cfg.kd_lambda) * kd_loss(logits, p, cfg.kd_temperature)
    else:
        loss = ce
    if distiller is not None and emb is not None:
        loss = loss + cfg.embed_lambda * distiller.loss(emb, perm, lam)
    return loss + model.regularization_loss(), logits


def accuracy(model: nn.Module, feats: ClipFeatures, norm: Normalization, seg: int, stride: int) -> float:
    logits = clip_logits(model, feats, norm, seg, stride)
    return float((logits.argmax(1) == feats.targets).mean())


def set_trainable(model: nn.Module, head_only: bool) -> None:
    """Freeze (or unfreeze) everything but the head; frozen BatchNorms keep their running statistics."""
    for name, p in model.named_parameters():
        p.requires_grad_(not head_only or name.startswith("head."))
    if head_only:
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d) and not name.startswith("head."):
                m.eval()
