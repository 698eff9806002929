"""Per-op constants for the generated C: geometry, requantisation multipliers, tables.

Each ``lower_*`` turns one graph op into the fields of its kernel's parameter struct (``dssdn_kernels.h``)
plus the constant arrays it points to. All the arithmetic that TFLM does in an op's Prepare happens here,
in Python integers (``quant.py``), so the device only runs the per-element loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ExportError
from . import pack, quant
from .graph import Graph, Op
from .plan import Plan, natural_strides, shape4, slice_bounds, work_area


@dataclass
class Array:
    name: str
    ctype: str  # "int8_t", "int32_t" or "uint32_t"
    values: np.ndarray


@dataclass
class Lowered:
    """One C statement (a kernel call) with the const struct and arrays it needs."""

    struct_type: str | None
    fields: dict[str, object]
    arrays: list[Array] = field(default_factory=list)
    call: str = ""
    name: str = ""  # the struct's C name when it is not the op's own prefix


def _opt(op: Op, name: str, default: int = 0) -> int:
    v = op.options.get(name, default)
    return int(v if v is not None else default)


def _padding(padding: int, in_size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """(out size, leading pad) as TFLite's ComputePaddingHeightWidth (0 SAME, 1 VALID)."""
    eff = (k - 1) * dil + 1
    out = (in_size + stride - 1) // stride if padding == 0 else (in_size + stride - eff) // stride
    total = max(0, (out - 1) * stride + eff - in_size)
    return out, total // 2


def window_geometry(graph: Graph, op: Op, extra_t: int = 0, extra_l: int = 0,
                    src_shape: tuple[int, ...] | None = None) -> dict[str, int]:
    """Input size, kernel window, strides, dilations and leading padding of a conv or pool. ``extra_*`` and
    ``src_shape`` describe a PAD folded into this op: the op reads the PAD's source (``src_shape``) and treats
    the padding as taps outside the input."""
    t_in = shape4(graph.t(op.inputs[0]).shape)
    if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        k_h, k_w = _opt(op, "filterHeight"), _opt(op, "filterWidth")
        dil_h = dil_w = 1
    else:
        w = graph.t(op.inputs[1]).shape
        k_h, k_w = int(w[1]), int(w[2])
        dil_h, dil_w = _opt(op, "dilationHFactor", 1), _opt(op, "dilationWFactor", 1)
    s_h, s_w = _opt(op, "strideH", 1), _opt(op, "strideW", 1)
    pad_mode = _opt(op, "padding")
    out_h, pad_t = _padding(pad_mode, t_in[1], k_h, s_h, dil_h)
    out_w, pad_l = _padding(pad_mode, t_in[2], k_w, s_w, dil_w)
    o4 = shape4(graph.t(op.outputs[0]).shape)
    if (out_h, out_w) != (o4[1], o4[2]):
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}): output {o4} does not match its "
                          f"padding (expected {out_h}x{out_w})")
    return {
        "in_h": (src_shape or t_in)[1], "in_w": (src_shape or t_in)[2], "in_c": (src_shape or t_in)[3],
        "out_h": o4[1], "out_w": o4[2], "out_c": o4[3],
        "k_h": k_h, "k_w": k_w, "stride_h": s_h, "stride_w": s_w, "dil_h": dil_h, "dil_w": dil_w,
        "pad_t": pad_t + extra_t, "pad_l": pad_l + extra_l,
    }


def _act(graph: Graph, op: Op) -> tuple[int, int]:
    out = graph.t(op.outputs[0])
    try:
        return quant.activation_range(_opt(op, "fusedActivationFunction"), out.scale, out.zero_point)
    except ValueError:
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) has an unsupported fused "
                          "activation") from None


def _bias(graph: Graph, op: Op, wsum: np.ndarray, in_zp: int) -> np.ndarray | None:
    """The kernels' bias: the model's int32 bias minus ``in_zp · Σw`` per output channel (exact in int32,
    so the kernel's sum over raw inputs equals TFLM's sum over ``x − zp``). None when both are zero."""
    bias = np.zeros(len(wsum), np.int64)
    if len(op.inputs) >= 3 and op.inputs[2] >= 0:
        b = graph.t(op.inputs[2])
        if b.dtype != "INT32" or b.data is None:
            raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) needs a constant int32 bias")
        bias += np.asarray(b.data, np.int64).reshape(-1)
    elif in_zp == 0:
        return None
    folded = bias - int(in_zp) * wsum.astype(np.int64)
    if folded.min() < -(2**31) or folded.max() >= 2**31:
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}): bias with the input zero point folded "
                          "in overflows int32")
    return folded


