"""Front-end speed: numpy Frontend vs librosa vs the compiled C twin on 1 s of audio.

    python benchmarks/frontend.py [--rounds 40] [--runs 400] [--c-runs 4000] [--out benchmarks/results]

Why: the front end runs on every hop on the device and on every clip in training, so it must be cheap,
and the claim "same features as librosa, faster" needs a number behind it. The machine this runs on is
often busy (2 cores shared with training jobs), and a naive timing once put librosa at 15 ms instead of
~2 ms (a 2-thread OpenBLAS on a busy core does that: 8 ms of CPU, 12 ms of wall clock when measured), so
the measurement is built to survive load:

- single-threaded: the BLAS/OpenMP/numba thread counts are forced to 1 before numpy is imported (and
  checked with threadpoolctl when it is installed), as on a device;
- interleaved: every round times each implementation in turn, the order rotated from round to round,
  so a slow spell of the machine lands on all of them alike instead of on whichever ran then;
- two clocks per call: the wall clock and this process's CPU clock. The targets use medians of CPU time:
  a 2 ms call on a loaded 2-core machine is often descheduled part-way, which inflates wall times of the
  slow implementations most and flatters the ratios. Wall medians, their spread over rounds and the load
  average before and after are published beside them;
- the C twin times itself in its own process (``--bench``: one warm-up run, then raw per-run wall and CPU
  times, pooled over the rounds), built with the library's own flags (``cc -O2 -std=c99``, no -march).

Like for like: numpy's target compares log-mel + delta with librosa's log-mel + delta. The C twin computes
log-mel only; it is held to 25x both against that same librosa baseline (issue 11's definition) and against
librosa's log-mel alone (the same work). Writes frontend.json and frontend.md into --out and prints PASS/FAIL
per target; exits 1 if a target fails.
"""

from __future__ import annotations

import os

THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
for _var in THREAD_VARS:  # before numpy (or librosa's numba) loads: one thread, whatever the shell says
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dssdn_edge.audio import load_audio  # noqa: E402
from dssdn_edge.frontend import Frontend, FrontendConfig  # noqa: E402
from dssdn_edge.frontend_c import (  # noqa: E402
    CFLAGS,
    bench_c_frontend,
    compile_frontend_tool,
    emit_c,
    run_c_frontend,
)

AUDIO_DIR = ROOT.parent / "shared" / "data" / "esc50_16k" / "audio"
SILENCE_RMS = 1e-3  # -60 dBFS: below this the first second counts as silent
WARMUP = 10  # untimed calls per Python implementation before the first round
# issue 11: (numerator, denominator, ratio to reach). librosa/C is the definition (the same librosa
# baseline as numpy's target, so it includes a delta the C twin does not compute); librosa log-mel/C compares
# the same work. Both must pass.
TARGETS = {
    "librosa/numpy": ("librosa", "numpy", 5.0),
    "librosa/C": ("librosa", "c_float", 25.0),
    "librosa log-mel/C": ("librosa_logmel", "c_float", 25.0),
}
ROWS = {  # key: (label in the table, the librosa row doing the same work)
    "numpy": ("numpy `Frontend.features` (log-mel + delta, float64)", "librosa"),
    "librosa": ("librosa melspectrogram + log10 + delta (float32 in)", "librosa"),
    "librosa_logmel": ("librosa melspectrogram + log10 only", "librosa_logmel"),
    "c_float": ("C twin, float32 build (log-mel only, the device build)", "librosa_logmel"),
    "c_double": ("C twin, double build (log-mel only, the reference build)", "librosa_logmel"),
}


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


