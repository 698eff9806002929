"""Read an int8 ``.tflite`` into a plain graph the code generator can specialise.

The flatbuffer is read with the schema module LiteRT ships (``ai_edge_litert.schema_py_generated``), never by
hand. What comes out is deliberately dumb data (tensors with shapes, quantisation and constant contents; ops
with their option fields), so the planner and the emitter never see the flatbuffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ExportError

SUPPORTED = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "MUL",
    "MEAN",
    "LOGISTIC",
    "SLICE",
    "CONCATENATION",
    "RESHAPE",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "PAD",
)
_NUMPY = {"INT8": np.int8, "INT32": np.int32, "INT16": np.int16, "UINT8": np.uint8, "INT64": np.int64,
          "FLOAT32": np.float32}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # "INT8", "INT32", "FLOAT32", ...
    scales: tuple[float, ...] = ()  # float32 values as stored, one per channel or one per tensor
    zero_points: tuple[int, ...] = ()
    quant_axis: int = 0
    data: np.ndarray | None = None  # constant contents, None for activations

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def scale(self) -> float:
        return self.scales[0]

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class Op:
    index: int
    kind: str
    inputs: list[int]  # -1 for an absent optional input
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    label: str

    def t(self, i: int) -> Tensor:
        return self.tensors[i]


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _options(op: Any) -> dict[str, Any]:
    opt = op.builtinOptions
    if opt is None:
        return {}
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(opt).items()}


def read_graph(model_bytes: bytes, label: str = "model") -> Graph:
    """The first subgraph of an int8 model. Refuses (one line, naming ``label``) anything the generator
    cannot turn into C: a float or mixed model, several subgraphs, an op it has no kernel for."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except Exception:  # noqa: BLE001 - any flatbuffer decode failure is a bad file
        raise ExportError(f"{label}: not a .tflite flatbuffer") from None
    if not model.subgraphs:
        raise ExportError(f"{label}: the model has no subgraph")
    if len(model.subgraphs) != 1:
        raise ExportError(f"{label}: {len(model.subgraphs)} subgraphs; the MCU code generator takes one")
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    sg = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tensors):
        dtype = type_names.get(t.type, str(t.type))
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        data = None
        shape = tuple(int(v) for v in (t.shape if t.shape is not None else []))
        if buf is not None and buf.data is not None and len(buf.data):
            raw = np.asarray(buf.data, np.uint8).tobytes()
            data = np.frombuffer(raw, _NUMPY.get(dtype, np.uint8)).reshape(shape if shape else ())
        q = t.quantization
        scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else []))
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        axis = int(q.quantizedDimension) if q is not None else 0
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name or "")
        tensors.append(Tensor(i, name, shape, dtype, scales, zps, axis, data))
    graph_in = [int(i) for i in sg.inputs]
    graph_out = [int(i) for i in sg.outputs]
    for what, ids in (("input", graph_in), ("output", graph_out)):
        for i in ids:
            if tensors[i].dtype != "INT8" or not tensors[i].scales:
                raise ExportError(
                    f"{label}: not a full-integer int8 model ({what} is {tensors[i].dtype.lower()})"
                )
    if not graph_in or len(graph_out) != 1:
        raise ExportError(f"{label}: the MCU code generator takes one output tensor and at least one input")
    ops = []
    for k, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if kind not in SUPPORTED:
            raise ExportError(f"{label}: op {kind} (op #{k}) is not supported by the MCU code generator")
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        for i in [*ins, *outs]:
            if i >= 0 and tensors[i].data is None and tensors[i].dtype != "INT8":
                raise ExportError(
                    f"{label}: op {kind} (op #{k}) has a {tensors[i].dtype.lower()} activation; "
                    "not a full-integer int8 model"
                )
        ops.append(Op(k, kind, ins, outs, _options(op)))
    return Graph(tensors, ops, graph_in, graph_out, label)
