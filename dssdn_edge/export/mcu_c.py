"""The generated C model (``mcu/dssdn_model.c``) as an export artifact: generate it beside the TFLM C array,
build it on the host, and prove it gives TFLite Micro's int8 outputs on the export's check windows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from ..mcu import generate_model_c
from ..mcu.host import HostModel, compiler

ARTIFACT = "mcu/dssdn_model.c"


def generated_c_entry(model: bytes, mcu_dir: Path, name: str, labels: list[str], label: str,
                      inputs: np.ndarray, tflm_outputs: np.ndarray, tflm_arena: int,
                      io: dict[str, Any]) -> dict[str, Any]:
    """Write the generated C into ``mcu_dir`` and return its manifest entry. ``inputs`` are the int8
    windows TFLM ran (NHWC), ``tflm_outputs`` its int8 outputs; any difference is an ExportError."""
    report = generate_model_c(model, mcu_dir, name, labels, label=label)
    quality: dict[str, Any] = {"vs": "TFLite Micro on the same int8 model", "windows": int(len(inputs))}
    try:
        compiler()
    except ExportError as exc:
        quality.update(checked=False, reason=str(exc))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            mine = HostModel(mcu_dir, Path(tmp))(inputs).reshape(tflm_outputs.shape)
        differ = int((mine != tflm_outputs).reshape(len(inputs), -1).any(axis=1).sum())
        if differ:
            raise ExportError(f"{ARTIFACT}: the generated C differs from TFLite Micro on {differ} of "
                              f"{len(inputs)} check windows")
        quality.update(checked=True, identical_outputs=True, max_abs_output_diff_LSB=0.0, top1_agreement=1.0)
    return {
        "format": "c-source (generated for this model)",
        "runtime": "generated C (dssdn-edge)",
        "precision": "int8",
        "layout": "NHWC (batch, frames, bands, channels)",
        **io,
        "model_bytes": report.const_bytes,
        "generated": {
            "arena_bytes": report.arena_bytes,
            "const_bytes": report.const_bytes,
            "weights": report.weights,
            "tflm_arena_bytes": tflm_arena,
            "files": [f"mcu/{f}" for f in report.files],
            "plan": report.plan,
        },
        "ops": report.ops,
        "quality": quality,
    }
