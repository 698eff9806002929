/* dssdn_frontend.c - log10 mel power frames, the C twin of dssdn_edge.frontend (see the header).
 *
 * Per frame: periodic Hann window; an N_FFT-point real FFT done as an N_FFT/2-point complex FFT
 * (radix-4/2, decimation in frequency) of the even/odd samples packed as re/im, followed by the usual
 * split step; power |X[k]|^2; the sparse HTK mel sums; log10(sum + eps). All arithmetic is DSSDN_REAL
 * (float unless built with -DDSSDN_DOUBLE); the window, twiddles and mel weights were computed in
 * float64 by Python and are rounded once, by the compiler, to DSSDN_REAL.
 */
#include <math.h>
#include <string.h>

#include "dssdn_frontend.h"
/* Include the tables again, now with their data: this translation unit owns it. */
#define DSSDN_FRONTEND_TABLES_DEFINE
#include "dssdn_frontend_tables.h"

#define FFT_M (DSSDN_N_FFT / 2) /* complex FFT length */

#ifdef DSSDN_DOUBLE
#define REAL_LOG10 log10
#else
#define REAL_LOG10 log10f
#endif
#define HALF ((DSSDN_REAL)0.5)

#if DSSDN_N_BINS != FFT_M + 1
#error "dssdn_frontend_tables.h: DSSDN_N_BINS must be DSSDN_N_FFT / 2 + 1"
#endif
#if DSSDN_N_FFT < 16 || (1 << DSSDN_FFT_LOG2) != DSSDN_N_FFT / 2
#error "dssdn_frontend_tables.h: DSSDN_N_FFT must be a power of two >= 16 with DSSDN_FFT_LOG2 = log2(N_FFT/2)"
#endif
#if DSSDN_HOP < 1 || DSSDN_HOP > DSSDN_N_FFT
#error "dssdn_frontend_tables.h: DSSDN_HOP must be in 1..DSSDN_N_FFT"
#endif

/* Window the frame and pack it for the half-length complex FFT: z[n] = x[2n] w[2n] + i x[2n+1] w[2n+1],
 * real and imaginary parts in separate arrays so every FFT pass is a contiguous, vectorisable loop. */
static void window_pack(const float *restrict x, DSSDN_REAL *restrict re, DSSDN_REAL *restrict im)
{
    int n;
    for (n = 0; n < FFT_M; n++) {
        re[n] = (DSSDN_REAL)x[2 * n] * dssdn_window[2 * n];
        im[n] = (DSSDN_REAL)x[2 * n + 1] * dssdn_window[2 * n + 1];
    }
}

/* The FFT is decimation in frequency (natural order in, bit-reversed order out): an optional radix-2
 * pass when log2(FFT_M) is odd, then radix-4 passes down to a last, twiddle-free one. Loops over k run
 * four at a time: the trip counts are multiples of 4, which lets gcc -O2 vectorise them, and on a
 * scalar core they are just unrolled. dssdn_fft_twiddle holds, pass after pass, [re | im] of
 * exp(-2 pi i k / len) for the radix-2 pass and [W^k re | im | W^2k re | im | W^3k re | im] for each
 * radix-4 pass, all computed in float64 by the generator. */

#define RADIX2(u)                                                                    \
    do {                                                                             \
        const DSSDN_REAL xr = ar[k + (u)], xi = ai[k + (u)];                         \
        const DSSDN_REAL yr = br[k + (u)], yi = bi[k + (u)];                         \
        const DSSDN_REAL dr = xr - yr, di = xi - yi;                                 \
        ar[k + (u)] = xr + yr;                                                       \
        ai[k + (u)] = xi + yi;                                                       \
        br[k + (u)] = dr * wr[k + (u)] - di * wi[k + (u)];                           \
        bi[k + (u)] = dr * wi[k + (u)] + di * wr[k + (u)];                           \
    } while (0)

/* One radix-2 DIF pass over the two halves a, b of the whole array (half = FFT_M / 2). */
static void radix2_pass(DSSDN_REAL *restrict ar, DSSDN_REAL *restrict ai, DSSDN_REAL *restrict br,
                        DSSDN_REAL *restrict bi, const DSSDN_REAL *restrict w, int half)
{
    const DSSDN_REAL *wr = w, *wi = w + half;
    int k;
    for (k = 0; k < half; k += 4) {
        RADIX2(0);
        RADIX2(1);
        RADIX2(2);
        RADIX2(3);
    }
}

/* Multiply (xr + i xi) by twiddle j of a radix-4 pass and store it at element k + u of (or_, oi). */
#define TWIDDLE_STORE(or_, oi, xr, xi, j, u)                                          \
    do {                                                                             \
        const DSSDN_REAL twr = w[(2 * (j) - 2) * q + k + (u)];                       \
        const DSSDN_REAL twi = w[(2 * (j) - 1) * q + k + (u)];                       \
        or_[k + (u)] = (xr) * twr - (xi) * twi;                                      \
        oi[k + (u)] = (xr) * twi + (xi) * twr;                                       \
    } while (0)

