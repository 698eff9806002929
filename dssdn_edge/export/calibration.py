"""Calibration inputs for int8: real features, never random data.

Three sources, in the order ``export_model`` tries them:

1. ``--calib DIR``: the user's own recordings (every file soundfile reads, recursively), cut into 1-s
   windows through the model's own front end and normalisation; all-zero windows are dropped.
2. Fold 4 of ESC-50 (``split == "calib"``) from ../shared/data (or ``$DSSDN_DATA``) when present: the
   split the project reserves for calibration and model selection, never for reported accuracy.
3. Shipped statistics ``models/<name>.calib.json``: the per-tensor min/max that (2) produced, stored
   with the weights so that a fresh clone with no data can still export. They are keyed by the weights'
   SHA-256 and by the fingerprints of the fp32 graphs they were measured on, so stale statistics (other
   weights, changed export code) are refused with a message that says how to regenerate them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint
from ..data import Dataset, clip_features, default_data_root
from ..errors import AudioError, DssdnError, ExportError
from ..fileio import write_text
from ..frontend import Frontend

MIN_WINDOWS = 32  # fewer windows than this cannot give trustworthy activation ranges
MAX_WINDOWS = 2048  # all of fold 4 (1528 non-overlapping windows): the bias corrections are means over them
STATS_FORMAT = 3  # 3: + bias corrections of the int8 graph; 2: ONNX ranges on the equalised graph


@dataclass
class CalibrationSet:
    """Normalised model inputs (N, C, T, F) float32 and where they came from."""

    windows: np.ndarray
    source: str
    kind: str  # "fold4" | "audio" | "shipped"
    details: dict[str, Any] = field(default_factory=dict)


def dataset_root_available(root: Path | None = None) -> bool:
    root = Path(root) if root else default_data_root()
    return (root / "metadata.csv").is_file()


def spread(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced indices of range(n): deterministic, covers every clip."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def fold4_windows(ckpt: Checkpoint, root: Path | None = None, limit: int = MAX_WINDOWS) -> CalibrationSet:
    """Non-overlapping 1-s windows of fold 4, silent windows dropped, normalised with the model's stats."""
    dataset = Dataset.load(root)
    clips = dataset.split("val")
    if not clips:
        raise ExportError(f"{dataset.root / 'metadata.csv'}: no clips with split 'calib' (fold 4)")
    frontend = Frontend(ckpt.frontend_config)
    seg = ckpt.frontend_config.segment_frames
    feats = clip_features(clips, frontend, desc="calibration features (fold 4)")
    index = feats.windows(seg, seg)
    index = index[spread(len(index), limit)]
    windows = ckpt.normalization.apply(feats.gather(index, seg))
    return CalibrationSet(
        windows,
        f"fold 4 of ../shared ({len(windows)} windows)",
        "fold4",
        {"root": str(dataset.root), "clips": len(clips), "windows": len(windows)},
    )


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def audio_dir_windows(ckpt: Checkpoint, folder: str | Path, limit: int = MAX_WINDOWS) -> CalibrationSet:
    """1-s windows (stride half a window) of every readable audio file under ``folder``."""
    from ..windows import clip_windows  # one window-cutting rule for calibration and prediction

    folder = Path(folder)
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
    parts, used, skipped = [], 0, []
    from ..progress import progress
    from ..userdata import AUDIO_EXTENSIONS

    not_audio = [p for p in files if p.suffix.lower() not in AUDIO_EXTENSIONS]
    files = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    if not files:
        raise ExportError(f"{folder}: no audio files in the calibration folder ({len(not_audio)} other files)")
    for path in progress(files, "calibration audio"):
        try:
            parts.append(clip_windows(path, frontend, stride, allow_silent=True))
            used += 1
        except AudioError as exc:
            skipped.append(str(exc))
    for line in skipped[:5]:
        warn(f"calibration: skipped {line}")
    if len(skipped) > 5:
        warn(f"calibration: skipped {len(skipped) - 5} more unreadable files")
    if used == 0:
        raise ExportError(f"{folder}: no readable audio among {len(files)} files (first: {skipped[0]})")
    windows = np.concatenate(parts) if parts else np.zeros((0,))
    if len(windows) < MIN_WINDOWS:
        raise ExportError(
            f"{folder}: only {len(windows)} usable 1-s windows in {used} audio files "
            f"(need at least {MIN_WINDOWS}; add more or longer non-silent recordings)"
        )
    windows = ckpt.normalization.apply(windows[spread(len(windows), limit)])
    return CalibrationSet(
        windows,
        f"user audio {folder} ({len(windows)} windows from {used} files)",
        "audio",
        {"folder": str(folder), "files": used, "skipped_files": skipped, "not_audio_files": len(not_audio),
         "windows": len(windows)},
    )


# ------------------------------------------------------------------------------- shipped statistics
def stats_path(ckpt: Checkpoint) -> Path:
    """``models/dssdn-small.safetensors`` → ``models/dssdn-small.calib.json``."""
    if ckpt.path is None:
        raise ExportError(f"{ckpt.name}: checkpoint has no file, so it has no shipped calibration statistics")
    return ckpt.path.with_name(ckpt.path.name.removesuffix(".safetensors") + ".calib.json")


