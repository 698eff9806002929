/* dssdn_classifier.c - see dssdn_classifier.h. The one translation unit that includes the generated
 * dssdn_input_tables.h (the stored normalisation and the int8 input quantisation of this export). */
#include "dssdn_classifier.h"

#include <string.h>

#include "dssdn_input_tables.h"

#if DSSDN_MODEL_IN_FRAMES != DSSDN_SEGMENT_FRAMES || DSSDN_MODEL_IN_BANDS != DSSDN_N_MELS || \
    DSSDN_MODEL_IN_CHANNELS != DSSDN_CHANNELS
#error "dssdn_model.h and dssdn_frontend_tables.h were generated for different inputs"
#endif
#if DSSDN_CLASSIFIER_STRIDE < 1 || DSSDN_CLASSIFIER_STRIDE > DSSDN_CLASSIFIER_WINDOW
#error "DSSDN_CLASSIFIER_STRIDE must be in 1 .. DSSDN_MODEL_IN_FRAMES"
#endif
#if DSSDN_CLASSIFIER_SILENCE_RING <= DSSDN_DELTA_HALF + 1
#error "DSSDN_CLASSIFIER_SILENCE_RING must exceed the delta's delay"
#endif

/* Samples past a frame's first sample position that its analysis window reaches (centre padding). */
#define HALF_FFT (DSSDN_N_FFT / 2)

/* Test hooks around the model call (empty unless defined, e.g. by the emulated-board firmware, which sends
 * each window's int8 input to the host and counts the model's instructions). */
#ifndef DSSDN_CLASSIFIER_BEFORE_INVOKE
#define DSSDN_CLASSIFIER_BEFORE_INVOKE(input) ((void)0)
#endif
#ifndef DSSDN_CLASSIFIER_AFTER_INVOKE
#define DSSDN_CLASSIFIER_AFTER_INVOKE() ((void)0)
#endif

