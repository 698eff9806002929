"""The generated model's constant storage: bit-packed channel constants, run-time LOGISTIC, shared arrays.

Each storage variant the generator can choose gets a graph that forces it (biases wider than 24 bits
or none at all, more than four distinct shifts in one op, a zero multiplier, per-tensor quantisation, two
ops with the same arrays) and is checked bit for bit against the TFLite Micro wheel, plus the packing's
round trip and the struct sizes the byte count assumes.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from mcu_graphs import GraphBuilder, make_case, options, run_cases

from dssdn_edge.mcu.codegen import STRUCT_BYTES
from dssdn_edge.mcu.generate import kernel_sources
from dssdn_edge.mcu.pack import pack_channels, unpack_channels

CONV = dict(padding=0, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1)


def _conv_graph(rng, w_scales, bias, in_zp=3, out_scale=0.5, depthwise=False, cout=6):
    """A 3x3 conv (or depthwise) on a 5x5x4 input with the given weight scales (one = per-tensor) and bias."""
    g = GraphBuilder()
    cin = cout if depthwise else 4
    x = g.input([1, 5, 5, cin], 0.05, in_zp)
    shape = (1, 3, 3, cout) if depthwise else (cout, 3, 3, cin)
    inputs = [x, g.const(rng.integers(-127, 128, shape).astype(np.int8), w_scales, [0] * len(w_scales),
                         3 if depthwise else 0)]
    if bias is not None:
        b_scales = [0.05 * s for s in (w_scales if len(w_scales) > 1 else w_scales * cout)]
        inputs.append(g.const(np.asarray(bias, np.int32), b_scales, [0] * cout))
    y = g.act([1, 5, 5, cout], out_scale, -5)
    if depthwise:
        g.op("DEPTHWISE_CONV_2D", inputs, [y], options("DepthwiseConv2DOptions", depthMultiplier=1, **CONV))
    else:
        g.op("CONV_2D", inputs, [y], options("Conv2DOptions", **CONV))
    return g.build([y]), [[1, 5, 5, cin]]


def _fc_graph(rng, w_scales, bias, units=9, depth=12, batches=2):
    g = GraphBuilder()
    x = g.input([batches, depth], 0.04, -2)
    inputs = [x, g.const(rng.integers(-127, 128, (units, depth)).astype(np.int8), w_scales, [0] * len(w_scales),
                         0)]
    if bias is not None:
        b_scales = [0.04 * s for s in w_scales]
        inputs.append(g.const(np.asarray(bias, np.int32), b_scales))
    y = g.act([batches, units], 0.3, 4)
    g.op("FULLY_CONNECTED", inputs, [y], options("FullyConnectedOptions", fusedActivationFunction=0,
                                                     keepNumDims=False))
    return g.build([y]), [[batches, depth]]


def _variants(rng):
    """{name: (model, input shapes, what the generated struct must say)}."""
    spread = [float(np.float32(0.02 * 2.0 ** -k)) for k in (0, 1, 3, 5, 6, 8)]  # six distinct shifts
    wide = [2**27 - 7, -(2**27), 12, -3, 2**26, 5]  # 29 bits (int24 would not do; within 2^29 accumulators)
    return {
        "wide_bias": (*_conv_graph(rng, [0.01] * 6, wide), r"\.bias_bits = 29,"),
        "no_bias": (*_conv_graph(rng, [0.01, 0.02, 0.013, 0.011, 0.017, 0.009], None, in_zp=0),
                    r"\.bias_bits = 0,"),
        "many_shifts": (*_conv_graph(rng, spread, rng.integers(-500, 500, 6), out_scale=0.002),
                        r"\.shift_bits = 4,"),
        "per_tensor": (*_conv_graph(rng, [0.015], rng.integers(-900, 900, 6)), r"\.per_channel = 0,"),
        "per_tensor_dw": (*_conv_graph(rng, [0.015], rng.integers(-900, 900, 6), depthwise=True),
                          r"\.per_channel = 0,"),
        "zero_mult": (*_conv_graph(rng, [0.01, 1e-30, 0.02, 0.01, 0.01, 0.01], rng.integers(-900, 900, 6)),
                      r"\.mult_bits = 31,"),
        "fc_many_shifts": (*_fc_graph(rng, [float(np.float32(0.03 * 2.0 ** -k)) for k in range(9)],
                                      rng.integers(-(2**20), 2**20, 9)), r"\.shift_bits = 4,"),
        "fc_per_tensor": (*_fc_graph(rng, [0.02], rng.integers(-3000, 3000, 9)), r"\.per_channel = 0,"),
    }


def test_storage_variants_match_tflm(tmp_path):
    rng = np.random.default_rng(5)
    variants = _variants(rng)
    cases = [make_case(name, model, shapes, rng, samples=3) for name, (model, shapes, _) in variants.items()]
    results = run_cases(cases, tmp_path)
    source = (tmp_path / "c").glob("m*.c")
    text = {p.stem: p.read_text() for p in source}
    for i, (name, (_, _, expect)) in enumerate(variants.items()):
        mine, theirs = results[name]
        assert np.array_equal(mine, theirs), name
        assert re.search(expect, text[f"m{i}"]), (name, expect)


def test_logistic_at_extreme_input_scales(tmp_path):
    """LOGISTIC's table (quant.logistic_table) over every int8 input where its rescale shift is far from the
    random cases' (tiny and huge input scales: long shifts, radii of a few LSB or beyond the int8 range)."""
    rng = np.random.default_rng(2)
    cases = []
    for i, (scale, zp) in enumerate(((1e-4, 0), (0.9, -40), (4.0, 3), (30.0, 127))):
        g = GraphBuilder()
        x = g.input([1, 256], scale, zp)
        y = g.act([1, 256], 1.0 / 256, -128)
        g.op("LOGISTIC", [x], [y])
        cases.append(make_case(f"logistic_x{i}", g.build([y]), [[1, 256]], rng, samples=1,
                               values=np.arange(-128, 128, dtype=np.int8)))
    for name, (mine, theirs) in run_cases(cases, tmp_path).items():
        assert np.array_equal(mine, theirs), name


