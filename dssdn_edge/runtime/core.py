"""Run any model file the project writes: one interface over LiteRT, tflite-runtime, ONNX Runtime, TFLM and torch.

Why one file with no ``dssdn_edge`` import: it is also the device's runtime. ``dssdn-edge bench`` copies it
to a Raspberry Pi (as ``dssdn_runtime.py``, beside ``runner.py``), so the host's predict, export checks and
benchmarks and the device's benchmark run the same loading, threading and quantisation code. It needs only
Python >= 3.9, numpy and the runtime it opens (each imported when first used).

The interface (``Runtime``): float windows in (N, C, T, M) — the layout the torch model takes — or, for the
phone file, (N, samples) audio; float logits or scores out (``__call__``). Layout (NHWC files) and int8
quantisation are handled inside with one rule (``quantize`` / ``dequantize``). For callers that need the
exact integer tensors (TFLM, bit-exactness checks, the device-agreement check) there is the raw entry:
``prepare`` (float → the model's input tensor), ``invoke`` (raw tensor → raw output) and ``dequantize``.

Threads and delegate are chosen here only: ``threads`` (default 1: a clip is a handful of windows, and one
thread never oversubscribes a small CPU) and ``delegate`` ("auto" = the runtime's default XNNPACK delegate,
"none" = the built-in kernels, needed to read intermediate tensors).

Kinds (``open_model``): "tflite" (fp32, int8 or packed int8, features in), "audio-tflite" (the phone file,
waveform in), "onnx" (fp32 or QDQ int8), "tflm" (the int8 .tflite in the TFLite Micro interpreter) and
"torch" (an ``nn.Module`` object). Checkpoints on disk and later kinds are opened by
``dssdn_edge.runtime.load``, which hands every file format to this module.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

DEFAULT_THREADS = 1
AUDIO_SUFFIX = ".audio.tflite"
# engine name -> python module that provides it
ENGINES = {
    "litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
    "onnxruntime": "onnxruntime",
    "tflm": "tflite_micro.python.tflite_micro.runtime",
    "torch": "torch",
}
KINDS = ("tflite", "audio-tflite", "onnx", "tflm", "torch")


class ModelLoadError(RuntimeError):
    """The runtime refused the file (not a model, an op it lacks, an arena too small). The message is the
    runtime's first line; ``detail`` keeps all it said."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


def _refusal(exc: BaseException, log: str = "") -> ModelLoadError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else (log.strip()[:200] or type(exc).__name__)
    return ModelLoadError(first, text or log.strip())


def kind_of(path: str) -> str:
    """The kind a file name implies ('tflm' is never implied: the same .tflite runs in LiteRT)."""
    name = str(path)
    if name.endswith(AUDIO_SUFFIX):
        return "audio-tflite"
    if name.endswith(".tflite"):
        return "tflite"
    if name.endswith(".onnx"):
        return "onnx"
    raise ModelLoadError(f"{name}: unknown model type (expected .tflite or .onnx)")


@contextlib.contextmanager
def native_output() -> Iterator[io.StringIO]:
    """Capture what native code writes to file descriptors 1 and 2 (TFLM's MicroPrintf, the delegate's
    banner), which bypasses ``sys.stdout``; the text is in the yielded buffer after the block."""
    captured = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            yield captured
        finally:
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None).fflush(None)
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            captured.write(tmp.read().decode(errors="replace"))


# ------------------------------------------------------------------------------------ quantisation
def quantize(x: np.ndarray, scale: float | None, zero_point: int, dtype: Any) -> np.ndarray:
    """Float → ``dtype`` with ``scale`` and ``zero_point`` (float64 arithmetic, round half to even, clipped);
    a float tensor (``scale`` None or 0) only becomes contiguous float32."""
    if not scale or np.dtype(dtype).kind != "i":
        return np.ascontiguousarray(x, dtype=np.float32)
    info = np.iinfo(np.dtype(dtype))
    q = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, scale: float | None, zero_point: int) -> np.ndarray:
    """An integer tensor → float32 with its scale and zero point; float tensors pass as float32."""
    if not scale or np.dtype(y.dtype).kind not in "iu":
        return np.asarray(y, np.float32)
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def infer_layout(shape: tuple[int, ...], channels: int | None, declared: str | None = None) -> str:
    """'NHWC' or 'NCHW': the manifest's word if given ('NHWC (batch, frames, bands, channels)'), else the
    shape's (channels last when the last dim is the channel count, or smaller than the frame axis)."""
    word = str(declared or "").split(" ")[0].upper()
    if word in ("NHWC", "NCHW"):
        return word
    if len(shape) != 4:
        return "NCHW"
    if channels is not None:
        return "NHWC" if shape[-1] == channels and shape[1] != channels else "NCHW"
    return "NHWC" if shape[-1] < shape[1] else "NCHW"