def save_stats(
    path: Path,
    ckpt: Checkpoint,
    source: str,
    tflite: dict[str, Any] | None,
    onnx: dict[str, Any] | None,
    equalization: dict[str, list[float]] | None = None,
    bias_correction: dict[str, list[float]] | None = None,
) -> Path:
    """Write the calibration statistics (no audio, no features: only per-tensor ranges, per-channel
    equalisation gains and the int8 graph's bias corrections)."""
    data = {
        "format": STATS_FORMAT,
        "name": ckpt.name,
        "weights_sha256": ckpt.meta.get("weights_sha256"),
        "source": source,
        "equalization": equalization,
        "bias_correction": bias_correction,
        "tflite": tflite,
        "onnx": onnx,
    }
    try:
        write_text(path, json.dumps(data, indent=None, sort_keys=True, separators=(",", ":")) + "\n")
    except OSError as exc:
        raise ExportError(f"{path}: cannot write calibration statistics ({exc.strerror})") from None
    return path


REGENERATE = (
    "regenerate them with `dssdn-edge export --size <size> --save-calibration` where ../shared/data "
    "exists, or pass --calib DIR with your own audio"
)


def load_stats(path: Path, ckpt: Checkpoint) -> dict[str, Any]:
    """Read shipped statistics and check they were measured for these weights."""
    if not path.is_file():
        raise ExportError(
            f"{path}: no calibration data: ../shared/data is missing and no shipped statistics exist; "
            "pass --calib DIR with your own audio"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: unreadable calibration statistics ({exc})") from None
    if data.get("format") != STATS_FORMAT:
        raise ExportError(
            f"{path}: calibration statistics format {data.get('format')!r}, this version reads "
            f"{STATS_FORMAT}; {REGENERATE}"
        )
    want = ckpt.meta.get("weights_sha256")
    if data.get("weights_sha256") != want:
        raise ExportError(
            f"{path}: statistics were measured for other weights "
            f"({str(data.get('weights_sha256'))[:12]}… != {str(want)[:12]}…); {REGENERATE}"
        )
    return data


def check_fingerprint(path: Path, section: dict[str, Any] | None, fingerprint: str, what: str) -> None:
    if section is None:
        raise ExportError(f"{path}: no {what} statistics stored; {REGENERATE}")
    if section.get("graph") != fingerprint:
        raise ExportError(
            f"{path}: {what} statistics belong to another export graph (the export code "
            f"changed since they were measured); {REGENERATE}"
        )


def training_dataset(ckpt: Checkpoint) -> Dataset | None:
    """The user's own dataset a checkpoint was trained on, when it is still where the sidecar says."""
    spec = ckpt.meta.get("data") or {}
    if spec.get("kind") not in ("folder", "csv") or not spec.get("root") or not Path(spec["root"]).exists():
        return None
    try:
        return Dataset.reload(spec)
    except DssdnError as exc:
        raise ExportError(f"{spec['root']}: the checkpoint's training data cannot be read ({exc})") from None


def dataset_windows(ckpt: Checkpoint, dataset: Dataset, split: str, limit: int = MAX_WINDOWS) -> CalibrationSet:
    """Non-overlapping 1-s windows of one split of a user's dataset (its training audio by default)."""
    clips = dataset.split(split)
    frontend = Frontend(ckpt.frontend_config)
    seg = ckpt.frontend_config.segment_frames
    feats = clip_features(clips, frontend, desc=f"calibration features ({split} split)")
    index = feats.windows(seg, seg, keep_silent_clips=False)
    if len(index) < MIN_WINDOWS:  # few clips: overlapping windows rather than too few
        index = feats.windows(seg, max(1, seg // 4), keep_silent_clips=False)
    if len(index) < MIN_WINDOWS:
        raise ExportError(f"{dataset.root}: only {len(index)} usable 1-s windows in its {split} split "
                          f"(need {MIN_WINDOWS}); pass --calib DIR with more audio")
    index = index[spread(len(index), limit)]
    return CalibrationSet(
        ckpt.normalization.apply(feats.gather(index, seg)),
        f"{split} split of {dataset.root} ({len(index)} windows from {len(clips)} clips)",
        "dataset",
        {"root": str(dataset.root), "clips": len(clips), "windows": len(index)},
    )


def choose_source(ckpt: Checkpoint, calib_dir: str | Path | None) -> CalibrationSet:
    """User audio if given, else the training audio of the user's dataset the model was trained on, else
    fold 4 if the data is here (for ESC-50 models), else the shipped statistics (no windows)."""
    if calib_dir is not None:
        return audio_dir_windows(ckpt, calib_dir)
    own = training_dataset(ckpt)
    if own is not None:
        return dataset_windows(ckpt, own, "train")
    if dataset_root_available():
        try:
            return fold4_windows(ckpt)
        except DssdnError as exc:
            raise ExportError(f"calibration on fold 4 failed: {exc}") from None
    path = stats_path(ckpt)
    if not path.is_file():
        raise ExportError(f"{ckpt.path}: no calibration audio found (the training data is not where the "
                          "checkpoint says, ../shared/data is missing, no shipped statistics): pass --calib DIR")
    load_stats(path, ckpt)  # fail early and clearly
    rel = path.name if path.parent.name != "models" else f"models/{path.name}"
    return CalibrationSet(
        np.zeros((0,), np.float32), f"shipped statistics {rel}", "shipped", {"path": str(path)}
    )
