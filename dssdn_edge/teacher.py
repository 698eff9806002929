"""Teacher outputs for distillation: per-window logits from a file, or computed once from a checkpoint.

The file format (``.npz``) is the interface, so any teacher can be used without its code entering the
project (the AudioSet teacher in ../shared/data/esc50_16k/teacher/ is one):

========================  ==============================================================================
``filename``  (N,) str    clip path relative to the dataset root, as in metadata.csv / the CSV
``start_frame`` (N,) int  first frame of the 1-s window on the front end's frame grid
``logits`` (N, K) float   the teacher's class logits for that window, classes in the dataset's order
``labels`` (K,) str       optional: the class names; checked against the dataset
``sample_rate``, ``hop_length``, ``segment_frames``: optional scalars naming the grid; without them the
file is taken to be on the project's default grid (16 kHz, hop 320, 51-frame windows)
========================  ==============================================================================

Every training window must have a row: a file that misses windows, has another number of classes, other
labels, or another grid is refused with one line that says which.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import sha256_file
from .data import Clip, ClipFeatures
from .errors import DssdnError
from .frontend import FrontendConfig, Normalization
from .paths import regular_file

DEFAULT_GRID = {"sample_rate": 16000, "hop_length": 320, "segment_frames": 51}


@dataclass
class TeacherTable:
    """Teacher logits for training windows: ``logits[clip, start // stride]`` (NaN where there is none)."""

    logits: np.ndarray  # (clips, grid positions, classes) float32
    stride: int
    info: dict[str, Any]

    def lookup(self, index: np.ndarray) -> np.ndarray:
        """Logits of the windows named by (clip, start) rows; starts are on the grid."""
        return self.logits[index[:, 0], index[:, 1] // self.stride]


def _rel_name(clip: Clip, root: Path) -> str:
    try:
        return clip.path.relative_to(root).as_posix()
    except ValueError:
        return clip.path.name


def load_teacher_file(
    path: Path,
    clips: list[Clip],
    feats: ClipFeatures,
    labels: list[str],
    fe: FrontendConfig,
    root: Path,
    stride: int,
) -> TeacherTable:
    """Read a teacher-logits file and align it to the training windows (every one must be present)."""
    path = Path(path)
    regular_file(path, "teacher logits file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # np.load would call anything else "pickled data", which it is not
        raise DssdnError(f"{path}: not a .npz teacher file (an .npz is a zip archive of arrays; this file is "
                         f"{'empty' if not magic else 'something else'})")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DssdnError(f"{path}: not a readable .npz teacher file ({exc})") from None
    missing = {"filename", "start_frame", "logits"} - set(data)
    if missing:
        raise DssdnError(f"{path}: teacher file lacks {', '.join(sorted(missing))}")
    logits = np.asarray(data["logits"], np.float32)
    names, starts = data["filename"].astype(str), data["start_frame"].astype(np.int64)
    if logits.ndim != 2 or len(logits) != len(names) or len(starts) != len(names):
        raise DssdnError(f"{path}: filename, start_frame and logits must have one row per window")
    if logits.shape[1] != len(labels):
        raise DssdnError(f"{path}: teacher has {logits.shape[1]} classes, the dataset {len(labels)}")
    if "labels" in data and [str(s) for s in data["labels"]] != list(labels):
        raise DssdnError(f"{path}: teacher classes differ from the dataset's (names or order)")
    if not np.isfinite(logits).all():
        raise DssdnError(f"{path}: teacher logits contain NaN/Inf")
    grid = {k: int(data[k]) if k in data else v for k, v in DEFAULT_GRID.items()}
    ours = {"sample_rate": fe.sample_rate, "hop_length": fe.hop_length, "segment_frames": fe.segment_frames}
    if grid != ours:
        diff = ", ".join(f"{k} {grid[k]} (teacher) vs {ours[k]} (front end)" for k in grid if grid[k] != ours[k])
        raise DssdnError(f"{path}: teacher windows are on another front end's grid: {diff}")

    row = {(n, int(s)): i for i, (n, s) in enumerate(zip(names, starts, strict=True))}
    seg = fe.segment_frames
    windows = feats.windows(seg, stride, keep_silent_clips=False)
    n_grid = int(feats.lengths.max() - seg) // stride + 1
    table = np.full((len(clips), max(n_grid, 1), logits.shape[1]), np.nan, np.float32)
    absent = []
    rel = [_rel_name(c, root) for c in clips]
    for clip, start in windows:
        i = row.get((rel[clip], int(start)))
        if i is None:
            absent.append((rel[clip], int(start)))
        else:
            table[clip, start // stride] = logits[i]
    if absent:
        name, start = absent[0]
        raise DssdnError(f"{path}: no teacher logits for {len(absent)} of {len(windows)} training windows "
                         f"(first: {name} at frame {start})")
    used = np.isin(np.arange(len(names)), [row[(rel[c], int(s))] for c, s in windows])
    agree = clip_accuracy(table, feats.targets)
    info = {
        "kind": "file",
        "file": path.name,
        "sha256": sha256_file(path),
        "windows": int(len(windows)),
        "rows_in_file": int(len(names)),
        "rows_used": int(used.sum()),
        "train_clip_accuracy": agree,
    }
    return TeacherTable(table, stride, info)


def clip_accuracy(table: np.ndarray, targets: np.ndarray) -> float:
    """Accuracy of the teacher's mean window logits per clip (on the clips it has windows for)."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(table, axis=1)
    ok = np.isfinite(mean).all(axis=1)
    return float((mean[ok].argmax(1) == targets[ok]).mean()) if ok.any() else float("nan")


def teacher_from_checkpoint(
    model: torch.nn.Module, norm: Normalization, feats: ClipFeatures, fe: FrontendConfig, stride: int,
    info: dict[str, Any], batch: int = 256,
) -> TeacherTable:
    """Run a teacher model (e.g. the shipped ResNet) once over every training window."""
    from .progress import progress_bar

    seg = fe.segment_frames
    windows = feats.windows(seg, stride, keep_silent_clips=False)
    n_grid = int(feats.lengths.max() - seg) // stride + 1
    out = []
    model.eval()
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task("teacher logits", total=len(windows), info="")
        for i in range(0, len(windows), batch):
            rows = windows[i : i + batch]
            out.append(model(torch.from_numpy(norm.apply(feats.gather(rows, seg)))).float().numpy())
            bar.advance(task, len(rows))
    logits = np.concatenate(out)
    table = np.full((len(feats), max(n_grid, 1), logits.shape[1]), np.nan, np.float32)
    table[windows[:, 0], windows[:, 1] // stride] = logits
    return TeacherTable(table, stride, {**info, "kind": "checkpoint", "windows": int(len(windows)),
                                        "train_clip_accuracy": clip_accuracy(table, feats.targets)})
