/* dssdn_frontend.c - log10 mel power frames, the C twin of dssdn_edge.frontend (see the header).
 *
 * Per frame, all in DSSDN_REAL (float unless built with -DDSSDN_DOUBLE), no dynamic memory, no libm in the
 * float build:
 *   1. an N_FFT-point real FFT as an M = N_FFT/2-point complex FFT of z[n] = x[2n] w[2n] + i x[2n+1] w[2n+1],
 *      w HALF the periodic Hann window (the real-FFT split step's 1/2, folded in: scaling by a power of two
 *      rounds nothing). Radix-8 decimation in frequency, in place, windowing fused into the first pass;
 *   2. the split step and |X[k]|^2, done where the FFT left its output: in bit-reversed order the partner
 *      Z[M-k] of Z[k] sits mirrored inside the same block of positions, so the step reads contiguous runs
 *      (forwards and backwards) instead of gathering through a permutation; the FFT's last pass is fused
 *      into it;
 *   3. each power stored straight at its bin (a generated table: the bin at each FFT output position);
 *   4. the mel filterbank as the sparse product it is: per band its first bin, its length and its weights,
 *      each band zero-padded by the generator to a non-zero multiple of 4 bins;
 *   5. log10(sum + eps): in the float build a polynomial on the float's mantissa (generated coefficients,
 *      within 6e-8 of log10, under half an ulp of a log-mel value), in the double build libm's log10.
 *
 * Speed without intrinsics: every hot loop is written as 4 independent lanes of the same arithmetic over
 * contiguous data (an inner loop of constant trip count 4), which gcc -O2 turns into SSE/NEON vectors; on a
 * scalar core the FFT loops run one lane at a time (DSSDN_LANES below). Data is not transposed back and forth
 * between passes: on x86 the shuffles that transposing costs were the bottleneck.
 *
 * The window, twiddles, mel weights and polynomial were computed in float64 by Python (frontend_c.py) and
 * are rounded once, by the compiler, to DSSDN_REAL.
 */
#include <math.h>
#include <string.h>

#include "dssdn_frontend.h"

/* Lanes of the FFT and split loops: 4 where the compiler has 4-float vectors to map them to, 8 where it has
 * 8-float ones (AVX: a host build with -march=native, 10 % faster there than 4), 1 on scalar cores (Cortex-M),
 * where unrolled lanes would only cost flash. Each lane does the same arithmetic in the same order either way,
 * so the result is bit-identical (tests/test_frontend_c.py); -DDSSDN_LANES=1, 4 or 8 overrides the choice. */
#ifndef DSSDN_LANES
#if defined(__AVX__)
#define DSSDN_LANES 8
#elif defined(__SSE2__) || defined(__ARM_NEON) || defined(__ARM_NEON__) || defined(__ALTIVEC__)
#define DSSDN_LANES 4
#else
#define DSSDN_LANES 1
#endif
#endif
#if DSSDN_LANES != 1 && DSSDN_LANES != 4 && DSSDN_LANES != 8
#error "DSSDN_LANES must be 1, 4 or 8"
#endif
#define LANES DSSDN_LANES

/* Where the split step puts the powers: with one lane (a scalar core), straight at their bins through a table
 * of the bin at each FFT output position (a gathering pass over 513 powers saved: 3 k emulated instructions
 * per frame on the M4); with vector lanes at the FFT output positions, then gathered into bin order by one
 * pass, which keeps the split loop's stores contiguous (storing through the table was 15 % slower on x86).
 * The same values either way. The tables header holds the one table each needs. */
#define DSSDN_POWER_SCATTER (DSSDN_LANES == 1)

/* The window table: with one lane, half of it (the window is symmetric; 2 KB less flash on a microcontroller,
 * see X_WIN_R); with vector lanes the whole, as the mirrored half's reads run backwards and cost x86 a shuffle
 * per vector (2 % of the log-mel). The same values either way. */
#define DSSDN_WINDOW_HALF (DSSDN_LANES == 1)

/* Include the tables again, now with their data: this translation unit owns it. */
#define DSSDN_FRONTEND_TABLES_DEFINE
#include "dssdn_frontend_tables.h"

#define FFT_M (DSSDN_N_FFT / 2) /* complex FFT length */
#define MEL_LANES 4 /* the mel tables pad every band to a multiple of this (dssdn_frontend_tables.h) */


#if DSSDN_N_BINS != FFT_M + 1
#error "dssdn_frontend_tables.h: DSSDN_N_BINS must be DSSDN_N_FFT / 2 + 1"
#endif
#if DSSDN_N_FFT < 16 || (1 << DSSDN_FFT_LOG2) != DSSDN_N_FFT / 2
#error "dssdn_frontend_tables.h: DSSDN_N_FFT must be a power of two >= 16 with DSSDN_FFT_LOG2 = log2(N_FFT/2)"
#endif
#if DSSDN_HOP < 1 || DSSDN_HOP > DSSDN_N_FFT
#error "dssdn_frontend_tables.h: DSSDN_HOP must be in 1..DSSDN_N_FFT"
#endif
#if DSSDN_MEL_LANES != MEL_LANES || DSSDN_LOG10_POLY_LEN != 8
#error "dssdn_frontend_tables.h: generated for another dssdn_frontend.c (mel lanes / log10 polynomial)"
#endif

