/* dssdn_conv.c - CONV_2D and DEPTHWISE_CONV_2D (see dssdn_kernels.h). Integer arithmetic only; both mirror
 * TensorFlow Lite Micro's reference int8 kernels (tensorflow/lite/kernels/internal/reference/integer_ops)
 * bit for bit, with the work arranged for a Cortex-M: output pixels in pairs, channels in groups, one
 * requantisation call per pixel. */
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
static __attribute__((noinline)) const int32_t *rq_table_fill(const dssdn_conv_t *p, int32_t *mult,
                                                             const int8_t *shift, int32_t *round)
{
#ifdef DSSDN_SINGLE_ROUNDING
    (void)p, (void)mult, (void)shift, (void)round;
    return NULL;
#else
    int32_t table = p->per_channel && p->out_c <= DSSDN_RQ_CHANNELS;
    for (int32_t q = 0; table && q < p->out_c; ++q) {
        table = shift[q] <= -1 && shift[q] >= -15 && mult[q] >= (int32_t)1 << 30;
    }
    if (!table) {
        return NULL;
    }
    for (int32_t q = 0; q < p->out_c; ++q) {
        const int32_t e = -shift[q];
        /* |2^(e-1) + zp * 2^e| < 2^23: shifted left by 8 it still fits */
        const int32_t term = ((int32_t)1 << (e - 1)) + p->out_zp * ((int32_t)1 << e);
        round[q] = (int32_t)((uint32_t)term << 8) | e;
        mult[q] = (int32_t)((uint32_t)mult[q] << 1);
    }
    return round;
#endif
}

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
    r.round = rq_table_fill(p, (int32_t *)(uintptr_t)a.mult, a.shift, round);
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

/* Without the table (with it the multipliers are the table's, see rq_table_fill): requant_n's other path. */
static inline int8_t requant_ch(const requant_t *r, int32_t acc, int32_t oc)
{
    const int32_t q = oc & r->mask;
    return (int8_t)clamp_out(requantize(acc, rq_mult(r, q), rq_shift(r, q)) + r->out_zp, r->lo, r->hi);
}

/* Channels oc .. oc+n-1 of one pixel from their accumulators (the table path: one loop, SSAT then the
 * activation's clamp). Out of line: one copy in flash, and the call frees the caller's registers (inlined
 * into the MAC loops it spilled). */
static void requant_n(const requant_t *rq, const int32_t *acc, int32_t oc, int32_t n, int8_t *dst)
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

/* The pixel pair's patches x and y (n bytes each, n a multiple of 4) widened into wide[2n] words (8n bytes, see
 * dot2x2_wide), once per pair rather than once per channel pair. x and y may lie in wide's last 2n bytes: the
 * input word at byte j is read before wide's bytes 4j .. 4j+15 are written, and those end at 4j + 16 <= 6n + j,
 * before any input word still to be read. */
static void widen_pair(const int8_t *x, const int8_t *y, int32_t n, uint32_t *wide)
{
    for (int32_t i = 0; i < n; i += 4, wide += 4) {
        const uint32_t xv = load_word(x + i), yv = load_word(y + i);
        wide[0] = even16(xv), wide[1] = odd16(xv), wide[2] = even16(yv), wide[3] = odd16(yv);
    }
}

/* Channels c and c + 1 of a pixel pair requantised straight from the sums s = {x's, x's + 1, y's, y's + 1}
 * (table path, no clamp besides int8's): pixel x to dst, pixel y to dst + out_c. */
static inline __attribute__((always_inline)) void requant_2x2(const requant_t *r, int32_t c, int32_t out_c,
                                                              const int32_t *s, int8_t *dst)
{
    int32_t m = r->mult[c], rnd = r->round[c];
    dst[c] = (int8_t)sat8(rq_table(s[0], m, rnd));
    dst[out_c + c] = (int8_t)sat8(rq_table(s[2], m, rnd));
    m = r->mult[c + 1], rnd = r->round[c + 1];
    dst[c + 1] = (int8_t)sat8(rq_table(s[1], m, rnd));
    dst[out_c + c + 1] = (int8_t)sat8(rq_table(s[3], m, rnd));
}

