"""The buildable ``mcu/`` project of an export: the classifier glue, the host program, the Makefile, the README.

Why in ``mcu`` and not in ``device``: export writes these files beside the generated model, and export sits
below the device layer. The firmware built from them is measured by ``device.firmware``, which the CLI hands
to export as a callable so the folder's README states its own numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError

PROJECT_SRC = Path(__file__).resolve().parent / "project_src"
PROJECT_FILES = ("dssdn_classifier.h", "dssdn_classifier.c", "classify.c", "Makefile")
README = "README.md"
KIB = 1024


def _write(path: Path, text: str) -> None:
    from ..fileio import write_text

    write_text(path, text)


def render_measured(measured: dict[str, Any] | None, why_not: str = "") -> str:
    """The README's measured section from ``firmware.Measurement.to_dict()`` (or why nothing was measured)."""
    if not measured:
        return (f"Not measured for this export ({why_not or 'no Arm toolchain'}). Measure with "
                "`dssdn-edge bench --export <folder> --device cortex-m4`.")
    fp, ins, cal = measured["footprint"], measured["instructions"], measured["calibration"]
    flash, ram = fp["flash_by_part"], fp["ram_by_part"]
    rows = [
        f"Built with {fp['compiler']} ({' '.join(fp['cflags'])}) and run on `qemu-system-arm -M "
        f"{cal['machine']}` ({measured['core']}); sizes from the linker map of a firmware that classifies "
        "audio as a device does (`device/mcu_src/probe_firmware.c` in dssdn-edge), the stack painted at reset.",
        "",
        "| part | flash (text + rodata + data) | RAM (data + bss) |",
        "|---|---:|---:|",
        f"| model (generated C + kernels; RAM = its activation arena) | {flash['model']:,} B | {ram['model']:,} B |",
        f"| front end (FFT, mel, delta, normalisation, int8 input) | {flash['frontend']:,} B | {ram['frontend']:,} B |",
        f"| glue and runtime (classifier, startup, C library) | {flash['glue']:,} B | {ram['glue']:,} B |",
        f"| peak stack (measured) | | {ram['stack']:,} B |",
        f"| **whole firmware** | **{fp['flash_bytes']:,} B ({fp['flash_bytes'] / KIB:.1f} KiB)** | "
        f"**{fp['ram_bytes']:,} B ({fp['ram_bytes'] / KIB:.1f} KiB)** |",
        "",
        f"Emulated instructions (qemu `-icount shift=0`, counted by the board's 25 MHz counter: 1 tick = "
        f"{ins['resolution']} instructions; clock proven within {cal['max_relative_error']:.2%} on a loop of "
        "known length). These are instruction counts, not time: qemu is not cycle-accurate.",
        "",
        f"- model, one 1-s window: {ins['model_per_window']:,} instructions",
        f"- front end and glue, per second of audio: {ins['frontend_and_glue_per_second']:,}",
        f"- one 1-s window (model + 1 s of front end): **{ins['per_1s_window']:,}**; at 0.5-s hops the device runs "
        f"the model twice per second: {ins['model_per_window'] * 2 + ins['frontend_and_glue_per_second']:,} per second",
        f"- as time, only under an ASSUMED 1.0 cycle per instruction: {ins['per_1s_window'] / 168e3:.1f} ms at "
        f"168 MHz (STM32F4), {ins['per_1s_window'] / 480e3:.1f} ms at 480 MHz (STM32H7)",
    ]
    return "\n".join(rows)


def write_project(mcu_dir: Path, name: str, measured: dict[str, Any] | None = None, why_not: str = "") -> list[Path]:
    """Copy the static project files into ``mcu_dir`` and render its README."""
    mcu_dir = Path(mcu_dir)
    if not mcu_dir.is_dir():
        raise ExportError(f"{mcu_dir}: not a folder (write the generated model first)")
    paths = []
    for fname in PROJECT_FILES:
        _write(mcu_dir / fname, (PROJECT_SRC / fname).read_text(encoding="utf-8"))
        paths.append(mcu_dir / fname)
    text = (PROJECT_SRC / README).read_text(encoding="utf-8")
    text = text.replace("{name}", name).replace("{measured}", render_measured(measured, why_not))
    _write(mcu_dir / README, text)
    return [*paths, mcu_dir / README]


def probe_audio(seconds: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
    """Deterministic int16 test audio (a rising chirp in noise) for measuring an export without a dataset:
    instruction counts barely depend on the content, and no window is digital silence."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    chirp = np.sin(2 * np.pi * (200 * t + 1900 * t**2))
    noise = np.random.default_rng(0).standard_normal(len(t))
    return np.round(8000 * chirp + 1500 * noise).astype(np.int16)
