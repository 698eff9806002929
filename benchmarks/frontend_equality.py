"""The C front end against the numpy reference on all of ESC-50 fold 5: int8 input windows and predict's labels.

    python benchmarks/frontend_equality.py [--export exports/dssdn-small] [--out benchmarks/results]

Why: the C front end (csrc/dssdn_features.c, through frontend_native) is the production front end of the host
and the Pi, so its claim "same model input as numpy" needs the whole test fold behind it, not a sample:

- int8 windows: every window the project cuts from every fold-5 clip (data.window_starts, stride 25 frames),
  numpy's ``Frontend.features`` → ``Normalization.apply`` → ``quantize`` against the C stream's int8 rows.
  A value may differ only where float32 round-off in the log-mel lands on the other side of a rounding
  boundary: counted, with the largest distance of numpy's unrounded value from k + 1/2;
- predict: the export's int8 .tflite classifies every fold-5 clip with each front end (``Predictor``, the mean
  of window logits); clip accuracy of both and their top-1 agreement.

Writes frontend_equality.json and .md into --out; exits 1 when a window differs by more than one step, or off
a rounding boundary (0.05 of a step), or the accuracies differ.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dssdn_edge.audio import load_audio  # noqa: E402
from dssdn_edge.data import default_data_root, pad_to_window, silent_frames, window_starts  # noqa: E402
from dssdn_edge.fileio import write_text  # noqa: E402
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization  # noqa: E402
from dssdn_edge.frontend_native import ModelInput, NativeFrontend  # noqa: E402

STRIDE = 25
BOUNDARY = 0.05  # steps: how close to k + 1/2 numpy's unrounded value must be where the C differs


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """numpy's int8 input rule (export.tflite.quantize): float64 division, round half to even, clip."""
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point, -128, 127).astype(np.int8)


def int8_windows(names: list[str], data: Path, cfg: FrontendConfig, mi: ModelInput) -> dict:
    fe, native, seg = Frontend(cfg), NativeFrontend(cfg), cfg.segment_frames
    windows = values = differing = worst_step = 0
    worst_boundary, t_numpy, t_c = 0.0, 0.0, 0.0
    for name in names:
        audio = pad_to_window(load_audio(data / name, cfg.sample_rate, min_samples=cfg.hop_length), cfg)
        t0 = time.perf_counter()
        ref = mi.normalization.apply(fe.features(audio)).transpose(1, 2, 0)
        want = quantize(ref, mi.scale, mi.zero_point)
        t1 = time.perf_counter()
        got = native.features_int8(audio, mi)
        t2 = time.perf_counter()
        t_numpy, t_c = t_numpy + t1 - t0, t_c + t2 - t1
        for s in window_starts(silent_frames(audio, cfg), seg, STRIDE) or [0]:
            diff = want[s : s + seg].astype(np.int16) - got[s : s + seg]
            windows, values = windows + 1, values + diff.size
            bad = diff != 0
            if bad.any():
                unrounded = np.asarray(ref[s : s + seg][bad], np.float64) / mi.scale
                worst_boundary = max(worst_boundary, float(np.abs(unrounded - np.floor(unrounded) - 0.5).max()))
                worst_step = max(worst_step, int(np.abs(diff).max()))
                differing += int(bad.sum())
    return {"clips": len(names), "windows": windows, "values": values, "differing_values": differing,
            "differing_fraction": differing / values, "max_step": worst_step,
            "max_distance_from_boundary": worst_boundary,
            "seconds": {"numpy_features_normalise_quantise": t_numpy, "c_int8_rows": t_c}}


def predictions(model: Path, names: list[str], data: Path, targets: list[int]) -> dict:
    from dssdn_edge.predict import Predictor

    out: dict = {"model": model.name}
    tops = {}
    for kind in ("numpy", "c"):
        pred = Predictor.from_path(model, frontend=kind)
        t0 = time.perf_counter()
        tops[kind] = np.array([int(np.argmax(pred.logits(data / n)[0])) for n in names])
        out[kind] = {"accuracy": float((tops[kind] == np.array(targets)).mean()),
                     "seconds": time.perf_counter() - t0}
    out["top1_agreement"] = float((tops["numpy"] == tops["c"]).mean())
    out["disagreeing_clips"] = [names[i] for i in np.flatnonzero(tops["numpy"] != tops["c"])]
    return out