# ------------------------------------------------------------------------------------------ base
class Runtime(abc.ABC):
    """One loaded model. Subclasses set the tensor facts and implement ``invoke``."""

    kind = "?"
    engine = "?"
    threads: int | None = DEFAULT_THREADS
    input_shape: tuple[int, ...] = ()
    input_dtype: Any = np.dtype(np.float32)
    input_scale: float | None = None
    input_zero_point = 0
    output_scale: float | None = None
    output_zero_point = 0
    layout = "NCHW"  # of the input tensor: NCHW, NHWC or "audio"

    # -- raw entry ------------------------------------------------------------------------------------
    def prepare(self, windows: np.ndarray) -> np.ndarray:
        """Float (N, C, T, M) windows — or one (C, T, M) window — → the model's input tensor: layout and
        int8 quantisation applied."""
        x = np.asarray(windows)
        if x.ndim == 3:
            x = x[None]
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return quantize(x, self.input_scale, self.input_zero_point, self.input_dtype)

    @abc.abstractmethod
    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One prepared input tensor → the raw output tensor (the model's own dtype, a copy)."""

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        return dequantize(raw, self.output_scale, self.output_zero_point)

    # -- float entry -----------------------------------------------------------------------------------
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Float windows (N, C, T, M) → float (N, classes), one window per invoke (the files take batch 1)."""
        outs = [self.dequantize(self.invoke(self.prepare(w[None])))[0] for w in np.asarray(windows)]
        return np.stack(outs) if outs else np.zeros((0, 0), np.float32)

    # -- facts -------------------------------------------------------------------------------------------
    def activation_memory(self) -> dict[str, Any]:
        return {"bytes": None, "kind": "n/a", "method": "not available for this runtime"}

    def info(self) -> dict[str, Any]:
        """Runtime facts that explain a latency (e.g. how many delegate partitions the graph split into)."""
        return {}


# ---------------------------------------------------------------------------------------- LiteRT
def _litert_module(engine: str) -> Any:
    import importlib

    if engine not in ("litert", "tflite-runtime"):
        raise ModelLoadError(f"engine {engine!r} does not run .tflite files (litert or tflite-runtime)")
    return importlib.import_module(ENGINES[engine])


def _model_kwargs(source: str | bytes) -> dict[str, Any]:
    return {"model_content": bytes(source)} if isinstance(source, (bytes, bytearray)) else {"model_path": str(source)}


class LiteRT(Runtime):
    """A .tflite in LiteRT (``ai_edge_litert``) or ``tflite_runtime`` — the same Interpreter API — with
    ``threads`` threads; ``delegate`` "auto" (XNNPACK) or "none" (built-in kernels);
    ``preserve_all_tensors`` keeps intermediate tensors readable (``tensor``; needs delegate "none")."""

    kind = "tflite"

    def __init__(self, source: str | bytes, threads: int = DEFAULT_THREADS, delegate: str = "auto",
                 engine: str = "litert", preserve_all_tensors: bool = False, layout: str | None = None,
                 channels: int | None = None) -> None:
        self.engine, self.threads, self.delegate, self.source = engine, threads, delegate, source
        self._module = _litert_module(engine)
        kwargs = _model_kwargs(source)
        kwargs["num_threads"] = threads
        if preserve_all_tensors:
            kwargs["experimental_preserve_all_tensors"] = True
        resolver = getattr(self._module, "OpResolverType", None)
        if delegate == "none" and resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate != "auto" and delegate != "none":
            raise ModelLoadError(f"delegate {delegate!r} is not 'auto' or 'none'")
        with native_output() as log:  # the runtime announces its XNNPACK delegate on stderr
            try:
                self.interpreter = self._module.Interpreter(**kwargs)
                self.interpreter.allocate_tensors()
            except (RuntimeError, ValueError) as exc:
                raise _refusal(exc, log.getvalue()) from None
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.input_detail, self.output_detail = inp, out
        self._in, self._out = inp["index"], out["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_scale, self.input_zero_point = _quant(inp)
        self.output_scale, self.output_zero_point = _quant(out)
        self.layout = infer_layout(self.input_shape, channels, layout)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out).copy()

    def tensor(self, name: str) -> np.ndarray:
        """A named intermediate tensor of the last invoke (needs ``preserve_all_tensors``)."""
        for d in self.interpreter.get_tensor_details():
            if d["name"] == name:
                return self.interpreter.get_tensor(d["index"])
        raise KeyError(name)

    def activation_memory(self) -> dict[str, Any]:
        return planner_estimate(self.source, self.engine)

    def info(self) -> dict[str, Any]:
        """XNNPACK partitions: 1 means the whole graph runs in the delegate; more means ops it does not take
        (each split costs a hand-over to the built-in kernels, which is where int8 can lose to fp32)."""
        try:
            ops = self.interpreter._get_ops_details()  # noqa: SLF001
        except Exception:  # noqa: BLE001 - informative only
            return {}
        return {"delegate_partitions": sum(op["op_name"] == "DELEGATE" for op in ops)}


def _quant(detail: dict[str, Any]) -> tuple[float | None, int]:
    scale, zp = detail["quantization"]
    quantized = np.dtype(detail["dtype"]) != np.float32 and scale != 0.0
    return (float(scale), int(zp)) if quantized else (None, 0)


class AudioLiteRT(LiteRT):
    """The phone file (``.audio.tflite``): the front end is inside the graph, so it takes (N, samples) float
    audio — a 1-s window plus the context its frames read — and returns (N, classes) softmax scores."""

    kind = "audio-tflite"

    def __init__(self, source: str | bytes, threads: int = DEFAULT_THREADS, delegate: str = "auto",
                 engine: str = "litert", preserve_all_tensors: bool = False) -> None:
        super().__init__(source, threads, delegate, engine, preserve_all_tensors)
        inp = self.interpreter.get_input_details()
        if len(inp) != 1 or inp[0]["dtype"] != np.float32 or len(inp[0]["shape"]) != 2:
            raise ModelLoadError("not a waveform-in model (expected one float32 [1, samples] input)")
        self.samples = int(inp[0]["shape"][1])
        self.layout = "audio"

    def prepare(self, windows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(windows, np.float32).reshape(-1, self.samples))

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        outs = [self.invoke(w[None])[0] for w in self.prepare(windows)]
        return np.stack(outs) if outs else np.zeros((0, 0), np.float32)


def log_scores(scores: np.ndarray) -> np.ndarray:
    """Log of the phone file's softmax scores: logits up to a per-window constant, so their mean over a
    clip's windows ranks classes exactly as the mean of the logits does (what predict and the evaluation
    average)."""
    return np.log(np.maximum(np.asarray(scores, np.float64), np.finfo(np.float32).tiny))


def planner_estimate(source: str | bytes, engine: str = "litert") -> dict[str, Any]:
    """Peak of the summed sizes of tensors live at any op (produced earlier, consumed at or after it),
    from the un-delegated graph. A lower bound for any arena planner: no alignment, no kernel scratch."""
    try:
        plain = LiteRT(source, delegate="none", engine=engine)
        interp = plain.interpreter
        ops = interp._get_ops_details()  # noqa: SLF001 - public enough: the only op-level view offered
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
    except Exception as exc:  # noqa: BLE001 - the estimate is optional
        return {"bytes": None, "kind": "n/a", "method": f"planner estimate failed: {type(exc).__name__}: {exc}"[:200]}
    graph_in = {d["index"] for d in interp.get_input_details()}
    graph_out = {d["index"] for d in interp.get_output_details()}
    start: dict[int, int] = {i: -1 for i in graph_in}
    end: dict[int, int] = {}
    for k, op in enumerate(ops):
        for t in op["outputs"]:
            start.setdefault(int(t), k)
        for t in op["inputs"]:
            if int(t) in start:
                end[int(t)] = k
    for t in graph_out:
        end[t] = len(ops)

    def nbytes(i: int) -> int:
        t = tensors[i]
        return int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize if len(t["shape"]) else 0

    peak, peak_op = 0, ""
    for k, op in enumerate(ops):
        live = sum(nbytes(i) for i, s in start.items() if s <= k <= end.get(i, s))
        if live > peak:
            peak, peak_op = live, f"#{k} {op['op_name']}"
    return {
        "bytes": int(peak),
        "kind": "planner estimate",
        "method": "planner estimate: max over ops of the summed live activation tensors "
        f"(un-delegated graph, peak at op {peak_op}; excludes alignment and kernel scratch)",
    }


# ------------------------------------------------------------------------------------------ ONNX
class Onnx(Runtime):
    """onnxruntime, CPU provider, sequential, ``intra_op_num_threads = threads``. fp32 and QDQ int8 files
    both take and give float."""

    kind = "onnx"
    engine = "onnxruntime"

    def __init__(self, source: str | bytes, threads: int = DEFAULT_THREADS, layout: str | None = None,
                 channels: int | None = None) -> None:
        import onnxruntime as ort

        self.threads = threads
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        model = bytes(source) if isinstance(source, (bytes, bytearray)) else str(source)
        try:
            self.session = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise _refusal(exc) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in inp.shape)
        self.input_dtype = np.dtype({"tensor(float)": "float32", "tensor(int8)": "int8"}.get(inp.type, "float32"))
        self.layout = infer_layout(self.input_shape, channels, layout)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def outputs(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        """Named tensors for one prepared input (calibration reads intermediate outputs this way)."""
        return self.session.run(names, {self.input_name: x})


# ------------------------------------------------------------------------------------------- TFLM
class Tflm(Runtime):
    """The int8 .tflite in the TFLite Micro interpreter (pip ``tflite-micro``, host reference kernels),
    in an arena of ``arena_size`` bytes (TFLM's default when None). ``threads`` does not apply."""

    kind = "tflm"
    engine = "tflm"
    threads = None

    def __init__(self, source: str | bytes, arena_size: int | None = None, quiet: bool = False) -> None:
        from tflite_micro.python.tflite_micro import runtime as tflm

        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
        else:
            with open(source, "rb") as fh:
                data = fh.read()
        kwargs = {} if arena_size is None else {"arena_size": int(arena_size)}
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(native_output()) if quiet else io.StringIO()
            try:
                self.interpreter = tflm.Interpreter.from_bytes(data, **kwargs)
            except (RuntimeError, ValueError) as exc:
                raise _refusal(exc, log.getvalue()) from None
        inp, out = self.interpreter.get_input_details(0), self.interpreter.get_output_details(0)
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_scale, self.input_zero_point = _tflm_quant(inp)
        self.output_scale, self.output_zero_point = _tflm_quant(out)
        self.layout = infer_layout(self.input_shape, None)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_input(np.ascontiguousarray(x), 0)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_output(0))

    def allocations(self) -> str:
        """TFLM's own allocation report (RecordingMicroAllocator; valid after the first invoke)."""
        with native_output() as text:
            self.interpreter.print_allocations()
        return text.getvalue()


