"""``dssdn-edge device cortex-m``: build the front end for a core, run it on qemu, check it, report.

Kept apart from ``cortex_m`` (which only builds, measures and runs) so the CLI stays a thin layer: this
module picks the audio, compares the emulated core's features with the numpy front end and words the
result. The comparison uses the float32 bound ``tests/test_frontend_c.py`` holds the host build to
(1e-4 log10 units on every band within 60 dB of its frame's loudest band).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..frontend import Frontend, FrontendConfig
from . import cortex_m

TOL = 1e-4
WITHIN = 6.0  # log10 units (60 dB)


def loudest_second(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """The 1-s window (hop-aligned) with the most energy: silence would make the check trivially pass."""
    n = int(round(cfg.segment_seconds * cfg.sample_rate))
    if len(audio) <= n:
        return np.asarray(audio, np.float32)
    energy = np.convolve(np.asarray(audio, np.float64) ** 2, np.ones(n), mode="valid")[:: cfg.hop_length]
    start = int(np.argmax(energy)) * cfg.hop_length
    return np.asarray(audio[start : start + n], np.float32)


def build_and_check(core: str, out: Path | None, audio_files: list[Path], run: bool = True,
                    src_dir: Path | None = None) -> dict[str, Any]:
    """Build for ``core`` into ``out`` (from ``src_dir``, else emitted for the default front end); with
    ``run``, run the loudest second of each clip (or a chirp) on qemu and compare with numpy. Returns the
    build, per-clip errors and printable lines."""
    from ..runtime.logmel import LogMel, test_audio
    from ..userdata import REPO_ROOT

    out = Path(out) if out is not None else REPO_ROOT / "runs" / f"{core}-frontend"
    build = cortex_m.build_frontend(None if src_dir else FrontendConfig(), core, out, src_dir=src_dir)
    cfg = FrontendConfig.from_dict(build.frontend)
    clips: list[np.ndarray] = []
    names: list[str] = []
    if audio_files:
        from ..audio import load_audio

        for path in audio_files:
            clips.append(loudest_second(load_audio(path, cfg.sample_rate), cfg))
            names.append(str(path))
    else:
        clips.append(test_audio(LogMel(cfg.to_dict())))
        names.append("chirp + noise (runtime.logmel.test_audio)")
    errors: list[dict[str, Any]] = []
    if run:
        result = cortex_m.run_on_qemu(build, cfg, clips)
        fe = Frontend(cfg)
        for name, clip, got in zip(names, clips, result.frames, strict=True):
            ref = fe.logmel(clip)
            errors.append({"clip": name, "within_60db": cortex_m.max_error_within(ref, got, WITHIN),
                           "overall": float(np.abs(got - ref).max())})
    d = build.to_dict()
    stack = build.stack
    lines = [
        f"{build.core}: {' '.join(build.cflags)} ({build.compiler})",
        f"front end flash {build.flash_bytes:,} B (image with it - image without it; object text "
        f"{build.object_text:,} B)",
        f"front end static RAM {build.static_ram_bytes:,} B (state, one frame, one hop of input)",
        f"stack: static worst case {stack.bytes} B ({' -> '.join(stack.path)}; not counted: "
        f"{', '.join(stack.not_counted) or 'none'})",
    ]
    if build.stack_peak_bytes is not None:
        lines.append(f"stack: peak {build.stack_peak_bytes} B measured on qemu -M {(build.qemu or {}).get('machine')}")
    for e in errors:
        verdict = "ok" if e["within_60db"] <= TOL else "OVER"
        lines.append(f"features vs numpy, {e['clip']}: max error {e['within_60db']:.2e} within 60 dB of the frame "
                     f"peak ({verdict}, bound {TOL:g}); {e['overall']:.2e} overall")
    lines.append(f"build folder {out}")
    ok = all(e["within_60db"] <= TOL for e in errors)
    return {"build": d, "errors": errors, "ok": ok, "tolerance": TOL, "lines": lines}
