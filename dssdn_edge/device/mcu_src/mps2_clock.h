/* mps2_clock.h - the MPS2 FPGA's free-running 32-bit COUNTER (FPGAIO block, 25 MHz on mps2-an386 and
 * mps2-an500). Under `qemu-system-arm -icount shift=0` every instruction advances the virtual clock by
 * exactly 1 ns, so one tick is 40 emulated instructions: a deterministic instruction count, not time
 * (qemu is not cycle-accurate). dssdn_edge.device.firmware proves the ratio on a loop of known length. */
#ifndef DSSDN_MPS2_CLOCK_H
#define DSSDN_MPS2_CLOCK_H

#include <stdint.h>

#define MPS2_FPGAIO_COUNTER (*(volatile uint32_t *)0x40028018u)

static inline uint32_t mps2_counter(void)
{
    return MPS2_FPGAIO_COUNTER;
}

#endif
