/* dssdn_features.h - the model's input, streamed: log-mel + delta, the stored normalisation and the int8
 * quantisation of the input. The C twin of dssdn_edge.frontend.StreamingFrontend (whose frames equal
 * Frontend.features) followed by Normalization.apply and export.tflite.quantize.
 *
 * Dependency-free C99, no dynamic memory, no libm in the float build. Sizes come from the generated
 * dssdn_frontend_tables.h (one FrontendConfig); the normalisation and the int8 input quantisation of one
 * exported model come from a generated dssdn_input_tables.h (dssdn_edge.frontend_c.render_input_tables),
 * or, on a host, from the caller (dssdn_edge/frontend_native.py fills the same struct).
 *
 * Streaming use (a device: one hop in, at most one frame out):
 *     #include "dssdn_input_tables.h"          (in ONE .c file: it defines dssdn_input_params)
 *     static dssdn_features_t st;              (DSSDN_FEATURES_STATE_BYTES, 12.8 KB at the defaults)
 *     dssdn_features_init(&st, &dssdn_input_params);
 *     n = dssdn_features_push(&st, x, DSSDN_HOP, NULL, row, 1);   (int8 row: N_MELS x CHANNELS)
 *     ...
 *     n = dssdn_features_flush(&st, NULL, rows, DSSDN_FEATURES_FLUSH_FRAMES);
 *
 * Frames: the same (1 + n_samples / HOP) frames as the offline numpy path, each as
 *   - float: CHANNELS x N_MELS, channel-major (log-mel row, then delta row), UNnormalised, as one frame of
 *     StreamingFrontend.push's (n, channels, n_mels) output (fp32 models normalise it themselves);
 *   - int8: N_MELS x CHANNELS, channel fastest: one row (H = time) of the int8 model's NHWC input
 *     (1, frames, N_MELS, CHANNELS), normalised and quantised.
 * A window of the model is DSSDN_SEGMENT_FRAMES consecutive int8 rows.
 *
 * Delta: frame t's delta is sum_k k (mel[t + k] - mel[t - k]) / (2 sum_k k^2), k = 1 .. W = DELTA_WIDTH / 2,
 * with mel indices outside the stream replaced by its first (start) or last (after flush) frame, exactly as
 * Frontend.features edge-pads. So frame t leaves push W frames after its log-mel frame: when frame t + W
 * exists. Until flush the last W frames stay pending; flush emits them with the end replication.
 *
 * Normalisation and quantisation, per value of channel c, band b (all float32, no contraction into FMA:
 * build with -std=c99 or -ffp-contract=off, as numpy does them as separate roundings):
 *     v = (x - mean[c][b]) / std[c][b]                         (float32, as Normalization.apply)
 *     q = clamp(round_half_even(v / scale) + zero_point, -128, 127)
 * where v / scale is rounded like numpy's float64 division: ties are decided exactly (integer arithmetic),
 * so for the same float features the int8 row equals numpy's bit for bit.
 */
#ifndef DSSDN_FEATURES_H
#define DSSDN_FEATURES_H

#include <stdint.h>

#include "dssdn_frontend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DSSDN_DELTA_HALF (DSSDN_DELTA_WIDTH / 2)     /* W: frames each side of a delta */
#define DSSDN_MEL_HISTORY (2 * DSSDN_DELTA_HALF + 1) /* log-mel frames kept for the delta */

/* Values per frame, float or int8. */
#define DSSDN_FRAME_VALUES (DSSDN_CHANNELS * DSSDN_N_MELS)

/* Upper bound of the frames one push of n samples produces (size the outputs with it), and of flush. */
#define DSSDN_FEATURES_MAX_FRAMES(n) DSSDN_MAX_FRAMES(n)
#define DSSDN_FEATURES_FLUSH_FRAMES (DSSDN_FLUSH_FRAMES + DSSDN_DELTA_HALF)

/* The stored normalisation and the int8 input quantisation of one model. */
typedef struct {
    float mean[DSSDN_CHANNELS][DSSDN_N_MELS];
    float std[DSSDN_CHANNELS][DSSDN_N_MELS];
    float scale;        /* the int8 input tensor's scale (> 0); 0 when the model has no int8 input */
    int32_t zero_point; /* its zero point, in -128 .. 127 */
} dssdn_input_params_t;