def render(res: dict) -> str:
    w, p = res["int8_windows"], res["predict"]
    return "\n".join([
        "# C front end vs numpy reference (ESC-50 fold 5)",
        "",
        f"- created {res['created']}; export {res['export']}; int8 input scale {res['input']['scale']:.9g}, "
        f"zero point {res['input']['zero_point']}",
        f"- command: `python benchmarks/frontend_equality.py --export {res['export']}`",
        "",
        "## int8 input windows (every window of every fold-5 clip, stride 25 frames)",
        "",
        "| clips | windows | int8 values | differing | fraction | max step | max distance from k + 1/2 (numpy) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {w['clips']} | {w['windows']} | {w['values']:,} | {w['differing_values']} | "
        f"{w['differing_fraction']:.2e} | {w['max_step']} | {w['max_distance_from_boundary']:.4f} |",
        "",
        "A differing value is float32 round-off in the C log-mel (the numpy reference computes in float64) landing "
        "on the other side of a rounding boundary; given the same float features the C rows equal numpy's bit for "
        "bit (tests/test_frontend_native.py).",
        "",
        f"## predict ({p['model']}, mean of window logits per clip)",
        "",
        "| front end | clip accuracy | seconds for the fold |",
        "|---|---:|---:|",
        f"| numpy | {100 * p['numpy']['accuracy']:.2f} % | {p['numpy']['seconds']:.1f} |",
        f"| C | {100 * p['c']['accuracy']:.2f} % | {p['c']['seconds']:.1f} |",
        "",
        f"Top-1 agreement: {100 * p['top1_agreement']:.2f} % ({len(p['disagreeing_clips'])} clips differ"
        + (": " + ", ".join(p["disagreeing_clips"]) if p["disagreeing_clips"] else "") + ").",
        "",
        f"Result: **{res['result']}**",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=ROOT / "exports" / "dssdn-small", help="an export folder")
    ap.add_argument("--data", type=Path, default=None, help="ESC-50 folder (default: ../shared/data/esc50_16k)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    data = args.data or default_data_root()
    manifest = json.loads((args.export / "manifest.json").read_text())
    rel, entry = next((r, a) for r, a in sorted(manifest["artifacts"].items())
                      if r.endswith(".tflite") and (a.get("input") or {}).get("dtype") == "int8"
                      and not r.endswith((".audio.tflite", ".packed.tflite")))
    cfg = FrontendConfig.from_dict(manifest["frontend"])
    mi = ModelInput(Normalization.from_dict(manifest["normalization"]), entry["input"]["scale"],
                    entry["input"]["zero_point"])
    with (data / "metadata.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "5"]
    names = [r["filename"] for r in rows]
    res = {
        "schema": "dssdn-frontend-equality/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "export": str(args.export),
        "input": {"artifact": rel, "scale": mi.scale, "zero_point": mi.zero_point},
        "int8_windows": int8_windows(names, data, cfg, mi),
        "predict": predictions(args.export / rel, names, data, [int(r["target"]) for r in rows]),
    }
    w, p = res["int8_windows"], res["predict"]
    ok = (w["max_step"] <= 1 and w["max_distance_from_boundary"] <= BOUNDARY
          and p["numpy"]["accuracy"] == p["c"]["accuracy"])
    res["result"] = "PASS" if ok else "FAIL"
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "frontend_equality.json", json.dumps(res, indent=2) + "\n")
    write_text(args.out / "frontend_equality.md", render(res))
    print(f"int8 windows: {w['differing_values']} of {w['values']:,} values differ (max step {w['max_step']}, "
          f"max distance from a boundary {w['max_distance_from_boundary']:.4f}); predict accuracy numpy "
          f"{p['numpy']['accuracy']:.4f}, C {p['c']['accuracy']:.4f}, top-1 agreement {p['top1_agreement']:.4f}: "
          f"{res['result']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
