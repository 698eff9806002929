/* fe_firmware.c - the front end's C twin on the (emulated) microcontroller, checked against numpy.
 * Streams each baked-in clip through dssdn_frontend_push one hop at a time (as a microphone DMA would),
 * flushes, and writes all log-mel frames to the host file features.f32 through semihosting; then the
 * peak stack use to stack.txt. Exit status 0 only if every call succeeded. */
#include <stdint.h>
#include <string.h>

#include "dssdn_clips.h"
#include "dssdn_frontend.h"
#include "semihost.h"

uint32_t stack_peak_bytes(void);

static dssdn_frontend_t g_state;
static float g_frames[DSSDN_FLUSH_FRAMES > 1 ? DSSDN_FLUSH_FRAMES : 1][DSSDN_N_MELS];

static int write_all(int fd, const void *data, size_t n)
{
    return sh_write(fd, data, n) == 0 ? 0 : -1;
}

/* Decimal text of v followed by a newline, without stdio (no printf code in the image). */
static size_t format_u32(uint32_t v, char *text)
{
    char digits[10];
    size_t n = 0, k = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        text[k++] = digits[--n];
    }
    text[k++] = '\n';
    return k;
}

int main(void)
{
    int clip, fd, status = 0;
    char text[16];
    fd = sh_open("features.f32", 6);
    if (fd < 0) {
        sh_puts("dssdn firmware: cannot open features.f32 on the host\n");
        return 1;
    }
    for (clip = 0; clip < DSSDN_N_CLIPS && status == 0; clip++) {
        long pos = 0;
        int got;
        dssdn_frontend_init(&g_state);
        while (pos < DSSDN_CLIP_SAMPLES && status == 0) {
            const int chunk = DSSDN_CLIP_SAMPLES - pos < DSSDN_HOP ? (int)(DSSDN_CLIP_SAMPLES - pos) : DSSDN_HOP;
            got = dssdn_frontend_push(&g_state, &dssdn_clips[clip][pos], chunk, &g_frames[0][0],
                                      DSSDN_MAX_FRAMES(DSSDN_HOP));
            if (got < 0 || write_all(fd, g_frames, (size_t)got * sizeof(g_frames[0])) != 0) {
                status = 1;
            }
            pos += chunk;
        }
        got = dssdn_frontend_flush(&g_state, &g_frames[0][0], DSSDN_FLUSH_FRAMES);
        if (got < 0 || write_all(fd, g_frames, (size_t)got * sizeof(g_frames[0])) != 0) {
            status = 1;
        }
    }
    sh_close(fd);
    fd = sh_open("stack.txt", 4);
    if (fd >= 0) {
        write_all(fd, text, format_u32(stack_peak_bytes(), text));
        sh_close(fd);
    }
    return status;
}
