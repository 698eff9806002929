"""Benchmark runner for one export folder — self-contained so it can be copied to a device.

Why a single file with no ``dssdn_edge`` import: a Raspberry Pi (or any board) should only need
``python3``, ``numpy`` and one TFLite/ONNX runtime to measure exactly what ships. The host copies this file
next to the export folder, runs it with the device's ``python3`` and reads back the JSON it writes; the
same file runs locally (imported as ``dssdn_edge.bench.runner``), so both paths measure the same way.

What it measures, per artifact × runtime, with the runtime's thread count pinned to ``--threads``:
load time, warm-up, model latency over ``--runs`` (set input → invoke → read output), the front end on
1 s of audio (its own numpy log-mel, generated only from the manifest's ``frontend`` numbers), the end to
end time audio → label and its real-time factor, and peak activation memory (labelled with how it was
obtained). Before anything runs it checks every artifact against the SHA-256 in manifest.json.

    python3 runner.py EXPORT_DIR [--runtimes auto|none|litert,onnxruntime,tflite-runtime] [--threads 1]
                      [--runs 200] [--warmup 20] [--out result.json] [--progress]
    python3 runner.py --probe          # which runtimes import here (works without numpy)

Needs Python >= 3.9 and numpy >= 1.17 (Raspberry Pi OS Bullseye or later).
Exit status: 0 ok, 2 bad input (message on stderr, JSON error on stdout), 3 runtime missing,
130 Ctrl-C (partial results kept in --out).
"""

from __future__ import annotations

import abc
import argparse
import hashlib
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

RUNNER_VERSION = 1
MANIFEST = "manifest.json"
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


# ------------------------------------------------------------------------------------- front end
class LogMel:
    """The shipped front end re-derived from the manifest's numbers only: periodic Hann window, HTK mel
    filterbank without area normalisation, centre-padded STFT power, log10(x + eps), regression delta.
    It must equal ``dssdn_edge.frontend.Frontend.features`` (checked by tests/test_bench.py)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.sample_rate = int(cfg["sample_rate"])
        self.n_fft = int(cfg["n_fft"])
        self.hop = int(cfg["hop_length"])
        self.n_mels = int(cfg["n_mels"])
        self.log_eps = float(cfg["log_eps"])
        self.delta_width = int(cfg.get("delta_width", 0))
        self.segment_seconds = float(cfg.get("segment_seconds", 1.0))
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.n_fft) / self.n_fft)
        self.fb_t = np.ascontiguousarray(self._filterbank(float(cfg["fmin"]), float(cfg["fmax"])).T)

    def _filterbank(self, fmin: float, fmax: float) -> np.ndarray:
        def hz_to_mel(f: Any) -> Any:
            return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

        def mel_to_hz(m: Any) -> Any:
            return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)

        n_bins = self.n_fft // 2 + 1
        fft_freqs = np.linspace(0.0, self.sample_rate / 2.0, n_bins)
        mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), self.n_mels + 2))
        fdiff = np.diff(mel_f)
        ramps = mel_f[:, None] - fft_freqs[None, :]
        lower = -ramps[:-2] / fdiff[:-1, None]
        upper = ramps[2:] / fdiff[1:, None]
        return np.maximum(0.0, np.minimum(lower, upper))

    @property
    def channels(self) -> int:
        return 2 if self.delta_width else 1

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    def logmel(self, audio: np.ndarray) -> np.ndarray:
        padded = np.pad(np.asarray(audio, dtype=np.float64), self.n_fft // 2)
        n_frames = 1 + (len(padded) - self.n_fft) // self.hop  # = 1 + len(audio) // hop (centre padding)
        frames = padded[np.arange(n_frames)[:, None] * self.hop + np.arange(self.n_fft)[None, :]]
        spec = np.fft.rfft(frames * self.window, n=self.n_fft, axis=-1)
        return np.log10((spec.real**2 + spec.imag**2) @ self.fb_t + self.log_eps)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio → (channels, frames, n_mels) float32, unnormalised."""
        mel = self.logmel(audio)
        if not self.delta_width:
            return mel[None].astype(np.float32)
        w = self.delta_width // 2
        padded = np.concatenate([np.repeat(mel[:1], w, 0), mel, np.repeat(mel[-1:], w, 0)])
        n = len(mel)
        delta = np.zeros_like(mel)
        for k in range(1, w + 1):
            delta += k * (padded[w + k : w + k + n] - padded[w - k : w - k + n])
        delta /= 2.0 * sum(k * k for k in range(1, w + 1))
        return np.stack([mel, delta]).astype(np.float32)


