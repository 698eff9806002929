"""Audio in: any file soundfile reads (WAV, FLAC, OGG), any rate and channel count → mono float32.

Resampling is polyphase (scipy ``resample_poly``) with the exact rational ratio, so 44.1 kHz → 16 kHz is
the 160/441 filter rather than an FFT resample of the whole clip; downmixing is the channel mean.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .errors import AudioError


def load_audio(path: str | Path, sample_rate: int, min_samples: int = 1) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``; raise ``AudioError`` naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: unreadable or corrupt audio ({_first_line(exc)})") from None
    return to_mono_at_rate(data, rate, sample_rate, name=str(path), min_samples=min_samples)


def to_mono_at_rate(
    data: np.ndarray, rate: int, sample_rate: int, name: str = "<array>", min_samples: int = 1
) -> np.ndarray:
    """Downmix (frames, channels) or (frames,) audio to mono and resample it; validate the result."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if data.size == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    if not np.isfinite(data).any():
        raise AudioError(f"{name}: audio is all NaN/Inf")
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: audio contains NaN/Inf samples")
    if rate != sample_rate:
        ratio = Fraction(sample_rate, int(rate))
        data = resample_poly(data, ratio.numerator, ratio.denominator).astype(np.float32)
    if data.size < min_samples:
        raise AudioError(
            f"{name}: too short ({data.size} samples at {sample_rate} Hz, need at least {min_samples})"
        )
    return np.ascontiguousarray(data, dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
