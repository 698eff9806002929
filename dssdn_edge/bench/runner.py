"""Benchmark runner for one export folder — self-contained so it can be copied to a device.

Why a single file with no ``dssdn_edge`` import: a Raspberry Pi (or any board) should only need
``python3``, ``numpy`` and one TFLite/ONNX runtime to measure exactly what ships. The host copies this file
next to the export folder, runs it with the device's ``python3`` and reads back the JSON it writes; the
same file runs locally (imported as ``dssdn_edge.bench.runner``), so both paths measure the same way. That is
also why it is one file of about 740 lines, over the project's ~600: the timing loop, the device probe and the
command line must travel together, and everything else it needs is in the runtime package it travels with.

What it measures, per artifact × runtime, with the runtime's thread count pinned to ``--threads``:
load time, warm-up, model latency over ``--runs`` (set input → invoke → read output), the front end on
1 s of audio, the end to end time audio → label stage by stage and its real-time factor, streaming, and peak
activation memory (labelled with how it was obtained). Before anything runs it checks every artifact against
the SHA-256 in manifest.json. Front ends: the runtime package's numpy one (generated only from the manifest's
``frontend`` numbers) and, given ``--frontend-lib`` (the C front end the host built or cross-built for this
machine), the C one, checked against numpy here first; both are measured side by side.

    python3 runner.py EXPORT_DIR [--runtimes auto|none|litert,onnxruntime,tflite-runtime] [--threads 1]
                      [--runs 200] [--warmup 20] [--out result.json] [--progress] [--frontend-lib LIB.so]
    python3 runner.py --probe          # which runtimes import here (works without numpy)

Needs Python >= 3.9 and numpy >= 1.17 (Raspberry Pi OS Bullseye or later).
Exit status: 0 ok, 2 bad input (message on stderr, JSON error on stdout), 3 runtime missing,
130 Ctrl-C (partial results kept in --out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

if "numpy" not in sys.modules:  # before numpy loads: its BLAS pool would fight the runtime's threads
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

try:  # the probe must work on a device without numpy, to say so
    import numpy as np
except ImportError:  # pragma: no cover - exercised on the remote side only
    np = None  # type: ignore[assignment]


def _runtime_package() -> Any:
    """The one runtime layer: ``dssdn_edge.runtime`` in the package; run as a script, the same package
    copied beside this file as ``dssdn_runtime/`` (a device) or read from the checkout. None when it cannot
    load (no numpy, or the probe sent alone on stdin): the probe still answers."""
    try:
        from .. import runtime

        return runtime
    except ImportError:
        pass
    import importlib.util

    here = os.path.dirname(os.path.abspath(globals().get("__file__") or "."))
    for folder in (os.path.join(here, DEVICE_RUNTIME_NAME), os.path.join(here, os.pardir, "runtime")):
        init = os.path.join(folder, "__init__.py")
        if os.path.isfile(init):
            spec = importlib.util.spec_from_file_location(DEVICE_RUNTIME_NAME, init,
                                                          submodule_search_locations=[folder])
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[DEVICE_RUNTIME_NAME] = module
            try:
                spec.loader.exec_module(module)  # type: ignore[union-attr]
            except ImportError:
                del sys.modules[DEVICE_RUNTIME_NAME]
                return None
            return module
    return None


DEVICE_RUNTIME_NAME = "dssdn_runtime"  # the runtime package's name beside runner.py on a device
rt = _runtime_package()

RUNNER_VERSION = 1
MANIFEST = "manifest.json"  # as dssdn_edge.runtime.manifest.MANIFEST
# runtime name -> (python module to import, artifact format it runs)
RUNTIMES: dict[str, tuple[str, str]] = {
    "litert": ("ai_edge_litert.interpreter", "tflite"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite"),
    "onnxruntime": ("onnxruntime", "onnx"),
}
DIST_NAMES = {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime", "onnxruntime": "onnxruntime"}
EXIT_BAD_INPUT, EXIT_NO_RUNTIME, EXIT_INTERRUPTED = 2, 3, 130
PROGRESS_TAG = "@@progress"


class RunnerError(Exception):
    """Bad input or an unusable device; ``code`` is the process exit status."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------------ stats
