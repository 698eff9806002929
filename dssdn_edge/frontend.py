"""The split log-mel front end: the one feature pipeline shared by training, export and the device.

It is written so that a microcontroller can run the same arithmetic (see ``frontend_c.py``):
fixed frame sizes, a window and a sparse mel filterbank computed once, and no per-clip statistics —
normalisation uses mean/std measured on the training set and stored with the model. The offline
(``Frontend.features``) and streaming (``Frontend.stream``) paths share every numeric step, so a device
that computes frame by frame sees exactly what the model was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .configs import known_fields


@dataclass(frozen=True)
class FrontendConfig:
    """Front-end parameters; stored in every checkpoint and export manifest.

    Defaults are the shipped ones from the design note: 16 kHz, 1024-point Hann FFT, 20 ms hop,
    128 HTK mel bands over 0–8 kHz, log10 power and a 5-frame delta channel.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 8000.0
    log_eps: float = 1e-10
    delta_width: int = 5  # 0 disables the delta channel (1-channel input)
    split_band: int = 64  # first mel band of the "high" half
    segment_seconds: float = 1.0  # the model's input window

    def __post_init__(self) -> None:
        if self.n_fft & (self.n_fft - 1) or self.n_fft < 16:
            raise ValueError(f"n_fft must be a power of two >= 16, got {self.n_fft}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"hop_length must be in 1..n_fft, got {self.hop_length}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {self.fmin}..{self.fmax}")
        if self.delta_width and (self.delta_width < 3 or self.delta_width % 2 == 0):
            raise ValueError(f"delta_width must be 0 or an odd number >= 3, got {self.delta_width}")
        if not 0 < self.split_band < self.n_mels:
            raise ValueError(f"split_band must be in 1..n_mels-1, got {self.split_band}")

    @property
    def channels(self) -> int:
        return 2 if self.delta_width else 1

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def segment_frames(self) -> int:
        """Frames in one model input window (51 for 1 s at the defaults)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def context_offset(self) -> int:
        """Samples of context before a window's first frame position (``s·hop``): half an FFT for that
        frame's own analysis window plus ``delta_width // 2`` hops for the frames its delta looks back to.
        Why: a model that gets only the window's samples must centre-pad them, so its edge frames see zeros
        where features cut from the whole clip see the neighbouring audio (the phone file, ``export/phone.py``)."""
        return self.n_fft // 2 + (self.delta_width // 2) * self.hop_length

    @property
    def context_samples(self) -> int:
        """Samples that decide one window's features exactly: frames ``s - w .. s + T - 1 + w`` (``T =
        segment_frames``, ``w = delta_width // 2``), each ``n_fft`` long, framed without padding —
        ``(T - 1 + 2w)·hop + n_fft`` = 18304 (1.144 s) at the defaults."""
        return (self.segment_frames - 1 + 2 * (self.delta_width // 2)) * self.hop_length + self.n_fft

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontendConfig:
        return cls(**known_fields(cls, data, ValueError, "front-end config keys"))


# ----------------------------------------------------------------------------------------- tables
def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann (the STFT convention, as scipy/librosa ``fftbins=True``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)


def mel_filterbank(cfg: FrontendConfig) -> np.ndarray:
    """Dense (n_mels, n_bins) triangular HTK filterbank without area normalisation."""
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2.0, cfg.n_bins)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    return np.maximum(0.0, np.minimum(lower, upper))


@dataclass(frozen=True)
class SparseFilterbank:
    """Each band as (first FFT bin, length, weights): what the C twin stores and loops over."""

    start: np.ndarray  # (n_mels,) int32
    length: np.ndarray  # (n_mels,) int32
    offset: np.ndarray  # (n_mels,) int32 index of each band's first weight in ``weights``
    weights: np.ndarray  # (sum(length),) float64
    n_bins: int

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> SparseFilterbank:
        starts, lengths, chunks = [], [], []
        for row in dense:
            nz = np.flatnonzero(row)
            lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
            starts.append(lo)
            lengths.append(hi - lo)
            chunks.append(row[lo:hi])
        length = np.asarray(lengths, dtype=np.int32)
        offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int32)
        return cls(
            np.asarray(starts, np.int32), length, offset, np.concatenate(chunks), dense.shape[1]
        )

    def to_dense(self) -> np.ndarray:
        dense = np.zeros((len(self.start), self.n_bins))
        for band, (s, n, o) in enumerate(zip(self.start, self.length, self.offset, strict=True)):
            dense[band, s : s + n] = self.weights[o : o + n]
        return dense


BAND_GROUP = 16  # bands per block of the sparse product (measured: 8-16 fastest, 5x the dense matmul)


def band_groups(dense: np.ndarray, size: int = BAND_GROUP) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The filterbank as the sparse product it is: blocks of ``size`` consecutive bands, each with the one
    contiguous range of FFT bins its bands touch, as (first band, end band, first bin, end bin, weights
    (bins, bands)). A triangle touches a few bins, so the blocks hold ~1/7 of the dense table's zeros."""
    out = []
    for b0 in range(0, dense.shape[0], size):
        rows = dense[b0 : b0 + size]
        nz = np.flatnonzero(rows.any(axis=0))
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
        out.append((b0, b0 + len(rows), lo, hi, np.ascontiguousarray(rows[:, lo:hi].T)))
    return out


def sparse_mel(power: np.ndarray, groups: list[tuple[int, int, int, int, np.ndarray]], n_mels: int) -> np.ndarray:
    """(n, n_bins) power → (n, n_mels) mel power, one small matmul per band block (same sums as the dense one)."""
    out = np.empty((power.shape[0], n_mels))
    for b0, b1, lo, hi, weights in groups:
        np.matmul(power[:, lo:hi], weights, out=out[:, b0:b1])
    return out


# -------------------------------------------------------------------------------------- normalise
@dataclass(frozen=True)
class Normalization:
    """Per-channel, per-band mean and std measured on training features (never per clip)."""

    mean: np.ndarray = field(repr=False)  # (channels, n_mels)
    std: np.ndarray = field(repr=False)

    def apply(self, feats: np.ndarray) -> np.ndarray:
        """Normalise (..., channels, frames, bands) features."""
        return ((feats - self.mean[:, None, :]) / self.std[:, None, :]).astype(np.float32)

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Normalization:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))

    @classmethod
    def fit(cls, feats: np.ndarray) -> Normalization:
        """From (N, channels, frames, bands) features; std floored so silent bands stay finite."""
        mean = feats.mean(axis=(0, 2), dtype=np.float64)
        std = np.maximum(feats.std(axis=(0, 2), dtype=np.float64), 1e-3)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    @classmethod
    def identity(cls, cfg: FrontendConfig) -> Normalization:
        shape = (cfg.channels, cfg.n_mels)
        return cls(np.zeros(shape, np.float32), np.ones(shape, np.float32))