def _tflm_quant(detail: dict[str, Any]) -> tuple[float | None, int]:
    q = detail.get("quantization_parameters") or {}
    scales, zps = q.get("scales"), q.get("zero_points")
    if np.dtype(detail["dtype"]).kind != "i" or scales is None or not len(scales):
        return None, 0
    return float(scales[0]), int(zps[0])


# ------------------------------------------------------------------------------------------ torch
class Torch(Runtime):
    """A torch ``nn.Module`` in eval and inference mode, float NCHW in and out; the whole batch in one call.
    ``threads`` None leaves torch's own setting; a number is set for each call and restored after."""

    kind = "torch"
    engine = "torch"

    def __init__(self, model: Any, threads: int | None = DEFAULT_THREADS,
                 input_shape: tuple[int, ...] = ()) -> None:
        import torch

        self._torch = torch
        self.model = model.eval()
        self.threads = threads
        self.input_shape = tuple(input_shape)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        saved = torch.get_num_threads()
        if self.threads is not None and saved != self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return self.model(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()
        finally:
            if torch.get_num_threads() != saved:
                torch.set_num_threads(saved)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        return self.invoke(self.prepare(windows))


# ------------------------------------------------------------------------------------------- open
def open_model(source: Any, kind: str | None = None, threads: int = DEFAULT_THREADS, **options: Any) -> Runtime:
    """The runtime for ``source`` (a path, the file's bytes, or for "torch" an ``nn.Module``); ``kind``
    defaults to what the file name says. ``options`` go to the kind's class (``delegate``, ``engine``,
    ``preserve_all_tensors``, ``layout``, ``channels``, ``arena_size``, ``input_shape``)."""
    if kind is None:
        if isinstance(source, (bytes, bytearray)):
            raise ModelLoadError("a model given as bytes needs its kind")
        kind = kind_of(str(source))
    if kind == "tflite":
        return LiteRT(source, threads=threads, **options)
    if kind == "audio-tflite":
        return AudioLiteRT(source, threads=threads, **options)
    if kind == "onnx":
        return Onnx(source, threads=threads, **options)
    if kind == "tflm":
        return Tflm(source, **options)
    if kind == "torch":
        return Torch(source, threads=threads, **options)
    raise ModelLoadError(f"unknown model kind {kind!r}; this runtime knows {', '.join(KINDS)}")
