"""Export a trained model to ONNX, TFLite (fp32 + full-integer int8) and a TFLite Micro C array.

The pipeline lives in ``pipeline.py``; one module per target does the work: ``fuse.py`` (the exact
deployment rewrite), ``onnx.py``, ``tflite.py``, ``tflm.py``, ``calibration.py`` (real int8 calibration
audio) and ``manifest.py`` (manifest.json + report.md).
"""

from .pipeline import (
    ExportResult,
    export_model,
    load_eval_set,
    measure_gains,
    resolve_checkpoint,
    save_calibration,
)

__all__ = ["ExportResult", "export_model", "load_eval_set", "measure_gains", "resolve_checkpoint",
           "save_calibration"]
