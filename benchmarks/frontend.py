"""Front-end speed: numpy Frontend vs librosa vs the compiled C twin on 1 s of audio.

    python benchmarks/frontend.py [--runs N] [--out benchmarks/results]

Why: the front end runs on every hop on the device and on every clip in training, so it must be cheap,
and the claim "same features as librosa, faster" needs a number behind it. Each implementation is timed
in its own process loop (median of --runs calls after a warm-up); the C twin times itself in-process
(``--bench``) so process start-up is excluded. Everything runs single-threaded (BLAS threads default to
1 here, as on a device): on a busy machine a 2-thread OpenBLAS matmul can wait a scheduler slice
and make one numpy call 100x slower. Writes frontend.json and frontend.md into --out and prints
PASS/FAIL for the targets; exits 1 if a target fails.
"""

from __future__ import annotations

import os

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _var in BLAS_THREAD_VARS:  # before numpy loads its BLAS; an explicit setting wins
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dssdn_edge.audio import load_audio  # noqa: E402
from dssdn_edge.frontend import Frontend, FrontendConfig  # noqa: E402
from dssdn_edge.frontend_c import bench_c_frontend, compile_frontend_tool, emit_c, run_c_frontend  # noqa: E402

AUDIO_DIR = ROOT.parent / "shared" / "data" / "esc50_16k" / "audio"
SILENCE_RMS = 1e-3  # -60 dBFS: below this the first second counts as silent
TARGETS = {"librosa/numpy": 3.0, "librosa/C": 10.0}
WARMUP = 10


# ------------------------------------------------------------------------------------------ input
def pick_audio(cfg: FrontendConfig) -> tuple[np.ndarray, str]:
    """First second of the first non-silent shared ESC-50 clip, or a seeded chirp + noise without it."""
    n = cfg.sample_rate
    if AUDIO_DIR.is_dir():
        for path in sorted(AUDIO_DIR.glob("*.flac")):
            audio = load_audio(path, cfg.sample_rate)[:n]
            if len(audio) == n and float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) >= SILENCE_RMS:
                return audio, f"real: {path.name} (first 1 s, ESC-50 16 kHz)"
    t = np.arange(n) / cfg.sample_rate
    chirp = 0.3 * np.sin(2 * np.pi * (100.0 * t + 0.5 * 3900.0 * t**2))
    noise = 0.01 * np.random.default_rng(0).standard_normal(n)
    return (chirp + noise).astype(np.float32), f"SYNTHETIC chirp+noise ({AUDIO_DIR} not found)"


# ----------------------------------------------------------------------------------------- timing
def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn`` in ms over ``runs`` calls, after a warm-up (caches, lazy imports)."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def librosa_features(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """The same features the librosa way: (2, frames, n_mels) log10 HTK mel power + width-5 delta."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=True,
        norm=None,
    )
    logmel = np.log10(mel + cfg.log_eps)
    delta = librosa.feature.delta(logmel, width=cfg.delta_width, mode="nearest")
    return np.stack([logmel.T, delta.T])


def build_c(cfg: FrontendConfig, work: Path) -> dict[str, Path]:
    emit_c(cfg, work / "src")
    return {p: compile_frontend_tool(work / "src", work / "build", p) for p in ("float", "double")}


