"""Helpers for the device tests (a plain module, not a test file): real clips and the emulated boards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def loudest_seconds(paths: list[Path], sample_rate: int = 16000) -> list[np.ndarray]:
    """The loudest 1-s window of each clip (silence would make any comparison trivially pass)."""
    from dssdn_edge.audio import load_audio
    from dssdn_edge.device.build_report import loudest_second
    from dssdn_edge.frontend import FrontendConfig

    cfg = FrontendConfig(sample_rate=sample_rate)
    return [loudest_second(load_audio(p, sample_rate), cfg) for p in paths]


def emulated_boards(keys: tuple[str, ...] = ("rpi4", "rpi5")) -> dict:
    """The emulated boards in the cache folder (the userland is built once and reused by every session),
    or a skip with the reason: no qemu-user-static, or Debian's archive unreachable."""
    import shutil

    from dssdn_edge.device import default_cache, emulate
    from dssdn_edge.errors import ArchiveUnreachable

    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static not installed (apt-get install qemu-user-static)")
    try:
        return {k: emulate(k, default_cache() / "devices" / k) for k in keys}
    except ArchiveUnreachable as exc:
        pytest.skip(f"cannot build the emulated Pi userland: {exc}")

