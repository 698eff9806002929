/* dssdn_classifier.h - audio in, a label per 1-s window and per clip out: the streaming glue between the
 * front end (dssdn_features.h: log-mel + delta + normalisation + int8 quantisation) and the generated
 * model (dssdn_model.h). Plain C99, no dynamic memory, no libm, no stdio.
 *
 * It cuts windows exactly as `dssdn-edge predict` does (dssdn_edge.audio_stream.file_windows):
 *   - a window is DSSDN_MODEL_IN_FRAMES consecutive frames; one starts every DSSDN_CLASSIFIER_STRIDE frames
 *     (0.5 s at the defaults), from frame 0, while it fits in the 1 + n_samples / HOP frames of the clip;
 *   - a window whose frames' analysis windows saw only exact zeros (digital silence) is skipped: not run,
 *     not in the clip decision (the callback still hears of it, with silent = 1);
 *   - a clip shorter than one window is zero-padded to one window by dssdn_classifier_finish;
 *   - the clip label is the class of the largest mean of the windows' int8 scores (the model's int8 logits:
 *     their mean ranks classes as the mean of the dequantised logits does), the first class on a tie.
 *
 * Memory: the front end's state (DSSDN_FEATURES_STATE_BYTES) and the per-class sums. Each int8 row goes
 * straight from the front end into its place in the model's input (inside its arena): no ring of 51 rows, no
 * row buffer and no copy of a whole window per hop. The rows the next window shares with this one
 * (DSSDN_CLASSIFIER_KEEP_ROWS x DSSDN_CLASSIFIER_ROW_BYTES) must outlive an invoke, which reuses its input
 * buffer for activations; they are parked in memory that is idle while the model runs: the front end's FFT
 * work space (its contents do not carry from one frame to the next) and the last hop of its sample buffer
 * (free whenever a frame has just completed, which is when a window completes). Only when those are too small
 * for a front-end configuration does the classifier hold a keep buffer of its own (DSSDN_CLASSIFIER_OWN_KEEP).
 *
 *     static dssdn_classifier_t clf;
 *     dssdn_classifier_init(&clf);
 *     while (microphone) dssdn_classifier_push(&clf, pcm, n, on_window, user);   (int16 PCM at 16 kHz)
 *     dssdn_classifier_finish(&clf, on_window, user);                          (end of a clip)
 *     label = dssdn_classifier_clip_label(&clf);                               (-1: only silence)
 */
#ifndef DSSDN_CLASSIFIER_H
#define DSSDN_CLASSIFIER_H

#include <stdint.h>

#include "dssdn_features.h"
#include "dssdn_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Frames between window starts: dssdn_edge.predict.WINDOW_STRIDE (0.5 s at a 20 ms hop). */
#ifndef DSSDN_CLASSIFIER_STRIDE
#define DSSDN_CLASSIFIER_STRIDE 25
#endif
#define DSSDN_CLASSIFIER_WINDOW DSSDN_MODEL_IN_FRAMES
#define DSSDN_CLASSIFIER_ROW_BYTES (DSSDN_MODEL_IN_BANDS * DSSDN_MODEL_IN_CHANNELS)
#define DSSDN_CLASSIFIER_KEEP_ROWS \
    (DSSDN_CLASSIFIER_WINDOW > DSSDN_CLASSIFIER_STRIDE ? DSSDN_CLASSIFIER_WINDOW - DSSDN_CLASSIFIER_STRIDE : 1)
/* A clip shorter than this is zero-padded to it (one window: 1 + n / HOP = DSSDN_MODEL_IN_FRAMES). */
#define DSSDN_CLASSIFIER_MIN_SAMPLES ((DSSDN_CLASSIFIER_WINDOW - 1) * DSSDN_HOP)
/* Samples converted to float per call of the front end (a stack buffer of 4 bytes each), when the front end
 * takes float samples; an mcu/ project's front end takes the int16 PCM itself (DSSDN_PCM16) and needs none. */