/* From 2^6 points on the FFT ends with a radix-8 pass over blocks of 8, fused into the split step (see
 * last8_chunk); frontend_c.FUSED_LAST_LOG2 makes the tables for the same choice. */
#define FUSED_LAST (DSSDN_FFT_LOG2 >= 6)

/* Scratch (DSSDN_SCRATCH_LEN = N_FFT + N_BINS + MEL_LANES - 1 reals): re[M] | im[M] | powers[M + 1] | 3 reals.
 * Scattered (DSSDN_POWER_SCATTER), the powers are in bin order there, and the 3 reals after them stay zero
 * (dssdn_frontend_init clears them, nothing writes them); gathered, the powers at FFT positions go there and
 * then in bin order to the start (re and im[0], free by then), im after them. Either way a mel band's padding
 * bins, up to 3 past the last one in a front end with fewer bins than one band's padded width, read zero
 * weights times finite numbers. */
#define SCRATCH_IM FFT_M
#define SCRATCH_POWER DSSDN_N_FFT
#if DSSDN_SCRATCH_LEN < DSSDN_N_FFT + DSSDN_N_BINS + MEL_LANES - 1
#error "dssdn_frontend.h: DSSDN_SCRATCH_LEN too small for the powers and the mel padding"
#endif

/* ------------------------------------------------------------------------------------------ FFT */

/* The M-point complex FFT: decimation in frequency, in place on separate re/im arrays, natural order in,
 * bit-reversed order out. With M = 2^(3a + b):
 *   1. a radix-8 pass over the whole frame that also windows and packs the samples;
 *   2. if b = 1 a radix-2 pass, if b = 2 a radix-4 pass;
 *   3. radix-8 passes; the last one (blocks of 8, no twiddles) runs inside split_power when FUSED_LAST.
 * A radix-2^r pass stores DFT output f of each block in sub-block bitrev_r(f), so any sequence of such passes
 * leaves the whole output in binary bit-reversed order. dssdn_fft_twiddle holds, pass after pass, W^(f k) for
 * k < q (q = the pass's sub-block length, W = exp(-2 pi i / (R q))) as [re | im] for f = 1 .. R-1
 * (frontend_c.fft_twiddle_table); the last pass needs none. */

#define SQRT1_2 ((DSSDN_REAL)0.70710678118654752440)

/* Multiply (yr + i yi) by twiddle f of the pass (w, q, k in scope) and store it at lane u of sub-block s. */
#define TW_STORE(s, f, yr, yi, u)                                                    \
    do {                                                                             \
        const DSSDN_REAL twr_ = w[(2 * (f) - 2) * q + k + (u)];                      \
        const DSSDN_REAL twi_ = w[(2 * (f) - 1) * q + k + (u)];                      \
        r##s[k + (u)] = (yr) * twr_ - (yi) * twi_;                                   \
        i##s[k + (u)] = (yr) * twi_ + (yi) * twr_;                                   \
    } while (0)

#define PLAIN_STORE(s, f, yr, yi, u)                                                 \
    do {                                                                             \
        r##s[k + (u)] = (yr);                                                        \
        i##s[k + (u)] = (yi);                                                        \
    } while (0)

/* The 8-point DIF butterfly of lane u: inputs x_j = (XR(j, u), XI(j, u)); DFT output f goes to sub-block
 * bitrev3(f) through STORE(s, f, re, im, u), sub-block 0 through STORE0. With w8 = exp(-i pi / 4),
 * a_j = x_j + x_(j+4) and b_j = (x_j - x_(j+4)) w8^j give the even and the odd outputs by 4-point DFTs. */