def _channels(prefix: str, bias: np.ndarray | None, mults: list[int], shifts: list[int]
              ) -> tuple[dict[str, object], Array]:
    """The struct fields and the bit-packed array of an op's per-channel constants (see pack.py)."""
    packed = pack.pack_channels(bias, mults, shifts)
    init = ", ".join(f".{k} = {v}" for k, v in {"bits": f"{prefix}_c", **packed.fields()}.items())
    return {"chan": "{" + init + "}"}, Array(f"{prefix}_c", "uint32_t", packed.words)


def _check_requant(graph: Graph, op: Op, bound: int, shifts: list[int]) -> None:
    """The kernels' requantisation (``requantize`` in dssdn_arith.h) is exact only when every value it
    scales satisfies |x · 2^max(shift, 0)| < 2^29 and every shift is >= -30; that lets it drop TFLite's
    saturation and 64-bit rounding. ``bound`` is the largest |x| the op can produce (from its weights, bias
    and the int8 ranges), so this holds for every input, not only the data seen."""
    for sh in shifts:
        if sh < -30 or bound << max(int(sh), 0) >= 1 << 29:
            raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}): accumulators up to {bound} with "
                              f"shift {sh} exceed the kernels' requantisation range (2^29)")


def _bias_bound(bias: np.ndarray | None) -> int:
    """The largest |bias| of the kernel's (folded) bias (none: 0)."""
    return 0 if bias is None or bias.size == 0 else int(np.abs(bias).max())


def lower_conv(graph: Graph, plan: Plan, op: Op, prefix: str) -> Lowered:
    src, extra_t, extra_l = plan.pad_fold.get(op.inputs[0], (op.inputs[0], 0, 0))
    pin = plan.places[src]
    geo = window_geometry(graph, op, extra_t, extra_l, pin.shape)
    t_in, w, out = graph.t(op.inputs[0]), graph.t(op.inputs[1]), graph.t(op.outputs[0])
    if w.data is None or w.dtype != "INT8":
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) needs constant int8 weights")
    if any(z != 0 for z in w.zero_points):
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) has weights with a zero point")
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    oc = geo["out_c"]
    if depthwise:
        k_c = 1
        mult = oc // geo["in_c"]
        if oc != geo["in_c"] * mult or _opt(op, "depthMultiplier", mult) not in (0, mult):
            raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}): inconsistent depth multiplier")
    else:
        k_c, mult = int(w.shape[3]), 1
        if geo["in_c"] % k_c or oc % (geo["in_c"] // k_c):
            raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}): channels do not form groups")
    mults, shifts = quant.conv_multipliers(t_in.scale, w.scales, out.scale, oc)
    lo, hi = _act(graph, op)
    wv = np.asarray(w.data, np.int64)
    wsum = wv.reshape(-1, oc).sum(0) if depthwise else wv.reshape(oc, -1).sum(1)
    bias = _bias(graph, op, wsum, t_in.zero_point)
    taps = wv.size // oc  # products summed per output value, each |w * x| <= 128 * 128
    _check_requant(graph, op, _bias_bound(bias) + taps * 128 * 128, shifts)
    chan, packed = _channels(prefix, bias, mults, shifts)
    work = work_area(plan, op.index, pack.work_bytes(oc, len(mults)))
    arrays = [Array(f"{prefix}_w", "int8_t", np.asarray(w.data, np.int8).reshape(-1)), packed]
    fields = {
        "in_h": geo["in_h"], "in_w": geo["in_w"], "in_c": geo["in_c"],
        "in_row": pin.strides[1], "in_pix": pin.strides[2],
        "out_h": geo["out_h"], "out_w": geo["out_w"], "out_c": oc,
        "k_h": geo["k_h"], "k_w": geo["k_w"], "k_c": k_c,
        "stride_h": geo["stride_h"], "stride_w": geo["stride_w"], "dil_h": geo["dil_h"], "dil_w": geo["dil_w"],
        "pad_t": geo["pad_t"], "pad_l": geo["pad_l"], "depth_mult": mult,
        "per_channel": int(len(mults) > 1), "buffered": int(op.index in plan.buffered),
        "in_zp": t_in.zero_point, "out_zp": out.zero_point,
        "act_min": lo, "act_max": hi, "w": f"{prefix}_w", "work": f"A + {work}", **chan,
    }
    fn = "dssdn_depthwise_conv2d" if depthwise else "dssdn_conv2d"
    return Lowered("dssdn_conv_t", fields, arrays,
                   f"{fn}(&{prefix}, A + {plan.addr(src)}, A + {plan.addr(op.outputs[0])});")


