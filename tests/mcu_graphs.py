"""Build small int8 ``.tflite`` graphs in a test with the flatbuffer object API (no converter), and run a
batch of them through the generated C (one compiler call for all) and through TFLite Micro."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from dssdn_edge.export.tflite import _pack_aligned
from dssdn_edge.export.tflm import open_tflm
from dssdn_edge.mcu import generate_model_c
from dssdn_edge.mcu.host import HostModel, build_library

_TYPES = {np.int8: schema.TensorType.INT8, np.int32: schema.TensorType.INT32}


class GraphBuilder:
    def __init__(self) -> None:
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]
        self.ops: list[Any] = []
        self.codes: dict[int, int] = {}
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    def _tensor(self, shape: Sequence[int], ttype: int, buffer: int, scales: Sequence[float] | None,
                zps: Sequence[int] | None, axis: int = 0) -> int:
        t = schema.TensorT()
        t.shape = np.asarray(shape, np.int32)
        t.type = ttype
        t.buffer = buffer
        t.name = f"t{len(self.tensors)}".encode()
        if scales is not None:
            q = schema.QuantizationParametersT()
            q.scale = [float(np.float32(s)) for s in scales]
            q.zeroPoint = [int(z) for z in (zps if zps is not None else [0] * len(scales))]
            q.quantizedDimension = axis
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def act(self, shape: Sequence[int], scale: float, zp: int) -> int:
        return self._tensor(shape, schema.TensorType.INT8, 0, [scale], [zp])

    def input(self, shape: Sequence[int], scale: float, zp: int) -> int:
        t = self.act(shape, scale, zp)
        self.inputs.append(t)
        return t

    def const(self, values: np.ndarray, scales: Sequence[float] | None = None, zps: Sequence[int] | None = None,
              axis: int = 0) -> int:
        values = np.ascontiguousarray(values)
        buf = schema.BufferT()
        buf.data = np.frombuffer(values.tobytes(), np.uint8).copy()
        self.buffers.append(buf)
        return self._tensor(values.shape, _TYPES[values.dtype.type], len(self.buffers) - 1, scales, zps, axis)

    def op(self, kind: str, inputs: Sequence[int], outputs: Sequence[int], options: Any = None) -> None:
        code = getattr(schema.BuiltinOperator, kind)
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        o = schema.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs = np.asarray(inputs, np.int32)
        o.outputs = np.asarray(outputs, np.int32)
        if options is not None:
            o.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])
            o.builtinOptions = options
        self.ops.append(o)

    def build(self, outputs: Sequence[int]) -> bytes:
        m = schema.ModelT()
        m.version = 3
        m.description = b"dssdn-edge test graph"
        codes = []
        for code, _ in sorted(self.codes.items(), key=lambda kv: kv[1]):
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            codes.append(oc)
        m.operatorCodes = codes
        sg = schema.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = np.asarray(self.inputs, np.int32)
        sg.outputs = np.asarray(outputs, np.int32)
        sg.operators = self.ops
        sg.name = b"main"
        m.subgraphs = [sg]
        m.buffers = self.buffers
        return _pack_aligned(m)


def options(name: str, **fields: Any) -> Any:
    o = getattr(schema, f"{name}T")()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


@dataclass
class Case:
    name: str
    model: bytes
    inputs: list[np.ndarray]  # one array per sample: every model input flattened, back to back
    tflm_inputs: list[list[np.ndarray]] = field(default_factory=list)  # per sample, per model input


def run_cases(cases: Sequence[Case], work: Path, defines: Sequence[str] = ()
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{case name: (generated C outputs, TFLM outputs)}, every case's samples stacked."""
    c_dir = work / "c"
    symbols = []
    for i, case in enumerate(cases):
        sym = f"m{i}"
        generate_model_c(case.model, c_dir, case.name, None, symbol=sym, kernels=(i == 0), label=case.name)
        symbols.append(sym)
    lib = build_library(c_dir, symbols, work / "build", defines)
    out = {}
    for case, sym in zip(cases, symbols, strict=True):
        host = HostModel(c_dir, symbol=sym, library=lib)
        mine = host(np.concatenate([x.reshape(-1) for x in case.inputs]))
        micro = open_tflm(case.model, case.name)
        theirs = []
        for sample in case.tflm_inputs:
            for k, x in enumerate(sample):
                micro.interpreter.set_input(np.ascontiguousarray(x), k)
            micro.interpreter.invoke()
            theirs.append(np.array(micro.interpreter.get_output(0)).reshape(-1))
        out[case.name] = (mine, np.stack(theirs))
    return out


def make_case(name: str, model: bytes, input_shapes: Sequence[Sequence[int]], rng: np.random.Generator,
              samples: int = 2, values: np.ndarray | None = None) -> Case:
    case = Case(name, model, [])
    for _ in range(samples):
        xs = [values.reshape(s).astype(np.int8) if values is not None else
              rng.integers(-128, 128, size=s).astype(np.int8) for s in input_shapes]
        case.tflm_inputs.append(xs)
        case.inputs.append(np.concatenate([x.reshape(-1) for x in xs]))
    return case