/* The channel pairs of conv_pair_wide, each pair's four sums requantised at once, from registers: the
 * plain twin of pairs_asm (every other build, other window sizes), unrolled when n is a constant. */
static inline __attribute__((always_inline)) void pairs_wide(const uint32_t *wide, int32_t n, const int8_t *w,
                                                             const requant_t *r, int32_t out_c, int8_t *dst,
                                                             int unroll)
{
    for (int32_t c = 0; c < out_c; c += 2, w += 2 * n) {
        int32_t s[4];
        dot2x2_wide(w, n, n, wide, r->bias[c], r->bias[c + 1], s, s + 2, unroll);
        requant_2x2(r, c, out_c, s, dst);
    }
}

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
/* pairs_wide for the window sizes the DSSDN models use (n = 12, 16, 24 bytes), as hand-scheduled assembly:
 * gcc's allocation of the unrolled C spills the loop state and reloads widened words. Here the whole channel
 * pair lives in 13 registers: the sums a0 a1 (pixel x) b0 b1 (pixel y), two filter words and their halves,
 * one widened word, the filter, widened-patch, bias and output pointers; 18 instructions per input word and
 * about 40 for the requantisation and the loop. The same exact operations as the plain twin: SXTB16 (ROR #8)
 * and SMLAD for the sums (the first word seeds pixel y's sums from the biases), then rq_table's ADD, ADD,
 * SMMLAR, ASR and SSAT per output. The table's multipliers and entries are read at fixed byte offsets from
 * the bias pointer (moff, roff); pixel y's outputs are out_c bytes after pixel x's. */
#define DSSDN_ASM_STEP0(N)                                                                                    \
    "ldr %[v0], [%[w]]\n\t"                                                                                   \
    "ldr %[v1], [%[w], #" #N "]\n\t"                                                                          \
    "ldr %[x], [%[wide], #8]\n\t"                                                                             \
    "sxtb16 %[e0], %[v0]\n\t"                                                                                 \
    "sxtb16 %[e1], %[v1]\n\t"                                                                                 \
    "smlad %[b0], %[e0], %[x], %[a0]\n\t"                                                                     \
    "smlad %[b1], %[e1], %[x], %[a1]\n\t"                                                                     \
    "ldr %[x], [%[wide]]\n\t"                                                                                 \
    "smlad %[a0], %[e0], %[x], %[a0]\n\t"                                                                     \
    "smlad %[a1], %[e1], %[x], %[a1]\n\t"                                                                     \
    "ldr %[x], [%[wide], #4]\n\t"                                                                             \
    "sxtb16 %[v0], %[v0], ror #8\n\t"                                                                         \
    "sxtb16 %[v1], %[v1], ror #8\n\t"                                                                         \
    "smlad %[a0], %[v0], %[x], %[a0]\n\t"                                                                     \
    "smlad %[a1], %[v1], %[x], %[a1]\n\t"                                                                     \
    "ldr %[x], [%[wide], #12]\n\t"                                                                            \
    "smlad %[b0], %[v0], %[x], %[b0]\n\t"                                                                     \
    "smlad %[b1], %[v1], %[x], %[b1]\n\t"