# ---------------------------------------------------------------------------------------- results
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import librosa

    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "librosa": librosa.__version__,
        "cc": cc[0].removeprefix("cc ") if cc else "unknown",
    }


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_markdown(res: dict) -> str:
    t, agree = res["timings_ms"], res["agreement"]
    rows = [
        ("numpy `Frontend.features` (log-mel + delta, float64)", t["numpy"], t["librosa"] / t["numpy"]),
        ("librosa melspectrogram + delta (float32)", t["librosa"], 1.0),
        ("C twin, float32 build (**log-mel only**)", t["c_float"], t["librosa"] / t["c_float"]),
        ("C twin, double build (**log-mel only**)", t["c_double"], t["librosa"] / t["c_double"]),
    ]
    lines = [
        "# Front-end benchmark",
        "",
        f"{res['date']} · {res['cpu']} · " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        "",
        f"Input: {res['audio']}; {res['frames']} frames; median of {res['runs']} runs in one process; "
        f"single-threaded ({', '.join(f'{k}={v}' for k, v in res['threads'].items())}); "
        f"1-min load average {res['load_average_1m']:.1f} on {res['cpu_count']} CPUs while measuring.",
        "",
        "| implementation | ms per 1 s of audio | librosa / this |",
        "|---|---:|---:|",
        *(f"| {name} | {ms:.3f} | {ratio:.1f}× |" for name, ms, ratio in rows),
        "",
        "| target | measured | result |",
        "|---|---:|---|",
        *(
            f"| {k} ≥ {v['target']}× | {v['measured']:.1f}× | {v['result']} |"
            for k, v in res["targets"].items()
        ),
        "",
        "Agreement on this input (max abs, log10 units): "
        f"librosa vs numpy {agree['librosa_vs_numpy']:.2e}, "
        f"C float vs numpy {agree['c_float_vs_numpy']:.2e} "
        f"({agree['c_float_vs_numpy_within_60db']:.2e} on bands within 60 dB of their frame's peak), "
        f"C double vs numpy {agree['c_double_vs_numpy']:.2e}.",
        "",
        f"Note: {res['note']}",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main
def run(runs: int) -> dict:
    cfg = FrontendConfig()
    fe = Frontend(cfg)
    audio, source = pick_audio(cfg)
    timings = {
        "numpy": median_ms(lambda: fe.features(audio), runs),
        "librosa": median_ms(lambda: librosa_features(audio, cfg), runs),
    }
    with tempfile.TemporaryDirectory(prefix="dssdn_frontend_bench_") as tmp:
        bins = build_c(cfg, Path(tmp))
        for precision, binary in bins.items():
            timings[f"c_{precision}"] = 1e3 * bench_c_frontend(binary, audio, max(runs, 1000))
        c_out = {p: run_c_frontend(b, audio, cfg.n_mels) for p, b in bins.items()}
    ref, logmel = fe.features(audio), fe.logmel(audio)
    loud = logmel >= logmel.max(axis=1, keepdims=True) - 6.0  # bands within 60 dB of their frame's peak
    measured = {
        "librosa/numpy": timings["librosa"] / timings["numpy"],
        "librosa/C": timings["librosa"] / timings["c_float"],
    }
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "versions": versions(),
        "audio": source,
        "frames": int(ref.shape[1]),
        "runs": runs,
        "threads": {var: os.environ[var] for var in BLAS_THREAD_VARS},
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "config": cfg.to_dict(),
        "timings_ms": timings,
        "ratios": measured,
        "targets": {
            k: {"target": TARGETS[k], "measured": v, "result": "PASS" if v >= TARGETS[k] else "FAIL"}
            for k, v in measured.items()
        },
        "agreement": {
            "librosa_vs_numpy": float(np.abs(librosa_features(audio, cfg) - ref).max()),
            "c_float_vs_numpy": float(np.abs(c_out["float"] - logmel).max()),
            "c_float_vs_numpy_within_60db": float(np.abs(c_out["float"] - logmel)[loud].max()),
            "c_double_vs_numpy": float(np.abs(c_out["double"] - logmel).max()),
        },
        "note": "numpy and librosa times include the delta channel; the C twin computes log-mel only "
        f"(timed in-process by its --bench mode, median of {max(runs, 1000)} runs, cc -O2). "
        "The C 'librosa/C' target uses the float32 build, the device default.",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="timed calls per implementation (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results directory")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    res = run(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "frontend.json", json.dumps(res, indent=2) + "\n")
    write_atomic(args.out / "frontend.md", render_markdown(res))
    print(f"input: {res['audio']}")
    for name, ms in res["timings_ms"].items():
        print(f"{name:>9}: {ms:8.3f} ms per 1 s of audio")
    for name, t in res["targets"].items():
        print(f"{t['result']}: {name} = {t['measured']:.1f}x (target >= {t['target']}x)")
    print(f"wrote {args.out / 'frontend.json'} and {args.out / 'frontend.md'}")
    return 0 if all(t["result"] == "PASS" for t in res["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
