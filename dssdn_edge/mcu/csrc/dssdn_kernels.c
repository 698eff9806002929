/* dssdn_kernels.c - see dssdn_kernels.h. Integer arithmetic only; every kernel mirrors the arithmetic of
 * TensorFlow Lite Micro's reference int8 kernel (tensorflow/lite/kernels/internal/reference/integer_ops). */
#include "dssdn_kernels.h"

#include <stddef.h>
#include <string.h>

#define DSSDN_CLAMP(v, lo, hi) ((v) < (lo) ? (lo) : ((v) > (hi) ? (hi) : (v)))

#ifdef DSSDN_SINGLE_ROUNDING
static inline int32_t requantize(int32_t x, int32_t m, int32_t shift)
{
    const int32_t total = 31 - shift;
    const int64_t round = (int64_t)1 << (total - 1);
    return (int32_t)(((int64_t)x * m + round) >> total);
}
#else
/* SaturatingRoundingDoublingHighMul: the high 32 bits of 2*a*b, rounded to nearest (ties away from 0).
 * gemmlowp adds 2^30 (or 1 - 2^30 when a*b < 0) and divides by 2^31 toward zero; both cases equal
 * floor((a*b + 2^30) / 2^31), one 64-bit add and shift (a*b < 0 keeps the sum negative, so the truncating
 * division's +2^31-1 correction turns 1 - 2^30 into 2^30). */
static inline int32_t high_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* RoundingDivideByPOT: x / 2^e rounded to nearest, ties away from zero. */
static inline int32_t divide_pot(int32_t x, int32_t e)
{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* divide_pot(high_mul(x, m), e) for e = -shift >= 1 in one 64-bit sum: with t = x*m + 2^30, high_mul is
 * floor(t / 2^31) and is negative exactly when t is; rounding half away from zero is
 * floor((h + 2^(e-1) - [h < 0]) / 2^e), and nested floors of integer divisions combine, so the result is
 * floor((t + (2^(e-1) - [t < 0]) * 2^31) / 2^(31+e)): the high word of that sum shifted right by e - 1. */
static inline int32_t requantize(int32_t x, int32_t m, int32_t shift)
{
    if (shift >= 0) {
        return high_mul((int32_t)((uint32_t)x << shift), m);
    }
    if (x == INT32_MIN && m == INT32_MIN) {
        return divide_pot(INT32_MAX, -shift);
    }
    const int64_t t = (int64_t)x * m + ((int64_t)1 << 30);
    const int32_t k = ((int32_t)1 << (-shift - 1)) - (t < 0 ? 1 : 0);
    const int64_t sum = t + (int64_t)k * ((int64_t)1 << 31);
    return (int32_t)(sum >> 32) >> (-shift - 1);
}
#endif

int32_t dssdn_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    return requantize(x, multiplier, shift);
}

static inline void store_pixel(int8_t *dst, const int8_t *px, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = px[i];
    }
}

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

/* w (0..32) bits of the bit-packed channel constants from bit *pos on, least significant first. */
static inline uint32_t take_bits(const uint32_t *words, uint32_t *pos, int32_t w)
{
    if (w == 0) {
        return 0;
    }
    const uint32_t i = *pos >> 5, o = *pos & 31;
    uint32_t v = words[i] >> o;
    if (o + (uint32_t)w > 32) { /* then o >= 1: the rest is in the next word */
        v |= words[i + 1] << (32 - o);
    }
    *pos += (uint32_t)w;
    return w == 32 ? v : v & (((uint32_t)1 << w) - 1);
}

/* The channel constants of an op, unpacked into plain arrays in its work area. */
typedef struct {
    const int32_t *bias;  /* [n] */
    const int32_t *mult;  /* [nq] */
    const int8_t *shift;  /* [nq] */
} chan_arrays_t;

/* All n channels (nq of them with their own requantisation) into work: int32 bias[n], int32 mult[nq],
 * int8 shift[nq]. Once per op call, out of the hot loops, so they read plain values. */