def lower_fc(graph: Graph, plan: Plan, op: Op, prefix: str) -> Lowered:
    t_in, w, out = graph.t(op.inputs[0]), graph.t(op.inputs[1]), graph.t(op.outputs[0])
    if w.data is None or w.dtype != "INT8":
        raise ExportError(f"{graph.label}: op FULLY_CONNECTED (op #{op.index}) needs constant int8 weights")
    units, depth = int(w.shape[0]), int(w.shape[-1])
    batches = t_in.size // depth
    mults, shifts = quant.conv_multipliers(t_in.scale, w.scales, out.scale, units)
    lo, hi = _act(graph, op)
    wsum = (np.asarray(w.data, np.int64).reshape(units, depth) - w.zero_point).sum(1)
    bias = _bias(graph, op, wsum, t_in.zero_point)
    _check_requant(graph, op, _bias_bound(bias) + depth * 256 * 128, shifts)  # |w - w_zp| <= 255
    chan, packed = _channels(prefix, bias, mults, shifts)
    work = work_area(plan, op.index, pack.work_bytes(units, len(mults)))
    arrays = [Array(f"{prefix}_w", "int8_t", np.asarray(w.data, np.int8).reshape(-1)), packed]
    fields = {
        "batches": batches, "depth": depth, "units": units, "per_channel": int(len(mults) > 1),
        "in_zp": t_in.zero_point, "w_zp": w.zero_point, "out_zp": out.zero_point, "act_min": lo,
        "act_max": hi, "w": f"{prefix}_w", "work": f"A + {work}", **chan,
    }
    return Lowered("dssdn_fc_t", fields, arrays,
                   f"dssdn_fully_connected(&{prefix}, A + {plan.addr(op.inputs[0])}, A + {plan.addr(op.outputs[0])});")


def _broadcast_strides(in_shape: tuple[int, ...], out4: tuple[int, ...]) -> list[int]:
    """Element strides of an input over the 4-D output, 0 along broadcast axes (numpy's alignment)."""
    i4 = shape4(in_shape)
    nat = natural_strides(i4)
    return [0 if i4[a] == 1 and out4[a] != 1 else nat[a] for a in range(4)]


def _flat(strides: list[int], o4: tuple[int, ...]) -> bool:
    return list(strides) == list(natural_strides(o4))


def _fits_int32(*terms: int) -> bool:
    return sum(abs(t) for t in terms) < 1 << 31


# dssdn_add_flat tabulates input a's term (256 values, ~7 emulated instructions each) when the op has at least
# this many elements (it saves ~5 per element).
ADD_TABLE_MIN = 512


def _add_flat(a, b, out, o4: tuple[int, ...], lo: int, hi: int) -> tuple[dict[str, object], bool] | None:
    """dssdn_add_flat's folded constants (see dssdn_kernels.h), or None when the op needs the general
    kernel: a broadcast, a clamp, or an intermediate that could leave int32. Returns (fields, swapped):
    the input at multiplier 1/2 becomes the kernel's b."""
    if (lo, hi) != (-128, 127):
        return None
    p = quant.add_params(a.scale, b.scale, out.scale)
    half = (1 << 30, 0)
    if (p["m2"], p["s2"]) == half:
        swapped, (m1, s1, za, zb) = False, (p["m1"], p["s1"], a.zero_point, b.zero_point)
    elif (p["m1"], p["s1"]) == half:
        swapped, (m1, s1, za, zb) = True, (p["m2"], p["s2"], b.zero_point, a.zero_point)
    else:
        return None
    if p["left_shift"] != 20 or s1 > 0 or p["so"] > 0:
        return None
    r1, ro = -s1, -p["so"]
    a_rnd = (1 << r1) - zb * (1 << (20 + r1))
    out_rnd = (1 << ro) + out.zero_point * (1 << (ro + 1))
    # |2h| <= 2 * (255 * 2^20 + 1) (m1 < 2^31); |2g| <= 2 * (|sum| + 1), |sum| < 2^29 (_check_requant);
    # the sign term adds at most 1
    if not (_fits_int32((255 << 21) + 2, a_rnd, 1) and _fits_int32((1 << 30) + 2, out_rnd, 1)):
        return None
    fields = {"n": int(np.prod(o4)), "a_off": -za << 21, "a_mult": m1, "a_rnd": a_rnd, "out_mult": p["mo"],
              "out_rnd": out_rnd, "a_right": r1 + 1, "out_right": ro + 1,
              "table": int(int(np.prod(o4)) >= ADD_TABLE_MIN)}
    return fields, swapped


