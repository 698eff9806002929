/* dssdn_kernels.c - see dssdn_kernels.h: every kernel but the convolutions (dssdn_conv.c, dssdn_depthwise.c).
 * Integer arithmetic only; every kernel mirrors the arithmetic of TensorFlow Lite Micro's reference int8 kernel
 * (tensorflow/lite/kernels/internal/reference/integer_ops). */
#include "dssdn_kernels.h"

#include "dssdn_arith.h"

int32_t dssdn_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    return requantize(x, multiplier, shift);
}

/* A reader of the bit-packed channel constants, least significant bit first: the word under the cursor and
 * the bit offset in it. A field that ends on a word boundary moves to the next word without reading it (it
 * may be past the array's end). */
typedef struct {
    const uint32_t *w;
    uint32_t o;
} bit_reader_t;

/* w (1..32) bits; mask is the low w bits set. */
static inline uint32_t take_bits(bit_reader_t *r, uint32_t w, uint32_t mask)
{
    uint32_t v = r->w[0] >> r->o;
    const uint32_t end = r->o + w;
    if (end > 32) { /* then o >= 1: the rest is in the next word */
        v |= r->w[1] << (32 - r->o);
    }
    if (end >= 32) {
        ++r->w;
        r->o = end - 32;
    } else {
        r->o = end;
    }
    return v & mask;
}

static inline uint32_t low_mask(int32_t w)
{
    return w >= 32 ? 0xffffffffu : ((uint32_t)1 << w) - 1;
}

dssdn_chan_arrays_t dssdn_chan_unpack(const dssdn_chan_t *c, int32_t n, int32_t nq, int8_t *work)
{
    int32_t *bias = (int32_t *)(void *)work, *mult = bias + n;
    int8_t *shift = (int8_t *)(mult + nq);
    const int32_t bias_bits = c->bias_bits, mult_bits = c->mult_bits, shift_bits = c->shift_bits;
    const uint32_t sign = bias_bits ? (uint32_t)1 << (bias_bits - 1) : 0, b_mask = low_mask(bias_bits);
    const uint32_t implied = mult_bits == 30 ? (uint32_t)1 << 30 : 0;
    const int32_t q_bits = mult_bits + shift_bits; /* one read for both when they fit a word */
    const uint32_t m_mask = low_mask(mult_bits), s_mask = low_mask(shift_bits), q_mask = low_mask(q_bits);
    bit_reader_t r = {c->bits, 0};
    for (int32_t i = 0; i < n; ++i) {
        bias[i] = bias_bits ? (int32_t)((take_bits(&r, (uint32_t)bias_bits, b_mask) ^ sign) - sign) : 0;
        if (i < nq) {
            uint32_t m, s;
            if (q_bits <= 32) {
                const uint32_t v = take_bits(&r, (uint32_t)q_bits, q_mask);
                m = v & m_mask;
                s = v >> mult_bits;
            } else {
                m = take_bits(&r, (uint32_t)mult_bits, m_mask);
                s = shift_bits ? take_bits(&r, (uint32_t)shift_bits, s_mask) : 0;
            }
            mult[i] = (int32_t)(m | implied);
            shift[i] = (int8_t)((int32_t)s + c->shift_min);
        }
    }
    dssdn_chan_arrays_t a;
    a.bias = bias;
    a.mult = mult;
    a.shift = shift;
    return a;
}

/* Units go four at a time (dot4: each input word is loaded and widened once for the four) while four are
 * left and the filter has no zero point; the rest one by one. */
void dssdn_fully_connected(const dssdn_fc_t *p, const int8_t *in, int8_t *out)
{
    const dssdn_chan_arrays_t chan = dssdn_chan_unpack(&p->chan, p->units, p->per_channel ? p->units : 1, p->work);
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * p->depth;
        for (int32_t u = 0; u < p->units;) {
            const int8_t *w = p->w + u * p->depth;
            const int32_t group = p->w_zp == 0 && p->units - u >= 4 ? 4 : 1;
            int32_t acc[4];
            for (int32_t k = 0; k < group; ++k) {
                acc[k] = chan.bias[u + k];
            }
            if (group == 4) {
                dot4(w, p->depth, x, acc);
            } else if (p->w_zp == 0) {
                acc[0] = dot(w, x, p->depth, acc[0]);
            } else {
                for (int32_t d = 0; d < p->depth; ++d) {
                    acc[0] += ((int32_t)w[d] - p->w_zp) * (int32_t)x[d];
                }
            }
            for (int32_t k = 0; k < group; ++k, ++u) {
                const int32_t q = p->per_channel ? u : 0;
                *out++ = (int8_t)clamp_out(requantize(acc[k], chan.mult[q], chan.shift[q]) + p->out_zp, p->act_min,
                                           p->act_max);
            }
        }
    }
}

/* SMMULR: floor((x*m + 2^31) / 2^32), one instruction with the DSP extension. */
static inline int32_t mul_hi_round(int32_t x, int32_t m)
{
#if defined(__ARM_FEATURE_DSP)
    int32_t h;
    __asm__("smmulr %0, %1, %2" : "=r"(h) : "r"(x), "r"(m));
    return h;
#else
    return (int32_t)(((int64_t)x * m + ((int64_t)1 << 31)) >> 32);
#endif
}

