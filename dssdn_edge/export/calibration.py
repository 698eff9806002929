"""Calibration for int8 without audio: the shipped statistics, and what decides which source is used.

The calibration windows themselves (the user's recordings, the training split of the user's own data, or
ESC-50 fold 4) are cut in one pass by ``sources.py``. When none of them is here, export uses the shipped
statistics ``models/<name>.calib.json``: the per-tensor min/max, equalisation gains and bias corrections
that fold 4 produced, stored with the weights so that a fresh clone with no data can still export. They are
keyed by the weights' SHA-256 and by the fingerprints of the fp32 graphs they were measured on, so stale
statistics (other weights, changed export code) are refused with a message that says how to regenerate them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint
from ..data import Dataset, default_data_root
from ..errors import DssdnError, ExportError
from ..fileio import write_text

MIN_WINDOWS = 32  # fewer windows than this cannot give trustworthy activation ranges
MAX_WINDOWS = 2048  # all of fold 4 (1528 non-overlapping windows): the bias corrections are means over them
STATS_FORMAT = 3  # 3: + bias corrections of the int8 graph; 2: ONNX ranges on the equalised graph


def dataset_root_available(root: Path | None = None) -> bool:
    root = Path(root) if root else default_data_root()
    return (root / "metadata.csv").is_file()


def spread(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced indices of range(n): deterministic, covers every clip."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


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