def test_identical_arrays_are_emitted_once(tmp_path):
    """Two convs with the same filter and bias on two halves of one input (dssdn's two bands): one array."""
    rng = np.random.default_rng(3)
    g = GraphBuilder()
    x = g.input([1, 6, 8, 2], 0.05, 1)
    w = rng.integers(-127, 128, (4, 3, 3, 2)).astype(np.int8)
    outs = []
    for half in range(2):
        part = g.act([1, 6, 4, 2], 0.05, 1)
        g.op("SLICE", [x, g.const(np.asarray([0, 0, 4 * half, 0], np.int32)),
                       g.const(np.asarray([1, 6, 4, 2], np.int32))], [part])
        y = g.act([1, 6, 4, 4], 0.4, 0)
        g.op("CONV_2D", [part, g.const(w, [0.01] * 4, [0] * 4, 0), g.const(np.arange(4, dtype=np.int32) * 99,
                                                                          [0.0005] * 4, [0] * 4)],
             [y], options("Conv2DOptions", **CONV))
        outs.append(y)
    z = g.act([1, 6, 4, 4], 0.5, 0)
    g.op("ADD", outs, [z], options("AddOptions"))
    case = make_case("twin", g.build([z]), [[1, 6, 8, 2]], rng)
    mine, theirs = run_cases([case], tmp_path)["twin"]
    assert np.array_equal(mine, theirs)
    src = (tmp_path / "c" / "m0.c").read_text()
    assert len(re.findall(r"static const int8_t m0_op\d+_w\[", src)) == 1
    assert re.search(r"/\* m0_op\d+_w: the values of m0_op\d+_w \*/", src)


def test_packing_round_trip():
    rng = np.random.default_rng(9)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        bits = int(rng.integers(1, 33))
        bias = None if trial % 7 == 0 else rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), n, dtype=np.int64)
        nq = n if trial % 3 else 1
        mults = [int(v) for v in rng.integers(2**30, 2**31, nq)]
        if trial % 5 == 0:
            mults[0] = 0
        shifts = [int(v) for v in rng.integers(-12, 3, nq)]
        p = pack_channels(bias, mults, shifts)
        b, m, s = unpack_channels(p, n, nq)
        assert b == ([0] * n if bias is None else bias.tolist())
        assert (m, s) == (mults, shifts)
        assert p.mult_bits == (31 if trial % 5 == 0 else 30)
        assert p.words.nbytes == 4 * -(-(p.bias_bits * n + (p.mult_bits + p.shift_bits) * nq) // 32)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_struct_bytes_are_the_targets_sizeof(tmp_path):
    """const_bytes counts STRUCT_BYTES per op struct: they must be sizeof on a 32-bit Cortex-M."""
    (tmp_path / "dssdn_kernels.h").write_text(kernel_sources()["dssdn_kernels.h"])
    checks = "".join(f"typedef char check_{t}[sizeof({t}) == {n} ? 1 : -1];\n" for t, n in STRUCT_BYTES.items())
    (tmp_path / "sizes.c").write_text('#include "dssdn_kernels.h"\n' + checks)
    run = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-std=c99", "-c", "sizes.c", "-o", "sizes.o"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

