"""The windows export measures on, in one pass: a checkpoint's calibration or evaluation source → normalised
model inputs, each with its clip and first frame, and the clips' classes.

Why one pass: calibration and evaluation used to walk dataset → split → features → windows → spread back and
forth between modules; here ``resolve`` names the source once, and ``cut`` reads its clips' features once
and cuts the windows by the role's rule (``source_windows`` does both; export calls it once per source).

Calibration sources, in order: ``--calib DIR`` (the user's recordings, every file soundfile reads, windows at
half-window stride), the training split of the user's own dataset the model was trained on, fold 4 of ESC-50
from ../shared (the split the project reserves for calibration and model selection), else the shipped
statistics ``models/<name>.calib.json`` (no windows; ``calibration.py``). Evaluation sources: ``--eval DIR``,
the test (or val) split of the user's own dataset, ESC-50 fold 5 for a model with ESC-50's labels, else none.
Windows are cut by the one window cutter (``dssdn_edge.windows``); classes are matched by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio_stream import file_windows
from ..checkpoint import Checkpoint
from ..data import Dataset, clip_features
from ..errors import AudioError, DssdnError, ExportError
from ..evaluate import label_remap
from ..frontend import Frontend
from ..progress import progress
from ..userdata import AUDIO_EXTENSIONS
from . import calibration as calib_mod
from .calibration import MAX_WINDOWS, MIN_WINDOWS, spread, warn

EVAL_STRIDE = 25  # frames between evaluation windows, as dssdn_edge.evaluate.clip_logits in training
ROLES = ("calibration", "evaluation")


@dataclass
class Source:
    """Where a role's windows come from (``resolve``); ``cut`` reads it."""

    role: str  # calibration | evaluation
    kind: str  # fold4 | dataset | audio | shipped (calibration); evaluation
    dataset: Dataset | None = None
    split: str = ""
    path: Path | None = None  # the audio folder, or the shipped statistics
    default_data: bool = False  # the dataset is ../shared's ESC-50 (named so in the description)


@dataclass
class WindowSet:
    """Normalised model inputs (N, C, T, F) float32 with the clip and first frame of each (``index``), the
    class of each clip (model label index; -1 for unlabelled recordings), the clips, and their description."""

    windows: np.ndarray
    index: np.ndarray
    targets: np.ndarray
    clips: tuple
    source: str
    kind: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def clip_of_window(self) -> np.ndarray:
        return self.index[:, 0]


def source_windows(ckpt: Checkpoint, role: str, folder: str | Path | None = None) -> WindowSet | None:
    """The windows of ``ckpt``'s ``role`` source ("calibration" or "evaluation"; ``folder`` is ``--calib`` /
    ``--eval``), or None when there is nothing to evaluate on."""
    source = resolve(ckpt, role, folder)
    return None if source is None else cut(ckpt, source)


def resolve(ckpt: Checkpoint, role: str, folder: str | Path | None = None) -> Source | None:
    if role not in ROLES:
        raise ExportError(f"unknown window source role {role!r}; choose from {', '.join(ROLES)}")
    if role == "calibration":
        return _calibration_source(ckpt, folder)
    try:
        return _evaluation_source(ckpt, folder)
    except DssdnError as exc:
        raise ExportError(f"evaluation data: {exc}") from None


def _calibration_source(ckpt: Checkpoint, folder: str | Path | None) -> Source:
    if folder is not None:
        return Source("calibration", "audio", path=Path(folder))
    own = calib_mod.training_dataset(ckpt)
    if own is not None:
        return Source("calibration", "dataset", own, "train")
    if calib_mod.dataset_root_available():
        try:
            return fold4_source()
        except DssdnError as exc:
            raise ExportError(f"calibration on fold 4 failed: {exc}") from None
    path = calib_mod.stats_path(ckpt)
    if not path.is_file():
        raise ExportError(f"{ckpt.path}: no calibration audio found (the training data is not where the "
                          "checkpoint says, ../shared/data is missing, no shipped statistics): pass --calib DIR")
    calib_mod.load_stats(path, ckpt)  # fail early and clearly
    return Source("calibration", "shipped", path=path)


