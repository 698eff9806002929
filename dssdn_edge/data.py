"""ESC-50 (16 kHz copy in ../shared/data) as cached features and 1-s windows.

Features are computed once per clip with the project's own front end and cached on disk keyed by the
front-end config, so training, calibration and evaluation read the exact numbers a device computes.
A model sees 1-s windows (51 frames) cut from those clip-level feature sequences; windows that are
entirely digital silence (ESC-50 pads short sounds with zeros) are dropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import load_audio
from .errors import DssdnError
from .frontend import Frontend, FrontendConfig
from .progress import progress

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_LICENCE = (
    "ESC-50 (K. J. Piczak, ACM MM 2015), 16 kHz copy: CC BY-NC 3.0 as a whole, ESC-10 subset CC BY 3.0"
)


def default_data_root() -> Path:
    """``$DSSDN_DATA`` or ../shared/data/esc50_16k beside the checkout."""
    env = os.environ.get("DSSDN_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "esc50_16k"


def default_cache_dir() -> Path:
    env = os.environ.get("DSSDN_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache"


@dataclass(frozen=True)
class Clip:
    path: Path
    target: int
    label: str
    fold: int
    split: str  # train / calib / test


@dataclass(frozen=True)
class Dataset:
    root: Path
    clips: tuple[Clip, ...]
    labels: tuple[str, ...]

    @classmethod
    def load(cls, root: str | Path | None = None) -> Dataset:
        root = Path(root) if root else default_data_root()
        meta = root / "metadata.csv"
        if not meta.is_file():
            raise DssdnError(f"{meta}: dataset metadata not found (set DSSDN_DATA or pass --data)")
        with meta.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        clips = tuple(
            Clip(root / r["filename"], int(r["target"]), r["label"], int(r["fold"]), r["split"]) for r in rows
        )
        names = {c.target: c.label for c in clips}
        return cls(root, clips, tuple(names[i] for i in range(len(names))))

    def split(self, name: str, limit_per_class: int | None = None) -> list[Clip]:
        chosen = [c for c in self.clips if c.split == name]
        if limit_per_class is None:
            return chosen
        seen: dict[int, int] = {}
        out = []
        for c in chosen:
            if seen.get(c.target, 0) < limit_per_class:
                seen[c.target] = seen.get(c.target, 0) + 1
                out.append(c)
        return out


@dataclass
class ClipFeatures:
    """Unnormalised features of many equal-length clips: (clips, channels, frames, bands)."""

    feats: np.ndarray
    silent: np.ndarray  # (clips, frames) bool: the frame's window held only zeros
    targets: np.ndarray

    def windows(self, seg_frames: int, stride: int) -> np.ndarray:
        """(k, 2) array of (clip, start) for every window with at least one non-silent frame; a clip
        with none keeps its first window so that it is still scored."""
        out = []
        n_frames = self.feats.shape[2]
        starts = list(range(0, max(n_frames - seg_frames, 0) + 1, stride))
        for i, silent in enumerate(self.silent):
            keep = [s for s in starts if not silent[s : s + seg_frames].all()] or starts[:1]
            out.extend((i, s) for s in keep)
        return np.asarray(out, dtype=np.int64)

    def gather(self, index: np.ndarray, seg_frames: int) -> np.ndarray:
        """Cut the windows named by (clip, start) rows out of the clip features."""
        offsets = np.arange(seg_frames)
        frames = index[:, 1:2] + offsets[None, :]  # (k, seg)
        return self.feats[index[:, :1], :, frames].transpose(0, 2, 1, 3)


def frontend_key(cfg: FrontendConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def clip_features(
    clips: list[Clip], frontend: Frontend, cache_dir: Path | None = None, desc: str = "features"
) -> ClipFeatures:
    """Features for ``clips``, from the on-disk cache when the same clips and front end were seen."""
    cfg = frontend.config
    cache_dir = cache_dir or default_cache_dir()
    ident = hashlib.sha256(("\n".join(str(c.path.name) for c in clips) + frontend_key(cfg)).encode())
    path = cache_dir / f"features-{ident.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return ClipFeatures(z["feats"], z["silent"], z["targets"])
    feats, silent = [], []
    for clip in progress(clips, desc):
        audio = load_audio(clip.path, cfg.sample_rate, min_samples=cfg.n_fft)
        feats.append(frontend.features(audio))
        silent.append(silent_frames(audio, cfg))
    n = min(f.shape[1] for f in feats)  # clips are 5.0 s; guard against an odd sample count
    out = ClipFeatures(
        np.stack([f[:, :n] for f in feats]),
        np.stack([s[:n] for s in silent]),
        np.asarray([c.target for c in clips], np.int64),
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # one per process: runs may share a cache
    np.savez(tmp, feats=out.feats, silent=out.silent, targets=out.targets)
    os.replace(tmp, path)
    return out


def silent_frames(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Per frame: did its analysis window contain only exact zeros?"""
    padded = np.pad(np.abs(audio) > 0, cfg.n_fft // 2)
    counts = np.concatenate([[0], np.cumsum(padded)])
    n = 1 + len(audio) // cfg.hop_length
    starts = np.arange(n) * cfg.hop_length
    return (counts[starts + cfg.n_fft] - counts[starts]) == 0
