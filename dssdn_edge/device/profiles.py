"""The emulated boards: which real core qemu models and what ``/proc/cpuinfo`` the device's programs read.

Why a named core and an ARM cpuinfo: qemu's default ``-cpu max`` offers extensions no Pi has, and LiteRT's
int8 kernels then pick code paths that give wrong outputs under emulation; naming the Pi's own core
(Cortex-A72 for a Pi 4, Cortex-A76 for a Pi 5) makes XNNPACK choose what it would choose on the board.
LiteRT also reads ``/proc/cpuinfo`` at start and crashes on the host's x86 text, so each profile carries
the CPU lines a real board prints (no ``Model``/``Serial`` lines: this is not a Pi, and nothing should
mistake it for one).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DeviceError


@dataclass(frozen=True)
class PiProfile:
    """One emulated Raspberry Pi: qemu's ``-cpu`` name and the cpuinfo lines of the board's cores."""

    key: str
    name: str
    qemu_cpu: str
    core: str
    cores: int
    features: str  # the kernel's HWCAP names, as /proc/cpuinfo "Features" lists them on the board
    cpu_variant: str
    cpu_part: str
    cpu_revision: int

    def cpuinfo(self) -> str:
        """The text of /proc/cpuinfo on the board's 64-bit OS, CPU lines only."""
        block = (
            "processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
            "CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {rev}\n\n"
        )
        return "".join(
            block.format(
                i=i, features=self.features, variant=self.cpu_variant, part=self.cpu_part, rev=self.cpu_revision
            )
            for i in range(self.cores)
        )

    def describe(self, qemu_version: str) -> str:
        """The label every report carries for numbers measured through this emulation."""
        return (
            f"EMULATED {self.name} userland: qemu-aarch64 {qemu_version} -cpu {self.qemu_cpu} ({self.core}) "
            "on this host; timings are not a Pi's"
        )


PROFILES: dict[str, PiProfile] = {
    # BCM2711: four Cortex-A72 r0p3, NEON without the dot product or crypto extensions.
    "rpi4": PiProfile("rpi4", "Raspberry Pi 4", "cortex-a72", "Cortex-A72", 4, "fp asimd evtstrm crc32 cpuid",
                      "0x0", "0xd08", 3),
    # BCM2712: four Cortex-A76 r4p1 with the dot product (asimddp), which int8 kernels use.
    "rpi5": PiProfile(
        "rpi5", "Raspberry Pi 5", "cortex-a76", "Cortex-A76", 4,
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
        "0x4", "0xd0b", 1,
    ),
}


def get_profile(key: str) -> PiProfile:
    try:
        return PROFILES[key]
    except KeyError:
        raise DeviceError(f"unknown emulated device {key!r}; choose one of {', '.join(PROFILES)}") from None