def _mul_channels(b_str: list[int], o4: tuple[int, ...], m: int, s: int, za: int, zb: int, zo: int
                  ) -> dict[str, object] | None:
    """dssdn_mul_channels' constants when input b is a per-channel vector over a contiguous a (the
    squeeze-excitation MUL), else None."""
    if b_str[3] != 1 or any(b_str[ax] and o4[ax] != 1 for ax in range(3)):
        return None
    right = max(-s, 0)
    out_rnd = (1 << right) + zo * (1 << (right + 1))
    if not _fits_int32((1 << 30) + 2, out_rnd, 1) or right > 30:
        return None
    return {"pixels": int(np.prod(o4[:3])), "channels": o4[3], "out_mult": m, "out_rnd": out_rnd,
            "a_zp": za, "b_zp": zb, "b_left": max(s, 0) + 1, "out_right": right + 1}


def lower_binary(graph: Graph, plan: Plan, op: Op, prefix: str) -> Lowered:
    a, b, out = graph.t(op.inputs[0]), graph.t(op.inputs[1]), graph.t(op.outputs[0])
    for t in (a, b):
        if t.data is not None:
            raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) with a constant input is not "
                              "supported by the MCU code generator")
    o4 = shape4(out.shape)
    lo, hi = _act(graph, op)
    a_str, b_str = _broadcast_strides(a.shape, o4), _broadcast_strides(b.shape, o4)
    addr_a, addr_b, addr_o = (plan.addr(t) for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    fields: dict[str, object] = {
        "dims": list(o4), "a_str": a_str, "b_str": b_str,
        "a_zp": a.zero_point, "b_zp": b.zero_point, "out_zp": out.zero_point, "act_min": lo, "act_max": hi,
    }
    if op.kind == "ADD":
        p = quant.add_params(a.scale, b.scale, out.scale)
        fields.update(left_shift=p["left_shift"], a_mult=p["m1"], a_shift=p["s1"], b_mult=p["m2"],
                      b_shift=p["s2"], out_mult=p["mo"], out_shift=p["so"])
        scaled = 255 << p["left_shift"]  # |x - zp| <= 255, then the common left shift
        _check_requant(graph, op, scaled, [p["s1"], p["s2"]])
        # each rescaled input is at most |x| * 2^max(s, 0) + 1 (the multiplier is below 1, then rounding)
        _check_requant(graph, op, sum((scaled << max(s, 0)) + 1 for s in (p["s1"], p["s2"])), [p["so"]])
        fast = _add_flat(a, b, out, o4, lo, hi) if _flat(a_str, o4) and _flat(b_str, o4) else None
        if fast is not None:
            if fast[1]:
                addr_a, addr_b = addr_b, addr_a
            return Lowered("dssdn_add_flat_t", fast[0], [],
                           f"dssdn_add_flat(&{prefix}, A + {addr_a}, A + {addr_b}, A + {addr_o});")
        fn = "dssdn_add"
    else:
        m, s = quant.quantize_multiplier(float(a.scale) * float(b.scale) / float(out.scale))
        fields.update(left_shift=0, a_mult=0, a_shift=0, b_mult=0, b_shift=0, out_mult=m, out_shift=s)
        _check_requant(graph, op, 256 * 256, [s])
        fast = None
        if (lo, hi) == (-128, 127):
            if _flat(a_str, o4):
                fast = _mul_channels(b_str, o4, m, s, a.zero_point, b.zero_point, out.zero_point)
            elif _flat(b_str, o4):  # the product is symmetric
                fast = _mul_channels(a_str, o4, m, s, b.zero_point, a.zero_point, out.zero_point)
                addr_a, addr_b = addr_b, addr_a
        if fast is not None:
            fast["work"] = f"A + {work_area(plan, op.index, 8 * int(fast['channels']))}"
            return Lowered("dssdn_mul_chan_t", fast, [],
                           f"dssdn_mul_channels(&{prefix}, A + {addr_a}, A + {addr_b}, A + {addr_o});")
        fn = "dssdn_mul"
    call = f"{fn}(&{prefix}, A + {addr_a}, A + {addr_b}, A + {addr_o});"
    return Lowered("dssdn_binary_t", fields, [], call)


def lower_mean(graph: Graph, plan: Plan, op: Op, prefix: str) -> Lowered:
    t_in, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    axes = sorted({(int(a) + len(t_in.shape)) % len(t_in.shape)
                   for a in np.asarray(graph.t(op.inputs[1]).data).reshape(-1)})
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise ExportError(f"{graph.label}: op MEAN (op #{op.index}) over non-adjacent axes {axes} is not "
                          "supported by the MCU code generator")
    dims = list(t_in.shape)
    outer = int(np.prod(dims[: axes[0]], dtype=np.int64))
    reduced = int(np.prod(dims[axes[0]: axes[-1] + 1], dtype=np.int64))
    inner = int(np.prod(dims[axes[-1] + 1:], dtype=np.int64))
    m, s = quant.mean_params(t_in.scale, out.scale, reduced)
    _check_requant(graph, op, 256 * reduced, [s])
    fields = {"outer": outer, "reduced": reduced, "inner": inner, "in_zp": t_in.zero_point,
              "out_zp": out.zero_point, "mult": m, "shift": s}
    return Lowered("dssdn_mean_t", fields, [],
                   f"dssdn_mean(&{prefix}, A + {plan.addr(op.inputs[0])}, A + {plan.addr(op.outputs[0])});")


def lower_pool(graph: Graph, plan: Plan, op: Op, prefix: str) -> Lowered:
    geo = window_geometry(graph, op)
    if not _same_quant_ids(graph, op.inputs[0], op.outputs[0]):
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) changes quantisation; not supported")
    lo, hi = _act(graph, op)
    fields = {"in_h": geo["in_h"], "in_w": geo["in_w"], "c": geo["in_c"], "out_h": geo["out_h"],
              "out_w": geo["out_w"], "k_h": geo["k_h"], "k_w": geo["k_w"], "stride_h": geo["stride_h"],
              "stride_w": geo["stride_w"], "pad_t": geo["pad_t"], "pad_l": geo["pad_l"], "act_min": lo,
              "act_max": hi, "is_max": int(op.kind == "MAX_POOL_2D")}
    return Lowered("dssdn_pool_t", fields, [],
                   f"dssdn_pool(&{prefix}, A + {plan.addr(op.inputs[0])}, A + {plan.addr(op.outputs[0])});")


