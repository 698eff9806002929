"""The one window cutter: which 1-s windows of a clip a model sees, and the pieces each path feeds it.

Training, evaluation, calibration, ``predict`` and the phone file's evaluation all cut windows by this rule
(every ``stride`` frames, all-silent windows skipped, a clip shorter than one window zero-padded to one), so
a number measured on one path is a number about the same windows on another. ``clip_windows`` gives the
features-in windows of a file, ``context_windows`` the phone file's audio inputs (each window with the
context its frames and delta read).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio_stream import file_windows
from .frontend import Frontend, FrontendConfig

WINDOW_STRIDE = 25  # frames (0.5 s at the default hop), as clip-level evaluation in training and export


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


def clip_windows(
    path: str | Path, frontend: Frontend, stride: int = WINDOW_STRIDE, allow_silent: bool = False
) -> np.ndarray:
    """Unnormalised (k, channels, frames, bands) 1-s windows of one audio file (all in memory: for
    calibration sets and tests; ``Predictor`` streams instead)."""
    cfg = frontend.config
    parts = [b.windows for b in file_windows(path, frontend, stride, allow_silent=allow_silent)]
    if not parts:
        return np.zeros((0, cfg.channels, cfg.segment_frames, cfg.n_mels), np.float32)
    return np.concatenate(parts)


def clip_starts(audio: np.ndarray, cfg: FrontendConfig, stride: int) -> list[int]:
    """First frames of the windows ``predict`` and the evaluation classify in a clip: every ``stride``
    frames, all-silent windows skipped, a clip shorter than one window counted as zero-padded to one."""
    audio = pad_to_window(np.asarray(audio, np.float32), cfg)
    return window_starts(silent_frames(audio, cfg), cfg.segment_frames, stride)


def audio_windows(audio: np.ndarray, cfg: FrontendConfig, stride: int) -> np.ndarray:
    """(k, context samples): the phone file's inputs for a mono clip's windows at ``clip_starts``."""
    audio = pad_to_window(np.asarray(audio, np.float32), cfg)
    return context_windows(audio, clip_starts(audio, cfg, stride), cfg)


def context_windows(audio: np.ndarray, starts: list[int] | np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """(k, context samples): for the window whose first frame is s, the samples
    [s·hop - context_offset, s·hop - context_offset + context_samples) of ``audio`` (the clip as the front end
    sees it, ``pad_to_window``), zeros outside it. Those zeros are exactly the offline front end's centre
    padding, so every frame's log-mel equals the whole clip's."""
    n, lead, hop = cfg.context_samples, cfg.context_offset, cfg.hop_length
    out = np.zeros((len(starts), n), np.float32)
    for k, s in enumerate(starts):
        a = int(s) * hop - lead
        lo, hi = max(a, 0), min(a + n, len(audio))
        if hi > lo:
            out[k, lo - a : hi - a] = audio[lo:hi]
    return out


def edge_windows(starts: list[int] | np.ndarray, n_samples: int, cfg: FrontendConfig) -> np.ndarray:
    """Per window: does its delta read past the clip's first or last frame (``n_samples`` after
    ``pad_to_window``)? Only there the two paths differ: the offline front end replicates the edge frame,
    the phone file reads the frame the context gives (audio on one side, zeros on the other)."""
    w = cfg.delta_width // 2
    frames = 1 + n_samples // cfg.hop_length
    s = np.asarray(starts, np.int64)
    return (s - w < 0) | (s + cfg.segment_frames + w > frames)


