"""`dssdn-edge features`: features of one file, a text summary, and .npy / PNG outputs.

The command streams (``stream_features``): an hour of audio is 180,000 frames, 184 MB of float32 features,
which must not sit in memory on a Raspberry Pi; ``features_for_file`` is the in-memory form for short
clips and library use."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import load_audio
from .audio_stream import resampled_blocks
from .errors import DssdnError
from .fileio import atomic_path, refuse_overwrite
from .frontend import Frontend

PLOT_FRAMES = 4000  # a longer recording is plotted from every k-th frame


def features_for_file(path: Path, frontend: Frontend, normalize: bool = False) -> np.ndarray:
    """(channels, frames, bands) features of an audio file; optionally with the shipped normalisation."""
    cfg = frontend.config
    audio = load_audio(path, cfg.sample_rate, min_samples=cfg.n_fft)
    feats = frontend.features(audio)
    if normalize:
        from .pretrained import load_pretrained

        ckpt = load_pretrained("small")
        if ckpt.frontend_config != cfg:
            raise DssdnError(f"{ckpt.path}: shipped normalisation belongs to another front end")
        feats = ckpt.normalization.apply(feats)
    return feats


@dataclass
class FeatureStats:
    """Running min / mean / max / std of each channel's low and high band, so a recording of any length is
    summarised without holding its features."""

    split: int
    channels: int
    frames: int = 0
    acc: dict[tuple[int, str], list[float]] = field(default_factory=dict)  # n, sum, sumsq, min, max

    def add(self, frames: np.ndarray) -> None:
        """frames: (n, channels, bands)."""
        self.frames += len(frames)
        for c in range(self.channels):
            for band, part in (("low", frames[:, c, : self.split]), ("high", frames[:, c, self.split :])):
                if not part.size:
                    continue
                a = self.acc.setdefault((c, band), [0.0, 0.0, 0.0, np.inf, -np.inf])
                p64 = part.astype(np.float64)
                a[0] += p64.size
                a[1] += float(p64.sum())
                a[2] += float((p64 * p64).sum())
                a[3] = min(a[3], float(part.min()))
                a[4] = max(a[4], float(part.max()))

    def row(self, c: int, band: str) -> tuple[float, float, float, float]:
        n, s1, s2, lo, hi = self.acc[(c, band)]
        mean = s1 / n
        return lo, mean, hi, float(np.sqrt(max(s2 / n - mean * mean, 0.0)))


def stream_features(path: Path, frontend: Frontend, normalize: bool = False, npy: Path | None = None,
                    force: bool = False, keep_every: int | None = None) -> tuple[FeatureStats, np.ndarray | None]:
    """Features of an audio file of any length in bounded memory: frames stream from ``audio_stream`` through
    the streaming front end (equal to the offline one) into per-channel spill files, which become ``npy``
    ((channels, frames, bands) float32, written under a temporary name) at the end. Returns the running
    statistics and, with ``keep_every``, every k-th frame (channels, frames / k, bands) for a plot."""
    import tempfile

    cfg = frontend.config
    norm = _shipped_normalization(cfg) if normalize else None
    if npy is not None:
        if npy.suffix != ".npy":
            raise DssdnError(f"{npy}: give a .npy file name (numpy would append .npy)")
        refuse_overwrite(npy, force)
        if not npy.parent.is_dir():
            raise DssdnError(f"{npy.parent}: output folder does not exist")
    stats = FeatureStats(cfg.split_band, cfg.channels)
    kept: list[np.ndarray] = []
    stream = frontend.stream()
    with tempfile.TemporaryDirectory(prefix=".dssdn-features-", dir=npy.parent if npy else None) as tmp:
        spills = [open(Path(tmp) / f"c{c}.f32", "wb") for c in range(cfg.channels)]  # noqa: SIM115
        try:
            def take(frames: np.ndarray) -> None:
                if not len(frames):
                    return
                frames = frames.astype(np.float32)
                if norm is not None:
                    frames = ((frames - norm.mean[None]) / norm.std[None]).astype(np.float32)
                first = stats.frames
                stats.add(frames)
                if npy is not None:
                    for c, fh in enumerate(spills):
                        fh.write(np.ascontiguousarray(frames[:, c]).tobytes())
                if keep_every:
                    pick = np.arange((-first) % keep_every, len(frames), keep_every)
                    kept.append(frames[pick])

            for block in resampled_blocks(path, cfg.sample_rate, min_samples=cfg.n_fft):
                take(stream.push(block))
            take(stream.flush())
        finally:
            for fh in spills:
                fh.close()
        if npy is not None:
            with atomic_path(npy, force) as out, open(out, "wb") as fh:
                header = {"descr": "<f4", "fortran_order": False,
                          "shape": (cfg.channels, stats.frames, cfg.n_mels)}
                np.lib.format.write_array_header_1_0(fh, header)
                for c in range(cfg.channels):
                    with open(Path(tmp) / f"c{c}.f32", "rb") as src:
                        shutil.copyfileobj(src, fh, 1 << 20)
    thumb = np.concatenate(kept).transpose(1, 0, 2) if kept else None
    return stats, thumb


def _shipped_normalization(cfg):
    from .pretrained import load_pretrained

    ckpt = load_pretrained("small")
    if ckpt.frontend_config != cfg:
        raise DssdnError(f"{ckpt.path}: shipped normalisation belongs to another front end")
    return ckpt.normalization


def describe_stats(path: Path, stats: FeatureStats, frontend: Frontend) -> str:
    """The text summary of ``describe`` from running statistics."""
    cfg = frontend.config
    seconds = (stats.frames - 1) * cfg.hop_length / cfg.sample_rate
    shape = (cfg.channels, stats.frames, cfg.n_mels)
    lines = [
        f"{path}: features {shape} (channels, frames, bands) = {seconds:.2f} s at "
        f"{cfg.sample_rate} Hz, hop {cfg.hop_length}, {cfg.n_mels} mel bands",
        f"split at band {cfg.split_band}: low {(cfg.channels, stats.frames, cfg.split_band)}, "
        f"high {(cfg.channels, stats.frames, cfg.n_mels - cfg.split_band)}",
    ]
    for i, name in enumerate(["log-mel", "delta"][: cfg.channels]):
        for band in ("low", "high"):
            lo, mean, hi, std = stats.row(i, band)
            lines.append(f"  {name:7s} {band:4s}  min {lo:8.3f}  mean {mean:8.3f}  max {hi:8.3f}  std {std:7.3f}")
    return "\n".join(lines)


def describe(path: Path, feats: np.ndarray, frontend: Frontend) -> str:
    cfg = frontend.config
    low, high = frontend.split(feats)
    seconds = (feats.shape[1] - 1) * cfg.hop_length / cfg.sample_rate
    names = ["log-mel", "delta"][: feats.shape[0]]
    lines = [
        f"{path}: features {tuple(feats.shape)} (channels, frames, bands) = {seconds:.2f} s at "
        f"{cfg.sample_rate} Hz, hop {cfg.hop_length}, {cfg.n_mels} mel bands",
        f"split at band {cfg.split_band}: low {tuple(low.shape)}, high {tuple(high.shape)}",
    ]
    for i, name in enumerate(names):
        for band, part in (("low", low[i]), ("high", high[i])):
            lines.append(
                f"  {name:7s} {band:4s}  min {part.min():8.3f}  mean {part.mean():8.3f}  max {part.max():8.3f}"
                f"  std {part.std():7.3f}"
            )
    return "\n".join(lines)


def save_npy(path: Path, feats: np.ndarray, force: bool = False) -> None:
    if path.suffix != ".npy":
        raise DssdnError(f"{path}: give a .npy file name (numpy would append .npy)")
    with atomic_path(path, force) as tmp:
        np.save(tmp, feats)


def plot_bands(path: Path, feats: np.ndarray, frontend: Frontend, title: str, force: bool = False,
               every: int = 1) -> None:
    """The low and high mel bands of the log-mel channel, stacked as the model sees them (``feats`` holds
    every ``every``-th frame of a long recording)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refuse_overwrite(path, force)
    if not path.parent.is_dir():
        raise DssdnError(f"{path.parent}: output folder does not exist")
    cfg = frontend.config
    low, high = frontend.split(feats[0])
    t_end = (feats.shape[1] - 1) * every * cfg.hop_length / cfg.sample_rate
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True,
                             gridspec_kw={"height_ratios": [high.shape[1], low.shape[1]]})
    for ax, band, name, (b0, b1) in (
        (axes[0], high, "high band", (cfg.split_band, cfg.n_mels)),
        (axes[1], low, "low band", (0, cfg.split_band)),
    ):
        im = ax.imshow(band.T, origin="lower", aspect="auto", extent=(0, t_end, b0, b1), cmap="magma")
        ax.set_ylabel(f"{name}\nmel band")
        fig.colorbar(im, ax=ax, label="log10 power")
    axes[0].set_title(title)
    axes[1].set_xlabel("time (s)")
    fig.tight_layout()
    with atomic_path(path, force) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
