/* dssdn_features.c - delta, normalisation and int8 input on top of the log-mel twin (see dssdn_features.h).
 *
 * The log-mel frames come from dssdn_frontend_push, fed so that each call completes at most one frame, which it
 * writes straight into the ring of the last 2W + 1 log-mel frames: no frame is copied. A feature frame is then
 * read from the ring by its distance d from the newest log-mel frame (W during the stream, W - 1 .. 0 at flush),
 * with the two edge replications of Frontend.features as clamps on the distance.
 *
 * Rounding to int8 without libm and without double: v / scale is divided in float (correctly rounded, like
 * numpy's float64 quotient a monotonic rounding of the exact one), so it can only disagree with numpy's rounding
 * when the float quotient is exactly halfway between two integers; then the exact quotient is compared with the
 * halfway point in integer arithmetic (round_half_even below). Cost: one float division per value, and a few
 * integer operations on the rare ties.
 */
#include <float.h>
#include <math.h>
#include <string.h>
#if defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#endif

#include "dssdn_features.h"

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "dssdn_features.c needs float arithmetic evaluated in float (FLT_EVAL_METHOD 0): e.g. SSE2, not x87"
#endif
#if DSSDN_CHANNELS != 1 + (DSSDN_DELTA_WIDTH > 0)
#error "dssdn_frontend_tables.h: DSSDN_CHANNELS must be 2 with a delta channel, else 1"
#endif

#define R DSSDN_MEL_HISTORY
#define W DSSDN_DELTA_HALF
#define ZERO_CHUNK 64

static const dssdn_sample_t zeros[ZERO_CHUNK]; /* the end padding, pushed a chunk at a time */

DSSDN_COLD int dssdn_features_state_bytes(void)
{
    return (int)sizeof(dssdn_features_t);
}

DSSDN_COLD void dssdn_features_describe(uint32_t out[DSSDN_DESCRIBE_LEN])
{
    out[0] = DSSDN_CONFIG_ID;
    out[1] = DSSDN_SAMPLE_RATE;
    out[2] = DSSDN_N_FFT;
    out[3] = DSSDN_HOP;
    out[4] = DSSDN_N_MELS;
    out[5] = DSSDN_DELTA_WIDTH;
    out[6] = DSSDN_CHANNELS;
    out[7] = DSSDN_SEGMENT_FRAMES;
}

DSSDN_COLD void dssdn_features_init(dssdn_features_t *st, const dssdn_input_params_t *input)
{
    memset(st, 0, sizeof(*st));
    dssdn_frontend_init(&st->fe);
    st->input = input;
    st->head = 0;
    st->seen = 0;
    st->flushed = 0;
}

/* ----------------------------------------------------------------------------------- quantisation */

/* Magnitude bits of a positive normal float: value = m 2^e, m < 2^24 an integer. */
DSSDN_COLD static void float_parts(float x, int64_t *m, int *e)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    *m = (int64_t)((u & 0x7fffffu) | 0x800000u);
    *e = (int)((u >> 23) & 0xffu) - 150;
}

/* Is a > (k + 1/2) s, < it (-1) or equal (0)? a, s positive normal floats, 0 <= k < 2^20: 2a vs (2k + 1) s
 * as integers m_a 2^(e_a + 1) vs (2k + 1) m_s 2^e_s. Only called when a / s rounded to float is k + 1/2,
 * so the exponents differ by a few bits (both sides then fit in 64 bits). */
DSSDN_COLD static int compare_half(float a, float s, int32_t k)
{
    int64_t ma, ms, lhs, rhs;
    int ea, es, shift;
    float_parts(a, &ma, &ea);
    float_parts(s, &ms, &es);
    lhs = ma;
    rhs = (2 * (int64_t)k + 1) * ms;
    shift = ea + 1 - es;
    if (shift > 24 || shift < -24) {
        return shift > 0 ? 1 : -1; /* cannot happen for a tie; keeps the shifts defined */
    }
    if (shift >= 0) {
        lhs <<= shift;
    } else {
        rhs <<= -shift;
    }
    return (lhs > rhs) - (lhs < rhs);
}

