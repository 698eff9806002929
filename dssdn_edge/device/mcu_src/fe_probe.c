/* fe_probe.c - the smallest firmware that uses the front end as a device would (one hop in, one frame
 * out, static state; a streaming device never flushes), built twice: with -DDSSDN_WITH_FRONTEND and
 * without. The difference of the two images is the front end's flash and RAM, including the library
 * code it pulls in (memcpy, libm...). */
#include <stdint.h>

#include "semihost.h"
#ifdef DSSDN_WITH_FRONTEND
#include "dssdn_frontend.h"
static dssdn_frontend_t g_state;
static float g_frame[DSSDN_N_MELS];
static dssdn_sample_t g_hop[DSSDN_HOP]; /* float, or int16 PCM (DSSDN_PCM16) */
#endif

volatile uint32_t g_sink;

int main(void)
{
#ifdef DSSDN_WITH_FRONTEND
    int i;
    dssdn_frontend_init(&g_state);
    for (i = 0; i < DSSDN_HOP; i++) {
        g_hop[i] = (dssdn_sample_t)g_sink;
    }
    g_sink = (uint32_t)dssdn_frontend_push(&g_state, g_hop, DSSDN_HOP, g_frame, 1) + (uint32_t)g_frame[0];
#endif
    return (int)(g_sink & 1u);
}
