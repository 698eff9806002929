"""Per-op bit-exactness: many random single-op int8 graphs, generated C (host build) vs TFLite Micro.

Every op kind the generator supports is drawn with random shapes, strides, dilations, padding, per-channel
and per-tensor scales, zero points and fused activations. All models go into one shared library (one
compiler call), and each is run on random int8 inputs by both; outputs must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from mcu_graphs import Case, GraphBuilder, make_case, options, run_cases

from dssdn_edge.errors import ExportError
from dssdn_edge.mcu import generate_model_c
from dssdn_edge.mcu.quant import multiply_by_quantized_multiplier, quantize_multiplier

ACTS = (0, 1, 2, 3)  # NONE, RELU, RELU_N1_TO_1, RELU6


def _scale(rng: np.random.Generator, lo: float = 0.005, hi: float = 0.2) -> float:
    return float(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def _out_scale(rng: np.random.Generator, in_scale: float, w_scale: float, taps: int) -> float:
    spread = 74.0 * 74.0 * np.sqrt(max(taps, 1)) * in_scale * w_scale
    return float(np.float32(3 * spread / 127 * rng.uniform(0.4, 2.0)))


def _weights(rng, shape, per_channel: bool, axis: int):
    channels = shape[axis]
    scales = [_scale(rng, 0.002, 0.05) for _ in range(channels if per_channel else 1)]
    return rng.integers(-127, 128, size=shape).astype(np.int8), scales


def conv_case(rng: np.random.Generator, i: int, depthwise: bool) -> Case:
    g = GraphBuilder()
    h, w = int(rng.integers(1, 11)), int(rng.integers(1, 11))
    cin = int(rng.integers(1, 7))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dh, dw = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if sh == 1 and sw == 1 else (1, 1)
    padding = int(rng.integers(0, 2))
    if padding == 1:  # VALID needs the window to fit
        h, w = max(h, (kh - 1) * dh + 1), max(w, (kw - 1) * dw + 1)
    s_in, zp_in = _scale(rng), int(rng.integers(-128, 128))
    per_channel = bool(rng.integers(0, 2))
    if depthwise:
        mult = int(rng.integers(1, 4))
        cout = cin * mult
        wv, ws = _weights(rng, (1, kh, kw, cout), per_channel, 3)
        taps = kh * kw
    else:
        groups = int(rng.choice([1, 1, 1, 2])) if cin % 2 == 0 else 1
        cout = int(rng.integers(1, 7)) * groups
        wv, ws = _weights(rng, (cout, kh, kw, cin // groups), per_channel, 0)
        taps = kh * kw * cin // groups
    x = g.input([1, h, w, cin], s_in, zp_in)
    wt = g.const(wv, ws, [0] * len(ws), 3 if depthwise else 0)
    inputs = [x, wt]
    if rng.random() < 0.85:
        bs = [s_in * s for s in (ws if per_channel else ws * cout)]
        inputs.append(g.const(rng.integers(-3000, 3000, cout).astype(np.int32), bs, [0] * cout))
    oh = (h + sh - 1) // sh if padding == 0 else (h - (kh - 1) * dh - 1 + sh) // sh
    ow = (w + sw - 1) // sw if padding == 0 else (w - (kw - 1) * dw - 1 + sw) // sw
    s_out = _out_scale(rng, s_in, float(np.mean(ws)), taps)
    y = g.act([1, oh, ow, cout], s_out, int(rng.integers(-128, 128)))
    act = int(rng.choice(ACTS))
    common = dict(padding=padding, strideH=sh, strideW=sw, dilationHFactor=dh, dilationWFactor=dw,
                  fusedActivationFunction=act)
    if depthwise:
        g.op("DEPTHWISE_CONV_2D", inputs, [y], options("DepthwiseConv2DOptions", depthMultiplier=mult, **common))
    else:
        g.op("CONV_2D", inputs, [y], options("Conv2DOptions", **common))
    kind = "dw" if depthwise else "conv"
    return make_case(f"{kind}{i}", g.build([y]), [[1, h, w, cin]], rng)


def fc_case(rng: np.random.Generator, i: int) -> Case:
    g = GraphBuilder()
    batches, depth, units = int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 20))
    s_in, zp_in = _scale(rng), int(rng.integers(-30, 30))  # a far zero point would clamp most outputs
    per_channel = rng.random() < 0.3
    wv, ws = _weights(rng, (units, depth), per_channel, 0)
    x = g.input([batches, depth], s_in, zp_in)
    inputs = [x, g.const(wv, ws, [0] * len(ws), 0)]
    if rng.random() < 0.8:
        bs = [s_in * s for s in (ws if per_channel else ws * units)]
        inputs.append(g.const(rng.integers(-300, 300, units).astype(np.int32), bs if per_channel else bs[:1]))
    y = g.act([batches, units], _out_scale(rng, s_in, float(np.mean(ws)), depth), int(rng.integers(-128, 128)))
    g.op("FULLY_CONNECTED", inputs, [y], options("FullyConnectedOptions", fusedActivationFunction=int(
        rng.choice((0, 0, 1))), keepNumDims=False))
    return make_case(f"fc{i}", g.build([y]), [[batches, depth]], rng)


def binary_case(rng: np.random.Generator, i: int, kind: str, fast: bool = False) -> Case:
    """With ``fast``: no activation and the residual (ADD) or squeeze-excitation (MUL) shapes, which the
    generator gives its folded kernels (dssdn_add_flat, dssdn_mul_channels); else any of the forms."""
    g = GraphBuilder()
    shape = [1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6))]
    if fast and i % 3 == 0:  # big enough for dssdn_add_flat's table (ops.ADD_TABLE_MIN elements)
        shape = [1, int(rng.integers(11, 15)), int(rng.integers(11, 15)), int(rng.integers(5, 9))]
    mode = (0 if kind == "ADD" else 1 + 2 * int(rng.integers(0, 2))) if fast else rng.integers(0, 3)
    b_shape = list(shape)
    if mode == 1:
        b_shape = [1, shape[3]]  # the squeeze-excitation form: [1,H,W,C] * [1,C]
    elif mode == 2:
        b_shape = [1, 1, shape[2], 1]
    elif mode == 3:
        b_shape, shape = [1, 1, 1, shape[3]], [1, 1, shape[2], shape[3]]  # [1,1,W,C] * [1,1,1,C]
    sa, sb = _scale(rng, 0.01, 0.3), _scale(rng, 0.01, 0.3)
    za, zb = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    a = g.input(shape, sa, za)
    b = g.input(b_shape, sb, zb)
    if kind == "ADD":
        s_out = float(np.float32((sa + sb) * rng.uniform(0.6, 1.5)))
        mean = -0.5 * (sa + sb) - sa * za - sb * zb
        opt = options("AddOptions", fusedActivationFunction=0 if fast else int(rng.choice(ACTS)))
    else:
        s_out = float(np.float32(sa * sb * 150 * rng.uniform(0.5, 1.5)))
        mean = sa * sb * za * zb
        opt = options("MulOptions", fusedActivationFunction=0 if fast else int(rng.choice((0, 0, 1, 3))))
    zp_out = int(np.clip(-round(mean / s_out) + rng.integers(-20, 20), -128, 127))  # centred, not clamped
    y = g.act(shape, s_out, zp_out)
    inputs = [b, a] if fast and i % 2 else [a, b]  # either operand order (graph inputs stay a, b)
    g.op(kind, inputs, [y], opt)
    return make_case(f"{kind.lower()}{'fast' if fast else ''}{i}", g.build([y]), [shape, b_shape], rng, samples=3)


def mean_case(rng: np.random.Generator, i: int, shape: list[int] | None = None) -> Case:
    """With ``shape``: the mean over H and W (more than 256 rows: dssdn_mean's int16 lanes are widened
    part way)."""
    g = GraphBuilder()
    axes = [1, 2] if shape else [[1, 2], [1, 2], [2], [1], [3], [2, 3]][int(rng.integers(0, 6))]
    shape = shape or [1, int(rng.integers(1, 14)), int(rng.integers(1, 14)), int(rng.integers(1, 9))]
    keep = bool(rng.integers(0, 2))
    s_in, zp_in = _scale(rng), int(rng.integers(-128, 128))
    same = rng.random() < 0.25
    s_out = s_in if same else _scale(rng)
    zp_out = zp_in if same else int(rng.integers(-128, 128))
    out_shape = [1 if a in axes else d for a, d in enumerate(shape)] if keep else \
        [d for a, d in enumerate(shape) if a not in axes]
    x = g.input(shape, s_in, zp_in)
    ax = g.const(np.asarray(axes, np.int32))
    y = g.act(out_shape, s_out, zp_out)
    g.op("MEAN", [x, ax], [y], options("ReducerOptions", keepDims=keep))
    return make_case(f"mean{i}", g.build([y]), [shape], rng, samples=3)


def logistic_case(rng: np.random.Generator, i: int) -> Case:
    g = GraphBuilder()
    s_in = _scale(rng, 0.002, 0.5) if i else 0.0625
    x = g.input([1, 256], s_in, int(rng.integers(-128, 128)) if i else 0)
    y = g.act([1, 256], 1.0 / 256, -128)
    g.op("LOGISTIC", [x], [y])
    return make_case(f"logistic{i}", g.build([y]), [[1, 256]], rng, samples=1,
                     values=np.arange(-128, 128, dtype=np.int8))


def pool_case(rng: np.random.Generator, i: int, kind: str) -> Case:
    g = GraphBuilder()
    h, w, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 5))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    padding = int(rng.integers(0, 2))
    h, w = max(h, kh), max(w, kw)
    oh = (h + sh - 1) // sh if padding == 0 else (h - kh + sh) // sh
    ow = (w + sw - 1) // sw if padding == 0 else (w - kw + sw) // sw
    s, zp = _scale(rng), int(rng.integers(-128, 128))
    x = g.input([1, h, w, c], s, zp)
    y = g.act([1, oh, ow, c], s, zp)
    g.op(kind, [x], [y], options("Pool2DOptions", padding=padding, strideH=sh, strideW=sw, filterHeight=kh,
                                  filterWidth=kw, fusedActivationFunction=int(rng.choice((0, 1, 3)))))
    return make_case(f"{kind.lower()}{i}", g.build([y]), [[1, h, w, c]], rng)


def slice_case(rng: np.random.Generator, i: int) -> Case:
    g = GraphBuilder()
    shape = [1, int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 5))]
    begin = [0] + [int(rng.integers(0, d)) for d in shape[1:]]
    size = [1] + [int(rng.integers(1, d - b + 1)) for d, b in zip(shape[1:], begin[1:], strict=True)]
    s, zp = _scale(rng), int(rng.integers(-128, 128))
    x = g.input(shape, s, zp)
    y = g.act(size, s, zp)
    g.op("SLICE", [x, g.const(np.asarray(begin, np.int32)), g.const(np.asarray(size, np.int32))], [y])
    if rng.random() < 0.5:  # a conv reads the slice: the generator makes it a strided view
        wv = rng.integers(-127, 128, (3, 1, 2, size[3])).astype(np.int8)
        z = g.act([1, size[1], size[2], 3], _out_scale(rng, s, 0.01, 2 * size[3]), 5)
        g.op("CONV_2D", [y, g.const(wv, [0.01], [0])], [z], options(
            "Conv2DOptions", padding=0, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1))
        y = z
    return make_case(f"slice{i}", g.build([y]), [shape], rng)


def concat_case(rng: np.random.Generator, i: int) -> Case:
    g = GraphBuilder()
    rank = int(rng.integers(2, 5))
    base = [1] + [int(rng.integers(1, 5)) for _ in range(rank - 1)]
    axis = int(rng.integers(1, rank))
    s, zp = _scale(rng), int(rng.integers(-128, 128))
    shapes, parts, in_shapes = [], [], []
    produced = rng.random() < 0.5  # inputs written by an op: the generator places them in their slot
    x0 = g.input([1, 8], s, zp) if produced else None
    if produced:
        in_shapes.append([1, 8])
    for _ in range(int(rng.integers(2, 5))):
        sh = list(base)
        sh[axis] = int(rng.integers(1, 4))
        shapes.append(sh)
        if produced:
            t = g.act(sh, s, zp)
            units = int(np.prod(sh))
            fc = g.act([1, units], s, zp)
            g.op("FULLY_CONNECTED", [x0, g.const(rng.integers(-127, 128, (units, 8)).astype(np.int8), [0.01])],
                 [fc], options("FullyConnectedOptions"))
            g.op("RESHAPE", [fc, g.const(np.asarray(sh, np.int32))], [t], options("ReshapeOptions", newShape=sh))
            parts.append(t)
        else:
            parts.append(g.input(sh, s, zp))
            in_shapes.append(sh)
    out = list(base)
    out[axis] = sum(sh[axis] for sh in shapes)
    y = g.act(out, s, zp)
    g.op("CONCATENATION", parts, [y], options("ConcatenationOptions", axis=axis - rank if rng.random() < 0.3
                                                else axis))
    return make_case(f"concat{i}", g.build([y]), in_shapes, rng)


def pad_case(rng: np.random.Generator, i: int) -> Case:
    g = GraphBuilder()
    h, w, c = int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 4))
    pads = [[0, 0], [int(rng.integers(0, 3)), int(rng.integers(0, 3))], [int(rng.integers(0, 3)),
                                                                        int(rng.integers(0, 3))], [0, 0]]
    s, zp = _scale(rng), int(rng.integers(-128, 128))
    x = g.input([1, h, w, c], s, zp)
    ph, pw = h + sum(pads[1]), w + sum(pads[2])
    y = g.act([1, ph, pw, c], s, zp)
    g.op("PAD", [x, g.const(np.asarray(pads, np.int32))], [y])
    if rng.random() < 0.6 and ph >= 2 and pw >= 2:  # PAD → VALID conv: folded into the conv's padding
        stride = int(rng.integers(1, 3))
        wv = rng.integers(-127, 128, (2, 2, 2, c)).astype(np.int8)
        oh, ow = (ph - 2) // stride + 1, (pw - 2) // stride + 1
        z = g.act([1, oh, ow, 2], _out_scale(rng, s, 0.01, 4 * c), -3)
        g.op("CONV_2D", [y, g.const(wv, [0.01, 0.02], [0, 0])], [z], options(
            "Conv2DOptions", padding=1, strideH=stride, strideW=stride, dilationHFactor=1, dilationWFactor=1))
        y = z
    return make_case(f"pad{i}", g.build([y]), [[1, h, w, c]], rng)


def chain_case(rng: np.random.Generator, i: int) -> Case:
    """conv → depthwise → 1×1 conv → ADD with the first output: exercises the planner's overlaps."""
    g = GraphBuilder()
    h, w, c = int(rng.integers(4, 12)), int(rng.integers(4, 12)), int(rng.integers(2, 6))
    s = _scale(rng)
    x = g.input([1, h, w, 2], s, 0)
    a = g.act([1, h, w, c], _out_scale(rng, s, 0.02, 18), 0)
    g.op("CONV_2D", [x, g.const(rng.integers(-127, 128, (c, 3, 3, 2)).astype(np.int8), [0.02])], [a],
         options("Conv2DOptions", padding=0, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1))
    b = g.act([1, h, w, c], _out_scale(rng, 0.05, 0.02, 9), 3)
    g.op("DEPTHWISE_CONV_2D", [a, g.const(rng.integers(-127, 128, (1, 3, 3, c)).astype(np.int8), [0.02])], [b],
         options("DepthwiseConv2DOptions", padding=0, strideH=1, strideW=1, dilationHFactor=2,
                 dilationWFactor=2, depthMultiplier=1))
    d = g.act([1, h, w, c], _out_scale(rng, 0.05, 0.02, c), -7)
    g.op("CONV_2D", [b, g.const(rng.integers(-127, 128, (c, 1, 1, c)).astype(np.int8), [0.02])], [d],
         options("Conv2DOptions", padding=1, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1,
                 fusedActivationFunction=1))
    y = g.act([1, h, w, c], 0.1, 0)
    g.op("ADD", [a, d], [y], options("AddOptions"))
    return make_case(f"chain{i}", g.build([y]), [[1, h, w, 2]], rng)


