/* semihost.h - the few Arm semihosting calls the firmware needs (open/write/close a host file, exit).
 * Semihosting makes the debugger (here qemu with -semihosting) do the I/O: no UART driver, no newlib
 * syscalls, and binary data reaches the host unchanged. */
#ifndef DSSDN_SEMIHOST_H
#define DSSDN_SEMIHOST_H

#include <stddef.h>

int sh_open(const char *path, int mode);            /* mode 6 = "wb"; returns a handle or -1 */
int sh_write(int handle, const void *data, size_t n); /* returns the bytes NOT written (0 = all) */
int sh_close(int handle);
void sh_puts(const char *text);                     /* to the host's console */
void sh_exit(int status) __attribute__((noreturn)); /* ends qemu with status 0 or 1 */

#endif