#ifndef DSSDN_CLASSIFIER_CHUNK
#define DSSDN_CLASSIFIER_CHUNK 64
#endif
/* Bytes parked across an invoke; the idle memory they go to (see Memory above). */
#define DSSDN_CLASSIFIER_KEEP_BYTES (DSSDN_CLASSIFIER_KEEP_ROWS * DSSDN_CLASSIFIER_ROW_BYTES)
#define DSSDN_CLASSIFIER_SCRATCH_BYTES (DSSDN_SCRATCH_LEN * 4) /* at least: DSSDN_REAL is float or double */
#define DSSDN_CLASSIFIER_TAIL_BYTES (DSSDN_HOP * (DSSDN_PCM16 ? 2 : 4)) /* the sample buffer's last hop */
#define DSSDN_CLASSIFIER_OWN_KEEP \
    (DSSDN_CLASSIFIER_KEEP_BYTES > DSSDN_CLASSIFIER_SCRATCH_BYTES + DSSDN_CLASSIFIER_TAIL_BYTES)
/* Frames whose silence record is kept (the delta delays a row by DSSDN_DELTA_HALF frames). */
#define DSSDN_CLASSIFIER_SILENCE_RING 16

/* One window: where it starts, whether it was silent, and (if not) the model's int8 scores and label. */
typedef struct {
    int32_t index;       /* 0, 1, 2, ... over all windows of the stream, silent ones included */
    int32_t first_frame; /* the window covers frames [first_frame, first_frame + DSSDN_CLASSIFIER_WINDOW) */
    int32_t first_sample; /* first_frame * DSSDN_HOP: the window's start in samples (seconds = / SAMPLE_RATE) */
    int silent;          /* 1: only digital silence; not run, scores all zero, label -1 */
    int label;           /* argmax of scores (first on a tie) */
    int8_t scores[DSSDN_MODEL_OUT_CLASSES]; /* the model's int8 output (logits) */
} dssdn_window_t;

/* Called once per window, in order; w is valid only during the call. */
typedef void (*dssdn_window_fn)(const dssdn_window_t *w, void *user);

typedef struct {
    dssdn_features_t features;
#if DSSDN_CLASSIFIER_OWN_KEEP
    int8_t keep[DSSDN_CLASSIFIER_KEEP_ROWS][DSSDN_CLASSIFIER_ROW_BYTES]; /* rows shared with the next window */
#endif
    int32_t last_nonzero[DSSDN_CLASSIFIER_SILENCE_RING]; /* per frame: newest non-zero sample up to its end */
    int32_t sums[DSSDN_MODEL_OUT_CLASSES]; /* per class: sum of the non-silent windows' int8 scores */
    int32_t samples;      /* samples pushed */
    int32_t newest_nonzero; /* index of the newest non-zero sample, -1 before the first */
    int32_t marked;       /* frames whose analysis window has ended (their silence record is set) */
    int32_t rows;         /* int8 rows received from the front end */
    int32_t next_start;   /* first frame of the window being filled */
    int32_t windows;      /* windows seen (silent ones included) */
    int32_t classified;   /* non-silent windows run through the model */
    int finished;
} dssdn_classifier_t;

/* Start a stream (a clip). */
void dssdn_classifier_init(dssdn_classifier_t *c);

/* Add n int16 samples at DSSDN_SAMPLE_RATE; on_window (may be NULL) hears every window they complete.
 * Returns the number of windows completed, or -1 (nothing consumed) if n < 0, pcm is NULL with n > 0,
 * or the stream was finished. */
int dssdn_classifier_push(dssdn_classifier_t *c, const int16_t *pcm, int n, dssdn_window_fn on_window,
                          void *user);

/* End of the clip: zero-pad a clip shorter than one window, flush the front end and report the last
 * windows. Returns the windows completed, or -1 if already finished. */
int dssdn_classifier_finish(dssdn_classifier_t *c, dssdn_window_fn on_window, void *user);

/* The clip's label so far: argmax of the per-class sums of the non-silent windows' scores (first on a
 * tie), or -1 when no window was classified (all digital silence). */
int dssdn_classifier_clip_label(const dssdn_classifier_t *c);

/* The label's name (dssdn_model_labels), or "" for -1. */
const char *dssdn_classifier_label_name(int label);

#ifdef __cplusplus
}
#endif

#endif /* DSSDN_CLASSIFIER_H */