def _same_quant_ids(graph: Graph, a: int, b: int) -> bool:
    return graph.t(a).scales == graph.t(b).scales and graph.t(a).zero_point == graph.t(b).zero_point


def lower_logistic(graph: Graph, plan: Plan, op: Op, prefix: str) -> Lowered:
    t_in, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    if out.zero_point != -128 or abs(out.scale - 1.0 / 256) > 1e-9:
        raise ExportError(f"{graph.label}: op LOGISTIC (op #{op.index}) output must have scale 1/256 and "
                          "zero point -128 (as TFLite Micro requires)")
    _, shift, radius = quant.logistic_params(t_in.scale)
    if radius > 0 and not -31 <= shift <= 31:  # (radius <= 0: every input saturates, no rescale)
        raise ExportError(f"{graph.label}: op LOGISTIC (op #{op.index}): input scale {t_in.scale} is out of range")
    table = np.asarray(quant.logistic_table(t_in.scale, t_in.zero_point), np.int64) + 128  # 0..255
    steps = np.diff(table) % 256
    width = next(w for w in (1, 2, 4, 8) if int(steps.max()) < 1 << w)
    words = pack.pack_fields((int(v), width) for v in steps)
    fields = {"steps": f"{prefix}_s", "first": int(table[0]), "width": width}
    return Lowered("dssdn_logistic_lut_t", fields, [Array(f"{prefix}_s", "uint32_t", words)],
                   f"dssdn_logistic_lut(&{prefix}, A + {plan.addr(op.inputs[0])}, A + {plan.addr(op.outputs[0])}, "
                   f"{out.size});")


