/* dssdn_frontend_main.c - host harness for the C front end (used by tests and benchmarks).
 *
 *   dssdn_frontend < samples.f32 > frames.f32   raw float32 mono in; raw float32 frames x n_mels out,
 *                                               pushed in chunks of one hop like a device would
 *   dssdn_frontend --bench N < samples.f32      N lines "wall cpu": seconds of each repetition of
 *                                               computing all frames, on the monotonic clock and on this
 *                                               process's CPU clock (which preemptions do not inflate)
 *   dssdn_frontend --info                       "sample_rate n_fft hop n_mels"
 *
 * Unlike the library itself, this harness uses malloc: it runs on a host, not the device.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dssdn_frontend.h"

static dssdn_frontend_t g_state; /* static like on a device: the struct is a few kilobytes */

static float *read_samples(FILE *in, long *n_out)
{
    size_t cap = 1 << 16, used = 0;
    unsigned char *data = malloc(cap);
    while (data != NULL) {
        const size_t got = fread(data + used, 1, cap - used, in);
        used += got;
        if (got == 0) {
            break;
        }
        if (used == cap) {
            unsigned char *bigger = realloc(data, cap * 2);
            if (bigger == NULL) {
                free(data);
                return NULL;
            }
            data = bigger;
            cap *= 2;
        }
    }
    if (data == NULL || ferror(in)) {
        fprintf(stderr, "dssdn_frontend: cannot read stdin\n");
        free(data);
        return NULL;
    }
    if (used % sizeof(float) != 0) {
        fprintf(stderr, "dssdn_frontend: stdin is %lu bytes, not whole float32 samples\n",
                (unsigned long)used);
        free(data);
        return NULL;
    }
    *n_out = (long)(used / sizeof(float));
    return (float *)data;
}

/* Stream x through the front end in chunks of one hop (the last one partial), then flush.
 * out must hold (1 + n / HOP) frames. Returns the number of frames, or -1 on an API error. */
static long compute_frames(const float *x, long n, float *out)
{
    long frames = 0, pos = 0;
    int got;
    dssdn_frontend_init(&g_state);
    while (pos < n) {
        const int chunk = (int)(n - pos < DSSDN_HOP ? n - pos : DSSDN_HOP);
        got = dssdn_frontend_push(&g_state, x + pos, chunk, out + frames * DSSDN_N_MELS,
                                  DSSDN_MAX_FRAMES(chunk));
        if (got < 0) {
            return -1;
        }
        frames += got;
        pos += chunk;
    }
    got = dssdn_frontend_flush(&g_state, out + frames * DSSDN_N_MELS, DSSDN_FLUSH_FRAMES);
    return got < 0 ? -1 : frames + got;
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One warm-up run, then reps timed runs; prints every run's wall and CPU seconds (the caller takes medians,
 * pooled with other rounds). */
static int bench(const float *x, long n, float *out, long reps)
{
    double *times = malloc((size_t)reps * 2 * sizeof(double));
    long r;
    if (times == NULL) {
        fprintf(stderr, "dssdn_frontend: out of memory\n");
        return 1;
    }
    compute_frames(x, n, out); /* warm caches */
    for (r = 0; r < reps; r++) {
        const double w0 = clock_seconds(CLOCK_MONOTONIC), c0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
        const long frames = compute_frames(x, n, out);
        times[2 * r + 1] = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
        times[2 * r] = clock_seconds(CLOCK_MONOTONIC) - w0;
        if (frames < 0) {
            fprintf(stderr, "dssdn_frontend: push/flush failed\n");
            free(times);
            return 1;
        }
    }
    for (r = 0; r < reps; r++) {
        printf("%.9g %.9g\n", times[2 * r], times[2 * r + 1]);
    }
    free(times);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 0, frames, reps = 0;
    float *x, *out;
    int status = 0;
    if (argc == 2 && strcmp(argv[1], "--info") == 0) {
        printf("%d %d %d %d\n", DSSDN_SAMPLE_RATE, DSSDN_N_FFT, DSSDN_HOP, DSSDN_N_MELS);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--bench") == 0) {
        reps = strtol(argv[2], NULL, 10);
    }
    if (argc != 1 && reps < 1) {
        fprintf(stderr, "usage: %s [--bench N | --info] < samples.f32 > frames.f32\n", argv[0]);
        return 2;
    }
    x = read_samples(stdin, &n);
    if (x == NULL) {
        return 1;
    }
    out = malloc((size_t)(1 + n / DSSDN_HOP) * DSSDN_N_MELS * sizeof(float));
    if (out == NULL) {
        fprintf(stderr, "dssdn_frontend: out of memory\n");
        free(x);
        return 1;
    }
    if (reps > 0) {
        status = bench(x, n, out, reps);
    } else {
        frames = compute_frames(x, n, out);
        if (frames < 0) {
            fprintf(stderr, "dssdn_frontend: push/flush failed\n");
            status = 1;
        } else if (fwrite(out, sizeof(float) * DSSDN_N_MELS, (size_t)frames, stdout) != (size_t)frames) {
            fprintf(stderr, "dssdn_frontend: cannot write stdout\n");
            status = 1;
        }
    }
    free(out);
    free(x);
    return status;
}
