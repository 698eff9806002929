/* classify.c - the host program of this folder (`make` builds build/classify): classify a WAV file with the
 * same C code a microcontroller runs (dssdn_classifier.c, the front end, the generated model).
 *
 *     build/classify clip.wav
 *     0.00 dog 0.9132            one line per non-silent 1-s window: start (s), label, softmax score
 *     0.50 dog 0.8870
 *     ...
 *     clip dog                   the label of the mean of the window scores, as `dssdn-edge predict`
 *
 * Input: a RIFF/WAVE file of mono 16-bit PCM at DSSDN_SAMPLE_RATE (16 kHz). Anything else, or a file of
 * digital silence, is one line `error: <file>: <problem>` on stderr and exit status 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dssdn_classifier.h"

#define BLOCK 4096

static dssdn_classifier_t g_clf;

static int fail(const char *path, const char *problem)
{
    fprintf(stderr, "error: %s: %s\n", path, problem);
    return 1;
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint16_t le16(const unsigned char *b)
{
    return (uint16_t)(b[0] | b[1] << 8);
}

/* Softmax probability of the window's label from its int8 logits (the score `predict --stream` prints). */
static double label_score(const dssdn_window_t *w)
{
    double sum = 0.0;
    int i;
    for (i = 0; i < DSSDN_MODEL_OUT_CLASSES; i++) {
        sum += exp((double)DSSDN_MODEL_OUT_SCALE * (double)(w->scores[i] - w->scores[w->label]));
    }
    return 1.0 / sum;
}

static void print_window(const dssdn_window_t *w, void *user)
{
    (void)user;
    if (!w->silent) {
        printf("%.2f %s %.4f\n", (double)w->first_sample / DSSDN_SAMPLE_RATE,
               dssdn_classifier_label_name(w->label), label_score(w));
    }
}

/* Finds the "fmt " and "data" chunks; leaves f at the first sample. Returns NULL or the problem. */
static const char *read_header(FILE *f, uint32_t *data_bytes)
{
    unsigned char b[16];
    int have_fmt = 0;
    if (fread(b, 1, 12, f) != 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0) {
        return "not a RIFF/WAVE file";
    }
    for (;;) {
        uint32_t size;
        if (fread(b, 1, 8, f) != 8) {
            return have_fmt ? "no data chunk" : "no fmt chunk";
        }
        size = le32(b + 4);
        if (memcmp(b, "fmt ", 4) == 0) {
            uint16_t format, channels, bits;
            uint32_t rate;
            if (size < 16 || fread(b, 1, 16, f) != 16) {
                return "truncated fmt chunk";
            }
            format = le16(b), channels = le16(b + 2), rate = le32(b + 4), bits = le16(b + 14);
            if (format != 1 && format != 0xFFFE) {
                return "not PCM (only 16-bit PCM WAV is read; convert with e.g. sox in.wav -b 16 out.wav)";
            }
            if (channels != 1) {
                return "not mono (convert with e.g. sox in.wav -c 1 out.wav)";
            }
            if (bits != 16) {
                return "not 16-bit samples (convert with e.g. sox in.wav -b 16 out.wav)";
            }
            if (rate != DSSDN_SAMPLE_RATE) {
                static char text[96];
                snprintf(text, sizeof(text), "sample rate %lu Hz, expected %d Hz (resample it first)",
                         (unsigned long)rate, DSSDN_SAMPLE_RATE);
                return text;
            }
            have_fmt = 1;
            size -= 16;
        } else if (memcmp(b, "data", 4) == 0) {
            if (!have_fmt) {
                return "data chunk before the fmt chunk";
            }
            *data_bytes = size;
            return NULL;
        }
        if (fseek(f, (long)(size + (size & 1u)), SEEK_CUR) != 0) {
            return "truncated chunk";
        }
    }
}

int main(int argc, char **argv)
{
    static int16_t pcm[BLOCK];
    unsigned char raw[2 * BLOCK];
    const char *path, *problem;
    uint32_t left = 0;
    long total = 0;
    FILE *f;
    int label;
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s FILE.wav  (mono 16-bit PCM at %d Hz; model %s)\n", argv[0], DSSDN_SAMPLE_RATE,
                DSSDN_MODEL_NAME);
        return 2;
    }
    path = argv[1];
    f = fopen(path, "rb");
    if (f == NULL) {
        return fail(path, "cannot open");
    }
    problem = read_header(f, &left);
    if (problem != NULL) {
        fclose(f);
        return fail(path, problem);
    }
    dssdn_classifier_init(&g_clf);
    while (left >= 2) {
        const size_t want = left / 2 < BLOCK ? left / 2 : BLOCK;
        const size_t got = fread(raw, 2, want, f);
        size_t i;
        for (i = 0; i < got; i++) {
            pcm[i] = (int16_t)le16(raw + 2 * i);
        }
        if (dssdn_classifier_push(&g_clf, pcm, (int)got, print_window, NULL) < 0) {
            fclose(f);
            return fail(path, "the classifier refused the samples");
        }
        total += (long)got;
        left -= (uint32_t)(2 * got);
        if (got < want) {
            break; /* a data chunk longer than the file (a recorder that stopped early): use what is there */
        }
    }
    fclose(f);
    if (total == 0) {
        return fail(path, "empty audio (0 samples)");
    }
    if (total < DSSDN_HOP) {
        char text[96];
        snprintf(text, sizeof(text), "too short (%ld samples at %d Hz, need at least %d)", total,
                 DSSDN_SAMPLE_RATE, DSSDN_HOP);
        return fail(path, text);
    }
    dssdn_classifier_finish(&g_clf, print_window, NULL);
    label = dssdn_classifier_clip_label(&g_clf);
    if (label < 0) {
        return fail(path, "audio is all digital silence (no non-zero 1-s window)");
    }
    printf("clip %s\n", dssdn_classifier_label_name(label));
    return 0;
}
