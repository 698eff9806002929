"""`dssdn-edge features`: features of one file, a text summary, and .npy / PNG outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import load_audio
from .errors import DssdnError
from .fileio import atomic_path, refuse_overwrite
from .frontend import Frontend


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


def plot_bands(path: Path, feats: np.ndarray, frontend: Frontend, title: str, force: bool = False) -> None:
    """The low and high mel bands of the log-mel channel, stacked as the model sees them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refuse_overwrite(path, force)
    if not path.parent.is_dir():
        raise DssdnError(f"{path.parent}: output folder does not exist")
    cfg = frontend.config
    low, high = frontend.split(feats[0])
    t_end = (feats.shape[1] - 1) * cfg.hop_length / cfg.sample_rate
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