def _copy_call(prefix: str, size: list[int], src_str: list[int], dst_str: list[int], src: str, dst: str
               ) -> tuple[dict[str, object], str]:
    return ({"size": list(size), "src_str": list(src_str), "dst_str": list(dst_str)},
            f"dssdn_copy(&{prefix}, {src}, {dst});")


def lower_copy(graph: Graph, plan: Plan, op: Op, prefix: str) -> list[Lowered]:
    """SLICE, PAD, RESHAPE and the copied inputs of CONCATENATION, when no view could be made."""
    out = op.outputs[0]
    o4 = shape4(graph.t(out).shape)
    dst_nat = list(natural_strides(o4))
    dst = plan.addr(out)
    if op.kind in ("SLICE", "PAD", "RESHAPE") and not _same_quant_ids(graph, op.inputs[0], out):
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) changes quantisation; not supported")
    if op.kind == "SLICE":
        begin, size = slice_bounds(graph, op)
        p = plan.places[op.inputs[0]]
        src = plan.addr(op.inputs[0]) + sum(b * s for b, s in zip(begin, p.strides, strict=True))
        f, c = _copy_call(prefix, size, list(p.strides), dst_nat, f"A + {src}", f"A + {dst}")
        return [Lowered("dssdn_copy_t", f, [], c)]
    if op.kind == "RESHAPE":
        p = plan.places[op.inputs[0]]
        f, c = _copy_call(prefix, list(p.shape), list(p.strides), list(natural_strides(p.shape)),
                          f"A + {plan.addr(op.inputs[0])}", f"A + {dst}")
        return [Lowered("dssdn_copy_t", f, [], c)]
    if op.kind == "PAD":
        from .plan import pad_amounts

        pads = pad_amounts(graph, op)
        p = plan.places[op.inputs[0]]
        inner = dst + sum(before * s for (before, _), s in zip(pads, dst_nat, strict=True))
        fill = Lowered(None, {}, [], f"dssdn_fill(A + {dst}, {graph.t(out).zero_point}, {graph.t(out).size});")
        f, c = _copy_call(prefix, list(p.shape), list(p.strides), dst_nat, f"A + {plan.addr(op.inputs[0])}",
                          f"A + {inner}")
        return [fill, Lowered("dssdn_copy_t", f, [], c)]
    # CONCATENATION: the inputs the planner could not place in their slot
    axis = int(op.options.get("axis", 0))
    ndim = len(graph.t(out).shape)
    axis4 = (axis + ndim if axis < 0 else axis) + 4 - ndim
    if _opt(op, "fusedActivationFunction"):
        raise ExportError(f"{graph.label}: op CONCATENATION (op #{op.index}) with a fused activation is not "
                          "supported by the MCU code generator")
    lowered, offset = [], 0
    for j, t in enumerate(op.inputs):
        if not _same_quant_ids(graph, t, out):
            raise ExportError(f"{graph.label}: op CONCATENATION (op #{op.index}) inputs and output differ in "
                              "quantisation; not supported by the MCU code generator")
        p = plan.places[t]
        if j in plan.concat_copy.get(op.index, []):
            f, c = _copy_call(f"{prefix}_{j}", list(p.shape), list(p.strides), dst_nat, f"A + {plan.addr(t)}",
                              f"A + {dst + offset * dst_nat[axis4]}")
            lowered.append(Lowered("dssdn_copy_t", f, [], c, name=f"{prefix}_{j}"))
        offset += p.shape[axis4]
    return lowered


LOWER = {
    "CONV_2D": lower_conv, "DEPTHWISE_CONV_2D": lower_conv, "FULLY_CONNECTED": lower_fc,
    "ADD": lower_binary, "MUL": lower_binary, "MEAN": lower_mean, "LOGISTIC": lower_logistic,
    "AVERAGE_POOL_2D": lower_pool, "MAX_POOL_2D": lower_pool,
}
