"""Streaming classification: audio in chunks, one label per hop, as an always-on device runs.

Why a class of its own: ``predict`` cuts a whole file into windows, but a microphone never ends. Here audio
arrives in chunks of any size; ``Frontend.stream`` turns them into exactly the frames the offline path
computes (only the new ones); every ``hop_seconds`` of audio the latest 1-s window (the model's input) is
classified. A window ends ``delta_width // 2`` frames before the newest audio (the delta's look-ahead, 40 ms
at the defaults), and ``flush()`` ends the stream with the offline end padding. Memory is bounded: only the
last window of feature frames is kept.

    clf = StreamClassifier(runner, Frontend(cfg), normalization, labels)   # runner: windows -> logits
    for chunk in microphone():
        for hop in clf.push(chunk):
            print(f"{hop.end_seconds:6.2f} s  {hop.label}  {hop.score:.2f}")
    clf.flush()

``runner`` is any ``Callable[[np.ndarray], np.ndarray]`` taking normalised windows (N, C, T, F) and returning
logits (N, classes), e.g. any ``dssdn_edge.runtime.load(...)`` of a features-in model (.tflite, .onnx, a
checkpoint).

With the C front end (``frontend_native.NativeFrontend``) and a runner that takes int8 NHWC tensors raw (a
runtime model with ``invoke``, ``dequantize``, ``input_scale``: the int8 .tflite files), the window goes into
the model as the int8 rows the C code made: normalisation, quantisation and layout happen there, in C, for the
new frames only, instead of in numpy for the whole window every hop. Same bits as the float path would give
from the same features (tests/test_frontend_native.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .frontend import Frontend, Normalization

Runner = Callable[[np.ndarray], np.ndarray]
DEFAULT_HOP_SECONDS = 0.5


@dataclass(frozen=True)
class HopResult:
    """The label of one hop: the window of frames [first_frame, first_frame + T) of the stream."""

    index: int  # 0, 1, 2, … in order of emission
    first_frame: int
    end_seconds: float  # stream time of the window's last frame centre
    class_index: int
    label: str
    score: float  # softmax probability of the label
    probabilities: np.ndarray = field(repr=False)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class StreamClassifier:
    """Feed audio chunks, get a ``HopResult`` every ``hop_seconds`` once the first full window exists."""

    def __init__(
        self,
        runner: Runner,
        frontend: Frontend,
        normalization: Normalization,
        labels: Sequence[str],
        hop_seconds: float = DEFAULT_HOP_SECONDS,
    ) -> None:
        cfg = frontend.config
        self.hop_frames = int(round(hop_seconds * cfg.sample_rate / cfg.hop_length))
        if self.hop_frames < 1:
            raise ValueError(f"hop_seconds {hop_seconds} is shorter than one frame hop ({cfg.hop_length} samples)")
        self.runner, self.frontend, self.norm, self.labels = runner, frontend, normalization, list(labels)
        self.hop_seconds = self.hop_frames * cfg.hop_length / cfg.sample_rate
        self.window_frames = cfg.segment_frames
        self._int8 = int8_input(runner, frontend)
        if self._int8 is not None:  # int8 rows from C, frame-major (n, n_mels, channels): the model's NHWC rows
            self._stream = frontend.int8_stream(normalization, *self._int8)  # type: ignore[attr-defined]
            self._push, self._flush = self._stream.push_int8, self._stream.flush_int8
            self._frames = np.zeros((0, cfg.n_mels, cfg.channels), np.int8)
        else:  # normalised float features, frame-major (n, channels, n_mels)
            self._stream = frontend.stream()
            self._push, self._flush = self._normalised(self._stream.push), self._normalised(self._stream.flush)
            self._frames = np.zeros((0, cfg.channels, cfg.n_mels), np.float32)
        self._total = 0  # feature frames seen so far
        self._next_end = self.window_frames  # frame count at which the next window is classified
        self._emitted = 0

    @property
    def int8_path(self) -> bool:
        """True when windows go into the model as the C front end's int8 rows."""
        return self._int8 is not None

    def _normalised(self, step: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        """A float stream step whose (n, channels, n_mels) frames come out normalised (``Normalization.apply``'s
        arithmetic, frame-major)."""
        def run(*args: np.ndarray) -> np.ndarray:
            return ((step(*args) - self.norm.mean) / self.norm.std).astype(np.float32)

        return run

    def push(self, chunk: np.ndarray) -> list[HopResult]:
        """Add samples (any length); return the hops they completed, oldest first."""
        return self._consume(self._push(chunk))

    def flush(self) -> list[HopResult]:
        """End of stream: the offline end padding finishes the last frames; a last partial hop is classified
        when at least one full window exists and frames arrived since the previous label."""
        out = self._consume(self._flush())
        if self._total >= self.window_frames and self._next_end - self.hop_frames < self._total:
            out += self._classify(self._frames[-self.window_frames :], self._total - self.window_frames)
        return out

    def _consume(self, frames: np.ndarray) -> list[HopResult]:
        """frames: the new frames, frame-major and ready for the model (normalised floats or int8 rows)."""
        out: list[HopResult] = []
        if len(frames) == 0:
            return out
        history = np.concatenate([self._frames, frames])
        self._total += len(frames)
        while self._next_end <= self._total:
            end = self._next_end - (self._total - len(history))  # index in history
            out += self._classify(history[end - self.window_frames : end], self._next_end - self.window_frames)
            self._next_end += self.hop_frames
        keep = max(self.window_frames, self._total - (self._next_end - self.window_frames))
        self._frames = history[-keep:]
        return out

    def _logits(self, window: np.ndarray) -> np.ndarray:
        """One frame-major window → the model's logits."""
        if self._int8 is not None:
            raw = self.runner.invoke(np.ascontiguousarray(window[None]))  # type: ignore[attr-defined]
            return np.asarray(self.runner.dequantize(raw), np.float64)[0]  # type: ignore[attr-defined]
        x = np.ascontiguousarray(window.transpose(1, 0, 2)[None], np.float32)  # (1, channels, frames, n_mels)
        return np.asarray(self.runner(x), np.float64)[0]

    def _classify(self, window: np.ndarray, first_frame: int) -> list[HopResult]:
        logits = self._logits(window)
        probs = softmax(logits)
        k = int(probs.argmax())
        cfg = self.frontend.config
        result = HopResult(
            self._emitted,
            first_frame,
            (first_frame + self.window_frames - 1) * cfg.hop_length / cfg.sample_rate,
            k,
            self.labels[k] if k < len(self.labels) else str(k),
            float(probs[k]),
            probs,
        )
        self._emitted += 1
        return [result]



def int8_input(runner: Runner, frontend: Frontend) -> tuple[float, int] | None:
    """(scale, zero point) when the front end makes the model's input itself: a front end with ``int8_stream``
    (the C one, ``frontend_native.NativeFrontend``) and a runtime model invoked raw whose input is one int8 NHWC
    window; None (the float path) for anything else, e.g. the numpy front end."""
    if not hasattr(frontend, "int8_stream") or not all(hasattr(runner, a) for a in ("invoke", "dequantize")):
        return None
    scale = getattr(runner, "input_scale", None)
    dtype = np.dtype(getattr(runner, "input_dtype", np.float32))
    if dtype != np.int8 or not scale or getattr(runner, "layout", None) != "NHWC":
        return None
    cfg = frontend.config
    if tuple(getattr(runner, "input_shape", ())) != (1, cfg.segment_frames, cfg.n_mels, cfg.channels):
        return None
    return float(scale), int(getattr(runner, "input_zero_point", 0))