/* round_half_even(v / s) as numpy's np.round(float64(v) / s) gives it, clamped to +-QMAX (the int8 clip
 * follows anyway). s > 0. */
#define QMAX 1024
DSSDN_COLD static int32_t round_half_even(float v, float s)
{
    const float a = v < 0.0f ? -v : v;
    float f = a / s, frac;
    int32_t k;
    int32_t r;
    if (!(f < (float)QMAX)) { /* also NaN */
        r = QMAX;
    } else {
        k = (int32_t)f; /* floor: f >= 0 */
        frac = f - (float)k; /* exact */
        if (frac > 0.5f) {
            r = k + 1;
        } else if (frac < 0.5f) {
            r = k;
        } else { /* the float quotient is halfway: decide on the exact one */
            const int side = compare_half(a, s, k);
            r = side > 0 ? k + 1 : side < 0 ? k : k + (k & 1);
        }
    }
    if (v != v) {
        return 0;
    }
    return v < 0.0f ? -r : r;
}

static int8_t clamp_int8(int32_t q)
{
#if defined(__ARM_FEATURE_SAT)
    return (int8_t)__ssat(q, 8); /* one SSAT: gcc 12 makes compares and conditional moves of the C below */
#else
    q = q < -128 ? -128 : q;
    q = q > 127 ? 127 : q;
    return (int8_t)q;
#endif
}

/* Bands are normalised and quantised BLOCK at a time: loops of constant trip count over contiguous bands, which
 * gcc -O2 turns into vector code (divide, round, convert), with the tie fix-up as a rare scalar pass. 16 keeps a
 * microcontroller's stack small; with AVX (a host build) 64, which spends less on each block's checks (5 % of the
 * C time there). Any BLOCK gives the same int8 values: a block only decides which exact path rounds them. */
#if defined(__AVX__)
#define BLOCK 64
#else
#define BLOCK 16
#endif
#define MAGIC 12582912.0f /* 1.5 * 2^23: (f + MAGIC) - MAGIC is f rounded half to even, |f| < 2^22 */

/* v[c][j] (bands b0 .. b0 + n - 1 of one frame) -> out[j * CHANNELS + c]. Per value: x = (v - mean) / std and
 * f = x / scale in float; f rounded half to even. A block holding a value the fast loop must not convert (f
 * exactly halfway: numpy rounds the float64 quotient, halfway only when the exact one is; or |f| > QMAX, or NaN)
 * takes the careful scalar path, round_half_even, instead. The fast loop has no branch, so gcc vectorises it;
 * the int8 values of both channels are interleaved in one loop of constant trip count afterwards, vectorised
 * too (a strided store per channel stayed scalar: 4 % of the host's C time). */
#ifndef DSSDN_VECTOR_QUANTIZE /* -DDSSDN_VECTOR_QUANTIZE=0 builds the scalar cores' path on any host, for tests */
#if defined(__SSE2__) || defined(__ARM_NEON) || defined(__ARM_NEON__) || defined(__ALTIVEC__)
#define DSSDN_VECTOR_QUANTIZE 1
#else
#define DSSDN_VECTOR_QUANTIZE 0
#endif
#endif
#define VECTOR_QUANTIZE DSSDN_VECTOR_QUANTIZE

