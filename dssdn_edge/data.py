"""Labelled clips as cached features and 1-s windows: what training, evaluation and calibration read.

Features are computed once per clip with the project's own front end, so every number a model learns
from is one a device computes. Clips may have any length; they are stored end to end (a ragged array)
and a model sees 1-s windows cut from them by the one window cutter of the project, ``window_starts``,
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
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .audio import load_audio
from .errors import DssdnError
from .fileio import atomic_path, temp_name
from .frontend import Frontend, FrontendConfig
from .paths import cache_dir
from .progress import progress

REPO_ROOT = Path(__file__).resolve().parents[1]
FEATURES_VERSION = 3  # bump when the cached arrays change meaning
SPLITS = ("train", "val", "test")


def default_data_root() -> Path:
    """``$DSSDN_DATA`` or ../shared/data/esc50_16k beside the checkout."""
    env = os.environ.get("DSSDN_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "esc50_16k"


def default_cache_dir() -> Path:
    """The user's cache folder (``paths.cache_dir``): never under the package."""
    return cache_dir()


@dataclass(frozen=True)
class Clip:
    path: Path
    target: int
    label: str
    split: str = "train"  # train / val / test
    fold: int | None = None
    group: str | None = None  # clips of one source recording share a group (and so a split)


@dataclass(frozen=True)
class Dataset:
    """Clips with labels and a train / val / test assignment; ``labels[target]`` names a class."""

    root: Path
    clips: tuple[Clip, ...]
    labels: tuple[str, ...]
    kind: str = "esc50"  # esc50 | folder | csv
    licence: str | None = None
    description: str = ""
    load_args: tuple[tuple[str, object], ...] = ()  # how to load it again (split fractions, seed ...)

    def reload_spec(self) -> dict:
        """What a checkpoint records so that export can find the same data and the same split; the root is
        absolute, so an export or a resume from another working folder finds it too."""
        return {"root": str(Path(self.root).resolve()), "kind": self.kind, **dict(self.load_args)}

    @classmethod
    def load(cls, root: str | Path | None = None, **kwargs) -> Dataset:
        """ESC-50 (a folder with its metadata.csv) or a user's data (class folders, or a CSV).

        Keyword arguments go to the user-data loader (``split``, ``seed``, ``skip_bad`` ...)."""
        from .userdata import is_esc50, load_esc50, load_user_data

        root = Path(root) if root else default_data_root()
        if is_esc50(root):
            return load_esc50(root)
        if root == default_data_root() and not root.exists():
            raise DssdnError(f"{root}: ESC-50 not found (set DSSDN_DATA or pass --data)")
        return load_user_data(root, **kwargs)

    @classmethod
    def reload(cls, spec: dict) -> Dataset:
        """The dataset a ``reload_spec`` describes, with the same split."""
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k in ("split", "seed",
                                                                                               "skip_bad")}
        return cls.load(spec["root"], **args)

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def with_folds(self, train: tuple[int, ...], val: int | None, test: int | None) -> Dataset:
        """Reassign splits from folds (ESC-50 protocol): e.g. train (1, 2, 3), val 4, test 5."""
        def which(c: Clip) -> str:
            if c.fold in train:
                return "train"
            return "val" if c.fold == val else "test" if c.fold == test else "unused"

        if any(c.fold is None for c in self.clips):
            raise DssdnError(f"{self.root}: this dataset has no folds")
        parts = [f"folds {', '.join(map(str, train))} train"]
        parts += [f"fold {val} val"] if val is not None else []
        parts += [f"fold {test} test"] if test is not None else []
        name = self.description.split(":")[0] if self.description else str(self.root)
        return replace(self, clips=tuple(replace(c, split=which(c)) for c in self.clips),
                       description=f"{name}: {', '.join(parts)}")

    def subset(self, limit_per_class: int | None) -> Dataset:
        """At most ``limit_per_class`` clips of each class in each split (tests, quick runs)."""
        if limit_per_class is None:
            return self
        seen: dict[tuple[str, int], int] = {}
        keep = []
        for c in self.clips:
            key = (c.split, c.target)
            if seen.get(key, 0) < limit_per_class:
                seen[key] = seen.get(key, 0) + 1
                keep.append(c)
        return replace(self, clips=tuple(keep))

    def summary(self) -> str:
        counts = {s: len(self.split(s)) for s in SPLITS}
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"{self.root}: {len(self.labels)} classes, {len(self.clips)} clips ({parts})"


# ---------------------------------------------------------------------------------------- windows
def window_starts(silent: np.ndarray, seg: int, stride: int) -> list[int]:
    """First frames of the ``seg``-frame windows of one clip, every ``stride`` frames, skipping windows
    whose frames all saw only digital zeros. A clip with no window left keeps none."""
    n = len(silent)
    return [s for s in range(0, max(n - seg, 0) + 1, stride) if not silent[s : s + seg].all()]


def pad_to_window(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """A clip shorter than one model window is zero-padded to one window (as ESC-50 pads short sounds)."""
    if len(audio) < cfg.segment_samples:
        return np.pad(audio, (0, cfg.segment_samples - len(audio)))
    return audio


def silent_frames(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Per frame: did its analysis window contain only exact zeros?"""
    padded = np.pad(np.abs(audio) > 0, cfg.n_fft // 2)
    counts = np.concatenate([[0], np.cumsum(padded)])
    n = 1 + len(audio) // cfg.hop_length
    starts = np.arange(n) * cfg.hop_length
    return (counts[starts + cfg.n_fft] - counts[starts]) == 0


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
