"""Is the emulated microcontroller's answer the host's? Clip labels against ``dssdn-edge predict``, logits
against TensorFlow Lite Micro.

Why two references: ``predict`` with the int8 ``.tflite`` (LiteRT on x86) is what a user compares with, and
the clip label must match it; but LiteRT's kernels already differ from TFLM's by a few LSB, so the bit-exact
reference for the generated model is the TFLM interpreter (pip ``tflite-micro``), fed the very int8 inputs
the device computed. A clip label may differ from predict's only at a near tie: where the host's margin
between its top-1 and the device's label (in int8 steps of the mean logits) is at most twice the largest
per-window difference between the device's logits and LiteRT's on that clip (the emulated Pi's rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..audio_stream import file_windows
from ..frontend import Frontend, FrontendConfig, Normalization
from .firmware import ClipRun


def read_int16(path: Path) -> np.ndarray:
    """A 16-bit mono clip's samples exactly as stored (the firmware bakes int16 PCM)."""
    import soundfile as sf

    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return data[:, 0].copy() if data.shape[1] == 1 else np.round(data.mean(axis=1)).astype(np.int16)


def host_reference(export_dir: Path, paths: list[Path]) -> list[dict[str, Any]]:
    """Per clip: predict's label (int8 .tflite, LiteRT), the window starts, the int8 inputs, LiteRT's int8 logits."""
    from .. import runtime
    from ..predict import WINDOW_STRIDE as stride
    from ..predict import Predictor
    from .firmware import int8_tflite

    manifest = json.loads((Path(export_dir) / "manifest.json").read_text())
    model_path = Path(export_dir) / int8_tflite(manifest)
    predictor = Predictor.from_path(model_path)
    fe = Frontend(FrontendConfig.from_dict(manifest["frontend"]))
    norm = Normalization.from_dict(manifest["normalization"])
    runner = runtime.load(model_path.read_bytes(), kind="tflite")
    out = []
    for p in paths:
        pred = predictor.predict_one(p, top_k=len(predictor.labels))
        batches = list(file_windows(p, fe, stride))
        starts = np.concatenate([b.starts for b in batches])
        q = runner.prepare(norm.apply(np.concatenate([b.windows for b in batches])))  # NHWC int8
        logits = [runner.invoke(w[None]).reshape(-1) for w in q]
        out.append({"path": str(p), "label": predictor.labels.index(pred.labels[0]), "starts": starts.tolist(),
                    "inputs": q, "litert": np.stack(logits)})
    return out


def compare(export_dir: Path, paths: list[Path], run: ClipRun) -> dict[str, Any]:
    """The firmware's run against ``host_reference`` and TFLM (see the module docstring)."""
    from ..export import tflm as tflm_mod
    from .firmware import int8_tflite

    manifest = json.loads((Path(export_dir) / "manifest.json").read_text())
    micro = tflm_mod.open_tflm((Path(export_dir) / int8_tflite(manifest)).read_bytes(), "TFLite Micro")
    ref = host_reference(export_dir, paths)
    clips = []
    for i, (r, dev_inputs, dev_scores) in enumerate(zip(ref, run.inputs, run.scores, strict=True)):
        starts = [w["first_frame"] for w in run.windows[i] if not w["silent"]]
        same_windows = starts == r["starts"]
        tflm_out = np.stack([tflm_mod.invoke(micro, x[None], "TFLite Micro").reshape(-1)
                             for x in dev_inputs]) if len(dev_inputs) else dev_scores
        logits_equal_tflm = bool(np.array_equal(tflm_out, dev_scores))
        inputs_equal = (same_windows and dev_inputs.shape == r["inputs"].shape
                        and (dev_inputs == r["inputs"]).reshape(len(dev_inputs), -1).all(axis=1).tolist())
        steps = (int(np.abs(dev_scores.astype(np.int32) - r["litert"].astype(np.int32)).max())
                 if same_windows and len(dev_scores) else None)
        host_mean = r["litert"].astype(np.float64).mean(axis=0)
        label = run.clip_labels[i]
        margin = float(host_mean[r["label"]] - host_mean[label]) if label >= 0 else None
        agree = label == r["label"]
        near_tie = (not agree and steps is not None and margin is not None and margin <= 2 * steps)
        clips.append({"path": r["path"], "device_label": label, "predict_label": r["label"], "agree": agree,
                      "near_tie": near_tie, "margin_steps": margin, "max_steps_vs_litert": steps,
                      "windows": len(starts), "same_windows": same_windows,
                      "inputs_equal_host": inputs_equal if isinstance(inputs_equal, list) else [],
                      "logits_equal_tflm": logits_equal_tflm})
    n = len(clips)
    return {
        "clips": clips,
        "n_clips": n,
        "top1_agreement": sum(c["agree"] for c in clips) / n if n else 0.0,
        "differing_not_near_tie": [c["path"] for c in clips if not c["agree"] and not c["near_tie"]],
        "logits_equal_tflm": all(c["logits_equal_tflm"] for c in clips),
        "windows_with_host_inputs": sum(sum(c["inputs_equal_host"]) for c in clips),
        "windows": sum(c["windows"] for c in clips),
        "ok": all(c["logits_equal_tflm"] and c["same_windows"] and (c["agree"] or c["near_tie"]) for c in clips),
    }