def all_cases() -> list[Case]:
    rng = np.random.default_rng(20261204)
    cases: list[Case] = []
    cases += [conv_case(rng, i, False) for i in range(40)]
    cases += [conv_case(rng, i, True) for i in range(40)]
    cases += [fc_case(rng, i) for i in range(20)]
    cases += [binary_case(rng, i, "ADD") for i in range(20)]
    cases += [binary_case(rng, i, "MUL") for i in range(20)]
    cases += [binary_case(rng, i, kind, fast=True) for kind in ("ADD", "MUL") for i in range(10)]
    cases += [mean_case(rng, i) for i in range(20)]
    cases += [mean_case(rng, 20, [1, 20, 15, 6]), mean_case(rng, 21, [1, 17, 16, 8])]
    cases += [logistic_case(rng, i) for i in range(30)]
    cases += [pool_case(rng, i, "AVERAGE_POOL_2D") for i in range(10)]
    cases += [pool_case(rng, i, "MAX_POOL_2D") for i in range(10)]
    cases += [slice_case(rng, i) for i in range(15)]
    cases += [concat_case(rng, i) for i in range(15)]
    cases += [pad_case(rng, i) for i in range(10)]
    cases += [chain_case(rng, i) for i in range(8)]
    return cases


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_cases(all_cases(), tmp_path_factory.mktemp("mcu_ops"))


