"""Labelled clips as cached features and 1-s windows: what training, evaluation and calibration read.

Features are computed once per clip with the project's own front end, so every number a model learns
from is one a device computes. Clips may have any length; they are stored end to end (a ragged array)
and a model sees 1-s windows cut from them by the one window cutter of the project (``windows.window_starts``),
which ``predict`` uses too. Windows that are entirely digital silence (ESC-50 pads short sounds with
zeros) are never training targets nor scored.

The on-disk cache (in the user's cache folder, ``paths.cache_dir``) is keyed by what decides its content:
the front-end config and, for every clip, the resolved path, inode, size, mtime and ctime of its file.
Another folder with the same file names, or a file replaced in place even with its old mtime (``cp -p``),
is a cache miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import load_audio
from .errors import DssdnError
from .fileio import atomic_path, temp_name
from .frontend import Frontend, FrontendConfig
from .paths import cache_dir
from .progress import progress
from .userdata import SPLITS, Clip, Dataset, default_data_root
from .windows import pad_to_window, silent_frames, window_starts

# Clip, Dataset and the data root live in userdata (with the loaders that make them); data is their public door
__all__ = ["SPLITS", "Clip", "ClipFeatures", "Dataset", "clip_features", "default_cache_dir", "default_data_root"]

FEATURES_VERSION = 3  # bump when the cached arrays change meaning


def default_cache_dir() -> Path:
    """The user's cache folder (``paths.cache_dir``): never under the package."""
    return cache_dir()


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
        out = np.ascontiguousarray(self.frames[rows].transpose(0, 2, 1, 3))
        release_pages(self.frames)
        return out


def release_pages(frames: np.ndarray) -> None:
    """Drop the pages of a memory-mapped frames file from this process's resident set once read (they stay
    in the page cache): training reads every window of a long clip over and over, and without this the
    whole file would count as the process's memory."""
    mm = getattr(frames, "_mmap", None)  # np.memmap keeps its mmap.mmap here
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def silent_classes(feats: ClipFeatures, labels: tuple[str, ...] | list[str], seg: int) -> dict[str, int]:
    """Classes whose every clip is digital silence (no non-zero 1-s window), with their clip counts: such a
    class is never a training target, which a user must hear about rather than find in the accuracy."""
    audible = {i for i, _ in feats.windows(seg, seg, keep_silent_clips=False)}
    counts: dict[int, int] = {}
    heard: set[int] = set()
    for i, t in enumerate(feats.targets):
        counts[int(t)] = counts.get(int(t), 0) + 1
        if i in audible:
            heard.add(int(t))
    return {labels[t]: n for t, n in sorted(counts.items()) if t not in heard}


def file_identity(path: Path) -> str:
    """What decides a file's content without reading it: resolved path, device and inode, size,
    modification time and status-change time (ctime). ``cp -p``, ``rsync -t`` and unzip tools can set the
    mtime of other audio to the old one, but none can set the ctime (the kernel stamps it on every write,
    rename or chmod) nor keep the inode of a file written anew, so replaced audio is always a cache miss."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def cache_key(clips: list[Clip], cfg: FrontendConfig) -> str:
    h = hashlib.sha256(f"v{FEATURES_VERSION}".encode())
    h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for c in clips:
        h.update(file_identity(c.path).encode() + b"\n")
    return h.hexdigest()[:20]


def clip_features(
    clips: list[Clip], frontend: Frontend, cache_dir: Path | None = None, desc: str = "features"
) -> ClipFeatures:
    """Features for ``clips``, from the on-disk cache when exactly these files and front end were seen.

    The frames are written clip by clip to the cache's ``.npy`` and memory-mapped from there, and a long
    clip streams through the front end (``audio_stream``), so an hour-long recording costs disk, not RAM."""
    cfg = frontend.config
    if not clips:
        raise DssdnError("no clips to compute features for")
    cache_dir = cache_dir or default_cache_dir()
    key = cache_key(clips, cfg)
    frames_path, meta_path = cache_dir / f"features-{key}.npy", cache_dir / f"features-{key}.npz"
    cached = _load_cached(frames_path, meta_path, cfg)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    spill = temp_name(frames_path.with_suffix(".f32"))
    silent, lengths = [], []
    try:
        with open(spill, "wb") as fh:
            for clip in progress(clips, desc):
                n = 0
                for part, quiet in _clip_frames(clip.path, frontend):
                    fh.write(np.ascontiguousarray(part, np.float32).tobytes())
                    silent.append(quiet)
                    n += len(part)
                lengths.append(n)
        total = int(sum(lengths))
        with atomic_path(frames_path) as tmp, open(tmp, "wb") as out, open(spill, "rb") as src:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "<f4", "fortran_order": False, "shape": (total, cfg.channels, cfg.n_mels)})
            shutil.copyfileobj(src, out, 1 << 20)
    finally:
        spill.unlink(missing_ok=True)
    lens = np.asarray(lengths, np.int64)
    with atomic_path(meta_path) as tmp:
        np.savez(tmp, silent=np.concatenate(silent), offsets=np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(
            np.int64), lengths=lens, targets=np.asarray([c.target for c in clips], np.int64))
    cached = _load_cached(frames_path, meta_path, cfg)
    if cached is None:
        raise DssdnError(f"{frames_path}: the feature cache just written does not read back (disk full?)")
    return cached


def _load_cached(frames_path: Path, meta_path: Path, cfg: FrontendConfig) -> ClipFeatures | None:
    """The cached features, frames memory-mapped; None when missing or damaged (recomputed, never trusted)."""
    if not (frames_path.is_file() and meta_path.is_file()):
        return None
    try:
        with np.load(meta_path) as z:
            silent, offsets, lengths, targets = z["silent"], z["offsets"], z["lengths"], z["targets"]
        frames = np.load(frames_path, mmap_mode="r")
    except (OSError, KeyError, ValueError, EOFError):
        return None
    if frames.dtype != np.float32 or frames.shape != (int(lengths.sum()), cfg.channels, cfg.n_mels) \
            or len(silent) != len(frames):
        return None
    return ClipFeatures(frames, silent, offsets, lengths, targets)


def _clip_frames(path: Path, frontend: Frontend):
    """(frames (n, channels, bands), silent (n,)) pieces of one clip, equal to the whole-clip computation:
    a short clip is computed whole (exactly as always), a long one streamed in blocks."""
    from .audio_stream import LONG_FILE_SECONDS, SilenceTracker, audio_seconds, resampled_blocks

    cfg = frontend.config
    if audio_seconds(path) < LONG_FILE_SECONDS:
        audio = pad_to_window(load_audio(path, cfg.sample_rate, min_samples=cfg.hop_length), cfg)
        yield frontend.features(audio).transpose(1, 0, 2), silent_frames(audio, cfg)
        return
    stream, tracker = frontend.stream(), SilenceTracker(cfg)
    pending = np.zeros(0, bool)
    for block in resampled_blocks(path, cfg.sample_rate, min_samples=cfg.hop_length):
        feats = stream.push(block) if len(block) else np.zeros((0, cfg.channels, cfg.n_mels), np.float32)
        pending = np.concatenate([pending, tracker.push(block)])
        yield feats, pending[: len(feats)]
        pending = pending[len(feats):]
    feats = stream.flush()
    pending = np.concatenate([pending, tracker.push(np.zeros(0, np.float32), final=True)])
    yield feats, pending[: len(feats)]
