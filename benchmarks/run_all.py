"""The published CPU table: dssdn-small / middle / large and the ResNet baseline on this CPU, 1 thread.

    python benchmarks/run_all.py [--runs 200] [--warmup 20] [--threads 1] [--exports exports]
                                 [--models dssdn-small,dssdn-middle,dssdn-large,resnet] [--out benchmarks/results]

Why one script: the latency table of docs/benchmarks.md and its targets must be regenerated the same way every time —
same export folders (exported from the shipped weights when exports/<name> is missing or stale), same
runtimes, medians over >= 100 runs after warm-up, ratios taken inside one run. Writes bench_cpu.json,
bench_cpu.md, bench_cpu_latency.png and bench_cpu_tradeoff.png into --out and prints PASS/FAIL per target;
then runs benchmarks/frontend.py (the front-end targets; its own process, so that its thread limits hold)
into the same --out. Exits 1 if a target fails or a model could not be measured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dssdn_edge.bench import BenchOptions, check_export, run_bench  # noqa: E402
from dssdn_edge.bench import report as bench_report  # noqa: E402
from dssdn_edge.bench.sysinfo import collect_local  # noqa: E402
from dssdn_edge.errors import DssdnError  # noqa: E402
from dssdn_edge.fileio import write_text  # noqa: E402

MODELS = ("dssdn-small", "dssdn-middle", "dssdn-large", "resnet")
RUNTIMES = ["torch", "onnxruntime", "litert", "tflm"]
MIN_RUNS = 100
TARGET_REALTIME = 1000.0  # dssdn-small int8 LiteRT, 1 s of audio -> label (all stages), × faster than real time
TARGET_INT8_RATIO = 1.0  # every DSSDN size: int8 LiteRT latency <= 1.0 × fp32 LiteRT on this machine
TARGET_INT8_RATIO_DOT = 0.8  # ... and <= 0.8 where the CPU multiplies int8 natively (VNNI / AMX / Arm dot product)
TARGET_BYTES_PER_WEIGHT = 1.3  # dssdn-small int8 .tflite (the MCU file)
TARGET_E2E_OVER_INVOKE = 2.0  # issue 21: dssdn-small plain int8 .tflite, audio -> label p50 <= 2 x invoke p50 ...
STRETCH_E2E_OVER_INVOKE = 1.5  # ... stretch 1.5 x
TARGET_STREAM_OVER_INVOKE = 2.0  # ... and streaming: each hop (new frames + one window) <= 2 x its invoke
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def best_int8(result: dict[str, Any]) -> dict[str, Any] | None:
    """The faster of the bit-identical LiteRT int8 files (plain and CPU-packed, see export/cpu_layout.py): a
    deployment on this CPU would ship that one. Which one it was is published beside the number."""
    entries = [e for e in result.get("results", []) if not e.get("error") and e.get("runtime") == "litert"
               and e.get("precision") == "int8" and str(e.get("artifact", "")).endswith(".tflite")]
    return min(entries, key=lambda e: e["latency_ms"]["p50"], default=None)


def lean_bytes_per_weight(folder: Path, name: str) -> float | None:
    import json

    art = json.loads((folder / "manifest.json").read_text()).get("artifacts", {}).get(f"{name}.int8.tflite", {})
    return (art.get("size") or {}).get("bytes_per_weight")


def ensure_export(name: str, exports: Path) -> Path:
    """exports/<name> verified; exported from the shipped weights only when the folder does not exist (a
    folder that fails its manifest check is reported, never silently replaced)."""
    folder = exports / name
    if folder.exists():
        check_export(folder)
        return folder
    from dssdn_edge.export import export_model

    print(f"exporting {name} → {folder}", flush=True)
    export_model(name, folder)
    check_export(folder)
    return folder


def accuracy_of(result: dict[str, Any], manifest_dir: Path) -> float | None:
    """Fold-5 clip accuracy of the int8 TFLite file as the exporter measured it (None without data)."""
    import json

    manifest = json.loads((manifest_dir / "manifest.json").read_text())
    for rel, art in sorted(manifest.get("artifacts", {}).items()):
        if rel.endswith(".tflite") and str(art.get("input", {}).get("dtype")) == "int8":
            value = (art.get("quality", {}).get("accuracy") or {}).get("value")
            if value is not None:
                return float(value)
    return None


def frontend_rows(entry: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per front end (numpy, C) of one bench entry: its stage p50s, end to end / invoke and streaming, all
    from the same interleaved run."""
    out = {}
    for fe, b in ((entry or {}).get("by_frontend") or {}).items():
        stream = b.get("stream") or {}
        out[fe] = {
            "stages_p50_ms": {k: v.get("p50") for k, v in (b.get("stages_ms") or {}).items()},
            "e2e_over_invoke": b.get("e2e_over_invoke"),
            "stream_ms_per_audio_second": stream.get("ms_per_audio_second"),
            "stream_hop_over_invoke": stream.get("hop_over_invoke"),
        }
    return out


