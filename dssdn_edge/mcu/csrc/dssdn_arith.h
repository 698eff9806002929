/* dssdn_arith.h - the integer arithmetic the kernels share (internal to the kernel files):
 * TFLite's requantisation, int8 dot products (with Arm DSP-extension fast paths), int8 clamps. Static inline
 * only, so each kernel file gets its own inlined copy and nothing here is part of the API. */
#ifndef DSSDN_ARITH_H
#define DSSDN_ARITH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DSSDN_CLAMP(v, lo, hi) ((v) < (lo) ? (lo) : ((v) > (hi) ? (hi) : (v)))

/* SaturatingRoundingDoublingHighMul without the saturation, for 0 <= m < 2^31 and |x| < 2^30 (see
 * requantize): floor((x*m + 2^30) / 2^31); on the DSP path SMMULR(2x, m) = floor((2x*m + 2^31) / 2^32). */
static inline int32_t high_mul(int32_t x, int32_t m)
{
#if defined(__ARM_FEATURE_DSP)
    int32_t h;
    __asm__("smmulr %0, %1, %2" : "=r"(h) : "r"((int32_t)((uint32_t)x << 1)), "r"(m));
    return h;
#else
    return (int32_t)(((int64_t)x * m + ((int64_t)1 << 30)) >> 31);
#endif
}

#ifdef DSSDN_SINGLE_ROUNDING
static inline int32_t requantize(int32_t x, int32_t m, int32_t shift)
{
    const int32_t total = 31 - shift;
    const int64_t round = (int64_t)1 << (total - 1);
    return (int32_t)(((int64_t)x * m + round) >> total);
}
#else
/* TFLite's double rounding: RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, m), right).
 * The generator guarantees (dssdn_edge/mcu/ops.py, _check_requant) that 0 <= m < 2^31, that
 * |x * 2^left| < 2^29 and that right <= 30, which makes three shortcuts exact:
 * - the high multiply never saturates (only INT32_MIN * INT32_MIN does) and is floor((x*m + 2^30) / 2^31);
 *   on the DSP path that is SMMULR(2x, m) = floor((2x*m + 2^31) / 2^32), one instruction;
 * - |h| <= |x| < 2^29, so the rounding shift fits in 32 bits: rounding h / 2^right half away from zero is
 *   floor((h + 2^(right-1) - [h < 0]) / 2^right), written as floor((2h + 2^right - [h < 0]) / 2^(right+1))
 *   so that right = 0 needs no branch (2h + 1 - [h < 0] halves back to h);
 * - the same formula for every channel, so per-channel parameters cost two loads and no branch. */
static inline int32_t requantize(int32_t x, int32_t m, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const int32_t h = high_mul((int32_t)((uint32_t)x << left), m);
    return (2 * h + ((int32_t)1 << right) - (int32_t)((uint32_t)h >> 31)) >> (right + 1);
}
#endif

/* The accumulator of one output channel: bias' + sum over every tap of w * x, where a tap outside the input
 * reads the input zero point. The generator folds -zp * sum(w) into bias', so this equals TFLM's
 * bias + sum over in-bounds taps of w * (x - zp), integer for integer. */

/* The plain products from element i on: the whole of the portable path, the tail of the DSP one. */
static inline int32_t dot_from(const int8_t *w, const int8_t *x, int32_t i, int32_t n, int32_t acc)
{
    for (; i < n; ++i) {
        acc += (int32_t)w[i] * (int32_t)x[i];
    }
    return acc;
}

/* Four output channels over the same input (filter rows n bytes apart), from element i on. */
static inline void dot4_from(const int8_t *w, int32_t n, const int8_t *x, int32_t i, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int8_t *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    for (; i < n; ++i) {
        const int32_t xv = x[i];
        a0 += (int32_t)w[i] * xv;
        a1 += (int32_t)w1[i] * xv;
        a2 += (int32_t)w2[i] * xv;
        a3 += (int32_t)w3[i] * xv;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
/* Cortex-M4/M7 with the DSP extension: four int8 products per two SMLAD. SXTB16 sign-extends bytes 0 and 2
 * (and, with its built-in rotation by 8, bytes 1 and 3) into two int16 lanes; SMLAD adds both lane products
 * to the accumulator. Every product and partial sum is the exact integer of the plain loop, so the bits agree. */
#include <arm_acle.h>

static inline uint32_t load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* one (unaligned-capable) LDR on ARMv7E-M */
    return v;
}

static inline uint32_t odd_bytes(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v)); /* SXTB16's own rotation: one instruction */
    return r;
}

static inline int32_t dot(const int8_t *w, const int8_t *x, int32_t n, int32_t acc)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t wv = load4(w + i), xv = load4(x + i);
        acc = __smlad(__sxtb16(wv), __sxtb16(xv), acc);
        acc = __smlad(odd_bytes(wv), odd_bytes(xv), acc);
    }
    return dot_from(w, x, i, n, acc);
}