#define RADIX8(u, XR, XI, STORE0, STORE)                                                      \
    do {                                                                                      \
        const DSSDN_REAL a0r = XR(0, u) + XR(4, u), a0i = XI(0, u) + XI(4, u);                \
        const DSSDN_REAL a1r = XR(1, u) + XR(5, u), a1i = XI(1, u) + XI(5, u);                \
        const DSSDN_REAL a2r = XR(2, u) + XR(6, u), a2i = XI(2, u) + XI(6, u);                \
        const DSSDN_REAL a3r = XR(3, u) + XR(7, u), a3i = XI(3, u) + XI(7, u);                \
        const DSSDN_REAL b0r = XR(0, u) - XR(4, u), b0i = XI(0, u) - XI(4, u);                \
        const DSSDN_REAL t1r = XR(1, u) - XR(5, u), t1i = XI(1, u) - XI(5, u);                \
        const DSSDN_REAL b2r = XI(2, u) - XI(6, u), b2i = XR(6, u) - XR(2, u);                \
        const DSSDN_REAL t3r = XR(3, u) - XR(7, u), t3i = XI(3, u) - XI(7, u);                \
        const DSSDN_REAL b1r = (t1r + t1i) * SQRT1_2, b1i = (t1i - t1r) * SQRT1_2;            \
        const DSSDN_REAL b3r = (t3i - t3r) * SQRT1_2, b3i = -(t3r + t3i) * SQRT1_2;           \
        const DSSDN_REAL c0r = a0r + a2r, c0i = a0i + a2i, c1r = a1r + a3r, c1i = a1i + a3i;  \
        const DSSDN_REAL d0r = a0r - a2r, d0i = a0i - a2i, d1r = a1i - a3i, d1i = a3r - a1r;  \
        const DSSDN_REAL e0r = b0r + b2r, e0i = b0i + b2i, e1r = b1r + b3r, e1i = b1i + b3i;  \
        const DSSDN_REAL g0r = b0r - b2r, g0i = b0i - b2i, g1r = b1i - b3i, g1i = b3r - b1r;  \
        STORE0(0, 0, c0r + c1r, c0i + c1i, u);                                                \
        STORE(1, 4, c0r - c1r, c0i - c1i, u);                                                 \
        STORE(2, 2, d0r + d1r, d0i + d1i, u);                                                 \
        STORE(3, 6, d0r - d1r, d0i - d1i, u);                                                 \
        STORE(4, 1, e0r + e1r, e0i + e1i, u);                                                 \
        STORE(5, 5, e0r - e1r, e0i - e1i, u);                                                 \
        STORE(6, 3, g0r + g1r, g0i + g1i, u);                                                 \
        STORE(7, 7, g0r - g1r, g0i - g1i, u);                                                 \
    } while (0)

/* Input of the first pass: packed sample n = k + j q, windowed on the fly (the table holds the even-index
 * samples, then the odd-index ones, so both reads are contiguous). The periodic Hann window is symmetric,
 * w[i] = w[N_FFT - i], so with DSSDN_WINDOW_HALF the table holds only the first half of each phase: wev[n] = w[2n] / 2 for n <= M/2 and wod[n] = w[2n + 1] / 2 for n < M/2, with
 * wev[n] = wev[M - n] and wod[n] = wod[M - 1 - n] beyond (the generator checks the symmetry; j is a constant,
 * so the choice folds at compile time). */
#define WIN_I(j, u) (k + (j) * q + (u))
#if DSSDN_WINDOW_HALF
#define WEV(j, u) ((j) < 4 ? wev[WIN_I(j, u)] : wev[FFT_M - WIN_I(j, u)])
#define WOD(j, u) ((j) < 4 ? wod[WIN_I(j, u)] : wod[FFT_M - 1 - WIN_I(j, u)])
#define WIN_ODD (FFT_M / 2 + 1)
#else
#define WEV(j, u) wev[WIN_I(j, u)]
#define WOD(j, u) wod[WIN_I(j, u)]
#define WIN_ODD FFT_M
#endif
#define X_WIN_R(j, u) ((DSSDN_REAL)x[2 * WIN_I(j, u)] * WEV(j, u))
#define X_WIN_I(j, u) ((DSSDN_REAL)x[2 * WIN_I(j, u) + 1] * WOD(j, u))

/* Pass 1: window, pack and radix-8 over the whole frame (one block, q = M / 8). */
static void radix8_first(const dssdn_sample_t *restrict x, DSSDN_REAL *restrict re, DSSDN_REAL *restrict im)
{
    enum { q = FFT_M / 8 };
    const DSSDN_REAL *restrict w = dssdn_fft_twiddle;
    const DSSDN_REAL *restrict wev = dssdn_window, *restrict wod = dssdn_window + WIN_ODD;
    DSSDN_REAL *restrict r0 = re, *restrict r1 = re + q, *restrict r2 = re + 2 * q, *restrict r3 = re + 3 * q;
    DSSDN_REAL *restrict r4 = re + 4 * q, *restrict r5 = re + 5 * q, *restrict r6 = re + 6 * q;
    DSSDN_REAL *restrict r7 = re + 7 * q;
    DSSDN_REAL *restrict i0 = im, *restrict i1 = im + q, *restrict i2 = im + 2 * q, *restrict i3 = im + 3 * q;
    DSSDN_REAL *restrict i4 = im + 4 * q, *restrict i5 = im + 5 * q, *restrict i6 = im + 6 * q;
    DSSDN_REAL *restrict i7 = im + 7 * q;
    int k, u;
#if FFT_M / 8 % LANES == 0
    for (k = 0; k < q; k += LANES) {
        for (u = 0; u < LANES; u++) {
            RADIX8(u, X_WIN_R, X_WIN_I, PLAIN_STORE, TW_STORE);
        }
    }
#else /* tiny FFTs: fewer than 4 elements per sub-block */
    for (k = 0; k < q; k++) {
        u = 0;
        RADIX8(u, X_WIN_R, X_WIN_I, PLAIN_STORE, TW_STORE);
    }
#endif
}

#define BLK_R(j, u) r##j[k + (u)]
#define BLK_I(j, u) i##j[k + (u)]

