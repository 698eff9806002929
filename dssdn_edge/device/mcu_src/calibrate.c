/* calibrate.c - proves the instruction clock: loops of a known number of instructions (SUBS + BNE per
 * iteration, nothing else), each timed with the MPS2 counter; writes (instructions, ticks) pairs as
 * little-endian uint32 to calibration.bin on the host. */
#include <stdint.h>

#include "mps2_clock.h"
#include "semihost.h"

__attribute__((noinline)) static void spin(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

int main(void)
{
    static const uint32_t loops[] = {250000u, 1000000u, 5000000u};
    uint32_t rec[2];
    unsigned i;
    int fd = sh_open("calibration.bin", 6);
    if (fd < 0) {
        return 1;
    }
    for (i = 0; i < sizeof(loops) / sizeof(loops[0]); i++) {
        const uint32_t t0 = mps2_counter();
        spin(loops[i]);
        rec[1] = mps2_counter() - t0;
        rec[0] = 2u * loops[i];
        if (sh_write(fd, rec, sizeof(rec)) != 0) {
            return 1;
        }
    }
    sh_close(fd);
    return 0;
}