static chan_arrays_t chan_unpack(const dssdn_chan_t *c, int32_t n, int32_t nq, int8_t *work)
{
    int32_t *bias = (int32_t *)(void *)work, *mult = bias + n;
    int8_t *shift = (int8_t *)(mult + nq);
    const uint32_t sign = c->bias_bits ? (uint32_t)1 << (c->bias_bits - 1) : 0;
    const uint32_t implied = c->mult_bits == 30 ? (uint32_t)1 << 30 : 0;
    uint32_t pos = 0;
    for (int32_t i = 0; i < n; ++i) {
        bias[i] = (int32_t)((take_bits(c->bits, &pos, c->bias_bits) ^ sign) - sign);
        if (i < nq) {
            mult[i] = (int32_t)(take_bits(c->bits, &pos, c->mult_bits) | implied);
            shift[i] = (int8_t)((int32_t)take_bits(c->bits, &pos, c->shift_bits) + c->shift_min);
        }
    }
    chan_arrays_t a;
    a.bias = bias;
    a.mult = mult;
    a.shift = shift;
    return a;
}

/* The requantisation of a conv's outputs, in locals: int8 stores may alias anything reachable through a
 * pointer, so fields read through the op's struct would be reloaded after every store. bias, mult and
 * shift point into the op's work area, where requant_of has unpacked them. */
typedef struct {
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
    int32_t per_channel, out_zp, lo, hi;
} requant_t;

static inline requant_t requant_of(const dssdn_conv_t *p)
{
    requant_t r;
    const chan_arrays_t a = chan_unpack(&p->chan, p->out_c, p->per_channel ? p->out_c : 1, p->work);
    r.bias = a.bias;
    r.mult = a.mult;
    r.shift = a.shift;
    r.per_channel = p->per_channel ? -1 : 0; /* a mask: the channel index or 0 without a branch */
    r.out_zp = p->out_zp;
    r.lo = p->act_min;
    r.hi = p->act_max;
    return r;
}

static inline int8_t requant_ch(const requant_t *r, int32_t acc, int32_t oc)
{
    const int32_t q = oc & r->per_channel;
    const int32_t v = requantize(acc, r->mult[q], r->shift[q]) + r->out_zp;
    return (int8_t)DSSDN_CLAMP(v, r->lo, r->hi);
}

/* Channels oc .. oc+n-1 of one pixel: kept out of line so the requantisation exists once in flash, its
 * call shared by a block of channels. */
static void requant_block(const requant_t *rq, const int32_t *acc, int32_t oc, int32_t n, int8_t *dst)
{
    const requant_t r = *rq;
    for (int32_t i = 0; i < n; ++i) {
        dst[oc + i] = requant_ch(&r, acc[i], oc + i);
    }
}

/* Every output channel of one pixel from its contiguous input patch x[n] (filter rows of n bytes): four
 * (then two) channels per pass over x, so each input word is loaded and widened once for all of them. */
static void conv_pixel(const int8_t *x, int32_t n, const int8_t *w, const int32_t *bias, const requant_t *rq,
                       int32_t out_c, int8_t *dst)
{
    int32_t oc = 0;
    for (; oc + 4 <= out_c; oc += 4, w += 4 * n) {
        int32_t a[4] = {0, 0, 0, 0};
        if (bias) {
            a[0] = bias[oc], a[1] = bias[oc + 1], a[2] = bias[oc + 2], a[3] = bias[oc + 3];
        }
        dot4(w, n, x, a);
        requant_block(rq, a, oc, 4, dst);
    }
    for (; oc < out_c; ++oc, w += n) {
        const int32_t a = dot(w, x, n, bias ? bias[oc] : 0);
        requant_block(rq, &a, oc, 1, dst);
    }
}

/* A short copy (a few channels of one tap) without a library call: words, then the last 0-3 bytes. */
static inline void copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        memcpy(dst + i, src + i, 4);
    }
    switch (n - i) {
    case 3:
        dst[i + 2] = src[i + 2];
        /* fall through */
    case 2:
        dst[i + 1] = src[i + 1];
        /* fall through */
    case 1:
        dst[i] = src[i];
        break;
    default:
        break;
    }
}

