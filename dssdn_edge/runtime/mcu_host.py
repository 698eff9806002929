"""The generated microcontroller C model (an export's ``mcu/dssdn_model.c``) compiled for this machine, as one
more ``Runtime``: so predict, export's checks and bench run the exact integer code a Cortex-M runs, through
the same interface as LiteRT, ONNX Runtime and TFLM.

Why a plug-in and not part of ``core``: ``core`` is copied to a Raspberry Pi and imports nothing from
dssdn_edge; this adapter needs the host compiler and ``dssdn_edge.mcu.host``, so it is loaded only when the
``mcu-host`` kind is asked for (``runtime.load(path, kind="mcu-host")``, or a path to ``dssdn_model.c`` /
``dssdn_model.h`` / a folder holding them).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from .core import ModelLoadError, Runtime

MODEL_HEADER = "dssdn_model.h"


def _model_dir(source: Any) -> Path:
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    if not (folder / MODEL_HEADER).is_file():
        raise ModelLoadError(f"{source}: no generated model here ({MODEL_HEADER} not found; export with --int8)")
    return folder


def _define(header: str, name: str) -> float:
    match = re.search(rf"#define DSSDN_MODEL_{name} \(?(-?[0-9.eE+-]+)f?\)?", header)
    if match is None:
        raise ModelLoadError(f"{MODEL_HEADER}: DSSDN_MODEL_{name} is not defined")
    return float(match.group(1))


class McuHost(Runtime):
    """``dssdn_model.c`` built with the host's ``cc`` (cached by the hash of the sources) and run through
    ctypes. Input and output are the model's int8 tensors; ``threads`` does not apply."""

    kind = "mcu-host"
    engine = "generated C (dssdn-edge), host build"
    threads = None
    layout = "NHWC"

    def __init__(self, source: Any, threads: int | None = None, build_dir: Path | None = None) -> None:
        from ..mcu.host import HostModel
        from ..paths import cache_dir

        folder = _model_dir(source)
        header = (folder / MODEL_HEADER).read_text()
        if build_dir is None:
            digest = hashlib.sha256()
            for name in sorted(p.name for p in folder.glob("*.[ch]")):
                digest.update(name.encode() + (folder / name).read_bytes())
            build_dir = cache_dir() / "mcu-host" / digest.hexdigest()[:16]
        self.model = HostModel(folder, Path(build_dir))
        self.input_shape = tuple(self.model.in_shape)
        self.input_dtype = np.dtype(np.int8)
        self.input_scale = _define(header, "IN_SCALE")
        self.input_zero_point = int(_define(header, "IN_ZERO_POINT"))
        self.output_scale = _define(header, "OUT_SCALE")
        self.output_zero_point = int(_define(header, "OUT_ZERO_POINT"))

    def invoke(self, x: np.ndarray) -> np.ndarray:
        return self.model(x)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Float windows → float logits, the whole batch in one foreign call."""
        windows = np.asarray(windows)
        if len(windows) == 0:
            return np.zeros((0, 0), np.float32)
        return self.dequantize(self.model(self.prepare(windows)))

    def activation_memory(self) -> dict[str, Any]:
        return {"bytes": int(self.model.arena_bytes), "kind": "static arena",
                "method": "planned at generation time (dssdn_edge.mcu.plan)"}
