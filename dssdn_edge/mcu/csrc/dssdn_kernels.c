/* dssdn_kernels.c - see dssdn_kernels.h. Integer arithmetic only; every kernel mirrors the arithmetic of
 * TensorFlow Lite Micro's reference int8 kernel (tensorflow/lite/kernels/internal/reference/integer_ops). */
#include "dssdn_kernels.h"

#include <stddef.h>
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

int32_t dssdn_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    return requantize(x, multiplier, shift);
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

/* Two output channels (filter rows n bytes apart) over two input patches x and y: each filter word is
 * loaded and widened once for both pixels, each input word once for both channels (CMSIS-NN's
 * matrix-multiply idea): 20 instructions per 16 products, and the four sums stay in registers (four
 * channels by two pixels would need eight and spill). */
static inline void dot2x2(const int8_t *w, int32_t n, const int8_t *x, const int8_t *y, int32_t bias0,
                          int32_t bias1, int32_t *a, int32_t *b)
{
    int32_t a0 = bias0, a1 = bias1, b0 = bias0, b1 = bias1, i = 0;
    const int8_t *w1 = w + n;
    for (; i < n; i += 4) { /* n is a multiple of 4 (see dssdn_conv2d) */
        const uint32_t xv = load4(x + i), yv = load4(y + i), v0 = load4(w + i), v1 = load4(w1 + i);
        const uint32_t xe = __sxtb16(xv), xo = odd_bytes(xv), ye = __sxtb16(yv), yo = odd_bytes(yv);
        const uint32_t e0 = __sxtb16(v0), o0 = odd_bytes(v0), e1 = __sxtb16(v1), o1 = odd_bytes(v1);
        a0 = __smlad(o0, xo, __smlad(e0, xe, a0));
        b0 = __smlad(o0, yo, __smlad(e0, ye, b0));
        a1 = __smlad(o1, xo, __smlad(e1, xe, a1));
        b1 = __smlad(o1, yo, __smlad(e1, ye, b1));
    }
    a[0] = a0, a[1] = a1, b[0] = b0, b[1] = b1;
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

static inline void dot2x2(const int8_t *w, int32_t n, const int8_t *x, const int8_t *y, int32_t bias0,
                          int32_t bias1, int32_t *a, int32_t *b)
{
    const int8_t *w1 = w + n;
    int32_t a0 = bias0, a1 = bias1, b0 = bias0, b1 = bias1;
    for (int32_t i = 0; i < n; ++i) {
        a0 += (int32_t)w[i] * x[i], b0 += (int32_t)w[i] * y[i];
        a1 += (int32_t)w1[i] * x[i], b1 += (int32_t)w1[i] * y[i];
    }
    a[0] = a0, a[1] = a1, b[0] = b0, b[1] = b1;
}
#endif

/* The requantisation of an op's outputs, in locals: int8 stores may alias anything reachable through a
 * pointer, so fields read through the op's struct would be reloaded after every store. */
typedef struct {
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

/* The op's requantisation. When the parameters are per channel, every shift is in [-15, -1] (the usual
 * case) and there are at most DSSDN_RQ_CHANNELS channels, `round` (DSSDN_RQ_CHANNELS words of the caller's
 * stack) gets each channel's rounding term, output zero point and shift in one word, so the per-output work
 * is two loads and no selects. */
static inline requant_t requant_of(const dssdn_conv_t *p, int32_t *round)
{
    requant_t r;
    r.mult = p->mult;
    r.shift = p->shift;
    r.mask = p->per_channel ? -1 : 0;
    r.out_zp = p->out_zp;
    r.lo = p->act_min;
    r.hi = p->act_max;
    r.round = NULL;
#ifdef DSSDN_SINGLE_ROUNDING
    (void)round;
#else
    if (p->per_channel && p->out_c <= DSSDN_RQ_CHANNELS) {
        r.round = round;
        for (int32_t q = 0; q < p->out_c; ++q) {
            const int32_t e = -rq_shift(&r, q);
            if (e < 1 || e > 15) {
                r.round = NULL;
                break;
            }
            /* |2^(e-1) + zp * 2^e| < 2^23: shifted left by 8 it still fits */
            const int32_t term = ((int32_t)1 << (e - 1)) + r.out_zp * ((int32_t)1 << e);
            round[q] = (int32_t)((uint32_t)term << 8) | e;
        }
    }
#endif
    return r;
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

static inline int8_t requant_ch(const requant_t *r, int32_t acc, int32_t oc)
{
    const int32_t q = oc & r->mask;
    return (int8_t)clamp_out(requantize(acc, rq_mult(r, q), rq_shift(r, q)) + r->out_zp, r->lo, r->hi);
}

/* ((h + 2^(e-1) - [h < 0]) >> e) + zp from a rounding-table entry: requantize's rounding for left = 0 plus
 * the output zero point, the same bits (adding zp * 2^e before the floor division adds exactly zp after it;
 * |h| < 2^29 keeps the sum in range). On Arm, ASR by a register shifts by that register's low byte: e. */
static inline int32_t round_shift(int32_t h, int32_t rnd)
{
    const int32_t s = h + (rnd >> 8) - (int32_t)((uint32_t)h >> 31);
#if defined(__ARM_FEATURE_DSP)
    int32_t v;
    __asm__("asr %0, %1, %2" : "=r"(v) : "r"(s), "r"(rnd));
    return v;
#else
    return s >> (rnd & 31);
#endif
}

/* One output of channel q from the rounding table. */
static inline int8_t requant_one(const requant_t *r, int32_t acc, int32_t q, int full)
{
    const int32_t v = round_shift(high_mul(acc, rq_mult(r, q)), r->round[q]);
    if (full) {
        return (int8_t)sat8(v);
    }
    return (int8_t)DSSDN_CLAMP(v, r->lo, r->hi);
}

/* The table path of requant_n (per-channel parameters); full (no clamp besides int8's) is a constant at
 * each call, so each case compiles to a loop without the clamp it does not need. */
static inline void requant_run(const requant_t *r, const int32_t *acc, int32_t oc, int32_t n, int8_t *dst,
                               int full)
{
    for (int32_t i = 0; i < n; ++i) {
        dst[oc + i] = requant_one(r, acc[i], oc + i, full);
    }
}

/* Channels oc .. oc+n-1 of one pixel from their accumulators. Out of line: one copy in flash, and the call
 * frees the caller's registers (inlined into the MAC loops it spilled). */
static void requant_n(const requant_t *rq, const int32_t *acc, int32_t oc, int32_t n, int8_t *dst)
{
    const requant_t r = *rq;
    if (r.round) { /* per-channel parameters: what int8 converters emit for convs */
        if (r.lo == -128 && r.hi == 127) {
            requant_run(&r, acc, oc, n, dst, 1);
        } else {
            requant_run(&r, acc, oc, n, dst, 0);
        }
        return;
    }
    for (int32_t i = 0; i < n; ++i) {
        dst[oc + i] = requant_ch(&r, acc[i], oc + i);
    }
}

/* Every output channel of one pixel from its contiguous input patch x[n] (filter rows of n bytes): four
 * channels per pass over x, so each input word is loaded and widened once for all of them, their sums kept
 * in registers and requantised at once. */
static void conv_pixel(const int8_t *x, int32_t n, const int8_t *w, const int32_t *bias, const requant_t *rq,
                       int32_t out_c, int8_t *dst, int32_t *acc)
{
    /* acc: out_c sums when out_c <= DSSDN_RQ_CHANNELS (requantised by one call for the whole pixel), else 4 */
    const int32_t batch = out_c <= DSSDN_RQ_CHANNELS;
    int32_t oc = 0;
    for (; oc + 4 <= out_c; oc += 4, w += 4 * n) {
        int32_t *a = batch ? acc + oc : acc;
        a[0] = conv_bias(bias, oc), a[1] = conv_bias(bias, oc + 1), a[2] = conv_bias(bias, oc + 2);
        a[3] = conv_bias(bias, oc + 3);
        dot4(w, n, x, a);
        if (!batch) {
            requant_n(rq, a, oc, 4, dst);
        }
    }
    for (; oc < out_c; ++oc, w += n) {
        int32_t *a = batch ? acc + oc : acc;
        a[0] = dot(w, x, n, conv_bias(bias, oc));
        if (!batch) {
            requant_n(rq, a, oc, 1, dst);
        }
    }
    if (batch) {
        requant_n(rq, acc, 0, out_c, dst);
    }
}

/* Two output pixels from their patches x and y (filter rows of n bytes, n a multiple of 4: no tail loop
 * in the sum), channels two at a time. The sums (acc[DSSDN_RQ_CHANNELS], 2 * out_c <= DSSDN_RQ_CHANNELS)
 * are requantised by one call per pixel, writing dst (pixel x) and dst + out_c (pixel y) after all the
 * reads, so the output may overlap the input. */
static void conv_pair(const int8_t *x, const int8_t *y, int32_t n, const int8_t *w, const int32_t *bias,
                      const requant_t *rq, int32_t out_c, int8_t *dst, int32_t *acc)
{
    int32_t oc = 0;
    for (; oc + 2 <= out_c; oc += 2, w += 2 * n) {
        /* the second pixel's sums at a constant offset: no register for it */
        dot2x2(w, n, x, y, conv_bias(bias, oc), conv_bias(bias, oc + 1), acc + oc,
               acc + DSSDN_RQ_CHANNELS / 2 + oc);
    }
    requant_n(rq, acc, 0, oc, dst);
    requant_n(rq, acc + DSSDN_RQ_CHANNELS / 2, 0, oc, dst + out_c);
    for (; oc < out_c; ++oc, w += n) {
        const int32_t a = dot(w, x, n, conv_bias(bias, oc)), b = dot(w, y, n, conv_bias(bias, oc));
        requant_n(rq, &a, oc, 1, dst);
        requant_n(rq, &b, oc, 1, dst + out_c);
    }
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

/* The input patch of one output pixel, [k_h][k_w][in_c], with the zero point where the window leaves the
 * input. A window row inside the input whose taps are adjacent pixels is one run of k_w*in_c bytes (the
 * 2-channel first convs: one word per row). */
static void gather(const dssdn_conv_t *p, const int8_t *in, int32_t iy0, int32_t ix0, int8_t *patch)
{
    const int32_t row_run = p->dil_w == 1 && p->in_pix == p->in_c && ix0 >= 0 && ix0 + p->k_w <= p->in_w;
    const int32_t row_bytes = p->k_w * p->in_c;
    int8_t *dst = patch;
    for (int32_t ky = 0; ky < p->k_h; ++ky, dst += row_bytes) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            memset(dst, p->in_zp, (size_t)row_bytes);
            continue;
        }
        const int8_t *src = in + iy * p->in_row + ix0 * p->in_pix;
        if (row_run) {
            copy_bytes(dst, src, row_bytes);
        } else {
            for (int32_t kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dil_w;
                if (ix < 0 || ix >= p->in_w) {
                    memset(dst + kx * p->in_c, p->in_zp, (size_t)p->in_c);
                } else {
                    copy_bytes(dst + kx * p->in_c, src + kx * p->dil_w * p->in_pix, p->in_c);
                }
            }
        }
    }
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
    /* a 1x1 window without padding is always inside the input: its patch is the input pixel itself */
    const int32_t in_place = p->k_h == 1 && p->k_w == 1 && p->pad_t == 0 && p->pad_l == 0;
    /* pixels in pairs along a row when both pixels' sums fit acc and both patches the patch buffer */
    const int32_t pairs = use_patch && 2 * p->out_c <= DSSDN_RQ_CHANNELS && (filter_size & 3) == 0 &&
                          (in_place || 2 * filter_size <= DSSDN_MAX_PATCH);
    int32_t round[DSSDN_RQ_CHANNELS];
    int32_t acc[DSSDN_RQ_CHANNELS]; /* the sums of a pixel pair (or of one pixel, see conv_pixel) */
    int8_t patch[DSSDN_MAX_PATCH];
    int8_t pixel[DSSDN_MAX_PIXEL];
    const requant_t rq = requant_of(p, round);
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        int32_t ox = 0;
        for (; pairs && ox + 2 <= p->out_w; ox += 2) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l, ix1 = ix0 + p->stride_w;
            const int8_t *x = patch, *y = patch + filter_size;
            if (in_place) {
                x = in + iy0 * p->in_row + ix0 * p->in_pix;
                y = in + iy0 * p->in_row + ix1 * p->in_pix;
            } else {
                gather(p, in, iy0, ix0, patch);
                gather(p, in, iy0, ix1, patch + filter_size);
            }
            if (p->out_c & 1) { /* the odd channel is computed after the others are stored: via the buffer */
                conv_pair(x, y, filter_size, p->w, p->bias, &rq, p->out_c, pixel, acc);
                copy_bytes(out, pixel, 2 * p->out_c);
            } else { /* every read comes before the first store: the output may overlap the input */
                conv_pair(x, y, filter_size, p->w, p->bias, &rq, p->out_c, out, acc);
            }
            out += 2 * p->out_c;
        }
        for (; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *dst = p->buffered ? pixel : out;
            if (use_patch) {
                const int8_t *x = patch;
                if (in_place) {
                    x = in + iy0 * p->in_row + ix0 * p->in_pix;
                } else {
                    gather(p, in, iy0, ix0, patch);
                }
                conv_pixel(x, filter_size, p->w, p->bias, &rq, p->out_c, dst, acc);
            } else {
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const int32_t acc = conv_direct(p, in, iy0, ix0, oc, (oc / oc_per_group) * p->k_c,
                                                    conv_bias(p->bias, oc));
                    dst[oc] = requant_ch(&rq, acc, oc);
                }
            }
            if (p->buffered) {
                copy_bytes(out, pixel, p->out_c);
            }
            out += p->out_c;
        }
    }
}

