"""Export's quality checks: every artifact is measured against the fp32 torch model on the same windows.

Why one module: an int8 file, an ONNX QDQ file and the phone file are each judged by the same numbers —
logit error, top-1 agreement with fp32 torch on real windows, clip accuracy on the evaluation clips — so the
report compares like with like. ``Reference`` holds the fp32 torch logits once; ``quality`` scores any
runtime's logits against it. The phone file adds two checks of its own: its in-graph front end against the
numpy one (``frontend_error`` / ``feature_error``, float32 bounds) and its classification of each window's
audio with context against the features-in body it carries (``measure_phone``). Every model runs through the
runtime layer (``dssdn_edge.runtime``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from .. import runtime
from ..audio import load_audio
from ..checkpoint import Checkpoint
from ..errors import ExportError
from ..evaluate import mean_by_clip
from ..frontend import Frontend, FrontendConfig, Normalization, frame_view
from ..progress import progress
from ..windows import clip_starts, context_windows, edge_windows, pad_to_window
from .manifest import NO_AUDIO
from .metadata import FEATURES_NAME, LOGMEL_NAME
from .sources import WindowSet

FP32_TOLERANCE = 1e-3  # an fp32 artifact further than this from torch is a broken conversion
Runner = Callable[[np.ndarray], np.ndarray]


def run_all(runner: Runner, windows: np.ndarray, desc: str, chunk: int = 64) -> np.ndarray:
    starts = list(range(0, len(windows), chunk))
    outs = [runner(windows[s : s + chunk]) for s in progress(starts, desc)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def torch_fp32(model: nn.Module) -> runtime.Runtime:
    """The torch model in the runtime layer with torch's own thread setting (export pins it for the run)."""
    return runtime.load(model, kind="torch", threads=None)


@dataclass
class Reference:
    """The fp32 torch model's logits on the evaluation windows and its clip accuracy."""

    windows: np.ndarray
    logits: np.ndarray
    windows_source: str
    evalset: WindowSet | None
    accuracy: float | None
    accuracy_source: str
    extras: dict[str, Any] = field(default_factory=dict)


def clip_accuracy(logits: np.ndarray, ev: WindowSet) -> float:
    clip = mean_by_clip(logits, ev.clip_of_window, len(ev.targets))
    return float((clip.argmax(1) == ev.targets).mean())


def quality(ref: Reference, logits: np.ndarray) -> dict[str, Any]:
    """Logit error and top-1 agreement vs fp32 torch on real windows, and clip accuracy (drop in points)."""
    out: dict[str, Any] = {
        "vs": "fp32 torch",
        "windows": int(len(logits)),
        "windows_source": ref.windows_source,
    }
    if len(logits):
        err = np.abs(logits.astype(np.float64) - ref.logits)
        out.update(
            max_abs_logit_error=float(err.max()),
            mean_abs_logit_error=float(err.mean()),
            top1_agreement=float((logits.argmax(1) == ref.logits.argmax(1)).mean()),
        )
    else:
        out.update(max_abs_logit_error=None, mean_abs_logit_error=None, top1_agreement=None)
    if ref.evalset is not None and len(logits):
        ev = ref.evalset
        mine = mean_by_clip(logits, ev.clip_of_window, len(ev.targets)).argmax(1)
        theirs = mean_by_clip(ref.logits, ev.clip_of_window, len(ev.targets)).argmax(1)
        out["clip_top1_agreement"] = float((mine == theirs).mean())
        acc = clip_accuracy(logits, ev)
        out["accuracy"] = {
            "value": acc,
            "torch_fp32": ref.accuracy,
            "drop_points": 100.0 * (ref.accuracy - acc),
            "source": ref.accuracy_source,
        }
    else:
        out["accuracy"] = {
            "value": None,
            "torch_fp32": ref.accuracy,
            "drop_points": None,
            "source": ref.accuracy_source,
        }
    return out


def build_reference(
    ckpt: Checkpoint, evalset: WindowSet | None, calib: WindowSet | None
) -> Reference:
    model = ckpt.model.eval()
    if evalset is not None:
        logits = run_all(torch_fp32(model), evalset.windows, "torch fp32 (fold 5)").astype(np.float64)
        return Reference(
            evalset.windows, logits, evalset.source, evalset, clip_accuracy(logits, evalset), evalset.source
        )
    card = ckpt.meta.get("metrics", {}).get("test_accuracy")
    windows = calib.windows if calib is not None and calib.windows.ndim == 4 else np.zeros((0,), np.float32)
    source = f"calibration windows ({calib.source})" if len(windows) else NO_AUDIO
    logits = run_all(torch_fp32(model), windows, "torch fp32") if len(windows) else np.zeros((0,))
    return Reference(windows, logits.astype(np.float64), source, None, card, "model card")


