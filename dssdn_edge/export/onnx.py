"""ONNX artifacts: fp32 (torch.onnx dynamo exporter + onnxsim) and static QDQ int8 (onnxruntime).

The dynamo exporter gives the cleaner graph here (Gemm instead of MatMul+Add, no Constant/Identity
clutter); onnxsim folds what is left. The int8 model is onnxruntime's QDQ format with per-channel
weights, calibrated on the same real windows as the TFLite model with the same rules (input clipped to
the int8 input range, percentile ranges for the spatial maps; onnxruntime's own Percentile method would
also clip the logits). Its activation ranges can be stored as onnxruntime's own calibration cache
(JSON), which is what the shipped statistics keep, so a clone without data reproduces the same int8 model.

Weights use 7 of their 8 bits (``reduce_range``). On x86 CPUs without VNNI (AVX2 only), onnxruntime's
int8 kernels multiply with VPMADDUBSW, whose 16-bit pair sums saturate for full-range int8 weights:
on such a CPU the full-range dssdn-small model agreed with fp32 on 77 % of fold-5 windows and lost 4
accuracy points, the 7-bit one on 93 % (as LiteRT's int8). CPUs with VNNI (and ARM) accumulate in 32
bits and never saturate; the same file must behave the same on every CPU, so it gives up the bit everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import runtime
from ..errors import ExportError
from .tflite import clip_inputs

OPSET = 18
INPUT_NAME = "features"
OUTPUT_NAME = "logits"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter logs through handlers bound to the real stderr: silence it at the fd level."""
    from .tflite import native_quiet

    with native_quiet():
        yield


def export_fp32(model: nn.Module, example_nchw: torch.Tensor) -> bytes:
    """Simplified, checked fp32 ONNX with input ``features`` (1, C, T, F) and output ``logits``."""
    import onnx
    import onnxsim

    with tempfile.TemporaryDirectory(prefix="dssdn-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with _quiet():
                torch.onnx.export(
                    model.eval(),
                    (example_nchw,),
                    str(path),
                    dynamo=True,
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    external_data=False,
                )
        except Exception as exc:
            raise ExportError(f"torch.onnx export failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
        proto = onnx.load(str(path))
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise ExportError("onnxsim could not validate the simplified ONNX graph")
    simplified.producer_name, simplified.producer_version = "dssdn-edge", ""
    simplified.doc_string = ""
    try:
        onnx.checker.check_model(simplified, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"ONNX checker rejected the graph: {str(exc).splitlines()[0]}") from None
    return simplified.SerializeToString(deterministic=True)


class _Reader:
    """onnxruntime CalibrationDataReader over normalised NCHW windows, one window per batch."""

    def __init__(self, windows: np.ndarray, on_item=None) -> None:
        self.windows, self.i, self.on_item = windows, 0, on_item

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.windows):
            return None
        x = np.ascontiguousarray(self.windows[self.i : self.i + 1], dtype=np.float32)
        self.i += 1
        if self.on_item is not None:
            self.on_item(1)
        return {INPUT_NAME: x}

    def __len__(self) -> int:
        return len(self.windows)


def _quantize_static(src: Path, dst: Path, cache_path: Path, reader: _Reader | None) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    try:
        with _quiet():
            quantize_static(
                str(src),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,  # 7-bit weights: see the module docstring (AVX2 saturation)
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(cache_path),
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
    except Exception as exc:
        message = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise ExportError(f"onnxruntime quantize_static failed: {message}") from exc


def quantize_int8(
    fp32: bytes, windows: np.ndarray | None = None, cache: dict[str, Any] | None = None, on_item=None
) -> tuple[bytes, dict[str, Any]]:
    """Static QDQ int8 (per-channel weights) and the calibration cache (activation ranges) it used.

    With real ``windows``: onnxruntime's MinMax calibration on the windows clipped to the int8 input range,
    then the ranges of the spatial maps replaced by percentiles, as for TFLite (``tflite.calibrate``).
    With a ``cache`` from a previous call: exactly those ranges, no data needed.
    """
    import onnx

    if (windows is None) == (cache is None):
        raise ValueError("give exactly one of windows or cache")
    with tempfile.TemporaryDirectory(prefix="dssdn-qdq-") as tmp:
        src, dst, cache_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "calib.json"
        src.write_bytes(fp32)
        if cache is None:
            clipped = clip_inputs(windows)
            _quantize_static(src, dst, cache_path, _Reader(clipped, on_item))
            cache = with_percentiles(fp32, clipped[::2], json.loads(cache_path.read_text()))
        cache_path.write_text(json.dumps(cache))
        _quantize_static(src, dst, cache_path, None)
        used = json.loads(cache_path.read_text())
        proto = onnx.load(str(dst))
    proto.producer_name, proto.producer_version = "dssdn-edge", ""
    return proto.SerializeToString(deterministic=True), used


PERCENTILE_NODES = {"Conv", "Relu", "Add", "Mul"}  # the spatial maps, as tflite.PERCENTILE_OPS


def with_percentiles(fp32: bytes, windows: np.ndarray, cache: dict[str, Any], stride: int = 13) -> dict:
    """The calibration cache with the ranges of spatial maps set to their ``PERCENTILE`` percentiles."""
    import onnx

    from .tflite import PERCENTILE

    proto = onnx.load_from_string(fp32)
    data = cache["data"]
    names = [o for n in proto.graph.node if n.op_type in PERCENTILE_NODES for o in n.output if o in data]
    known = {o.name for o in proto.graph.output}
    for name in names:
        if name not in known:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = runtime.load(proto.SerializeToString(), kind="onnx")
    samples: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for x in windows:
        outs = session.outputs(names, x[None])
        for n, v in zip(names, outs, strict=True):
            samples[n].append(np.asarray(v).ravel()[::stride].copy())
    for n, parts in samples.items():
        lo, hi = np.percentile(np.concatenate(parts), [100.0 - PERCENTILE, PERCENTILE])
        data[n]["lowest"]["data"] = [min(float(lo), 0.0)]
        data[n]["highest"]["data"] = [max(float(hi), 0.0)]
    return cache


def graph_fingerprint(model_bytes: bytes) -> str:
    """Hash of the graph structure (nodes and tensor names), not of the weights."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    desc = [[n.op_type, list(n.input), list(n.output)] for n in proto.graph.node]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()


def op_counts(model_bytes: bytes) -> dict[str, int]:
    import onnx

    counts = Counter(n.op_type for n in onnx.load_from_string(model_bytes).graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def open_onnx(model_bytes: bytes, label: str = "model.onnx") -> runtime.Onnx:
    """The .onnx in onnxruntime (runtime layer, one thread); a file it refuses is an ExportError."""
    try:
        return runtime.load(model_bytes, kind="onnx")
    except runtime.ModelLoadError as exc:
        raise ExportError(f"{label}: onnxruntime cannot load it ({str(exc)[:200]})") from None
