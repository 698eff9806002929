"""The published CPU table: dssdn-small / middle / large and the ResNet baseline on this CPU, 1 thread.

    python benchmarks/run_all.py [--runs 200] [--warmup 20] [--threads 1] [--exports exports]
                                 [--models dssdn-small,dssdn-middle,dssdn-large,resnet] [--out benchmarks/results]

Why one script: the README's latency table and its targets must be regenerated the same way every time —
same export folders (exported from the shipped weights when exports/<name> is missing or stale), same
runtimes, medians over >= 100 runs after warm-up, ratios taken inside one run. Writes bench_cpu.json,
bench_cpu.md, bench_cpu_latency.png and bench_cpu_tradeoff.png into --out and prints PASS/FAIL per target;
exits 1 if a target fails or a model could not be measured.
"""

from __future__ import annotations

import argparse
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

MODELS = ("dssdn-small", "dssdn-middle", "dssdn-large", "resnet")
RUNTIMES = ["torch", "onnxruntime", "litert", "tflm"]
MIN_RUNS = 100
TARGET_REALTIME = 200.0  # dssdn-small int8 TFLite, front end + model, × faster than real time
TARGET_INT8_RATIO = 0.8  # dssdn-large: int8 LiteRT latency <= 0.8 × fp32 LiteRT


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


def row(name: str, result: dict[str, Any], accuracy: float | None) -> dict[str, Any]:
    find, p50 = bench_report.find, bench_report.p50
    int8 = find(result, "litert", "int8", ".tflite")
    cx = result["export"].get("complexity", {})
    ratios = result.get("ratios", {})
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
        "int8_vs_fp32": (ratios.get("litert int8 / litert fp32") or {}).get("ratio"),
        "torch_vs_int8": (ratios.get("torch eager / litert int8") or {}).get("ratio"),
        "ort_vs_litert_fp32": (ratios.get("onnxruntime fp32 / litert fp32") or {}).get("ratio"),
        "tflm_arena_bytes": (find(result, "tflm", "int8") or {}).get("activation_memory", {}).get("bytes"),
        "latency_ms": p50(int8),  # for the trade-off plot
    }


def targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    small, large = rows.get("dssdn-small", {}), rows.get("dssdn-large", {})
    xrt, ratio = small.get("x_realtime_int8"), large.get("int8_vs_fp32")
    out = [
        {
            "target": f"dssdn-small int8 TFLite end to end (front end + model) >= {TARGET_REALTIME:.0f}× real time",
            "measured": xrt,
            "result": "n/a" if xrt is None else ("PASS" if xrt >= TARGET_REALTIME else "FAIL"),
        },
        {
            "target": f"dssdn-large int8 LiteRT <= {TARGET_INT8_RATIO}× fp32 LiteRT latency",
            "measured": ratio,
            "result": "n/a" if ratio is None else ("PASS" if ratio <= TARGET_INT8_RATIO else "FAIL"),
        },
    ]
    for name, r in rows.items():
        out.append(
            {
                "target": f"{name}: torch eager / LiteRT int8 latency (reported)",
                "measured": r["torch_vs_int8"],
                "result": "REPORTED",
            }
        )
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
        "set input → invoke → read output; end to end is 1 s of audio → numpy front end → int8 model → label",
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
        "targets": targets(rows),
        "missing": missing,
        "interrupted": interrupted,
        "models": models,
    })
    args.out.mkdir(parents=True, exist_ok=True)
    bench_report.write_json(doc, args.out / "bench_cpu.json")
    if models:
        bench_report.plot_latency(list(models.values()), args.out / "bench_cpu_latency.png")
        bench_report.plot_tradeoff(list(rows.values()), args.out / "bench_cpu_tradeoff.png")
    (args.out / "bench_cpu.md").write_text(markdown(doc))
    print(f"wrote {args.out / 'bench_cpu.json'} and bench_cpu.md (+ PNGs)")
    for t in doc["targets"]:
        print(f"{t['result']:8s} {t['target']}: {_x(t['measured'])}")
    failed = any(t["result"] in ("FAIL", "n/a") for t in doc["targets"][:2]) or missing or interrupted
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
