"""Phone file benchmark: what the in-graph front end adds to one 1-s window, and to the file size.

    python benchmarks/phone.py [--export exports/dssdn-small] [--size small] [--runs 400] [--out benchmarks/results]

Why: ``<name>.audio.tflite`` runs the split log-mel front end as graph ops before the network, so a phone app
needs no front end of its own; that must stay cheap (issue 14: at most 2 ms per 1-s window on one core here,
and at most 1 MiB more than the features-in int8 .tflite). Measured with LiteRT (ai-edge-litert, default
XNNPACK delegate, 1 thread) on the first second of a real ESC-50 clip:

* the phone file, one invoke = audio → scores (the number a phone app sees per window);
* the features-in file it carries (its body: ``.int8.tflite`` or ``.tflite``), given the same window's features;
* front-end part = phone − body, from runs interleaved in rounds so machine load hits both alike; the front
  end graph alone (converted on its own) is timed as a cross-check;
* both body choices (int8 and fp32), spliced here from the export's two features-in files exactly as the
  exporter does, so the table shows the choice the exporter did not ship too.

Without --export, the shipped weights of --size are exported (tflite + phone) into a temporary folder first.
Writes phone.json and phone.md into --out, prints PASS/FAIL per target, exits 1 if one fails.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads its BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dssdn_edge.audio import load_audio  # noqa: E402
from dssdn_edge.export import export_model  # noqa: E402
from dssdn_edge.export import phone as phone_mod  # noqa: E402
from dssdn_edge.export.manifest import load_manifest  # noqa: E402
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization  # noqa: E402
from dssdn_edge.model import resolve_name  # noqa: E402

AUDIO_DIR = ROOT.parent / "shared" / "data" / "esc50_16k" / "audio"
FRONTEND_MS = 2.0  # issue 14: the front-end part per 1-s window, one core
EXTRA_BYTES = 1 << 20  # issue 14: phone file at most 1 MiB larger than the features-in int8 .tflite
ROUNDS = 10
WARMUP = 30


class Model:
    """One .tflite in LiteRT with one prepared input; ``time(n)`` appends n invoke times in ms."""

    def __init__(self, data: bytes, x: np.ndarray) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_content=data, num_threads=1)
        self.it.allocate_tensors()
        d = self.it.get_input_details()[0]
        self.it.set_tensor(d["index"], _as_input(x, d))
        self.samples: list[float] = []
        for _ in range(WARMUP):
            self.it.invoke()

    def time(self, n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            self.it.invoke()
            self.samples.append((time.perf_counter() - t0) * 1e3)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)


def _as_input(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return np.ascontiguousarray(x, np.float32).reshape(detail["shape"])
    scale, zp = detail["quantization"]
    q = np.clip(np.round(x / scale) + zp, -128, 127)
    return np.ascontiguousarray(q, detail["dtype"]).reshape(detail["shape"])


def pick_audio(cfg: FrontendConfig) -> tuple[np.ndarray, str]:
    """First second of the first non-silent ESC-50 clip, or the exporter's chirp + noise window without it."""
    n = cfg.segment_samples
    if AUDIO_DIR.is_dir():
        for path in sorted(AUDIO_DIR.glob("*.flac")):
            audio = load_audio(path, cfg.sample_rate)[:n]
            if len(audio) == n and float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) >= 1e-3:
                return audio, f"real: {path.name} (first 1 s, ESC-50 16 kHz)"
    return phone_mod.probe_signal(cfg), f"SYNTHETIC chirp + noise ({AUDIO_DIR} not found)"


