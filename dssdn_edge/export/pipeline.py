"""The export pipeline: one trained model in, a verified export folder out.

``export_model`` is the one entry point. It fuses the model (``fuse.py``), converts it (``onnx.py``,
``tflite.py``), calibrates int8 on real features (``calibration.py``), proves the MCU build in the real
TFLM interpreter (``tflm.py``), measures every artifact against the fp32 torch model on real windows and
writes ``manifest.json`` + ``report.md`` (``manifest.py``). Everything is built in a hidden sibling folder
and renamed into place at the end, so an interrupted export leaves nothing behind, and nothing in it
depends on time or randomness, so exporting twice gives byte-identical files.
"""

from __future__ import annotations

import importlib.metadata
import platform
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import runtime
from ..checkpoint import Checkpoint, load_checkpoint
from ..complexity import measure
from ..errors import ExportError
from ..fileio import refuse_overwrite
from ..frontend_c import emit_c
from ..model import SIZES, resolve_name
from ..progress import progress
from ..version import __version__
from . import calibration as calib_mod
from . import cpu_layout, mcu_c, sources
from . import manifest as manifest_mod
from . import onnx as onnx_mod
from . import phone as phone_mod
from . import staging as staging_mod
from . import tflite as tflite_mod
from . import tflm as tflm_mod
from .fuse import (
    MAX_GAIN,
    bias_corrections,
    channel_ranges,
    correct_biases,
    equalizable,
    equalization_gains,
    equalize,
    fuse_model,
)
from .quality import Reference, Runner, build_reference, check_fp32, quality, run_all, torch_fp32
from .sources import EVAL_STRIDE, WindowSet

__all__ = ["ExportResult", "export_model", "resolve_checkpoint", "save_calibration"]

