"""TensorFlow Lite for Microcontrollers: run the int8 model in the real TFLM interpreter, size its arena,
and write the C array a firmware links (plus the front end's C twin, so ``mcu/`` is self-contained).

TFLM is the proof that the graph runs on a microcontroller: it rejects ops it lacks, and its recording
allocator reports the exact arena the model needs on a device. ``add_offline_plan`` embeds a tighter
memory plan than TFLM's greedy default (its ``OfflineMemoryAllocation`` metadata, which the firmware needs
no code for) when it is better: for dssdn-small it reaches the lower bound, 130,560 instead of 156,672
activation bytes. ``arena_breakdown`` explains the number from tensor lifetimes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import runtime
from ..errors import ExportError

ARRAY_NAME = "g_model_data"
BYTES_PER_LINE = 12


@dataclass
class TflmReport:
    arena_bytes: int
    head_bytes: int
    tail_bytes: int
    allocations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arena_bytes": self.arena_bytes,
            "arena_head_bytes": self.head_bytes,
            "arena_tail_bytes": self.tail_bytes,
        }


def open_tflm(model_bytes: bytes, label: str = "model") -> runtime.Tflm:
    """The TFLM interpreter (runtime layer) on an int8 model; a model it refuses is an ExportError."""
    try:
        return runtime.load(model_bytes, kind="tflm")
    except runtime.ModelLoadError as exc:
        raise ExportError(f"{label}: TFLite Micro cannot load the model ({exc})") from None


def invoke(micro: runtime.Tflm, x: np.ndarray, label: str = "model") -> np.ndarray:
    """One raw input tensor (batch 1, model layout and dtype) → raw output tensor."""
    try:
        return micro.invoke(x)
    except (RuntimeError, ValueError) as exc:
        raise ExportError(f"{label}: TFLite Micro invoke failed ({str(exc).splitlines()[0]})") from None


def arena(micro: runtime.Tflm, label: str = "model") -> TflmReport:
    """Arena bytes from TFLM's recording allocator (valid after the first invoke)."""
    text = micro.allocations()

    def grab(what: str) -> int:
        m = re.search(rf"Arena allocation {what} (\d+) bytes", text)
        if m is None:
            raise ExportError(f"{label}: could not read the TFLM arena size from print_allocations")
        return int(m.group(1))

    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return TflmReport(grab("total"), grab("head"), grab("tail"), lines)


# ----------------------------------------------------------------------------------- arena analysis
OFFLINE_PLAN = b"OfflineMemoryAllocation"  # TFLM metadata: per-tensor arena offsets planned ahead of time
BUFFER_ALIGN = 16  # TFLM aligns every planned buffer to 16 bytes


@dataclass
class Lifetimes:
    """Activation tensors of subgraph 0 with their byte size and [first, last] op index of use."""

    sizes: dict[int, int]
    first: dict[int, int]
    last: dict[int, int]
    n_tensors: int
    op_names: list[str]
    shapes: dict[int, list[int]]

    def live_at(self, k: int) -> list[int]:
        return [i for i in self.sizes if self.first[i] <= k <= self.last[i]]


