/* dssdn_requant.c - the out-of-line half of dssdn_requant.h: the rounding table's fill, called once per op
 * by both convolution kernels (one copy in flash). Integer arithmetic only. */
#include "dssdn_requant.h"

/* The op's rounding table, when the parameters are per channel, every shift is in [-15, -1] and every
 * multiplier in [2^30, 2^31) (the usual case: TFLite normalises multipliers to that range) and there are at
 * most DSSDN_RQ_CHANNELS channels: `round` (DSSDN_RQ_CHANNELS words of the caller's stack) gets each channel's
 * rounding term, output zero point and shift in one word, and the multipliers, in the work area (this call's
 * own unpacked copy), are replaced by 2m - 2^32 (see rq_table), so the per-output work is two loads and no
 * selects. Returns round, or NULL (no table). Out of line and a leaf: one copy, and little stack on top of
 * the kernel's frame. */
const int32_t *dssdn_rq_table_fill(const dssdn_conv_t *p, int32_t *mult, const int8_t *shift, int32_t *round)
{
#ifdef DSSDN_SINGLE_ROUNDING
    (void)p, (void)mult, (void)shift, (void)round;
    return NULL;
#else
    int32_t table = p->per_channel && p->out_c <= DSSDN_RQ_CHANNELS;
    for (int32_t q = 0; table && q < p->out_c; ++q) {
        table = shift[q] <= -1 && shift[q] >= -15 && mult[q] >= (int32_t)1 << 30;
    }
    if (!table) {
        return NULL;
    }
    for (int32_t q = 0; q < p->out_c; ++q) {
        const int32_t e = -shift[q];
        /* |2^(e-1) + zp * 2^e| < 2^23: shifted left by 8 it still fits */
        const int32_t term = ((int32_t)1 << (e - 1)) + p->out_zp * ((int32_t)1 << e);
        round[q] = (int32_t)((uint32_t)term << 8) | e;
        mult[q] = (int32_t)((uint32_t)mult[q] << 1);
    }
    return round;
#endif
}