/* Depthwise windows of more than DSSDN_MAX_TAPS taps: every tap checked per channel (same bits, slower). */
static void depthwise_generic(const dssdn_conv_t *p, const int8_t *in, int8_t *out)
{
    int32_t round[DSSDN_RQ_CHANNELS];
    const requant_t rq = requant_of(p, round);
    int8_t pixel[DSSDN_MAX_PIXEL];
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *dst = p->buffered ? pixel : out;
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                const int32_t ic = oc / p->depth_mult;
                int32_t acc = conv_bias(p->bias, oc);
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        const int32_t x = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w
                                              ? in[iy * p->in_row + ix * p->in_pix + ic] : p->in_zp;
                        acc += (int32_t)p->w[(ky * p->k_w + kx) * p->out_c + oc] * x;
                    }
                }
                dst[oc] = requant_ch(&rq, acc, oc);
            }
            if (p->buffered) {
                copy_bytes(out, pixel, p->out_c);
            }
            out += p->out_c;
        }
    }
}

/* Depthwise with depth_mult 1, channels in groups of four that share each tap's pointers (on the DSP path
 * one word of input and one of filter per tap, SXTB16 and SMLABB/SMLATT: the same exact products).
 * A group skips the taps whose four filter values are all zero: they add nothing, in bounds or not. That
 * pays on DSSDN, whose dilated depthwise convs give most channels only a centre tap (about 22% of the
 * (tap, group) pairs are nonzero); the lists are made once per op. */