static int argmax_i8(const int8_t *v, int n)
{
    int i, best = 0;
    for (i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

DSSDN_COLD void dssdn_classifier_init(dssdn_classifier_t *c)
{
    memset(c, 0, sizeof(*c));
    dssdn_features_init(&c->features, &dssdn_input_params);
    c->newest_nonzero = -1;
}

/* Frame f's analysis window covers samples [f HOP - N_FFT/2, f HOP + N_FFT/2): it has ended once that many
 * samples arrived. Record, for every frame that has ended, the newest non-zero sample before its end. */
static void mark_frames(dssdn_classifier_t *c, int at_end)
{
    while (at_end ? c->marked <= c->samples / DSSDN_HOP : c->marked * DSSDN_HOP + HALF_FFT <= c->samples) {
        c->last_nonzero[c->marked % DSSDN_CLASSIFIER_SILENCE_RING] = c->newest_nonzero;
        c->marked++;
    }
}

/* The window [s, s + WINDOW) is digital silence when no sample from the start of its first frame's analysis
 * window to the end of its last frame's was non-zero (data.window_starts on data.silent_frames). */
static int window_is_silent(const dssdn_classifier_t *c, int32_t s)
{
    const int32_t last = s + DSSDN_CLASSIFIER_WINDOW - 1;
    const int32_t from = s * DSSDN_HOP - HALF_FFT;
    return c->last_nonzero[last % DSSDN_CLASSIFIER_SILENCE_RING] < (from > 0 ? from : 0);
}

/* The rows the next window shares with this one, moved out of the model's input before an invoke (park = 1)
 * and back to the start of the input after it (park = 0), into memory idle while the model runs: the front
 * end's FFT work space (nothing in it carries from one frame to the next), then the last hop of its sample
 * buffer. A window completes with a row, and a row with a log-mel frame, after which the buffer holds only
 * the N_FFT - HOP samples the next frame shares (or, at the end of the stream, nothing that is read again).
 * The classifier's own keep buffer only when those are too small. */
#if DSSDN_CLASSIFIER_WINDOW > DSSDN_CLASSIFIER_STRIDE
static void park_shared_rows(dssdn_classifier_t *c, int park)
{
    int8_t *input = dssdn_model_input();
#if DSSDN_CLASSIFIER_OWN_KEEP
    if (park) {
        memcpy(c->keep, input + (size_t)DSSDN_CLASSIFIER_STRIDE * DSSDN_CLASSIFIER_ROW_BYTES,
               DSSDN_CLASSIFIER_KEEP_BYTES);
    } else {
        memcpy(input, c->keep, DSSDN_CLASSIFIER_KEEP_BYTES);
    }
#else
    const size_t first = (size_t)DSSDN_CLASSIFIER_KEEP_BYTES < sizeof(c->features.fe.scratch)
                             ? (size_t)DSSDN_CLASSIFIER_KEEP_BYTES : sizeof(c->features.fe.scratch);
    const size_t rest = (size_t)DSSDN_CLASSIFIER_KEEP_BYTES - first;
    unsigned char *scratch = (unsigned char *)c->features.fe.scratch;
    unsigned char *tail = (unsigned char *)(c->features.fe.buf + (DSSDN_N_FFT - DSSDN_HOP));
    if (park) {
        const int8_t *shared = input + (size_t)DSSDN_CLASSIFIER_STRIDE * DSSDN_CLASSIFIER_ROW_BYTES;
        memcpy(scratch, shared, first);
        memcpy(tail, shared + first, rest);
    } else {
        memcpy(input, scratch, first);
        memcpy(input + first, tail, rest);
    }
#endif
}
#endif

static void complete_window(dssdn_classifier_t *c, dssdn_window_fn on_window, void *user)
{
    dssdn_window_t w;
    int8_t *input = dssdn_model_input();
    const int8_t *out;
    int i;
    memset(&w, 0, sizeof(w));
    w.index = c->windows++;
    w.first_frame = c->next_start;
    w.first_sample = c->next_start * DSSDN_HOP;
    w.silent = window_is_silent(c, c->next_start);
    w.label = -1;
    if (!w.silent) {
#if DSSDN_CLASSIFIER_WINDOW > DSSDN_CLASSIFIER_STRIDE
        park_shared_rows(c, 1); /* the model may reuse its input buffer while it runs */
#endif
        DSSDN_CLASSIFIER_BEFORE_INVOKE(input);
        out = dssdn_model_invoke();
        DSSDN_CLASSIFIER_AFTER_INVOKE();
        memcpy(w.scores, out, sizeof(w.scores));
        w.label = argmax_i8(w.scores, DSSDN_MODEL_OUT_CLASSES);
        for (i = 0; i < DSSDN_MODEL_OUT_CLASSES; i++) {
            c->sums[i] += w.scores[i];
        }
        c->classified++;
#if DSSDN_CLASSIFIER_WINDOW > DSSDN_CLASSIFIER_STRIDE
        park_shared_rows(c, 0);
    } else {
        memmove(input, input + (size_t)DSSDN_CLASSIFIER_STRIDE * DSSDN_CLASSIFIER_ROW_BYTES,
                DSSDN_CLASSIFIER_KEEP_BYTES);
#endif
    }
    c->next_start += DSSDN_CLASSIFIER_STRIDE;
    if (on_window != NULL) {
        on_window(&w, user);
    }
}

/* Where the front end writes the next row: its place in the model's input. Rows never fall before the window
 * being filled (the stride is at most the window), and the window completes with its last row, so this is
 * always inside the input. */
static int8_t *next_row(const dssdn_classifier_t *c)
{
    return dssdn_model_input() + (size_t)(c->rows - c->next_start) * DSSDN_CLASSIFIER_ROW_BYTES;
}

/* The front end wrote n (0 or 1) rows at next_row; a window completes with its last row. */
static int take_rows(dssdn_classifier_t *c, int n, dssdn_window_fn on_window, void *user)
{
    int k, done = 0;
    for (k = 0; k < n; k++) {
        if (c->rows++ - c->next_start == DSSDN_CLASSIFIER_WINDOW - 1) {
            complete_window(c, on_window, user);
            done++;
        }
    }
    return done;
}

int dssdn_classifier_push(dssdn_classifier_t *c, const int16_t *pcm, int n, dssdn_window_fn on_window,
                          void *user)
{
#if !DSSDN_PCM16
    float x[DSSDN_CLASSIFIER_CHUNK];
#endif
    int done = 0;
    if (c->finished || n < 0 || (pcm == NULL && n > 0)) {
        return -1;
    }
    while (n > 0) {
        /* up to the end of the next frame's analysis window, in small pieces (the float copy is on the
         * stack): at most one row per call */
        const int32_t end = c->marked * DSSDN_HOP + HALF_FFT;
        int i, got, take = end - c->samples;
        if (take > n) {
            take = n;
        }
#if DSSDN_PCM16
        /* the front end takes the PCM as it is (dssdn_frontend.h): no float copy on the stack */
#else
        if (take > DSSDN_CLASSIFIER_CHUNK) {
            take = DSSDN_CLASSIFIER_CHUNK;
        }
        for (i = 0; i < take; i++) {
            x[i] = (float)pcm[i] * (1.0f / 32768.0f); /* exact: as soundfile reads PCM_16 as float32 */
        }
#endif
        /* the newest non-zero sample of the piece, searched from its end (audio rarely ends a piece in
         * zeros): a branch per piece instead of a test per sample in the loop above */
        for (i = take - 1; i >= 0 && pcm[i] == 0; i--) {
        }
        if (i >= 0) {
            c->newest_nonzero = c->samples + i;
        }
#if DSSDN_PCM16
        got = dssdn_features_push(&c->features, pcm, take, NULL, next_row(c), 1);
#else
        got = dssdn_features_push(&c->features, x, take, NULL, next_row(c), 1);
#endif
        if (got < 0) {
            return -1;
        }
        c->samples += take;
        mark_frames(c, 0);
        done += take_rows(c, got, on_window, user);
        pcm += take;
        n -= take;
    }
    return done;
}

DSSDN_COLD int dssdn_classifier_finish(dssdn_classifier_t *c, dssdn_window_fn on_window, void *user)
{
    static const int16_t zeros[32]; /* the padding of a short clip, a piece at a time: little flash */
    const int32_t piece = (int32_t)(sizeof(zeros) / sizeof(zeros[0]));
    int got, done = 0;
    if (c->finished) {
        return -1;
    }
    while (c->samples < DSSDN_CLASSIFIER_MIN_SAMPLES) {
        const int32_t left = DSSDN_CLASSIFIER_MIN_SAMPLES - c->samples;
        const int r = dssdn_classifier_push(c, zeros, (int)(left < piece ? left : piece), on_window, user);
        if (r < 0) {
            return -1;
        }
        done += r;
    }
    mark_frames(c, 1);
    /* the last rows one at a time, each straight into its place (a window may complete between two) */
    while ((got = dssdn_features_flush_step(&c->features, NULL, next_row(c))) == 1) {
        done += take_rows(c, 1, on_window, user);
    }
    if (got < 0) {
        return -1;
    }
    c->finished = 1;
    return done;
}

DSSDN_COLD int dssdn_classifier_clip_label(const dssdn_classifier_t *c)
{
    int i, best = 0;
    if (c->classified == 0) {
        return -1;
    }
    for (i = 1; i < DSSDN_MODEL_OUT_CLASSES; i++) {
        if (c->sums[i] > c->sums[best]) {
            best = i;
        }
    }
    return best;
}

DSSDN_COLD const char *dssdn_classifier_label_name(int label)
{
    return label >= 0 && label < DSSDN_MODEL_OUT_CLASSES ? dssdn_model_labels[label] : "";
}