/* One block of a radix-8 pass with twiddles: eighths r0..r7 / i0..i7 of q >= 8 elements each. */
static void radix8_block(DSSDN_REAL *restrict r0, DSSDN_REAL *restrict r1, DSSDN_REAL *restrict r2,
                         DSSDN_REAL *restrict r3, DSSDN_REAL *restrict r4, DSSDN_REAL *restrict r5,
                         DSSDN_REAL *restrict r6, DSSDN_REAL *restrict r7, DSSDN_REAL *restrict i0,
                         DSSDN_REAL *restrict i1, DSSDN_REAL *restrict i2, DSSDN_REAL *restrict i3,
                         DSSDN_REAL *restrict i4, DSSDN_REAL *restrict i5, DSSDN_REAL *restrict i6,
                         DSSDN_REAL *restrict i7, const DSSDN_REAL *restrict w, int q)
{
    int k, u;
    for (k = 0; k < q; k += LANES) {
        for (u = 0; u < LANES; u++) {
            RADIX8(u, BLK_R, BLK_I, PLAIN_STORE, TW_STORE);
        }
    }
}

#define LAST_R(j, u) re[k + (j)]
#define LAST_I(j, u) im[k + (j)]
#define LAST_STORE(s, f, yr, yi, u)                                                  \
    do {                                                                             \
        re[k + (s)] = (yr);                                                          \
        im[k + (s)] = (yi);                                                          \
    } while (0)

/* The last radix-8 pass (blocks of 8, every twiddle 1) in place over the first n elements. */
static void radix8_last(DSSDN_REAL *restrict re, DSSDN_REAL *restrict im, int n)
{
    int k;
    for (k = 0; k < n; k += 8) {
        RADIX8(0, LAST_R, LAST_I, LAST_STORE, LAST_STORE);
    }
}

#if DSSDN_FFT_LOG2 % 3 == 1
/* Radix-2 DIF on lane u of the two halves a, b of a block: (a + b, (a - b) W^k), W = exp(-2 pi i / 2h). */
#define RADIX2(u)                                                                    \
    do {                                                                             \
        const DSSDN_REAL xr = ar[k + (u)], xi = ai[k + (u)];                         \
        const DSSDN_REAL yr = br[k + (u)], yi = bi[k + (u)];                         \
        const DSSDN_REAL dr = xr - yr, di = xi - yi;                                 \
        ar[k + (u)] = xr + yr;                                                       \
        ai[k + (u)] = xi + yi;                                                       \
        br[k + (u)] = dr * w[k + (u)] - di * w[h + k + (u)];                         \
        bi[k + (u)] = dr * w[h + k + (u)] + di * w[k + (u)];                         \
    } while (0)

/* One block of a radix-2 pass: halves a, b of h elements each. */
static void radix2_block(DSSDN_REAL *restrict ar, DSSDN_REAL *restrict ai, DSSDN_REAL *restrict br,
                         DSSDN_REAL *restrict bi, const DSSDN_REAL *restrict w, int h)
{
    int k, u;
    if (h % LANES) {
        for (k = 0; k < h; k++) {
            RADIX2(0);
        }
        return;
    }
    for (k = 0; k < h; k += LANES) {
        for (u = 0; u < LANES; u++) {
            RADIX2(u);
        }
    }
}
#endif

#if DSSDN_FFT_LOG2 % 3 == 2
/* Radix-4 DIF on lane u of the quarters: with W = exp(-2 pi i / 4q), out0 = (x0 + x2) + (x1 + x3),
 * out1 = ((x0 + x2) - (x1 + x3)) W^2k, out2 = ((x0 - x2) - i (x1 - x3)) W^k,
 * out3 = ((x0 - x2) + i (x1 - x3)) W^3k. */
#define RADIX4(u)                                                                            \
    do {                                                                                     \
        const DSSDN_REAL s02r = r0[k + (u)] + r2[k + (u)], s02i = i0[k + (u)] + i2[k + (u)]; \
        const DSSDN_REAL d02r = r0[k + (u)] - r2[k + (u)], d02i = i0[k + (u)] - i2[k + (u)]; \
        const DSSDN_REAL s13r = r1[k + (u)] + r3[k + (u)], s13i = i1[k + (u)] + i3[k + (u)]; \
        const DSSDN_REAL vr = i1[k + (u)] - i3[k + (u)], vi = r3[k + (u)] - r1[k + (u)];     \
        r0[k + (u)] = s02r + s13r;                                                           \
        i0[k + (u)] = s02i + s13i;                                                           \
        TW_STORE(1, 2, s02r - s13r, s02i - s13i, u);                                         \
        TW_STORE(2, 1, d02r + vr, d02i + vi, u);                                             \
        TW_STORE(3, 3, d02r - vr, d02i - vi, u);                                             \
    } while (0)