def run(export_dir: Path, runs: int) -> dict:
    manifest = load_manifest(export_dir)
    name = manifest["name"]
    rel = f"{name}{phone_mod.AUDIO_SUFFIX}"
    if rel not in manifest["artifacts"] or f"{name}.int8.tflite" not in manifest["artifacts"]:
        raise SystemExit(f"error: {export_dir}: needs {rel} and {name}.int8.tflite (export --formats tflite,phone)")
    entry = manifest["artifacts"][rel]
    cfg = FrontendConfig.from_dict(manifest["frontend"])
    norm = Normalization.from_dict(manifest["normalization"])
    audio, source = pick_audio(cfg)
    feats = norm.apply(Frontend(cfg).features(audio))[None].transpose(0, 2, 3, 1)  # NHWC, as the bodies take
    bodies = {"int8": (export_dir / f"{name}.int8.tflite").read_bytes()}
    if (export_dir / f"{name}.tflite").is_file():
        bodies["fp32"] = (export_dir / f"{name}.tflite").read_bytes()
    if entry["body_precision"] not in bodies:
        raise SystemExit(f"error: {export_dir}: the {entry['body_precision']} features-in file of {rel} is missing")
    front = phone_mod.convert_frontend(cfg, norm)
    shipped = (export_dir / rel).read_bytes()
    models: dict[str, Model] = {"front end alone": Model(front, audio[None])}
    for precision, body in bodies.items():
        models[f"{precision} body (features in)"] = Model(body, feats)
        spliced = shipped if precision == entry["body_precision"] else phone_mod.splice(front, body, "bench")
        models[f"{precision} phone (audio in)"] = Model(spliced, audio[None])
    per_round = max(1, runs // ROUNDS)
    for _ in range(ROUNDS):  # interleaved, so drifting load hits every model alike
        for m in models.values():
            m.time(per_round)
    p50 = {k: m.p50 for k, m in models.items()}
    added = {k: p50[f"{k} phone (audio in)"] - p50[f"{k} body (features in)"] for k in bodies}
    fe = Frontend(cfg)
    numpy_ms = _median_ms(lambda: norm.apply(fe.features(audio)), runs)
    int8_bytes = len(bodies["int8"])
    shipped_added = added[entry["body_precision"]]
    targets = {
        f"front-end part of the shipped file ({entry['body_precision']} body) <= {FRONTEND_MS:g} ms": {
            "measured": shipped_added, "target": FRONTEND_MS, "unit": "ms",
            "result": "PASS" if shipped_added <= FRONTEND_MS else "FAIL",
        },
        f"{rel} - {name}.int8.tflite <= 1 MiB": {
            "measured": len(shipped) - int8_bytes, "target": EXTRA_BYTES,
            "result": "PASS" if len(shipped) - int8_bytes <= EXTRA_BYTES else "FAIL", "unit": "bytes",
        },
    }
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu(),
        "python": platform.python_version(),
        "litert": _version("ai-edge-litert"),
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "export": str(export_dir),
        "model": name,
        "audio": source,
        "shipped_body": entry["body_precision"],
        "runs_per_model": per_round * ROUNDS,
        "rounds": ROUNDS,
        "p50_ms": p50,
        "front_end_part_ms": added,
        "numpy_front_end_ms": numpy_ms,
        "bytes": {"phone (shipped)": len(shipped), "int8 .tflite": int8_bytes,
                  **({"fp32 .tflite": len(bodies["fp32"])} if "fp32" in bodies else {}),
                  "front end graph alone": len(front)},
        "targets": targets,
        "command": " ".join(["python benchmarks/phone.py", *sys.argv[1:]]),
    }


def _median_ms(fn, runs: int) -> float:
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def render_markdown(res: dict) -> str:
    p50 = res["p50_ms"]
    lines = [
        f"# Phone file benchmark: {res['model']}",
        "",
        f"{res['date']} · {res['cpu']} · python {res['python']}, ai-edge-litert {res['litert']} · LiteRT with its "
        f"default XNNPACK delegate, 1 thread · median of {res['runs_per_model']} invokes per model in "
        f"{res['rounds']} interleaved rounds · 1-min load average {res['load_average_1m']:.1f} on "
        f"{res['cpu_count']} CPUs while measuring.",
        "",
        f"Input: {res['audio']}. Command: `{res['command']}`.",
        "",
        "| model | ms per 1-s window (p50) |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in p50.items()),
        f"| numpy front end + normalisation (for comparison) | {res['numpy_front_end_ms']:.3f} |",
        "",
        "| body | front-end part = phone − body (ms) |",
        "|---|---:|",
        *(
            f"| {k}{' (shipped)' if k == res['shipped_body'] else ''} | {v:.3f} |"
            for k, v in res["front_end_part_ms"].items()
        ),
        "",
        "| file | bytes |",
        "|---|---:|",
        *(f"| {k} | {v:,} |" for k, v in res["bytes"].items()),
        "",
        "| target | measured | result |",
        "|---|---:|---|",
        *(
            f"| {k} | {v['measured']:.3f} ms | {v['result']} |" if v["unit"] == "ms"
            else f"| {k} | {v['measured']:,} bytes | {v['result']} |"
            for k, v in res["targets"].items()
        ),
        "",
        "The phone file runs the front end on LiteRT's built-in kernels (RFFT2D, COMPLEX_ABS, GATHER, LOG, ...) "
        "and hands the network to XNNPACK; on this x86 CPU without VNNI the int8 network is slower than the fp32 "
        "one (see bench_cpu.md), which is not what a phone's ARM cores with the dot-product extension do.",
        "",
    ]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=None, help="export folder with the phone file")
    parser.add_argument("--size", default="small", help="shipped model to export when --export is not given")
    parser.add_argument("--runs", type=int, default=400, help="timed invokes per model")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results directory")
    args = parser.parse_args(argv)
    if args.runs < ROUNDS:
        parser.error(f"--runs must be >= {ROUNDS}")
    with tempfile.TemporaryDirectory(prefix="dssdn_phone_bench_") as tmp:
        export_dir = args.export
        if export_dir is None:
            export_dir = Path(tmp) / resolve_name(args.size)
            export_model(args.size, export_dir, formats=("tflite", "phone"))
        res = run(Path(export_dir), args.runs)
    if args.export is None:
        res["export"] = f"fresh export of the shipped {resolve_name(args.size)} (tflite, phone)"
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "phone.json", json.dumps(res, indent=2) + "\n")
    write_atomic(args.out / "phone.md", render_markdown(res))
    for k, v in res["p50_ms"].items():
        print(f"{k:>26}: {v:7.3f} ms")
    for k, v in res["targets"].items():
        print(f"{v['result']}: {k} (measured {v['measured']:,.3f} {v['unit']})")
    print(f"wrote {args.out / 'phone.json'} and {args.out / 'phone.md'}")
    return 0 if all(v["result"] == "PASS" for v in res["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