#define DSSDN_ASM_STEP(i, N)                                                                                  \
    "ldr %[v0], [%[w], #4*" #i "]\n\t"                                                                        \
    "ldr %[v1], [%[w], #" #N "+4*" #i "]\n\t"                                                                 \
    "ldr %[x], [%[wide], #16*" #i "]\n\t"                                                                     \
    "sxtb16 %[e0], %[v0]\n\t"                                                                                 \
    "sxtb16 %[e1], %[v1]\n\t"                                                                                 \
    "smlad %[a0], %[e0], %[x], %[a0]\n\t"                                                                     \
    "smlad %[a1], %[e1], %[x], %[a1]\n\t"                                                                     \
    "ldr %[x], [%[wide], #16*" #i "+8]\n\t"                                                                   \
    "smlad %[b0], %[e0], %[x], %[b0]\n\t"                                                                     \
    "smlad %[b1], %[e1], %[x], %[b1]\n\t"                                                                     \
    "ldr %[x], [%[wide], #16*" #i "+4]\n\t"                                                                   \
    "sxtb16 %[v0], %[v0], ror #8\n\t"                                                                         \
    "sxtb16 %[v1], %[v1], ror #8\n\t"                                                                         \
    "smlad %[a0], %[v0], %[x], %[a0]\n\t"                                                                     \
    "smlad %[a1], %[v1], %[x], %[a1]\n\t"                                                                     \
    "ldr %[x], [%[wide], #16*" #i "+12]\n\t"                                                                  \
    "smlad %[b0], %[v0], %[x], %[b0]\n\t"                                                                     \
    "smlad %[b1], %[v1], %[x], %[b1]\n\t"
/* one output: s = SSAT8(SMMLAR(s, m, s + (s >> 31) + (rnd >> 8)) >> rnd), stored at [addr] */
#define DSSDN_ASM_RQ(s, m, rnd, addr)                                                                         \
    "add %[x], %[" #s "], %[" #s "], asr #31\n\t"                                                             \
    "add %[x], %[x], %[" #rnd "], asr #8\n\t"                                                                 \
    "smmlar %[" #s "], %[" #s "], %[" #m "], %[x]\n\t"                                                        \
    "asr %[" #s "], %[" #s "], %[" #rnd "]\n\t"                                                               \
    "ssat %[" #s "], #8, %[" #s "]\n\t"                                                                       \
    "strb %[" #s "], " addr "\n\t"
#define DSSDN_ASM_PAIRS(N, STEPS)                                                                             \
    __asm__ volatile("1:\n\t"                                                                                 \
                     "ldrd %[a0], %[a1], [%[bias]]\n\t" STEPS                                                 \
                     "ldr %[x], %[moff]\n\t"                                                                  \
                     "add %[x], %[bias], %[x]\n\t"                                                            \
                     "ldrd %[v0], %[v1], [%[x]]\n\t"                                                          \
                     "ldr %[x], %[roff]\n\t"                                                                  \
                     "add %[x], %[bias], %[x]\n\t"                                                            \
                     "ldrd %[e0], %[e1], [%[x]]\n\t" DSSDN_ASM_RQ(a0, v0, e0, "[%[dst]]")                     \
                         DSSDN_ASM_RQ(a1, v1, e1, "[%[dst], #1]")                                             \
                     "ldr %[a0], %[yoff]\n\t"                                                                 \
                     "add %[a0], %[dst], %[a0]\n\t" DSSDN_ASM_RQ(b0, v0, e0, "[%[a0]]")                       \
                         DSSDN_ASM_RQ(b1, v1, e1, "[%[a0], #1]")                                              \
                     "adds %[bias], %[bias], #8\n\t"                                                          \
                     "adds %[dst], %[dst], #2\n\t"                                                            \
                     "add %[w], %[w], #2*" #N "\n\t"                                                          \
                     "ldr %[x], %[wend]\n\t"                                                                  \
                     "cmp %[w], %[x]\n\t"                                                                     \
                     "bne 1b\n\t"                                                                             \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1), [v0] "=&r"(v0),        \
                       [v1] "=&r"(v1), [e0] "=&r"(e0), [e1] "=&r"(e1), [x] "=&r"(x), [w] "+&r"(w),            \
                       [bias] "+&r"(bias), [dst] "+&r"(dst)                                                   \
                     : [wide] "r"(wide), [moff] "m"(moff), [roff] "m"(roff), [yoff] "m"(yoff), [wend] "m"(wend) \
                     : "cc", "memory")
