"""Audio in: any file soundfile reads (WAV, FLAC, OGG), any rate and channel count → mono float32.

Resampling is polyphase (scipy ``resample_poly``) with the exact rational ratio, so 44.1 kHz → 16 kHz is
the 160/441 filter rather than an FFT resample of the whole clip; downmixing is the channel mean.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .errors import AudioError
from .paths import file_problem


def load_audio(path: str | Path, sample_rate: int, min_samples: int = 1) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``; raise ``AudioError`` naming the file otherwise."""
    path = check_audio_file(path)
    try:
        with quiet_decoder():
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: {decode_problem(exc)}") from None
    return to_mono_at_rate(data, rate, sample_rate, name=str(path), min_samples=min_samples)


def check_audio_file(path: str | Path) -> Path:
    """``path`` if it is a regular file: a FIFO would block soundfile forever and a device never ends."""
    why = file_problem(path)
    if why is not None:
        raise AudioError(f"{path}: {why.replace('not a regular file', 'not an audio file')}")
    return Path(path)


def decode_problem(exc: BaseException) -> str:
    """soundfile's error in words that fit a regular file: libsndfile says "does not exist or is not a regular
    file" for any file whose header it cannot parse (an MP3 with a bad header), which misleads once we know
    the file is there."""
    text = _first_line(exc)
    if "does not exist or is not a regular file" in text or "Format not recognised" in text:
        return "unreadable or corrupt audio (bad header, or a format libsndfile does not decode)"
    return f"unreadable or corrupt audio ({text})"


@contextmanager
def quiet_decoder() -> Iterator[None]:
    """Keep libmpg123's notes ("Illegal Audio-MPEG-Header ...", written by C straight to file descriptor 2)
    off the terminal: an error is our one line, not a page of decoder chatter."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


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