#if !VECTOR_QUANTIZE
/* The same steps, one value at a time, for cores without float vectors (Cortex-M), where the branch-free check
 * above costs five compare-and-transfer pairs per value and blocks through memory cost loads and stores (58
 * emulated instructions per value on the M4 that way; 28 a value here, the delta's own steps included). Same
 * float operations, same rounding, same fall-back to round_half_even: the same bits as the vector path. zp_bits
 * folds the zero point into the rounding: for |f| < 2^22, t = f + MAGIC lies in [2^23, 2^24), where floats are
 * the integers, so the bits of t minus those of MAGIC are f rounded half to even, and minus zp_bits =
 * bits(MAGIC) - zero_point they are that plus the zero point, with no float-to-integer conversion. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int quantize_fast(float v, float mean, float std, float s, int32_t zp_bits, int8_t *out)
{
    const float x = (v - mean) / std;
    const float f = x / s;
    const float t = f + MAGIC;
    const float d = f - (t - MAGIC); /* exact, |d| <= 1/2 */
    uint32_t bits;
    /* d * d == 1/4 exactly when |d| == 1/2: otherwise |d| <= 1/2 - u (u >= 2^-24 the ulp of f when |f| >= 1/2,
     * and |d| = |f| < 1/2 - 2^-25 below), so d * d <= 1/4 - u + u^2 rounds below 1/4. One compare, not two;
     * and |f| < QMAX is false for NaN. */
    if (!(fabsf(f) < (float)QMAX) || d * d == 0.25f) {
        return 0;
    }
    memcpy(&bits, &t, sizeof bits);
    *out = clamp_int8((int32_t)bits - zp_bits); /* bits < 2^31 as |f| < QMAX: int32 throughout, no overflow */
    return 1;
}

/* One value by whichever path it needs. Cold: the loops that call it are the rare careful ones. */
DSSDN_COLD static int8_t quantize_one(float v, float mean, float std, float s, int32_t zp, int32_t zp_bits)
{
    int8_t q;
    if (!quantize_fast(v, mean, std, s, zp_bits, &q)) {
        q = clamp_int8(round_half_even((v - mean) / std, s) + zp);
    }
    return q;
}

/* bits(MAGIC) - zero_point, for quantize_fast. */
static int32_t zero_point_bits(const dssdn_input_params_t *in)
{
    const float magic = MAGIC;
    uint32_t bits;
    memcpy(&bits, &magic, sizeof bits);
    return (int32_t)bits - in->zero_point;
}
#else
static void quantize_block(const dssdn_input_params_t *in, const float v[DSSDN_CHANNELS][BLOCK], int b0, int n,
                           int8_t *out)
{
    const float s = in->scale;
    int32_t q[DSSDN_CHANNELS][BLOCK];
    int c, j;
    for (c = 0; c < DSSDN_CHANNELS; c++) {
        const float *mean = in->mean[c] + b0, *std = in->std[c] + b0;
        float r[BLOCK];
        int odd = 0;
        if (n == BLOCK) { /* constant trip count: vectorised */
            for (j = 0; j < BLOCK; j++) {
                const float f = ((v[c][j] - mean[j]) / std[j]) / s;
                r[j] = (f + MAGIC) - MAGIC;
                odd |= (f - r[j] == 0.5f) | (f - r[j] == -0.5f) | (f > (float)QMAX) | (f < -(float)QMAX) | (f != f);
            }
        } else {
            odd = 1;
        }
        if (odd) {
            for (j = 0; j < n; j++) {
                q[c][j] = round_half_even((v[c][j] - mean[j]) / std[j], s);
            }
        } else {
            for (j = 0; j < BLOCK; j++) {
                q[c][j] = (int32_t)r[j];
            }
        }
    }
    if (n == BLOCK) { /* constant trip count: vectorised, channels interleaved in registers */
        for (j = 0; j < BLOCK; j++) {
            for (c = 0; c < DSSDN_CHANNELS; c++) {
                out[j * DSSDN_CHANNELS + c] = clamp_int8(q[c][j] + in->zero_point);
            }
        }
    } else {
        for (j = 0; j < n; j++) {
            for (c = 0; c < DSSDN_CHANNELS; c++) {
                out[j * DSSDN_CHANNELS + c] = clamp_int8(q[c][j] + in->zero_point);
            }
        }
    }
}
#endif

