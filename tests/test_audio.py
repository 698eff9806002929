"""Audio loading: other rates, channels and bit depths in; one-line errors for bad files."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from dssdn_edge.audio import load_audio
from dssdn_edge.errors import AudioError
from dssdn_edge.frontend import Frontend


@pytest.fixture(scope="module")
def clip(real_clips) -> np.ndarray:
    return sf.read(str(real_clips[0]), dtype="float32")[0]


@pytest.mark.parametrize(
    ("rate", "channels", "subtype", "ext"),
    [(44100, 1, "PCM_16", "wav"), (32000, 1, "PCM_16", "flac"), (8000, 1, "PCM_16", "wav"),
     (16000, 2, "PCM_16", "wav"), (16000, 1, "PCM_24", "wav"), (48000, 2, "PCM_24", "flac"),
     (16000, 1, "VORBIS", "ogg")],
)
def test_formats_load_to_mono_16k(tmp_path: Path, clip: np.ndarray, rate: int, channels: int, subtype: str,
                                  ext: str) -> None:
    ratio = Fraction(rate, 16000)
    y = resample_poly(clip, ratio.numerator, ratio.denominator).astype(np.float32) * 0.9
    data = np.stack([y, y * 0.5], axis=1) if channels == 2 else y
    path = tmp_path / f"clip_{rate}_{channels}.{ext}"
    sf.write(str(path), data, rate, subtype=subtype)
    audio = load_audio(path, 16000)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert abs(len(audio) - 80000) <= 2
    feats = Frontend().features(audio)
    assert feats.shape == (2, 1 + len(audio) // 320, 128)
    if rate == 16000 and channels == 2 and subtype == "PCM_16":
        # downmix is the channel mean
        assert np.allclose(audio, (y * 1.5 / 2), atol=2 / 32768)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(range(200)))
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    short = tmp_path / "short.wav"
    sf.write(str(short), np.full(500, 0.1, np.float32), 16000)
    zero_bytes = tmp_path / "zero.flac"
    zero_bytes.write_bytes(b"")
    return {
        "missing": (tmp_path / "nope.wav", "no such file"),
        "corrupt": (corrupt, "unreadable or corrupt"),
        "zero-byte": (zero_bytes, "unreadable or corrupt"),
        "empty": (empty, "empty audio"),
        "nan": (nan, "NaN"),
        "short": (short, "too short"),
    }


@pytest.mark.parametrize("case", ["missing", "corrupt", "zero-byte", "empty", "nan", "short"])
def test_bad_audio_is_a_one_line_error(tmp_path: Path, case: str) -> None:
    path, words = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError, match=words) as info:
        load_audio(path, 16000, min_samples=1024)
    assert str(path) in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "dssdn_edge.cli", "features", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and words in lines[0]