/* One block of a radix-4 pass: quarters r0..r3 / i0..i3 of q elements each. */
static void radix4_block(DSSDN_REAL *restrict r0, DSSDN_REAL *restrict r1, DSSDN_REAL *restrict r2,
                         DSSDN_REAL *restrict r3, DSSDN_REAL *restrict i0, DSSDN_REAL *restrict i1,
                         DSSDN_REAL *restrict i2, DSSDN_REAL *restrict i3, const DSSDN_REAL *restrict w,
                         int q)
{
    int k, u;
    if (q % LANES) {
        for (k = 0; k < q; k++) {
            RADIX4(0);
        }
        return;
    }
    for (k = 0; k < q; k += LANES) {
        for (u = 0; u < LANES; u++) {
            RADIX4(u);
        }
    }
}
#endif

/* Windowed, packed frame -> its M-point FFT (forward sign, unscaled) in bit-reversed order; with FUSED_LAST
 * only the first 32 elements have had the last pass (split_power does the others). */
static void window_fft(const dssdn_sample_t *x, DSSDN_REAL *re, DSSDN_REAL *im)
{
    const DSSDN_REAL *w = dssdn_fft_twiddle + 14 * (FFT_M / 8);
    int len = FFT_M / 8, q, start;
    radix8_first(x, re, im);
#if DSSDN_FFT_LOG2 % 3 == 1
    for (start = 0; start < FFT_M; start += len) {
        radix2_block(re + start, im + start, re + start + len / 2, im + start + len / 2, w, len / 2);
    }
    w += len;
    len /= 2;
#elif DSSDN_FFT_LOG2 % 3 == 2
    q = len / 4;
    for (start = 0; start < FFT_M; start += len) {
        DSSDN_REAL *r = re + start, *i = im + start;
        radix4_block(r, r + q, r + 2 * q, r + 3 * q, i, i + q, i + 2 * q, i + 3 * q, w, q);
    }
    w += 6 * q;
    len /= 4;
#endif
    for (q = len / 8; q >= 8; q /= 8) {
        for (start = 0; start < FFT_M; start += 8 * q) {
            DSSDN_REAL *r = re + start, *i = im + start;
            radix8_block(r, r + q, r + 2 * q, r + 3 * q, r + 4 * q, r + 5 * q, r + 6 * q, r + 7 * q, i, i + q,
                         i + 2 * q, i + 3 * q, i + 4 * q, i + 5 * q, i + 6 * q, i + 7 * q, w, q);
        }
        w += 14 * q;
    }
#if FUSED_LAST
    radix8_last(re, im, 32);
#else
    if (len >= 8) {
        radix8_last(re, im, FFT_M);
    }
#endif
}

/* ------------------------------------------------------------------------------- split and power */

/* Position p of the FFT output holds Z[k], k = bitrev(p); for p in a block [2h, 4h) (h a power of two),
 * Z[M - k] sits at 6h - 1 - p, the mirror image inside the same block. With a = Z[k], b = Z[M - k] (z was
 * windowed with HALF the window): E = a + conj b, D = a - conj b, T = W^k D with W = exp(-2 pi i / N),
 * X[k] = E - i T and X[M - k] = conj(E) - i conj(T). One pair: a at index ia of the a run, b at index ib of
 * the b run, W^k at index ia of wr/wi; |X|^2 goes to index ia of da and ib of db (PUT_POWER: the powers' bins
 * through the table, or the same positions; see DSSDN_POWER_SCATTER). */
#if DSSDN_POWER_SCATTER
typedef const uint16_t *power_dst_t; /* bin of each position */
#define PUT_POWER(d, i, v) (power[(d)[i]] = (v))
#else
typedef DSSDN_REAL *restrict power_dst_t; /* the powers at positions */
#define PUT_POWER(d, i, v) ((d)[i] = (v))
#endif
#define SPLIT_PAIR(ia, ib)                                                               \
    do {                                                                                 \
        const DSSDN_REAL ar = are[ia], ai = aim[ia], br = bre[ib], bi = bim[ib];         \
        const DSSDN_REAL er = ar + br, ei = ai - bi, dr = ar - br, di = ai + bi;         \
        const DSSDN_REAL tr = wr[ia] * dr - wi[ia] * di, ti = wr[ia] * di + wi[ia] * dr; \
        const DSSDN_REAL xr = er + ti, xi = ei - tr, yr = er - ti, yi = ei + tr;         \
        PUT_POWER(da, ia, xr * xr + xi * xi);                                            \
        PUT_POWER(db, ib, yr * yr + yi * yi);                                            \
    } while (0)

/* The pairs of one block [2h, 4h): a run = positions 2h.., b run = positions 3h.. read backwards. */
static void split_block(const DSSDN_REAL *restrict are, const DSSDN_REAL *restrict aim,
                        const DSSDN_REAL *restrict bre, const DSSDN_REAL *restrict bim,
                        const DSSDN_REAL *restrict wr, const DSSDN_REAL *restrict wi,
                        power_dst_t da, power_dst_t db, DSSDN_REAL *restrict power, int h)
{
    (void)power; /* unused when the powers stay at their positions */
    int t, u;
    if (h % LANES) {
        for (t = 0; t < h; t++) {
            SPLIT_PAIR(t, h - 1 - t);
        }
        return;
    }
    for (t = 0; t < h; t += LANES) {
        for (u = 0; u < LANES; u++) {
            SPLIT_PAIR(t + u, h - 1 - t - u);
        }
    }
}

