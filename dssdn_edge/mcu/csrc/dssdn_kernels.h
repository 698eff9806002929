/* dssdn_kernels.h - int8 kernels for the C that dssdn-edge generates for one model (dssdn_model.c).
 *
 * Plain C99, integer arithmetic only: no malloc, no libm, no floating point at run time. Every kernel
 * reproduces TensorFlow Lite Micro's reference int8 kernel bit for bit (same multipliers, same rounding),
 * so the generated model gives the same int8 outputs as TFLM on the same int8 input.
 *
 * Kernels write their output in raster order (row, column, channel). The generator relies on that to let
 * an output share memory with an input it has finished reading (see dssdn_edge/mcu/plan.py).
 * Define DSSDN_SINGLE_ROUNDING to get TFLite's single-rounding requantisation instead of the default double
 * rounding (the pinned tflite-micro wheel uses double rounding).
 */
#ifndef DSSDN_KERNELS_H
#define DSSDN_KERNELS_H

#include <stdint.h>

#define DSSDN_MAX_PIXEL 256 /* most output channels of a buffered conv (bytes of stack it uses) */
#ifndef DSSDN_MAX_TAPS
/* The biggest depthwise window (k_h*k_w) taken by the fast path (three pointer lists of this length on the
 * stack); a bigger one checks every tap per channel (same bits, slower). */
#define DSSDN_MAX_TAPS 9
#endif
#ifndef DSSDN_RQ_CHANNELS
/* Convs with at most this many output channels get a per-channel rounding table (4 bytes each, on the
 * stack) that shortens the requantisation, and one pixel's sums (or a pixel pair's, up to half as many
 * channels) in a buffer of the same size, requantised by one call; more channels take the general formula
 * and per-group calls (same bits, slower). */
#define DSSDN_RQ_CHANNELS 64
#endif
#ifndef DSSDN_MAX_PATCH
/* The stack buffer for gathered conv windows (k_h*k_w*in_c bytes); output pixels go in pairs when the pair's
 * two windows widened to int16 (8 * k_h*k_w*in_c bytes) fit it. A bigger window is summed tap by tap (same
 * bits, slower). The DSSDN models' windows are at most 160 bytes (DSSDN_MODEL_MAX_PATCH in dssdn_model.h). */