/* The input patch of one output pixel, [k_h][k_w][in_c], with the zero point where the window leaves the
 * input; NULL when a 1x1 window can be read in place. */
static const int8_t *gather(const dssdn_conv_t *p, const int8_t *in, int32_t iy0, int32_t ix0, int8_t *patch)
{
    if (p->k_h == 1 && p->k_w == 1 && iy0 >= 0 && iy0 < p->in_h && ix0 >= 0 && ix0 < p->in_w) {
        return in + iy0 * p->in_row + ix0 * p->in_pix;
    }
    int8_t *dst = patch;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (int32_t c = 0; c < p->in_c; ++c) {
                    dst[c] = (int8_t)p->in_zp;
                }
            } else {
                copy_bytes(dst, in + iy * p->in_row + ix * p->in_pix, p->in_c);
            }
            dst += p->in_c;
        }
    }
    return patch;
}

/* Grouped convolutions and patches too big for the stack buffer: the same sum, tap by tap. */
static int32_t conv_direct(const dssdn_conv_t *p, const int8_t *in, int32_t iy0, int32_t ix0, int32_t oc,
                           int32_t c0, int32_t acc)
{
    const int8_t *wf = p->w + oc * p->k_h * p->k_w * p->k_c;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int8_t *wp = wf + (ky * p->k_w + kx) * p->k_c;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (int32_t ic = 0; ic < p->k_c; ++ic) {
                    acc += (int32_t)wp[ic] * p->in_zp;
                }
            } else {
                acc = dot(wp, in + iy * p->in_row + ix * p->in_pix + c0, p->k_c, acc);
            }
        }
    }
    return acc;
}

void dssdn_conv2d(const dssdn_conv_t *params, const int8_t *in, int8_t *out)
{
    /* A local copy: the int8 stores below may alias anything reachable through a pointer, so reading the
     * fields through params would reload them after every store. */
    const dssdn_conv_t local = *params;
    const dssdn_conv_t *const p = &local;
    const int32_t groups = p->in_c / p->k_c;
    const int32_t oc_per_group = p->out_c / groups;
    const int32_t filter_size = p->k_h * p->k_w * p->k_c;
    const int32_t use_patch = groups == 1 && filter_size <= DSSDN_MAX_PATCH;
    const requant_t rq = requant_of(p);
    int8_t patch[DSSDN_MAX_PATCH];
    int8_t pixel[DSSDN_MAX_PIXEL];
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *dst = p->buffered ? pixel : out;
            if (use_patch) {
                conv_pixel(gather(p, in, iy0, ix0, patch), filter_size, p->w, rq.bias, &rq, p->out_c, dst);
            } else {
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const int32_t acc = conv_direct(p, in, iy0, ix0, oc, (oc / oc_per_group) * p->k_c,
                                                    rq.bias[oc]);
                    requant_block(&rq, &acc, oc, 1, dst);
                }
            }
            if (p->buffered) {
                store_pixel(out, pixel, p->out_c);
            }
            out += p->out_c;
        }
    }
}

/* Depthwise windows of more than DSSDN_MAX_TAPS taps: every tap checked per channel (same bits, slower). */
static void depthwise_generic(const dssdn_conv_t *p, const int8_t *in, int8_t *out)
{
    const requant_t rq = requant_of(p);
    int8_t pixel[DSSDN_MAX_PIXEL];
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *dst = p->buffered ? pixel : out;
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                const int32_t ic = oc / p->depth_mult;
                int32_t acc = rq.bias[oc];
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        const int32_t x = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w
                                              ? in[iy * p->in_row + ix * p->in_pix + ic] : p->in_zp;
                        acc += (int32_t)p->w[(ky * p->k_w + kx) * p->out_c + oc] * x;
                    }
                }
                requant_block(&rq, &acc, oc, 1, dst);
            }
            if (p->buffered) {
                store_pixel(out, pixel, p->out_c);
            }
            out += p->out_c;
        }
    }
}

