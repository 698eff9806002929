/* dssdn_frontend.c - log10 mel power frames, the C twin of dssdn_edge.frontend (see the header).
 *
 * Per frame: periodic Hann window, an N_FFT-point real FFT done as an N_FFT/2-point complex radix-2
 * FFT of the even/odd samples packed as re/im followed by the usual split step, power |X[k]|^2,
 * the sparse HTK mel sums, log10(sum + eps). All arithmetic is DSSDN_REAL (float unless built with
 * -DDSSDN_DOUBLE); the window, twiddles and mel weights were computed in float64 by Python and are
 * rounded once, by the compiler, to DSSDN_REAL.
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
#if DSSDN_HOP < 1 || DSSDN_HOP > DSSDN_N_FFT
#error "dssdn_frontend_tables.h: DSSDN_HOP must be in 1..DSSDN_N_FFT"
#endif

/* In-place complex FFT of FFT_M points stored re,im,re,im...; forward sign, no scaling.
 * Twiddle exp(-2 pi i j / len) is entry j * (N_FFT / len) of the N_FFT-point table. */
static void fft_complex(DSSDN_REAL *z)
{
    int i, len;
    for (i = 0; i < FFT_M; i++) {
        int j = (int)dssdn_bitrev[i];
        if (j > i) {
            DSSDN_REAL tr = z[2 * i], ti = z[2 * i + 1];
            z[2 * i] = z[2 * j];
            z[2 * i + 1] = z[2 * j + 1];
            z[2 * j] = tr;
            z[2 * j + 1] = ti;
        }
    }
    for (len = 2; len <= FFT_M; len <<= 1) {
        const int half = len / 2;
        const int stride = DSSDN_N_FFT / len;
        int start, k;
        for (k = 0; k < half; k++) {
            const DSSDN_REAL wr = dssdn_twiddle[2 * k * stride];
            const DSSDN_REAL wi = dssdn_twiddle[2 * k * stride + 1];
            for (start = k; start < FFT_M; start += len) {
                DSSDN_REAL *a = z + 2 * start;
                DSSDN_REAL *b = a + 2 * half;
                const DSSDN_REAL tr = wr * b[0] - wi * b[1];
                const DSSDN_REAL ti = wr * b[1] + wi * b[0];
                b[0] = a[0] - tr;
                b[1] = a[1] - ti;
                a[0] += tr;
                a[1] += ti;
            }
        }
    }
}

/* Power spectrum |X[k]|^2, k = 0..N_FFT/2, of the real signal whose even/odd samples were packed
 * into z as re/im and transformed by fft_complex. With a = Z[k], b = Z[M-k]:
 * E = (a + conj b) / 2, D = (a - conj b) / 2, X[k] = E - i W^k D and X[M-k] = conj(E) - i conj(W^k D). */
static void real_power(const DSSDN_REAL *z, DSSDN_REAL *power)
{
    int k;
    power[0] = (z[0] + z[1]) * (z[0] + z[1]);
    power[FFT_M] = (z[0] - z[1]) * (z[0] - z[1]);
    for (k = 1; k <= FFT_M / 2; k++) {
        const DSSDN_REAL ar = z[2 * k], ai = z[2 * k + 1];
        const DSSDN_REAL br = z[2 * (FFT_M - k)], bi = z[2 * (FFT_M - k) + 1];
        const DSSDN_REAL er = HALF * (ar + br), ei = HALF * (ai - bi);
        const DSSDN_REAL dr = HALF * (ar - br), di = HALF * (ai + bi);
        const DSSDN_REAL wr = dssdn_twiddle[2 * k], wi = dssdn_twiddle[2 * k + 1];
        const DSSDN_REAL tr = wr * dr - wi * di; /* T = W^k D */
        const DSSDN_REAL ti = wr * di + wi * dr;
        const DSSDN_REAL xr = er + ti, xi = ei - tr;    /* X[k] */
        const DSSDN_REAL yr = er - ti, yi = -ei - tr;   /* X[M-k] */
        power[k] = xr * xr + xi * xi;
        power[FFT_M - k] = yr * yr + yi * yi;
    }
}

void dssdn_logmel_frame(const float samples[DSSDN_N_FFT], float out[DSSDN_N_MELS],
                        DSSDN_REAL scratch[DSSDN_SCRATCH_LEN])
{
    const DSSDN_REAL eps = (DSSDN_REAL)DSSDN_LOG_EPS;
    DSSDN_REAL *z = scratch;
    DSSDN_REAL *power = scratch + DSSDN_N_FFT;
    int i, band;
    for (i = 0; i < DSSDN_N_FFT; i++) {
        z[i] = (DSSDN_REAL)samples[i] * dssdn_window[i];
    }
    fft_complex(z);
    real_power(z, power);
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