FORMATS = ("onnx", "tflite", "c", "phone")
# Measures an export's mcu/ project on an emulated board: (measurement dict, None) or (None, why not).
FirmwareMeasurer = Callable[[Path], tuple[dict[str, Any] | None, str]]
TFLM_WINDOWS = 16  # TFLM's reference kernels are slow in Python; a few windows prove agreement
TOOLS = (
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxsim",
    "onnxscript",
    "litert-torch",
    "ai-edge-quantizer",
    "ai-edge-litert",
    "tflite-micro",
)


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(file, bytes, runtime, quality) for a short summary table."""
        out = []
        for rel, a in sorted(self.manifest["artifacts"].items()):
            if "runtime" not in a:
                continue
            q = a.get("quality", {})
            acc = q.get("accuracy", {})
            bits = []
            if q.get("max_abs_logit_error") is not None:
                bits.append(f"max|Δ| {q['max_abs_logit_error']:.2g}, top-1 agree {q['top1_agreement']:.1%}")
            if acc.get("value") is not None:
                bits.append(f"acc {acc['value']:.1%} ({acc['drop_points']:+.2f} pt)")
            if "tflm" in a:
                bits.append(f"arena {a['tflm']['arena_bytes'] / 1024:.1f} KiB")
            if q.get("identical_outputs") is not None:  # the generated MCU C, against TFLM on its check windows
                same = "identical to" if q["identical_outputs"] else "DIFFERS from"
                bits.append(f"int8 outputs {same} TFLM on {q['windows']} windows")
            if "generated" in a:
                bits.append(f"arena {a['generated']['arena_bytes'] / 1024:.1f} KiB")
            out.append((rel, f"{a['bytes']:,}", a["runtime"], "; ".join(bits) or "-"))
        return out


# --------------------------------------------------------------------------------------- inputs
def resolve_checkpoint(name_or_checkpoint: str | Path | Checkpoint) -> Checkpoint:
    """A shipped size name ('small', 'dssdn-small', 'resnet'), a .safetensors path, or a loaded checkpoint."""
    if isinstance(name_or_checkpoint, Checkpoint):
        return name_or_checkpoint
    text = str(name_or_checkpoint)
    if text in SIZES or f"dssdn-{text}" in SIZES:
        from ..pretrained import load_pretrained

        return load_pretrained(resolve_name(text))
    return load_checkpoint(Path(text))


def normalise_formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    items = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else [str(f) for f in formats]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise ExportError(
            f"unknown export format {bad[0] if bad else '(none)'!r}; choose from {', '.join(FORMATS)}"
        )
    return tuple(f for f in FORMATS if f in items)


def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "dssdn-edge": __version__}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# -------------------------------------------------------------------------------------------- export
class _Builder:
    """Holds the state of one export while artifacts are produced into ``staging``."""

    def __init__(
        self,
        ckpt: Checkpoint,
        staging: Path,
        int8: bool,
        calib: WindowSet | None,
        ref: Reference,
        measure_firmware: FirmwareMeasurer | None = None,
    ) -> None:
        self.ckpt, self.staging, self.int8, self.calib, self.ref = ckpt, staging, int8, calib, ref
        self.measure_firmware = measure_firmware
        fe = ckpt.frontend_config
        self.shape = (1, fe.channels, fe.segment_frames, fe.n_mels)
        self.example = torch.zeros(self.shape)
        self.fused = fuse_model(ckpt.model, n_bands=ckpt.frontend_config.n_mels)
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.stats = self._load_stats() if calib is not None and calib.kind == "shipped" else None
        self.gains = self._equalize() if int8 else {}
        self.biases = self._bias_corrections() if int8 else {}
        self.fused_int8 = correct_biases(self.fused, self.biases) if int8 else self.fused
        self.fused_run = torch_fp32(self.fused)
        self.graph_macs: dict[str, int] | None = None
        self.bodies: dict[str, bytes] = {}
        self._check_fusion()

    def _equalize(self) -> dict[str, list[float]]:
        """Per-channel equalisation of the export graph for int8 (exact; see fuse.equalize)."""
        if not equalizable(self.fused):
            return {}
        if self.stats is not None:
            gains = self.stats.get("equalization")
            if gains is None:
                path = self.stats["path"]
                raise ExportError(f"{path}: no equalisation gains stored; {calib_mod.REGENERATE}")
        else:
            gains = measure_gains(self.fused, self.calib.windows)
        self.fused = equalize(self.fused, gains)
        return gains

    def _bias_corrections(self) -> dict[str, list[float]]:
        """Empirical bias correction of the int8 graph's weight rounding (see fuse.bias_corrections)."""
        if self.stats is not None:
            found = self.stats.get("bias_correction")
            if found is None:
                raise ExportError(f"{self.stats['path']}: no bias corrections stored; {calib_mod.REGENERATE}")
            return found
        return measure_bias_corrections(self.fused, self.calib.windows)

    def _check_fusion(self) -> None:
        x = np.random.default_rng(1).standard_normal((4, *self.shape[1:])).astype(np.float32)
        err = float(np.abs(torch_fp32(self.ckpt.model)(x) - self.fused_run(x)).max())
        if not err <= 1e-4:
            raise ExportError(f"{self.ckpt.path}: fused export graph differs from the model by {err:.3g}")

    def _load_stats(self) -> dict[str, Any]:
        path = Path(self.calib.details["path"])
        return {"path": path, **calib_mod.load_stats(path, self.ckpt)}

    def name(self, suffix: str) -> str:
        return f"{self.ckpt.name}{suffix}"

    def write(self, rel: str, data: bytes) -> None:
        path = self.staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def measure(self, runner: Runner, label: str) -> dict[str, Any]:
        logits = run_all(runner, self.ref.windows, label) if len(self.ref.windows) else np.zeros((0,))
        return quality(self.ref, logits)

    # -- ONNX ---------------------------------------------------------------------------------------
    def onnx(self) -> None:
        fp32 = onnx_mod.export_fp32(self.fused, self.example)
        rel = self.name(".onnx")
        self.write(rel, fp32)
        runner = onnx_mod.open_onnx(fp32, rel)
        io = {"shape": list(self.shape), "dtype": "float32", "scale": None, "zero_point": None}
        out = {"shape": [1, len(self.ckpt.labels)], "dtype": "float32", "scale": None, "zero_point": None}
        base = {
            "format": "onnx",
            "runtime": "onnxruntime",
            "layout": "NCHW (batch, channels, frames, bands)",
            "input": io,
            "output": out,
            "opset": onnx_mod.OPSET,
        }
        self.artifacts[rel] = {
            **base,
            "precision": "fp32",
            "ops": onnx_mod.op_counts(fp32),
            "conversion_check_max_abs_error": check_fp32(rel, runner, self.fused_run, self.shape),
            "quality": self.measure(runner, "onnx fp32"),
        }
        if not self.int8:
            return
        if self.stats is not None:
            section = self.stats.get("onnx")
            calib_mod.check_fingerprint(self.stats["path"], section, onnx_mod.graph_fingerprint(fp32), "ONNX")
            int8, _ = onnx_mod.quantize_int8(fp32, cache=section["cache"])
        else:
            int8, _ = self._onnx_calibrated(fp32)
        rel8 = self.name(".int8.onnx")
        self.write(rel8, int8)
        self.artifacts[rel8] = {
            **base,
            "precision": "int8 QDQ (per-channel 7-bit-range weights, per-tensor activations)",
            "ops": onnx_mod.op_counts(int8),
            "quality": self.measure(onnx_mod.open_onnx(int8, rel8), "onnx int8"),
        }

    def _onnx_calibrated(self, fp32: bytes) -> tuple[bytes, dict[str, Any]]:
        bar = iter(progress(range(len(self.calib.windows)), "calibration (onnx)"))

        def tick(_n: int) -> None:
            next(bar, None)

        out = onnx_mod.quantize_int8(fp32, windows=self.calib.windows, on_item=tick)
        for _ in bar:
            pass
        return out

    # -- TFLite -------------------------------------------------------------------------------------
    def tflite(self, write_files: bool) -> bytes:
        """Build fp32 (and int8) .tflite; write them if asked; return the model the MCU should run."""
        raw = tflite_mod.convert_fp32(self.fused, self.example)
        fp32 = tflite_mod.compact(raw, strip_names=False)
        self.graph_macs = tflite_mod.graph_macs(fp32)
        self.bodies = {"fp32": fp32}  # the phone file splices the very bytes of the .tflite / .int8.tflite
        if write_files:
            rel = self.name(".tflite")
            self.write(rel, fp32)
            runner = runtime.load(fp32, kind="tflite")
            self.artifacts[rel] = self._tflite_entry(
                fp32,
                "fp32",
                {
                    "conversion_check_max_abs_error": check_fp32(rel, runner, self.fused_run, self.shape),
                    "quality": self.measure(runner, "tflite fp32"),
                },
            )
        if not self.int8:
            return fp32
        int8 = self.int8_tflite()
        self.bodies["int8"] = int8
        if write_files:
            rel8 = self.name(".int8.tflite")
            self.write(rel8, int8)
            self.artifacts[rel8] = self._tflite_entry(
                int8,
                "int8 (full integer: weights, activations, I/O)",
                {"float_tensors": 0, "size": tflite_mod.size_breakdown(int8),
                 "quality": self.measure(runtime.load(int8, kind="tflite"), "tflite int8")},
            )
            packed, how = cpu_layout.pack_pixels(int8)
            rel_p = self.name(cpu_layout.SUFFIX)
            self.write(rel_p, cpu_layout.checked(packed, int8, self.ref.windows, rel_p))
            self.artifacts[rel_p] = self._tflite_entry(
                packed,
                "int8 (full integer; frequency positions packed into channels for CPUs with per-row int8 GEMMs)",
                {"float_tensors": 0, "bit_identical_to": rel8, "packing": how.to_dict(),
                 "quality": self.artifacts[rel8]["quality"]},
            )
        return int8

    def int8_tflite(self) -> bytes:
        """The int8 .tflite: the bias-corrected graph converted, calibrated, planned for TFLM and made lean."""
        raw = tflite_mod.convert_fp32(self.fused_int8, self.example)  # biases corrected for weight rounding
        int8 = tflite_mod.quantize_int8(raw, self._qsvs(raw))
        tflite_mod.check_integer_only(int8, self.name(".int8.tflite"))
        int8, _ = tflm_mod.add_offline_plan(int8)  # TFLM reads it, other runtimes ignore it
        return cpu_layout.checked(tflite_mod.lean(int8), int8, self.ref.windows, "lean int8 .tflite")

    def _qsvs(self, raw: bytes) -> dict[str, Any]:
        if self.stats is not None:
            section = self.stats.get("tflite")
            calib_mod.check_fingerprint(
                self.stats["path"], section, tflite_mod.graph_fingerprint(raw), "TFLite"
            )
            return tflite_mod.qsvs_from_json(section["qsvs"])
        return _calibrate_tflite(raw, self.calib.windows)

    def _tflite_entry(self, data: bytes, precision: str, extra: dict[str, Any]) -> dict[str, Any]:
        i, o = tflite_mod.io_details(data)
        return {
            "format": "tflite",
            "runtime": "LiteRT (ai-edge-litert)",
            "precision": precision,
            "layout": "NHWC (batch, frames, bands, channels)",
            "input": i.to_dict(),
            "output": o.to_dict(),
            "ops": tflite_mod.op_counts(data),
            **extra,
        }

    # -- phone (waveform in) -------------------------------------------------------------------------
    def phone(self) -> None:
        """``<name>.audio.tflite``: the front end as graph ops + the body above + metadata (``phone.py``)."""
        data, entry = phone_mod.export_phone(self.ckpt, self.bodies, self.ref)
        rel = self.name(phone_mod.AUDIO_SUFFIX)
        self.write(rel, data)
        self.artifacts[rel] = entry

    # -- C / TFLM -----------------------------------------------------------------------------------
    def mcu(self, model: bytes) -> None:
        micro = tflm_mod.open_tflm(model, "TFLite Micro")
        litert = runtime.load(model, kind="tflite")
        windows = self.ref.windows[:: max(1, len(self.ref.windows) // TFLM_WINDOWS)][:TFLM_WINDOWS]
        inputs_are_real = len(windows) > 0
        if not inputs_are_real:
            windows = np.random.default_rng(0).standard_normal((4, *self.shape[1:])).astype(np.float32)
        diffs, agree, checked = [], [], []
        for x in progress(windows, "TFLite Micro"):
            q = litert.prepare(x[None])
            y_micro = tflm_mod.invoke(micro, q, "TFLite Micro")
            checked.append((q, y_micro))
            y_lite = litert.invoke(q)
            diffs.append(float(np.abs(y_micro.astype(np.float64) - y_lite.astype(np.float64)).max()))
            agree.append(int(y_micro.argmax()) == int(y_lite.argmax()))
        report = tflm_mod.arena(micro, "TFLite Micro")
        default = tflm_mod.open_tflm(tflm_mod.strip_offline_plan(model), "TFLite Micro")
        tflm_mod.invoke(default, litert.prepare(windows[:1]), "TFLite Micro")
        default_arena = tflm_mod.arena(default, "TFLite Micro").arena_bytes
        tflm_mod.write_c_array(model, self.staging / "mcu")
        i, o = tflite_mod.io_details(model)
        emit_c(self.ckpt.frontend_config, self.staging / "mcu", force=True, normalization=self.ckpt.normalization,
               input_quant=(i.scale, int(i.zero_point or 0)) if i.scale is not None else None, pcm16=True)
        unit = "LSB" if i.scale is not None else "abs"
        self.artifacts["mcu/model_data.cc"] = {
            "format": "c-array (.tflite flatbuffer)",
            "runtime": "TFLite Micro",
            "precision": "int8" if i.scale is not None else "fp32",
            "layout": "NHWC (batch, frames, bands, channels)",
            "input": i.to_dict(),
            "output": o.to_dict(),
            "model_bytes": len(model),
            "tflm": {
                **report.to_dict(),
                "offline_plan": tflm_mod.has_offline_plan(model),
                "arena_bytes_default_planner": default_arena,
                "ops": tflite_mod.op_counts(model),
                "peak": tflm_mod.arena_breakdown(model),
            },
            "quality": {
                "vs": "LiteRT on the same model",
                "windows": len(windows),
                "inputs": "real windows" if inputs_are_real else "pseudo-random (no audio available)",
                f"max_abs_output_diff_{unit}": max(diffs),
                "top1_agreement": float(np.mean(agree)),
            },
        }
        if i.scale is not None:  # the model as generated C, checked against TFLM on the same windows
            self.artifacts[mcu_c.ARTIFACT] = mcu_c.generated_c_entry(
                model, self.staging / "mcu", self.ckpt.name, list(self.ckpt.labels), self.name(".int8.tflite"),
                np.concatenate([q for q, _ in checked]), np.stack([y for _, y in checked]), report.arena_bytes,
                {"input": i.to_dict(), "output": o.to_dict()},
            )
        self.mcu_project()

    def mcu_project(self) -> None:
        """With the generated model in mcu/: the buildable project (classifier, Makefile, README) and, when the
        caller passed a firmware measurer, its flash, RAM and emulated instructions. The measurer is injected
        (the CLI passes ``device.firmware.measure_project``) because building firmware is the device layer's
        job, which sits above export."""
        from ..mcu import project as mcu_project

        mcu_dir = self.staging / "mcu"
        if not (mcu_dir / "dssdn_model.h").is_file():
            return
        mcu_project.write_project(mcu_dir, self.ckpt.name)
        if self.measure_firmware is None:
            measured, why_not = None, "not measured by this export; `dssdn-edge bench --device cortex-m4` measures it"
        else:
            measured, why_not = self.measure_firmware(mcu_dir)
        mcu_project.write_project(mcu_dir, self.ckpt.name, measured, why_not)
        self.artifacts["mcu/dssdn_model.h"] = {
            **self.artifacts.get("mcu/dssdn_model.h", {"format": "c-header"}),
            "firmware_cortex_m4": measured or {"measured": False, "why": why_not},
        }

def measure_gains(fused: nn.Module, windows: np.ndarray) -> dict[str, list[float]]:
    """Equalisation gains from the calibration windows as the int8 model sees them (clipped)."""
    return equalization_gains(channel_ranges(fused, torch.from_numpy(tflite_mod.clip_inputs(windows))))


def measure_bias_corrections(fused: nn.Module, windows: np.ndarray) -> dict[str, list[float]]:
    """Bias corrections from the calibration windows as the int8 model sees them (clipped)."""
    return bias_corrections(fused, torch.from_numpy(tflite_mod.clip_inputs(windows)))


def _calibrate_tflite(raw: bytes, windows: np.ndarray) -> dict[str, Any]:
    bar = progress(range(0, len(windows), 32), "calibration (tflite)")
    it = iter(bar)
    qsvs = tflite_mod.calibrate(raw, windows, chunk=32, on_chunk=lambda _n: next(it, None))
    for _ in it:
        pass
    return qsvs


def export_model(
    name_or_checkpoint: str | Path | Checkpoint,
    out_dir: str | Path,
    formats: Sequence[str] | str = FORMATS,
    int8: bool = True,
    calib_dir: str | Path | None = None,
    eval_dir: str | Path | None = None,
    force: bool = False,
    measure_firmware: FirmwareMeasurer | None = None,
) -> ExportResult:
    """Export a shipped size or a checkpoint into ``out_dir`` (see the module docstring). ``measure_firmware``
    measures the ``mcu/`` project on an emulated board (``device.firmware.measure_project``) for the manifest."""
    formats = normalise_formats(formats)
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise ExportError(f"{out_dir}: already exists (pass --force to replace it)")
    ckpt = resolve_checkpoint(name_or_checkpoint)
    with staging_mod.exclusive(out_dir):
        return _export(ckpt, out_dir, formats, int8, calib_dir, eval_dir, force, measure_firmware)


def int8_tflite(name_or_checkpoint: str | Path | Checkpoint) -> bytes:
    """Only the int8 ``.tflite`` of an export (the MCU model), calibrated from the shipped statistics when
    they exist: no other artifact, no scoring. For tools and tests that need just that model, cheaply."""

    ckpt = resolve_checkpoint(name_or_checkpoint)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _seed()
        stats = calib_mod.stats_path(ckpt) if ckpt.path is not None else None
        if stats is not None and stats.is_file():
            calib = sources.cut(ckpt, sources.Source("calibration", "shipped", path=stats))
        else:
            calib = sources.source_windows(ckpt, "calibration")
        ref = build_reference(ckpt, None, None)
        with tempfile.TemporaryDirectory() as tmp:
            return _Builder(ckpt, Path(tmp), True, calib, ref).int8_tflite()
    finally:
        torch.set_num_threads(threads)


def _export(
    ckpt: Checkpoint, out_dir: Path, formats: tuple[str, ...], int8: bool, calib_dir: str | Path | None,
    eval_dir: str | Path | None, force: bool, measure_firmware: FirmwareMeasurer | None = None,
) -> ExportResult:
    staging = staging_mod.staging_dir(out_dir, force)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and, on a busy small CPU, many times faster
    try:
        _seed()
        calib = sources.source_windows(ckpt, "calibration", calib_dir) if int8 else None
        evalset = sources.source_windows(ckpt, "evaluation", eval_dir)
        ref = build_reference(ckpt, evalset, calib)
        builder = _Builder(ckpt, staging, int8, calib, ref, measure_firmware)
        if "onnx" in formats:
            builder.onnx()
        if "tflite" in formats or "c" in formats or "phone" in formats:
            mcu_model = builder.tflite(write_files="tflite" in formats)
            if "c" in formats:
                builder.mcu(mcu_model)
        if "phone" in formats:
            builder.phone()
        manifest = _manifest(ckpt, calib, builder)
        (staging / "report.md").write_text(
            manifest_mod.render_report(manifest, builder.artifacts, staging), "utf-8"
        )
        manifest_mod.write_manifest(staging, manifest, builder.artifacts)
        manifest_mod.load_manifest(staging)  # a manifest that would not load is never published
        staging_mod.publish(staging, out_dir)
    finally:
        torch.set_num_threads(threads)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out_dir, manifest_mod.load_manifest(out_dir))


def _manifest(ckpt: Checkpoint, calib: WindowSet | None, builder: _Builder) -> dict[str, Any]:
    complexity = measure(ckpt.model, ckpt.frontend_config).to_dict()
    if builder.graph_macs is not None:
        complexity["graph_macs"] = int(sum(builder.graph_macs.values()))
        complexity["graph_macs_by_op"] = builder.graph_macs
        complexity["graph_macs_convention"] = tflite_mod.MAC_CONVENTION
    complexity["export_graph_params"] = int(sum(p.numel() for p in builder.fused.parameters()))
    calibration: dict[str, Any] = {"source": "none (fp32 only)"}
    if calib is not None:
        calibration = {
            "source": calib.source,
            "kind": calib.kind,
            "windows": int(len(calib.windows)) if calib.windows.ndim == 4 else None,
            "method": (
                f"per-tensor ranges on windows clipped to ±{tflite_mod.INPUT_CLIP:g} std "
                "(the int8 input range); "
                f"{tflite_mod.PERCENTILE:g}th percentile for spatial maps (TFLite "
                f"{', '.join(sorted(tflite_mod.PERCENTILE_OPS))}; ONNX "
                f"{', '.join(sorted(onnx_mod.PERCENTILE_NODES))}), min/max for the rest; no moving average"
            ),
        }
        if calib.kind == "shipped":
            calibration["measured_on"] = builder.stats.get("source")
        if builder.biases:
            calibration["bias_correction"] = (
                f"empirical bias correction of {len(builder.biases)} int8 layers: each bias absorbs the mean "
                "output shift its int8 weight rounding causes on the calibration windows (the .int8.tflite only)"
            )
        if builder.gains:
            calibration["equalization"] = (
                f"per-channel gains on {len(builder.gains)} operator outputs (op1/op2 of every block), "
                f"at most {MAX_GAIN:g}x, folded exactly into every exported graph"
            )
    return {
        "name": ckpt.name,
        "created_by": f"dssdn-edge {__version__}",
        "labels": list(ckpt.labels),
        "frontend": ckpt.frontend_config.to_dict(),
        "normalization": ckpt.normalization.to_dict(),
        "model_config": ckpt.model_config.to_dict(),
        "weights_sha256": ckpt.meta.get("weights_sha256"),
        "model_card": {
            "test_accuracy": ckpt.meta.get("metrics", {}).get("test_accuracy"),
            "eval": ckpt.meta.get("metrics", {}).get("eval"),
        },
        "complexity": complexity,
        "calibration": calibration,
        "evaluation": {
            "windows_source": builder.ref.windows_source,
            "torch_fp32_accuracy": builder.ref.accuracy,
            "accuracy_source": builder.ref.accuracy_source,
            "window_stride_frames": EVAL_STRIDE,
        },
        "tools": tool_versions(),
    }


# ----------------------------------------------------------------------------------- calibration stats
def save_calibration(name_or_checkpoint: str | Path | Checkpoint, path: str | Path | None = None,
                     force: bool = False) -> Path:
    """Measure the int8 activation ranges on fold 4 and store them beside the weights (no audio, no
    features), so exports work on a clone without ../shared. Returns the statistics file."""
    ckpt = resolve_checkpoint(name_or_checkpoint)
    target = Path(path) if path is not None else calib_mod.stats_path(ckpt)
    refuse_overwrite(target, force)
    if not calib_mod.dataset_root_available():
        raise ExportError(
            "../shared/data (or $DSSDN_DATA) is missing: calibration statistics are measured on "
            "fold 4 of ESC-50"
        )
    _seed()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _save_calibration(ckpt, target)
    finally:
        torch.set_num_threads(threads)


def _save_calibration(ckpt: Checkpoint, target: Path) -> Path:
    calib = sources.fold4_windows(ckpt)
    fe = ckpt.frontend_config
    example = torch.zeros(1, fe.channels, fe.segment_frames, fe.n_mels)
    fused = fuse_model(ckpt.model, n_bands=ckpt.frontend_config.n_mels)
    gains = measure_gains(fused, calib.windows) if equalizable(fused) else None
    if gains:
        equalize(fused, gains)
    fp32_onnx = onnx_mod.export_fp32(fused, example)
    biases = measure_bias_corrections(fused, calib.windows)
    raw = tflite_mod.convert_fp32(correct_biases(fused, biases), example)
    qsvs = _calibrate_tflite(raw, calib.windows)
    _, cache = onnx_mod.quantize_int8(fp32_onnx, windows=calib.windows)
    return calib_mod.save_stats(
        target,
        ckpt,
        calib.source,
        equalization=gains,
        bias_correction=biases,
        tflite={"graph": tflite_mod.graph_fingerprint(raw), "qsvs": tflite_mod.qsvs_to_json(qsvs)},
        onnx={"graph": onnx_mod.graph_fingerprint(fp32_onnx), "cache": cache},
    )