#if !VECTOR_QUANTIZE
void dssdn_features_quantize(const dssdn_input_params_t *input, const float in[DSSDN_FRAME_VALUES],
                             int8_t out[DSSDN_FRAME_VALUES])
{
    const int32_t zp_bits = zero_point_bits(input);
    int c, b;
    for (c = 0; c < DSSDN_CHANNELS; c++) {
        for (b = 0; b < DSSDN_N_MELS; b++) {
            out[b * DSSDN_CHANNELS + c] = quantize_one(in[c * DSSDN_N_MELS + b], input->mean[c][b], input->std[c][b],
                                                       input->scale, input->zero_point, zp_bits);
        }
    }
}
#else
void dssdn_features_quantize(const dssdn_input_params_t *input, const float in[DSSDN_FRAME_VALUES],
                             int8_t out[DSSDN_FRAME_VALUES])
{
    float v[DSSDN_CHANNELS][BLOCK];
    int c, j, b0;
    for (b0 = 0; b0 < DSSDN_N_MELS; b0 += BLOCK) {
        const int n = DSSDN_N_MELS - b0 < BLOCK ? DSSDN_N_MELS - b0 : BLOCK;
        for (c = 0; c < DSSDN_CHANNELS; c++) {
            for (j = 0; j < n; j++) {
                v[c][j] = in[c * DSSDN_N_MELS + b0 + j];
            }
        }
        quantize_block(input, (const float(*)[BLOCK])v, b0, n, out + b0 * DSSDN_CHANNELS);
    }
}
#endif

/* -------------------------------------------------------------------------------------- frames */

/* Ring row of the log-mel frame `dist` frames older than the newest (0 <= dist < R, dist < seen). */
static const float *mel_at(const dssdn_features_t *st, int dist)
{
    return st->mel[(st->head - 1 - dist + 2 * R) % R];
}

/* The rows of frame d's delta: up[k - 1] is the log-mel frame k newer, lo[k - 1] the one k older, with the two
 * edge replications of Frontend.features as clamps: newer than the newest is the newest (only at flush: d < W),
 * older than the first is the first (seen - 1 frames back). */
#if W > 0
static void delta_rows(const dssdn_features_t *st, int d, const float *up[W], const float *lo[W])
{
    int k;
    for (k = 1; k <= W; k++) {
        const int du = d - k, dl = d + k;
        up[k - 1] = mel_at(st, du < 0 ? 0 : du);
        lo[k - 1] = mel_at(st, dl > st->seen - 1 ? st->seen - 1 : dl);
    }
}

/* Band b of the delta: sum_k k (up - lo) / (2 sum k^2), in this order of float steps (so in both paths). */
static float delta_at(const float *const up[W], const float *const lo[W], int b)
{
    const float denom = (float)(W * (W + 1) * (2 * W + 1) / 3); /* 2 sum k^2 */
    float acc = 0.0f;
    int k;
    for (k = 1; k <= W; k++) {
        acc += (float)k * (up[k - 1][b] - lo[k - 1][b]);
    }
    return acc / denom;
}
#endif

#if !VECTOR_QUANTIZE
/* A frame's int8 row value by value, each by whichever path it needs: what emit falls back to when a value needs
 * the careful path (rare). Cold: built for size, as it almost never runs. */
DSSDN_COLD static void emit_careful(const dssdn_input_params_t *in, const float *mel, const float *const *up,
                         const float *const *lo, int8_t *out_int8)
{
    const int32_t zp_bits = zero_point_bits(in);
    int b;
    (void)up;
    (void)lo;
    for (b = 0; b < DSSDN_N_MELS; b++) {
        out_int8[b * DSSDN_CHANNELS] = quantize_one(mel[b], in->mean[0][b], in->std[0][b], in->scale, in->zero_point,
                                                    zp_bits);
#if W > 0
        out_int8[b * DSSDN_CHANNELS + 1] = quantize_one(delta_at(up, lo, b), in->mean[1][b], in->std[1][b], in->scale,
                                                        in->zero_point, zp_bits);
#endif
    }
}
#endif