typedef struct {
    uint8_t n;                    /* taps with a nonzero filter value in the group */
    uint8_t tap[DSSDN_MAX_TAPS];  /* their indices, ky * k_w + kx */
} dw_group_t;

static void dw_groups(const int8_t *w, int32_t taps, int32_t oc_n, int32_t quads, dw_group_t *g)
{
    for (int32_t q = 0; q < quads; ++q) {
        g[q].n = 0;
        for (int32_t t = 0; t < taps; ++t) {
            const int8_t *v = w + t * oc_n + 4 * q;
            if (v[0] | v[1] | v[2] | v[3]) {
                g[q].tap[g[q].n++] = (uint8_t)t;
            }
        }
    }
}

/* Every channel of one output pixel; tp[t] is tap t's input pixel, NULL outside the input (read as the
 * zero point). Sums of the groups go to acc (requantised by the caller); the other channels are done here. */
static void dw_pixel(const dssdn_conv_t *p, const int8_t *const *tp, const dw_group_t *groups, int32_t quads,
                     int32_t *acc)
{
    const int32_t oc_n = p->out_c, zp = p->in_zp;
    const int8_t *const w = p->w;
    for (int32_t q = 0; q < quads; ++q) {
        const int32_t oc = 4 * q;
        int32_t a0 = conv_bias(p->bias, oc), a1 = conv_bias(p->bias, oc + 1);
        int32_t a2 = conv_bias(p->bias, oc + 2), a3 = conv_bias(p->bias, oc + 3);
        const dw_group_t *g = &groups[q];
        for (int32_t k = 0; k < g->n; ++k) {
            const int32_t t = g->tap[k];
            const int8_t *wt = w + t * oc_n + oc, *x = tp[t];
            if (x) {
                x += oc;
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
                const uint32_t xv = load4(x), wv = load4(wt);
                const uint32_t xe = __sxtb16(xv), we = __sxtb16(wv), xo = odd_bytes(xv), wo = odd_bytes(wv);
                a0 = __smlabb(we, xe, a0);
                a2 = __smlatt(we, xe, a2);
                a1 = __smlabb(wo, xo, a1);
                a3 = __smlatt(wo, xo, a3);
#else
                a0 += (int32_t)wt[0] * x[0];
                a1 += (int32_t)wt[1] * x[1];
                a2 += (int32_t)wt[2] * x[2];
                a3 += (int32_t)wt[3] * x[3];
#endif
            } else {
                a0 += (int32_t)wt[0] * zp;
                a1 += (int32_t)wt[1] * zp;
                a2 += (int32_t)wt[2] * zp;
                a3 += (int32_t)wt[3] * zp;
            }
        }
        acc[oc] = a0;
        acc[oc + 1] = a1;
        acc[oc + 2] = a2;
        acc[oc + 3] = a3;
    }
}

