"""Do the emulated Pi's outputs equal this x86 host's? Same runtime, same numpy, same inputs, real clips.

Why the reference is the *same* runtime and numpy version on x86 (installed beside the project with pip's
``--target``, run with ``python -S``): a difference then belongs to the CPU (its kernels and rounding), not
to a version. Both sides run one script built on the device runner's own code (``Pipeline``,
``runner.open_runtime``: the runtime layer's module): the features from each side's numpy, and each
feature-input .tflite of the export on (a) one shared input, computed here, and (b) the side's own features.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArchiveUnreachable, DeviceError
from ..runtime import logmel
from ..runtime.manifest import read_manifest
from .emulate import EmulatedPi
from .userland import default_cache

RUNNER_DIR = Path(__file__).resolve().parents[1] / "bench"

# Runs on both sides: argv = runner folder, inputs .npz, export folder, runtime, output .npz.
SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import runner
data = np.load(sys.argv[2])
export, runtime, out = sys.argv[3], sys.argv[4], sys.argv[5]
manifest = runner.load_manifest(export)  # every artifact's sha256 checked here, on this side
pipe = runner.rt.logmel.Pipeline(manifest)
feats = np.stack([pipe.features(a) for a in data["audio"]])
res = {"features": feats}
for rel, art in sorted(manifest["artifacts"].items()):
    fmt = runner.rt.manifest.artifact_format(rel, art)
    if fmt != "tflite" or len((art.get("input") or {}).get("shape") or []) != 4:
        continue  # the models that take features (not waveform-in variants)
    b = runner.open_runtime(rel, runtime, export + "/" + rel, 1, pipe.frontend.channels, art.get("layout"))
    res["same_input:" + rel] = np.stack([b.invoke(b.prepare(f)) for f in data["features"]])
    res["own_features:" + rel] = np.stack([b.invoke(b.prepare(f)) for f in feats])
np.savez(out, **res)
print(json.dumps(runner.probe()))
"""


def x86_reference(requirements: list[str], cache: Path | None = None) -> Path:
    """A folder holding ``requirements`` for this host's Python (wheels only, no dependencies), cached per
    requirement set and written under a temporary name until complete."""
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    target = (Path(cache) if cache else default_cache()) / "x86-reference" / key
    if (target / ".complete").is_file():
        return target
    tmp = target.with_name(f"{key}.partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:",
                           "--target", str(tmp), *requirements], capture_output=True, text=True, timeout=900)
    if proc.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        text = proc.stderr + proc.stdout
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), f"exit {proc.returncode}")
        if any(s in text for s in ("NewConnectionError", "Max retries exceeded", "Temporary failure in name")):
            raise ArchiveUnreachable(f"{' '.join(requirements)}: package index unreachable (pip: {last})")
        raise DeviceError(f"{' '.join(requirements)}: pip install failed: {last}")
    (tmp / ".complete").write_text("\n".join(requirements) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def run_side(cmd: list[str], runtime: str, export: Path, inputs: Path, out: Path,
             env: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the side's runner.probe(), its arrays) from one run of ``SCRIPT``."""
    proc = subprocess.run([*cmd, "-", str(RUNNER_DIR), str(inputs), str(export), runtime, str(out)],
                          input=SCRIPT, capture_output=True, text=True, timeout=1800, env=env)
    if proc.returncode:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), f"exit {proc.returncode}")
        raise DeviceError(f"{cmd[0]}: the agreement script failed: {last.strip()}")
    with np.load(out) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(proc.stdout.strip().splitlines()[-1]), arrays


def compare(dev: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per model and input path: int8 steps apart (histogram), top-1 flips with x86's top-1 margin there,
    fp32 max difference; and the features' max difference."""
    out: dict[str, Any] = {"features_max_abs": float(np.abs(dev["features"] - ref["features"]).max()), "models": {}}
    for key in sorted(k for k in dev if ":" in k):
        got, want = dev[key], ref[key]
        n = len(got)
        g, w = got.reshape(n, -1), want.reshape(n, -1)
        flips = g.argmax(1) != w.argmax(1)
        top = np.sort(w.astype(np.float64), axis=1)
        margin = top[:, -1] - top[:, -2]
        entry: dict[str, Any] = {"clips": n, "top1_flips": int(flips.sum()), "flipped": np.flatnonzero(flips).tolist(),
                                 "flip_margins": margin[flips].tolist(), "dtype": str(got.dtype)}
        if got.dtype.kind == "i":
            steps = np.abs(g.astype(np.int32) - w.astype(np.int32))
            entry["max_steps"] = int(steps.max())
            entry["steps_histogram"] = np.bincount(steps.ravel()).tolist()
            entry["max_steps_per_clip"] = steps.max(axis=1).tolist()
            entry["x86_margin_steps"] = margin.tolist()
        else:
            entry["max_abs"] = float(np.abs(g.astype(np.float64) - w).max())
        out["models"][key] = entry
    return out


def agreement(board: EmulatedPi, runtime: str, export: Path, clips: list[np.ndarray], workdir: Path) -> dict[str, Any]:
    """Run ``clips`` (1-s mono windows) through ``export`` on ``board`` with ``runtime`` and on this host
    with the same runtime and numpy versions; returns both probes and ``compare``'s statistics."""
    stamp = board.userland.stamp
    requirement = dict(map(tuple, stamp["spec"]["wheels"]))[runtime]
    ref_dir = x86_reference([f"numpy=={stamp['versions']['numpy']}", requirement])
    workdir.mkdir(parents=True, exist_ok=True)
    pipe = logmel.Pipeline(read_manifest(str(export)))
    inputs = workdir / "inputs.npz"
    np.savez(inputs, audio=np.stack(clips), features=np.stack([pipe.features(a) for a in clips]))
    dev_probe, dev = run_side([str(board.python_for(runtime))], runtime, export, inputs, workdir / "device.npz")
    env = {**os.environ, "PYTHONPATH": str(ref_dir)}
    ref_probe, ref = run_side([sys.executable, "-S"], runtime, export, inputs, workdir / "x86.npz", env)
    return {"runtime": runtime, "board": board.profile.key, "device": dev_probe, "x86": ref_probe,
            **compare(dev, ref)}
