"""Device profiles and latency estimates from MACs, each figure with the source it comes from.

Why estimates at all: most users have no Pi or STM32 on the desk when they pick a model size. An estimate
from MACs is only as good as the public figure behind it, so every estimate carries ``"estimate": true``,
a low–high range, and the source string; measured numbers never go through this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import BenchError

DEVICES = ("cpu", "rpi", "cortex-m4", "cortex-m7")

_PI_SOURCE = (
    "Raspberry Pi 4 public TFLite+XNNPACK figures, 4 threads (docs export.md): MobileNet v1 569 M MACs "
    "72 ms fp32 / 29 ms int8, MobileNet v2 300 M MACs 41 ms fp32 / 20 ms int8"
)


@dataclass(frozen=True)
class SbcProfile:
    """A Linux board: throughput in MAC/s at 4 threads for (low, high), per precision."""

    key: str
    name: str
    cpu: str
    cores: int
    fp32_macs_per_s: tuple[float, float]
    int8_macs_per_s: tuple[float, float]
    source: str


def _pi4_rates(mobilenet: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """MAC/s from (MACs, seconds) of MobileNet v1 and v2; v2 (depthwise-heavy, like DSSDN) is the low end."""
    return {prec: tuple(sorted(m / s for m, s in runs)) for prec, runs in mobilenet.items()}  # type: ignore[misc]


_PI4 = _pi4_rates({"fp32": ((569e6, 72e-3), (300e6, 41e-3)), "int8": ((569e6, 29e-3), (300e6, 20e-3))})
# Pi 5: Cortex-A76 @ 2.4 GHz with ~2–3× the per-core throughput of the Pi 4's A72 (export.md).
_PI5_SCALE = (2.0, 3.0)

SBCS: dict[str, SbcProfile] = {
    "rpi4": SbcProfile("rpi4", "Raspberry Pi 4", "Cortex-A72 @ 1.5 GHz", 4, _PI4["fp32"], _PI4["int8"], _PI_SOURCE),
    "rpi5": SbcProfile(
        "rpi5",
        "Raspberry Pi 5",
        "Cortex-A76 @ 2.4 GHz",
        4,
        (_PI4["fp32"][0] * _PI5_SCALE[0], _PI4["fp32"][1] * _PI5_SCALE[1]),
        (_PI4["int8"][0] * _PI5_SCALE[0], _PI4["int8"][1] * _PI5_SCALE[1]),
        _PI_SOURCE + "; Pi 5 per-core throughput taken as 2–3× the Pi 4's (export.md)",
    ),
}


@dataclass(frozen=True)
class McuBoard:
    """A microcontroller board: memory budgets and int8 cycles per MAC (best, typical) with sources."""

    key: str
    name: str
    core: str
    clock_hz: float
    flash_bytes: int
    ram_bytes: int
    largest_ram_block: int  # the TFLM arena must be one contiguous block
    memory_source: str
    cycles_per_mac: tuple[float, float]  # (best, typical)
    cycles_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BOARDS: dict[str, McuBoard] = {
    "cortex-m4": McuBoard(
        "cortex-m4",
        "STM32F407",
        "Cortex-M4F @ 168 MHz",
        168e6,
        1024 * 1024,
        192 * 1024,
        128 * 1024,
        "ST DS8626: 1 MB flash, 192 KB SRAM = 112+16 KB contiguous SRAM1/2 + 64 KB CCM (no DMA)",
        (0.5, 9.0),
        "best: CMSIS-NN int8 ~2 MACs/cycle (SMLAD dual 16-bit MAC); typical: ST rule of thumb ~9 cycles/MAC "
        "end to end (export.md)",
    ),
    "cortex-m7": McuBoard(
        "cortex-m7",
        "STM32H743",
        "Cortex-M7 @ 480 MHz",
        480e6,
        2 * 1024 * 1024,
        1024 * 1024,
        512 * 1024,
        "ST DS12110: 2 MB flash, 1 MB RAM = 512 KB AXI SRAM (largest block) + 288 KB SRAM1-3 + 64 KB SRAM4 "
        "+ 128 KB DTCM + 64 KB ITCM (+4 KB backup)",
        (1.75, 6.1),
        "best: ~1.75 cycles/MAC from the CMSIS-NN paper (Lai et al. 2018, arXiv:1801.06601): CIFAR-10 CNN "
        "(3 conv 5x5, 32/32/64 ch, ~12.3 M MACs by our count) in 99.1 ms on a Cortex-M7 @ 216 MHz; typical: "
        "the M4's ~9 cycles/MAC scaled by Arm's CoreMark/MHz (M4 3.40, M7 5.01)",
    ),
}


@dataclass(frozen=True)
class Estimate:
    """A latency ESTIMATE for one model on one device (never a measurement)."""

    device: str
    precision: str
    threads: int
    macs: int
    ms: float
    low_ms: float
    high_ms: float
    source: str
    estimate: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_sbc(profile: SbcProfile, macs: int, precision: str, threads: int) -> Estimate:
    """MACs / public MobileNet throughput, scaled linearly from 4 threads to ``threads`` (≤ 4): linear
    scaling understates single-thread throughput, so the single-thread figure leans pessimistic, while
    DSSDN's many tiny ops run below MobileNet's efficiency, which leans the other way."""
    if precision not in ("fp32", "int8"):
        raise BenchError(f"no estimate for precision {precision!r}")
    low_rate, high_rate = profile.int8_macs_per_s if precision == "int8" else profile.fp32_macs_per_s
    scale = min(threads, profile.cores) / 4
    fast, slow = macs / (high_rate * scale) * 1e3, macs / (low_rate * scale) * 1e3
    return Estimate(
        profile.name,
        precision,
        threads,
        macs,
        (fast * slow) ** 0.5,
        fast,
        slow,
        profile.source + f"; {min(threads, profile.cores)} of 4 threads, linear scaling assumed",
    )


def estimate_mcu(board: McuBoard, macs: int) -> Estimate:
    """int8 latency = MACs × cycles/MAC ÷ clock; the headline is the typical (rule-of-thumb) figure."""
    best, typical = (macs * c / board.clock_hz * 1e3 for c in board.cycles_per_mac)
    return Estimate(board.name, "int8", 1, macs, typical, best, typical, board.cycles_source)


def estimates_for(device: str, macs: int, threads: int) -> list[Estimate]:
    """All estimates that ``--device DEVICE --estimate`` reports."""
    if device == "rpi":
        return [estimate_sbc(p, macs, prec, threads) for p in SBCS.values() for prec in ("int8", "fp32")]
    if device in BOARDS:
        return [estimate_mcu(BOARDS[device], macs)]
    raise BenchError(f"no estimates for --device {device}; estimates exist for rpi, {', '.join(BOARDS)}")


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise BenchError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    return device
