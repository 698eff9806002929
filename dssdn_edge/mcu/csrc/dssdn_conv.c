/* dssdn_conv.c - CONV_2D (see dssdn_kernels.h). Integer arithmetic only; it mirrors TensorFlow Lite Micro's
 * reference int8 kernel (tensorflow/lite/kernels/internal/reference/integer_ops) bit for bit, with the work
 * arranged for a Cortex-M: output pixels in pairs, channels in groups, one requantisation per pixel
 * (dssdn_requant.h). */
#include "dssdn_requant.h"

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
