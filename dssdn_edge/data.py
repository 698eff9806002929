"""Labelled clips as cached features and 1-s windows: what training, evaluation and calibration read.

Features are computed once per clip with the project's own front end, so every number a model learns
from is one a device computes. Clips may have any length; they are stored end to end (a ragged array)
and a model sees 1-s windows cut from them by the one window cutter of the project (``windows.window_starts``),
which ``predict`` uses too. Windows that are entirely digital silence (ESC-50 pads short sounds with
zeros) are never training targets nor scored.

The on-disk cache is keyed by what decides its content: the front-end config and, for every clip, the
resolved path, size and modification time of its file. Another folder with the same file names, or a file
replaced in place, is a cache miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import load_audio
from .errors import DssdnError
from .fileio import temp_name
from .frontend import Frontend, FrontendConfig
from .progress import progress
from .userdata import REPO_ROOT, SPLITS, Clip, Dataset, default_data_root
from .windows import pad_to_window, silent_frames, window_starts

# Clip, Dataset and the data root live in userdata (with the loaders that make them); data is their public door
__all__ = ["SPLITS", "Clip", "ClipFeatures", "Dataset", "clip_features", "default_cache_dir", "default_data_root"]

FEATURES_VERSION = 2  # bump when the cached arrays change meaning


def default_cache_dir() -> Path:
    env = os.environ.get("DSSDN_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache"


@dataclass
class ClipFeatures:
    """Unnormalised features of many clips of any length, stored end to end.

    ``frames`` is (total frames, channels, bands); clip i owns rows ``offsets[i] : offsets[i] + lengths[i]``.
    """

    frames: np.ndarray
    silent: np.ndarray  # (total frames,) bool: the frame's analysis window held only zeros
    offsets: np.ndarray  # (clips,) int64
    lengths: np.ndarray  # (clips,) int64
    targets: np.ndarray  # (clips,) int64

    def __len__(self) -> int:
        return len(self.targets)

    def clip(self, i: int) -> np.ndarray:
        """(channels, frames, bands) of clip ``i``."""
        o, n = self.offsets[i], self.lengths[i]
        return self.frames[o : o + n].transpose(1, 0, 2)

    def windows(self, seg_frames: int, stride: int, keep_silent_clips: bool = True) -> np.ndarray:
        """(k, 2) array of (clip, start) for every non-silent window; a clip whose windows are all silent
        keeps its first one when ``keep_silent_clips`` (so that it is still scored)."""
        out: list[tuple[int, int]] = []
        for i, (o, n) in enumerate(zip(self.offsets, self.lengths, strict=True)):
            starts = window_starts(self.silent[o : o + n], seg_frames, stride)
            if not starts and keep_silent_clips:
                starts = [0]
            out.extend((i, s) for s in starts)
        return np.asarray(out, dtype=np.int64).reshape(-1, 2)

    def gather(self, index: np.ndarray, seg_frames: int) -> np.ndarray:
        """(k, channels, seg_frames, bands) windows named by (clip, start) rows."""
        rows = self.offsets[index[:, 0]][:, None] + index[:, 1:2] + np.arange(seg_frames)[None, :]
        return np.ascontiguousarray(self.frames[rows].transpose(0, 2, 1, 3))


def file_identity(path: Path) -> str:
    """What decides a file's content without reading it: resolved path, size, modification time."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def cache_key(clips: list[Clip], cfg: FrontendConfig) -> str:
    h = hashlib.sha256(f"v{FEATURES_VERSION}".encode())
    h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for c in clips:
        h.update(file_identity(c.path).encode() + b"\n")
    return h.hexdigest()[:20]


def clip_features(
    clips: list[Clip], frontend: Frontend, cache_dir: Path | None = None, desc: str = "features"
) -> ClipFeatures:
    """Features for ``clips``, from the on-disk cache when exactly these files and front end were seen."""
    cfg = frontend.config
    if not clips:
        raise DssdnError("no clips to compute features for")
    cache_dir = cache_dir or default_cache_dir()
    path = cache_dir / f"features-{cache_key(clips, cfg)}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return ClipFeatures(z["frames"], z["silent"], z["offsets"], z["lengths"], z["targets"])
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is recomputed, never trusted
    frames, silent = [], []
    for clip in progress(clips, desc):
        audio = pad_to_window(load_audio(clip.path, cfg.sample_rate, min_samples=cfg.hop_length), cfg)
        frames.append(frontend.features(audio).transpose(1, 0, 2))
        silent.append(silent_frames(audio, cfg))
    lengths = np.asarray([len(f) for f in frames], np.int64)
    out = ClipFeatures(
        np.concatenate(frames),
        np.concatenate(silent),
        np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        lengths,
        np.asarray([c.target for c in clips], np.int64),
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        np.savez(tmp, frames=out.frames, silent=out.silent, offsets=out.offsets, lengths=out.lengths,
                 targets=out.targets)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return out