def fold4_source(root: Path | None = None) -> Source:
    """ESC-50 fold 4 (its "val" split): what the shipped statistics are measured on."""
    return Source("calibration", "fold4", Dataset.load(root), "val")


def _evaluation_source(ckpt: Checkpoint, folder: str | Path | None) -> Source | None:
    if folder is not None:
        dataset, default_data = Dataset.load(Path(folder)), False
    else:
        dataset, default_data = calib_mod.training_dataset(ckpt), False
        if dataset is None:
            if not calib_mod.dataset_root_available():
                return None
            dataset, default_data = Dataset.load(), True
            if list(dataset.labels) != list(ckpt.labels):
                return None  # a model of other classes is not scored on ESC-50 by default
    split = "test" if dataset.split("test") else "val"
    return Source("evaluation", "evaluation", dataset, split, default_data=default_data)


# -------------------------------------------------------------------------------------------- cut
def cut(ckpt: Checkpoint, source: Source) -> WindowSet:
    """Read the source's clips once and cut their windows by the role's rule."""
    if source.kind == "shipped":
        rel = source.path.name if source.path.parent.name != "models" else f"models/{source.path.name}"
        return WindowSet(np.zeros((0,), np.float32), np.zeros((0, 2), np.int64), np.zeros((0,), np.int64), (),
                         f"shipped statistics {rel}", "shipped", {"path": str(source.path)})
    if source.kind == "audio":
        return _audio_windows(ckpt, source.path)
    if source.kind == "evaluation":
        try:
            return _evaluation_windows(ckpt, source)
        except DssdnError as exc:
            raise ExportError(f"evaluation data: {exc}") from None
    if source.kind == "fold4":
        try:
            return _fold4_windows(ckpt, source.dataset)
        except DssdnError as exc:
            raise ExportError(f"calibration on fold 4 failed: {exc}") from None
    return _dataset_windows(ckpt, source.dataset, source.split)


def fold4_windows(ckpt: Checkpoint, root: Path | None = None) -> WindowSet:
    """The fold-4 calibration windows whatever the checkpoint's own data (``save_calibration``)."""
    return cut(ckpt, fold4_source(root))


def _gathered(ckpt: Checkpoint, feats: Any, index: np.ndarray) -> np.ndarray:
    return ckpt.normalization.apply(feats.gather(index, ckpt.frontend_config.segment_frames))


def _fold4_windows(ckpt: Checkpoint, dataset: Dataset, limit: int = MAX_WINDOWS) -> WindowSet:
    """Non-overlapping 1-s windows of fold 4, silent windows dropped, at most ``limit`` spread evenly."""
    clips = dataset.split("val")
    if not clips:
        raise ExportError(f"{dataset.root / 'metadata.csv'}: no clips with split 'calib' (fold 4)")
    seg = ckpt.frontend_config.segment_frames
    feats = clip_features(clips, Frontend(ckpt.frontend_config), desc="calibration features (fold 4)")
    index = feats.windows(seg, seg)
    index = index[spread(len(index), limit)]
    windows = _gathered(ckpt, feats, index)
    return WindowSet(windows, index, feats.targets, tuple(clips), f"fold 4 of ../shared ({len(windows)} windows)",
                     "fold4", {"root": str(dataset.root), "clips": len(clips), "windows": len(windows)})