/* The rounding right shift of requantize with a constant folded in: (2h + rnd - [h < 0]) >> right, written
 * as rnd + 2h + (h >> 31) so that it takes two shifted-operand additions. */
static inline int32_t round_shift(int32_t h, int32_t rnd, int32_t right)
{
#if defined(__ARM_FEATURE_DSP)
    int32_t t; /* (GCC would spend a third instruction on h >> 31) */
    __asm__("add %0, %1, %2, lsl #1\n\tadd %0, %0, %2, asr #31" : "=&r"(t) : "r"(rnd), "r"(h));
    return t >> right;
#else
    return (int32_t)((uint32_t)rnd + ((uint32_t)h << 1) + (uint32_t)(h >> 31)) >> right;
#endif
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
    return round_shift(mul_hi_round(x2, f->m), f->rnd, f->right1);
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

/* The residual ADD over contiguous rows without a clamp when input b's multiplier is exactly 1/2 (m = 2^30,
 * shift 0: TFLite's common scale is twice the larger input scale, so the input with that scale always has
 * it): requantize((b - zp) * 2^left, 2^30, 0) is (b - zp) * 2^(left - 1) exactly (the doubling high multiply
 * by 2^30 halves an even number, the right shift is 0), so that input costs a shift, not a requantisation. */
static void add_half_run(const dssdn_binary_t *p, const int8_t *a, const int8_t *b, int32_t n, int8_t *out)
{
    const int32_t a_zp = p->a_zp, b_zp = p->b_zp, out_zp = p->out_zp, b_left = p->left_shift - 1;
    const rq_fixed_t fo = rq_fixed(p->out_mult, p->out_shift, 0);
    const rq_fixed_t fa = rq_fixed(p->a_mult, p->a_shift, p->left_shift);
    for (int32_t i = 0; i < n; ++i) {
        const int32_t bv = (int32_t)((uint32_t)(b[i] - b_zp) << b_left);
        out[i] = (int8_t)sat8(rq_apply(&fo, rq_apply(&fa, a[i] - a_zp) + bv) + out_zp);
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
    const int32_t half = (int32_t)1 << 30;
    if (is_add && fast && p->left_shift >= 1 && (p->b_mult == half && p->b_shift == 0)) {
        add_half_run(p, a, b, n, out);
    } else if (is_add && fast && p->left_shift >= 1 && (p->a_mult == half && p->a_shift == 0)) {
        dssdn_binary_t q = *p; /* the sum is symmetric: a and b swap roles, the same integers */
        q.a_zp = p->b_zp, q.b_zp = p->a_zp, q.a_mult = p->b_mult, q.a_shift = p->b_shift;
        q.b_mult = p->a_mult, q.b_shift = p->a_shift;
        add_half_run(&q, b, a, n, out);
    } else if (is_add) { /* (a TFLite ADD always has an input at multiplier 1/2: this loop is for others) */
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

/* 2 * A' of dssdn_add_flat for one input value (x = (a << 21) + a_off). */
static inline int32_t add_a_term(int32_t x, int32_t a_mult, int32_t a_rnd, int32_t a_right)
{
    return (int32_t)((uint32_t)round_shift(mul_hi_round(x, a_mult), a_rnd, a_right) * 2u);
}

/* The element loop over the tabulated terms (t indexed by a's value). Out of line: inlined, GCC keeps a
 * constant on the stack. */
static inline __attribute__((always_inline)) void add_table_loop(const int32_t *t, const int8_t *a, const int8_t *b,
                                                                 int8_t *out, const int8_t *end, int32_t out_mult,
                                                                 int32_t out_rnd, int32_t out_right)
{
    while (a < end) {
        const int32_t s2 = (int32_t)((uint32_t)t[*a++] + ((uint32_t)*b++ << 20));
        *out++ = (int8_t)sat8(round_shift(mul_hi_round(s2, out_mult), out_rnd, out_right));
    }
}

/* out_right is 20 when the output scale is within [1, 2) times the larger input scale (most residual
 * ADDs): a constant there lets the shift go into SSAT's operand. */
static __attribute__((noinline)) void add_table_run(const int32_t *t, const int8_t *a, const int8_t *b, int8_t *out,
                                                    const int8_t *end, int32_t out_mult, int32_t out_rnd,
                                                    int32_t out_right)
{
    if (out_right == 20) {
        add_table_loop(t, a, b, out, end, out_mult, out_rnd, 20);
    } else {
        add_table_loop(t, a, b, out, end, out_mult, out_rnd, out_right);
    }
}

void dssdn_add_flat(const dssdn_add_flat_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t a_off = p->a_off, a_mult = p->a_mult, a_rnd = p->a_rnd, a_right = p->a_right;
    const int8_t *const end = a + p->n;
    if (p->table) { /* input a's term for each of its 256 values, then one load per element */
        int32_t table[256];
        int32_t *const t = table + 128;
        for (int32_t v = -128; v < 128; ++v) {
            t[v] = add_a_term((int32_t)((uint32_t)v << 21) + a_off, a_mult, a_rnd, a_right);
        }
        add_table_run(t, a, b, out, end, p->out_mult, p->out_rnd, p->out_right);
        return;
    }
    const int32_t out_mult = p->out_mult, out_rnd = p->out_rnd, out_right = p->out_right;
    while (a < end) {
        const int32_t s2 = (int32_t)((uint32_t)add_a_term((int32_t)((uint32_t)*a++ << 21) + a_off, a_mult, a_rnd,
                                                          a_right) + ((uint32_t)*b++ << 20));
        *out++ = (int8_t)sat8(round_shift(mul_hi_round(s2, out_mult), out_rnd, out_right));
    }
}

void dssdn_mul_channels(const dssdn_mul_chan_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t out_mult = p->out_mult, out_rnd = p->out_rnd, out_right = p->out_right;
    int32_t *const table = (int32_t *)(void *)p->work; /* per channel: B = (b - b_zp) << b_left, K = -a_zp * B */
    int32_t *const table_end = table + 2 * p->channels;
    for (int32_t *t = table; t < table_end; t += 2) {
        const int32_t bv = (int32_t)((uint32_t)(*b++ - p->b_zp) << p->b_left);
        t[0] = bv;
        t[1] = -p->a_zp * bv;
    }
    const int8_t *const end = a + p->pixels * p->channels;
    while (a < end) {
        const int32_t *t = table;
        do {
            int32_t bv, k;
#if defined(__ARM_FEATURE_DSP)
            __asm__("ldrd %0, %1, [%2], #8" : "=r"(bv), "=r"(k), "+r"(t) : : "memory"); /* (GCC splits it in two) */
#else
            bv = t[0], k = t[1], t += 2;
#endif
            *out++ = (int8_t)sat8(round_shift(mul_hi_round(*a++ * bv + k, out_mult), out_rnd, out_right));
        } while (t < table_end);
    }
}

/* Two int16 lanes added (SADD16). MEAN's lane sums stay exact: at most 256 int8 values per lane. */
static inline uint32_t add16x2(uint32_t a, uint32_t b)
{
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
    return __sadd16(a, b);
#else
    return ((a + b) & 0xffffu) | (((a >> 16) + (b >> 16)) << 16);
#endif
}

static __attribute__((noinline)) int8_t mean_value(const dssdn_mean_t *p, int32_t sum)
{
    return (int8_t)sat8(requantize(sum - p->in_zp * p->reduced, p->mult, p->shift) + p->out_zp);
}

/* Channels go four at a time: one word per row, split by SXTB16 into (c, c+2) and (c+1, c+3) int16 lanes
 * summed by SADD16, widened to int32 every 256 rows; the channels left over go one by one. */
void dssdn_mean(const dssdn_mean_t *p, const int8_t *in, int8_t *out)
{
    const int32_t reduced = p->reduced, inner = p->inner;
    for (int32_t o = 0; o < p->outer; ++o, in += reduced * inner, out += inner) {
        int32_t i = 0;
        for (; i + 4 <= inner; i += 4) {
            int32_t sum[4] = {0, 0, 0, 0};
            const int8_t *x = in + i;
            for (int32_t r = 0; r < reduced; r += 256) {
                const int8_t *const stop = x + inner * (reduced - r < 256 ? reduced - r : 256);
                uint32_t even = 0, odd = 0;
                for (; x != stop; x += inner) {
                    const uint32_t w = load_word(x);
                    even = add16x2(even, even16(w));
                    odd = add16x2(odd, odd16(w));
                }
                sum[0] += (int16_t)(even & 0xffff), sum[2] += (int16_t)(even >> 16);
                sum[1] += (int16_t)(odd & 0xffff), sum[3] += (int16_t)(odd >> 16);
            }
            for (int32_t k = 0; k < 4; ++k) {
                out[i + k] = mean_value(p, sum[k]);
            }
        }
        for (; i < inner; ++i) {
            int32_t sum = 0;
            for (int32_t r = 0; r < reduced; ++r) {
                sum += in[r * inner + i];
            }
            out[i] = mean_value(p, sum);
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

void dssdn_logistic_lut(const dssdn_logistic_lut_t *p, const int8_t *in, int8_t *out, int32_t n)
{
    int32_t top = -128;
    for (int32_t i = 0; i < n; ++i) {
        top = in[i] > top ? in[i] : top;
    }
    int8_t table[256];
    const uint32_t *steps = p->steps;
    const int32_t width = p->width;
    const uint32_t mask = ((uint32_t)1 << width) - 1;
    uint32_t u = (uint32_t)p->first, bits = 0;
    int32_t left = 0;
    table[0] = (int8_t)((int32_t)u - 128);
    for (int32_t k = 1; k <= top + 128; ++k) {
        if (left == 0) {
            bits = *steps++;
            left = 32;
        }
        u = (u + (bits & mask)) & 0xffu;
        bits >>= width;
        left -= width;
        table[k] = (int8_t)((int32_t)u - 128);
    }
    for (int32_t i = 0; i < n; ++i) {
        out[i] = table[in[i] + 128];
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