def test_audio(frontend: LogMel, seed: int = 0) -> np.ndarray:
    """One model window of deterministic audio (chirp + noise): real spectral content, no data files."""
    n = frontend.segment_samples
    t = np.arange(n) / frontend.sample_rate
    chirp = 0.3 * np.sin(2 * np.pi * (100.0 + 3000.0 * t) * t)
    return (chirp + 0.05 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# -------------------------------------------------------------------------------------- manifest
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(export_dir: str, verify: bool = True) -> dict[str, Any]:
    """Read manifest.json and check every listed artifact's size and SHA-256 before anything runs."""
    path = os.path.join(export_dir, MANIFEST)
    if not os.path.isdir(export_dir):
        raise RunnerError(f"{export_dir}: export folder not found")
    if not os.path.isfile(path):
        raise RunnerError(f"{export_dir}: no {MANIFEST} (not an export folder; run dssdn-edge export)")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{path}: unreadable manifest ({exc})") from None
    for key in ("frontend", "normalization", "artifacts"):
        if key not in manifest:
            raise RunnerError(f"{path}: manifest lacks {key!r}")
    if verify:
        for rel, art in manifest["artifacts"].items():
            file = os.path.join(export_dir, rel)
            if not os.path.isfile(file):
                raise RunnerError(f"{file}: listed in {MANIFEST} but missing")
            digest = sha256_file(file)
            if digest != art.get("sha256"):
                want = str(art.get("sha256"))[:12]
                raise RunnerError(
                    f"{file}: sha256 {digest[:12]}… does not match {MANIFEST} ({want}…);"
                    " the export was modified or copied incompletely"
                )
    return manifest


def artifact_format(rel: str, art: dict[str, Any]) -> str:
    """'tflite' / 'onnx' / other, from the file name first (robust to wording of the 'format' field)."""
    for ext in ("tflite", "onnx"):
        if rel.endswith("." + ext):
            return ext
    return str(art.get("format", "")).lower()


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


def probe() -> dict[str, Any]:
    """What this interpreter can run: python, numpy, and each runtime's version or import error."""
    import importlib

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "numpy": getattr(np, "__version__", None),
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


class Backend(abc.ABC):
    """One loaded model in one runtime. Subclasses fill ``input_*`` and implement ``run``."""

    runtime = "?"
    input_shape: tuple[int, ...] = ()
    input_dtype: Any = None
    input_scale = 0.0
    input_zero_point = 0
    output_scale = 0.0
    output_zero_point = 0
    layout = "NCHW"  # of the input tensor

    def prepare(self, features_chw: np.ndarray) -> np.ndarray:
        """Normalised (C, T, M) features → the model's input tensor (layout, batch, int8 quantisation)."""
        x = features_chw[None]
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        if self.input_dtype is not None and np.dtype(self.input_dtype).kind == "i":
            info = np.iinfo(self.input_dtype)
            x = np.clip(np.round(x / self.input_scale) + self.input_zero_point, info.min, info.max)
        return np.ascontiguousarray(x, dtype=self.input_dtype or np.float32)

    def logits(self, raw: np.ndarray) -> np.ndarray:
        if np.dtype(raw.dtype).kind == "i" and self.output_scale:
            return (raw.astype(np.float32) - self.output_zero_point) * self.output_scale
        return raw.astype(np.float32)

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Invoke the model on one prepared input tensor; return its raw output."""

    def activation_memory(self) -> dict[str, Any]:
        return {"bytes": None, "kind": "n/a", "method": "not available for this runtime"}

    def info(self) -> dict[str, Any]:
        """Runtime facts that explain a latency (e.g. how many delegate partitions the graph split into)."""
        return {}


def infer_layout(shape: tuple[int, ...], channels: int, declared: str | None) -> str:
    """The manifest's layout ('NHWC (batch, frames, bands, channels)') or, without one, the tensor shape's."""
    word = str(declared or "").split(" ")[0].upper()
    if word in ("NHWC", "NCHW"):
        return word
    return "NHWC" if len(shape) == 4 and shape[-1] == channels and shape[1] != channels else "NCHW"


class TFLiteBackend(Backend):
    """ai_edge_litert or tflite_runtime: same Interpreter API; XNNPACK with ``num_threads`` threads."""

    def __init__(self, runtime: str, path: str, threads: int, channels: int, declared_layout: str | None):
        import importlib

        self.runtime = runtime
        self._module = importlib.import_module(RUNTIMES[runtime][0])
        self.path = path
        self.interp = self._module.Interpreter(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()
        inp, out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_scale, self.input_zero_point = float(inp["quantization"][0]), int(inp["quantization"][1])
        self.output_scale, self.output_zero_point = float(out["quantization"][0]), int(out["quantization"][1])
        self.layout = infer_layout(self.input_shape, channels, declared_layout)

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self._in, x)
        self.interp.invoke()
        return self.interp.get_tensor(self._out)

    def activation_memory(self) -> dict[str, Any]:
        return tflite_planner_estimate(self._module, self.path)

    def info(self) -> dict[str, Any]:
        """XNNPACK partitions: 1 means the whole graph runs in the delegate; more means ops it does not take
        (each split costs a hand-over to the built-in kernels, which is where int8 can lose to fp32)."""
        try:
            ops = self.interp._get_ops_details()  # noqa: SLF001
        except Exception:  # noqa: BLE001 - informative only
            return {}
        return {"delegate_partitions": sum(op["op_name"] == "DELEGATE" for op in ops)}


def tflite_planner_estimate(module: Any, path: str) -> dict[str, Any]:
    """Peak of the summed sizes of tensors live at any op (produced earlier, consumed at or after it),
    from the un-delegated graph. A lower bound for any arena planner: no alignment, no kernel scratch."""
    try:
        kwargs = {}
        resolver = getattr(module, "OpResolverType", None)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interp = module.Interpreter(model_path=path, **kwargs)
        interp.allocate_tensors()
        ops = interp._get_ops_details()  # noqa: SLF001 - public enough: the only op-level view offered
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
    except Exception as exc:  # noqa: BLE001 - the estimate is optional
        return {
            "bytes": None,
            "kind": "n/a",
            "method": f"planner estimate failed: {type(exc).__name__}: {exc}"[:200],
        }
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


class OnnxBackend(Backend):
    """onnxruntime CPU provider, sequential, ``intra_op_num_threads = threads``."""

    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int, channels: int, declared_layout: str | None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self._name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in inp.shape)
        self.input_dtype = np.dtype({"tensor(float)": "float32", "tensor(int8)": "int8"}.get(inp.type, "float32"))
        self.layout = infer_layout(self.input_shape, channels, declared_layout)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._name: x})[0]


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


class Pipeline:
    """The pieces shared by every backend: front end, normalisation, test audio, labels."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.frontend = LogMel(manifest["frontend"])
        norm = manifest["normalization"]
        self.mean = np.asarray(norm["mean"], np.float32)[:, None, :]
        self.std = np.asarray(norm["std"], np.float32)[:, None, :]
        self.labels = list(manifest.get("labels") or [])
        self.audio = test_audio(self.frontend)
        self.seconds = len(self.audio) / self.frontend.sample_rate

    def features(self, audio: np.ndarray) -> np.ndarray:
        return ((self.frontend.features(audio) - self.mean) / self.std).astype(np.float32)

    def label(self, logits: np.ndarray) -> str:
        k = int(np.argmax(logits))
        return self.labels[k] if k < len(self.labels) else str(k)


def bench_backend(make: Callable[[], Backend], pipeline: Pipeline, runs: int, warmup: int) -> dict[str, Any]:
    """Load (timed), warm up, time the model alone, then time audio → label end to end."""
    t0 = time.perf_counter()
    backend = make()
    load_ms = (time.perf_counter() - t0) * 1e3
    x = backend.prepare(pipeline.features(pipeline.audio))
    samples = time_calls(lambda: backend.run(x), runs, warmup)

    def end_to_end() -> str:
        return pipeline.label(backend.logits(backend.run(backend.prepare(pipeline.features(pipeline.audio)))))

    e2e = time_calls(end_to_end, runs, max(1, warmup // 4))
    e2e_p50_s = float(np.median(e2e)) / 1e3
    return {
        "load_ms": load_ms,
        "input": {
            "shape": list(backend.input_shape),
            "dtype": str(np.dtype(backend.input_dtype or np.float32)),
            "layout": backend.layout,
            "scale": backend.input_scale,
            "zero_point": backend.input_zero_point,
        },
        "latency_ms": summarize(samples),
        "samples_ms": [round(s, 6) for s in samples],
        "e2e_ms": summarize(e2e),
        "audio_seconds": pipeline.seconds,
        "rtf": e2e_p50_s / pipeline.seconds,
        "x_realtime": pipeline.seconds / e2e_p50_s if e2e_p50_s > 0 else math.inf,
        "label": end_to_end(),
        "activation_memory": backend.activation_memory(),
        "runtime_info": backend.info(),
    }


def precision_of(rel: str, art: dict[str, Any]) -> str:
    """'int8' or 'fp32': the manifest's precision ('int8 QDQ' has float I/O), else I/O dtype, else name."""
    declared = str(art.get("precision", "")).split(" ")[0].lower()
    if declared in ("int8", "fp32"):
        return declared
    dtype = str((art.get("input") or {}).get("dtype", ""))
    return "int8" if "int8" in dtype or "int8" in rel else "fp32"


def plan(manifest: dict[str, Any], runtimes: list[str]) -> list[tuple[str, str]]:
    """(artifact, runtime) pairs to measure: every artifact whose format the runtime runs."""
    pairs = []
    for runtime in runtimes:
        fmt = RUNTIMES[runtime][1]
        for rel, art in sorted(manifest["artifacts"].items()):
            if artifact_format(rel, art) == fmt:
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
) -> dict[str, Any]:
    """Measure every (artifact, runtime) pair; write ``out_path`` after each one so a Ctrl-C or a lost
    connection keeps what finished. Errors of one pair are recorded and the others still run."""
    if np is None:
        raise RunnerError(f"{sys.executable} cannot import numpy (pip install numpy)", EXIT_NO_RUNTIME)
    if runs < 1 or warmup < 0 or threads < 1:
        raise RunnerError(f"need runs >= 1, warmup >= 0, threads >= 1 (got {runs}, {warmup}, {threads})")
    manifest = load_manifest(export_dir)
    info = probe()
    chosen = resolve_runtimes(runtimes, info["runtimes"])
    pipeline = Pipeline(manifest)
    channels = pipeline.frontend.channels
    jobs: list[tuple[str, str, Callable[[], Backend]]] = []
    for rel, runtime in plan(manifest, chosen):
        path, art = os.path.join(export_dir, rel), manifest["artifacts"][rel]
        layout = art.get("layout")
        if runtime == "onnxruntime":
            jobs.append((rel, runtime, lambda p=path, lay=layout: OnnxBackend(p, threads, channels, lay)))
        else:
            jobs.append(
                (
                    rel,
                    runtime,
                    lambda r=runtime, p=path, lay=layout: TFLiteBackend(r, p, threads, channels, lay),
                )
            )

    result: dict[str, Any] = {
        "runner_version": RUNNER_VERSION,
        "export": {
            "name": manifest.get("name"),
            "dir": os.path.abspath(export_dir),
            "verified": True,
            "manifest_sha256": sha256_file(os.path.join(export_dir, MANIFEST)),
            "complexity": manifest.get("complexity", {}),
            "frontend": manifest["frontend"],
        },
        "environment": {k: info[k] for k in ("python", "executable", "machine", "numpy")},
        "runtimes_available": info["runtimes"],
        "settings": {"threads": threads, "runs": runs, "warmup": warmup, "runtimes": chosen},
        "frontend": {},
        "results": [],
        "interrupted": False,
    }
    total = len(jobs) + 1
    try:
        fe = time_calls(lambda: pipeline.features(pipeline.audio), runs, warmup)
        per_s = [s / pipeline.seconds for s in fe]
        result["frontend"] = {
            "implementation": "numpy (runner.LogMel)",
            "audio_seconds": pipeline.seconds,
            "ms_per_second": summarize(per_s),
            "samples_ms": [round(s, 6) for s in per_s],
        }
        _emit(progress, 1, total, "front end")
        _write(out_path, result)
        for k, (rel, runtime, factory) in enumerate(jobs, start=2):
            entry: dict[str, Any] = {
                "artifact": rel,
                "runtime": runtime,
                "precision": precision_of(rel, manifest["artifacts"].get(rel, {})),
            }
            try:
                entry.update(bench_backend(factory, pipeline, runs, warmup))
                entry["error"] = None
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken pair must not hide the others
                entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            result["results"].append(entry)
            _emit(progress, k, total, f"{runtime} {rel}")
            _write(out_path, result)
    except KeyboardInterrupt:
        result["interrupted"] = True
    borrow_activation_memory(result["results"])
    _write(out_path, result)
    return result


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


def _interrupt(signum: int, frame: Any) -> None:
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
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    if not args.export_dir:
        ap.error("EXPORT_DIR is required unless --probe")
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, _interrupt)
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
