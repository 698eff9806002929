"""Per-op profile of an export's LiteRT graphs: where int8 loses to fp32 on this CPU.

    python benchmarks/op_profile.py EXPORT_DIR [--runs 300] [--out benchmarks/results]

Why: LiteRT's Python API has no op profiler, so every op of each .tflite is cut out into a one-op model (its
activation inputs become graph inputs) and timed alone with XNNPACK, 1 thread, interleaved between files. The
sum over-counts small ops by the per-invoke overhead (~0.4 µs), but the int8-vs-fp32 comparison per op type
is what shows where int8 loses (this is how the per-row cost of int8 convs on AMX was found, see
dssdn_edge/export/cpu_layout.py). Writes op_profile-<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dssdn_edge.export.tflite import _pack_aligned, _schema  # noqa: E402
from dssdn_edge.fileio import write_text  # noqa: E402


def single_op_models(data: bytes) -> list[tuple[str, bytes]]:
    """(op name, one-op model) for every op of subgraph 0, in graph order."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    n_ops = len(schema.ModelT.InitFromPackedBuf(data, 0).subgraphs[0].operators)
    out = []
    for k in range(n_ops):
        m = schema.ModelT.InitFromPackedBuf(data, 0)
        sg = m.subgraphs[0]
        op = sg.operators[k]
        datas = [m.buffers[sg.tensors[int(i)].buffer].data if i >= 0 else None for i in op.inputs]
        acts = [int(i) for i, d in zip(op.inputs, datas, strict=True) if i >= 0 and (d is None or len(d) == 0)]
        sg.operators, sg.inputs, sg.outputs = [op], np.asarray(acts, np.int32), np.asarray(op.outputs, np.int32)
        m.signatureDefs, m.metadata = None, None
        code = m.operatorCodes[op.opcodeIndex]
        out.append((names[max(code.builtinCode, code.deprecatedBuiltinCode)], _pack_aligned(m)))
    return out


def time_us(model: bytes, runs: int) -> float:
    from dssdn_edge import runtime

    it = runtime.load(model, kind="tflite").interpreter
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(20):
        it.invoke()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e6)


def profile(files: dict[str, bytes], runs: int) -> dict[str, dict[str, list[float]]]:
    """Per file: op type -> per-op times (µs); the files are timed in rounds so machine noise hits them alike."""
    ops = {label: single_op_models(data) for label, data in files.items()}
    out: dict[str, dict[str, list[float]]] = {label: defaultdict(list) for label in files}
    for label, items in ops.items():
        for name, model in items:
            out[label][name].append(min(time_us(model, runs // 3) for _ in range(3)))
    return {k: dict(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    manifest_path = args.export_dir / "manifest.json"
    if not manifest_path.is_file():
        print(f"error: {manifest_path}: not found (not an export folder)", file=sys.stderr)
        return 2
    name = json.loads(manifest_path.read_text())["name"]
    files = {p.name: p.read_bytes() for p in sorted(args.export_dir.glob("*.tflite")) if ".audio." not in p.name}
    prof = profile(files, args.runs)
    types = sorted({t for v in prof.values() for t in v}, key=lambda t: -max(sum(v.get(t, [])) for v in prof.values()))
    lines = [f"# Per-op profile: {name}", "", "Sum of one-op model medians (µs, XNNPACK, 1 thread) per op type.", "",
             "| op | count | " + " | ".join(files) + " |", "|---|---:|" + "---:|" * len(files)]
    for t in types:
        cells = [f"{sum(prof[f].get(t, [])):.1f}" for f in files]
        lines.append(f"| {t} | {max(len(prof[f].get(t, [])) for f in files)} | " + " | ".join(cells) + " |")
    lines.append("| total | | " + " | ".join(f"{sum(sum(v) for v in prof[f].values()):.1f}" for f in files) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / f"op_profile-{name}.json", json.dumps(prof, indent=1) + "\n")
    write_text(args.out / f"op_profile-{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