KINDS = ("conv", "dw", "fc", "add", "mul", "addfast", "mulfast", "mean", "logistic", "average_pool_2d",
         "max_pool_2d", "slice", "concat", "pad", "chain")


@pytest.mark.parametrize("kind", KINDS)
def test_generated_c_matches_tflm(results, kind):
    names = [n for n in results if n.rstrip("0123456789") == kind]
    assert names, kind
    bad = []
    for n in names:
        mine, theirs = results[n]
        assert mine.shape == theirs.shape, n
        if not np.array_equal(mine, theirs):
            bad.append(f"{n}: {int((mine != theirs).sum())} of {mine.size} differ, "
                       f"max {int(np.abs(mine.astype(int) - theirs).max())} LSB")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_are_not_trivial(results, kind):
    """The random quantisation must leave most outputs spread out (not all clamped), or equality would
    prove little. A few cases may clamp (e.g. RELU_N1_TO_1 keeps only a few values)."""
    spread = [len(np.unique(mine)) > 4 for n, (mine, _) in results.items()
              if n.rstrip("0123456789") == kind and mine.size >= 16]
    assert spread and np.mean(spread) >= 0.75, (kind, spread)


def test_wheel_uses_double_rounding(tmp_path):
    """TFLite's requantisation rounds twice by default and once with TFLITE_SINGLE_ROUNDING; they differ on
    ties. A 1×1 conv whose multiplier is 0.5 · 2^-k lands on such ties: the wheel matches double rounding."""
    m, s = quantize_multiplier(0.75 / 2**3)
    xs = np.arange(-300, 300)
    double = [multiply_by_quantized_multiplier(int(x), m, s) for x in xs]
    single = [multiply_by_quantized_multiplier(int(x), m, s, single_rounding=True) for x in xs]
    assert double != single  # the two modes really differ on this multiplier
    g = GraphBuilder()
    x = g.input([1, 1, 1, 256], 1.0, 0)
    y = g.act([1, 1, 1, 256], 8.0 / 0.75 * 1.0, 0)  # s_in·s_w/s_out = 0.75/8 with s_w = 1
    g.op("DEPTHWISE_CONV_2D", [x, g.const(np.full((1, 1, 1, 256), 1, np.int8), [1.0], [0], 3),
                               g.const(np.arange(-300, 212, 2, dtype=np.int32), [1.0], [0])], [y],
         options("DepthwiseConv2DOptions", padding=1, strideH=1, strideW=1, dilationHFactor=1,
                 dilationWFactor=1, depthMultiplier=1))
    case = make_case("ties", g.build([y]), [[1, 1, 1, 256]], np.random.default_rng(0), samples=1,
                     values=np.zeros(256, np.int8))
    results_double = run_cases([case], tmp_path / "double")["ties"]
    results_single = run_cases([case], tmp_path / "single", defines=["DSSDN_SINGLE_ROUNDING"])["ties"]
    assert np.array_equal(results_double[0], results_double[1])
    assert not np.array_equal(results_single[0], results_single[1])