/* Radix-4 DIF butterfly on elements k + u of the four quarters: with W = exp(-2 pi i / 4q),
 * out0 = (x0 + x2) + (x1 + x3), out1 = ((x0 + x2) - (x1 + x3)) W^2k,
 * out2 = ((x0 - x2) - i (x1 - x3)) W^k, out3 = ((x0 - x2) + i (x1 - x3)) W^3k. */
#define RADIX4(u)                                                                    \
    do {                                                                             \
        const DSSDN_REAL s02r = r0[k + (u)] + r2[k + (u)], s02i = i0[k + (u)] + i2[k + (u)]; \
        const DSSDN_REAL d02r = r0[k + (u)] - r2[k + (u)], d02i = i0[k + (u)] - i2[k + (u)]; \
        const DSSDN_REAL s13r = r1[k + (u)] + r3[k + (u)], s13i = i1[k + (u)] + i3[k + (u)]; \
        const DSSDN_REAL vr = i1[k + (u)] - i3[k + (u)], vi = r3[k + (u)] - r1[k + (u)];     \
        r0[k + (u)] = s02r + s13r;                                                   \
        i0[k + (u)] = s02i + s13i;                                                   \
        TWIDDLE_STORE(r1, i1, s02r - s13r, s02i - s13i, 2, u);                       \
        TWIDDLE_STORE(r2, i2, d02r + vr, d02i + vi, 1, u);                           \
        TWIDDLE_STORE(r3, i3, d02r - vr, d02i - vi, 3, u);                           \
    } while (0)

/* One block of a radix-4 pass: quarters r0..r3 / i0..i3 of q elements each (q a multiple of 4). */
static void radix4_block(DSSDN_REAL *restrict r0, DSSDN_REAL *restrict r1, DSSDN_REAL *restrict r2,
                         DSSDN_REAL *restrict r3, DSSDN_REAL *restrict i0, DSSDN_REAL *restrict i1,
                         DSSDN_REAL *restrict i2, DSSDN_REAL *restrict i3, const DSSDN_REAL *restrict w,
                         int q)
{
    int k;
    for (k = 0; k < q; k += 4) {
        RADIX4(0);
        RADIX4(1);
        RADIX4(2);
        RADIX4(3);
    }
}

/* The last radix-4 pass (q = 1): every twiddle is 1. */
static void radix4_last(DSSDN_REAL *re, DSSDN_REAL *im)
{
    int j;
    for (j = 0; j < FFT_M; j += 4) {
        const DSSDN_REAL s02r = re[j] + re[j + 2], s02i = im[j] + im[j + 2];
        const DSSDN_REAL d02r = re[j] - re[j + 2], d02i = im[j] - im[j + 2];
        const DSSDN_REAL s13r = re[j + 1] + re[j + 3], s13i = im[j + 1] + im[j + 3];
        const DSSDN_REAL vr = im[j + 1] - im[j + 3], vi = re[j + 3] - re[j + 1];
        re[j] = s02r + s13r;
        im[j] = s02i + s13i;
        re[j + 1] = s02r - s13r;
        im[j + 1] = s02i - s13i;
        re[j + 2] = d02r + vr;
        im[j + 2] = d02i + vi;
        re[j + 3] = d02r - vr;
        im[j + 3] = d02i - vi;
    }
}

/* In-place FFT of FFT_M complex points (forward sign, unscaled); output in bit-reversed order. */
static void fft_dif(DSSDN_REAL *re, DSSDN_REAL *im)
{
    const DSSDN_REAL *w = dssdn_fft_twiddle;
    int len = FFT_M, q, start;
    if (DSSDN_FFT_LOG2 % 2) {
        radix2_pass(re, im, re + FFT_M / 2, im + FFT_M / 2, w, FFT_M / 2);
        w += FFT_M;
        len = FFT_M / 2;
    }
    for (q = len / 4; q >= 4; q /= 4) {
        for (start = 0; start < FFT_M; start += 4 * q) {
            DSSDN_REAL *r = re + start, *i = im + start;
            radix4_block(r, r + q, r + 2 * q, r + 3 * q, i, i + q, i + 2 * q, i + 3 * q, w, q);
        }
        w += 6 * q;
    }
    radix4_last(re, im);
}

/* Power spectrum |X[k]|^2, k = 0..N_FFT/2, of the real frame whose even/odd samples were packed as
 * re/im and transformed (bit-reversed output). With a = Z[k], b = Z[M-k]: E = (a + conj b) / 2,
 * D = (a - conj b) / 2, X[k] = E - i W^k D and X[M-k] = conj(E) - i conj(W^k D), W = exp(-2 pi i / N). */