def librosa_logmel(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """(frames, n_mels) log10 HTK mel power the librosa way (``htk=True, norm=None``, centred, zero-padded)."""
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
    return np.log10(mel + cfg.log_eps).T


def librosa_features(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """The same features as ``Frontend.features`` the librosa way: (2, frames, n_mels) log-mel + width-5 delta."""
    import librosa

    logmel = librosa_logmel(audio, cfg).T
    delta = librosa.feature.delta(logmel, width=cfg.delta_width, mode="nearest")
    return np.stack([logmel.T, delta.T])


def build_c(cfg: FrontendConfig, work: Path) -> dict[str, Path]:
    """The C twin emitted for ``cfg`` and built both ways: the float build is the device's, double the reference."""
    emit_c(cfg, work / "src")
    return {p: compile_frontend_tool(work / "src", work / "build", p) for p in ("float", "double")}


# ----------------------------------------------------------------------------------------- timing
@dataclass
class Samples:
    """Per-call seconds of one implementation, pooled over rounds, and which round each came from."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    round: list[int] = field(default_factory=list)

    def add(self, wall: float, cpu: float, rnd: int) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.round.append(rnd)

    def median_ms(self, clock: str, rnd: int | None = None) -> float:
        values = np.asarray(getattr(self, clock))
        if rnd is not None:
            values = values[np.asarray(self.round) == rnd]
        return 1e3 * float(np.median(values))

    def summary(self) -> dict[str, float | int]:
        cpu, wall = 1e3 * np.asarray(self.cpu), 1e3 * np.asarray(self.wall)
        return {
            "n": len(cpu),
            "cpu_ms_median": float(np.median(cpu)),
            "cpu_ms_p10": float(np.percentile(cpu, 10)),
            "cpu_ms_p90": float(np.percentile(cpu, 90)),
            "wall_ms_median": float(np.median(wall)),
            "wall_ms_p90": float(np.percentile(wall, 90)),
        }


def time_python(fn: Callable[[], object], calls: int, rnd: int, into: Samples) -> None:
    """``calls`` timed calls of ``fn``: wall clock and process CPU clock around each one."""
    for _ in range(calls):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        c1, w1 = time.process_time(), time.perf_counter()
        into.add(w1 - w0, c1 - c0, rnd)


def measure(
    python_impls: dict[str, Callable[[], object]],
    c_bins: dict[str, Path],
    audio: np.ndarray,
    rounds: int,
    calls: int,
    c_calls: int,
) -> tuple[dict[str, Samples], list[float]]:
    """Interleaved rounds: each round times every implementation once in turn, the order rotated per round.
    Returns the pooled samples and the 1-min load average seen at the start of each round."""
    for fn in python_impls.values():
        for _ in range(WARMUP):
            fn()
    names = [*python_impls, *(f"c_{p}" for p in c_bins)]
    samples = {name: Samples() for name in names}
    loads = []
    for rnd in range(rounds):
        loads.append(os.getloadavg()[0])
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            if name in python_impls:
                time_python(python_impls[name], calls, rnd, samples[name])
            else:
                for wall, cpu in bench_c_frontend(c_bins[name.removeprefix("c_")], audio, c_calls):
                    samples[name].add(float(wall), float(cpu), rnd)
    return samples, loads


# ---------------------------------------------------------------------------------------- results
def cpu_model() -> str:
    """The CPU the numbers belong to (ratios move between CPUs: the C build is baseline x86-64 SSE2)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    """Versions that change the timings: the interpreter, numpy's FFT, librosa, the C compiler."""
    import librosa

    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "librosa": librosa.__version__,
        "cc": cc[0].removeprefix("cc ") if cc else "unknown",
    }


def limit_thread_pools() -> str:
    """Cap every native thread pool already loaded (numpy's and scipy's OpenBLAS, OpenMP) at one thread, in case
    one was loaded before the environment variables were set, and report what they are now (threadpoolctl,
    installed with librosa's scikit-learn; without it the environment variables are all there is)."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return "not checked (threadpoolctl not installed)"
    threadpool_limits(limits=1)
    pools = threadpool_info()
    return ", ".join(f"{p.get('internal_api', '?')}={p.get('num_threads', '?')}" for p in pools) or "none loaded"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so a reader never sees half a result file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def ratios(samples: dict[str, Samples], clock: str) -> dict[str, float]:
    """Each target's ratio of medians on one clock ("cpu" decides, "wall" is published beside it)."""
    return {
        name: samples[num].median_ms(clock) / samples[den].median_ms(clock)
        for name, (num, den, _) in TARGETS.items()
    }


def per_round_ratios(samples: dict[str, Samples], rounds: int) -> dict[str, dict[str, float]]:
    """Each target's CPU-time ratio computed round by round: how much it moves while the load does."""
    out = {}
    for name, (num, den, _) in TARGETS.items():
        vals = [samples[num].median_ms("cpu", r) / samples[den].median_ms("cpu", r) for r in range(rounds)]
        out[name] = {"min": float(np.min(vals)), "median": float(np.median(vals)), "max": float(np.max(vals))}
    return out


def render_markdown(res: dict) -> str:
    """frontend.md: conditions first (load, threads, flags), then times, then the targets with PASS/FAIL."""
    t, agree = res["timings"], res["agreement"]
    rows = []
    for key, (label, ref) in ROWS.items():
        s = t[key]
        vs = t[ref]["cpu_ms_median"] / s["cpu_ms_median"]
        rows.append(
            f"| {label} | {s['cpu_ms_median']:.3f} | {s['cpu_ms_p10']:.3f}–{s['cpu_ms_p90']:.3f} | "
            f"{s['wall_ms_median']:.3f} | {s['n']} | {vs:.1f}× vs `{ref}` |"
        )
    load = res["load_average_1m"]
    lines = [
        "# Front-end benchmark",
        "",
        f"{res['date']} · {res['cpu']} · " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        "",
        f"Input: {res['audio']}; {res['frames']} frames. {res['rounds']} interleaved rounds (order rotated each "
        f"round); per round {res['calls_per_round']} calls of each Python implementation and "
        f"{res['c_calls_per_round']} runs of each C build (its own process, `--bench`, after a warm-up run). "
        f"Single-threaded: {', '.join(f'{k}={v}' for k, v in res['threads'].items())}; thread pools loaded: "
        f"{res['thread_pools']}. 1-min load average {load['before']:.2f} before, "
        f"{load['rounds_min']:.2f}–{load['rounds_max']:.2f} during the rounds, {load['after']:.2f} after, "
        f"on {res['cpu_count']} CPUs. C builds: `cc {' '.join(res['cflags'])}` (+ `-DDSSDN_DOUBLE` for double).",
        "",
        "Times are per 1 s of audio. Medians of **process CPU time** decide the targets (a preempted call "
        "is not charged for the time it waited); wall-clock medians are shown beside them.",
        "",
        "| implementation | CPU ms (median) | CPU ms p10–p90 | wall ms (median) | calls | speed-up, same work |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| target | measured (CPU) | per-round min–max | wall-clock ratio | result |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {k}: `{v['numerator']}` / `{v['denominator']}` ≥ {v['target']}× | {v['measured']:.1f}× | "
            f"{v['per_round']['min']:.1f}–{v['per_round']['max']:.1f}× | {v['wall_ratio']:.1f}× | {v['result']} |"
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
def run(rounds: int, runs: int, c_runs: int) -> dict:
    """Time everything on the default config and real audio, check the outputs agree, return the result record."""
    cfg = FrontendConfig()
    fe = Frontend(cfg)
    audio, source = pick_audio(cfg)
    calls, c_calls = -(-runs // rounds), -(-c_runs // rounds)
    load_before = os.getloadavg()[0]
    import librosa  # noqa: F401  (load its native libraries now, so limit_thread_pools sees them)

    thread_pools = limit_thread_pools()
    python_impls: dict[str, Callable[[], object]] = {
        "numpy": lambda: fe.features(audio),
        "librosa": lambda: librosa_features(audio, cfg),
        "librosa_logmel": lambda: librosa_logmel(audio, cfg),
    }
    with tempfile.TemporaryDirectory(prefix="dssdn_frontend_bench_") as tmp:
        bins = build_c(cfg, Path(tmp))
        samples, round_loads = measure(python_impls, bins, audio, rounds, calls, c_calls)
        c_out = {p: run_c_frontend(b, audio, cfg.n_mels) for p, b in bins.items()}
    load_after = os.getloadavg()[0]
    ref, logmel = fe.features(audio), fe.logmel(audio)
    loud = logmel >= logmel.max(axis=1, keepdims=True) - 6.0  # bands within 60 dB of their frame's peak
    measured, wall, spread = ratios(samples, "cpu"), ratios(samples, "wall"), per_round_ratios(samples, rounds)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "versions": versions(),
        "audio": source,
        "frames": int(ref.shape[1]),
        "rounds": rounds,
        "calls_per_round": calls,
        "c_calls_per_round": c_calls,
        "threads": {var: os.environ[var] for var in THREAD_VARS},
        "thread_pools": thread_pools,
        "load_average_1m": {
            "before": load_before,
            "after": load_after,
            "rounds_min": min(round_loads),
            "rounds_max": max(round_loads),
        },
        "cpu_count": os.cpu_count(),
        "cflags": list(CFLAGS),
        "config": cfg.to_dict(),
        "timings": {name: s.summary() for name, s in samples.items()},
        "targets": {
            name: {
                "numerator": num,
                "denominator": den,
                "target": target,
                "measured": measured[name],
                "wall_ratio": wall[name],
                "per_round": spread[name],
                "result": "PASS" if measured[name] >= target else "FAIL",
            }
            for name, (num, den, target) in TARGETS.items()
        },
        "agreement": {
            "librosa_vs_numpy": float(np.abs(librosa_features(audio, cfg) - ref).max()),
            "c_float_vs_numpy": float(np.abs(c_out["float"] - logmel).max()),
            "c_float_vs_numpy_within_60db": float(np.abs(c_out["float"] - logmel)[loud].max()),
            "c_double_vs_numpy": float(np.abs(c_out["double"] - logmel).max()),
        },
        "note": "numpy and `librosa` include the delta channel; the C twin and `librosa_logmel` compute log-mel "
        "only. `librosa/C` is issue 11's definition (one librosa baseline for both targets); "
        "`librosa log-mel/C` compares the same work.",
    }


def main(argv: list[str] | None = None) -> int:
    """Run, write frontend.json/.md, print PASS/FAIL per target; the exit status is 1 if any target fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=400, help="timed calls per Python implementation, all rounds")
    parser.add_argument("--c-runs", type=int, default=4000, help="timed runs per C build, all rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results directory")
    args = parser.parse_args(argv)
    if min(args.rounds, args.runs, args.c_runs) < 1:
        parser.error("--rounds, --runs and --c-runs must be >= 1")
    res = run(args.rounds, args.runs, args.c_runs)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "frontend.json", json.dumps(res, indent=2) + "\n")
    write_atomic(args.out / "frontend.md", render_markdown(res))
    load = res["load_average_1m"]
    print(f"input: {res['audio']}; load average {load['before']:.2f} before, {load['rounds_min']:.2f}-"
          f"{load['rounds_max']:.2f} during, {load['after']:.2f} after, on {res['cpu_count']} CPUs")
    for name, s in res["timings"].items():
        print(f"{name:>15}: {s['cpu_ms_median']:8.3f} ms CPU, {s['wall_ms_median']:8.3f} ms wall per 1 s of audio")
    for name, t in res["targets"].items():
        print(f"{t['result']}: {name} = {t['measured']:.1f}x (target >= {t['target']}x; "
              f"per round {t['per_round']['min']:.1f}-{t['per_round']['max']:.1f}x, wall {t['wall_ratio']:.1f}x)")
    print(f"wrote {args.out / 'frontend.json'} and {args.out / 'frontend.md'}")
    return 0 if all(t["result"] == "PASS" for t in res["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