/* Depthwise: per output pixel, the taps inside the input are listed once (input pointer, filter pointer) and
 * the taps outside once (filter pointer, read as the zero point); the channel loop then has no bounds checks.
 * With depth_mult 1, four channels share each tap's pointers (on the DSP path: two word loads, SXTB16 and
 * SMLABB/SMLATT per tap, the same exact products). */
void dssdn_depthwise_conv2d(const dssdn_conv_t *params, const int8_t *in, int8_t *out)
{
    const dssdn_conv_t local = *params; /* see dssdn_conv2d */
    const dssdn_conv_t *const p = &local;
    int8_t pixel[DSSDN_MAX_PIXEL];
    const int8_t *xs[DSSDN_MAX_TAPS];
    const int8_t *ws[DSSDN_MAX_TAPS];
    const int8_t *zs[DSSDN_MAX_TAPS];
    const int32_t zp = p->in_zp, oc_n = p->out_c, dm = p->depth_mult;
    const requant_t rq = requant_of(p);
    if (p->k_h * p->k_w > DSSDN_MAX_TAPS) {
        depthwise_generic(p, in, out);
        return;
    }
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *dst = p->buffered ? pixel : out;
            int32_t nv = 0, nz = 0;
            for (int32_t ky = 0; ky < p->k_h; ++ky) {
                const int32_t iy = iy0 + ky * p->dil_h;
                for (int32_t kx = 0; kx < p->k_w; ++kx) {
                    const int32_t ix = ix0 + kx * p->dil_w;
                    const int8_t *wt = p->w + (ky * p->k_w + kx) * oc_n;
                    if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
                        xs[nv] = in + iy * p->in_row + ix * p->in_pix;
                        ws[nv++] = wt;
                    } else {
                        zs[nz++] = wt;
                    }
                }
            }
            int32_t oc = 0;
            if (dm == 1) {
                for (; oc + 4 <= oc_n; oc += 4) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    a0 = rq.bias[oc], a1 = rq.bias[oc + 1], a2 = rq.bias[oc + 2], a3 = rq.bias[oc + 3];
                    for (int32_t j = 0; j < nv; ++j) {
                        const int8_t *x = xs[j] + oc, *w = ws[j] + oc;
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
                        const uint32_t xv = load4(x), wv = load4(w);
                        const uint32_t xe = __sxtb16(xv), we = __sxtb16(wv), xo = odd_bytes(xv), wo = odd_bytes(wv);
                        a0 = __smlabb(we, xe, a0);
                        a2 = __smlatt(we, xe, a2);
                        a1 = __smlabb(wo, xo, a1);
                        a3 = __smlatt(wo, xo, a3);
#else
                        a0 += (int32_t)w[0] * x[0];
                        a1 += (int32_t)w[1] * x[1];
                        a2 += (int32_t)w[2] * x[2];
                        a3 += (int32_t)w[3] * x[3];
#endif
                    }
                    for (int32_t j = 0; j < nz; ++j) {
                        const int8_t *w = zs[j] + oc;
                        a0 += (int32_t)w[0] * zp;
                        a1 += (int32_t)w[1] * zp;
                        a2 += (int32_t)w[2] * zp;
                        a3 += (int32_t)w[3] * zp;
                    }
                    const int32_t a[4] = {a0, a1, a2, a3};
                    requant_block(&rq, a, oc, 4, dst);
                }
            }
            for (; oc < oc_n; ++oc) {
                const int32_t ic = oc / dm;
                int32_t acc = rq.bias[oc];
                for (int32_t j = 0; j < nv; ++j) {
                    acc += (int32_t)ws[j][oc] * xs[j][ic];
                }
                for (int32_t j = 0; j < nz; ++j) {
                    acc += (int32_t)zs[j][oc] * zp;
                }
                requant_block(&rq, &acc, oc, 1, dst);
            }
            if (p->buffered) {
                store_pixel(out, pixel, p->out_c);
            }
            out += p->out_c;
        }
    }
}