#define DSSDN_ASM_STEPS3(N) DSSDN_ASM_STEP0(N) DSSDN_ASM_STEP(1, N) DSSDN_ASM_STEP(2, N)
#define DSSDN_ASM_STEPS4(N) DSSDN_ASM_STEPS3(N) DSSDN_ASM_STEP(3, N)
#define DSSDN_ASM_STEPS6(N) DSSDN_ASM_STEPS4(N) DSSDN_ASM_STEP(4, N) DSSDN_ASM_STEP(5, N)

/* The channel pairs (out_c even and > 0, n = 12, 16 or 24) as above. */
static void pairs_asm(const uint32_t *wide, int32_t n, const int8_t *w, const requant_t *r, int32_t out_c,
                      int8_t *dst)
{
    const int32_t *bias = r->bias;
    /* byte offsets from the bias pointer, read from the stack inside the loop (no registers left) */
    const int32_t moff = (int32_t)((uintptr_t)r->mult - (uintptr_t)bias);
    const int32_t roff = (int32_t)((uintptr_t)r->round - (uintptr_t)bias), yoff = out_c;
    const int8_t *const wend = w + out_c * n;
    int32_t a0, a1, b0, b1;
    uint32_t v0, v1, e0, e1, x;
    if (n == 12) {
        DSSDN_ASM_PAIRS(12, DSSDN_ASM_STEPS3(12));
    } else if (n == 16) {
        DSSDN_ASM_PAIRS(16, DSSDN_ASM_STEPS4(16));
    } else {
        DSSDN_ASM_PAIRS(24, DSSDN_ASM_STEPS6(24));
    }
}
#endif

/* Two output pixels from their widened patches (n bytes each, n a multiple of 4: no tail loop in the sum),
 * channels two at a time (out_c even), on the table path without a clamp (the caller checks both): pixel x
 * to dst, pixel y to dst + out_c. The patches were widened into a buffer of their own, so the outputs may
 * overlap the input. Inlined into the pixel loop: no call per pair. */
