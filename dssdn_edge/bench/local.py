"""Benchmark on this machine: the device runner in a child process, plus torch eager and TFLM in-process.

The LiteRT / tflite-runtime / ONNX Runtime numbers come from ``runner.py`` run as its own process, exactly
as on a Raspberry Pi: a fresh interpreter, numpy's BLAS pool limited before numpy loads, nothing from the
training stack loaded. Torch eager (needs the package and the checkpoint) and TFLM (needs the pip
``tflite-micro``) only run here, with the runner's own front end and timing loop so the figures compare.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import runtime
from ..errors import BenchError
from . import runner
from .mcu import measure_arena

RUNNER_PATH = Path(runner.__file__).resolve()
LOCAL_ONLY = ("torch", "tflm")
RUNTIMES = (*LOCAL_ONLY, *runner.RUNTIMES)
DEFAULT_LOCAL = ("torch", "onnxruntime", "litert", "tflm")
TFLM_MAX_RUNS = 20  # the host build uses reference kernels: slow, and its timing says nothing about an MCU
Progress = Callable[[int, int, str], None]


# -------------------------------------------------------------------------------- child process
def run_runner_process(
    cmd: list[str],
    load_result: Callable[[], dict[str, Any] | None],
    progress: Progress | None,
    on_interrupt: Callable[[int | None], None] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any] | None, bool]:
    """Run a runner command (local python or ``ssh … python3 runner.py``), following its progress lines.

    The child gets its own session so a Ctrl-C reaches only us; we then ask it to stop (``on_interrupt``
    with its pid, default SIGINT) and wait for it to write its partial result. Returns (the result that
    ``load_result`` reads once the child is gone, interrupted). A runner error becomes a BenchError."""
    interrupted, pid, tail = False, None, []
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env=env,
        )
        assert proc.stderr is not None
        while True:
            try:
                line = proc.stderr.readline()
            except KeyboardInterrupt:
                if not interrupted:
                    interrupted = True
                    (on_interrupt or (lambda _pid: proc.send_signal(signal.SIGINT)))(pid)
                continue
            if not line:
                break
            if line.startswith("@@pid "):
                pid = int(line.split()[1])
            elif line.startswith(runner.PROGRESS_TAG):
                _, done, total, label = (line.rstrip("\n").split(" ", 3) + [""])[:4]
                if progress is not None:
                    progress(int(done), int(total), label)
            else:
                tail = (tail + [line.rstrip()])[-20:]
        proc.wait()
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    if stdout.strip():  # the runner prints JSON on stdout only for an error (results go to --out)
        with contextlib.suppress(ValueError, IndexError):
            error = json.loads(stdout.strip().splitlines()[-1])
            if isinstance(error, dict) and "error" in error:
                raise BenchError(error["error"])
    data = load_result()
    if data is None and not interrupted:
        last = next((t for t in reversed(tail) if t.strip()), f"exit status {proc.returncode}")
        raise BenchError(f"benchmark runner failed: {last}")
    return data, interrupted or proc.returncode == runner.EXIT_INTERRUPTED


# ------------------------------------------------------------------------------- local runtimes
def tflm_memory(arena: dict[str, int], manifest_arena: int | None) -> dict[str, Any]:
    """TFLM's activation memory is its measured arena (the runtime itself has no planner estimate)."""
    method = "measured: TFLM arena total (RecordingMicroAllocator, tflite-micro host interpreter)"
    if manifest_arena:
        method += f"; manifest says {manifest_arena} bytes"
    return {"bytes": arena["total"], "kind": "measured TFLM arena", "method": method}


def load_torch_model(manifest: dict[str, Any], checkpoint: Path | None) -> tuple[Any, str]:
    """The network of the export: from ``checkpoint`` if given, else the shipped weights of the export's
    name, else the manifest's model_config with random weights (latency does not depend on weights)."""
    from ..checkpoint import load_checkpoint
    from ..errors import CheckpointError
    from ..model import ModelConfig, build_model
    from ..pretrained import pretrained_path

    config = ModelConfig.from_dict(manifest["model_config"])
    candidates = [Path(checkpoint)] if checkpoint else []
    if not checkpoint and manifest.get("name"):
        with contextlib.suppress(ValueError):
            candidates.append(pretrained_path(manifest["name"]))
    for path in candidates:
        if path.is_file() or checkpoint:
            ckpt = load_checkpoint(path)
            if ckpt.model_config != config:
                if checkpoint:
                    raise CheckpointError(f"{path}: not the network of this export (model_config differs)")
                continue
            return ckpt.model, f"checkpoint {path}"
    return build_model(config).eval(), "random init from the manifest's model_config (latency only)"