def _dataset_windows(ckpt: Checkpoint, dataset: Dataset, split: str, limit: int = MAX_WINDOWS) -> WindowSet:
    """Non-overlapping 1-s windows of one split of a user's dataset (its training audio by default)."""
    clips = dataset.split(split)
    seg = ckpt.frontend_config.segment_frames
    feats = clip_features(clips, Frontend(ckpt.frontend_config), desc=f"calibration features ({split} split)")
    index = feats.windows(seg, seg, keep_silent_clips=False)
    if len(index) < MIN_WINDOWS:  # few clips: overlapping windows rather than too few
        index = feats.windows(seg, max(1, seg // 4), keep_silent_clips=False)
    if len(index) < MIN_WINDOWS:
        raise ExportError(f"{dataset.root}: only {len(index)} usable 1-s windows in its {split} split "
                          f"(need {MIN_WINDOWS}); pass --calib DIR with more audio")
    index = index[spread(len(index), limit)]
    return WindowSet(_gathered(ckpt, feats, index), index, feats.targets, tuple(clips),
                     f"{split} split of {dataset.root} ({len(index)} windows from {len(clips)} clips)", "dataset",
                     {"root": str(dataset.root), "clips": len(clips), "windows": len(index)})


def _evaluation_windows(ckpt: Checkpoint, source: Source) -> WindowSet:
    """Every window at ``EVAL_STRIDE`` of the test (or val) clips, classes in the model's label order."""
    dataset, split = source.dataset, source.split
    clips = dataset.split(split)
    if not clips:
        raise ExportError(f"{dataset.root}: no clips in its test (or val) split to measure accuracy on")
    remap = label_remap(dataset, list(ckpt.labels))
    feats = clip_features(clips, Frontend(ckpt.frontend_config), desc=f"evaluation features ({split})")
    index = feats.windows(ckpt.frontend_config.segment_frames, EVAL_STRIDE)
    what = "fold 5" if dataset.kind == "esc50" and split == "test" else f"the {split} split"
    where = "../shared" if source.default_data and dataset.kind == "esc50" else str(dataset.root)
    return WindowSet(_gathered(ckpt, feats, index), index, remap[feats.targets], tuple(clips),
                     f"{what} of {where} ({len(clips)} clips, {len(index)} windows)", "evaluation",
                     {"root": str(dataset.root), "split": split, "clips": len(clips), "windows": len(index)})


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _audio_windows(ckpt: Checkpoint, folder: Path, limit: int = MAX_WINDOWS) -> WindowSet:
    """1-s windows (stride half a window) of every readable audio file under ``folder``, silent ones kept."""
    if not folder.exists():
        raise ExportError(f"{folder}: calibration folder not found")
    if not folder.is_dir():
        raise ExportError(f"{folder}: calibration path is not a folder")
    try:
        files = audio_files(folder)
    except OSError as exc:
        raise ExportError(f"{folder}: cannot list calibration folder ({exc.strerror})") from None
    if not files:
        raise ExportError(f"{folder}: calibration folder is empty (put audio files soundfile can read in it)")
    frontend = Frontend(ckpt.frontend_config)
    stride = max(1, ckpt.frontend_config.segment_frames // 2)
    not_audio = [p for p in files if p.suffix.lower() not in AUDIO_EXTENSIONS]
    files = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    if not files:
        raise ExportError(f"{folder}: no audio files in the calibration folder ({len(not_audio)} other files)")
    parts, rows, used, skipped = [], [], [], []
    for path in progress(files, "calibration audio"):
        try:
            batches = list(file_windows(path, frontend, stride, allow_silent=True))
        except AudioError as exc:
            skipped.append(str(exc))
            continue
        parts += [b.windows for b in batches]
        rows += [np.stack([np.full(len(b.starts), len(used)), b.starts], axis=1) for b in batches]
        used.append(path)
    for line in skipped[:5]:
        warn(f"calibration: skipped {line}")
    if len(skipped) > 5:
        warn(f"calibration: skipped {len(skipped) - 5} more unreadable files")
    if not used:
        raise ExportError(f"{folder}: no readable audio among {len(files)} files (first: {skipped[0]})")
    windows = np.concatenate(parts) if parts else np.zeros((0,))
    if len(windows) < MIN_WINDOWS:
        raise ExportError(
            f"{folder}: only {len(windows)} usable 1-s windows in {len(used)} audio files "
            f"(need at least {MIN_WINDOWS}; add more or longer non-silent recordings)"
        )
    keep = spread(len(windows), limit)
    windows, index = ckpt.normalization.apply(windows[keep]), np.concatenate(rows).astype(np.int64)[keep]
    return WindowSet(
        windows, index, np.full(len(used), -1, np.int64), tuple(used),
        f"user audio {folder} ({len(windows)} windows from {len(used)} files)", "audio",
        {"folder": str(folder), "files": len(used), "skipped_files": skipped, "not_audio_files": len(not_audio),
         "windows": len(windows)},
    )