static inline __attribute__((always_inline)) void conv_pair_wide(const uint32_t *wide, int32_t n, const int8_t *w,
                                                                 const requant_t *rq, int32_t out_c, int8_t *dst)
{
    const requant_t r = *rq;
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
    if (n == 12 || n == 16 || n == 24) {
        pairs_asm(wide, n, w, &r, out_c, dst);
    } else {
        pairs_wide(wide, n, w, &r, out_c, dst, 0);
    }
#else
    /* (each unrolled size only where the patch buffer can hold its widened pair: no bounds warnings) */
    if (n == 12 && 8 * 12 <= DSSDN_MAX_PATCH) {
        pairs_wide(wide, 12, w, &r, out_c, dst, 1);
    } else if (n == 16 && 8 * 16 <= DSSDN_MAX_PATCH) {
        pairs_wide(wide, 16, w, &r, out_c, dst, 1);
    } else if (n == 24 && 8 * 24 <= DSSDN_MAX_PATCH) {
        pairs_wide(wide, 24, w, &r, out_c, dst, 1);
    } else {
        pairs_wide(wide, n, w, &r, out_c, dst, 0);
    }
#endif
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
static __attribute__((cold)) void gather(const dssdn_conv_t *p, const int8_t *in, int32_t iy0, int32_t ix0,
                                         int8_t *patch)
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
static __attribute__((noinline, cold)) int32_t conv_direct(const dssdn_conv_t *p, const int8_t *in, int32_t iy0,
                                                            int32_t ix0, int32_t oc, int32_t c0, int32_t acc)
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
    int32_t round[DSSDN_RQ_CHANNELS];
    const requant_t rq = requant_of(p, round);
    /* pixels in pairs along a row on the table path without a clamp (conv_pair_wide) when their widened
     * patches (8 * filter_size bytes, see widen_pair) fit the patch buffer */
    const int32_t pairs = use_patch && rq.round && rq.lo == -128 && rq.hi == 127 && (filter_size & 3) == 0 &&
                          (p->out_c & 1) == 0 && 8 * filter_size <= DSSDN_MAX_PATCH / 4 * 4;
    /* gathered windows whose rows are adjacent pixels, whole words: where inside the input, not gathered */
    const int32_t row_bytes = p->k_w * p->in_c;
    const int32_t rows_direct = p->dil_w == 1 && p->in_pix == p->in_c && (row_bytes & 3) == 0;
    const int32_t iy_max = p->in_h - 1 - (p->k_h - 1) * p->dil_h, ix_max = p->in_w - p->k_w;
    int32_t acc[DSSDN_RQ_CHANNELS]; /* the sums of one pixel (see conv_pixel) */
    /* the gathered patches, or a widened pair (at least one group of four words, so that even a build without
     * pairs compiles their addressing without bounds warnings) */
    uint32_t patch_words[DSSDN_MAX_PATCH < 16 ? 4 : (DSSDN_MAX_PATCH + 3) / 4];
    int8_t *const patch = (int8_t *)patch_words;
    int8_t pixel[DSSDN_MAX_PIXEL];
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        int32_t ox = 0;
        for (; pairs && ox + 2 <= p->out_w; ox += 2) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l, ix1 = ix0 + p->stride_w;
            if (in_place) {
                widen_pair(in + iy0 * p->in_row + ix0 * p->in_pix, in + iy0 * p->in_row + ix1 * p->in_pix,
                           filter_size, patch_words);
            } else if (rows_direct && iy0 >= 0 && iy0 <= iy_max && ix0 >= 0 && ix1 <= ix_max) {
                /* both windows inside the input, rows of whole words: each row widened straight from it */
                const int8_t *src = in + iy0 * p->in_row + ix0 * p->in_pix;
                const int32_t dx = (ix1 - ix0) * p->in_pix, dy = p->dil_h * p->in_row;
                if (row_bytes == 4) { /* one word per row (the 2-channel first convs): no inner loop */
                    uint32_t *wd = patch_words;
                    for (int32_t ky = 0; ky < p->k_h; ++ky, src += dy, wd += 4) {
                        const uint32_t xv = load_word(src), yv = load_word(src + dx);
                        wd[0] = even16(xv), wd[1] = odd16(xv), wd[2] = even16(yv), wd[3] = odd16(yv);
                    }
                } else {
                    for (int32_t ky = 0; ky < p->k_h; ++ky, src += dy) {
                        widen_pair(src, src + dx, row_bytes, patch_words + ky * row_bytes);
                    }
                }
            } else { /* gathered into the buffer's tail, then widened in place */
                gather(p, in, iy0, ix0, patch + 6 * filter_size);
                gather(p, in, iy0, ix1, patch + 7 * filter_size);
                widen_pair(patch + 6 * filter_size, patch + 7 * filter_size, filter_size, patch_words);
            }
            /* the outputs are stored after all the reads, so they may overlap the input */
            conv_pair_wide(patch_words, filter_size, p->w, &rq, p->out_c, out);
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
                conv_pixel(x, filter_size, p->w, rq.bias, &rq, p->out_c, dst, acc);
            } else {
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const int32_t acc = conv_direct(p, in, iy0, ix0, oc, (oc / oc_per_group) * p->k_c,
                                                    conv_bias(rq.bias, oc));
                    requant_n(&rq, &acc, oc, 1, dst);
                }
            }
            if (p->buffered) {
                copy_bytes(out, pixel, p->out_c);
            }
            out += p->out_c;
        }
    }
}

/* Depthwise windows of more than DSSDN_MAX_TAPS taps or reaching over 127 pixels: every tap checked per channel
 * (same bits, slower). */