#if FUSED_LAST
#define CH_R(j, u) xr[8 * (u) + (j)]
#define CH_I(j, u) xi[8 * (u) + (j)]
#define CH_STORE(s, f, vr, vi, u)                                                    \
    do {                                                                             \
        yr[4 * (s) + (u)] = (vr);                                                    \
        yi[4 * (s) + (u)] = (vi);                                                    \
    } while (0)

/* The last radix-8 pass on one chunk of 4 blocks (xr/xi: 32 elements, block u = elements 8u .. 8u + 7), block
 * u's output s stored at y[4s + u]: the blocks are the lanes, so the inputs are transposed once and the
 * outputs are not transposed back (radix8_last does both; on x86 the shuffles were half the pass). Chunk
 * position 4s + u thus holds bit-reversed position 8u + s; frontend_c.fft_output_position makes the tables
 * for this order. */
static void last8_chunk(const DSSDN_REAL *restrict xr, const DSSDN_REAL *restrict xi, DSSDN_REAL *restrict yr,
                        DSSDN_REAL *restrict yi)
{
    int u;
    for (u = 0; u < 4; u++) { /* the 4 blocks of the chunk, whatever LANES is */
        RADIX8(u, CH_R, CH_I, CH_STORE, CH_STORE);
    }
}

/* n pairs (a[t], b[n - 1 - t]) of last8_chunk outputs; wr/wi hold W^k of each a position. */
static void split_chunk(const DSSDN_REAL *restrict are, const DSSDN_REAL *restrict aim,
                        const DSSDN_REAL *restrict bre, const DSSDN_REAL *restrict bim,
                        const DSSDN_REAL *restrict wr, const DSSDN_REAL *restrict wi,
                        power_dst_t da, power_dst_t db, DSSDN_REAL *restrict power, int n)
{
    (void)power;
    int t;
    for (t = 0; t < n; t++) {
        SPLIT_PAIR(t, n - 1 - t);
    }
}
#endif

/* The powers |X[k]|^2, k = 0..M, at the FFT output positions (position p: k = bitrev(p); X[M] at M; with
 * FUSED_LAST, chunks after the first in last8_chunk's order). The mirror pairing survives that order: a block
 * [2h, 4h) with h >= 16 is whole chunks, and the mirror of chunk position 4s + u in chunk c is position
 * 4(7 - s) + (3 - u) of the mirror chunk. */
static void split_power(const DSSDN_REAL *re, const DSSDN_REAL *im, DSSDN_REAL *power)
{
    const DSSDN_REAL *w = dssdn_split_twiddle;
#if DSSDN_POWER_SCATTER
    const uint16_t *bin = dssdn_power_bin; /* split_block's destinations: the bins of the positions */
#else
    DSSDN_REAL *bin = power; /* the positions themselves */
#endif
    const DSSDN_REAL four = 4;
    int h;
    /* k = 0 and M from Z[0], k = M/2 from Z[M/2] at position 1 (each its own partner). */
    power[0] = four * (re[0] + im[0]) * (re[0] + im[0]);
    power[FFT_M] = four * (re[0] - im[0]) * (re[0] - im[0]);
#if DSSDN_POWER_SCATTER
    power[FFT_M / 2] = four * (re[1] * re[1] + im[1] * im[1]);
#else
    power[1] = four * (re[1] * re[1] + im[1] * im[1]);
#endif
    for (h = 1; h <= FFT_M / 4 && (!FUSED_LAST || h < 16); h *= 2) {
        split_block(re + 2 * h, im + 2 * h, re + 3 * h, im + 3 * h, w, w + h, bin + 2 * h, bin + 3 * h, power, h);
        w += 2 * h;
    }
#if FUSED_LAST
    {
        DSSDN_REAL ar[32], ai[32], br[32], bi[32];
        int c;
        last8_chunk(re + 32, im + 32, ar, ai); /* block [32, 64) is chunk 1 alone: its pairs are inside it */
        split_chunk(ar, ai, ar + 16, ai + 16, w, w + 16, bin + 32, bin + 48, power, 16);
        w += 32;
        for (h = 32; h <= FFT_M / 4; h *= 2) {
            for (c = h / 16; c < 3 * h / 32; c++) { /* chunk c of block [2h, 4h) pairs with 3h/16 - 1 - c */
                const int c2 = 3 * h / 16 - 1 - c;
                last8_chunk(re + 32 * c, im + 32 * c, ar, ai);
                last8_chunk(re + 32 * c2, im + 32 * c2, br, bi);
                split_chunk(ar, ai, br, bi, w, w + 32, bin + 32 * c, bin + 32 * c2, power, 32);
                w += 64;
            }
        }
    }
#endif
}