/* Depthwise: per output pixel, each tap's input pixel is found once (NULL outside the input); the channel
 * loops then have no bounds checks. */
void dssdn_depthwise_conv2d(const dssdn_conv_t *params, const int8_t *in, int8_t *out)
{
    const dssdn_conv_t local = *params; /* see dssdn_conv2d */
    const dssdn_conv_t *const p = &local;
    const int32_t zp = p->in_zp, oc_n = p->out_c, dm = p->depth_mult, taps = p->k_h * p->k_w;
    if (taps > DSSDN_MAX_TAPS) {
        depthwise_generic(p, in, out);
        return;
    }
    /* groups of four channels when depth_mult is 1 and the sums fit the per-pixel buffer */
    const int32_t quads = dm == 1 && oc_n <= DSSDN_RQ_CHANNELS ? oc_n / 4 : 0;
    /* the groups' outputs are stored after all the pixel's reads; other channels store as they go */
    const int32_t via_pixel = p->buffered && 4 * quads < oc_n;
    int32_t acc[DSSDN_RQ_CHANNELS];
    int32_t round[DSSDN_RQ_CHANNELS];
    dw_group_t groups[DSSDN_RQ_CHANNELS / 4];
    int8_t pixel[DSSDN_MAX_PIXEL];
    const int8_t *tp[DSSDN_MAX_TAPS];
    const requant_t rq = requant_of(p, round);
    /* the taps some channel reads (all of them when channels are left outside the groups), with their
     * offsets from the window's corner: only these get an input pointer per pixel */
    uint8_t used[DSSDN_MAX_TAPS];
    int16_t dy[DSSDN_MAX_TAPS], dx[DSSDN_MAX_TAPS];
    int32_t n_used = 0;
    dw_groups(p->w, taps, oc_n, quads, groups);
    for (int32_t t = 0; t < taps; ++t) {
        int32_t read = 4 * quads < oc_n;
        for (int32_t q = 0; q < quads; ++q) {
            for (int32_t k = 0; k < groups[q].n; ++k) {
                read |= groups[q].tap[k] == t;
            }
        }
        if (read) {
            used[n_used] = (uint8_t)t;
            dy[n_used] = (int16_t)(t / p->k_w * p->dil_h);
            dx[n_used++] = (int16_t)(t % p->k_w * p->dil_w);
        }
    }
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *dst = via_pixel ? pixel : out;
            for (int32_t k = 0; k < n_used; ++k) {
                const int32_t iy = iy0 + dy[k], ix = ix0 + dx[k];
                tp[used[k]] = (uint32_t)iy < (uint32_t)p->in_h && (uint32_t)ix < (uint32_t)p->in_w
                                  ? in + iy * p->in_row + ix * p->in_pix : NULL;
            }
            dw_pixel(p, tp, groups, quads, acc);
            requant_n(&rq, acc, 0, 4 * quads, dst);
            for (int32_t oc = 4 * quads; oc < oc_n; ++oc) {
                const int32_t ic = oc / dm;
                int32_t a = conv_bias(p->bias, oc);
                for (int32_t j = 0; j < taps; ++j) {
                    a += (int32_t)p->w[j * oc_n + oc] * (tp[j] ? tp[j][ic] : zp);
                }
                dst[oc] = requant_ch(&rq, a, oc);
            }
            if (via_pixel) {
                copy_bytes(out, pixel, oc_n);
            }
            out += oc_n;
        }
    }
}