def test_mean_takes_the_fixed_point_path_with_equal_quantisation(tmp_path):
    """Older TFLM divided the int sum by n (truncating) when input and output quantisation are equal; the
    pinned wheel folds 1/n into the multiplier and rounds. Means of 2/3 and -2/3 tell the two apart."""
    g = GraphBuilder()
    x = g.input([1, 3, 1, 2], 0.1, 0)
    y = g.act([1, 2], 0.1, 0)
    g.op("MEAN", [x, g.const(np.asarray([1, 2], np.int32))], [y], options("ReducerOptions", keepDims=False))
    values = np.asarray([1, -1, 1, -1, 0, 0], np.int8)
    case = make_case("mean_eq", g.build([y]), [[1, 3, 1, 2]], np.random.default_rng(0), samples=1, values=values)
    mine, theirs = run_cases([case], tmp_path)["mean_eq"]
    assert theirs.tolist() == [[1, -1]]  # rounded, not truncated to [0, 0]
    assert np.array_equal(mine, theirs)


def test_binary_kernels_take_both_paths(tmp_path):
    """The random cases reach both the folded kernels and the general one: an ADD or MUL is folded only
    when flat (MUL: per-channel b), unclamped and inside int32, so both kinds of case are really tested."""
    used: dict[str, set[str]] = {"ADD": set(), "MUL": set()}
    rng = np.random.default_rng(7)
    for kind in used:
        for i in range(12):
            case = binary_case(rng, i, kind, fast=bool(i % 2))
            generate_model_c(case.model, tmp_path / f"{kind}{i}", "m", kernels=False)
            src = (tmp_path / f"{kind}{i}" / "dssdn_model.c").read_text()
            used[kind] |= {fn for fn in ("dssdn_add_flat(", "dssdn_add(", "dssdn_mul_channels(", "dssdn_mul(",
                                         ".table = 0", ".table = 1") if fn in src}
    assert used == {"ADD": {"dssdn_add_flat(", "dssdn_add(", ".table = 0", ".table = 1"},
                    "MUL": {"dssdn_mul_channels(", "dssdn_mul("}}


