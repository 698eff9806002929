"""``dssdn-edge device cortex-m CORE --export DIR``: the whole model on an emulated core, checked, reported.

Kept apart from ``firmware`` (which builds, measures and runs) and ``mcu_check`` (which compares) so the CLI
stays a thin layer: this module picks the clips (the user's, or real fold-5 clips of the dataset), runs the
export's ``mcu/`` project (front end + generated model + classifier glue) on qemu, holds the answer against
``dssdn-edge predict`` and TFLite Micro, and words the result.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError
from . import firmware, mcu_check

DEFAULT_CLIPS = 8


def fold5_clips(data_root: Path, n: int) -> list[Path]:
    """``n`` fold-5 clips spread over the classes (the exports' own evaluation fold), take A first."""
    meta = Path(data_root) / "metadata.csv"
    if not meta.is_file():
        raise DeviceError(f"{meta}: no dataset here; pass --audio with 16-bit 16 kHz WAV files")
    with meta.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "5"]
    rows.sort(key=lambda r: (int(r["take"] != "A"), int(r["target"]), r["filename"]))
    step = max(1, len(rows) // max(1, n))
    return [Path(data_root) / r["filename"] for r in rows[::step][:n]]


def read_pcm16(path: Path, sample_rate: int) -> np.ndarray:
    """The clip's int16 samples as stored: the firmware takes 16-bit PCM at the model's rate, unconverted."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DeviceError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DeviceError(f"{path}: unreadable audio ({str(exc).splitlines()[0]})") from None
    if info.samplerate != sample_rate or info.subtype != "PCM_16":
        raise DeviceError(f"{path}: the firmware takes 16-bit PCM at {sample_rate} Hz "
                          f"(got {info.subtype} at {info.samplerate} Hz)")
    return mcu_check.read_int16(path)


def run_and_check(core: str, export_dir: Path, out: Path, audio_files: list[Path], n_clips: int = DEFAULT_CLIPS,
                  data_root: Path | None = None) -> dict[str, Any]:
    """Build the export's mcu/ for ``core`` into ``out``, stream the clips on qemu, compare with the host."""
    from ..data import default_data_root
    from ..export.manifest import load_manifest

    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir)  # verified: the files built are the files the export made
    mcu_dir = export_dir / "mcu"
    if not (mcu_dir / firmware.MODEL_HEADER).is_file():
        raise DeviceError(f"{mcu_dir}: no generated model ({firmware.MODEL_HEADER}); export with --int8")
    rate = int(manifest["frontend"]["sample_rate"])
    paths = [Path(p) for p in audio_files] or fold5_clips(data_root or default_data_root(), n_clips)
    clips = [read_pcm16(p, rate) for p in paths]
    m, run = firmware.measure(mcu_dir, core, Path(out), clips)
    result = mcu_check.compare(export_dir, paths, run)
    d = m.to_dict()
    fp, ins = d["footprint"], d["instructions"]
    fl, ra = fp["flash_by_part"], fp["ram_by_part"]
    lines = [
        f"{m.footprint.core} ({run.machine}): {manifest.get('name')} front end + generated model + glue, "
        f"{fp['compiler']} {' '.join(fp['cflags'])}",
        f"flash {fp['flash_bytes']:,} B = model {fl['model']:,} + front end {fl['frontend']:,} + glue {fl['glue']:,} "
        "(linker map)",
        f"RAM {fp['ram_bytes']:,} B = model arena and state {ra['model']:,} + front end {ra['frontend']:,} + glue "
        f"{ra['glue']:,} + peak stack {ra['stack']:,} (painted on qemu)",
        f"emulated instructions (qemu -icount, not time): model {ins['model_per_window']:,} per window, front end "
        f"and glue {ins['frontend_and_glue_per_second']:,} per second of audio, {ins['per_1s_window']:,} per 1-s "
        f"window; clock proven within {m.calibration.max_relative_error:.2%}",
    ]
    for c in result["clips"]:
        verdict = "same" if c["agree"] else ("near tie" if c["near_tie"] else "DIFFERENT")
        lines.append(f"{c['path']}: device {_label(manifest, c['device_label'])}, predict "
                     f"{_label(manifest, c['predict_label'])} ({verdict}); {c['windows']} windows, logits "
                     f"{'equal' if c['logits_equal_tflm'] else 'DIFFER from'} TFLM's")
    lines += [
        f"clips: {sum(c['agree'] for c in result['clips'])}/{result['n_clips']} labels equal predict's; windows "
        f"with the host's int8 input: {result['windows_with_host_inputs']}/{result['windows']}; logits equal "
        f"TFLite Micro's on the device's inputs: {'all' if result['logits_equal_tflm'] else 'NOT all'}",
        f"build folder {out}",
    ]
    d["build_dir"] = str(out)
    return {"whole_model": True, "measurement": d, "check": result, "ok": result["ok"], "lines": lines}


def _label(manifest: dict[str, Any], k: int) -> str:
    labels = manifest.get("labels") or []
    return str(labels[k]) if 0 <= k < len(labels) else ("(silence)" if k < 0 else str(k))
