/* dssdn_depthwise.c - DEPTHWISE_CONV_2D (see dssdn_kernels.h). Integer arithmetic only; it mirrors TensorFlow
 * Lite Micro's reference int8 kernel bit for bit. Each call lists every channel group's nonzero taps first,
 * so the (tap, group) pairs whose filter values are all zero cost nothing; requantisation as in dssdn_requant.h. */
#include "dssdn_requant.h"

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
