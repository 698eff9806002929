"""Classify audio files with an exported model (.onnx, .tflite fp32/int8) or a checkpoint.

The same path a device follows: load_audio → Frontend.features → stored normalisation → 1-s windows
(stride 25 frames) → model → mean of the window logits. Labels, front end and normalisation come from
the export's ``manifest.json`` beside the model (or a checkpoint's sidecar), never from defaults, so a
model is always fed the features it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import load_audio
from .checkpoint import sha256_file
from .data import silent_frames
from .errors import AudioError, ExportError
from .frontend import Frontend, FrontendConfig, Normalization

WINDOW_STRIDE = 25  # frames, as dssdn_edge.evaluate / training's clip-level evaluation


def clip_windows(
    path: str | Path, frontend: Frontend, stride: int = WINDOW_STRIDE, allow_silent: bool = False
) -> np.ndarray:
    """Unnormalised (k, channels, frames, bands) 1-s windows of one audio file.

    A clip shorter than one window (but at least one hop long) is zero-padded to one window, as ESC-50
    pads its short sounds; windows whose audio is all digital zeros are dropped. A file with no window
    left is an ``AudioError`` unless ``allow_silent`` (then k = 0).
    """
    cfg = frontend.config
    audio = load_audio(path, cfg.sample_rate, min_samples=cfg.hop_length)
    if len(audio) < cfg.segment_samples:
        audio = np.pad(audio, (0, cfg.segment_samples - len(audio)))
    feats = frontend.features(audio)
    silent = silent_frames(audio, cfg)
    seg, n = cfg.segment_frames, feats.shape[1]
    starts = range(0, n - seg + 1, stride)
    keep = [s for s in starts if not silent[s : s + seg].all()]
    if not keep and not allow_silent:
        raise AudioError(f"{path}: audio is all digital silence (no non-zero 1-s window)")
    out = np.zeros((len(keep), feats.shape[0], seg, feats.shape[2]), np.float32)
    for k, s in enumerate(keep):
        out[k] = feats[:, s : s + seg]
    return out


@dataclass
class Prediction:
    path: str
    labels: list[str]
    scores: list[float]  # softmax of the mean window logits
    windows: int

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "windows": self.windows,
            "top": [{"label": lab, "score": s} for lab, s in zip(self.labels, self.scores, strict=True)],
        }


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


class Predictor:
    """Front end + normalisation + one model runtime; ``predict`` returns the top-k labels per file."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        frontend: FrontendConfig,
        normalization: Normalization,
        labels: list[str],
        source: str,
    ) -> None:
        self.run = run
        self.frontend = Frontend(frontend)
        self.normalization = normalization
        self.labels = labels
        self.source = source

    @classmethod
    def from_path(cls, path: str | Path) -> Predictor:
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: model file not found")
        if path.suffix == ".safetensors":
            return cls._from_checkpoint(path)
        if path.suffix not in (".onnx", ".tflite"):
            raise ExportError(f"{path}: unknown model type (expected .onnx, .tflite or .safetensors)")
        from .export.manifest import load_manifest

        manifest_file = path.parent / "manifest.json"
        if not manifest_file.is_file():
            raise ExportError(
                f"{manifest_file}: no manifest.json beside {path.name} (labels and front end "
                "come from it; use the whole export folder)"
            )
        manifest = load_manifest(path.parent, verify=False)
        entry = manifest["artifacts"].get(path.name)
        if entry is not None and entry["sha256"] != sha256_file(path):
            raise ExportError(
                f"{path}: file does not match the sha256 in {manifest_file} (modified or from another export)"
            )
        run = _onnx_runner(path) if path.suffix == ".onnx" else _tflite_runner(path)
        return cls(
            run,
            FrontendConfig.from_dict(manifest["frontend"]),
            Normalization.from_dict(manifest["normalization"]),
            list(manifest["labels"]),
            str(path),
        )

    @classmethod
    def _from_checkpoint(cls, path: Path) -> Predictor:
        import torch

        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        model = ckpt.model.eval()

        def run(x: np.ndarray) -> np.ndarray:
            # a clip is a handful of windows: one thread is fastest and never oversubscribes a small CPU
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.inference_mode():
                    return model(torch.from_numpy(x)).float().numpy()
            finally:
                torch.set_num_threads(threads)

        return cls(run, ckpt.frontend_config, ckpt.normalization, ckpt.labels, str(path))

    def logits(self, audio_path: str | Path) -> tuple[np.ndarray, int]:
        """Mean window logits of one file and the number of windows used."""
        windows = self.normalization.apply(clip_windows(audio_path, self.frontend))
        return self.run(windows).mean(axis=0), len(windows)

    def predict(self, paths: Sequence[str | Path], top_k: int = 5) -> list[Prediction]:
        out = []
        for p in paths:
            logits, n = self.logits(p)
            probs = softmax(logits.astype(np.float64))
            order = np.argsort(-probs, kind="stable")[:top_k]
            out.append(
                Prediction(str(p), [self.labels[i] for i in order], [float(probs[i]) for i in order], n)
            )
        return out


def _tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from .export.tflite import LiteRTRunner

    try:
        return LiteRTRunner(path.read_bytes())
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"{path}: not a loadable .tflite model ({exc})") from None


def _onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from .export.onnx import OnnxRunner

    return OnnxRunner.from_file(path)