void dssdn_fully_connected(const dssdn_fc_t *p, const int8_t *in, int8_t *out)
{
    const chan_arrays_t chan = chan_unpack(&p->chan, p->units, p->per_channel ? p->units : 1, p->work);
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * p->depth;
        for (int32_t u = 0; u < p->units; ++u) {
            const int8_t *w = p->w + u * p->depth;
            int32_t acc = chan.bias[u];
            if (p->w_zp == 0) {
                acc = dot(w, x, p->depth, acc);
            } else {
                for (int32_t d = 0; d < p->depth; ++d) {
                    acc += ((int32_t)w[d] - p->w_zp) * (int32_t)x[d];
                }
            }
            const int32_t q = p->per_channel ? u : 0;
            const int32_t v = requantize(acc, chan.mult[q], chan.shift[q]) + p->out_zp;
            *out++ = (int8_t)DSSDN_CLAMP(v, p->act_min, p->act_max);
        }
    }
}

/* ADD's arithmetic for one element pair (TFLM's reference: both inputs to a common scale, then the sum). */
static inline int8_t add_one(const dssdn_binary_t *p, int32_t a, int32_t b)
{
    const int32_t x = (int32_t)((uint32_t)(a - p->a_zp) << p->left_shift);
    const int32_t y = (int32_t)((uint32_t)(b - p->b_zp) << p->left_shift);
    const int32_t sum = requantize(x, p->a_mult, p->a_shift) + requantize(y, p->b_mult, p->b_shift);
    const int32_t r = requantize(sum, p->out_mult, p->out_shift) + p->out_zp;
    return (int8_t)DSSDN_CLAMP(r, p->act_min, p->act_max);
}

static inline int8_t mul_one(const dssdn_binary_t *p, int32_t a, int32_t b)
{
    const int32_t r = requantize((a - p->a_zp) * (b - p->b_zp), p->out_mult, p->out_shift) + p->out_zp;
    return (int8_t)DSSDN_CLAMP(r, p->act_min, p->act_max);
}

/* One row of an element-wise op: n elements at element strides sa, sb (0 for a broadcast input). Out of
 * line so each op's arithmetic exists once in flash; the struct is copied to a local (see dssdn_conv2d). */
static void binary_row(const dssdn_binary_t *params, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                       int32_t n, int8_t *out, int is_add)
{
    const dssdn_binary_t local = *params;
    const dssdn_binary_t *const p = &local;
    if (is_add) {
        for (int32_t i = 0; i < n; ++i, a += sa, b += sb) {
            out[i] = add_one(p, *a, *b);
        }
    } else {
        for (int32_t i = 0; i < n; ++i, a += sa, b += sb) {
            out[i] = mul_one(p, *a, *b);
        }
    }
}

/* A flat loop when neither input is broadcast (the common residual ADD), else the 4-D walk with strides. */
static void binary(const dssdn_binary_t *p, const int8_t *a, const int8_t *b, int8_t *out, int is_add)
{
    const int32_t d1 = p->dims[1], d2 = p->dims[2], d3 = p->dims[3];
    if (p->a_str[3] == 1 && p->b_str[3] == 1 && p->a_str[2] == d3 && p->b_str[2] == d3 &&
        p->a_str[1] == d2 * d3 && p->b_str[1] == d2 * d3 && p->a_str[0] == d1 * p->a_str[1] &&
        p->b_str[0] == d1 * p->b_str[1]) {
        binary_row(p, a, 1, b, 1, p->dims[0] * d1 * d2 * d3, out, is_add);
        return;
    }
    for (int32_t i0 = 0; i0 < p->dims[0]; ++i0) {
        for (int32_t i1 = 0; i1 < d1; ++i1) {
            for (int32_t i2 = 0; i2 < d2; ++i2) {
                const int8_t *pa = a + i0 * p->a_str[0] + i1 * p->a_str[1] + i2 * p->a_str[2];
                const int8_t *pb = b + i0 * p->b_str[0] + i1 * p->b_str[1] + i2 * p->b_str[2];
                binary_row(p, pa, p->a_str[3], pb, p->b_str[3], d3, out, is_add);
                out += d3;
            }
        }
    }
}

