"""TFLite Micro's integer arithmetic, computed at generation time in Python integers.

Everything here reproduces the reference kernels of the pinned ``tflite-micro`` wheel bit for bit, so that
the generated C only has to do the per-element work with constants this module bakes in:

- ``quantize_multiplier``: ``frexp`` of a double built from the float32 scales stored in the flatbuffer,
  the mantissa rounded half away from zero to Q31 (TFLite's ``QuantizeMultiplier``).
- ``multiply_by_quantized_multiplier``: the default *double rounding* (a rounding doubling high multiply,
  then a rounding right shift). The wheel is built without ``TFLITE_SINGLE_ROUNDING``: a model whose
  outputs differ between the two (``tests/test_mcu_ops.py::test_wheel_uses_double_rounding``) matches the
  double-rounding build only. The single-rounding variant is kept here so that test can tell them apart.
- ``logistic``: the int8 LOGISTIC of TFLM is a fixed-point evaluation (gemmlowp's ``logistic`` on a
  Q4.27 input). ``logistic_table`` evaluates it for every int8 input; the generator packs that table as
  small steps (``dssdn_logistic_lut``), fewer bytes of flash than the fixed-point code in C would take.
"""

from __future__ import annotations

import math

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def wrap32(x: int) -> int:
    """Two's-complement int32 wrap-around, as the C++ reference's int32 arithmetic does on overflow."""
    return (x + 2**31) % 2**32 - 2**31


def round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) with ``real ≈ M · 2^(shift − 31)``; TFLite's QuantizeMultiplier."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul on int32."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return wrap32(_trunc_div(ab + nudge, 1 << 31))


def _trunc_div(a: int, b: int) -> int:
    """C integer division (truncation toward zero) for b > 0."""
    return a // b if a >= 0 else -((-a) // b)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int, single_rounding: bool = False) -> int:
    if single_rounding:
        total = 31 - shift
        return wrap32((x * multiplier + (1 << (total - 1))) >> total)
    left = max(shift, 0)
    right = max(-shift, 0)
    return rounding_divide_by_pot(srdhm(wrap32(x * (1 << left)), multiplier), right)