static void real_power(const DSSDN_REAL *re, const DSSDN_REAL *im, DSSDN_REAL *power)
{
    int k;
    power[0] = (re[0] + im[0]) * (re[0] + im[0]);
    power[FFT_M] = (re[0] - im[0]) * (re[0] - im[0]);
    for (k = 1; k <= FFT_M / 2; k++) {
        const int p = (int)dssdn_bitrev[k], n = (int)dssdn_bitrev[FFT_M - k];
        const DSSDN_REAL ar = re[p], ai = im[p], br = re[n], bi = im[n];
        const DSSDN_REAL er = HALF * (ar + br), ei = HALF * (ai - bi);
        const DSSDN_REAL dr = HALF * (ar - br), di = HALF * (ai + bi);
        const DSSDN_REAL wr = dssdn_split_twiddle[2 * k], wi = dssdn_split_twiddle[2 * k + 1];
        const DSSDN_REAL tr = wr * dr - wi * di; /* T = W^k D */
        const DSSDN_REAL ti = wr * di + wi * dr;
        const DSSDN_REAL xr = er + ti, xi = ei - tr;  /* X[k] */
        const DSSDN_REAL yr = er - ti, yi = -ei - tr; /* X[M-k] */
        power[k] = xr * xr + xi * xi;
        power[FFT_M - k] = yr * yr + yi * yi;
    }
}

void dssdn_logmel_frame(const float samples[DSSDN_N_FFT], float out[DSSDN_N_MELS],
                        DSSDN_REAL scratch[DSSDN_SCRATCH_LEN])
{
    const DSSDN_REAL eps = (DSSDN_REAL)DSSDN_LOG_EPS;
    DSSDN_REAL *re = scratch, *im = scratch + FFT_M;
    DSSDN_REAL *power = scratch + DSSDN_N_FFT;
    int i, band;
    window_pack(samples, re, im);
    fft_dif(re, im);
    real_power(re, im, power);
    for (band = 0; band < DSSDN_N_MELS; band++) {
        const DSSDN_REAL *w = dssdn_mel_weights + dssdn_mel_offset[band];
        const DSSDN_REAL *p = power + dssdn_mel_start[band];
        const int n = (int)dssdn_mel_len[band];
        DSSDN_REAL acc = 0;
        for (i = 0; i < n; i++) {
            acc += w[i] * p[i];
        }
        out[band] = (float)REAL_LOG10(acc + eps);
    }
}

void dssdn_frontend_init(dssdn_frontend_t *st)
{
    memset(st, 0, sizeof(*st));
    st->fill = DSSDN_N_FFT / 2;
    st->flushed = 0;
}

/* Frames that n more samples complete, given fill samples already buffered. */
static long frames_completed(int fill, long n)
{
    const long total = (long)fill + n;
    return total < DSSDN_N_FFT ? 0 : 1 + (total - DSSDN_N_FFT) / DSSDN_HOP;
}

/* push and flush share this; samples == NULL means n zeros. */
static int push_samples(dssdn_frontend_t *st, const float *samples, int n, float *out_frames,
                        int max_frames)
{
    long needed;
    int frames = 0;
    if (st->flushed || n < 0) {
        return -1;
    }
    needed = frames_completed(st->fill, n);
    if (needed > max_frames || (needed > 0 && out_frames == NULL)) {
        return -1;
    }
    while (n > 0) {
        int take = DSSDN_N_FFT - st->fill;
        if (take > n) {
            take = n;
        }
        if (samples != NULL) {
            memcpy(st->buf + st->fill, samples, (size_t)take * sizeof(float));
            samples += take;
        } else {
            memset(st->buf + st->fill, 0, (size_t)take * sizeof(float));
        }
        st->fill += take;
        n -= take;
        if (st->fill == DSSDN_N_FFT) {
            dssdn_logmel_frame(st->buf, out_frames + (long)frames * DSSDN_N_MELS, st->scratch);
            frames++;
            memmove(st->buf, st->buf + DSSDN_HOP, (size_t)(DSSDN_N_FFT - DSSDN_HOP) * sizeof(float));
            st->fill = DSSDN_N_FFT - DSSDN_HOP;
        }
    }
    return frames;
}

int dssdn_frontend_push(dssdn_frontend_t *st, const float *samples, int n, float *out_frames,
                        int max_frames)
{
    if (samples == NULL && n > 0) {
        return -1;
    }
    return push_samples(st, samples, n, out_frames, max_frames);
}

int dssdn_frontend_flush(dssdn_frontend_t *st, float *out_frames, int max_frames)
{
    const int frames = push_samples(st, NULL, DSSDN_N_FFT / 2, out_frames, max_frames);
    if (frames >= 0) {
        st->flushed = 1;
    }
    return frames;
}