#if !VECTOR_QUANTIZE
/* Emit the feature frame whose log-mel frame is d frames older than the newest (scalar cores): band after band,
 * each value computed, normalised and quantised in registers and stored straight into the outputs. */
static void emit(const dssdn_features_t *st, int d, float *out_float, int8_t *out_int8)
{
    const float *mel = mel_at(st, d);
    int b;
#if W > 0
    const float *up[W], *lo[W];
    delta_rows(st, d, up, lo);
#endif
    if (out_float != NULL) {
        for (b = 0; b < DSSDN_N_MELS; b++) {
            out_float[b] = mel[b];
#if W > 0
            out_float[DSSDN_N_MELS + b] = delta_at(up, lo, b);
#endif
        }
    }
    if (out_int8 != NULL) {
        /* every value by the fast path; if one needs the careful path (rare: a tie, or out of range), the whole
         * frame again value by value (a call per value: a loop without calls keeps its pointers in registers) */
        const dssdn_input_params_t *in = st->input;
        const float s = in->scale;
        const int32_t zp_bits = zero_point_bits(in);
        int8_t *o = out_int8;
        int careful = 0;
        for (b = 0; b < DSSDN_N_MELS; b++, o += DSSDN_CHANNELS) {
            if (!quantize_fast(mel[b], in->mean[0][b], in->std[0][b], s, zp_bits, o)) {
                careful = 1;
            }
#if W > 0
            if (!quantize_fast(delta_at(up, lo, b), in->mean[1][b], in->std[1][b], s, zp_bits, o + 1)) {
                careful = 1;
            }
#endif
        }
        if (careful) {
            emit_careful(in, mel, up, lo, out_int8);
        }
    }
}
#else
/* Emit the feature frame whose log-mel frame is d frames older than the newest. BLOCK bands at a time, straight
 * into the outputs: a frame-sized buffer never goes on a microcontroller's stack. */
static void emit(const dssdn_features_t *st, int d, float *out_float, int8_t *out_int8)
{
    const float *mel = mel_at(st, d);
    float v[DSSDN_CHANNELS][BLOCK];
    int b0, c, j;
#if W > 0
    const float *up[W], *lo[W];
    delta_rows(st, d, up, lo);
#endif
    for (b0 = 0; b0 < DSSDN_N_MELS; b0 += BLOCK) {
        const int n = DSSDN_N_MELS - b0 < BLOCK ? DSSDN_N_MELS - b0 : BLOCK;
        for (j = 0; j < n; j++) {
            v[0][j] = mel[b0 + j];
        }
#if W > 0
        for (j = 0; j < n; j++) {
            v[1][j] = delta_at(up, lo, b0 + j);
        }
#endif
        if (out_float != NULL) {
            for (c = 0; c < DSSDN_CHANNELS; c++) {
                for (j = 0; j < n; j++) {
                    out_float[c * DSSDN_N_MELS + b0 + j] = v[c][j];
                }
            }
        }
        if (out_int8 != NULL) {
            quantize_block(st->input, (const float(*)[BLOCK])v, b0, n, out_int8 + b0 * DSSDN_CHANNELS);
        }
    }
}
#endif

/* Frames that n more samples complete (the log-mel twin's own count; one feature frame leaves per log-mel
 * frame once W of them are ahead of it). */
static long frames_completed(const dssdn_features_t *st, long n)
{
    const long total = (long)st->fe.fill + n;
    const long mel = total < DSSDN_N_FFT ? 0 : 1 + (total - DSSDN_N_FFT) / DSSDN_HOP;
    long pending = st->seen < W ? st->seen : W; /* log-mel frames whose feature frame waits */
    long out = mel + pending - W;
    return out < 0 ? 0 : out;
}