# ------------------------------------------------------------------------------------------ per-op constants
def conv_multipliers(in_scale: float, w_scales: tuple[float, ...], out_scale: float, channels: int
                     ) -> tuple[list[int], list[int]]:
    """Per-output-channel (multiplier, shift) as TFLM's PopulateConvolutionQuantizationParams: the float32
    scales widened to double, ``s_in · s_w / s_out``. A per-tensor weight scale gives one pair."""
    mults, shifts = [], []
    for c in range(channels if len(w_scales) > 1 else 1):
        m, s = quantize_multiplier(float(in_scale) * float(w_scales[c]) / float(out_scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def add_params(s1: float, s2: float, s_out: float) -> dict[str, int]:
    """ADD (int8): both inputs scaled to a common 2^20 fixed point, summed, requantised (TFLM add_common)."""
    left_shift = 20
    twice_max = 2.0 * float(max(s1, s2))
    m1, sh1 = quantize_multiplier(float(s1) / twice_max)
    m2, sh2 = quantize_multiplier(float(s2) / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * float(s_out)))
    return {"left_shift": left_shift, "m1": m1, "s1": sh1, "m2": m2, "s2": sh2, "mo": mo, "so": sho}


def mean_params(in_scale: float, out_scale: float, n: int) -> tuple[int, int]:
    """MEAN (int8): the 1/n folded into the requantisation multiplier, as the reference ``QuantizedMeanOrSum``:
    ``k = min(floor(log2 n), 32, 31 + shift)``, ``M' = (M << k) / n`` (truncated), shift ``− k``."""
    m, shift = quantize_multiplier(float(in_scale) / float(out_scale))
    k = min(n.bit_length() - 1, 32, 31 + shift)
    return wrap32(_trunc_div(m << k, n)), shift - k


def activation_range(fused: int, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for int8 (0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6)."""
    def q(v: float) -> int:
        return zero_point + round_half_away(v / scale)

    lo, hi = -128, 127
    if fused == 1:
        lo = max(lo, q(0.0))
    elif fused == 2:
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    elif fused == 3:
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif fused != 0:
        raise ValueError(f"fused activation {fused}")
    return lo, hi


# -------------------------------------------------------------------------------------------- logistic
def _sat_mul_pot(x: int, exponent: int) -> int:
    """gemmlowp SaturatingRoundingMultiplyByPOT on int32."""
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return wrap32(x << exponent)


def _exp_quarter(a: int) -> int:
    """exp on [-1/4, 0) in Q0.31 (gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl)."""
    constant_term, one_third = 1895147668, 715827883
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = _sat_mul_pot(x4, -2)
    poly = _sat_mul_pot(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


def _exp_on_negative_values(a: int, integer_bits: int) -> int:
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    mask = one_quarter - 1
    a_mod = wrap32((a & mask) - one_quarter)
    result = _exp_quarter(_sat_mul_pot(a_mod, integer_bits))  # Rescale<0>
    remainder = wrap32(a_mod - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                           (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent and remainder & (1 << (frac + exponent)):
            result = srdhm(result, mult)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    return INT32_MAX if a == 0 else result


def _one_over_one_plus_x(a: int) -> int:
    s = a + INT32_MAX
    half_denominator = wrap32(_trunc_div(s + (1 if s >= 0 else -1), 2))
    x = wrap32(1515870810 + srdhm(half_denominator, -1010580540))
    one_q2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(half_denominator, x)
        one_minus = wrap32(one_q2 - hdx)
        x = wrap32(x + _sat_mul_pot(srdhm(x, one_minus), 2))  # Rescale<2> of a Q4 product
    return _sat_mul_pot(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x)): Q1 → Q0


def gemmlowp_logistic(a: int, integer_bits: int) -> int:
    """gemmlowp ``logistic`` of a raw Q(integer_bits) int32, as a raw Q0.31."""
    if a == 0:
        return 1 << 30
    positive = a > 0
    abs_a = a if positive else wrap32(-a)
    pos = _one_over_one_plus_x(_exp_on_negative_values(wrap32(-abs_a), integer_bits))
    return pos if positive else wrap32(INT32_MAX - pos)


LOGISTIC_INPUT_BITS = 4  # TFLM's int8 LOGISTIC rescales its input to Q4.27


def logistic_params(in_scale: float) -> tuple[int, int, int]:
    """(multiplier, shift, radius) of TFLM's int8 LOGISTIC Prepare: the input rescaled to Q4.27 by
    ``multiplier · 2^(shift − 31)``; inputs at or beyond ``±radius`` (after the zero point) saturate."""
    real = float(in_scale) * float(1 << (31 - LOGISTIC_INPUT_BITS))
    q, left_shift = math.frexp(real)
    multiplier = wrap32(round_half_away(q * (1 << 31)))
    radius = math.floor(((1 << LOGISTIC_INPUT_BITS) - 1) * float(1 << (31 - LOGISTIC_INPUT_BITS))
                        / 2.0**left_shift)
    return multiplier, left_shift, radius


def logistic(v: int, in_zero_point: int, params: tuple[int, int, int]) -> int:
    """TFLM's int8 LOGISTIC of one input (output scale 1/256, zero point -128)."""
    multiplier, left_shift, radius = params
    x = v - in_zero_point
    if x <= -radius:
        return -128
    if x >= radius:
        return 127
    x_q4 = multiply_by_quantized_multiplier(x, multiplier, left_shift)
    out = rounding_divide_by_pot(gemmlowp_logistic(x_q4, LOGISTIC_INPUT_BITS), 31 - 8) - 128
    return min(max(out, -128), 127)


def logistic_table(in_scale: float, in_zero_point: int) -> list[int]:
    """The int8 outputs of TFLM's LOGISTIC for the inputs -128..127 (output scale 1/256, zero point -128)."""
    params = logistic_params(in_scale)
    return [logistic(v, in_zero_point, params) for v in range(-128, 128)]
