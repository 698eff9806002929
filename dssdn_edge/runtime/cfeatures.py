"""The device's C front end: ctypes binding of a compiled csrc/dssdn_features.c — load it, check it, stream.

Why in the runtime package and self-contained (ctypes and numpy only): bench copies this package to a device,
with a library cross-built for it, so a Raspberry Pi runs the very C front end the host and the microcontroller
run (``logmel`` is its numpy twin, the fallback). ``dssdn_edge.frontend_native`` builds the libraries and wraps
this as a ``Frontend``. Works with numpy >= 1.17 (Raspberry Pi OS).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
from typing import Any

import numpy as np

DESCRIBE_LEN = 8


class LibraryError(Exception):
    """A library that cannot be loaded, or was built for another front end config."""


def config_id(cfg: dict[str, Any]) -> int:
    """32 bits of the SHA-256 of a front-end config dict (``FrontendConfig.to_dict()``, a manifest's
    ``frontend``): what the generated tables compile into the library as DSSDN_CONFIG_ID."""
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def describe_values(cfg: dict[str, Any]) -> list[int]:
    """What ``dssdn_features_describe`` must report for ``cfg``."""
    delta = int(cfg.get("delta_width", 0))
    segment = int(round(float(cfg.get("segment_seconds", 1.0)) * int(cfg["sample_rate"])))
    return [config_id(cfg), int(cfg["sample_rate"]), int(cfg["n_fft"]), int(cfg["hop_length"]), int(cfg["n_mels"]),
            delta, 2 if delta else 1, 1 + segment // int(cfg["hop_length"])]


class FeatureLibrary:
    """One loaded build of the C front end for one config (a dict as ``FrontendConfig.to_dict()``)."""

    def __init__(self, path: str, cfg: dict[str, Any]) -> None:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise LibraryError(f"{path}: cannot load ({exc})") from None
        self.path, self.config = str(path), dict(cfg)
        desc = (ctypes.c_uint32 * DESCRIBE_LEN)()
        try:
            lib.dssdn_features_describe(desc)
        except AttributeError:
            raise LibraryError(f"{path}: not a dssdn_features library") from None
        if list(desc) != describe_values(cfg):
            raise LibraryError(f"{path}: built for another front end config (id {desc[0]:08x})")
        lib.dssdn_features_state_bytes.restype = ctypes.c_int
        self.state_bytes = int(lib.dssdn_features_state_bytes())
        ptr = ctypes.c_void_p
        lib.dssdn_features_init.argtypes = [ptr, ptr]
        lib.dssdn_features_init.restype = None
        lib.dssdn_features_push.argtypes = [ptr, ptr, ctypes.c_int, ptr, ptr, ctypes.c_int]
        lib.dssdn_features_push.restype = ctypes.c_int
        lib.dssdn_features_flush.argtypes = [ptr, ptr, ptr, ctypes.c_int]
        lib.dssdn_features_flush.restype = ctypes.c_int
        lib.dssdn_features_quantize.argtypes = [ptr, ptr, ptr]
        lib.dssdn_features_quantize.restype = None
        self._lib = lib
        self.n_fft, self.hop, self.n_mels = desc[2], desc[3], desc[4]
        self.half_width, self.channels = desc[5] // 2, desc[6]

        class Params(ctypes.Structure):
            _fields_ = [
                ("mean", (ctypes.c_float * self.n_mels) * self.channels),
                ("std", (ctypes.c_float * self.n_mels) * self.channels),
                ("scale", ctypes.c_float),
                ("zero_point", ctypes.c_int32),
            ]

        self._params_type = Params

    def params(self, mean: np.ndarray, std: np.ndarray, scale: float | None = None,
               zero_point: int = 0) -> ctypes.Structure:
        """The C struct of one model's input: normalisation (channels, n_mels) and int8 scale / zero point."""
        shape = (self.channels, self.n_mels)
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        if mean.shape != shape or std.shape != shape:
            raise LibraryError(f"normalisation is {mean.shape}, the front end gives {shape}")
        p = self._params_type()
        np.ctypeslib.as_array(p.mean)[:] = mean
        np.ctypeslib.as_array(p.std)[:] = std
        if scale is not None:
            if not float(scale) > 0 or float(np.float32(scale)) != float(scale):
                raise LibraryError(f"int8 input scale {scale!r} is not a positive float32")
            if not -128 <= int(zero_point) <= 127:
                raise LibraryError(f"int8 input zero point {zero_point} is outside -128..127")
            p.scale, p.zero_point = float(scale), int(zero_point)
        return p

    def stream(self, params: ctypes.Structure | None = None) -> FeatureStream:
        return FeatureStream(self, params)

    def clip(self, params: ctypes.Structure | None = None) -> ClipFeatures:
        return ClipFeatures(self, params)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio → unnormalised (channels, frames, n_mels) float32: ``Frontend.features`` in C."""
        return np.ascontiguousarray(self.clip()(audio).transpose(1, 0, 2))

    def features_int8(self, audio: np.ndarray, params: ctypes.Structure) -> np.ndarray:
        """Mono audio → the model's int8 input rows (frames, n_mels, channels), normalised and quantised in C."""
        if not params.scale > 0:
            raise LibraryError("these params have no int8 model input (give params with a scale)")
        return self.clip(params)(audio).copy()

    def quantize(self, frames: np.ndarray, params: ctypes.Structure) -> np.ndarray:
        """(n, channels, n_mels) float features → (n, n_mels, channels) int8 rows, by the C code alone."""
        frames = np.ascontiguousarray(frames, np.float32).reshape(-1, self.channels, self.n_mels)
        out = np.empty((len(frames), self.n_mels, self.channels), np.int8)
        for i in range(len(frames)):
            self._lib.dssdn_features_quantize(ctypes.addressof(params), frames[i].ctypes.data, out[i].ctypes.data)
        return out