static __attribute__((noinline, cold)) void depthwise_generic(const dssdn_conv_t *p, const int8_t *in, int8_t *out)
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
                int32_t acc = conv_bias(rq.bias, oc);
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        const int32_t x = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w
                                              ? in[iy * p->in_row + ix * p->in_pix + ic] : p->in_zp;
                        acc += (int32_t)p->w[(ky * p->k_w + kx) * p->out_c + oc] * x;
                    }
                }
                requant_n(&rq, &acc, oc, 1, dst);
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

/* The channels of groups q_one.. (which all have the same single tap t, inside the input here) in one pass
 * without a tap list, requantised as they go (table path, no clamp besides int8's) into dst. The caller
 * checks that no store can reach an input byte the pass still reads: dst at or below the tap's pixel (each
 * store is at or below the bytes already read) or past it. */
static void dw_single_tap(const requant_t *r, const int8_t *x, const int8_t *wt, int32_t oc0, int32_t oc_end,
                          int8_t *dst)
{
    const int32_t *bias = r->bias, *m2 = r->mult, *rnd = r->round;
    for (int32_t c = oc0; c < oc_end; c += 4) {
        int32_t a0, a1, a2, a3;
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
        const uint32_t xv = load4(x + c), wv = load4(wt + c);
        const uint32_t xe = __sxtb16(xv), we = __sxtb16(wv), xo = odd_bytes(xv), wo = odd_bytes(wv);
        a0 = __smlabb(we, xe, bias[c]);
        a1 = __smlabb(wo, xo, bias[c + 1]);
        a2 = __smlatt(we, xe, bias[c + 2]);
        a3 = __smlatt(wo, xo, bias[c + 3]);
#else
        a0 = bias[c] + (int32_t)wt[c] * x[c];
        a1 = bias[c + 1] + (int32_t)wt[c + 1] * x[c + 1];
        a2 = bias[c + 2] + (int32_t)wt[c + 2] * x[c + 2];
        a3 = bias[c + 3] + (int32_t)wt[c + 3] * x[c + 3];
#endif
        dst[c] = (int8_t)sat8(rq_table(a0, m2[c], rnd[c]));
        dst[c + 1] = (int8_t)sat8(rq_table(a1, m2[c + 1], rnd[c + 1]));
        dst[c + 2] = (int8_t)sat8(rq_table(a2, m2[c + 2], rnd[c + 2]));
        dst[c + 3] = (int8_t)sat8(rq_table(a3, m2[c + 3], rnd[c + 3]));
    }
}

/* One tap of a group of four channels, a0..a3 += w * x (DSP: SXTB16 and SMLABB/SMLATT, the same exact
 * products). */
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#define DSSDN_DW_MAC4(x, wt)                                                                                  \
    do {                                                                                                      \
        const uint32_t xv = load4(x), wv = load4(wt);                                                         \
        const uint32_t xe = __sxtb16(xv), we = __sxtb16(wv), xo = odd_bytes(xv), wo = odd_bytes(wv);          \
        a0 = __smlabb(we, xe, a0);                                                                            \
        a2 = __smlatt(we, xe, a2);                                                                            \
        a1 = __smlabb(wo, xo, a1);                                                                            \
        a3 = __smlatt(wo, xo, a3);                                                                            \
    } while (0)
#else
#define DSSDN_DW_MAC4(x, wt)                                                                                  \
    do {                                                                                                      \
        a0 += (int32_t)(wt)[0] * (x)[0];                                                                      \
        a1 += (int32_t)(wt)[1] * (x)[1];                                                                      \
        a2 += (int32_t)(wt)[2] * (x)[2];                                                                      \
        a3 += (int32_t)(wt)[3] * (x)[3];                                                                      \
    } while (0)
#endif

/* The groups' channels of one output pixel. Inside the input (corner not NULL) tap t's input pixel is
 * corner + off[t]; elsewhere tp[t], NULL outside the input (read as the zero point). Sums go to acc,
 * requantised by the caller; returns how many (from channel 0). With `fused` the groups q_one.. (one shared
 * tap), where that tap is inside the input and no store can reach it, go straight to dst instead
 * (dw_single_tap), after every other group's reads. */
