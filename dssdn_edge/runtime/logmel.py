"""The device's front end in numpy, from the manifest's numbers only: log-mel, delta, normalisation.

Why a second front end beside ``dssdn_edge.frontend``: a device (and the benchmark runner on it) has numpy
but not the training stack, and must compute exactly the features the model was trained on from what the
export folder says. ``LogMel.features`` equals ``Frontend.features`` and ``StreamingFeatures`` equals
``stream.StreamClassifier``'s windows (tests/test_bench.py, tests/test_stream.py). Self-contained (numpy
only), like the rest of the runtime package that bench copies to a device.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LogMel:
    """The shipped front end re-derived from the manifest's numbers only: periodic Hann window, HTK mel
    filterbank without area normalisation, centre-padded STFT power, log10(x + eps), regression delta.
    It must equal ``dssdn_edge.frontend.Frontend.features`` (checked by tests/test_bench.py)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.sample_rate = int(cfg["sample_rate"])
        self.n_fft = int(cfg["n_fft"])
        self.hop = int(cfg["hop_length"])
        self.n_mels = int(cfg["n_mels"])
        self.log_eps = float(cfg["log_eps"])
        self.delta_width = int(cfg.get("delta_width", 0))
        self.segment_seconds = float(cfg.get("segment_seconds", 1.0))
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.n_fft) / self.n_fft)
        self.bands = band_groups(self._filterbank(float(cfg["fmin"]), float(cfg["fmax"])))

    def _filterbank(self, fmin: float, fmax: float) -> np.ndarray:
        def hz_to_mel(f: Any) -> Any:
            return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

        def mel_to_hz(m: Any) -> Any:
            return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)

        n_bins = self.n_fft // 2 + 1
        fft_freqs = np.linspace(0.0, self.sample_rate / 2.0, n_bins)
        mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), self.n_mels + 2))
        fdiff = np.diff(mel_f)
        ramps = mel_f[:, None] - fft_freqs[None, :]
        lower = -ramps[:-2] / fdiff[:-1, None]
        upper = ramps[2:] / fdiff[1:, None]
        return np.maximum(0.0, np.minimum(lower, upper))

    @property
    def channels(self) -> int:
        return 2 if self.delta_width else 1

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def segment_frames(self) -> int:
        return 1 + self.segment_samples // self.hop

    def logmel_frames(self, frames: np.ndarray) -> np.ndarray:
        """(n, n_fft) windows of samples -> (n, n_mels) log10 mel power (``Frontend.logmel_frames``)."""
        spec = np.fft.rfft(frames * self.window, n=self.n_fft, axis=-1)
        mel = sparse_mel(spec.real**2 + spec.imag**2, self.bands, self.n_mels)
        mel += self.log_eps
        return np.log10(mel, out=mel)

    def logmel(self, audio: np.ndarray) -> np.ndarray:
        padded = np.zeros(len(audio) + self.n_fft)  # centre padding, as librosa center=True
        padded[self.n_fft // 2 : self.n_fft // 2 + len(audio)] = audio
        return self.logmel_frames(frame_view(padded, self.n_fft, self.hop))

    def delta(self, mel_padded: np.ndarray) -> np.ndarray:
        """Regression delta of the middle rows of ``mel_padded`` (w = delta_width // 2 extra rows each side)."""
        w = self.delta_width // 2
        n = len(mel_padded) - 2 * w
        out = np.zeros((n, mel_padded.shape[1]))
        for k in range(1, w + 1):
            out += k * (mel_padded[w + k : w + k + n] - mel_padded[w - k : w - k + n])
        return out / (2.0 * sum(k * k for k in range(1, w + 1)))

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio -> (channels, frames, n_mels) float32, unnormalised."""
        mel = self.logmel(audio)
        if not self.delta_width:
            return mel[None].astype(np.float32)
        w = self.delta_width // 2
        out = np.empty((2, *mel.shape), np.float32)
        out[0] = mel
        out[1] = self.delta(np.concatenate([np.repeat(mel[:1], w, 0), mel, np.repeat(mel[-1:], w, 0)]))
        return out


BAND_GROUP = 16  # as dssdn_edge.frontend.BAND_GROUP


def band_groups(dense: np.ndarray, size: int = BAND_GROUP) -> list:
    """The mel filterbank as blocks of ``size`` bands over the one bin range each block touches (the sparse
    product of ``dssdn_edge.frontend.band_groups``, same sums, ~1/7 of the dense matmul's work)."""
    out = []
    for b0 in range(0, dense.shape[0], size):
        rows = dense[b0 : b0 + size]
        nz = np.flatnonzero(rows.any(axis=0))
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
        out.append((b0, b0 + len(rows), lo, hi, np.ascontiguousarray(rows[:, lo:hi].T)))
    return out


def sparse_mel(power: np.ndarray, groups: list, n_mels: int) -> np.ndarray:
    out = np.empty((power.shape[0], n_mels))
    for b0, b1, lo, hi, weights in groups:
        np.matmul(power[:, lo:hi], weights, out=out[:, b0:b1])
    return out


def frame_view(padded: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(frames, n_fft) view of every ``hop``-th window of a contiguous float64 array (no copy)."""
    n = 0 if len(padded) < n_fft else 1 + (len(padded) - n_fft) // hop
    step = padded.strides[0]
    return np.ndarray((n, n_fft), dtype=padded.dtype, buffer=padded, strides=(hop * step, step))


class StreamingFeatures:
    """Audio in chunks -> the latest window of normalised model features, computing only the new frames.

    The stream is centre-padded at its start like the offline path, so its frames are those of
    ``LogMel.features`` over the whole stream; a delta frame needs ``delta_width // 2`` frames of look-ahead,
    so the newest feature frame lags the audio by that much (40 ms at the defaults). Equals
    ``dssdn_edge.stream.StreamClassifier``'s windows (tests/test_stream.py)."""

    def __init__(self, frontend: LogMel, mean: np.ndarray, std: np.ndarray) -> None:
        self.fe, self.mean, self.std = frontend, mean, std  # mean/std: (channels, 1, n_mels)
        self.w = frontend.delta_width // 2
        self.buf = np.zeros(frontend.n_fft // 2)
        self.mel = np.zeros((0, frontend.n_mels))  # log-mel frames from index self.mel_start
        self.mel_start = 0
        self.ready = 0  # feature frames finished so far
        self.frames = frontend.segment_frames
        self.feats = np.zeros((frontend.channels, 0, frontend.n_mels), np.float32)  # last `frames` features

    def push(self, chunk: np.ndarray) -> int:
        """Add samples; return how many feature frames they finished."""
        fe = self.fe
        self.buf = np.concatenate([self.buf, np.asarray(chunk, dtype=np.float64)])
        views = frame_view(self.buf, fe.n_fft, fe.hop)
        if len(views):
            self.mel = np.concatenate([self.mel, fe.logmel_frames(views)])
            self.buf = self.buf[len(views) * fe.hop :].copy()
        total = self.mel_start + len(self.mel)
        last = total - self.w if fe.delta_width else total
        if last <= self.ready:
            return 0
        rows = np.arange(self.ready - self.w, last + self.w)
        hist = self.mel[np.clip(rows, 0, total - 1) - self.mel_start]
        new = hist[self.w : len(hist) - self.w][None] if fe.delta_width else hist[None]
        if fe.delta_width:
            new = np.concatenate([new, self.fe.delta(hist)[None]])
        new = ((new - self.mean) / self.std).astype(np.float32)
        self.feats = np.concatenate([self.feats, new], axis=1)[:, -self.frames :]
        done, self.ready = last - self.ready, last
        keep = max(self.ready - self.w, 0) - self.mel_start
        self.mel, self.mel_start = self.mel[keep:], self.mel_start + keep
        return done

    def window(self) -> np.ndarray | None:
        """The latest (channels, frames, n_mels) window, or None before the first full one."""
        return self.feats if self.feats.shape[1] == self.frames else None


def test_audio(frontend: LogMel, seed: int = 0, n: int | None = None) -> np.ndarray:
    """``n`` samples (default one model window) of deterministic audio (chirp + noise): real spectral
    content, no data files."""
    n = frontend.segment_samples if n is None else n
    t = (np.arange(n) % frontend.segment_samples) / frontend.sample_rate  # the chirp repeats every window
    chirp = 0.3 * np.sin(2 * np.pi * (100.0 + 3000.0 * t) * t)
    return (chirp + 0.05 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


class Pipeline:
    """What every model of an export shares on a device: front end, normalisation, 1 s of test audio, labels."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.frontend = LogMel(manifest["frontend"])
        norm = manifest["normalization"]
        self.mean = np.asarray(norm["mean"], np.float32)[:, None, :]
        self.std = np.asarray(norm["std"], np.float32)[:, None, :]
        self.labels = list(manifest.get("labels") or [])
        self.audio = test_audio(self.frontend)
        self.seconds = len(self.audio) / self.frontend.sample_rate

    def features(self, audio: np.ndarray) -> np.ndarray:
        return self.normalise(self.frontend.features(audio))

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32)

    def label(self, logits: np.ndarray) -> str:
        k = int(np.argmax(logits))
        return self.labels[k] if k < len(self.labels) else str(k)


