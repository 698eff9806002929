/* semihost.c - Arm semihosting (BKPT 0xAB on M-profile) with the operation in r0, the argument block in r1. */
#include "semihost.h"

#include <string.h>

enum { SYS_OPEN = 0x01, SYS_CLOSE = 0x02, SYS_WRITE0 = 0x04, SYS_WRITE = 0x05, SYS_EXIT = 0x18 };
enum { ADP_STOPPED_APPLICATION_EXIT = 0x20026, ADP_STOPPED_RUN_TIME_ERROR = 0x20023 };

static int call(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

int sh_open(const char *path, int mode)
{
    unsigned int args[3] = {(unsigned int)path, (unsigned int)mode, (unsigned int)strlen(path)};
    return call(SYS_OPEN, args);
}

int sh_write(int handle, const void *data, size_t n)
{
    unsigned int args[3] = {(unsigned int)handle, (unsigned int)data, (unsigned int)n};
    return call(SYS_WRITE, args);
}

int sh_close(int handle)
{
    unsigned int args[1] = {(unsigned int)handle};
    return call(SYS_CLOSE, args);
}

void sh_puts(const char *text)
{
    call(SYS_WRITE0, (void *)text);
}

void sh_exit(int status)
{
    /* AArch32 SYS_EXIT takes the reason itself: application exit (status 0) or run-time error (1). */
    call(SYS_EXIT, (void *)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUN_TIME_ERROR));
    for (;;) {
    }
}
