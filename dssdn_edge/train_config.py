"""The training options of one run: the dataclass stored in the run folder and in the checkpoint sidecar.

Kept apart from the loop (``train``) and its pieces (``train_steps``) so that both, the CLI and the model
card tool read one definition without importing the training machinery.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .configs import known_fields
from .errors import DssdnError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's result; stored in the run folder and the checkpoint sidecar."""

    model: str = "dssdn-small"
    epochs: int = 400  # one epoch = ``windows_per_clip`` random 1-s crops of every training clip
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-2
    warmup_epochs: int = 10
    windows_per_clip: int = 1
    window_stride: int = 10  # grid of candidate training windows (frames); the teacher file's grid
    shift_frames: int = 5  # random time shift of a crop around its grid position (± frames)
    gain_db: float = 6.0  # random level change ± dB
    mixup_alpha: float = 0.3  # Beta(α, α) mixing on every batch; 0 disables
    time_masks: int = 1
    time_mask_max: int = 5  # frames
    freq_masks: int = 1
    freq_mask_max: int = 12  # bands
    freq_mixstyle: float = 0.0  # probability per batch; 0 disables
    filter_aug_db: float = 0.0  # random smooth equaliser along the mel axis, ± dB; 0 disables
    dropout: float | None = None  # before the classifier; None: the size's default
    batchnorm: str = "global"  # data-parallel: statistics over the global batch, or "local" (per rank, faster)
    ema_decay: float = 0.999  # per step; 0 disables
    eval_every: int = 5  # epochs between evaluations on the val split
    eval_stride: int = 25  # window stride for clip-level evaluation (frames)
    teacher: str | None = None  # "resnet" (shipped) or a checkpoint path
    teacher_logits: str | None = None  # a teacher-outputs .npz (dssdn_edge.teacher)
    kd_lambda: float = 0.1  # weight of the label loss; 1 - λ goes to the teacher
    kd_temperature: float = 2.0
    teacher_embedding: str | None = None  # a teacher .npz with ``embedding``: feature distillation (embedding_kd)
    embed_lambda: float = 1.0  # weight of the embedding loss
    train_folds: tuple[int, ...] | None = None  # ESC-50: folds to train on (default 1, 2, 3)
    val_fold: int | None = 4  # ESC-50: fold for evaluation during training (None: no val)
    test_fold: int | None = 5
    init: str | None = None  # fine-tune: a shipped model name or a checkpoint path
    freeze_epochs: int = 0  # fine-tune: train only the head for the first epochs
    renormalize: bool = False  # fine-tune: refit normalisation on the new data
    limit_per_class: int | None = None  # small subsets for tests / quick runs
    seed: int = 0
    threads: int = 1
    channels_last: bool = True
    checkpoint_minutes: float = 3.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = known_fields(cls, data, DssdnError, "training options")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
