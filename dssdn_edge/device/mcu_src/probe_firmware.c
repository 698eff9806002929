/* probe_firmware.c - the smallest firmware that classifies audio as a device does: a static classifier,
 * one hop of microphone samples (filled from a volatile source standing in for the ADC), every API call.
 * Its linked image is what the footprint (flash, static RAM, per part) is measured on: no test data in it. */
#include <stdint.h>

#include "dssdn_classifier.h"

static dssdn_classifier_t g_clf;
static int16_t g_hop[DSSDN_HOP];
volatile int16_t g_adc;
volatile int32_t g_sink;

static void on_window(const dssdn_window_t *w, void *user)
{
    (void)user;
    g_sink += w->label + w->scores[0];
}

int main(void)
{
    int i;
    dssdn_classifier_init(&g_clf);
    for (i = 0; i < DSSDN_HOP; i++) {
        g_hop[i] = g_adc;
    }
    g_sink += dssdn_classifier_push(&g_clf, g_hop, DSSDN_HOP, on_window, 0);
    g_sink += dssdn_classifier_finish(&g_clf, on_window, 0);
    g_sink += dssdn_classifier_clip_label(&g_clf);
    g_sink += (int32_t)dssdn_classifier_label_name(0)[0];
    return (int)(g_sink & 1);
}