void dssdn_add(const dssdn_binary_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    binary(p, a, b, out, 1);
}

void dssdn_mul(const dssdn_binary_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    binary(p, a, b, out, 0);
}

void dssdn_mean(const dssdn_mean_t *p, const int8_t *in, int8_t *out)
{
    for (int32_t o = 0; o < p->outer; ++o) {
        for (int32_t i = 0; i < p->inner; ++i) {
            const int8_t *x = in + o * p->reduced * p->inner + i;
            int32_t sum = 0;
            for (int32_t r = 0; r < p->reduced; ++r) {
                sum += x[r * p->inner];
            }
            const int32_t v = requantize(sum - p->in_zp * p->reduced, p->mult, p->shift) + p->out_zp;
            out[o * p->inner + i] = (int8_t)DSSDN_CLAMP(v, -128, 127);
        }
    }
}

void dssdn_pool(const dssdn_pool_t *p, const int8_t *in, int8_t *out)
{
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        const int32_t ky0 = iy0 < 0 ? -iy0 : 0;
        const int32_t ky1 = p->in_h - iy0 < p->k_h ? p->in_h - iy0 : p->k_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            const int32_t kx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t kx1 = p->in_w - ix0 < p->k_w ? p->in_w - ix0 : p->k_w;
            for (int32_t c = 0; c < p->c; ++c) {
                int32_t acc = p->is_max ? -128 : 0;
                int32_t count = 0;
                for (int32_t ky = ky0; ky < ky1; ++ky) {
                    for (int32_t kx = kx0; kx < kx1; ++kx) {
                        const int32_t v = in[((iy0 + ky) * p->in_w + ix0 + kx) * p->c + c];
                        if (p->is_max) {
                            acc = v > acc ? v : acc;
                        } else {
                            acc += v;
                        }
                        ++count;
                    }
                }
                if (!p->is_max && count > 0) {
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                }
                *out++ = (int8_t)DSSDN_CLAMP(acc, p->act_min, p->act_max);
            }
        }
    }
}

/* ---- LOGISTIC: gemmlowp's fixed-point logistic, as TFLM's int8 kernel runs it (Q4.27 in, Q0.31 out).
 * Its own exact helpers (full int32 range, negative constants), independent of the conv requantisation's
 * shortcuts. Wrapping int32 additions are done in uint32 (the reference's int32 arithmetic never overflows
 * on these paths, so this only keeps C's signed overflow rules out of the way). */
static inline int32_t wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t wrap_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* SaturatingRoundingDoublingHighMul for any int32 pair: floor((a*b + 2^30) / 2^31) equals gemmlowp's
 * nudge-and-truncate in both signs; only INT32_MIN * INT32_MIN saturates. Out of line where the compiler
 * allows: LOGISTIC calls it ~20 times per element on a few elements per op, so one copy saves ~0.25 KB. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int32_t fx_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* RoundingDivideByPOT: x / 2^e rounded to nearest, ties away from zero (0 <= e <= 31). */
static inline int32_t fx_divide_pot(int32_t x, int32_t e)
{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* SaturatingRoundingMultiplyByPOT for e > 0 (e < 0 is fx_divide_pot). */
static inline int32_t saturating_pot(int32_t x, int32_t e)
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - e)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/* MultiplyByQuantizedMultiplier of the input (|x| <= 255, any shift the generator allows, -31..31). */
static inline int32_t fx_rescale(int32_t x, int32_t m, int32_t shift)
{
#ifdef DSSDN_SINGLE_ROUNDING
    const int32_t total = 31 - shift;
    return (int32_t)(((int64_t)x * m + ((int64_t)1 << (total - 1))) >> total);
#else
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return fx_divide_pot(fx_mul((int32_t)((uint32_t)x << left), m), right);
#endif
}