static int32_t dw_pixel(const dssdn_conv_t *p, const requant_t *r, const int8_t *const *tp,
                        const int8_t *corner, const int32_t *off, const dw_group_t *groups, int32_t quads,
                        int32_t q_one, int32_t fused, int32_t *acc, int8_t *dst)
{
    const int32_t oc_n = p->out_c, zp = p->in_zp;
    const int8_t *const w = p->w;
    const int32_t *const bias = r->bias;
    const int32_t t = q_one < quads ? groups[q_one].tap[0] : 0;
    const int8_t *const x1 = q_one >= quads ? NULL : corner ? corner + off[t] : tp[t];
    const uintptr_t d = (uintptr_t)dst, xa = (uintptr_t)x1;
    /* the groups with the single tap inside the input, where no store can reach it: one pass after the rest */
    const int32_t one = x1 && fused && (d <= xa || d >= xa + (uintptr_t)oc_n);
    const int32_t all = quads;
    if (one) {
        quads = q_one;
    }
    for (int32_t q = 0; q < quads; ++q) {
        const int32_t oc = 4 * q;
        int32_t a0 = conv_bias(bias, oc), a1 = conv_bias(bias, oc + 1);
        int32_t a2 = conv_bias(bias, oc + 2), a3 = conv_bias(bias, oc + 3);
        const dw_group_t *g = &groups[q];
        if (corner) { /* every tap inside the input: its pixel is an offset from the window's corner */
            for (int32_t k = 0; k < g->n; ++k) {
                const int32_t tk = g->tap[k];
                DSSDN_DW_MAC4(corner + off[tk] + oc, w + tk * oc_n + oc);
            }
        } else {
            for (int32_t k = 0; k < g->n; ++k) {
                const int32_t tk = g->tap[k];
                const int8_t *wt = w + tk * oc_n + oc, *x = tp[tk];
                if (x) {
                    DSSDN_DW_MAC4(x + oc, wt);
                } else {
                    a0 += (int32_t)wt[0] * zp;
                    a1 += (int32_t)wt[1] * zp;
                    a2 += (int32_t)wt[2] * zp;
                    a3 += (int32_t)wt[3] * zp;
                }
            }
        }
        acc[oc] = a0;
        acc[oc + 1] = a1;
        acc[oc + 2] = a2;
        acc[oc + 3] = a3;
    }
    if (one) {
        dw_single_tap(r, x1, w + t * oc_n, 4 * q_one, 4 * all, dst);
    }
    return 4 * quads;
}

/* Depthwise: per output pixel, each tap's input pixel is found once (NULL outside the input); the channel
 * loops then have no bounds checks. */