#if !DSSDN_POWER_SCATTER
/* Powers at FFT output positions -> natural bin order (dssdn_power_order[k] = position of bin k). */
static void natural_order(const DSSDN_REAL *restrict pos, DSSDN_REAL *restrict power)
{
    int k;
    for (k = 0; k < FFT_M; k++) {
        power[k] = pos[dssdn_power_order[k]];
    }
    power[FFT_M] = pos[FFT_M];
}
#endif

/* ------------------------------------------------------------------------------------ mel, log */

#if LANES != 1
/* Bands are summed MEL_GROUP at a time: each band's dot product runs in 4 independent lanes over its
 * zero-padded run of bins and leaves its 4 partial sums in part[]; one loop over the group then adds them up
 * and takes the log. Keeping the horizontal additions out of the per-band code turns them into one vectorised
 * loop per group instead of a chain of shuffles per band (1.3x faster on the host). 64 bands a group: the log's
 * polynomial is a chain of dependent steps, so a group of one or two vectors waited on it (16 bands were 8 % slower
 * on an AVX-512 host, the same with SSE2); the partial sums, 4 per band, still fit in the free scratch. */
#define MEL_GROUP 64

/* Bands band0 .. band0 + n_bands - 1, whose weights start at w (the bands' weights follow each other in the
 * table, so the caller carries the pointer from group to group instead of a table of offsets); returns the
 * weights of the next band. */
static const DSSDN_REAL *mel_partial_sums(const DSSDN_REAL *restrict power, int band0, int n_bands,
                                          const DSSDN_REAL *restrict w, DSSDN_REAL *restrict part)
{
    int j, i;
    for (j = 0; j < n_bands; j++) {
        const DSSDN_REAL *restrict p = power + dssdn_mel_start[band0 + j];
        const int n = (int)dssdn_mel_len[band0 + j]; /* a multiple of MEL_LANES */
        /* an array of lanes: one SSE/NEON vector (named accumulators were 2 % slower on x86); same sums */
        DSSDN_REAL acc[MEL_LANES] = {0};
        int u;
        for (i = 0; i < n; i += MEL_LANES) {
            for (u = 0; u < MEL_LANES; u++) {
                acc[u] += w[i + u] * p[i + u];
            }
        }
        for (u = 0; u < MEL_LANES; u++) {
            part[MEL_LANES * j + u] = acc[u];
        }
        w += n;
    }
    return w;
}

#endif

#ifdef DSSDN_DOUBLE
static float log10_mel(double x)
{
    return (float)log10(x + DSSDN_LOG_EPS);
}
#else
/* log10(x + eps) in float. y = x + eps = 2^e m with m in [2/3, 4/3) taken from the bits (y > 0 and normal: it
 * is at least eps), then log10 y = e log10(2) + f g(f), f = m - 1 (exact), g the generated degree-7
 * polynomial. Shifts and masks act on uint32_t, so every step is defined C99. (y - y) turns a NaN or inf
 * input into NaN instead of a plausible number. */
static float log10_mel(float x)
{
    const float *c = dssdn_log10_poly;
    const float y = x + (float)DSSDN_LOG_EPS;
    uint32_t u, t;
    float m, f, g;
    int32_t e;
    memcpy(&u, &y, sizeof u);
    t = u - 0x3f2aaaabu;                                /* bits of 2/3, rounded up */
    e = (int32_t)(t >> 23) - (int32_t)((t >> 31) << 9); /* floor(log2(y / (2/3))), two's complement */
    u -= t & 0xff800000u;
    memcpy(&m, &u, sizeof m);
    f = m - 1.0f;
    g = ((((((c[7] * f + c[6]) * f + c[5]) * f + c[4]) * f + c[3]) * f + c[2]) * f + c[1]) * f + c[0];
    return (float)e * (float)0.30102999566398119521 + f * g + (y - y);
}
#endif

#if LANES != 1
/* out[j] = log10(sum of part[4j .. 4j + 3] + eps), j < n_bands. */
static void mel_finish(const DSSDN_REAL *restrict part, float *restrict out, int n_bands)
{
    int j;
    for (j = 0; j < n_bands; j++) {
        out[j] = log10_mel((part[4 * j] + part[4 * j + 2]) + (part[4 * j + 1] + part[4 * j + 3]));
    }
}

#endif

#if LANES == 1
/* Scalar cores: each band's four lanes in registers, summed and logged at once (no partial sums through
 * memory: 8 loads and stores a band fewer; with the start below, mel and log went from 14.6 k to 11.8 k emulated
 * instructions a frame on the M4). The lanes start
 * from the band's first 4 products (every band has some: the generator pads an empty one) instead of from
 * 0 + those products: the same bits, as every product is +0, positive or NaN (weights and powers are >= 0),
 * and a zero's sign cannot reach the log (it adds eps). The same sums as mel_partial_sums and mel_finish. */
