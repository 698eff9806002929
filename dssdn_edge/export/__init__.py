"""Export a trained model to ONNX, TFLite (fp32 + full-integer int8) and a TFLite Micro C array.

The pipeline lives in ``pipeline.py``; one module per job does the work: ``fuse.py`` (the exact deployment
rewrite), ``onnx.py``, ``tflite.py``, ``tflm.py``, ``phone.py`` (the waveform-in phone file), ``sources.py``
(the calibration and evaluation windows, in one pass), ``calibration.py`` (shipped int8 statistics),
``quality.py`` (every artifact measured against fp32 torch) and ``manifest.py`` (manifest.json + report.md).
"""

from .pipeline import (
    ExportResult,
    export_model,
    measure_gains,
    resolve_checkpoint,
    save_calibration,
)
from .sources import WindowSet, source_windows

__all__ = ["ExportResult", "WindowSet", "export_model", "measure_gains", "resolve_checkpoint", "save_calibration",
           "source_windows"]