def check_fp32(
    label: str, runner: Runner, fused_ref: Callable[[np.ndarray], np.ndarray], shape: Sequence[int]
) -> float:
    """Max |logit difference| on fixed pseudo-random inputs: a conversion check that needs no data."""
    x = np.random.default_rng(0).standard_normal((4, *shape[1:])).astype(np.float32)
    err = float(np.abs(runner(x) - fused_ref(x)).max())
    if not err <= FP32_TOLERANCE:
        raise ExportError(f"{label}: fp32 artifact differs from torch by {err:.3g} (> {FP32_TOLERANCE})")
    return err


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------- phone file: in-graph front end
FRONTEND_TOL = 1e-4  # log10 units: the C twin's float32 bound (tests/test_frontend_c.py)
FRONTEND_RANGE = 6.0  # ... held on the bands within 6 log10 units (60 dB) of their frame's loudest band
NORM_SLACK = 1e-6  # + the float32 rounding of (x - mean) / std, in log10 units


def delta_gain(cfg: FrontendConfig) -> float:
    """Largest |delta error| per unit of log-mel error in its frames: sum(k) / sum(k²) over k = 1..w
    (0.6 for the 5-frame delta), the bound a delta inherits from the log-mel bound."""
    w = cfg.delta_width // 2
    return sum(range(1, w + 1)) / sum(k * k for k in range(1, w + 1)) if w else 0.0


def frontend_error(model_bytes: bytes, cfg: FrontendConfig, windows: np.ndarray) -> dict[str, float]:
    """In-graph log-mel (tensor ``logmel``: every frame of the input, window and context) vs the numpy front
    end on the same samples framed the same way: the largest error on the bands within ``FRONTEND_RANGE`` of
    their frame's peak (the C twin's float32 criterion) and over all values."""
    runner = runtime.load(model_bytes, kind="audio-tflite", delegate="none", preserve_all_tensors=True)
    fe = Frontend(cfg)
    near, overall = 0.0, 0.0
    for w in np.asarray(windows, np.float32):
        runner(w[None])
        got = runner.tensor(LOGMEL_NAME)[0].astype(np.float64)
        ref = valid_logmel(fe, w)
        err = np.abs(got - ref)
        near = max(near, float(err[ref >= ref.max(axis=1, keepdims=True) - FRONTEND_RANGE].max()))
        overall = max(overall, float(err.max()))
    return {"max_abs_log10_error_within_60db": near, "max_abs_log10_error": overall, "windows": len(windows)}


def valid_logmel(fe: Frontend, audio: np.ndarray) -> np.ndarray:
    """numpy log-mel of every full ``n_fft`` frame of ``audio`` (no padding), as the phone file frames it."""
    cfg = fe.config
    return fe.logmel_frames(frame_view(np.ascontiguousarray(audio, np.float64), cfg.n_fft, cfg.hop_length))