# --------------------------------------------------------------------------------------- compute
class Frontend:
    """Offline and streaming log-mel (+ delta) features for one ``FrontendConfig``."""

    def __init__(self, config: FrontendConfig | None = None) -> None:
        self.config = config or FrontendConfig()
        self.window = hann_window(self.config.n_fft)
        self.filterbank = SparseFilterbank.from_dense(mel_filterbank(self.config))
        self._bands = band_groups(self.filterbank.to_dense())

    # -- per frame ---------------------------------------------------------------------------
    def logmel_frames(self, frames: np.ndarray) -> np.ndarray:
        """(n, n_fft) windows of samples → (n, n_mels) log10 mel power."""
        spec = np.fft.rfft(frames * self.window, n=self.config.n_fft, axis=-1)
        power = spec.real**2 + spec.imag**2
        mel = sparse_mel(power, self._bands, self.config.n_mels)
        mel += self.config.log_eps
        return np.log10(mel, out=mel)

    # -- offline -----------------------------------------------------------------------------
    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.config.hop_length

    def logmel(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio → (frames, n_mels) log-mel, centre-padded with zeros (librosa ``center=True``)."""
        cfg = self.config
        audio = np.asarray(audio, dtype=np.float64)
        if audio.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
        return self.logmel_frames(frame_view(centre_pad(audio, cfg.n_fft // 2), cfg.n_fft, cfg.hop_length))

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio → unnormalised model features (channels, frames, n_mels), float32."""
        mel = self.logmel(audio)
        if not self.config.delta_width:
            return mel[None].astype(np.float32)
        w = self.config.delta_width // 2
        padded = np.concatenate([np.repeat(mel[:1], w, 0), mel, np.repeat(mel[-1:], w, 0)])
        out = np.empty((2, *mel.shape), np.float32)
        out[0] = mel
        out[1] = delta(padded, w)
        return out

    def split(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cut (..., bands) features into the low and high frequency bands the model treats apart."""
        cut = self.config.split_band
        return feats[..., :cut], feats[..., cut:]

    def stream(self) -> StreamingFrontend:
        return StreamingFrontend(self)


def delta(padded: np.ndarray, w: int) -> np.ndarray:
    """Regression delta over ±w frames of an already edge-padded (frames + 2w, bands) array."""
    n = len(padded) - 2 * w
    out = np.zeros((n, padded.shape[1]))
    for k in range(1, w + 1):
        out += k * (padded[w + k : w + k + n] - padded[w - k : w - k + n])
    return out / (2.0 * sum(k * k for k in range(1, w + 1)))


def centre_pad(audio: np.ndarray, pad: int) -> np.ndarray:
    """``audio`` with ``pad`` zeros on both sides, float64 (``np.pad`` costs more than the copy here)."""
    out = np.zeros(len(audio) + 2 * pad)
    out[pad : pad + len(audio)] = audio
    return out


def frame_view(padded: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Read-only (frames, n_fft) view of every ``hop``-th window of a contiguous float64 array, built directly
    (``sliding_window_view`` spends tens of microseconds in argument checks per call)."""
    n = 0 if len(padded) < n_fft else 1 + (len(padded) - n_fft) // hop
    step = padded.strides[0]
    view = np.ndarray((n, n_fft), dtype=padded.dtype, buffer=padded, offset=0, strides=(hop * step, step))
    view.flags.writeable = False
    return view


class StreamingFrontend:
    """Feed audio in chunks of any size; get feature frames identical to ``Frontend.features``.

    Log-mel frames appear as soon as their window is complete; delta frames lag ``delta_width // 2``
    frames behind because they look ahead. ``flush()`` pads the end exactly as the offline path does.
    """

    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend
        cfg = frontend.config
        self._cfg = cfg
        self._w = cfg.delta_width // 2
        self._buf = np.zeros(cfg.n_fft // 2)  # the centre padding at the start of the stream
        self._mel = np.zeros((0, cfg.n_mels))  # log-mel frames not yet consumed by delta
        self._mel_index = 0  # stream index of self._mel[0]
        self._emitted = 0
        self._closed = False

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; return the (n, channels, n_mels) feature frames completed by them."""
        if self._closed:
            raise RuntimeError("stream already flushed")
        self._buf = np.concatenate([self._buf, np.asarray(chunk, dtype=np.float64).ravel()])
        return self._drain(final=False)

    def flush(self) -> np.ndarray:
        """End of stream: pad with zeros like the offline centre padding and emit the rest."""
        if self._closed:
            return np.zeros((0, self._cfg.channels, self._cfg.n_mels), np.float32)
        self._buf = np.concatenate([self._buf, np.zeros(self._cfg.n_fft // 2)])
        self._closed = True
        return self._drain(final=True)

    def _drain(self, final: bool) -> np.ndarray:
        cfg = self._cfg
        n_new = 0 if len(self._buf) < cfg.n_fft else 1 + (len(self._buf) - cfg.n_fft) // cfg.hop_length
        if n_new:
            mel = self.frontend.logmel_frames(frame_view(self._buf, cfg.n_fft, cfg.hop_length)[:n_new])
            self._buf = self._buf[n_new * cfg.hop_length :]
            self._mel = np.concatenate([self._mel, mel])
        if not cfg.delta_width:
            out, self._mel = self._mel, self._mel[:0]
            self._mel_index += len(out)
            return out[:, None].astype(np.float32)
        return self._emit_with_delta(final)

    def _emit_with_delta(self, final: bool) -> np.ndarray:
        w, cfg = self._w, self._cfg
        end = self._mel_index + len(self._mel)  # total log-mel frames so far
        last = end if final else end - w  # feature frames [emitted, last) can be finished now
        if last <= self._emitted:
            return np.zeros((0, cfg.channels, cfg.n_mels), np.float32)
        # window of log-mel frames [emitted - w, last + w) with edge replication at both ends
        rows = np.arange(self._emitted - w, last + w)
        history = self._mel[np.clip(rows, 0, end - 1) - self._mel_index]  # buffer starts at emitted-w
        mel = history[w:-w]
        out = np.stack([mel, delta(history, w)], axis=1).astype(np.float32)
        self._emitted = last
        keep_from = max(self._emitted - w, 0) - self._mel_index
        self._mel = self._mel[keep_from:]
        self._mel_index += keep_from
        return out