def lifetimes(model_bytes: bytes) -> Lifetimes:
    """Lifetimes as TFLM computes them: graph inputs live from the start, graph outputs to the end, every
    other activation from the op that writes it to the last op that reads it (inclusive)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    itemsize = {
        schema.TensorType.INT8: 1,
        schema.TensorType.INT32: 4,
        schema.TensorType.FLOAT32: 4,
        schema.TensorType.INT16: 2,
        schema.TensorType.UINT8: 1,
        schema.TensorType.INT64: 8,
    }
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    sg = model.subgraphs[0]

    def is_activation(i: int) -> bool:
        buf = model.buffers[sg.tensors[i].buffer]
        return (buf.data is None or len(buf.data) == 0) and not sg.tensors[i].isVariable

    n_ops = len(sg.operators)
    first: dict[int, int] = {int(i): -1 for i in sg.inputs}
    last: dict[int, int] = {}
    for k, op in enumerate(sg.operators):
        for i in op.outputs:
            first.setdefault(int(i), k)
            last[int(i)] = max(last.get(int(i), k), k)
        for i in op.inputs:
            if i >= 0 and is_activation(int(i)):
                last[int(i)] = max(last.get(int(i), k), k)
    for i in sg.outputs:
        last[int(i)] = n_ops
    sizes = {i: int(np.prod(sg.tensors[i].shape)) * itemsize.get(sg.tensors[i].type, 4) for i in first}
    op_names = []
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_names.append(names[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return Lifetimes(
        {i: n for i, n in sizes.items() if n > 0},
        first,
        {i: last.get(i, first[i]) for i in first},
        len(sg.tensors),
        op_names,
        {i: [int(v) for v in sg.tensors[i].shape] for i in first},
    )


def arena_breakdown(model_bytes: bytes, top: int = 5) -> dict[str, Any]:
    """Which activations are alive together at the op where the sum of live activation bytes peaks.

    That sum is the lower bound any planner must meet for the non-persistent part of the arena; the
    tensors named here are what dominates it.
    """
    life = lifetimes(model_bytes)
    best = (-1, 0, [])
    for k in range(len(life.op_names)):
        live = life.live_at(k)
        total = sum(life.sizes[i] for i in live)
        if total > best[1]:
            best = (k, total, live)
    k, total, live = best
    biggest = sorted(live, key=lambda i: -life.sizes[i])[:top]
    return {
        "peak_live_bytes": total,
        "peak_op": f"#{k} {life.op_names[k]}",
        "peak_tensors": [{"shape": life.shapes[i], "bytes": life.sizes[i]} for i in biggest],
        "largest_activation_bytes": max(life.sizes.values()),
    }


def _align(n: int) -> int:
    return (n + BUFFER_ALIGN - 1) // BUFFER_ALIGN * BUFFER_ALIGN


def _first_fit(order: list[int], life: Lifetimes) -> tuple[int, dict[int, int]]:
    """Place buffers in ``order`` at the lowest 16-aligned offset free over their whole lifetime."""
    placed: list[tuple[int, int, int, int]] = []  # offset, end, first, last
    offsets = {}
    for i in order:
        size, f, la = _align(life.sizes[i]), life.first[i], life.last[i]
        busy = sorted((o, e) for o, e, pf, pl in placed if pf <= la and f <= pl)
        offset = 0
        for o, e in busy:
            if offset + size <= o:
                break
            offset = max(offset, e)
        offsets[i] = offset
        placed.append((offset, offset + size, f, la))
    return max((e for _, e, _, _ in placed), default=0), offsets


def plan_arena(model_bytes: bytes) -> tuple[int, dict[int, int], int]:
    """A tighter static plan than TFLM's greedy default: first-fit under a few orderings, best kept.
    Returns (planned bytes, offsets, bytes of the biggest-first ordering TFLM itself uses)."""
    life = lifetimes(model_bytes)
    ids = sorted(life.sizes)
    orders = [
        sorted(ids, key=lambda i: (-life.sizes[i], life.first[i], i)),  # TFLM's own: biggest first
        sorted(ids, key=lambda i: (life.first[i], -life.sizes[i], i)),  # in execution order
        sorted(ids, key=lambda i: (-(life.last[i] - life.first[i] + 1) * life.sizes[i], i)),  # long & big
        sorted(ids, key=lambda i: (-life.sizes[i], -(life.last[i] - life.first[i]), i)),
    ]
    results = [_first_fit(order, life) for order in orders]
    best = min(results, key=lambda r: r[0])
    return best[0], best[1], results[0][0]


def add_offline_plan(model_bytes: bytes) -> tuple[bytes, int]:
    """The model with an ``OfflineMemoryAllocation`` metadata entry (TFLM places every activation at the
    planned offset; other runtimes ignore it) and the planned activation bytes. Returns the model
    unchanged when the plan is no better than TFLM's greedy planner would do by itself."""
    from ai_edge_litert import schema_py_generated as schema

    from .tflite import _pack_aligned

    total, offsets, greedy = plan_arena(model_bytes)
    if total >= greedy:
        return model_bytes, total
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    life = lifetimes(model_bytes)
    plan = np.full(life.n_tensors, -1, np.int32)
    for i, off in offsets.items():
        plan[i] = off
    payload = np.concatenate([np.asarray([0, 0, life.n_tensors], np.int32), plan]).astype("<i4").tobytes()
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, np.uint8).copy()
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name, meta.buffer = OFFLINE_PLAN, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != OFFLINE_PLAN] + [meta]
    return _pack_aligned(model), total


def has_offline_plan(model_bytes: bytes) -> bool:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    return any(m.name == OFFLINE_PLAN for m in model.metadata or [])


def strip_offline_plan(model_bytes: bytes) -> bytes:
    """The model without its offline plan (to measure what TFLM's default planner would need)."""
    from .tflite import compact

    if not has_offline_plan(model_bytes):
        return model_bytes
    from ai_edge_litert import schema_py_generated as schema

    from .tflite import _pack_aligned

    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    model.metadata = [m for m in model.metadata if m.name != OFFLINE_PLAN] or None
    return compact(_pack_aligned(model), strip_names=False)


# ---------------------------------------------------------------------------------------- C array
def render_c_array(model_bytes: bytes, header_name: str = "model_data.h") -> tuple[str, str]:
    """(header, source) defining ``alignas(16) const unsigned char g_model_data[]`` and its length."""
    guard = "DSSDN_MODEL_DATA_H"
    header = (
        "/* model_data.h - GENERATED by dssdn_edge.export.tflm; do not edit.\n"
        " * The int8 .tflite flatbuffer as a C array for TensorFlow Lite for Microcontrollers:\n"
        " *     const tflite::Model* model = tflite::GetModel(g_model_data);\n"
        " */\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"extern const unsigned char {ARRAY_NAME}[];\n"
        f"extern const unsigned int {ARRAY_NAME}_len;\n\n"
        f"#endif /* {guard} */\n"
    )
    rows = []
    for start in range(0, len(model_bytes), BYTES_PER_LINE):
        chunk = model_bytes[start : start + BYTES_PER_LINE]
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    source = (
        "/* model_data.cc - GENERATED by dssdn_edge.export.tflm; do not edit. */\n"
        f'#include "{header_name}"\n\n'
        "/* TFLM requires the flatbuffer 16-byte aligned. */\n"
        f"alignas(16) const unsigned char {ARRAY_NAME}[] = {{\n" + "\n".join(rows) + "\n};\n"
        f"const unsigned int {ARRAY_NAME}_len = {len(model_bytes)};\n"
    )
    return header, source


def write_c_array(model_bytes: bytes, out_dir: Path) -> list[Path]:
    header, source = render_c_array(model_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "model_data.h", out_dir / "model_data.cc"]
    paths[0].write_text(header)
    paths[1].write_text(source)
    return paths