void dssdn_fully_connected(const dssdn_fc_t *p, const int8_t *in, int8_t *out)
{
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * p->depth;
        for (int32_t u = 0; u < p->units; ++u) {
            const int8_t *w = p->w + u * p->depth;
            int32_t acc = p->bias ? p->bias[u] : 0;
            if (p->w_zp == 0) {
                acc = dot(w, x, p->depth, acc);
            } else {
                for (int32_t d = 0; d < p->depth; ++d) {
                    acc += ((int32_t)w[d] - p->w_zp) * (int32_t)x[d];
                }
            }
            const int32_t q = p->per_channel ? u : 0;
            const int32_t v = requantize(acc, p->mult[q], p->shift[q]) + p->out_zp;
            *out++ = (int8_t)DSSDN_CLAMP(v, p->act_min, p->act_max);
        }
    }
}

/* A requantisation whose parameters are loop-invariant (ADD, MUL), prepared once per row as ready
 * operands: requantize's formula with the left shift (plus an op's own pre-shift and high_mul's doubling),
 * the rounding term 2^right and the final shift right + 1. */
typedef struct {
    int32_t m, left2, rnd, right1;
} rq_fixed_t;

static inline rq_fixed_t rq_fixed(int32_t m, int32_t shift, int32_t pre_shift)
{
    rq_fixed_t f;
    const int32_t right = shift > 0 ? 0 : -shift;
    f.m = m;
    f.left2 = pre_shift + (shift > 0 ? shift : 0) + 1;
    f.rnd = (int32_t)1 << right;
    f.right1 = right + 1;
    return f;
}