def summarize(samples_ms: list[float]) -> dict[str, float]:
    """mean/std/min/p50/p90/p99/max in ms (numpy linear percentiles, population std) — the same
    definition as ``dssdn_edge.bench.stats.summarize`` (a test keeps them equal)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(a.max()),
    }


# -------------------------------------------------------------------------------------- manifest
def load_manifest(export_dir: str, verify: bool = True) -> dict[str, Any]:
    """The runtime layer's manifest check (schema, front end, every artifact's SHA-256), as a RunnerError."""
    try:
        return rt.manifest.read_manifest(export_dir, verify)
    except rt.manifest.ManifestError as exc:
        raise RunnerError(str(exc)) from None


# ------------------------------------------------------------------------------------- runtimes
def _version(runtime: str, module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version(DIST_NAMES[runtime])
    except Exception:  # noqa: BLE001 - the version is informative only
        return "unknown"


# CPU part numbers of Arm cores (the "CPU part" line of an aarch64 /proc/cpuinfo).
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd46": "Cortex-A510"}
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp", "i8mm")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def device_facts() -> dict[str, Any]:
    """The machine as this interpreter sees it: architecture, CPU, int8 SIMD flags, OS, emulation.

    Read by the device's own Python rather than by a shell over ssh, because the two can differ: under
    qemu user-mode emulation (``dssdn-edge device emulate``) or in a container, the ssh host's shell
    describes the host CPU, while this process sees the emulated one. ``DSSDN_EMULATED`` is set by the
    emulation's wrapper; when present, every timing from this process is an emulated one."""
    cpuinfo = _read("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    cpu = fields.get("model name") or ARM_PARTS.get(fields.get("CPU part", "").lower(), "")
    os_name = ""
    for line in (_read("/etc/os-release") or _read("/usr/lib/os-release")).splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip().strip('"')
    return {
        "machine": platform.machine(),
        "cpu_model": cpu or None,
        "cpu_part": fields.get("CPU part"),
        "simd": sorted(f for f in set(flags) if f in INT8_FLAGS),
        "cores": os.cpu_count(),
        "os": os_name or None,
        "device_model": _read("/proc/device-tree/model").replace("\x00", "").strip() or None,
        "emulated": os.environ.get("DSSDN_EMULATED") or None,
    }


def probe() -> dict[str, Any]:
    """What this interpreter can run: python, numpy, each runtime's version or import error, and the
    device's own facts (``device_facts``)."""
    import importlib

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "numpy": getattr(np, "__version__", None),
        "device": device_facts(),
        "runtimes": {},
        "import_errors": {},
    }
    for name, (module, _) in RUNTIMES.items():
        if np is None:
            out["import_errors"][name] = "numpy missing"
            continue
        try:
            importlib.import_module(module)
            out["runtimes"][name] = _version(name, importlib.import_module(module.split(".")[0]))
        except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
            out["import_errors"][name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return out


AUDIO_SUFFIX = ".audio.tflite"
AUDIO_LAYOUT = "audio (batch, samples): 1-s window + its context"


def open_runtime(rel: str, runtime: str, path: str, threads: int, channels: int, layout: str | None) -> Any:
    """The artifact in the named runtime, through the one runtime layer (``dssdn_edge.runtime.core``)."""
    if rt is None:
        raise RunnerError(f"the runtime package ({DEVICE_RUNTIME_NAME}/) is missing beside runner.py", EXIT_NO_RUNTIME)
    if runtime == "onnxruntime":
        return rt.Onnx(path, threads=threads, layout=layout, channels=channels)
    if rel.endswith(AUDIO_SUFFIX):
        return rt.AudioLiteRT(path, threads=threads, engine=runtime)
    return rt.LiteRT(path, threads=threads, engine=runtime, layout=layout, channels=channels)


def feed(model: Any, pipeline: Any) -> np.ndarray:
    """The model input for the pipeline's 1 s of test audio: its features, prepared. A waveform-in file
    takes a 1-s window plus the context its frames read (18304 samples at the defaults), so the test audio
    is cut to the input tensor's own length."""
    if not _feeds_features(model):
        n = int(model.input_shape[-1])
        return np.ascontiguousarray(rt.logmel.test_audio(pipeline.frontend, n=n)[None], dtype=np.float32)
    return model.prepare(pipeline.features(pipeline.audio))


# ------------------------------------------------------------------------------------ measuring
def time_calls(fn: Callable[[], Any], runs: int, warmup: int) -> list[float]:
    """Per-call wall time in ms after ``warmup`` untimed calls (perf_counter, one call per sample)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


STAGES = ("frontend", "normalise_quantise", "invoke", "dequantise_softmax_average")
INTERLEAVE = 10  # iterations per turn when front ends are timed side by side
STREAM_HOP_SECONDS = 0.5


class WindowScores:
    """Class probabilities of one window's raw output: the plain softmax of ``model.dequantize(raw)``, bit for
    bit (tests/test_bench.py holds them equal), in a few numpy calls. Why: with the C front end, 50 classes of
    post-processing in plain numpy cost a fifth of dssdn-small's int8 invoke, nearly all of it call overhead.

    For an int8 output every probability is exp(y_q - y_max), y the dequantised value: a function of the raw
    pair (q, max q) alone, so a 256 x 256 table of exactly those float32 steps (dequantise, subtract, exp) is
    made once; a window is then its max, one row, one gather, a sum and a division. Other outputs: dequantise,
    and the same softmax without the mean over one window (which changes nothing)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        scale, zero_point = getattr(model, "output_scale", None), getattr(model, "output_zero_point", 0)
        self._table = None
        if type(scale) is float and scale > 0 and type(zero_point) is int:  # used for int8 outputs only
            q = np.arange(256, dtype=np.uint8).view(np.int8)  # in the order of their bit patterns
            y = (q.astype(np.float32) - zero_point) * scale  # as runtime.core.dequantize: float32 steps
            self._table = np.exp(y[None, :] - y[:, None])  # [pattern of the max, pattern of q]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self._table is not None and raw.dtype == np.int8:
            flat = raw.reshape(-1)
            z = self._table[int(flat.max()) & 0xFF].take(flat.view(np.uint8))
        else:
            z = np.array(self.model.dequantize(raw), np.float32).reshape(-1)
            if z.size == 0:
                return z
            z -= z.max()
            np.exp(z, out=z)
        z /= z.sum()
        return z


def _feeds_features(model: Any) -> bool:
    """False for a waveform-in model, whose front end runs inside its graph (one invoke is everything)."""
    return model.layout != "audio"


# ------------------------------------------------------------------------------------- front ends
FRONTEND_LIB = "libdssdn_features.so"  # the C front end built for the device, shipped beside runner.py
FRONTEND_NOTES = {
    "numpy": "numpy (runtime.logmel.LogMel): log-mel + delta; normalise + quantise in numpy",
    "c": "C (csrc/dssdn_features.c through runtime.cfeatures): log-mel + delta, and for int8 NHWC models the "
         "normalisation and int8 quantisation too (the input rows come out of C)",
}


def load_c_front(manifest: dict[str, Any], path: str | None) -> tuple[Any, str]:
    """(the C library for the manifest's front end, "loaded") or (None, why not): then numpy runs alone."""
    if not path:
        return None, "no C library given (the host builds one with a C compiler, or cross-builds it for a device)"
    if rt is None:
        return None, "the runtime package is missing"
    try:
        return rt.cfeatures.FeatureLibrary(path, manifest["frontend"]), "loaded"
    except rt.cfeatures.LibraryError as exc:
        return None, str(exc)


def c_feed(lib: Any, pipeline: Any) -> Any:
    """The C front end feeding this export's models (``runtime.cfeatures.ModelFeed``)."""
    return rt.cfeatures.ModelFeed(lib, pipeline.mean[:, 0, :], pipeline.std[:, 0, :], pipeline.frontend.segment_frames)


def frontend_check(lib: Any, pipeline: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """The C front end against this machine's numpy one on the test audio (``cfeatures.check_against``), with
    the first int8 model's input quantisation for the int8 rows."""
    art = next((a for r, a in sorted(manifest["artifacts"].items())
                if str((a.get("input") or {}).get("dtype")) == "int8" and not r.endswith(AUDIO_SUFFIX)
                and (a.get("input") or {}).get("scale")), None)
    int8 = None if art is None else (float(art["input"]["scale"]), int(art["input"].get("zero_point") or 0))
    out = rt.cfeatures.check_against(lib, pipeline.frontend.features(pipeline.audio), pipeline.audio,
                                     pipeline.mean[:, 0, :], pipeline.std[:, 0, :], int8)
    return {"audio": "runtime.logmel.test_audio (1 s chirp + noise)", **out}


# ------------------------------------------------------------------------------------ measuring
def stage_times(backend: Any, pipeline: Any, runs: int, warmup: int,
                audio_input: np.ndarray | None = None, fronts: dict[str, Any] | None = None) -> dict[str, Any]:
    """1 s of audio -> label, each stage timed in the same loop iteration: front end (log-mel + delta),
    normalise + quantise into the input tensor, invoke (set input, run, read output), dequantise + softmax +
    average over windows + argmax. Summaries per stage and of the per-iteration total.

    ``fronts`` (name → None for numpy, a ``cfeatures.ModelFeed`` for C) take turns in blocks of ``INTERLEAVE``
    iterations, each block after one untimed iteration, so a busy spell of a shared CPU lands on all alike
    while each runs with its own data in the caches, as it would alone (alternating every call let numpy's
    arrays evict the C tables: about +30 % on the C front end, measured); the result is then one such summary
    per front end. The C path of an int8 NHWC model has no separate normalise/quantise work: its rows are the
    input tensor."""
    single = fronts is None
    fronts = fronts or {"numpy": None}
    names = list(fronts)
    times = {n: {k: [] for k in (*STAGES, "total")} for n in names}
    feeds = _feeds_features(backend)
    params = {n: (f.int8_params(backend) if f is not None and feeds else None) for n, f in fronts.items()}
    clips = {n: (f.lib.clip(params[n]) if f is not None and feeds else None) for n, f in fronts.items()}
    scores = WindowScores(backend)
    frames = pipeline.frontend.segment_frames
    order = [(n, j) for b in range(-(-(warmup + runs) // INTERLEAVE))
             for n in (names if b % 2 == 0 else names[::-1]) for j in range(-1, INTERLEAVE)]
    done = dict.fromkeys(names, 0)
    for name, j in order:
        if done[name] >= warmup + runs:
            continue
        p, clip = params[name], clips[name]
        t0 = time.perf_counter()
        if not feeds:
            feats = None
        elif clip is not None:  # C: int8 rows, or float frames (frames, channels, n_mels)
            feats = clip(pipeline.audio)
        else:
            feats = pipeline.frontend.features(pipeline.audio)
        t1 = time.perf_counter()
        if not feeds:
            x = audio_input
        elif p is not None:
            x = feats[None, :frames]  # already the int8 NHWC input tensor
        elif clip is not None:
            x = backend.prepare(pipeline.normalise(feats.transpose(1, 0, 2)))
        else:
            x = backend.prepare(pipeline.normalise(feats))
        t2 = time.perf_counter()
        raw = backend.invoke(x)
        t3 = time.perf_counter()
        pipeline.label(scores(raw))
        t4 = time.perf_counter()
        if j < 0:
            continue  # the block's untimed first iteration
        if done[name] >= warmup:
            for key, a, b in zip((*STAGES, "total"), (t0, t1, t2, t3, t0), (t1, t2, t3, t4, t4)):  # noqa: B905
                times[name][key].append((b - a) * 1e3)
        done[name] += 1
    out = {}
    for name in names:
        out[name] = {k: summarize(v) for k, v in times[name].items()}
        if not feeds:
            out[name]["frontend"]["note"] = "inside the model (waveform-in file): counted in invoke"
        elif params[name] is not None:
            out[name]["frontend"]["note"] = "C: log-mel, delta, normalisation, int8 quantisation (input rows)"
    return out["numpy"] if single else out


def stream_cost(backend: Any, pipeline: Any, hops: int, hop_seconds: float = STREAM_HOP_SECONDS,
                warmup: int = 4, front: Any = None) -> dict[str, Any] | None:
    """Streaming, as an always-on device runs: audio arrives ``hop_seconds`` at a time, only the new frames
    are computed (``StreamingFeatures``, or with a ``cfeatures.ModelFeed`` the C stream, whose int8 rows are an
    int8 model's input), the latest 1-s window is classified every hop. Per-hop stage times and the cost per
    second of audio (p50 per hop / hop seconds). None for a waveform-in model."""
    if not _feeds_features(backend):
        return None
    fe = pipeline.frontend
    hop = int(round(hop_seconds * fe.sample_rate))
    if hop < fe.hop:
        raise RunnerError(f"stream hop {hop_seconds} s is shorter than one frame hop")
    first = -(-fe.segment_samples // hop)  # hops until the first full window
    audio = rt.logmel.test_audio(fe, n=(first + warmup + hops) * hop)
    if front is None:
        stream = rt.logmel.StreamingFeatures(fe, pipeline.mean, pipeline.std)
        raw_rows = False
    else:
        stream = front.windows(backend)
        raw_rows = front.int8_params(backend) is not None
    times: dict[str, list[float]] = {k: [] for k in (*STAGES, "total")}
    scores = WindowScores(backend)
    done = 0
    for i in range(len(audio) // hop):
        t0 = time.perf_counter()
        stream.push(audio[i * hop : (i + 1) * hop])
        window = stream.window()
        t1 = time.perf_counter()
        if window is None:
            continue
        if front is None:
            x = backend.prepare(window)
        elif raw_rows:
            x = window[None]  # the int8 NHWC input tensor, as C made it
        else:
            x = backend.prepare(window.transpose(1, 0, 2))
        t2 = time.perf_counter()
        raw = backend.invoke(x)
        t3 = time.perf_counter()
        pipeline.label(scores(raw))
        t4 = time.perf_counter()
        done += 1
        if done > warmup:
            times["frontend"].append((t1 - t0) * 1e3)  # includes normalising the new frames
            for key, a, b in zip(STAGES[1:], (t1, t2, t3), (t2, t3, t4)):  # noqa: B905 - runs on Python 3.9
                times[key].append((b - a) * 1e3)
            times["total"].append((t4 - t0) * 1e3)
    stages = {k: summarize(v) for k, v in times.items()}
    p50 = stages["total"]["p50"]
    what = "log-mel, delta, normalisation" + (", int8 quantisation in C" if raw_rows else "")
    return {
        "hop_seconds": hop_seconds,
        "hops": len(times["total"]),
        "window_seconds": fe.segment_seconds,
        "stages_ms_per_hop": stages,
        "ms_per_audio_second": p50 / hop_seconds,
        "x_realtime": hop_seconds * 1e3 / p50 if p50 > 0 else math.inf,
        "hop_over_invoke": p50 / stages["invoke"]["p50"] if stages["invoke"].get("p50") else None,
        "note": f"front end = new frames only ({what}); a window is classified every hop",
    }


def bench_backend(make: Callable[[], Any], pipeline: Any, runs: int, warmup: int,
                  c_front: Any = None) -> dict[str, Any]:
    """Load (timed), warm up, time the model alone, then audio -> label end to end stage by stage, then the
    streaming path: with a ``cfeatures.ModelFeed`` for both front ends side by side (the stages interleaved), and the
    top-level figures are the C front end's (the production one; ``frontend`` names which ran)."""
    t0 = time.perf_counter()
    backend = make()
    load_ms = (time.perf_counter() - t0) * 1e3
    x = feed(backend, pipeline)  # a waveform-in file's audio is made once here: not part of a timed stage
    samples = time_calls(lambda: backend.invoke(x), runs, warmup)
    feeds = _feeds_features(backend)
    fronts = {"numpy": None, **({"c": c_front} if c_front is not None and feeds else {})}
    staged = stage_times(backend, pipeline, runs, max(1, warmup // 4), x, fronts)
    hops = max(10, min(runs, 100))
    by_frontend = {}
    for name, front in fronts.items():
        stages = staged[name]
        invoke = stages["invoke"].get("p50")
        by_frontend[name] = {
            "stages_ms": stages,
            "e2e_ms": stages["total"],
            "e2e_over_invoke": stages["total"]["p50"] / invoke if invoke else None,
            "stream": stream_cost(backend, pipeline, hops=hops, front=front),
        }
    chosen = "c" if "c" in by_frontend else "numpy"
    e2e = by_frontend[chosen]["e2e_ms"]
    e2e_p50_s = e2e["p50"] / 1e3
    return {
        "load_ms": load_ms,
        "input": {
            "shape": list(backend.input_shape),
            "dtype": str(np.dtype(backend.input_dtype or np.float32)),
            "layout": backend.layout if feeds else AUDIO_LAYOUT,
            "scale": backend.input_scale or 0.0,
            "zero_point": backend.input_zero_point,
        },
        "latency_ms": summarize(samples),
        "samples_ms": [round(s, 6) for s in samples],
        "frontend": chosen if feeds else "inside the model",
        "e2e_ms": e2e,
        "stages_ms": by_frontend[chosen]["stages_ms"],
        "by_frontend": by_frontend,
        "audio_seconds": pipeline.seconds,
        "rtf": e2e_p50_s / pipeline.seconds,
        "x_realtime": pipeline.seconds / e2e_p50_s if e2e_p50_s > 0 else math.inf,
        "label": pipeline.label(backend.dequantize(backend.invoke(x))),
        "stream": by_frontend[chosen]["stream"],
        "activation_memory": backend.activation_memory(),
        "runtime_info": backend.info(),
    }


def plan(manifest: dict[str, Any], runtimes: list[str]) -> list[tuple[str, str]]:
    """(artifact, runtime) pairs to measure: every artifact whose format the runtime runs."""
    pairs = []
    for runtime in runtimes:
        fmt = RUNTIMES[runtime][1]
        for rel, art in sorted(manifest["artifacts"].items()):
            if rt.manifest.artifact_format(rel, art) == fmt:
                pairs.append((rel, runtime))
    return pairs


def resolve_runtimes(requested: str | list[str], available: dict[str, str]) -> list[str]:
    """'auto' → the importable ones (litert preferred over tflite-runtime); else check each name."""
    names = requested if isinstance(requested, list) else [r.strip() for r in requested.split(",") if r.strip()]
    if names == ["none"]:  # front end only (the host adds its own runtimes)
        return []
    if names == ["auto"]:
        chosen = [r for r in ("litert", "onnxruntime") if r in available]
        if "litert" not in available and "tflite-runtime" in available:
            chosen.insert(0, "tflite-runtime")
        if not chosen:
            raise RunnerError(
                "no runtime importable here (need one of ai_edge_litert, tflite_runtime, onnxruntime)",
                EXIT_NO_RUNTIME,
            )
        return chosen
    unknown = [r for r in names if r not in RUNTIMES]
    if unknown:
        raise RunnerError(f"unknown runtime(s) {', '.join(unknown)}; this runner knows {', '.join(RUNTIMES)}")
    missing = [r for r in names if r not in available]
    if missing:
        raise RunnerError(
            f"runtime(s) not importable here: {', '.join(missing)}; importable: {', '.join(available) or 'none'}",
            EXIT_NO_RUNTIME,
        )
    return names


Progress = Callable[[int, int, str], None]


def run_benchmark(
    export_dir: str,
    runtimes: str | list[str] = "auto",
    threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    out_path: str | None = None,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    frontend_lib: str | None = None,
) -> dict[str, Any]:
    """Measure every (artifact, runtime) pair; write ``out_path`` after each one so a Ctrl-C or a lost
    connection keeps what finished. Errors of one pair are recorded and the others still run.

    ``frontend_lib``: the C front end built for this machine; when it loads (and checks out against the
    numpy front end here), every features-in model is measured with both front ends side by side. Without it,
    numpy alone, with one line on stderr saying why."""
    if np is None:
        raise RunnerError(f"{sys.executable} cannot import numpy (pip install numpy)", EXIT_NO_RUNTIME)
    if runs < 1 or warmup < 0 or threads < 1:
        raise RunnerError(f"need runs >= 1, warmup >= 0, threads >= 1 (got {runs}, {warmup}, {threads})")
    manifest = load_manifest(export_dir)
    info = probe()
    chosen = resolve_runtimes(runtimes, info["runtimes"])
    pipeline = rt.logmel.Pipeline(manifest)
    channels = pipeline.frontend.channels
    c_lib, c_status = load_c_front(manifest, frontend_lib)
    if c_lib is None:
        print(f"runner: C front end unavailable ({c_status}); numpy front end only", file=sys.stderr, flush=True)
    jobs: list[tuple[str, str, Callable[[], Any]]] = []
    for rel, runtime in plan(manifest, chosen):
        path, layout = os.path.join(export_dir, rel), manifest["artifacts"][rel].get("layout")
        jobs.append((rel, runtime, lambda r=rel, n=runtime, p=path, lay=layout: open_runtime(
            r, n, p, threads, channels, lay)))

    result: dict[str, Any] = {
        "runner_version": RUNNER_VERSION,
        "export": {
            "name": manifest.get("name"),
            "dir": os.path.abspath(export_dir),
            "verified": True,
            "manifest_sha256": rt.manifest.sha256_file(os.path.join(export_dir, MANIFEST)),
            "complexity": manifest.get("complexity", {}),
            "frontend": manifest["frontend"],
        },
        "environment": {k: info[k] for k in ("python", "executable", "machine", "numpy", "device")},
        "runtimes_available": info["runtimes"],
        "settings": {"threads": threads, "runs": runs, "warmup": warmup, "runtimes": chosen},
        "frontend": {},
        "results": [],
        "interrupted": False,
    }
    total = len(jobs) + 1
    try:
        result["frontend"] = frontend_times(pipeline, c_lib, runs, warmup)
        result["frontend"]["c_library"] = {"path": frontend_lib, "status": c_status}
        if c_lib is not None:
            check = frontend_check(c_lib, pipeline, manifest)
            result["frontend"]["check"] = check
            if not check["ok"]:  # a library that computes something else is not measured as the front end
                print(f"runner: C front end differs from numpy here ({check}); numpy front end only",
                      file=sys.stderr, flush=True)
                c_lib = None
                result["frontend"]["implementation"] = "numpy"
        c_front = c_feed(c_lib, pipeline) if c_lib is not None else None
        _emit(progress, 1, total, "front end")
        _write(out_path, result)
        for k, (rel, runtime, factory) in enumerate(jobs, start=2):
            entry: dict[str, Any] = {
                "artifact": rel,
                "runtime": runtime,
                "precision": rt.manifest.precision_of(rel, manifest["artifacts"].get(rel, {})),
            }
            try:
                entry.update(bench_backend(factory, pipeline, runs, warmup, c_front))
                entry["error"] = None
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken pair must not hide the others
                entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            result["results"].append(entry)
            _emit(progress, k, total, f"{runtime} {rel}")
            _write(out_path, result)
            if interrupt is not None and interrupt.seen:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        result["interrupted"] = True
    if interrupt is not None and interrupt.seen:
        result["interrupted"] = True
    borrow_activation_memory(result["results"])
    _write(out_path, result)
    return result


def frontend_times(pipeline: Any, c_lib: Any, runs: int, warmup: int) -> dict[str, Any]:
    """The front end alone on 1 s of audio (log-mel + delta + normalisation, float out), numpy and, when
    loaded, C, taking turns in blocks as in ``stage_times``. ``implementation`` names the one the bench's
    top-level figures use."""
    calls = {"numpy": lambda: pipeline.features(pipeline.audio)}
    if c_lib is not None:
        calls["c"] = lambda: pipeline.normalise(c_lib.features(pipeline.audio))
    samples: dict[str, list[float]] = {n: [] for n in calls}
    names = list(calls)
    for b in range(-(-(warmup + runs) // INTERLEAVE)):
        for name in names if b % 2 == 0 else names[::-1]:
            calls[name]()  # untimed: this block's caches
            for j in range(INTERLEAVE):
                t0 = time.perf_counter()
                calls[name]()
                if b * INTERLEAVE + j >= warmup and len(samples[name]) < runs:
                    samples[name].append((time.perf_counter() - t0) * 1e3 / pipeline.seconds)
    impl = {n: {"description": FRONTEND_NOTES[n], "ms_per_second": summarize(v),
                "samples_ms": [round(x, 6) for x in v]} for n, v in samples.items()}
    chosen = "c" if "c" in impl else "numpy"
    return {"implementation": chosen, "audio_seconds": pipeline.seconds, **impl[chosen], "implementations": impl}


def borrow_activation_memory(entries: list[dict[str, Any]]) -> None:
    """Runtimes without a memory figure (onnxruntime, torch) run the same network as the TFLite file of
    the same precision: reuse its planner estimate, saying so, rather than leave a hole."""
    tflite = {
        e["precision"]: e["activation_memory"]
        for e in entries
        if e.get("activation_memory", {}).get("bytes")
        and e["artifact"].endswith(".tflite")
        and e["activation_memory"].get("kind") == "planner estimate"
    }
    for e in entries:
        mem = e.get("activation_memory")
        if mem is not None and mem.get("bytes") is None and e["precision"] in tflite:
            src = tflite[e["precision"]]
            e["activation_memory"] = {
                "bytes": src["bytes"],
                "kind": f"planner estimate of the {e['precision']} TFLite graph",
                "method": f"same network as the {e['precision']} TFLite file: {src['method']}",
            }


def _emit(progress: Progress | None, done: int, total: int, label: str) -> None:
    if progress is not None:
        progress(done, total, label)


def _write(path: str | None, result: dict[str, Any]) -> None:
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, path)


def _stderr_progress(done: int, total: int, label: str) -> None:
    try:
        print(f"{PROGRESS_TAG} {done} {total} {label}", file=sys.stderr, flush=True)
    except OSError:  # the host went away; keep measuring, the result file still gets written
        pass


class Interrupt:
    """The handler of SIGINT/SIGTERM/SIGHUP: remembers the signal, then raises KeyboardInterrupt. The memory
    matters because a KeyboardInterrupt that lands in a destructor or a library callback is printed and
    dropped by Python; the run then still stops after the pair it is measuring."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", nargs="?")
    ap.add_argument("--probe", action="store_true", help="print which runtimes import here and exit")
    ap.add_argument("--runtimes", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", default=None, help="write the JSON here (after every measurement)")
    ap.add_argument("--progress", action="store_true", help=f"'{PROGRESS_TAG} i n label' lines on stderr")
    ap.add_argument("--frontend-lib", default=None,
                    help=f"the C front end built for this machine ({FRONTEND_LIB}); without it numpy runs alone")
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    if not args.export_dir:
        ap.error("EXPORT_DIR is required unless --probe")
    interrupt = Interrupt()
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, interrupt)
    print(f"@@pid {os.getpid()}", file=sys.stderr, flush=True)
    try:
        result = run_benchmark(
            args.export_dir,
            args.runtimes,
            args.threads,
            args.runs,
            args.warmup,
            args.out,
            progress=_stderr_progress if args.progress else None,
            interrupt=interrupt,
            frontend_lib=args.frontend_lib,
        )
    except RunnerError as exc:
        print(json.dumps({"error": str(exc), "code": exc.code}))
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    if not args.out:
        print(json.dumps(result))
    return EXIT_INTERRUPTED if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