def test_unsupported_op_is_named(tmp_path):
    g = GraphBuilder()
    x = g.input([1, 4], 0.1, 0)
    y = g.act([1, 4], 0.1, 0)
    g.op("ABS", [x], [y])
    with pytest.raises(ExportError, match=r"^bad.tflite: op ABS \(op #0\) is not supported by the MCU code "
                                          r"generator$"):
        generate_model_c(g.build([y]), tmp_path, "bad", label="bad.tflite")


def test_float_model_is_refused(tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    g = GraphBuilder()
    x = g._tensor([1, 4], schema.TensorType.FLOAT32, 0, None, None)
    g.inputs.append(x)
    y = g._tensor([1, 4], schema.TensorType.FLOAT32, 0, None, None)
    g.op("LOGISTIC", [x], [y])
    with pytest.raises(ExportError, match=r"^f.tflite: not a full-integer int8 model \(input is float32\)$"):
        generate_model_c(g.build([y]), tmp_path, "f", label="f.tflite")


def test_plan_uses_views_folds_slots_and_overlaps(tmp_path):
    """The cases above exercise these paths only if the planner really takes them: check it does, and that
    generating twice gives the same bytes (exports are reproducible)."""
    rng = np.random.default_rng(7)
    found: dict[str, bool] = {}
    for make, want in ((slice_case, "view"), (pad_case, "fold"), (concat_case, "concat")):
        for i in range(12):
            case = make(rng, i)
            plan = generate_model_c(case.model, tmp_path / "p", case.name, kernels=False).plan
            if any(op["action"] == want for op in plan["ops"]):
                found[want] = True
    chain = chain_case(rng, 0)
    first = generate_model_c(chain.model, tmp_path / "a", "chain")
    generate_model_c(chain.model, tmp_path / "b", "chain")
    found["overlap"] = any("shares_input_bytes" in op for op in first.plan["ops"])
    assert found == {"view": True, "fold": True, "concat": True, "overlap": True}
    assert first.arena_bytes < first.plan["whole_tensor_lower_bound_bytes"]
    assert (tmp_path / "a" / "dssdn_model.c").read_bytes() == (tmp_path / "b" / "dssdn_model.c").read_bytes()


def test_conv_summed_tap_by_tap_gives_the_same_bits(tmp_path):
    """With no stack patch (DSSDN_MAX_PATCH=1) every conv takes the tap-by-tap path: still TFLM's bits."""
    rng = np.random.default_rng(11)
    cases = [conv_case(rng, i, False) for i in range(12)]
    for name, (mine, theirs) in run_cases(cases, tmp_path, defines=["DSSDN_MAX_PATCH=1"]).items():
        assert np.array_equal(mine, theirs), name


def shaped_case(rng: np.random.Generator, name: str, in_shape: list[int], cout: int, k: tuple[int, int],
                stride: int = 1, dil: int = 1, padding: int = 0, depthwise: bool = False, act: int = 0,
                out_gain: float = 1.0, sparse: bool = False, single_tap: tuple[int, int] = (1, 1)) -> Case:
    """One conv with the dssdn models' shapes (random values): each of the kernels' fast paths at least once.
    ``sparse``: DSSDN's depthwise pattern (channels 0-3 a cross of five taps, the others the centre tap only),
    so groups of four channels skip taps and the corner taps are read by no channel; ``single_tap`` moves the
    others' one tap off the centre (outside the input at the borders)."""
    g = GraphBuilder()
    cin = in_shape[3]
    s_in, zp_in = _scale(rng), int(rng.integers(-128, 128))
    wshape = (1, k[0], k[1], cout) if depthwise else (cout, k[0], k[1], cin)
    wv, ws = _weights(rng, wshape, True, 3 if depthwise else 0)
    if sparse:
        keep = np.zeros(wshape, bool)
        keep[0, 1, 1, :4] = True  # the centre tap
        keep[0, single_tap[0], single_tap[1], 4:] = True  # the other channels' one tap
        keep[0, [0, 1, 1, 2], [1, 0, 2, 1], :4] = True  # the cross, first group only
        wv = np.where(keep, wv, 0).astype(np.int8)
    x = g.input(in_shape, s_in, zp_in)
    bias = g.const(rng.integers(-3000, 3000, cout).astype(np.int32), [s_in * s for s in ws], [0] * cout)
    inputs = [x, g.const(wv, ws, [0] * cout, 3 if depthwise else 0), bias]
    h, w = in_shape[1], in_shape[2]
    oh = (h + stride - 1) // stride if padding == 0 else (h - (k[0] - 1) * dil - 1 + stride) // stride
    ow = (w + stride - 1) // stride if padding == 0 else (w - (k[1] - 1) * dil - 1 + stride) // stride
    taps = k[0] * k[1] * (1 if depthwise else cin)
    s_out = _out_scale(rng, s_in, float(np.mean(ws)), taps) * out_gain
    y = g.act([1, oh, ow, cout], s_out, int(rng.integers(-20, 20)))
    common = dict(padding=padding, strideH=stride, strideW=stride, dilationHFactor=dil, dilationWFactor=dil,
                  fusedActivationFunction=act)
    if depthwise:
        g.op("DEPTHWISE_CONV_2D", inputs, [y], options("DepthwiseConv2DOptions", depthMultiplier=1, **common))
    else:
        g.op("CONV_2D", inputs, [y], options("Conv2DOptions", **common))
    return make_case(name, g.build([y]), [in_shape], rng)


def shaped_cases() -> list[Case]:
    """The model-shaped convs (see test_model_shaped_convs_match_tflm), the same values every time."""
    rng = np.random.default_rng(17)
    cases = [
        shaped_case(rng, "first", [1, 11, 16, 2], 16, (3, 2), stride=2),
        shaped_case(rng, "first_valid", [1, 9, 13, 2], 16, (3, 2), stride=2, padding=1),
        shaped_case(rng, "pw16to8", [1, 5, 7, 16], 8, (1, 1), padding=1),
        shaped_case(rng, "pw24to12", [1, 3, 5, 24], 12, (1, 1), padding=1, act=1),
        shaped_case(rng, "pw6to10", [1, 3, 3, 6], 10, (1, 1), padding=1),
        shaped_case(rng, "pw8to5", [1, 3, 5, 8], 5, (1, 1), padding=1),  # pixel pairs with an odd channel
        shaped_case(rng, "pw8to72", [1, 3, 4, 8], 72, (1, 1), padding=1),
        shaped_case(rng, "pw_gain", [1, 3, 4, 8], 8, (1, 1), padding=1, out_gain=1e-3),
        shaped_case(rng, "s2x1", [1, 6, 8, 8], 24, (2, 1), stride=2),
        shaped_case(rng, "dw16", [1, 9, 10, 16], 16, (3, 3), dil=2, depthwise=True),
        shaped_case(rng, "dw18", [1, 6, 7, 18], 18, (3, 3), dil=2, depthwise=True, act=3),
        shaped_case(rng, "dw_gain", [1, 4, 5, 8], 8, (3, 3), depthwise=True, out_gain=1e-3),
        shaped_case(rng, "dw_sparse", [1, 7, 9, 16], 16, (3, 3), dil=2, depthwise=True, sparse=True),
        shaped_case(rng, "dw_sparse_tail", [1, 5, 6, 10], 10, (3, 3), dil=2, depthwise=True, sparse=True),
        shaped_case(rng, "dw_sparse_corner", [1, 6, 7, 12], 12, (3, 3), dil=2, depthwise=True, sparse=True,
                    single_tap=(0, 2)),  # the single-tap groups' tap outside the input on two borders
        shaped_case(rng, "pw32to16", [1, 3, 5, 32], 16, (1, 1), padding=1),  # widened pairs, sum not unrolled
        shaped_case(rng, "pw48to24", [1, 2, 4, 48], 24, (1, 1), padding=1),  # too wide to widen: pixel by pixel
        shaped_case(rng, "s2x1_odd", [1, 6, 8, 12], 7, (2, 1), stride=2, act=1),  # gathered 24-byte pairs, odd
        shaped_case(rng, "pw24to10", [1, 3, 5, 24], 10, (1, 1), padding=1),  # 24-byte pairs, no clamp
        shaped_case(rng, "s2x1_24", [1, 6, 8, 12], 9, (2, 1), stride=2),  # gathered 24-byte pairs, odd, no clamp
        shaped_case(rng, "dw_far", [1, 1, 133, 4], 4, (1, 3), dil=65, padding=1, depthwise=True),  # generic: reach
    ]
    return cases


def test_model_shaped_convs_match_tflm(tmp_path):
    """The kernels' special paths: 2-channel first convs (patch rows copied as runs, top padding), 1x1 convs
    read in place (channel counts multiple of 4 and not, odd pixel counts), more output channels than the
    rounding table holds, a fused ReLU (the clamp besides SSAT), multipliers >= 1 (positive shifts: the
    general requantisation), dilated 3x3 depthwise with channel tails and with DSSDN's zero taps, pixel pairs
    widened with and without an unrolled sum (12/16/24-byte windows unrolled) and too wide to widen."""
    results = run_cases(shaped_cases(), tmp_path)
    for name, (mine, theirs) in results.items():
        assert np.array_equal(mine, theirs), name
    spread = [len(np.unique(mine)) > 4 for name, (mine, _) in results.items() if "gain" not in name]
    assert all(spread), spread


def test_convs_on_the_dsp_path_match_tflm(tmp_path):
    """The kernels' Arm DSP path (SMLAD, SMMLAR, the hand-scheduled pixel-pair sums) per op on qemu's
    Cortex-M4 board: the model-shaped convs and random convs and depthwise convs, against TFLM's bits."""
    import shutil
    import subprocess

    from dssdn_edge.device.cortex_m import MCU_SRC, TARGETS
    from dssdn_edge.mcu.generate import KERNEL_SOURCES

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    from dssdn_edge.export.tflm import open_tflm

    rng = np.random.default_rng(23)
    cases = shaped_cases() + [conv_case(rng, i, i % 2 == 1) for i in range(16)]
    c_dir = tmp_path / "c"
    rows, calls, theirs = [], [], []
    for i, case in enumerate(cases):
        generate_model_c(case.model, c_dir, case.name, None, symbol=f"m{i}", kernels=(i == 0), label=case.name)
        micro = open_tflm(case.model, case.name)
        for j, (x, sample) in enumerate(zip(case.inputs, case.tflm_inputs, strict=True)):
            micro.interpreter.set_input(np.ascontiguousarray(sample[0]), 0)
            micro.interpreter.invoke()
            theirs.append((case.name, np.array(micro.interpreter.get_output(0)).reshape(-1)))
            rows.append(f"static const int8_t g_in{i}_{j}[] = {{{','.join(map(str, x.reshape(-1)))}}};")
            calls.append(f"    if (run(m{i}_input(), g_in{i}_{j}, sizeof g_in{i}_{j}, m{i}_invoke, "
                         f"{theirs[-1][1].size}, fd)) {{\n        return 1;\n    }}")
    heads = "".join(f'#include "m{i}.h"\n' for i in range(len(cases)))
    (c_dir / "main.c").write_text(
        f'#include <stdint.h>\n{heads}#include "semihost.h"\n' + "\n".join(rows) + "\n"
        "static int run(int8_t *in, const int8_t *x, unsigned n, const int8_t *(*invoke)(void), unsigned n_out,\n"
        "               int fd)\n{\n"
        "    for (unsigned k = 0; k < n; ++k) {\n        in[k] = x[k];\n    }\n"
        "    return sh_write(fd, invoke(), n_out) != 0;\n}\n"
        "int main(void)\n{\n    int fd = sh_open(\"out.bin\", 6);\n    if (fd < 0) {\n        return 1;\n    }\n"
        + "\n".join(calls) + "\n    sh_close(fd);\n    return 0;\n}\n")
    t = TARGETS["cortex-m4"]
    srcs = [c_dir / "main.c", *(c_dir / f"m{i}.c" for i in range(len(cases))), *(c_dir / n for n in KERNEL_SOURCES)]
    srcs += [MCU_SRC / "startup.c", MCU_SRC / "semihost.c"]
    elf = tmp_path / "ops.elf"
    subprocess.run(["arm-none-eabi-gcc", *t.cflags, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{c_dir}",
                    f"-I{MCU_SRC}", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                    f"-T{MCU_SRC / 'mps2.ld'}", *map(str, srcs), "-o", str(elf)], check=True)
    disasm = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True).stdout
    assert "smmlar" in disasm and "smlad" in disasm  # the DSP path is what runs
    subprocess.run(["qemu-system-arm", "-M", t.qemu_machine, "-display", "none", "-monitor", "none", "-serial",
                    "none", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                   cwd=tmp_path, check=True, timeout=600)
    got = np.fromfile(tmp_path / "out.bin", np.int8)
    assert got.size == sum(t.size for _, t in theirs)
    bad, k = [], 0
    for name, t in theirs:
        if not np.array_equal(got[k: k + t.size], t):
            bad.append(name)
        k += t.size
    assert not bad, bad