class ClipFeatures:
    """The features of whole clips (``Frontend.features``'s offline frames), one clip after another: what a clip
    classifier (the bench's audio → label) runs per clip. Why not a ``FeatureStream`` per clip: on the host the
    C code takes ~0.07 ms per second of audio, so Python's share matters. Here the whole clip is three C calls
    (init, push, flush) on addresses taken once, written straight into one output buffer, made anew only when
    the clip length changes: no per-frame crossing, no allocation per clip of the same length. With int8
    ``params`` the model's int8 rows (frames, n_mels, channels), else unnormalised float frames (frames,
    channels, n_mels). The result is a view of that buffer: valid until the next call (copy it to keep it)."""

    def __init__(self, library: FeatureLibrary, params: ctypes.Structure | None = None) -> None:
        self._lib, self._params = library, params  # the struct must outlive the C state that points at it
        self._int8 = params is not None and params.scale > 0
        self._state = ctypes.create_string_buffer(library.state_bytes)
        self._state_ptr = ctypes.addressof(self._state)
        self._params_ptr = None if params is None else ctypes.addressof(params)
        c = library._lib  # noqa: SLF001 - the binding's own library
        self._init, self._push, self._flush = c.dssdn_features_init, c.dssdn_features_push, c.dssdn_features_flush
        self._frame = library.n_mels * library.channels  # values per frame, float or int8
        self._shape = (library.n_mels, library.channels) if self._int8 else (library.channels, library.n_mels)
        self._dtype = np.int8 if self._int8 else np.float32
        self._flush_frames = -(-(library.n_fft // 2) // library.hop) + library.half_width
        self._samples = -1
        self._out = np.empty(0, self._dtype)
        self._out_ptr = 0

    def _size_for(self, n: int) -> None:
        cap = -(-n // self._lib.hop) + self._flush_frames  # frames push and flush may write, at most
        self._out = np.empty((cap, *self._shape), self._dtype)
        self._out_ptr, self._cap, self._samples = self._out.ctypes.data, cap, n

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio → its frames (a view, valid until the next call)."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            audio = audio.ravel()
        n = len(audio)
        if n != self._samples:
            self._size_for(n)
        out = self._out_ptr
        self._init(self._state_ptr, self._params_ptr)
        if self._int8:
            got = self._push(self._state_ptr, audio.ctypes.data, n, None, out, self._cap)
            more = self._flush(self._state_ptr, None, out + got * self._frame, self._cap - got) if got >= 0 else -1
        else:
            got = self._push(self._state_ptr, audio.ctypes.data, n, out, None, self._cap)
            more = self._flush(self._state_ptr, out + 4 * got * self._frame, None, self._cap - got) if got >= 0 else -1
        if more < 0:
            raise LibraryError("the C front end refused the call (its output capacity is computed here: a bug)")
        return self._out[: got + more]


class FeatureStream:
    """``StreamingFrontend`` in C: float frames (n, channels, n_mels), unnormalised, or with int8 params the
    model's int8 rows (n, n_mels, channels). Each call gives one kind; both advance the same audio."""

    def __init__(self, library: FeatureLibrary, params: ctypes.Structure | None = None) -> None:
        self._lib, self._params = library, params  # the struct must outlive the C state that points at it
        self._state = ctypes.create_string_buffer(library.state_bytes)
        self._int8 = params is not None and params.scale > 0
        library._lib.dssdn_features_init(self._state, None if params is None else ctypes.addressof(params))
        self._flush_frames = -(-(library.n_fft // 2) // library.hop) + library.half_width
        self.closed = False

    def _call(self, samples: np.ndarray | None, int8: bool) -> np.ndarray:
        lib = self._lib
        if int8 and not self._int8:
            raise LibraryError("this stream has no int8 model input (give params with a scale)")
        if samples is None:
            cap = self._flush_frames
        else:
            samples = np.ascontiguousarray(samples, dtype=np.float32).ravel()
            cap = -(-len(samples) // lib.hop)
        if int8:
            out = np.empty((cap, lib.n_mels, lib.channels), np.int8)
            args = (None, out.ctypes.data)
        else:
            out = np.empty((cap, lib.channels, lib.n_mels), np.float32)
            args = (out.ctypes.data, None)
        if samples is None:
            n = lib._lib.dssdn_features_flush(self._state, *args, cap)
        else:
            n = lib._lib.dssdn_features_push(self._state, samples.ctypes.data, len(samples), *args, cap)
        if n < 0:
            raise LibraryError("the C front end refused the call (its output capacity is computed here: a bug)")
        return out[:n]

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; the (n, channels, n_mels) unnormalised float32 frames they completed."""
        return self._push(chunk, False)

    def push_int8(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; the (n, n_mels, channels) int8 model-input rows they completed."""
        return self._push(chunk, True)

    def flush(self) -> np.ndarray:
        """End of stream (the offline end padding); an already flushed stream gives no frames."""
        return self._flush(False)

    def flush_int8(self) -> np.ndarray:
        return self._flush(True)

    def _push(self, chunk: np.ndarray, int8: bool) -> np.ndarray:
        if self.closed:
            raise RuntimeError("stream already flushed")
        return self._call(chunk, int8)

    def _flush(self, int8: bool) -> np.ndarray:
        if self.closed:
            lib = self._lib
            return np.zeros((0, lib.n_mels, lib.channels) if int8 else (0, lib.channels, lib.n_mels),
                            np.int8 if int8 else np.float32)
        out = self._call(None, int8)
        self.closed = True
        return out


class WindowStream:
    """The newest ``frames`` frames of a stream, frame-major, as an always-on device classifies them every hop:
    with int8 ``params`` the model's int8 rows (frames, n_mels, channels), the block an NHWC model takes; else
    float frames (frames, channels, n_mels), normalised with ``mean`` / ``std`` (channels, n_mels) when given.
    Frames go into a buffer twice the window long, so a window is always one contiguous slice and a hop copies
    only its new frames (plus one window's worth per wrap)."""

    def __init__(self, library: FeatureLibrary, frames: int, params: ctypes.Structure | None = None,
                 mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self.stream = library.stream(params)
        self.frames = frames
        self._int8 = params is not None
        self._norm = None if mean is None or std is None else (np.asarray(mean, np.float32),
                                                               np.asarray(std, np.float32))
        shape = (library.n_mels, library.channels) if self._int8 else (library.channels, library.n_mels)
        self._buf = np.zeros((2 * frames, *shape), np.int8 if self._int8 else np.float32)
        self._end = 0  # frames written into _buf
        self.total = 0  # frames seen in the stream

    def push(self, chunk: np.ndarray) -> int:
        """Add samples; return how many frames they completed."""
        if self._int8:
            new = self.stream.push_int8(chunk)
        else:
            new = self.stream.push(chunk)
            if self._norm is not None:
                new = (new - self._norm[0]) / self._norm[1]  # float32, as Normalization.apply
        n = len(new)
        if n >= self.frames:
            self._buf[: self.frames] = new[-self.frames :]
            self._end = self.frames
        elif n:
            if self._end + n > len(self._buf):
                keep = self.frames - n
                self._buf[:keep] = self._buf[self._end - keep : self._end]
                self._end = keep
            self._buf[self._end : self._end + n] = new
            self._end += n
        self.total += n
        return n

    def window(self) -> np.ndarray | None:
        """The newest ``frames`` frames (a view, valid until the next push), or None before there are as many."""
        if self.total < self.frames:
            return None
        return self._buf[self._end - self.frames : self._end]


class ModelFeed:
    """The C front end feeding one export's models, as the bench drives it: one loaded library and the export's
    normalisation (channels, n_mels); int8 NHWC models get the C int8 rows, others normalised float frames."""

    def __init__(self, library: FeatureLibrary, mean: np.ndarray, std: np.ndarray, frames: int) -> None:
        self.lib, self.frames = library, frames
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def int8_params(self, model: Any) -> ctypes.Structure | None:
        """The C struct that makes ``model``'s input directly (one int8 NHWC window), or None: the float path."""
        lib = self.lib
        if (getattr(model, "layout", None) != "NHWC" or np.dtype(model.input_dtype) != np.int8
                or not model.input_scale
                or tuple(model.input_shape) != (1, self.frames, lib.n_mels, lib.channels)):
            return None
        return lib.params(self.mean, self.std, model.input_scale, model.input_zero_point)

    def windows(self, model: Any) -> WindowStream:
        """A stream of ``model``'s windows: int8 rows for an int8 NHWC model, else normalised float frames."""
        params = self.int8_params(model)
        if params is not None:
            return WindowStream(self.lib, self.frames, params)
        return WindowStream(self.lib, self.frames, mean=self.mean, std=self.std)


def check_against(lib: FeatureLibrary, reference: np.ndarray, audio: np.ndarray, mean: np.ndarray, std: np.ndarray,
                  int8: tuple[float, int] | None = None) -> dict[str, Any]:
    """The library against a numpy front end's (channels, frames, n_mels) features of the same audio: the largest
    difference (all values, and those within 60 dB of their frame's loudest band, where float32 holds 1e-4),
    and with an int8 input's (scale, zero point) the int8 rows that differ from numpy's (float32 round-off
    across a rounding boundary: at most one step). ``ok`` when both hold."""
    got = lib.features(audio)
    if got.shape != reference.shape:
        return {"ok": False, "error": f"C gives {got.shape}, numpy {reference.shape}"}
    diff = np.abs(got.astype(np.float64) - reference)
    peak = reference[0].max(axis=-1, keepdims=True)
    near = np.broadcast_to(reference[0] >= peak - 6.0, reference.shape)
    out: dict[str, Any] = {"values": int(reference.size), "max_abs": float(diff.max()),
                           "max_abs_within_60db": float(diff[near].max())}
    if int8 is not None:
        scale, zero_point = int8
        norm = ((reference - np.asarray(mean, np.float32)[:, None, :]) / np.asarray(std, np.float32)[:, None, :])
        want = np.clip(np.round(norm.astype(np.float32).astype(np.float64) / scale) + zero_point, -128, 127)
        rows = lib.features_int8(audio, lib.params(mean, std, scale, zero_point))
        steps = np.abs(rows.astype(np.int16) - want.transpose(1, 2, 0).astype(np.int16))
        out.update(int8_differing=int((steps > 0).sum()), int8_max_step=int(steps.max()))
    out["ok"] = out["max_abs_within_60db"] <= 1e-4 and out.get("int8_max_step", 0) <= 1
    return out