/* requantize(x * 2^pre_shift, m, shift), the same bits (see requantize). */
static inline int32_t rq_apply(const rq_fixed_t *f, int32_t x)
{
    const int32_t x2 = (int32_t)((uint32_t)x << f->left2); /* 2 * x * 2^left */
#if defined(__ARM_FEATURE_DSP)
    int32_t h;
    __asm__("smmulr %0, %1, %2" : "=r"(h) : "r"(x2), "r"(f->m));
#else
    const int32_t h = (int32_t)(((int64_t)x2 * f->m + ((int64_t)1 << 31)) >> 32);
#endif
    return (2 * h + f->rnd - (int32_t)((uint32_t)h >> 31)) >> f->right1;
}

/* The loop of binary_row; flat (both strides 1) and full (no activation clamp besides int8's) are constants
 * at each call, so the common case (a residual ADD over contiguous tensors) compiles without the strides
 * and the clamp, which frees registers the general loop spills. */
static inline void binary_run(const dssdn_binary_t *p, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                              int32_t n, int8_t *out, int is_add, int flat, int full)
{
    const int32_t a_zp = p->a_zp, b_zp = p->b_zp, out_zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const rq_fixed_t fo = rq_fixed(p->out_mult, p->out_shift, 0);
    const rq_fixed_t fa = rq_fixed(p->a_mult, p->a_shift, p->left_shift);
    const rq_fixed_t fb = rq_fixed(p->b_mult, p->b_shift, p->left_shift);
    if (flat) {
        sa = sb = 1;
    }
    for (int32_t i = 0; i < n; ++i, a += sa, b += sb) {
        int32_t v = is_add ? rq_apply(&fo, rq_apply(&fa, *a - a_zp) + rq_apply(&fb, *b - b_zp))
                           : rq_apply(&fo, (*a - a_zp) * (*b - b_zp));
        v = sat8(v + out_zp);
        out[i] = (int8_t)(full ? v : DSSDN_CLAMP(v, lo, hi));
    }
}