/* exp(a) for a in [-1/4, 0), Q0.31: a Taylor polynomial around -1/8. */
static int32_t exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668, one_third = 715827883; /* exp(-1/8), 1/3 */
    const int32_t x = wrap_add(a, 1 << 28);
    const int32_t x2 = fx_mul(x, x), x3 = fx_mul(x2, x), x4 = fx_mul(x2, x2);
    const int32_t poly = fx_divide_pot(wrap_add(fx_mul(wrap_add(fx_divide_pot(x4, 2), x3), one_third), x2), 1);
    return wrap_add(constant_term, fx_mul(constant_term, wrap_add(x, poly)));
}

/* exp(a) for a <= 0 given in Q4.27, as Q0.31: exp of a mod 1/4, times exp(-2^k) for each bit k of the rest. */
static int32_t exp_negative_q4(int32_t a)
{
    static const int32_t exp_of_minus_pot[6] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401};
    const int32_t one_quarter = 1 << 25, mask = one_quarter - 1;
    const int32_t a_mod = wrap_sub(a & mask, one_quarter);
    int32_t result = exp_quarter(saturating_pot(a_mod, 4));
    const int32_t remainder = wrap_sub(a_mod, a);
    for (int32_t k = 0; k < 6; ++k) { /* exp(-1/4), exp(-1/2), exp(-1), ..., exp(-8) */
        if (remainder & ((int32_t)1 << (25 + k))) {
            result = fx_mul(result, exp_of_minus_pot[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1) Q0.31, as Q0.31: three Newton-Raphson steps on the half denominator. */
static int32_t one_over_one_plus(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = wrap_add(1515870810, fx_mul(half_denominator, -1010580540)); /* 48/17 - 32/17 d, Q2.29 */
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t one_minus = wrap_sub(1 << 29, fx_mul(half_denominator, x));
        x = wrap_add(x, saturating_pot(fx_mul(x, one_minus), 2));
    }
    return saturating_pot(x, 1);
}

void dssdn_logistic(const dssdn_logistic_t *p, const int8_t *in, int8_t *out, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x = (int32_t)in[i] - p->in_zp;
        int32_t v;
        if (x <= -p->radius) {
            v = -128;
        } else if (x >= p->radius) {
            v = 127;
        } else {
            const int32_t a = fx_rescale(x, p->mult, p->shift); /* Q4.27 */
            int32_t q0 = 1 << 30;                                /* logistic(0) = 1/2 */
            if (a != 0) {
                const int32_t neg_abs = a > 0 ? wrap_sub(0, a) : a;
                const int32_t pos = one_over_one_plus(exp_negative_q4(neg_abs));
                q0 = a > 0 ? pos : wrap_sub(INT32_MAX, pos);
            }
            v = fx_divide_pot(q0, 23) - 128;
            v = DSSDN_CLAMP(v, -128, 127);
        }
        out[i] = (int8_t)v;
    }
}

void dssdn_copy(const dssdn_copy_t *p, const int8_t *src, int8_t *dst)
{
    for (int32_t i0 = 0; i0 < p->size[0]; ++i0) {
        for (int32_t i1 = 0; i1 < p->size[1]; ++i1) {
            for (int32_t i2 = 0; i2 < p->size[2]; ++i2) {
                const int8_t *s = src + i0 * p->src_str[0] + i1 * p->src_str[1] + i2 * p->src_str[2];
                int8_t *d = dst + i0 * p->dst_str[0] + i1 * p->dst_str[1] + i2 * p->dst_str[2];
                for (int32_t i3 = 0; i3 < p->size[3]; ++i3) {
                    d[i3 * p->dst_str[3]] = s[i3 * p->src_str[3]];
                }
            }
        }
    }
}

void dssdn_fill(int8_t *dst, int8_t value, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = value;
    }
}
