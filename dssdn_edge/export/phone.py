"""The phone file ``<name>.audio.tflite``: a 1-s window's audio + its context in, class scores out, front end
inside the graph.

Why: the features-in .tflite needs the exact split log-mel front end beside it, and a phone developer
would have to re-implement it in Kotlin or Swift before the model means anything. MediaPipe's
AudioClassifier (like the TFLite Task Library before it) instead feeds a model raw float audio at the rate
its metadata names, in pieces of the input tensor's length, and reads labelled scores back. This module
builds that model:

* The input is one window's audio plus the context its features read (``FrontendConfig.context_samples``:
  frames s-w .. s+T-1+w of a window of T frames starting at frame s, w = delta_width // 2, i.e. samples
  [s·hop - n_fft/2 - w·hop, (s+T-1+w)·hop + n_fft/2) = 18304 at the defaults, 1.144 s). A window fed alone
  would have to be centre-padded, so its first and last frames (and the delta's edge replication) would see
  zeros where features cut from the whole clip — what the model was trained on, and what the features-in
  files get — see the neighbouring audio; that cost 1 pt of fold-5 accuracy. With the context the phone
  file computes the features-in path's features of that window (up to float32), except the delta of a
  clip's first and last w frames: offline, the edge frame is replicated; here the context gives the frames
  beyond it, whose audio lies partly or wholly outside the clip (zeros: a log-mel floor of -10). That
  difference is large (about 1 log10 unit per frame, 4 delta standard deviations) and is measured, in
  features by ``feature_error`` and in top-1 agreement on the windows it touches by ``measure_phone``.
* ``WaveFrontend`` is the project's front end (``dssdn_edge.frontend``) written as tensor ops, converted
  with litert-torch like the body: framing without padding as hop-sized rows re-assembled by SLICE +
  CONCATENATION (no gather table), periodic Hann (MUL), TFLite's RFFT2D, power as COMPLEX_ABS squared, the
  sparse mel filterbank as a GATHER of each band's bins (padded to the widest band) times its weights and a
  SUM (~2.8 k multiplies a frame instead of 66 k dense), log10 as LOG × 1/ln 10, the 5-frame regression
  delta over the context frames (no edge replication), then the stored per-band mean/std. All in float32:
  the log spectrum of quiet bands needs it (the C twin's bounds, ``tests/test_frontend_c.py``).
* ``splice`` joins that graph and an exported body — the very bytes of ``.int8.tflite`` or ``.tflite``,
  so the phone file computes what the features-in file computes — into one subgraph. An int8 body gets a
  QUANTIZE with its own input scale (the step a user of the features-in file performs) and a DEQUANTIZE
  after it: int8 inside, float32 I/O. A SOFTMAX turns the logits into scores that sum to 1.
* ``metadata.py`` adds the TFLite Model Metadata and the labels.

``context_windows`` cuts those inputs from a clip (zeros outside it, which equals the offline centre
padding); ``predict`` cuts the same ones while streaming a file (``audio_stream.file_windows(...,
with_audio=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..frontend import Frontend, FrontendConfig, Normalization
from . import tflite as tflite_mod
from .metadata import FEATURES_NAME, LOGMEL_NAME
from .quality import (
    CHECK_STRIDE,
    FRONTEND_TOL,
    PhoneEvaluation,
    delta_gain,
    feature_error,
    measure_phone,
    probe_signal,
)

AUDIO_SUFFIX = ".audio.tflite"
INPUT_NAME, OUTPUT_NAME = "audio", "scores"
# Versions of the ops the splice adds (TFLite's op_version rules: float->int8 QUANTIZE and int8->float
# DEQUANTIZE are version 2, float SOFTMAX version 1).
_ADDED_OP_VERSIONS = {"QUANTIZE": 2, "DEQUANTIZE": 2, "SOFTMAX": 1}


# ------------------------------------------------------------------------------------------ front end
@dataclass(frozen=True)
class GatherFilterbank:
    """The sparse mel filterbank as (bands, width) bin indices and weights, padded with weight 0 to the
    widest band, so the band sums are one GATHER, one MUL and one SUM."""

    index: np.ndarray  # (n_mels, width) int32
    weight: np.ndarray  # (n_mels, width) float32

    @classmethod
    def from_frontend(cls, fe: Frontend) -> GatherFilterbank:
        fb = fe.filterbank
        width = max(int(fb.length.max()), 1)
        index = np.zeros((len(fb.start), width), np.int32)
        weight = np.zeros((len(fb.start), width), np.float32)
        for band, (s, n, o) in enumerate(zip(fb.start, fb.length, fb.offset, strict=True)):
            index[band, :n] = np.arange(s, s + n)
            weight[band, :n] = fb.weights[o : o + n]
        return cls(index, weight)


class WaveFrontend(nn.Module):
    """(1, context samples) float audio → (1, segment frames, n_mels, channels) normalised features, NHWC as
    the body takes: the features of the window in the middle of the input.

    Same arithmetic as ``Frontend.features`` + ``Normalization.apply`` on the whole clip, then the window cut
    (in float32 rather than float64)."""

    def __init__(self, cfg: FrontendConfig, norm: Normalization) -> None:
        super().__init__()
        self.cfg = cfg
        fe = Frontend(cfg)
        table = GatherFilterbank.from_frontend(fe)
        self.register_buffer("window", torch.tensor(fe.window, dtype=torch.float32))
        self.register_buffer("bins", torch.tensor(table.index.reshape(-1), dtype=torch.int64))
        self.register_buffer("weights", torch.tensor(table.weight))
        # (C, M) statistics → (M, C) to broadcast over the NHWC feature map
        self.register_buffer("mean", torch.tensor(np.asarray(norm.mean, np.float32).T.copy()))
        self.register_buffer("std", torch.tensor(np.asarray(norm.std, np.float32).T.copy()))

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """(1, S) → (1, T', n_fft) analysis frames framed without padding ("valid"), T' = 1 + (S - n_fft) // hop:
        frame t is samples [t·hop, t·hop + n_fft). The input already holds each frame's surroundings
        (``FrontendConfig.context_samples``), so no frame sees padding the features-in path does not see.

        With the signal laid out as rows of hop samples, frame t is rows t, t+1, … (n_fft // hop of them) plus
        the first n_fft % hop samples of the next: a few SLICEs and one CONCATENATION, whatever T' is (a PAD
        completes the last row; those zeros are never read)."""
        cfg = self.cfg
        n, hop, s = cfg.n_fft, cfg.hop_length, audio.shape[1]
        if s < n:
            raise ValueError(f"need at least n_fft = {n} samples, got {s}")
        t = 1 + (s - n) // hop
        whole, part = divmod(n, hop)
        rows = t - 1 + whole + (1 if part else 0)
        x = nn.functional.pad(audio, (0, rows * hop - s)) if rows * hop > s else audio
        x = x[:, : rows * hop].reshape(1, rows, hop)
        pieces = [x[:, j : j + t, :] for j in range(whole)]
        if part:
            pieces.append(x[:, whole : whole + t, :part])
        return torch.cat(pieces, dim=2)

    def logmel(self, audio: torch.Tensor) -> torch.Tensor:
        """(1, S) → (1, T, n_mels) log10 mel power."""
        spec = torch.fft.rfft(self.frames(audio) * self.window)  # RFFT2D in TFLite
        power = spec.abs() ** 2  # COMPLEX_ABS, MUL (TFLite has no complex-to-real view)
        t = power.shape[1]
        taps = torch.index_select(power, 2, self.bins).reshape(1, t, self.cfg.n_mels, -1)
        mel = (taps * self.weights).sum(dim=-1)
        return torch.log(mel + self.cfg.log_eps) * (1.0 / math.log(10.0))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(1, context samples) → the window's (1, T, n_mels, channels) features: the log-mel of its T frames
        and a "valid" delta that reads the w = delta_width // 2 context frames on each side (no edge
        replication: inside a clip those frames exist, and the features-in path reads them too)."""
        mel = self.logmel(audio)
        w = self.cfg.delta_width // 2
        if w:
            t = mel.shape[1] - 2 * w
            delta = sum(k * (mel[:, w + k : w + k + t] - mel[:, w - k : w - k + t]) for k in range(1, w + 1))
            delta = delta * (1.0 / (2.0 * sum(k * k for k in range(1, w + 1))))
            feats = torch.stack([mel[:, w : w + t], delta], dim=-1)
        else:
            feats = mel[..., None]
        return (feats - self.mean) / self.std


def convert_frontend(cfg: FrontendConfig, norm: Normalization) -> bytes:
    """The front end alone as a float32 .tflite: input (1, context samples), output (1, segment frames, n_mels,
    channels)."""
    with tflite_mod.native_quiet():
        import litert_torch

    module = WaveFrontend(cfg, norm).eval()
    example = torch.zeros(1, cfg.context_samples)
    shown = litert_torch.config.show_progress
    litert_torch.config.show_progress = False
    try:
        with tflite_mod.native_quiet():
            content = bytes(litert_torch.convert(module, (example,)).model_content())
    except Exception as exc:  # the converter raises many types; the message is what matters
        raise ExportError(f"front end conversion failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
    finally:
        litert_torch.config.show_progress = shown
    return tflite_mod.compact(content, strip_names=True)


# --------------------------------------------------------------------------------------------- splice
def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in np.asarray(values).ravel()]


class _Graph:
    """One subgraph being assembled from the subgraphs of several models (object API of the schema)."""

    def __init__(self) -> None:
        schema = _schema()
        self.schema = schema
        self.names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.buffers = [schema.BufferT()]
        self.codes: list[Any] = []
        self.code_index: dict[tuple, int] = {}
        self.tensors: list[Any] = []
        self.ops: list[Any] = []

    def _code(self, builtin: int, version: int, custom: bytes | None = None) -> int:
        key = (builtin, version, custom)
        if key not in self.code_index:
            code = self.schema.OperatorCodeT()
            code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = version
            code.customCode = custom
            self.code_index[key] = len(self.codes)
            self.codes.append(code)
        return self.code_index[key]

    def add_model(self, model_bytes: bytes) -> tuple[int, int]:
        """Append the first subgraph of ``model_bytes``; return its (input, output) tensor in this graph."""
        model = self.schema.ModelT.InitFromPackedBuf(tflite_mod.compact(model_bytes, strip_names=True), 0)
        if len(model.subgraphs) != 1:
            raise ExportError(f"phone model: expected one subgraph, got {len(model.subgraphs)}")
        bmap = {0: 0}
        for i, buf in enumerate(model.buffers[1:], start=1):
            bmap[i] = len(self.buffers)
            self.buffers.append(buf)
        sg = model.subgraphs[0]
        offset = len(self.tensors)
        for t in sg.tensors:
            t.buffer = bmap[t.buffer]
            self.tensors.append(t)
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            op.opcodeIndex = self._code(builtin, code.version, code.customCode)
            op.inputs = [i + offset if i >= 0 else -1 for i in _ints(op.inputs)]
            op.outputs = [i + offset for i in _ints(op.outputs)]
            if op.intermediates is not None:
                op.intermediates = [i + offset for i in _ints(op.intermediates)]
            self.ops.append(op)
        ins, outs = _ints(sg.inputs), _ints(sg.outputs)
        if len(ins) != 1 or len(outs) != 1:
            raise ExportError(f"phone model: a part has {len(ins)} inputs and {len(outs)} outputs, expected 1 and 1")
        return ins[0] + offset, outs[0] + offset

    def tensor(self, like: int, dtype: int, name: str) -> int:
        """A new activation tensor shaped like tensor ``like``."""
        t = self.schema.TensorT()
        t.shape = list(_ints(self.tensors[like].shape))
        t.type = dtype
        t.buffer = 0
        t.name = name
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, name: str, inputs: list[int], outputs: list[int], options: Any = None, kind: int = 0) -> None:
        builtin = getattr(self.schema.BuiltinOperator, name)
        op = self.schema.OperatorT()
        op.opcodeIndex = self._code(builtin, _ADDED_OP_VERSIONS[name])
        op.inputs, op.outputs = inputs, outputs
        op.builtinOptionsType, op.builtinOptions = kind, options
        self.ops.append(op)

    def rename_uses(self, old: int, new: int) -> None:
        for op in self.ops:
            op.inputs = [new if i == old else i for i in _ints(op.inputs)]

    def model(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        s = self.schema
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs, sg.name = self.tensors, self.ops, inputs, outputs, "main"
        sig = s.SignatureDefT()
        sig.signatureKey = tflite_mod.SIGNATURE
        sig.subgraphIndex = 0
        sig.inputs, sig.outputs = [], []
        for idx, target in ((inputs[0], sig.inputs), (outputs[0], sig.outputs)):
            tm = s.TensorMapT()
            tm.name, tm.tensorIndex = self.tensors[idx].name, idx
            target.append(tm)
        m = s.ModelT()
        m.version, m.description = 3, description
        m.operatorCodes, m.subgraphs, m.buffers, m.signatureDefs = self.codes, [sg], self.buffers, [sig]
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return tflite_mod.compact(bytes(builder.Output()), strip_names=False)


def splice(front: bytes, body: bytes, description: str) -> bytes:
    """One model: ``front`` (float audio → float features) then ``body`` (features → logits; float, or int8
    with int8 I/O) then SOFTMAX. Returns a .tflite with float32 input ``audio`` and output ``scores``."""
    s = _schema()
    g = _Graph()
    audio, feats = g.add_model(front)
    body_in, body_out = g.add_model(body)
    if _ints(g.tensors[feats].shape) != _ints(g.tensors[body_in].shape):
        raise ExportError(
            f"phone model: front end gives {_ints(g.tensors[feats].shape)}, the body takes "
            f"{_ints(g.tensors[body_in].shape)}"
        )
    g.tensors[audio].name, g.tensors[feats].name = INPUT_NAME, FEATURES_NAME
    _name_logmel(g)
    if g.tensors[body_in].type == s.TensorType.FLOAT32:
        g.rename_uses(body_in, feats)
    else:  # int8 body: the float features are quantised with the body's own input scale
        g.tensors[body_in].name = FEATURES_NAME + "_int8"
        g.ops.insert(_first_use(g, body_in), _quantize_op(g, feats, body_in))
    logits = body_out
    if g.tensors[body_out].type != s.TensorType.FLOAT32:
        g.tensors[body_out].name = "logits_int8"
        logits = g.tensor(body_out, s.TensorType.FLOAT32, "logits")
        g.op("DEQUANTIZE", [body_out], [logits])
    else:
        g.tensors[body_out].name = "logits"
    scores = g.tensor(logits, s.TensorType.FLOAT32, OUTPUT_NAME)
    opts = s.SoftmaxOptionsT()
    opts.beta = 1.0
    g.op("SOFTMAX", [logits], [scores], opts, s.BuiltinOptions.SoftmaxOptions)
    return g.model([audio], [scores], description)


def _quantize_op(g: _Graph, src: int, dst: int) -> Any:
    op = g.schema.OperatorT()
    op.opcodeIndex = g._code(g.schema.BuiltinOperator.QUANTIZE, _ADDED_OP_VERSIONS["QUANTIZE"])
    op.inputs, op.outputs = [src], [dst]
    op.builtinOptionsType, op.builtinOptions = 0, None
    return op


def _first_use(g: _Graph, tensor: int) -> int:
    return next(k for k, op in enumerate(g.ops) if tensor in _ints(op.inputs))


def _name_logmel(g: _Graph) -> None:
    """Name the LOG op's scaled output ``logmel`` (the MUL by 1/ln 10 after LOG), for tests and debugging."""
    log_ops = [op for op in g.ops if g.names.get(g.codes[op.opcodeIndex].builtinCode) == "LOG"]
    if len(log_ops) != 1:
        return
    out = _ints(log_ops[0].outputs)[0]
    users = [op for op in g.ops if out in _ints(op.inputs)]
    if len(users) == 1 and g.names.get(g.codes[users[0].opcodeIndex].builtinCode) == "MUL":
        g.tensors[_ints(users[0].outputs)[0]].name = LOGMEL_NAME


# ------------------------------------------------------------------------------------------- export
CHOICE_RULE = (
    "int8 body unless its clip accuracy is more than 0.5 pt below the fp32 body's: int8 is the smaller file "
    "and what phones' int8 kernels (ARM dot product) run fastest"
)
CHOICE_TOLERANCE = 0.005


def choose(measured: dict[str, dict[str, Any]], available: list[str]) -> str:
    if "int8" not in available:
        return "fp32"
    acc = {k: v["quality"]["accuracy"]["value"] for k, v in measured.items()}
    if acc.get("int8") is None or acc.get("fp32") is None:
        return "int8"
    return "int8" if acc["int8"] >= acc["fp32"] - CHOICE_TOLERANCE else "fp32"


def input_length(cfg: FrontendConfig) -> dict[str, Any]:
    """What the input length is and why (manifest, report, metadata): the window plus the context its
    frames and delta read, so the features equal those of the window cut from the whole clip."""
    after = cfg.context_samples - cfg.context_offset - cfg.segment_samples
    return {
        "samples": cfg.context_samples,
        "seconds": cfg.context_samples / cfg.sample_rate,
        "window_samples": cfg.segment_samples,
        "context_before_samples": cfg.context_offset,
        "context_after_samples": after,
        "meaning": (
            f"{cfg.segment_seconds:g}-s window + its context: the window's {cfg.segment_samples} samples with "
            f"{cfg.context_offset} before and {after} after (half an FFT, {cfg.n_fft // 2}, for its edge frames' "
            f"analysis windows + {cfg.delta_width // 2} hops of {cfg.hop_length} for the delta), framed without "
            f"padding; the scores are the window's. Window starting at sample a: feed samples "
            f"[a - {cfg.context_offset}, a + {cfg.segment_samples + after}), zeros outside the recording"
        ),
    }


def metadata_info(ckpt: Any, body: str) -> Any:
    from ..version import __version__
    from .metadata import AudioClassifierInfo

    cfg = ckpt.frontend_config
    data = ckpt.meta.get("data") or {}
    licence = (
        f"weights trained on {data.get('name') or 'the data named in the model card'}; its licence: "
        f"{data['licence']} — use the weights accordingly. Code: MIT (dssdn-edge)."
        if data.get("licence")
        else "weights: the licence of their training data is not recorded in the checkpoint. Code: MIT (dssdn-edge)."
    )
    sha = str(ckpt.meta.get("weights_sha256") or "unknown")[:16]
    length = input_length(cfg)
    return AudioClassifierInfo(
        name=ckpt.name,
        version=f"dssdn-edge {__version__}, weights sha256 {sha}",
        description=(
            f"{ckpt.name}: DSSDN sound classifier over {len(ckpt.labels)} classes. The split log-mel front end "
            f"(periodic Hann n_fft {cfg.n_fft}, hop {cfg.hop_length}, {cfg.n_mels} HTK mels "
            f"{cfg.fmin:g}-{cfg.fmax:g} Hz, log10, delta, stored mean/std) runs inside the model on a "
            f"{cfg.segment_seconds:g}-s window plus its context, then the network ({body} weights and "
            "activations, float32 I/O)."
        ),
        author=f"dssdn-edge {__version__}",
        licence=licence,
        sample_rate=cfg.sample_rate,
        channels=1,
        labels=tuple(ckpt.labels),
        input_description=(
            f"{cfg.context_samples} samples ({length['seconds']:.3f} s) of mono float32 audio at "
            f"{cfg.sample_rate} Hz, full scale = 1.0: a {cfg.segment_seconds:g}-s window with "
            f"{length['context_before_samples']} samples of context before it and {length['context_after_samples']} "
            "after it; the scores are the window's"
        ),
        output_description=f"softmax scores (sum 1) of the {len(ckpt.labels)} classes named in labels.txt",
    )


def _io(shape: list[int]) -> dict[str, Any]:
    return {"shape": shape, "dtype": "float32", "scale": None, "zero_point": None}


def export_phone(ckpt: Any, bodies: dict[str, bytes], ref: Any) -> tuple[bytes, dict[str, Any]]:
    """Build both candidates (int8 and fp32 body), check the in-graph features, measure both on the
    evaluation audio when there is some, keep one by ``CHOICE_RULE`` with metadata, and describe it (and the
    other's numbers) for the manifest."""
    from . import metadata as md

    cfg = ckpt.frontend_config
    front = convert_frontend(cfg, ckpt.normalization)
    order = [k for k in ("int8", "fp32") if k in bodies]
    candidates = {
        k: md.populate(splice(front, bodies[k], f"{ckpt.name}: {cfg.segment_seconds:g}-s window + its context "
                              f"in, scores out ({k} body)"), metadata_info(ckpt, k))
        for k in order
    }
    probe = probe_signal(cfg, 3 * cfg.segment_samples)  # interior windows and both clip edges
    check = {"probe": {**feature_error(candidates[order[0]], cfg, ckpt.normalization, [probe], CHECK_STRIDE),
                       "signal": "chirp + noise test clip (3 windows long)"}}
    if not check["probe"]["within_tolerance"]:
        bad = check["probe"]
        inner = bad["interior_windows_features"]
        raise ExportError(
            f"{ckpt.name}{AUDIO_SUFFIX}: in-graph front end differs from numpy beyond the float32 bounds (log-mel "
            f"{bad['logmel_every_input_frame']['max_abs_within_60db']:.3g}, window log-mel "
            f"{inner['logmel_within_60db']:.3g}, delta {inner['delta_within_60db']:.3g} log10 units; tolerance "
            f"{FRONTEND_TOL:g})"
        )
    evaluation = PhoneEvaluation.build(ckpt, ref)
    if evaluation is not None:
        check["real"] = {**feature_error(candidates[order[0]], cfg, ckpt.normalization, evaluation.check_clips,
                                         CHECK_STRIDE), "signal": evaluation.check_source}
    check["tolerance"] = FRONTEND_TOL
    check["delta_tolerance"] = delta_gain(cfg) * FRONTEND_TOL
    measured = {k: measure_phone(m, bodies[k], evaluation) for k, m in candidates.items()} if evaluation else {}
    choice = choose(measured, order)
    info = metadata_info(ckpt, choice)
    data = candidates[choice]
    body_file = f"{ckpt.name}{'.int8.tflite' if choice == 'int8' else '.tflite'}"
    no_eval = {
        "vs": "fp32 torch", "windows": 0, "windows_source": "none (no evaluation audio)",
        "max_abs_logit_error": None, "mean_abs_logit_error": None, "top1_agreement": None,
        "accuracy": {"value": None, "torch_fp32": ref.accuracy, "drop_points": None, "source": ref.accuracy_source},
    }
    entry: dict[str, Any] = {
        "format": "tflite (waveform in, TFLite Model Metadata + labels.txt)",
        "runtime": "LiteRT (ai-edge-litert); MediaPipe AudioClassifier",
        "precision": f"{choice} body, float32 front end and I/O",
        "body_precision": choice,
        "body": f"{body_file} (the same ops and weights), after the front end; softmax at the end",
        "layout": f"(batch, samples) mono audio: a {cfg.segment_seconds:g}-s window + its context",
        "input": _io([1, cfg.context_samples]),
        "input_length": input_length(cfg),
        "output": _io([1, len(ckpt.labels)]),
        "ops": tflite_mod.op_counts(data),
        "frontend_check": check,
        "metadata": {
            "writer": md.WRITER,
            "name": info.name,
            "version": info.version,
            "description": info.description,
            "author": info.author,
            "licence": info.licence,
            "audio_properties": {"sample_rate": info.sample_rate, "channels": info.channels},
            "labels_file": md.LABELS_FILE,
            "labels_file_type": "TENSOR_AXIS_LABELS",
            "min_parser_version": md.MIN_PARSER_VERSION,
        },
        "quality": measured[choice]["quality"] if measured else no_eval,
        "choice_rule": CHOICE_RULE,
        "choices": {
            k: {"bytes": len(candidates[k]), **measured.get(k, {})}
            for k in order
        },
    }
    if "int8" in bodies:  # the body is the very .int8.tflite file
        entry["size_over_int8_tflite_bytes"] = len(data) - len(bodies["int8"])
    if measured and "int8" in measured:
        int8_acc = measured["int8"]["features_in"]["accuracy"]
        mine = entry["quality"]["accuracy"]["value"]
        entry["vs_int8_tflite"] = {
            "int8_tflite_accuracy": int8_acc,
            "phone_accuracy": mine,
            "difference_points": 100.0 * (mine - int8_acc),
            "within_0_5_points": bool(abs(100.0 * (mine - int8_acc)) <= 0.5 + 1e-9),
        }
    return data, entry