/* One row of an element-wise op: n elements at element strides sa, sb (0 for a broadcast input). Out of
 * line so each op's arithmetic exists once in flash; every parameter is read once, into locals.
 * ADD follows TFLM's reference: both inputs to a common scale, the sum, then the output scale. */
static void binary_row(const dssdn_binary_t *p, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                       int32_t n, int8_t *out, int is_add)
{
    /* the residual ADDs and the squeeze-excitation MULs (rows of channels): most of the element-wise work */
    const int fast = sa == 1 && sb == 1 && p->act_min == -128 && p->act_max == 127;
    if (is_add && fast) {
        binary_run(p, a, 1, b, 1, n, out, 1, 1, 1);
    } else if (is_add) {
        binary_run(p, a, sa, b, sb, n, out, 1, 0, 0);
    } else if (fast) {
        binary_run(p, a, 1, b, 1, n, out, 0, 1, 1);
    } else {
        binary_run(p, a, sa, b, sb, n, out, 0, 0, 0);
    }
}

/* One flat row when neither input is broadcast (the common residual ADD), else the 4-D walk with strides. */
static void binary(const dssdn_binary_t *p, const int8_t *a, const int8_t *b, int8_t *out, int is_add)
{
    int32_t n0 = p->dims[0], n1 = p->dims[1], n2 = p->dims[2], n3 = p->dims[3];
    int32_t sa = p->a_str[3], sb = p->b_str[3];
    if (sa == 1 && sb == 1 && p->a_str[2] == n3 && p->b_str[2] == n3 && p->a_str[1] == n2 * n3 &&
        p->b_str[1] == n2 * n3 && p->a_str[0] == n1 * p->a_str[1] && p->b_str[0] == n1 * p->b_str[1]) {
        n3 *= n0 * n1 * n2; /* one row over everything (one call site, so binary_row is not inlined twice) */
        n0 = n1 = n2 = 1;
    }
    for (int32_t i0 = 0; i0 < n0; ++i0) {
        for (int32_t i1 = 0; i1 < n1; ++i1) {
            for (int32_t i2 = 0; i2 < n2; ++i2) {
                const int8_t *pa = a + i0 * p->a_str[0] + i1 * p->a_str[1] + i2 * p->a_str[2];
                const int8_t *pb = b + i0 * p->b_str[0] + i1 * p->b_str[1] + i2 * p->b_str[2];
                binary_row(p, pa, sa, pb, sb, n3, out, is_add);
                out += n3;
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

void dssdn_lookup(const int8_t table[256], const int8_t *in, int8_t *out, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        out[i] = table[(int32_t)in[i] + 128];
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
