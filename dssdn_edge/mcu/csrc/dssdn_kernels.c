/* dssdn_kernels.c - see dssdn_kernels.h: every kernel but the convolutions (dssdn_conv.c). Integer arithmetic
 * only; every kernel mirrors the arithmetic of TensorFlow Lite Micro's reference int8 kernel
 * (tensorflow/lite/kernels/internal/reference/integer_ops). */
#include "dssdn_kernels.h"

#include "dssdn_arith.h"

int32_t dssdn_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    return requantize(x, multiplier, shift);
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
