"""Exact rewrite of an int8 .tflite for CPUs whose int8 GEMM cost is per output row: pack pixels into channels.

Why: a per-op profile (``benchmarks/op_profile.py``) of the int8 DSSDN graphs on an Intel Xeon with AMX-INT8
(XNNPACK's int8 GEMMs run on the AMX tiles there) shows every int8 convolution costing about 15 ns per output
pixel plus a fixed ~0.4 µs, almost independent of its channel counts up to 64: a 16→8 1×1 conv on the
26×32 maps of the first block takes 16 µs in int8 and 4.7 µs in fp32. The network's first block runs its
convolutions on 832-pixel maps with 8–16 channels, so int8 lost 2× to fp32 overall.

The rewrite: a conv whose kernel is one tap wide in frequency (every 1×1, the (2,1) pool+1×1 and the stem
once its band pairs are moved into channels) computes each frequency position independently, so ``g``
neighbouring positions can be handled as one "pixel" with ``g``× the channels::

    [1, H, W, C] --RESHAPE--> [1, H, W/g, g·C] --CONV_2D(block-diagonal kernel)--> [1, H', W/g, g·C'] --RESHAPE-->

The RESHAPEs only reinterpret contiguous NHWC memory. The block-diagonal kernel holds ``g`` copies of the
int8 kernel with its per-channel scales and int32 biases tiled ``g`` times; the off-diagonal zeros add
nothing to the int32 accumulators, so every output is the same integer as before (a test compares the
files' outputs bit for bit). It costs ``g``× the MACs of the rewritten convs, which is why it is a
separate CPU artifact and never the microcontroller file (TFLM's kernels pay per MAC), and why ``g`` is
capped so the packed channel counts stay within one AMX tile (64).

A stem conv of kernel (kh, s) and stride (sh, s) over ``W`` bands with no padding in frequency (taps =
stride, as DSSDN's (3, 2)/(2, 2) stem) first becomes a (kh, 1) conv over ``W/s`` positions of ``s·C``
channels (the same reshape), then is packed like the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PACKED_CHANNELS = 128  # g·max(C, C') cap: beyond it the g× MACs outweigh the rows saved (measured)
MIN_ROWS = 16  # smaller maps gain nothing from packing (the fixed per-op cost dominates)
PACKS = (16, 8, 4, 2)


@dataclass
class PackReport:
    """What the rewrite did: per rewritten conv (op index in the input graph) its group size."""

    packed: dict[int, int]
    macs_added: int

    def to_dict(self) -> dict[str, object]:
        return {"packed_convs": len(self.packed), "groups": sorted(set(self.packed.values())),
                "macs_added": self.macs_added}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _is_const(model, sg, i: int) -> bool:
    buf = model.buffers[sg.tensors[i].buffer]
    return buf.data is not None and len(buf.data) > 0


def _choose_group(h_out: int, w: int, cin: int, cout: int) -> int:
    if h_out * w < MIN_ROWS:
        return 1
    for g in PACKS:
        if w % g == 0 and g * max(cin, cout) <= MAX_PACKED_CHANNELS and h_out * (w // g) >= 8:
            return g
    return 1


def pack_pixels(model_bytes: bytes) -> tuple[bytes, PackReport]:
    """The int8 model with its frequency-local convs pixel-packed (see the module docstring); bit-exact."""
    from .tflite import _pack_aligned, compact
    from .tflm import OFFLINE_PLAN

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    sg = model.subgraphs[0]
    conv_code = schema.BuiltinOperator.CONV_2D
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    reshape_idx = _opcode(model, schema.BuiltinOperator.RESHAPE)
    new_ops = []
    report = PackReport({}, 0)
    dw_code = schema.BuiltinOperator.DEPTHWISE_CONV_2D
    for k, op in enumerate(sg.operators):
        if codes[op.opcodeIndex] == dw_code and _dw_packable(model, sg, op):
            _pack_depthwise(model, sg, op, new_ops, reshape_idx)
            report.packed[k] = 2
            continue
        if codes[op.opcodeIndex] != conv_code or not _packable(model, sg, op):
            new_ops.append(op)
            continue
        x, w_t, b_t = (int(i) for i in op.inputs[:3])
        y = int(op.outputs[0])
        _, h, w, c = (int(v) for v in sg.tensors[x].shape)
        cout, kh, kw, _ = (int(v) for v in sg.tensors[w_t].shape)
        h_out = int(sg.tensors[y].shape[1])
        s = kw  # stem: kw == stride_w taps become channels; 1 for a (kh, 1) conv
        g = _choose_group(h_out, w // s, s * c, cout)
        if g == 1 and s == 1:
            new_ops.append(op)
            continue
        weights = _const(model, sg, w_t).reshape(cout, kh, 1, s * c)  # (o, t, j, c) -> (o, t, 0, j·C + c)
        bias = _const(model, sg, b_t)
        packed_w = np.zeros((g * cout, kh, 1, g * s * c), weights.dtype)
        for j in range(g):
            packed_w[j * cout : (j + 1) * cout, :, :, j * s * c : (j + 1) * s * c] = weights
        xin = _add_tensor(model, sg, x, [1, h, w // (s * g), g * s * c])
        _reshape(model, sg, new_ops, reshape_idx, x, xin)
        w_new = _add_tensor(model, sg, w_t, list(packed_w.shape), packed_w, tile=g)
        b_new = _add_tensor(model, sg, b_t, [g * cout], np.tile(bias, g), tile=g)
        y_packed = _add_tensor(model, sg, y, [1, h_out, w // (s * g), g * cout])
        op.inputs = np.asarray([xin, w_new, b_new], np.int32)
        op.outputs = np.asarray([y_packed], np.int32)
        op.builtinOptions.strideW = 1
        new_ops.append(op)
        _reshape(model, sg, new_ops, reshape_idx, y_packed, y)
        report.packed[k] = g
        report.macs_added += (g - 1) * int(np.prod(sg.tensors[y].shape)) * kh * s * c
    is_reshape = lambda o: o.opcodeIndex == reshape_idx  # noqa: E731
    new_ops = _collapse_reshapes(sg, new_ops, is_reshape)
    new_ops = _sink_elementwise(model, sg, new_ops, reshape_idx)
    sg.operators = _collapse_reshapes(sg, new_ops, is_reshape)
    model.metadata = [m for m in model.metadata or [] if m.name != OFFLINE_PLAN] or None  # offsets of the old graph
    prune_tensors(model)
    return compact(_pack_aligned(model), strip_names=True), report


def prune_tensors(model) -> None:
    """Drop tensors no operator, input or output refers to (and renumber the rest), in place."""
    for sg in model.subgraphs:
        used = sorted({int(i) for op in sg.operators for i in [*op.inputs, *op.outputs] if i >= 0}
                      | {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs})
        new_index = {old: new for new, old in enumerate(used)}
        sg.tensors = [sg.tensors[i] for i in used]
        for op in sg.operators:
            op.inputs = np.asarray([new_index[int(i)] if i >= 0 else -1 for i in op.inputs], np.int32)
            op.outputs = np.asarray([new_index[int(i)] for i in op.outputs], np.int32)
        sg.inputs = np.asarray([new_index[int(i)] for i in sg.inputs], np.int32)
        sg.outputs = np.asarray([new_index[int(i)] for i in sg.outputs], np.int32)
    for sig in model.signatureDefs or []:
        for io in [*(sig.inputs or []), *(sig.outputs or [])]:
            io.tensorIndex = new_index[int(io.tensorIndex)]


def _dw_packable(model, sg, op) -> bool:
    """A depthwise conv with frequency dilation 2, stride 1 and an even number of bands: the taps at w ± 2 of
    position w = 2p + j are those of p ± 1 with the same j, so the op is a frequency-dilation-1 depthwise
    conv over pairs of bands (2C channels, kernel tiled) — no extra MACs, half the pixels."""
    schema = _schema()
    x, w_t = int(op.inputs[0]), int(op.inputs[1])
    shape = [int(v) for v in sg.tensors[x].shape]
    opt = op.builtinOptions
    return (
        len(op.inputs) >= 3 and op.inputs[2] >= 0
        and _is_const(model, sg, w_t) and _is_const(model, sg, int(op.inputs[2]))
        and len(shape) == 4 and shape[0] == 1 and shape[2] % 2 == 0 and shape[1] * shape[2] >= MIN_ROWS
        and sg.tensors[x].type == schema.TensorType.INT8 and opt.dilationWFactor == 2 and opt.strideW == 1
        and opt.depthMultiplier in (0, 1) and 2 * shape[3] <= 2 * MAX_PACKED_CHANNELS
    )


def _pack_depthwise(model, sg, op, new_ops: list, reshape_idx: int) -> None:
    x, w_t, b_t = (int(i) for i in op.inputs[:3])
    y = int(op.outputs[0])
    _, h, w, c = (int(v) for v in sg.tensors[x].shape)
    h_out, w_out = (int(v) for v in sg.tensors[y].shape[1:3])
    kernel = _const(model, sg, w_t)  # (1, kh, kw, C)
    xin = _add_tensor(model, sg, x, [1, h, w // 2, 2 * c])
    _reshape(model, sg, new_ops, reshape_idx, x, xin)
    w_new = _add_tensor(model, sg, w_t, [1, kernel.shape[1], kernel.shape[2], 2 * c], np.tile(kernel, (1, 1, 1, 2)), 2)
    b_new = _add_tensor(model, sg, b_t, [2 * c], np.tile(_const(model, sg, b_t), 2), 2)
    y_packed = _add_tensor(model, sg, y, [1, h_out, w_out // 2, 2 * c])
    op.inputs = np.asarray([xin, w_new, b_new], np.int32)
    op.outputs = np.asarray([y_packed], np.int32)
    op.builtinOptions.dilationWFactor = 1
    new_ops.append(op)
    _reshape(model, sg, new_ops, reshape_idx, y_packed, y)


def _sink_elementwise(model, sg, ops: list, reshape_idx: int) -> list:
    """Run ADD/MUL in the packed layout of their inputs: ``op(reshape(a'), reshape(b')) = reshape(op(a', b'))``
    when a' and b' have one shape, and for ECA's ``MUL(x, sigmoid(FC(mean)))`` with x = reshape(x'), whose gate
    is per channel, by giving the FC its rows ``g`` times (the gate comes out tiled, bit for bit)."""
    schema = _schema()
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    add, mul = schema.BuiltinOperator.ADD, schema.BuiltinOperator.MUL
    logistic, fc = schema.BuiltinOperator.LOGISTIC, schema.BuiltinOperator.FULLY_CONNECTED
    out: list = []
    producer: dict[int, object] = {}
    readers: dict[int, int] = {}
    for op in ops:
        for i in op.inputs:
            readers[int(i)] = readers.get(int(i), 0) + 1
    for op in ops:
        code = codes[op.opcodeIndex]
        if code in (add, mul) and len(op.inputs) == 2:
            a, b = (int(i) for i in op.inputs)
            pa, pb = producer.get(a), producer.get(b)
            src_a = int(pa.inputs[0]) if pa is not None and pa.opcodeIndex == reshape_idx else None
            src_b = int(pb.inputs[0]) if pb is not None and pb.opcodeIndex == reshape_idx else None
            shape = lambda i: [int(v) for v in sg.tensors[i].shape]  # noqa: E731
            y = int(op.outputs[0])
            if src_a is not None and src_b is not None and shape(a) == shape(b) and shape(src_a) == shape(src_b):
                packed = _add_tensor(model, sg, y, shape(src_a))
                op.inputs, op.outputs = np.asarray([src_a, src_b], np.int32), np.asarray([packed], np.int32)
                out.append(op)
                _reshape(model, sg, out, reshape_idx, packed, y)
                producer[y] = out[-1]
                continue
            gate_ops = _eca_gate(sg, producer, readers, b, codes, logistic, fc)
            if code == mul and src_a is not None and gate_ops is not None and len(shape(b)) == 2:
                g = shape(src_a)[-1] // shape(b)[-1]
                fc_op, sig_op = gate_ops
                if g > 1 and shape(src_a)[-1] == g * shape(b)[-1]:
                    _tile_gate(model, sg, fc_op, sig_op, g)
                    packed = _add_tensor(model, sg, y, shape(src_a))
                    op.inputs = np.asarray([src_a, int(sig_op.outputs[0])], np.int32)
                    op.outputs = np.asarray([packed], np.int32)
                    out.append(op)
                    _reshape(model, sg, out, reshape_idx, packed, y)
                    producer[y] = out[-1]
                    continue
        out.append(op)
        for o in op.outputs:
            producer[int(o)] = op
    return out


def _eca_gate(sg, producer, readers, gate: int, codes, logistic, fc):
    """(FC, LOGISTIC) ops when ``gate`` is sigmoid(FC(v)) with const FC weights and single readers."""
    sig = producer.get(gate)
    if sig is None or codes[sig.opcodeIndex] != logistic or readers.get(gate, 0) != 1:
        return None
    lin = producer.get(int(sig.inputs[0]))
    if lin is None or codes[lin.opcodeIndex] != fc or readers.get(int(sig.inputs[0]), 0) != 1:
        return None
    return lin, sig


def _tile_gate(model, sg, fc_op, sig_op, g: int) -> None:
    w_t = int(fc_op.inputs[1])
    w = _const(model, sg, w_t)
    tiled = _add_tensor(model, sg, w_t, [g * w.shape[0], w.shape[1]], np.tile(w, (g, 1)), g)
    new_inputs = [int(fc_op.inputs[0]), tiled]
    if len(fc_op.inputs) > 2 and fc_op.inputs[2] >= 0:
        b_t = int(fc_op.inputs[2])
        new_inputs.append(_add_tensor(model, sg, b_t, [g * w.shape[0]], np.tile(_const(model, sg, b_t), g), g))
    elif len(fc_op.inputs) > 2:
        new_inputs.append(-1)
    lin_out = int(fc_op.outputs[0])
    lin_new = _add_tensor(model, sg, lin_out, [1, g * int(sg.tensors[lin_out].shape[-1])])
    gate_new = _add_tensor(model, sg, int(sig_op.outputs[0]), [1, g * int(sg.tensors[lin_out].shape[-1])])
    fc_op.inputs, fc_op.outputs = np.asarray(new_inputs, np.int32), np.asarray([lin_new], np.int32)
    sig_op.inputs, sig_op.outputs = np.asarray([lin_new], np.int32), np.asarray([gate_new], np.int32)


def _collapse_reshapes(sg, ops: list, codes_of) -> list:
    """RESHAPE(RESHAPE(x)) -> RESHAPE(x), a RESHAPE that gives back its input's shape -> nothing, and ops
    whose outputs nobody reads -> nothing: the packed ops then hand their layouts straight to each other."""
    graph_out = {int(i) for i in sg.outputs}
    changed = True
    while changed:
        changed = False
        readers: dict[int, list] = {}
        producer = {}
        for op in ops:
            for i in op.inputs:
                readers.setdefault(int(i), []).append(op)
            for o in op.outputs:
                producer[int(o)] = op
        for op in ops:
            if not codes_of(op):
                continue
            src = int(op.inputs[0])
            prev = producer.get(src)
            if prev is not None and codes_of(prev):  # a reshape of a reshape reads the original
                op.inputs = np.asarray([int(prev.inputs[0]), int(op.inputs[1])], np.int32)
                changed = True
                break
            dst = int(op.outputs[0])
            src_shape = [int(v) for v in sg.tensors[src].shape]
            if src_shape == [int(v) for v in sg.tensors[dst].shape] and dst not in graph_out:
                for reader in readers.get(dst, []):
                    reader.inputs = np.asarray([src if int(i) == dst else int(i) for i in reader.inputs], np.int32)
                ops = [o for o in ops if o is not op]
                changed = True
                break
        read = {int(i) for o in ops for i in o.inputs} | graph_out
        alive = [o for o in ops if any(int(t) in read for t in o.outputs)]  # drop ops nobody reads
        changed = changed or len(alive) != len(ops)
        ops = alive
    return ops


def _packable(model, sg, op) -> bool:
    """A CONV_2D whose frequency taps equal its frequency stride and which pads nothing in frequency."""
    schema = _schema()
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return False
    x, w_t = int(op.inputs[0]), int(op.inputs[1])
    if not _is_const(model, sg, w_t) or not _is_const(model, sg, int(op.inputs[2])):
        return False
    shape = [int(v) for v in sg.tensors[x].shape]
    if len(shape) != 4 or shape[0] != 1 or sg.tensors[x].type != schema.TensorType.INT8:
        return False
    opt = op.builtinOptions
    kw = int(sg.tensors[w_t].shape[2])
    if opt.dilationWFactor != 1 or opt.strideW != kw or shape[2] % kw:
        return False
    q = sg.tensors[w_t].quantization
    return q is not None and q.quantizedDimension == 0


def _const(model, sg, i: int) -> np.ndarray:
    schema = _schema()
    t = sg.tensors[i]
    dtype = {schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32}[t.type]
    data = np.asarray(model.buffers[t.buffer].data, np.uint8).tobytes()
    return np.frombuffer(data, dtype).reshape([int(v) for v in t.shape]).copy()


def _add_tensor(model, sg, like: int, shape: list[int], data: np.ndarray | None = None, tile: int = 1) -> int:
    """A new tensor with ``like``'s type and quantization (per-channel parameters tiled ``tile`` times)."""
    import copy

    schema = _schema()
    src = sg.tensors[like]
    t = schema.TensorT()
    t.type, t.shape = src.type, np.asarray(shape, np.int32)
    t.quantization = copy.deepcopy(src.quantization)
    q = t.quantization
    if q is not None and tile > 1:
        for name in ("scale", "zeroPoint", "min", "max"):
            v = getattr(q, name)
            if v is not None and len(v) > 1:
                setattr(q, name, np.tile(np.asarray(v), tile))
    t.buffer = 0
    if data is not None:
        buf = schema.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8).copy()
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _opcode(model, code: int) -> int:
    schema = _schema()
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _reshape(model, sg, ops: list, opcode: int, src: int, dst: int) -> None:
    schema = _schema()
    shape = np.asarray(sg.tensors[dst].shape, np.int32)
    shape_t = schema.TensorT()
    shape_t.type, shape_t.shape = schema.TensorType.INT32, np.asarray([len(shape)], np.int32)
    buf = schema.BufferT()
    buf.data = np.frombuffer(shape.astype("<i4").tobytes(), np.uint8).copy()
    model.buffers.append(buf)
    shape_t.buffer = len(model.buffers) - 1
    sg.tensors.append(shape_t)
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.asarray([src, len(sg.tensors) - 1], np.int32)
    op.outputs = np.asarray([dst], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    op.builtinOptions = schema.ReshapeOptionsT()
    op.builtinOptions.newShape = shape
    ops.append(op)


SUFFIX = ".int8.packed.tflite"
CHECK_WINDOWS = 32


def outputs(model_bytes: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    """Raw int8 outputs of LiteRT (XNNPACK, 1 thread) for raw int8 inputs."""
    from .. import runtime

    model = runtime.load(model_bytes, kind="tflite")
    return np.stack([model.invoke(x) for x in inputs])


def check_inputs(model_bytes: bytes, windows_nchw: np.ndarray, n: int = CHECK_WINDOWS) -> list[np.ndarray]:
    """Raw int8 inputs to compare two int8 files on: up to ``n`` real windows spread over ``windows_nchw``
    (quantised as the runtime would) plus four full-range pseudo-random ones."""
    from .. import runtime

    model = runtime.load(model_bytes, kind="tflite", delegate="none")
    shape = list(model.input_shape)
    picked = windows_nchw[:: max(1, len(windows_nchw) // n)][:n] if len(windows_nchw) else []
    xs = [model.prepare(w[None]) for w in picked]
    rng = np.random.default_rng(0)
    xs += [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(4)]
    return xs


def checked(candidate: bytes, reference: bytes, windows_nchw: np.ndarray, label: str) -> bytes:
    """``candidate`` if LiteRT gives exactly the outputs of ``reference`` on real and random inputs, else an
    ExportError: a rewrite that changes one integer is a bug, not a trade-off."""
    from ..errors import ExportError

    xs = check_inputs(reference, windows_nchw)
    if not np.array_equal(outputs(candidate, xs), outputs(reference, xs)):
        raise ExportError(f"{label}: the rewritten int8 model's outputs differ from the original's")
    return candidate