#define DSSDN_MAX_PATCH 256
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The per-output-channel constants of a conv or FC, bit-packed by the generator (dssdn_edge/mcu/pack.py):
 * for each channel, bias_bits bits of the folded bias (two's complement; 0 bits: no bias), then, for every
 * channel with its own requantisation (all of them, or only channel 0 without per_channel), mult_bits bits of
 * the multiplier (30: bit 30, always set by QuantizeMultiplier, is implied) and shift_bits bits of
 * shift - shift_min; least significant bit first in little-endian uint32 words. A conv or FC unpacks them
 * into its work area once per call, so the loops read plain int32 values as before. */
typedef struct {
    const uint32_t *bits;
    int8_t bias_bits, mult_bits, shift_bits, shift_min;
} dssdn_chan_t;

/* The constants of n channels (nq of them with their own multiplier and shift) unpacked into work (4-aligned,
 * 4*n + 5*nq bytes) as int32 bias[n], int32 mult[nq], int8 shift[nq]; the kernels call it once per op call. */
typedef struct {
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
} dssdn_chan_arrays_t;

dssdn_chan_arrays_t dssdn_chan_unpack(const dssdn_chan_t *c, int32_t n, int32_t nq, int8_t *work);

/* CONV_2D and DEPTHWISE_CONV_2D. The input is a view: element (y, x, c) is at in[y*in_row + x*in_pix + c],
 * so a slice along H or W of a bigger tensor is read in place. Taps outside the input read the input zero
 * point; bias holds bias - in_zp * sum(filter of that channel), so the sum needs no subtraction per tap. conv filter: [out_c][k_h][k_w][k_c] (k_c = in_c / groups);
 * depthwise filter: [k_h][k_w][out_c], out channel = in channel * depth_mult + m. */
typedef struct {
    int32_t in_row, in_pix; /* byte strides of the input view */
    int16_t in_h, in_w, in_c;
    int16_t out_h, out_w, out_c;
    int16_t k_h, k_w, k_c;
    int16_t stride_h, stride_w, dil_h, dil_w, pad_t, pad_l;
    int16_t depth_mult;
    int8_t per_channel; /* 0: one multiplier and shift for every channel */
    int8_t buffered;    /* 1: a pixel's channels are computed into a local buffer, then stored (lets the
                           output overwrite the input pixel it is computed from) */
    int8_t in_zp, out_zp, act_min, act_max;
    const int8_t *w;
    int8_t *work;       /* 4-aligned arena bytes free while this op runs: 9*out_c (4*out_c + 5 without
                           per_channel), where the channel constants are unpacked */
    dssdn_chan_t chan;
} dssdn_conv_t;

void dssdn_conv2d(const dssdn_conv_t *p, const int8_t *in, int8_t *out);
void dssdn_depthwise_conv2d(const dssdn_conv_t *p, const int8_t *in, int8_t *out);

/* FULLY_CONNECTED: out[b][u] from in[b][0..depth), filter [units][depth]; bias holds
 * bias - in_zp * sum(filter row - w_zp), as for the convolutions. */
typedef struct {
    int32_t batches, depth, units;
    int8_t per_channel;
    int8_t in_zp, w_zp, out_zp, act_min, act_max;
    const int8_t *w;
    int8_t *work; /* as dssdn_conv_t's, for units channels */
    dssdn_chan_t chan;
} dssdn_fc_t;

void dssdn_fully_connected(const dssdn_fc_t *p, const int8_t *in, int8_t *out);

/* ADD and MUL over a 4-D output; an input broadcast along an axis has stride 0 there. */
typedef struct {
    int32_t dims[4];
    int32_t a_str[4], b_str[4];
    int32_t a_zp, b_zp, out_zp, act_min, act_max;
    int32_t left_shift, a_mult, a_shift, b_mult, b_shift; /* ADD only */
    int32_t out_mult, out_shift;
} dssdn_binary_t;

void dssdn_add(const dssdn_binary_t *p, const int8_t *a, const int8_t *b, int8_t *out);
void dssdn_mul(const dssdn_binary_t *p, const int8_t *a, const int8_t *b, int8_t *out);

/* ADD of two contiguous tensors of n elements without an activation clamp (every residual ADD): TFLM's
 * arithmetic with the constants folded by the generator (dssdn_edge/mcu/ops.py, lower_binary), which checks
 * that every intermediate stays in int32. Input b is the one at multiplier 1/2 (TFLite's common scale is
 * twice the larger input scale), so it costs a shift: per element
 *   A' = (2*h + a_rnd - [h < 0]) >> a_right, h = SMMULR((a << 21) + a_off, a_mult)
 *        (TFLM's rescaled input a minus b_zp * 2^19; a_off = -a_zp * 2^21, a_rnd = 2^(a_right-1) - b_zp*2^(19+a_right)),
 *   S2 = 2*A' + (b << 20) (twice TFLM's sum),
 *   out = sat8((2*g + out_rnd - [g < 0]) >> out_right), g = SMMULR(S2, out_mult)
 *        (out_rnd = 2^(out_right-1) + out_zp * 2^out_right). */
typedef struct {
    int32_t n, a_off, a_mult, a_rnd, out_mult, out_rnd;
    int8_t a_right, out_right;
    int8_t table; /* 1: A' is tabulated for the 256 values of a first (1 KiB of stack; for big tensors) */
} dssdn_add_flat_t;

void dssdn_add_flat(const dssdn_add_flat_t *p, const int8_t *a, const int8_t *b, int8_t *out);

/* MUL of a contiguous [pixels][channels] tensor by a per-channel vector b (the squeeze-excitation scaling),
 * without an activation clamp. Per channel, B = (b - b_zp) << b_left and K = -a_zp * B go into work (arena
 * bytes free during the op, 8 * channels, 4-aligned) once per call; per element
 *   out = sat8((2*g + out_rnd - [g < 0]) >> out_right), g = SMMULR(a * B + K, out_mult). */
typedef struct {
    int32_t pixels, channels, out_mult, out_rnd;
    int8_t a_zp, b_zp, b_left, out_right;
    int8_t *work;
} dssdn_mul_chan_t;

void dssdn_mul_channels(const dssdn_mul_chan_t *p, const int8_t *a, const int8_t *b, int8_t *out);

/* MEAN over the middle axis of [outer][reduced][inner]: TFLM's fixed-point path, 1/n folded into mult/shift
 * (the pinned wheel takes it even when input and output quantisation agree). */
typedef struct {
    int32_t outer, reduced, inner, mult;
    int8_t in_zp, out_zp, shift;
} dssdn_mean_t;

void dssdn_mean(const dssdn_mean_t *p, const int8_t *in, int8_t *out);

/* AVERAGE_POOL_2D / MAX_POOL_2D on a contiguous [h][w][c] input. */
typedef struct {
    int32_t in_h, in_w, c, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_t, pad_l;
    int32_t act_min, act_max, is_max;
} dssdn_pool_t;

void dssdn_pool(const dssdn_pool_t *p, const int8_t *in, int8_t *out);

/* LOGISTIC (int8, output scale 1/256 and zero point -128) by table: the generator evaluates TFLM's fixed-point
 * arithmetic (dssdn_edge/mcu/quant.py) for the 256 inputs and packs the table of out + 128 as first (its value
 * at input -128) and 255 steps of width bits each (1, 2, 4 or 8; least significant first in uint32 words;
 * added modulo 256, so any table fits at width 8). A sigmoid's steps are small: 32-128 bytes per op, less
 * flash than the fixed-point code. The kernel unpacks the table up to the largest input it is given (256
 * bytes of stack), then looks each input up. */
typedef struct {
    const uint32_t *steps;
    int16_t first;
    int8_t width;
} dssdn_logistic_lut_t;

void dssdn_logistic_lut(const dssdn_logistic_lut_t *p, const int8_t *in, int8_t *out, int32_t n);

/* Byte moves for SLICE, PAD and CONCATENATION when they cannot be views. */
typedef struct {
    int32_t size[4];    /* copied block, outermost first */
    int32_t src_str[4]; /* source strides in bytes */
    int32_t dst_str[4]; /* destination strides in bytes */
} dssdn_copy_t;

void dssdn_copy(const dssdn_copy_t *p, const int8_t *src, int8_t *dst);
void dssdn_fill(int8_t *dst, int8_t value, int32_t n);

/* TFLite's requantisation: x * multiplier * 2^(shift - 31), rounded as the reference kernels do. */
int32_t dssdn_requantize(int32_t x, int32_t multiplier, int32_t shift);

#ifdef __cplusplus
}
#endif

#endif /* DSSDN_KERNELS_H */