def feature_error(
    model_bytes: bytes, cfg: FrontendConfig, norm: Normalization, clips: Any, stride: int
) -> dict[str, Any]:
    """The phone file's features of each window of whole clips vs the features-in path's for that window.

    Why both: the log-mel of every input frame (window and context) is compared with numpy on the same
    samples (``frontend_error``); the normalised features the body gets (tensor ``features``, back in log10
    units) are compared with the window cut from the whole clip's numpy features — what the features-in
    files are given. Log-mel bands within 60 dB of their frame's peak must be within ``FRONTEND_TOL``, a
    delta whose frames all are within ``delta_gain`` × that, on every window — except the delta of a clip's
    first and last w frames, where the offline path replicates the edge frame and the phone file reads the
    real context; that difference is measured apart (``clip_edge_delta``)."""
    runner = runtime.load(model_bytes, kind="audio-tflite", delegate="none", preserve_all_tensors=True)
    fe = Frontend(cfg)
    w, seg = cfg.delta_width // 2, cfg.segment_frames
    std = np.asarray(norm.std, np.float64)[:, None, :]
    mean = np.asarray(norm.mean, np.float64)[:, None, :]
    worst = {"logmel_60db": 0.0, "logmel_all": 0.0, "interior_logmel": 0.0, "interior_delta": 0.0,
             "edge_logmel": 0.0, "edge_delta": 0.0, "clip_edge_60db": 0.0, "clip_edge_max": 0.0}
    counts = {"clips": 0, "interior": 0, "edge": 0}
    edge_err, edge_ref = [], []
    for clip in clips:
        clip = pad_to_window(np.asarray(clip, np.float32), cfg)
        starts = clip_starts(clip, cfg, stride)
        if not starts:
            continue
        counts["clips"] += 1
        with _one_blas_thread():  # a 2-thread BLAS on a small, busy CPU is 5-10x slower here
            ref = fe.features(clip).astype(np.float64)  # (C, N, M): the whole clip, as the features-in path
        mel, n = ref[0], ref.shape[1]
        near = mel >= mel.max(axis=1, keepdims=True) - FRONTEND_RANGE
        rows = np.clip(np.arange(n)[:, None] + np.arange(-w, w + 1)[None, :], 0, n - 1)
        delta_near = near[rows].all(axis=1)  # every frame the offline delta reads is within 60 dB
        at_edge = np.zeros(n, bool)
        at_edge[:w], at_edge[n - w :] = True, True
        edges = edge_windows(starts, len(clip), cfg)
        for s, x, edge in zip(starts, context_windows(clip, starts, cfg), edges, strict=True):
            runner(x[None])
            got_mel = runner.tensor(LOGMEL_NAME)[0].astype(np.float64)
            ref_mel = valid_logmel(fe, x)
            e = np.abs(got_mel - ref_mel)
            worst["logmel_60db"] = max(worst["logmel_60db"],
                                       float(e[ref_mel >= ref_mel.max(axis=1, keepdims=True) - FRONTEND_RANGE].max()))
            worst["logmel_all"] = max(worst["logmel_all"], float(e.max()))
            got = runner.tensor(FEATURES_NAME)[0].transpose(2, 0, 1).astype(np.float64) * std + mean
            win = slice(s, s + seg)
            err = np.abs(got - ref[:, win])
            kind = "edge" if edge else "interior"
            counts[kind] += 1
            worst[f"{kind}_logmel"] = max(worst[f"{kind}_logmel"], float(err[0][near[win]].max(initial=0.0)))
            if w:
                inner = ~at_edge[win]
                ok = delta_near[win] & inner[:, None]
                worst[f"{kind}_delta"] = max(worst[f"{kind}_delta"], float(err[1][ok].max(initial=0.0)))
                if edge:
                    outer = at_edge[win]
                    edge_err.append(err[1][outer])
                    edge_ref.append(np.abs(ref[1][win][outer]))
                    worst["clip_edge_max"] = max(worst["clip_edge_max"], float(err[1][outer].max(initial=0.0)))
                    worst["clip_edge_60db"] = max(
                        worst["clip_edge_60db"], float(err[1][outer][delta_near[win][outer]].max(initial=0.0))
                    )
    edge_all = np.concatenate(edge_err) if edge_err else np.zeros((0, cfg.n_mels))
    offline = np.concatenate(edge_ref) if edge_ref else np.zeros((0, cfg.n_mels))
    out = {
        "clips": counts["clips"],
        "windows": counts["interior"] + counts["edge"],
        "interior_windows": counts["interior"],
        "clip_edge_windows": counts["edge"],
        "logmel_every_input_frame": {"max_abs_within_60db": worst["logmel_60db"], "max_abs": worst["logmel_all"]},
        "interior_windows_features": {"logmel_within_60db": worst["interior_logmel"],
                                      "delta_within_60db": worst["interior_delta"]},
        "clip_edge_windows_features": {"logmel_within_60db": worst["edge_logmel"],
                                       "delta_within_60db_except_clip_edge_frames": worst["edge_delta"]},
        "clip_edge_delta": {
            "what": f"delta of a clip's first and last {w} frames: the phone file's (valid, from the context) vs "
                    "the offline edge replication",
            "frames": int(edge_all.shape[0]),
            "max_abs": worst["clip_edge_max"],
            "max_abs_within_60db": worst["clip_edge_60db"],
            "mean_abs": float(edge_all.mean()) if edge_all.size else None,
            "mean_abs_offline_delta": float(offline.mean()) if offline.size else None,
        },
        "unit": "log10 (power) units; delta in log10 units per frame",
        "tolerance": {"logmel": FRONTEND_TOL, "delta": delta_gain(cfg) * FRONTEND_TOL, "normalisation": NORM_SLACK},
    }
    out["within_tolerance"] = feature_check_passes(out)
    return out


