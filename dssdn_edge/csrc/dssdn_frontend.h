/* dssdn_frontend.h - the C twin of dssdn_edge.frontend.Frontend.logmel (log10 mel power).
 *
 * Dependency-free C99, float32 arithmetic (DSSDN_REAL, see below), no dynamic memory. Every size and table comes from the
 * generated header dssdn_frontend_tables.h (written by dssdn_edge.frontend_c.emit_c for one
 * FrontendConfig), so this file and dssdn_frontend.c never change between configurations.
 *
 * Streaming use:
 *     dssdn_frontend_t st;                     (about 4 * (2 * N_FFT + N_BINS) bytes; make it static)
 *     dssdn_frontend_init(&st);                (pre-fills the N_FFT/2 zeros of centre padding)
 *     n = dssdn_frontend_push(&st, x, DSSDN_HOP, frames, 1);     (one hop in -> one frame out)
 *     ...
 *     n = dssdn_frontend_flush(&st, frames, DSSDN_FLUSH_FRAMES); (end padding: the last frames)
 * gives frame-for-frame the same (1 + n_samples / HOP) frames as the offline numpy path.
 */
#ifndef DSSDN_FRONTEND_H
#define DSSDN_FRONTEND_H

#include "dssdn_frontend_tables.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The arithmetic type: float by default (the device build). Compile with -DDSSDN_DOUBLE for the same
 * steps in double. Against the float64 numpy path, float agrees to 1e-4 (log10 units) on every band
 * within 60 dB of its frame's loudest band, but not on bands 70-130 dB below it: rounding the windowed
 * samples to float32 alone already moves those by up to 1.6e-4. Double agrees to 5e-7 everywhere
 * (measured figures: dssdn_edge/frontend_c.py). The tables are emitted with 17 significant digits, so
 * each is rounded once to whichever type is chosen. The float build calls no libm function (log10 is a
 * generated polynomial); the double build uses log10. */
#ifdef DSSDN_DOUBLE
typedef double DSSDN_REAL;
#else
typedef float DSSDN_REAL;
#endif

/* The sample type: float, or with DSSDN_PCM16 (set by the generated tables, an mcu/ project) 16-bit PCM whose
 * value is sample / 32768. int16 halves the sample buffer's RAM and spares a microcontroller a float copy of
 * the audio; the features are bit for bit the same (the 1/32768 is folded into the window table). */
#if DSSDN_PCM16
typedef int16_t dssdn_sample_t;
#else
typedef float dssdn_sample_t;
#endif

/* Code that runs once a stream or almost never (init, flush, the rare careful rounding): gcc builds it for
 * size and lays out the paths to it as unlikely, so a microcontroller's flash pays less for it. */
#if defined(__GNUC__)
#define DSSDN_COLD __attribute__((cold))
#else
#define DSSDN_COLD
#endif

/* Reals of work space one frame needs: N_FFT for the packed complex FFT, N_BINS for the power and 3 that stay
 * zero (what a mel band padded past the last bin reads; dssdn_frontend.c). A frame
 * also takes about 0.9 KB of stack on a Cortex-M, most of it two chunks of the fused last FFT pass. */
#define DSSDN_SCRATCH_LEN (DSSDN_N_FFT + DSSDN_N_BINS + DSSDN_MEL_LANES - 1)

/* Upper bound of the frames one push of n samples can produce (size out_frames with it). */
#define DSSDN_MAX_FRAMES(n) (((n) + DSSDN_HOP - 1) / DSSDN_HOP)

/* Upper bound of the frames dssdn_frontend_flush produces. */
#define DSSDN_FLUSH_FRAMES DSSDN_MAX_FRAMES(DSSDN_N_FFT / 2)

typedef struct {
    dssdn_sample_t buf[DSSDN_N_FFT];    /* the analysis window being filled, oldest sample first */
    int fill;                           /* samples currently in buf */
    int flushed;                        /* set by flush: the stream is over until the next init */
    DSSDN_REAL scratch[DSSDN_SCRATCH_LEN]; /* FFT and power work space */
} dssdn_frontend_t;

/* One full analysis window (N_FFT samples) -> one frame of N_MELS log10 mel powers.
 * scratch must hold DSSDN_SCRATCH_LEN reals and must not alias samples or out. */
void dssdn_logmel_frame(const dssdn_sample_t samples[DSSDN_N_FFT], float out[DSSDN_N_MELS],
                        DSSDN_REAL scratch[DSSDN_SCRATCH_LEN]);

/* Start a stream: N_FFT/2 zeros of centre padding, as librosa center=True. */
void dssdn_frontend_init(dssdn_frontend_t *st);

/* Add n samples; write each completed frame (N_MELS floats, row after row) to out_frames.
 * Returns the number of frames written, or -1 without consuming anything when max_frames is too
 * small for the frames these samples complete (DSSDN_MAX_FRAMES(n) is always enough), n < 0, or
 * the stream was already flushed. */
int dssdn_frontend_push(dssdn_frontend_t *st, const dssdn_sample_t *samples, int n, float *out_frames,
                        int max_frames);

/* End the stream: push N_FFT/2 zeros of end padding and return the frames they complete
 * (at most DSSDN_FLUSH_FRAMES), or -1 as for push. Call dssdn_frontend_init to start again. */
int dssdn_frontend_flush(dssdn_frontend_t *st, float *out_frames, int max_frames);

#ifdef __cplusplus
}
#endif

#endif /* DSSDN_FRONTEND_H */
