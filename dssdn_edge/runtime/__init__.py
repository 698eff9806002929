"""The one way to run a model the project writes: ``load(path) → Runtime``.

Every artifact goes through here — predict, export's quality checks, the phone evaluation and the
benchmarks; ``bench`` copies this package to a device (as ``dssdn_runtime/`` beside ``runner.py``), so host and
device run the same code. ``core`` holds the runtimes and imports nothing from ``dssdn_edge``; ``load`` adds the
one kind that needs the package: a torch checkpoint (``.safetensors`` + its sidecar, no unpickling), read
through ``dssdn_edge.checkpoint`` when that kind is asked for.

Kinds (``load(..., kind=...)``; the file name implies the first three):

========================  ==============================================================================
``tflite``                features-in .tflite: fp32, int8, packed int8 (LiteRT or tflite-runtime)
``audio-tflite``          the phone file ``<name>.audio.tflite``: audio (window + context) in, scores out
``onnx``                  fp32 or QDQ int8 .onnx (onnxruntime)
``tflm``                  an int8 .tflite in the TFLite Micro interpreter (raw int8 via ``prepare``/``invoke``)
``torch``                 a checkpoint path (``.safetensors``) or an ``nn.Module``
``mcu-host``              the generated microcontroller C of an export (its ``mcu/`` folder, ``dssdn_model.c``
                          or ``.h``: implied by those names), compiled for this machine (``mcu_host``)
========================  ==============================================================================

A kind that needs more of the package than a device has is one entry in ``PLUGIN_KINDS`` (today ``mcu-host``,
``"dssdn_edge.runtime.mcu_host:McuHost"``). The callable is called with
``(source, threads=..., **options)`` and returns a ``Runtime`` (``prepare`` / ``invoke`` / ``dequantize`` are
the contract; ``__call__`` comes with the base class). It is imported only when that kind is loaded, so the
copy of this package on a device never needs it.

``manifest`` (reading and checking an export folder) and ``logmel`` (the front end in numpy, from the
manifest's numbers) complete what a device needs; they, like ``core``, import nothing from ``dssdn_edge``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from . import cfeatures, logmel, manifest
from .core import (
    AUDIO_SUFFIX,
    DEFAULT_THREADS,
    KINDS,
    AudioLiteRT,
    LiteRT,
    ModelLoadError,
    Onnx,
    Runtime,
    Tflm,
    Torch,
    dequantize,
    infer_layout,
    kind_of,
    log_scores,
    native_output,
    open_model,
    planner_estimate,
    quantize,
)

# kind -> "module:callable" opened on demand (the seam for runtimes that live in other packages)
PLUGIN_KINDS: dict[str, str] = {"mcu-host": "dssdn_edge.runtime.mcu_host:McuHost"}

__all__ = [
    "AUDIO_SUFFIX",
    "DEFAULT_THREADS",
    "KINDS",
    "PLUGIN_KINDS",
    "AudioLiteRT",
    "LiteRT",
    "ModelLoadError",
    "Onnx",
    "Runtime",
    "Tflm",
    "Torch",
    "dequantize",
    "infer_layout",
    "kind_of",
    "load",
    "cfeatures",
    "logmel",
    "manifest",
    "log_scores",
    "native_output",
    "planner_estimate",
    "quantize",
]


def load(source: Any, kind: str | None = None, threads: int | None = DEFAULT_THREADS, **options: Any) -> Runtime:
    """Open ``source`` (a path, a model's bytes, or an ``nn.Module``) as a ``Runtime``.

    ``kind`` defaults to what the name says (``.safetensors`` → torch). ``threads`` is the one thread
    setting (None for torch: leave its own). ``options`` go to the runtime (``delegate``, ``engine``,
    ``preserve_all_tensors``, ``layout``, ``channels``, ``arena_size``)."""
    if kind is None and isinstance(source, (str, Path)) and str(source).endswith(".safetensors"):
        kind = "torch"
    if kind is None and not isinstance(source, (str, Path, bytes, bytearray)):
        kind = "torch"  # a module object
    if kind is None and isinstance(source, (str, Path)) and (
        str(source).endswith(("dssdn_model.c", "dssdn_model.h")) or (Path(source) / "dssdn_model.h").is_file()
    ):
        kind = "mcu-host"  # the generated microcontroller C (an export's mcu/), built for this machine
    if kind in PLUGIN_KINDS:
        module, _, name = PLUGIN_KINDS[kind].partition(":")
        return getattr(importlib.import_module(module), name)(source, threads=threads, **options)
    if kind == "torch":
        if isinstance(source, (str, Path)):
            from ..checkpoint import load_checkpoint

            source = load_checkpoint(Path(source)).model
        return Torch(source, threads=threads, **options)
    if isinstance(source, Path):
        source = str(source)
    if kind == "tflm":
        return Tflm(source, **options)
    return open_model(source, kind, threads=DEFAULT_THREADS if threads is None else threads, **options)