typedef struct {
    dssdn_frontend_t fe;                             /* log-mel: sample buffer, FFT scratch */
    float mel[DSSDN_MEL_HISTORY][DSSDN_N_MELS];      /* ring of the newest log-mel frames */
    const dssdn_input_params_t *input;               /* NULL: float output only */
    int head;                                        /* ring slot the next log-mel frame goes to */
    int seen;                                        /* log-mel frames so far, saturated at MEL_HISTORY */
    int flushed;
    int ending;                                      /* flush begun: end padding left, then the tail */
    int pad_left;                                    /* samples of end padding not yet pushed */
    int tail;                                        /* next distance of the tail (-1: none left) */
} dssdn_features_t;

/* Static RAM of one stream: 4 (2 N_FFT + N_BINS + 3) + 4 (2W + 1) N_MELS bytes plus a few words, 2 N_FFT bytes
 * fewer with int16 PCM samples (DSSDN_PCM16, an mcu/ project). At the defaults on a Cortex-M4: 10 804 bytes
 * with int16 PCM (8 216 log-mel state: 2 048 samples + 6 160 FFT work space; 2 560 delta history; 28
 * bookkeeping), 12 852 with float samples. Code: 2.3 KB (arm-none-eabi-gcc -O2, Cortex-M4F); stack: emit 80
 * + quantize_one 24 bytes (its rare careful pass) on top of dssdn_features_push's. */
#define DSSDN_FEATURES_STATE_BYTES ((int)sizeof(dssdn_features_t))

/* Start a stream. input may be NULL when only float features are wanted; otherwise it must outlive st. */
void dssdn_features_init(dssdn_features_t *st, const dssdn_input_params_t *input);

/* Add n samples. Each completed frame goes to out_float (DSSDN_FRAME_VALUES floats, CHANNELS x N_MELS) and/or
 * out_int8 (DSSDN_FRAME_VALUES int8, N_MELS x CHANNELS); either may be NULL. Returns the frames written, or -1
 * without consuming anything when: n < 0; samples is NULL with n > 0; max_frames is smaller than the frames
 * these samples complete (DSSDN_FEATURES_MAX_FRAMES(n) is always enough); out_int8 is given but input is NULL
 * or has no scale; or the stream was flushed. */
int dssdn_features_push(dssdn_features_t *st, const dssdn_sample_t *samples, int n, float *out_float, int8_t *out_int8,
                        int max_frames);

/* End the stream: the end padding and the end replication of the delta give the last frames (at most
 * DSSDN_FEATURES_FLUSH_FRAMES); -1 as for push. dssdn_features_init starts again. */
int dssdn_features_flush(dssdn_features_t *st, float *out_float, int8_t *out_int8, int max_frames);

/* End the stream one frame at a time, for a caller that puts each frame somewhere else (a microcontroller
 * writes each int8 row straight into its model's input): writes at most one frame and returns 1, or 0 when
 * no frame is left (the stream is then flushed, as by dssdn_features_flush), or -1 as for flush. The frames
 * are those of dssdn_features_flush, in the same order. */
int dssdn_features_flush_step(dssdn_features_t *st, float *out_float, int8_t *out_int8);

/* One frame's float features -> its int8 row (normalise, quantise, reorder to N_MELS x CHANNELS); for callers
 * that hold float features already. */
void dssdn_features_quantize(const dssdn_input_params_t *input, const float in[DSSDN_FRAME_VALUES],
                             int8_t out[DSSDN_FRAME_VALUES]);

/* The size of dssdn_features_t, for bindings that allocate it (ctypes). */
int dssdn_features_state_bytes(void);

/* What this build was generated for, so that a binding can check a prebuilt library: out[] = DSSDN_CONFIG_ID,
 * sample rate, n_fft, hop, n_mels, delta width, channels, segment frames. */
#define DSSDN_DESCRIBE_LEN 8
void dssdn_features_describe(uint32_t out[DSSDN_DESCRIBE_LEN]);

#ifdef __cplusplus
}
#endif

#endif /* DSSDN_FEATURES_H */
