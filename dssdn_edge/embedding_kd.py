"""Feature distillation: a projection of the student's pooled features onto the teacher's embedding.

The logits carry what the teacher's head learnt on three folds; its 384-d embedding carries what AudioSet taught
it, independent of any head (so the main teacher file's embeddings serve runs on any folds). A linear projection
of the features the student's classifier reads, trained with the student and thrown away after training (the
shipped model is unchanged), is pulled towards the teacher's standardised embedding of the same window (the
same mix of two embeddings for a mixed input) by a cosine distance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import Clip, ClipFeatures
from .errors import DssdnError
from .frontend import FrontendConfig
from .teacher import TeacherTable, align_rows, read_teacher_npz


def load_teacher_embeddings(path: Path, clips: list[Clip], feats: ClipFeatures, fe: FrontendConfig, root: Path,
                            stride: int) -> TeacherTable:
    """The ``embedding`` array of a teacher file on the training windows, standardised per dimension."""
    data = read_teacher_npz(Path(path), fe)
    if "embedding" not in data:
        raise DssdnError(f"{path}: teacher file has no embedding array")
    emb = np.asarray(data["embedding"], np.float32)
    if emb.ndim != 2 or len(emb) != len(data["filename"]):
        raise DssdnError(f"{path}: embedding must have one row per window")
    emb = (emb - emb.mean(0)) / (emb.std(0) + 1e-6)
    table, info = align_rows(Path(path), data, emb, clips, feats, fe, root, stride)
    return TeacherTable(table, stride, {**info, "array": "embedding", "dim": int(emb.shape[1])})


class EmbeddingDistiller(nn.Module):
    """The projection head, and a hook that keeps the pooled features the model's head receives."""

    def __init__(self, model: nn.Module, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(model.head.fc1.in_features, dim)
        self.pooled: torch.Tensor | None = None
        model.head.register_forward_pre_hook(self._keep)

    def _keep(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.pooled = args[0]

    def loss(self, target: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if self.pooled is None:
            raise RuntimeError("the model has not run since the distiller was attached")
        mixed = lam[:, None] * target + (1 - lam[:, None]) * target[perm]
        return (1 - F.cosine_similarity(self.proj(self.pooled), mixed, dim=1)).mean()