/* Push n samples (zeros when samples is NULL); write the feature frames they complete. */
static int push_samples(dssdn_features_t *st, const dssdn_sample_t *samples, int n, float *out_float, int8_t *out_int8)
{
    int frames = 0;
    while (n > 0) {
        int take = DSSDN_N_FFT - st->fe.fill, got;
        if (take > n) {
            take = n;
        }
        if (samples == NULL && take > ZERO_CHUNK) {
            take = ZERO_CHUNK;
        }
        got = dssdn_frontend_push(&st->fe, samples != NULL ? samples : zeros, take, st->mel[st->head], 1);
        if (got < 0) {
            return -1; /* not reached: take never completes more than one frame */
        }
        if (samples != NULL) {
            samples += take;
        }
        n -= take;
        if (got == 1) {
            st->head = (st->head + 1) % R;
            if (st->seen < R) {
                st->seen++;
            }
            if (st->seen > W) {
                emit(st, W, out_float != NULL ? out_float + (long)frames * DSSDN_FRAME_VALUES : NULL,
                     out_int8 != NULL ? out_int8 + (long)frames * DSSDN_FRAME_VALUES : NULL);
                frames++;
            }
        }
    }
    return frames;
}

static int usable(const dssdn_features_t *st, const int8_t *out_int8)
{
    return !st->flushed && (out_int8 == NULL || (st->input != NULL && st->input->scale > 0.0f));
}

int dssdn_features_push(dssdn_features_t *st, const dssdn_sample_t *samples, int n, float *out_float, int8_t *out_int8,
                        int max_frames)
{
    if (n < 0 || (samples == NULL && n > 0) || !usable(st, out_int8)) {
        return -1;
    }
    if (frames_completed(st, n) > max_frames) {
        return -1;
    }
    return push_samples(st, samples, n, out_float, out_int8);
}

DSSDN_COLD int dssdn_features_flush_step(dssdn_features_t *st, float *out_float, int8_t *out_int8)
{
    if (!usable(st, out_int8)) {
        return -1;
    }
    if (!st->ending) {
        st->ending = 1;
        st->pad_left = DSSDN_N_FFT / 2;
        st->tail = -1;
    }
    while (st->pad_left > 0) { /* the end padding, up to the next log-mel frame at most */
        int take = DSSDN_N_FFT - st->fe.fill, got;
        if (take > st->pad_left) {
            take = st->pad_left;
        }
        got = push_samples(st, NULL, take, out_float, out_int8);
        if (got < 0) {
            return -1; /* not reached: take never completes more than one frame */
        }
        st->pad_left -= take;
        if (st->pad_left == 0) {
            st->tail = (st->seen < W ? st->seen : W) - 1; /* every frame still waiting for its look-ahead */
        }
        if (got == 1) {
            return 1;
        }
    }
    if (st->tail >= 0) {
        emit(st, st->tail, out_float, out_int8);
        st->tail--;
        return 1;
    }
    st->flushed = 1;
    return 0;
}

DSSDN_COLD int dssdn_features_flush(dssdn_features_t *st, float *out_float, int8_t *out_int8, int max_frames)
{
    const long pad = DSSDN_N_FFT / 2, total_fill = (long)st->fe.fill + pad;
    const long mel_new = total_fill < DSSDN_N_FFT ? 0 : 1 + (total_fill - DSSDN_N_FFT) / DSSDN_HOP;
    const long seen_after = (long)st->seen + mel_new;
    int frames, got;
    if (!usable(st, out_int8) || st->ending) {
        return -1; /* a stream half flushed by steps must finish with steps */
    }
    /* the padding's frames, then every frame still waiting for its look-ahead: min(frames so far, W) */
    if (frames_completed(st, pad) + (seen_after < W ? seen_after : W) > max_frames) {
        return -1;
    }
    /* one path for both ends: the step function, frame after frame */
    frames = 0;
    while ((got = dssdn_features_flush_step(st, out_float != NULL ? out_float + (long)frames * DSSDN_FRAME_VALUES
                                                                  : NULL,
                                            out_int8 != NULL ? out_int8 + (long)frames * DSSDN_FRAME_VALUES
                                                             : NULL)) == 1) {
        frames++;
    }
    return got < 0 ? -1 : frames;
}
