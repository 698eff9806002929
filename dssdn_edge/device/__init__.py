"""Device software in the loop on this host: an emulated Raspberry Pi userland and the Cortex-M build.

``emulate`` (an aarch64 Debian bookworm userland under qemu-user, Pi 4 or Pi 5 core) gives a ``python3``
that ``dssdn-edge bench --device rpi --remote-python`` can run the device runner with; ``cortex_m``
cross-compiles the front end's C twin for Cortex-M4/M7, measures its flash, RAM and stack, and runs it on
``qemu-system-arm``. Modules: ``profiles`` (the boards), ``userland`` (build + verify the cached sysroot),
``emulate`` (a board folder with its wrappers), ``cortex_m`` (the MCU build).
Emulated timings are never a device's: everything built here labels itself emulated.
"""

from __future__ import annotations

from .emulate import EmulatedPi, emulate
from .profiles import PROFILES, PiProfile, get_profile
from .userland import Userland, UserlandSpec, default_cache, ensure_userland

__all__ = [
    "PROFILES",
    "EmulatedPi",
    "PiProfile",
    "Userland",
    "UserlandSpec",
    "default_cache",
    "emulate",
    "ensure_userland",
    "get_profile",
]