def row(name: str, result: dict[str, Any], accuracy: float | None) -> dict[str, Any]:
    find, p50 = bench_report.find, bench_report.p50
    int8 = best_int8(result)
    plain = find(result, "litert", "int8", ".int8.tflite")  # what a Pi or a microcontroller runs (issue 21)
    fp32 = find(result, "litert", "fp32", ".tflite")
    cx = result["export"].get("complexity", {})
    ratios = result.get("ratios", {})
    stream = (int8 or {}).get("stream") or {}
    return {
        "name": name,
        "params": cx.get("params"),
        "macs": cx.get("macs"),
        "accuracy": accuracy,
        "litert_fp32_ms": p50(find(result, "litert", "fp32", ".tflite")),
        "litert_int8_ms": p50(int8),
        "ort_fp32_ms": p50(find(result, "onnxruntime", "fp32", ".onnx")),
        "ort_int8_ms": p50(find(result, "onnxruntime", "int8", ".onnx")),
        "torch_ms": p50(find(result, "torch", "fp32")),
        "frontend_ms": result.get("frontend", {}).get("ms_per_second", {}).get("p50"),
        "e2e_int8_ms": p50(int8, "e2e_ms"),
        "x_realtime_int8": None if int8 is None else int8["x_realtime"],
        "int8_vs_fp32": None if int8 is None or fp32 is None else p50(int8) / p50(fp32),
        "int8_artifact": None if int8 is None else int8["artifact"],
        "stages_p50_ms": None if int8 is None else {k: v.get("p50") for k, v in int8.get("stages_ms", {}).items()},
        "stream_ms_per_audio_second": stream.get("ms_per_audio_second"),
        "stream_x_realtime": stream.get("x_realtime"),
        "frontend": (int8 or {}).get("frontend"),
        "by_frontend": frontend_rows(int8),
        "plain_int8_artifact": (plain or {}).get("artifact"),
        "plain_int8_by_frontend": frontend_rows(plain),
        "torch_vs_int8": (ratios.get("torch eager / litert int8") or {}).get("ratio"),
        "ort_vs_litert_fp32": (ratios.get("onnxruntime fp32 / litert fp32") or {}).get("ratio"),
        "tflm_arena_bytes": (find(result, "tflm", "int8") or {}).get("activation_memory", {}).get("bytes"),
        "latency_ms": p50(int8),  # for the trade-off plot
    }


def _line(target: str, measured: float | None, ok: bool | None, extra: str = "") -> dict[str, Any]:
    return {"target": target + extra, "measured": measured,
            "result": "n/a" if measured is None else ("PASS" if ok else "FAIL")}


def targets(rows: dict[str, dict[str, Any]], simd: list[str], cpu: str, bytes_per_weight: float | None
            ) -> list[dict[str, Any]]:
    """One line per acceptance target of issue 11, measured in this run (and the lines only reported)."""
    small = rows.get("dssdn-small", {})
    xrt = small.get("x_realtime_int8")
    stream = small.get("stream_ms_per_audio_second")
    out = [_line(f"dssdn-small int8 LiteRT end to end (1 s audio -> label, all stages, 1 thread) >= "
                 f"{TARGET_REALTIME:.0f}× real time", xrt, xrt is not None and xrt >= TARGET_REALTIME,
                 "" if stream is None else f" (streaming, 0.5-s hops: {stream:.3f} ms per second of audio)")]
    dot = [f for f in INT8_DOT_FLAGS if f in simd]
    for name, r in rows.items():
        if not name.startswith("dssdn-"):
            continue
        ratio, which = r.get("int8_vs_fp32"), r.get("int8_artifact")
        out.append(_line(f"{name}: LiteRT int8 / fp32 latency <= {TARGET_INT8_RATIO} on {cpu}", ratio,
                         ratio is not None and ratio <= TARGET_INT8_RATIO, f" ({which})"))
        if dot:
            out.append(_line(f"{name}: LiteRT int8 / fp32 <= {TARGET_INT8_RATIO_DOT} (CPU has {', '.join(dot)})",
                             ratio, ratio is not None and ratio <= TARGET_INT8_RATIO_DOT))
    c = (small.get("plain_int8_by_frontend") or {}).get("c") or {}
    which = small.get("plain_int8_artifact") or "plain int8 .tflite"
    e2e, hop = c.get("e2e_over_invoke"), c.get("stream_hop_over_invoke")
    out.append(_line(f"dssdn-small {which}, C front end: end to end p50 <= {TARGET_E2E_OVER_INVOKE} × invoke p50",
                     e2e, e2e is not None and e2e <= TARGET_E2E_OVER_INVOKE))
    out.append(_line(f"dssdn-small {which}, C front end: end to end p50 <= {STRETCH_E2E_OVER_INVOKE} × invoke p50 "
                     "(stretch)", e2e, e2e is not None and e2e <= STRETCH_E2E_OVER_INVOKE))
    per_s = c.get("stream_ms_per_audio_second")
    out.append(_line(f"dssdn-small {which}, C front end, streaming: each 0.5-s hop (new frames + one window) <= "
                     f"{TARGET_STREAM_OVER_INVOKE} × its invoke", hop,
                     hop is not None and hop <= TARGET_STREAM_OVER_INVOKE,
                     "" if per_s is None else f" ({per_s:.3f} ms per second of audio, 2 invokes per second)"))
    out.append(_line(f"dssdn-small int8 .tflite (MCU file) <= {TARGET_BYTES_PER_WEIGHT} bytes per weight",
                     bytes_per_weight, bytes_per_weight is not None and bytes_per_weight <= TARGET_BYTES_PER_WEIGHT))
    for name, r in rows.items():
        out.append({"target": f"{name}: torch eager / LiteRT int8 latency (reported)", "measured": r["torch_vs_int8"],
                    "result": "REPORTED"})
    return out