static void mel_log_scalar(const DSSDN_REAL *restrict power, float *restrict out)
{
    const DSSDN_REAL *restrict w = dssdn_mel_weights;
    int j;
    for (j = 0; j < DSSDN_N_MELS; j++) {
        const DSSDN_REAL *restrict p = power + dssdn_mel_start[j];
        const DSSDN_REAL *const end = w + dssdn_mel_len[j]; /* a non-zero multiple of MEL_LANES */
        DSSDN_REAL a0 = w[0] * p[0], a1 = w[1] * p[1], a2 = w[2] * p[2], a3 = w[3] * p[3];
        for (w += MEL_LANES, p += MEL_LANES; w != end; w += MEL_LANES, p += MEL_LANES) {
            a0 += w[0] * p[0];
            a1 += w[1] * p[1];
            a2 += w[2] * p[2];
            a3 += w[3] * p[3];
        }
        out[j] = log10_mel((a0 + a2) + (a1 + a3));
    }
}
#endif

void dssdn_logmel_frame(const dssdn_sample_t samples[DSSDN_N_FFT], float out[DSSDN_N_MELS],
                        DSSDN_REAL scratch[DSSDN_SCRATCH_LEN])
{
    DSSDN_REAL *re = scratch, *im = scratch + SCRATCH_IM;
#if LANES == 1
    DSSDN_REAL *power = scratch + SCRATCH_POWER; /* scattered straight to bin order (DSSDN_POWER_SCATTER) */
    window_fft(samples, re, im);
    split_power(re, im, power);
    mel_log_scalar(power, out);
#else
    DSSDN_REAL *power = scratch, *pos = scratch + SCRATCH_POWER;
#if DSSDN_N_BINS >= MEL_LANES * MEL_GROUP
    DSSDN_REAL *part = pos; /* free once the powers are in bin order */
#else
    DSSDN_REAL part[MEL_LANES * MEL_GROUP];
#endif
    const DSSDN_REAL *w = dssdn_mel_weights;
    int band;
    window_fft(samples, re, im);
    split_power(re, im, pos);
    natural_order(pos, power);
    for (band = 0; band + MEL_GROUP <= DSSDN_N_MELS; band += MEL_GROUP) {
        w = mel_partial_sums(power, band, MEL_GROUP, w, part);
        mel_finish(part, out + band, MEL_GROUP); /* constant trip count: vectorised */
    }
#if DSSDN_N_MELS % MEL_GROUP
    (void)mel_partial_sums(power, band, DSSDN_N_MELS % MEL_GROUP, w, part);
    mel_finish(part, out + band, DSSDN_N_MELS % MEL_GROUP);
#endif
#endif
}

DSSDN_COLD void dssdn_frontend_init(dssdn_frontend_t *st)
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

/* Drop the oldest HOP samples of the window. On scalar cores (a microcontroller's C library: newlib's memmove
 * copies a word in ~0.7 instructions a byte, its memcpy in ~0.53) as memcpy's of at most HOP samples, which do
 * not overlap (each source starts HOP after its destination): 0.26 k emulated instructions a frame fewer on the
 * M4. Elsewhere, and for short hops (a call each), one memmove. */
static void shift_samples(dssdn_sample_t *buf)
{
#if DSSDN_LANES == 1 && DSSDN_HOP >= 64
    int off;
    for (off = 0; off < DSSDN_N_FFT - DSSDN_HOP; off += DSSDN_HOP) {
        const int n = DSSDN_N_FFT - DSSDN_HOP - off < DSSDN_HOP ? DSSDN_N_FFT - DSSDN_HOP - off : DSSDN_HOP;
        memcpy(buf + off, buf + off + DSSDN_HOP, (size_t)n * sizeof(buf[0]));
    }
#else
    memmove(buf, buf + DSSDN_HOP, (size_t)(DSSDN_N_FFT - DSSDN_HOP) * sizeof(buf[0]));
#endif
}

/* push and flush share this; samples == NULL means n zeros. */
static int push_samples(dssdn_frontend_t *st, const dssdn_sample_t *samples, int n, float *out_frames,
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
            memcpy(st->buf + st->fill, samples, (size_t)take * sizeof(st->buf[0]));
            samples += take;
        } else {
            memset(st->buf + st->fill, 0, (size_t)take * sizeof(st->buf[0]));
        }
        st->fill += take;
        n -= take;
        if (st->fill == DSSDN_N_FFT) {
            dssdn_logmel_frame(st->buf, out_frames + (long)frames * DSSDN_N_MELS, st->scratch);
            frames++;
            shift_samples(st->buf);
            st->fill = DSSDN_N_FFT - DSSDN_HOP;
        }
    }
    return frames;
}

int dssdn_frontend_push(dssdn_frontend_t *st, const dssdn_sample_t *samples, int n, float *out_frames,
                        int max_frames)
{
    if (samples == NULL && n > 0) {
        return -1;
    }
    return push_samples(st, samples, n, out_frames, max_frames);
}

DSSDN_COLD int dssdn_frontend_flush(dssdn_frontend_t *st, float *out_frames, int max_frames)
{
    const int frames = push_samples(st, NULL, DSSDN_N_FFT / 2, out_frames, max_frames);
    if (frames >= 0) {
        st->flushed = 1;
    }
    return frames;
}
