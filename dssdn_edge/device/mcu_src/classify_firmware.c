/* classify_firmware.c - audio -> label on the (emulated) microcontroller: streams every baked-in clip (int16
 * PCM in flash) through the classifier one hop at a time, as a microphone DMA would, and sends to the host
 * through semihosting:
 *   inputs.bin  - each classified window's int8 model input (DSSDN_MODEL_IN_BYTES), as the model saw it;
 *   windows.bin - one record per window and per clip (layout: dssdn_edge.device.firmware.RECORD);
 * the instruction counter (mps2_clock.h) is read around each model call and around each whole clip. */
#include <stdint.h>
#include <string.h>

#include "dssdn_classifier.h"
#include "dssdn_clips.h"
#include "fw_hooks.h"
#include "mps2_clock.h"
#include "semihost.h"

#define SCORE_WORDS ((DSSDN_MODEL_OUT_CLASSES + 3) / 4)
enum { KIND_WINDOW = 1, KIND_CLIP = 2, KIND_END = 3 };

typedef struct {
    int32_t kind, clip, a, b, c, d;
    int32_t scores[SCORE_WORDS]; /* int8 scores, packed */
} record_t;

uint32_t stack_peak_bytes(void);

static dssdn_classifier_t g_clf;
static const int16_t g_zeros[DSSDN_HOP];
static int g_inputs = -1, g_records = -1, g_status;
static int32_t g_clip;
static uint32_t g_t0, g_model_ticks;

void fw_before_invoke(const int8_t *input)
{
    if (sh_write(g_inputs, input, DSSDN_MODEL_IN_BYTES) != 0) {
        g_status = 1;
    }
    g_t0 = mps2_counter();
}

void fw_after_invoke(void)
{
    g_model_ticks = mps2_counter() - g_t0;
}

static void send(const record_t *r)
{
    if (sh_write(g_records, r, sizeof(*r)) != 0) {
        g_status = 1;
    }
}

static void on_window(const dssdn_window_t *w, void *user)
{
    record_t r;
    (void)user;
    memset(&r, 0, sizeof(r));
    r.kind = KIND_WINDOW;
    r.clip = g_clip;
    r.a = w->first_frame;
    r.b = w->silent;
    r.c = w->label;
    r.d = w->silent ? 0 : (int32_t)g_model_ticks;
    memcpy(r.scores, w->scores, DSSDN_MODEL_OUT_CLASSES);
    send(&r);
}

int main(void)
{
    record_t r;
    g_inputs = sh_open("inputs.bin", 6);
    g_records = sh_open("windows.bin", 6);
    if (g_inputs < 0 || g_records < 0) {
        sh_puts("dssdn firmware: cannot open the output files on the host\n");
        return 1;
    }
    for (g_clip = 0; g_clip < DSSDN_N_CLIPS && g_status == 0; g_clip++) {
        const int16_t *pcm = dssdn_clip_pcm + dssdn_clip_offset[g_clip];
        const int32_t stored = dssdn_clip_stored[g_clip], total = dssdn_clip_samples[g_clip];
        const uint32_t t0 = mps2_counter();
        int32_t pos = 0;
        dssdn_classifier_init(&g_clf);
        while (pos < total && g_status == 0) {
            /* one hop as a microphone DMA delivers it; past the stored samples the clip is zeros */
            const int32_t n = total - pos < DSSDN_HOP ? total - pos : DSSDN_HOP;
            const int16_t *src = pos + n <= stored ? pcm + pos : g_zeros;
            if (pos < stored && pos + n > stored) {
                static int16_t mixed[DSSDN_HOP];
                memset(mixed, 0, sizeof(mixed));
                memcpy(mixed, pcm + pos, (size_t)(stored - pos) * sizeof(int16_t));
                src = mixed;
            }
            if (dssdn_classifier_push(&g_clf, src, (int)n, on_window, 0) < 0) {
                g_status = 1;
            }
            pos += n;
        }
        if (dssdn_classifier_finish(&g_clf, on_window, 0) < 0) {
            g_status = 1;
        }
        memset(&r, 0, sizeof(r));
        r.kind = KIND_CLIP;
        r.clip = g_clip;
        r.a = dssdn_classifier_clip_label(&g_clf);
        r.b = (int32_t)(mps2_counter() - t0);
        r.c = g_clf.windows;
        r.d = g_clf.classified;
        send(&r);
    }
    memset(&r, 0, sizeof(r));
    r.kind = KIND_END;
    r.a = (int32_t)stack_peak_bytes();
    r.b = g_status;
    send(&r);
    sh_close(g_inputs);
    sh_close(g_records);
    return g_status;
}
