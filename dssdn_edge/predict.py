"""Classify audio files with an exported model (.onnx, .tflite fp32/int8) or a checkpoint.

The same path a device follows: audio → front end → stored normalisation → 1-s windows (every 0.5 s) →
model → mean of the window logits. Labels, front end and normalisation come from the export's validated
``manifest.json`` (or a checkpoint's sidecar), never from defaults, and a model file runs only if the
manifest lists it with a matching SHA-256. Files stream through in blocks (``audio_stream``), so memory
does not grow with the length of a recording; one bad file does not stop the others.

The front end is the C one (``frontend_native``: the code ``mcu/`` ships, built once into the user's cache)
unless ``frontend="numpy"`` or ``$DSSDN_FRONTEND`` says otherwise, or no C compiler exists (then numpy, with
one line saying so). Streaming an int8 .tflite takes the C int8 rows straight into the model (``stream``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import runtime
from .audio_stream import file_windows, resampled_blocks
from .checkpoint import sha256_file
from .errors import AudioError, DssdnError, ExportError
from .frontend import Frontend, FrontendConfig, Normalization
from .frontend_native import make_frontend
from .paths import regular_file
from .stream import HopResult, StreamClassifier, softmax
from .windows import WINDOW_STRIDE

MODEL_SUFFIXES = (".onnx", ".tflite", ".safetensors")
MCU_MODEL = "dssdn_model.c"  # an export's generated microcontroller model (mcu/), run as its host build


@dataclass
class Prediction:
    path: str
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # softmax of the mean window logits
    windows: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "windows": self.windows,
            "top": [{"label": lab, "score": s} for lab, s in zip(self.labels, self.scores, strict=True)],
        }


class Predictor:
    """Front end + normalisation + one model runtime; ``predict`` returns the top-k labels per file."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        frontend: FrontendConfig,
        normalization: Normalization,
        labels: list[str],
        source: str,
        frontend_kind: str | None = None,
    ) -> None:
        self.run = run
        self.frontend: Frontend = make_frontend(frontend, frontend_kind)  # "auto" | "c" | "numpy"
        self.normalization = normalization
        self.labels = labels
        self.source = source

    @classmethod
    def from_path(cls, path: str | Path, frontend: str | None = None) -> Predictor:
        """The predictor of a model file; ``frontend`` "auto" (default), "c" or "numpy" (``make_frontend``)."""
        path = Path(path)
        if path.is_dir():
            models = sorted(p.name for p in path.iterdir() if p.suffix in MODEL_SUFFIXES)
            hint = f" (e.g. {path / models[0]})" if models else ""
            raise ExportError(f"{path}: is a folder; give a model file inside it{hint}")
        regular_file(path, "model file", ExportError)  # a FIFO or a device would hang the hash
        if path.suffix == ".safetensors":
            return cls._from_checkpoint(path, frontend)
        if path.name == MCU_MODEL:  # the generated microcontroller C, built for this machine
            return cls._from_export(path, frontend, path.parent.parent, f"{path.parent.name}/{path.name}")
        if path.suffix not in (".onnx", ".tflite"):
            raise ExportError(
                f"{path}: unknown model type (expected .onnx, .tflite, .safetensors or mcu/{MCU_MODEL})")
        return cls._from_export(path, frontend)

    @classmethod
    def _from_export(cls, path: Path, frontend: str | None = None, folder: Path | None = None,
                     rel: str | None = None) -> Predictor:
        from .runtime.manifest import MANIFEST, ManifestError, load_manifest

        folder, rel = folder or path.parent, rel or path.name
        manifest_file = folder / MANIFEST
        if not manifest_file.is_file():
            raise ExportError(
                f"{manifest_file}: no {MANIFEST} beside {path.name} (labels and front end come from it; "
                "use the whole export folder)"
            )
        try:
            manifest = load_manifest(folder, verify=False)  # validated: schema, labels, front end
        except ManifestError as exc:
            raise ExportError(str(exc)) from None
        entry = manifest["artifacts"].get(rel)
        if entry is None:
            raise ExportError(f"{path}: not listed in {manifest_file} (not part of this export)")
        if entry["sha256"] != sha256_file(path):
            raise ExportError(
                f"{path}: file does not match the sha256 in {manifest_file} (modified or from another export)"
            )
        args = (FrontendConfig.from_dict(manifest["frontend"]), Normalization.from_dict(manifest["normalization"]),
                list(manifest["labels"]), str(path))
        model = runtime.load(path.parent) if path.name == MCU_MODEL else _open(path)
        if model.kind == "audio-tflite":  # the phone file: front end inside the model (export/phone.py)
            return AudioInPredictor(model, *args, frontend)
        return cls(model, *args, frontend)

    @classmethod
    def _from_checkpoint(cls, path: Path, frontend: str | None = None) -> Predictor:
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        # a clip is a handful of windows: one thread (the runtime's default) is fastest on a small CPU
        run = runtime.load(ckpt.model, kind="torch")
        return cls(run, ckpt.frontend_config, ckpt.normalization, ckpt.labels, str(path), frontend)

    # -- one file ------------------------------------------------------------------------------------
    def window_logits(self, audio_path: str | Path, stride: int = WINDOW_STRIDE,
                      allow_silent: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(starts, logits) per batch of windows, streamed from the file."""
        for batch in file_windows(audio_path, self.frontend, stride, allow_silent=allow_silent):
            yield batch.starts, self.run(self.normalization.apply(batch.windows))

    def logits(self, audio_path: str | Path) -> tuple[np.ndarray, int]:
        """Mean window logits of one file and the number of windows used."""
        total, n = None, 0
        for _, logits in self.window_logits(audio_path):
            s = logits.astype(np.float64).sum(axis=0)
            total = s if total is None else total + s
            n += len(logits)
        assert total is not None  # file_windows raises for a file without a window
        return total / n, n

    def predict_one(self, path: str | Path, top_k: int = 5) -> Prediction:
        logits, n = self.logits(path)
        if len(logits) != len(self.labels):
            raise ExportError(f"{self.source}: the model has {len(logits)} outputs but {len(self.labels)} labels")
        probs = softmax(logits)
        order = np.argsort(-probs, kind="stable")[:top_k]
        return Prediction(str(path), [self.labels[i] for i in order], [float(probs[i]) for i in order], n)

    def predict(self, paths: Sequence[str | Path], top_k: int = 5) -> list[Prediction]:
        """Every file gets a ``Prediction``; a file that fails gets one with ``error`` set, and the rest go on."""
        out = []
        for p in paths:
            try:
                out.append(self.predict_one(p, top_k))
            except DssdnError as exc:
                out.append(Prediction(str(p), error=str(exc)))
        return out

    def stream(self, audio_path: str | Path, hop_seconds: float = 0.5) -> Iterator[HopResult]:
        """A label every ``hop_seconds`` for the latest 1-s window, as an always-on device computes it while
        the audio arrives (``stream.StreamClassifier``); the file is read block by block."""
        cfg = self.frontend.config
        clf = StreamClassifier(self.run, self.frontend, self.normalization, self.labels, hop_seconds)
        quiet = QuietWindows(cfg)
        total = 0
        for block in resampled_blocks(audio_path, cfg.sample_rate, cfg.hop_length):
            total += len(block)
            if 0 < cfg.segment_samples - total and len(block) == 0:  # the end of a clip shorter than 1 s
                block = np.zeros(cfg.segment_samples - total, np.float32)
            quiet.push(block)
            yield from quiet.audible(clf.push(block))
        quiet.push(np.zeros(0, np.float32), final=True)
        yield from quiet.audible(clf.flush())
        if quiet.kept == 0:
            raise AudioError(f"{audio_path}: audio is all digital silence (no non-zero 1-s window)")


class QuietWindows:
    """Drops the stream's hops whose 1-s window saw only digital zeros, as ``predict`` without ``--stream``
    skips them (``data.window_starts``): a model has no answer for silence, and any label it gives is
    noise. Per-frame silence flags are kept as a run-length count, so memory does not grow with the file."""

    def __init__(self, cfg: FrontendConfig) -> None:
        from .audio_stream import SilenceTracker

        self.tracker = SilenceTracker(cfg)
        self.seg = cfg.segment_frames
        self.flags = np.zeros(0, bool)  # silence of frames [offset, offset + len(flags))
        self.offset = 0
        self.kept = 0

    def push(self, audio: np.ndarray, final: bool = False) -> None:
        self.flags = np.concatenate([self.flags, self.tracker.push(audio, final)])

    def audible(self, hops: list[HopResult]) -> Iterator[HopResult]:
        for h in hops:
            lo, hi = h.first_frame - self.offset, h.first_frame + self.seg - self.offset
            if lo < 0 or hi > len(self.flags) or not self.flags[lo:hi].all():  # unknown counts as sound
                self.kept += 1
                yield h
            cut = max(0, min(lo, len(self.flags)))
            self.flags, self.offset = self.flags[cut:], self.offset + cut


class AudioInPredictor(Predictor):
    """The phone file (``.audio.tflite``) has the front end inside: it takes each 1-s window's raw audio with
    the context its frames and delta read (``FrontendConfig.context_samples``), cut by the same rule and
    streamed the same way, and returns softmax scores whose log stands in for the logits (their mean over
    windows ranks classes exactly as the mean of logits does). With the context, a window's in-graph features
    are the features-in path's for that window, so this classifies as the features-in file inside it does;
    a phone app feeds MediaPipe the same pieces."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], frontend: FrontendConfig,
                 normalization: Normalization, labels: list[str], source: str,
                 frontend_kind: str | None = None) -> None:
        super().__init__(run, frontend, normalization, labels, source, frontend_kind)
        takes = getattr(run, "samples", None)
        if takes is not None and takes != frontend.context_samples:
            raise ExportError(
                f"{source}: takes {takes} samples, but its manifest's front end gives a window + context of "
                f"{frontend.context_samples} (made by another dssdn-edge version; export it again)"
            )

    def window_logits(self, audio_path: str | Path, stride: int = WINDOW_STRIDE,
                      allow_silent: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for batch in file_windows(audio_path, self.frontend, stride, allow_silent=allow_silent, with_audio=True):
            yield batch.starts, runtime.log_scores(self.run(batch.audio))

    def stream(self, audio_path: str | Path, hop_seconds: float = 0.5) -> Iterator[HopResult]:
        raise ExportError(f"{self.source}: --stream runs the features-in models of the export (.tflite, .onnx); "
                          "the phone file classifies whole 1-s windows (each with its context)")


def _open(path: Path) -> runtime.Runtime:
    """The export file in the runtime layer; a file the runtime refuses is a one-line ExportError."""
    kind = runtime.kind_of(str(path))
    what = {"audio-tflite": "waveform-in .tflite", "tflite": ".tflite model", "onnx": ".onnx model"}[kind]
    try:
        return runtime.load(path, kind=kind)
    except (runtime.ModelLoadError, ValueError) as exc:
        raise ExportError(f"{path}: not a loadable {what} ({exc})") from None