/* Four output channels over the same input (filter rows n bytes apart). */
static inline void dot4(const int8_t *w, int32_t n, const int8_t *x, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], i = 0;
    const int8_t *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = load4(x + i);
        const uint32_t xe = __sxtb16(xv), xo = odd_bytes(xv);
        uint32_t v = load4(w + i);
        a0 = __smlad(__sxtb16(v), xe, a0);
        a0 = __smlad(odd_bytes(v), xo, a0);
        v = load4(w1 + i);
        a1 = __smlad(__sxtb16(v), xe, a1);
        a1 = __smlad(odd_bytes(v), xo, a1);
        v = load4(w2 + i);
        a2 = __smlad(__sxtb16(v), xe, a2);
        a2 = __smlad(odd_bytes(v), xo, a2);
        v = load4(w3 + i);
        a3 = __smlad(__sxtb16(v), xe, a3);
        a3 = __smlad(odd_bytes(v), xo, a3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    dot4_from(w, n, x, i, acc);
}

#else
static inline int32_t dot(const int8_t *w, const int8_t *x, int32_t n, int32_t acc)
{
    return dot_from(w, x, 0, n, acc);
}

static inline void dot4(const int8_t *w, int32_t n, const int8_t *x, int32_t *acc)
{
    dot4_from(w, n, x, 0, acc);
}

#endif

/* Packed int16 pairs, the portable twins of SXTB16 / SXTB16 ROR #8 / SMLAD: the pixel-pair conv path keeps
 * its patches widened once per pair (see dssdn_conv.c), so the same code runs (and is tested) on both paths. */
static inline uint32_t load_word(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* one (unaligned-capable) LDR on ARMv7E-M */
    return v;
}

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
static inline uint32_t even16(uint32_t v)
{
    return __sxtb16(v);
}

static inline uint32_t odd16(uint32_t v)
{
    return odd_bytes(v);
}

static inline int32_t mac16x2(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}
#else
static inline uint32_t even16(uint32_t v)
{
    const uint32_t lo = (uint16_t)(int16_t)(int8_t)(v & 0xff), hi = (uint16_t)(int16_t)(int8_t)(v >> 16 & 0xff);
    return lo | hi << 16;
}

static inline uint32_t odd16(uint32_t v)
{
    return even16(v >> 8);
}

static inline int32_t mac16x2(uint32_t a, uint32_t b, int32_t acc)
{
    const int32_t lo = (int32_t)(int16_t)(a & 0xffff) * (int16_t)(b & 0xffff);
    return acc + lo + (int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16);
}
#endif

/* Two output channels (filter rows w and w + step; step 0 for one channel) over a widened pixel pair: per
 * input word i, wide[4i .. 4i+3] = even16/odd16 of pixel x's word, then of pixel y's. Each filter word is
 * loaded and widened once for both pixels; the inputs were widened once for all channel pairs. With `unroll`
 * (a constant n at the call) the loop is unrolled: fixed offsets, no counter. */
#define DSSDN_DOT2X2_WIDE_STEP                                                                                \
    do {                                                                                                      \
        const uint32_t v0 = load_word(w + i), v1 = load_word(w + step + i);                                   \
        const uint32_t e0 = even16(v0), o0 = odd16(v0), e1 = even16(v1), o1 = odd16(v1);                      \
        uint32_t xe = wide[i], xo = wide[i + 1];                                                              \
        a0 = mac16x2(o0, xo, mac16x2(e0, xe, a0));                                                            \
        a1 = mac16x2(o1, xo, mac16x2(e1, xe, a1));                                                            \
        xe = wide[i + 2], xo = wide[i + 3];                                                                   \
        b0 = mac16x2(o0, xo, mac16x2(e0, xe, b0));                                                            \
        b1 = mac16x2(o1, xo, mac16x2(e1, xe, b1));                                                            \
    } while (0)

static inline __attribute__((always_inline)) void dot2x2_wide(const int8_t *w, int32_t step, int32_t n,
                                                              const uint32_t *wide, int32_t bias0, int32_t bias1,
                                                              int32_t *a, int32_t *b, int unroll)
{
    int32_t a0 = bias0, a1 = bias1, b0 = bias0, b1 = bias1;
    if (unroll) {
#pragma GCC unroll 16
        for (int32_t i = 0; i < n; i += 4) {
            DSSDN_DOT2X2_WIDE_STEP;
        }
    } else {
#pragma GCC unroll 1
        for (int32_t i = 0; i < n; i += 4) {
            DSSDN_DOT2X2_WIDE_STEP;
        }
    }
    a[0] = a0, a[1] = a1, b[0] = b0, b[1] = b1;
}

static inline int32_t sat8(int32_t v)
{
#if defined(__ARM_FEATURE_DSP)
    return __ssat(v, 8);
#else
    return DSSDN_CLAMP(v, -128, 127);
#endif
}

static inline int32_t clamp_out(int32_t v, int32_t lo, int32_t hi)
{
#if defined(__ARM_FEATURE_DSP)
    v = __ssat(v, 8); /* one instruction; lo/hi are within int8, so the clamps below agree with the plain path */
#endif
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

#endif /* DSSDN_ARITH_H */