@contextlib.contextmanager
def _single_thread_blas() -> Iterator[None]:
    """numpy here was loaded long ago, so limit its BLAS pool the way the runner does with env vars."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def frontend_library(frontend: dict[str, Any], machine: str | None = None) -> tuple[Path | None, str]:
    """The C front end for an export's front-end config, built for ``machine`` (None: this one; "aarch64":
    cross-built with Debian's gcc-aarch64-linux-gnu): (the shared library, "built") or (None, why not).
    The library comes from the user's cache when this exact build exists (``frontend_native.build_library``)."""
    import platform
    import shutil as sh

    from ..frontend import FrontendConfig
    from ..frontend_native import AARCH64_CC, NativeUnavailable, build_library

    cc = None
    if machine is not None and machine != platform.machine():
        if machine != "aarch64":
            return None, f"no cross-compiler for {machine} (the C front end is cross-built for aarch64 only)"
        if sh.which(AARCH64_CC) is None:
            return None, f"{AARCH64_CC} not found (apt-get install gcc-aarch64-linux-gnu)"
        cc = AARCH64_CC
    try:
        return build_library(FrontendConfig.from_dict(frontend), cc), "built"
    except (NativeUnavailable, ValueError) as exc:
        return None, str(exc)


def run_local(
    export_dir: Path,
    runtimes: list[str] | None,
    threads: int,
    runs: int,
    warmup: int,
    progress: Progress | None = None,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Runner runtimes in a child process, then torch and tflm here; one result dict. ``runtimes=None``:
    whatever the runner can import here (how a Raspberry Pi benches itself), without torch and TFLM."""
    unknown = [r for r in runtimes or [] if r not in RUNTIMES]
    if unknown:
        raise BenchError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    device_rts = ["auto"] if runtimes is None else [r for r in runtimes if r in runner.RUNTIMES]
    extras = [r for r in LOCAL_ONLY if r in (runtimes or [])]
    with tempfile.TemporaryDirectory(prefix="dssdn-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            str(RUNNER_PATH),
            str(export_dir),
            "--runtimes",
            ",".join(device_rts) or "none",
            "--threads",
            str(threads),
            "--runs",
            str(runs),
            "--warmup",
            str(warmup),
            "--out",
            str(out),
            "--progress",
        ]
        lib, why = frontend_library(runner.load_manifest(str(export_dir), verify=False)["frontend"])
        if lib is None:
            print(f"dssdn-edge: C front end unavailable ({why}); benchmarking the numpy front end only",
                  file=sys.stderr)
        else:
            cmd += ["--frontend-lib", str(lib)]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        totals = {"all": len(extras) + 1}

        def forward(done: int, total: int, label: str) -> None:
            totals["all"] = total + len(extras)
            if progress is not None:
                progress(done, totals["all"], label)

        result, interrupted = run_runner_process(
            cmd, lambda: json.loads(out.read_text()) if out.is_file() else None, forward, env=env
        )
    if result is None:
        raise BenchError("benchmark interrupted before the first measurement")
    result["settings"]["runtimes"] += extras
    if interrupted:
        result["interrupted"] = True
        return result
    manifest = runner.load_manifest(str(export_dir), verify=False)  # verified by the runner just now
    done = len(result["results"]) + 1
    try:
        for name in extras:
            result["results"].append(_bench_extra(name, export_dir, manifest, threads, runs, warmup, checkpoint))
            done += 1
            if progress is not None:
                progress(done, totals["all"], name)
    except KeyboardInterrupt:
        result["interrupted"] = True
    runner.borrow_activation_memory(result["results"])
    return result


def _bench_extra(
    name: str,
    export_dir: Path,
    manifest: dict[str, Any],
    threads: int,
    runs: int,
    warmup: int,
    checkpoint: Path | None,
) -> dict[str, Any]:
    pipeline = runtime.logmel.Pipeline(manifest)
    fe = pipeline.frontend
    entry: dict[str, Any] = {"runtime": name, "error": None}
    try:
        with _single_thread_blas():
            if name == "torch":
                model, weights = load_torch_model(manifest, checkpoint)
                shape = (1, fe.channels, 1 + fe.segment_samples // fe.hop, fe.n_mels)
                entry.update(artifact="torch eager", precision="fp32", weights=weights)
                model_rt = lambda: runtime.load(model, kind="torch", threads=threads, input_shape=shape)  # noqa: E731
                entry.update(runner.bench_backend(model_rt, pipeline, runs, warmup))
            else:
                from ..device.firmware import int8_tflite
                from .mcu import manifest_arena_bytes

                rel = int8_tflite(manifest)
                arena = measure_arena(export_dir / rel)
                manifest_arena = manifest_arena_bytes(manifest)
                entry.update(
                    artifact=rel,
                    precision="int8",
                    note="host build of TFLM with reference kernels: timing is not MCU timing",
                )
                n = min(runs, TFLM_MAX_RUNS)
                entry.update(
                    runner.bench_backend(
                        lambda: runtime.load(export_dir / rel, kind="tflm", arena_size=arena["total"] + 1024),
                        pipeline,
                        n,
                        min(warmup, 2),
                    )
                )
                entry["activation_memory"] = tflm_memory(arena, manifest_arena)
    except KeyboardInterrupt:
        raise
    except BenchError as exc:
        entry["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded next to the other runtimes' results
        entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    entry.setdefault("artifact", name)
    entry.setdefault("precision", "int8" if name == "tflm" else "fp32")
    return entry