def feature_check_passes(check: dict[str, Any]) -> bool:
    """Every bound ``feature_error`` documents (the clip-edge delta is measured, not bounded)."""
    tol = check["tolerance"]
    mel_tol, delta_tol = tol["logmel"] + tol["normalisation"], tol["delta"] + tol["normalisation"]
    inner, edge = check["interior_windows_features"], check["clip_edge_windows_features"]
    return bool(
        check["logmel_every_input_frame"]["max_abs_within_60db"] <= tol["logmel"]
        and inner["logmel_within_60db"] <= mel_tol and inner["delta_within_60db"] <= delta_tol
        and edge["logmel_within_60db"] <= mel_tol and edge["delta_within_60db_except_clip_edge_frames"] <= delta_tol
    )


def _one_blas_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def probe_signal(cfg: FrontendConfig, n: int | None = None) -> np.ndarray:
    """``n`` samples (default: one phone-file input) of deterministic audio, chirp + noise as the benchmark
    runner's (the chirp repeats every window): no data files needed."""
    n = cfg.context_samples if n is None else n
    t = (np.arange(n) % cfg.segment_samples) / cfg.sample_rate
    chirp = 0.3 * np.sin(2 * np.pi * (100.0 + 3000.0 * t) * t)
    return (chirp + 0.05 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)


# ------------------------------------------------------------------------------- phone file: evaluation
CHECK_STRIDE = 25  # frames between checked windows (predict's stride)
CHECK_CLIPS = 12  # evaluation clips whose every window's features are checked at export


@dataclass
class PhoneEvaluation:
    """The evaluation windows as the phone file meets them: each window's audio with its context, cut from
    its clip. ``reference`` is the export's own fp32 torch reference on the features-in windows (whole-clip
    features), as log-probabilities: the phone file is held to the very numbers the .tflite files are."""

    audio: np.ndarray  # (k, context samples)
    edge: np.ndarray  # (k,) bool: the window's delta reads past its clip's first or last frame
    reference: Reference  # with log-softmax "logits"
    check_clips: list[np.ndarray]  # a few clips' audio for ``feature_error``
    check_source: str

    @classmethod
    def build(cls, ckpt: Any, ref: Any) -> PhoneEvaluation | None:
        ev = ref.evalset
        if ev is None or ev.index is None or not ev.clips:
            return None
        cfg = ckpt.frontend_config
        audio = np.zeros((len(ev.index), cfg.context_samples), np.float32)
        edge = np.zeros(len(ev.index), bool)
        check: list[np.ndarray] = []
        for clip in np.unique(ev.index[:, 0]):
            rows = np.flatnonzero(ev.index[:, 0] == clip)
            signal = pad_to_window(load_audio(ev.clips[clip].path, cfg.sample_rate, min_samples=cfg.hop_length), cfg)
            audio[rows] = context_windows(signal, ev.index[rows, 1], cfg)
            edge[rows] = edge_windows(ev.index[rows, 1], len(signal), cfg)
            if len(check) < CHECK_CLIPS:
                check.append(signal)
        source = (f"{ev.source}; the phone file gets each window's audio with its context "
                  f"({cfg.context_samples} samples)")
        iso = Reference(ref.windows, log_softmax(ref.logits), source, ev, ref.accuracy, ref.accuracy_source)
        return cls(audio, edge, iso, check, f"every window (stride {CHECK_STRIDE}) of the first {len(check)} "
                   f"clips of {ev.source}")


def measure_phone(model_bytes: bytes, body: bytes, evaluation: PhoneEvaluation) -> dict[str, Any]:
    """Quality of one phone candidate on the evaluation windows, and its top-1 agreement with the features-in
    body it carries on the same windows — on all of them, on interior windows (identical features up to
    float32) and on the windows whose delta reaches a clip's edge."""
    ev = evaluation.reference.evalset
    scores = run_all(runtime.load(model_bytes, kind="audio-tflite"), evaluation.audio, "phone file (fold 5 audio)")
    mine = runtime.log_scores(scores)
    q = quality(evaluation.reference, mine)
    q["vs"] = ("fp32 torch on the features-in windows (whole-clip features), log-probabilities: the file "
               "outputs softmax scores")
    body_logits = run_all(runtime.load(body, kind="tflite"), evaluation.reference.windows, "features-in body (fold 5)")
    body_acc = clip_accuracy(body_logits, ev)
    same = mine.argmax(1) == body_logits.argmax(1)
    edge = evaluation.edge
    return {
        "quality": q,
        "features_in": {
            "top1_agreement_same_windows": float(same.mean()),
            "top1_agreement_interior_windows": float(same[~edge].mean()) if (~edge).any() else None,
            "top1_agreement_clip_edge_windows": float(same[edge].mean()) if edge.any() else None,
            "clip_edge_windows": int(edge.sum()),
            "accuracy": body_acc,
            "phone_minus_features_in_points": 100.0 * (q["accuracy"]["value"] - body_acc),
        },
    }
