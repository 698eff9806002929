/* dssdn_requant.h - the requantisation the convolution kernels share (internal to dssdn_conv.c,
 * dssdn_depthwise.c and dssdn_requant.c): an op's per-channel constants in locals, TFLite's rounding as one
 * SMMLAR from a per-channel table, and the short copies both kernels use. The table's fill is out of line
 * in dssdn_requant.c (once per op call). requant_n is static here, one copy per kernel file (244 B more flash
 * than one shared copy): called across files, gcc must assume it clobbers every call-clobbered register, and
 * the depthwise kernel, which calls it only off its hot path, took 1 % more instructions per model call. */
#ifndef DSSDN_REQUANT_H
#define DSSDN_REQUANT_H

#include "dssdn_arith.h"
#include "dssdn_kernels.h"

/* The requantisation of an op's outputs, in locals: int8 stores may alias anything reachable through a
 * pointer, so fields read through the op's struct would be reloaded after every store. bias, mult and shift
 * point into the op's work area, where requant_of unpacks the op's bit-packed channel constants. */
typedef struct {
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
    const int32_t *round; /* NULL, or per channel ((2^(e-1) + out_zp * 2^e) << 8) | e for shift = -e, 1 <= e <= 15 */
    int32_t mask;         /* -1 per channel, 0 per tensor: the parameter index is oc & mask, without a branch */
    int32_t out_zp, lo, hi;
} requant_t;

/* The accessors of a conv's per-channel constants: the hot loops read bias, multiplier and shift only here. */
static inline int32_t conv_bias(const int32_t *bias, int32_t oc)
{
    return bias ? bias[oc] : 0;
}

static inline int32_t rq_mult(const requant_t *r, int32_t q)
{
    return r->mult[q];
}

static inline int32_t rq_shift(const requant_t *r, int32_t q)
{
    return r->shift[q];
}

/* The op's rounding table, when the parameters are per channel, every shift is in [-15, -1] and every
 * multiplier in [2^30, 2^31) (the usual case: TFLite normalises multipliers to that range) and there are at
 * most DSSDN_RQ_CHANNELS channels: `round` (DSSDN_RQ_CHANNELS words of the caller's stack) gets each channel's
 * rounding term, output zero point and shift in one word, and the multipliers, in the work area (this call's
 * own unpacked copy), are replaced by 2m - 2^32 (see rq_table), so the per-output work is two loads and no
 * selects. Returns round, or NULL (no table). Out of line and a leaf: one copy, and little stack on top of
 * the kernel's frame. */
const int32_t *dssdn_rq_table_fill(const dssdn_conv_t *p, int32_t *mult, const int8_t *shift, int32_t *round);

/* The op's requantisation: its channel constants unpacked into the work area, and the rounding table. */
static inline requant_t requant_of(const dssdn_conv_t *p, int32_t *round)
{
    requant_t r;
    const dssdn_chan_arrays_t a = dssdn_chan_unpack(&p->chan, p->out_c, p->per_channel ? p->out_c : 1, p->work);
    r.bias = a.bias;
    r.mult = a.mult;
    r.shift = a.shift;
    r.mask = p->per_channel ? -1 : 0;
    r.out_zp = p->out_zp;
    r.lo = p->act_min;
    r.hi = p->act_max;
    /* a.mult points into the work area, written by dssdn_chan_unpack: the table may rewrite it */
    r.round = dssdn_rq_table_fill(p, (int32_t *)(uintptr_t)a.mult, a.shift, round);
    return r;
}

/* requantize(x, m, -e) + zp from the table: m2 = 2m - 2^32 (as int32) and rnd = ((2^(e-1) + zp * 2^e) << 8) | e.
 * requantize is floor((h + 2^(e-1) - [h < 0]) / 2^e) with h = floor((2xm + 2^31) / 2^32); adding zp * 2^e
 * inside adds zp outside. With k = 2^(e-1) + zp * 2^e - [h < 0], floor((k + h) / 2^e) is
 * floor((k * 2^32 + 2xm + 2^31) / 2^(32+e)) (nested floors), and 2xm = x * m2 + x * 2^32, so the sum is
 * SMMLAR(x, m2, k + x) shifted right by e: one instruction for the multiply, the rounding and the table's
 * term. [h < 0] may be taken as [x < 0]: they differ only when h = 0 (m >= 0), where k + h = 2^(e-1) - 1 +
 * zp * 2^e has the same floor as 2^(e-1) + zp * 2^e (e >= 1). |k + x| < 2^30 and the 64-bit sum of SMMLAR
 * stays below 2^62, so nothing wraps. On Arm, ASR by a register shifts by that register's low byte: e. */
static inline int32_t rq_table(int32_t x, int32_t m2, int32_t rnd)
{
    const int32_t a = x + (x >> 31) + (rnd >> 8);
#if defined(__ARM_FEATURE_DSP)
    int32_t y, v;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(y) : "r"(x), "r"(m2), "r"(a));
    __asm__("asr %0, %1, %2" : "=r"(v) : "r"(y), "r"(rnd));
    return v;
#else
    const int64_t y = ((int64_t)a * ((int64_t)1 << 32) + (int64_t)x * m2 + ((int64_t)1 << 31)) >> 32;
    return (int32_t)y >> (rnd & 31);
#endif
}

/* Without the table (with it the multipliers are the table's, see dssdn_rq_table_fill): requant_n's other path. */
static inline int8_t requant_ch(const requant_t *r, int32_t acc, int32_t oc)
{
    const int32_t q = oc & r->mask;
    return (int8_t)clamp_out(requantize(acc, rq_mult(r, q), rq_shift(r, q)) + r->out_zp, r->lo, r->hi);
}

/* A short copy (a few channels of one tap, a buffered pixel) without a library call: words, then the last
 * 0-3 bytes. */
static inline void copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        memcpy(dst + i, src + i, 4);
    }
    for (; i < n; ++i) {
        dst[i] = src[i];
    }
}

/* Channels oc .. oc+n-1 of one pixel from their accumulators (the table path: one loop, SSAT then the
 * activation's clamp). Out of line: the call frees the caller's registers (inlined into the MAC loops it
 * spilled). */
static __attribute__((noinline, unused)) void requant_n(const requant_t *rq, const int32_t *acc, int32_t oc,
                                                        int32_t n, int8_t *dst)
{
    const requant_t r = *rq;
    if (r.round) { /* per-channel parameters: what int8 converters emit for convs */
        for (int32_t i = 0; i < n; ++i) {
            dst[oc + i] = (int8_t)clamp_out(rq_table(acc[i], rq_mult(&r, oc + i), r.round[oc + i]), r.lo, r.hi);
        }
        return;
    }
    for (int32_t i = 0; i < n; ++i) {
        dst[oc + i] = requant_ch(&r, acc[i], oc + i);
    }
}

#endif