void dssdn_depthwise_conv2d(const dssdn_conv_t *params, const int8_t *in, int8_t *out)
{
    const dssdn_conv_t local = *params; /* see dssdn_conv2d */
    const dssdn_conv_t *const p = &local;
    const int32_t zp = p->in_zp, oc_n = p->out_c, dm = p->depth_mult, taps = p->k_h * p->k_w;
    /* (tap offsets kept as int8 below: a window reaching further takes the generic path too) */
    if (taps > DSSDN_MAX_TAPS || (p->k_h - 1) * p->dil_h > 127 || (p->k_w - 1) * p->dil_w > 127) {
        depthwise_generic(p, in, out);
        return;
    }
    /* groups of four channels when depth_mult is 1 and the sums fit the per-pixel buffer */
    const int32_t quads = dm == 1 && oc_n <= DSSDN_RQ_CHANNELS ? oc_n / 4 : 0;
    /* the groups' outputs are stored after all the pixel's reads; other channels store as they go */
    const int32_t tail = 4 * quads < oc_n; /* channels outside the groups */
    const int32_t via_pixel = p->buffered && tail;
    int32_t acc[DSSDN_RQ_CHANNELS];
    int32_t round[DSSDN_RQ_CHANNELS];
    dw_group_t groups[DSSDN_RQ_CHANNELS / 4];
    int8_t pixel[DSSDN_MAX_PIXEL];
    const int8_t *tp[DSSDN_MAX_TAPS];
    const requant_t rq = requant_of(p, round);
    const int32_t fused = rq.round && rq.lo == -128 && rq.hi == 127; /* dw_single_tap's requantisation */
    /* the taps some channel reads (all of them when channels are left outside the groups), with their
     * offsets from the window's corner: only these get an input pointer per pixel */
    uint8_t used[DSSDN_MAX_TAPS];
    int8_t dy[DSSDN_MAX_TAPS], dx[DSSDN_MAX_TAPS];
    int32_t off[DSSDN_MAX_TAPS]; /* per tap read: its byte offset from the window's corner pixel */
    int32_t n_used = 0;
    dw_groups(p->w, taps, oc_n, quads, groups);
    /* the last groups that share one single tap (on DSSDN the centre), done by dw_pixel in one tight pass */
    int32_t q_one = quads;
    while (q_one > 0 && groups[q_one - 1].n == 1 && groups[q_one - 1].tap[0] == groups[quads - 1].tap[0]) {
        --q_one;
    }
    for (int32_t t = 0; t < taps; ++t) {
        int32_t read = 4 * quads < oc_n;
        for (int32_t q = 0; q < quads; ++q) {
            for (int32_t k = 0; k < groups[q].n; ++k) {
                read |= groups[q].tap[k] == t;
            }
        }
        if (read) {
            used[n_used] = (uint8_t)t;
            dy[n_used] = (int8_t)(t / p->k_w * p->dil_h);
            dx[n_used] = (int8_t)(t % p->k_w * p->dil_w);
            off[t] = dy[n_used] * p->in_row + dx[n_used] * p->in_pix;
            ++n_used;
        }
    }
    /* the window's corner range in which every tap is inside the input: there a tap's pointer is an offset */
    const int32_t iy_max = p->in_h - 1 - (p->k_h - 1) * p->dil_h, ix_max = p->in_w - 1 - (p->k_w - 1) * p->dil_w;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int8_t *dst = via_pixel ? pixel : out;
            const int8_t *corner = NULL;
            if (iy0 >= 0 && iy0 <= iy_max && ix0 >= 0 && ix0 <= ix_max) {
                corner = in + iy0 * p->in_row + ix0 * p->in_pix;
                for (int32_t k = 0; tail && k < n_used; ++k) { /* the tail channels read tp */
                    tp[used[k]] = corner + off[used[k]];
                }
            } else {
                for (int32_t k = 0; k < n_used; ++k) {
                    const int32_t iy = iy0 + dy[k], ix = ix0 + dx[k];
                    tp[used[k]] = (uint32_t)iy < (uint32_t)p->in_h && (uint32_t)ix < (uint32_t)p->in_w
                                      ? in + iy * p->in_row + ix * p->in_pix : NULL;
                }
            }
            const int32_t n_acc = dw_pixel(p, &rq, tp, corner, off, groups, quads, q_one, fused, acc, dst);
            if (fused) { /* requant_n's table path without the call */
                for (int32_t i = 0; i < n_acc; ++i) {
                    dst[i] = (int8_t)sat8(rq_table(acc[i], rq.mult[i], rq.round[i]));
                }
            } else {
                requant_n(&rq, acc, 0, n_acc, dst);
            }
            for (int32_t oc = 4 * quads; oc < oc_n; ++oc) {
                const int32_t ic = oc / dm;
                int32_t a = conv_bias(rq.bias, oc);
                for (int32_t j = 0; j < taps; ++j) {
                    a += (int32_t)p->w[j * oc_n + oc] * (tp[j] ? tp[j][ic] : zp);
                }
                requant_n(&rq, &a, oc, 1, dst);
            }
            if (via_pixel) {
                copy_bytes(out, pixel, oc_n);
            }
            out += oc_n;
        }
    }
}
