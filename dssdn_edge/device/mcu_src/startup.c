/* startup.c - reset and fault handling for the Cortex-M4/M7 test firmware on qemu's mps2 boards.
 * Reset: copy .data, zero .bss, paint the stack (so the firmware can measure its peak stack use),
 * enable the FPU (hard-float code faults without it), run main, exit through semihosting. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start__, __bss_end__;
extern uint32_t __stack_limit, __stack_top;
int main(void);

#define STACK_PAINT 0xC5C5C5C5u
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

/* Bytes of stack ever used: the painted words below the first overwritten one, counted from the bottom. */
uint32_t stack_peak_bytes(void)
{
    const uint32_t *p = &__stack_limit;
    while (p < &__stack_top && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((const char *)&__stack_top - (const char *)p);
}

__attribute__((noreturn)) void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__; dst++) {
        *dst = 0;
    }
    SCB_CPACR |= 0xFu << 20; /* CP10 and CP11: full access to the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    {
        /* paint from the bottom of the stack up to a little below the current stack pointer */
        uint32_t *sp;
        __asm__ volatile("mov %0, sp" : "=r"(sp));
        for (dst = &__stack_limit; dst < sp - 16; dst++) {
            *dst = STACK_PAINT;
        }
    }
    sh_exit(main());
}

__attribute__((noreturn)) static void Fault_Handler(void)
{
    sh_puts("dssdn firmware: hard fault\n");
    sh_exit(1);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0,
    Fault_Handler, Fault_Handler,
};