def portable(value: Any) -> Any:
    """The published files name paths relative to the repository, not to the checkout they were made in."""
    if isinstance(value, str):
        return value.replace(sys.executable, "python").replace(f"{ROOT}/", "")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    return value


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _x(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    lines = [
        "# CPU benchmark (dssdn-edge bench, this machine)",
        "",
        f"- created {doc['created']}; {bench_report.sys_line(doc['sysinfo'])}",
        f"- {s['threads']} thread(s); medians of {s['runs']} runs after {s['warmup']} warm-up; model latency is "
        "set input → invoke → read output; end to end is 1 s of audio → front end → int8 model → label, with the "
        "C front end where it loads (the production one; numpy beside it below)",
        "- MACs: DCASE convention (conv/linear mult-adds per 1-s window); accuracy: fold-5 clip accuracy of the "
        "int8 TFLite file as measured by the exporter",
        "",
        "| model | params | MACs (M) | acc. int8 | LiteRT fp32 ms | LiteRT int8 ms | ORT fp32 ms | ORT int8 ms | "
        "torch ms | front end ms / 1 s | e2e int8 ms / 1 s | × real time | int8/fp32 | torch/int8 | TFLM arena |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["table"]:
        acc = "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
        arena = "n/a" if r["tflm_arena_bytes"] is None else f"{r['tflm_arena_bytes'] / 1024:.0f} KiB"
        lines.append(
            f"| {r['name']} | {_x(r['params'], ',')} | {_x(r['macs'] and r['macs'] / 1e6)} | {acc} | "
            f"{_ms(r['litert_fp32_ms'])} | {_ms(r['litert_int8_ms'])} | {_ms(r['ort_fp32_ms'])} | "
            f"{_ms(r['ort_int8_ms'])} | {_ms(r['torch_ms'])} | {_ms(r['frontend_ms'])} | {_ms(r['e2e_int8_ms'])} | "
            f"{_x(r['x_realtime_int8'], '.0f')}× | {_x(r['int8_vs_fp32'])} | {_x(r['torch_vs_int8'])} | {arena} |"
        )
    lines += [
        "",
        "## Audio → label by stage (fastest LiteRT int8 file, p50 ms per 1 s of audio) and streaming",
        "",
        "| model | int8 file | front end | normalise + quantise | invoke | dequantise + softmax + average | sum "
        "| streaming ms per s of audio (0.5-s hops) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["table"]:
        st = r.get("stages_p50_ms") or {}
        lines.append(
            f"| {r['name']} | {r.get('int8_artifact') or 'n/a'} | {_ms(st.get('frontend'))} | "
            f"{_ms(st.get('normalise_quantise'))} | {_ms(st.get('invoke'))} | "
            f"{_ms(st.get('dequantise_softmax_average'))} | {_ms(st.get('total'))} | "
            f"{_ms(r.get('stream_ms_per_audio_second'))} |"
        )
    lines += [
        "",
        "## Both front ends, side by side (same run; the front ends take turns in blocks of 10 iterations)",
        "",
        "numpy: `runtime.logmel` (log-mel + delta in numpy; normalise + quantise in numpy). C: csrc/dssdn_features.c "
        "through ctypes (`runtime.cfeatures`), the code `mcu/` ships; for an int8 model it also normalises and "
        "quantises, so its rows are the input tensor. p50 ms per 1 s of audio; streaming per second of audio "
        "(0.5-s hops: two windows classified per second).",
        "",
        "| model | int8 file | front end | front end ms | normalise + quantise | invoke | dequantise + softmax "
        "+ average | sum | sum / invoke | streaming ms per s | hop / invoke |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["table"]:
        files = {r.get("int8_artifact"): r.get("by_frontend") or {}}
        files.setdefault(r.get("plain_int8_artifact"), r.get("plain_int8_by_frontend") or {})
        for artifact, by in files.items():
            if artifact is None:
                continue
            for fe, b in by.items():
                st = b.get("stages_p50_ms") or {}
                lines.append(
                    f"| {r['name']} | {artifact} | {fe} | {_ms(st.get('frontend'))} | "
                    f"{_ms(st.get('normalise_quantise'))} | {_ms(st.get('invoke'))} | "
                    f"{_ms(st.get('dequantise_softmax_average'))} | {_ms(st.get('total'))} | "
                    f"{_x(b.get('e2e_over_invoke'))} | {_ms(b.get('stream_ms_per_audio_second'))} | "
                    f"{_x(b.get('stream_hop_over_invoke'))} |"
                )
    lines += ["", "The sum is the per-iteration total (p50 of sums, not the sum of p50s). Both LiteRT int8 files "
              "of an export give bit-identical outputs; the packed one is faster where int8 GEMMs cost per row "
              "(x86 AMX), the plain one where they cost per MAC (Arm, microcontrollers)."]
    lines += ["", "## Targets", "", "| target | measured | result |", "|---|---:|---|"]
    lines += [f"| {t['target']} | {_x(t['measured'])} | {t['result']} |" for t in doc["targets"]]
    if doc.get("missing"):
        lines += ["", "## Not measured", ""] + [f"- {name}: {why}" for name, why in doc["missing"].items()]
    lines += [
        "",
        "![latency](bench_cpu_latency.png)",
        "",
        "![trade-off](bench_cpu_tradeoff.png)",
        "",
        "## Details per model",
        "",
    ]
    for result in doc["models"].values():  # each model's own report, headings pushed two levels down
        lines += [("##" + ln if ln.startswith("#") else ln) for ln in bench_report.markdown(result).splitlines()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help=f"timed calls per runtime (>= {MIN_RUNS})")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--exports", type=Path, default=ROOT / "exports", help="export folders (one per model)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--skip-frontend", action="store_true", help="do not run benchmarks/frontend.py afterwards")
    args = ap.parse_args(argv)
    if args.runs < MIN_RUNS:
        print(f"note: --runs {args.runs} < {MIN_RUNS}: fine for a trial, not for the published table", flush=True)
    here = collect_local()
    models: dict[str, dict[str, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    interrupted = False
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            folder = ensure_export(name, args.exports)
            result = run_bench(
                BenchOptions(
                    export_dir=folder, runtimes=RUNTIMES, threads=args.threads, runs=args.runs, warmup=args.warmup
                )
            )
        except DssdnError as exc:
            missing[name] = str(exc)
            print(f"{name}: not measured: {exc}", flush=True)
            continue
        models[name] = result
        rows[name] = row(name, result, accuracy_of(result, folder))
        bench_report.console_table(result)
        if result.get("interrupted"):
            interrupted = True
            break
    doc = portable({
        "schema": "dssdn-bench-table/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sysinfo": here.to_dict(),
        "settings": {"threads": args.threads, "runs": args.runs, "warmup": args.warmup, "runtimes": RUNTIMES},
        "table": list(rows.values()),
        "targets": targets(rows, list(here.to_dict().get("simd") or []), str(here.to_dict().get("cpu_model")),
                           lean_bytes_per_weight(args.exports / "dssdn-small", "dssdn-small")
                           if (args.exports / "dssdn-small" / "manifest.json").is_file() else None),
        "missing": missing,
        "interrupted": interrupted,
        "models": models,
    })
    args.out.mkdir(parents=True, exist_ok=True)
    bench_report.write_json(doc, args.out / "bench_cpu.json")
    if models:
        bench_report.plot_latency(list(models.values()), args.out / "bench_cpu_latency.png")
        bench_report.plot_tradeoff(list(rows.values()), args.out / "bench_cpu_tradeoff.png")
    write_text(args.out / "bench_cpu.md", markdown(doc))
    print(f"wrote {args.out / 'bench_cpu.json'} and bench_cpu.md (+ PNGs)")
    for t in doc["targets"]:
        print(f"{t['result']:8s} {t['target']}: {_x(t['measured'])}")
    failed = any(t["result"] in ("FAIL", "n/a") for t in doc["targets"]) or missing or interrupted
    if not args.skip_frontend:  # the front-end targets: their own process (thread limits before numpy loads)
        print("front end: python benchmarks/frontend.py", flush=True)
        fe = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "frontend.py"), "--out", str(args.out)])
        failed = failed or fe.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
