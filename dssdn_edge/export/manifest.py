"""``manifest.json``: what an export folder contains, how it was made, and the SHA-256 of every file.

A device or a later script trusts a model only through its manifest: labels, front end and normalisation
come from it, and every file is checked against its hash so a truncated copy or a file swapped in from
another export is caught before it produces a wrong answer. The manifest is written with sorted keys and
no timestamps, so the same inputs give a byte-identical file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..runtime import manifest
from ..runtime.manifest import FORMAT, MANIFEST, list_files, sha256_file


def file_entry(folder: Path, rel: str) -> dict[str, Any]:
    path = folder / rel
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_manifest(folder: Path, manifest: dict[str, Any], artifacts: dict[str, dict[str, Any]]) -> Path:
    """Write ``manifest.json``: ``manifest`` plus an ``artifacts`` entry (hash, size and the given
    details) for every file in ``folder``; files without details are listed with their kind."""
    folder = Path(folder)
    entries = {}
    for rel in list_files(folder):
        entries[rel] = {**artifacts.get(rel, {"format": _kind(rel)}), **file_entry(folder, rel)}
    data = {**manifest, "format": FORMAT, "artifacts": entries}
    path = folder / MANIFEST
    path.write_text(dumps(data), encoding="utf-8")
    return path


def _kind(rel: str) -> str:
    suffix = Path(rel).suffix
    return {".c": "c-source", ".cc": "c++-source", ".h": "c-header", ".md": "markdown", ".json": "json"}.get(
        suffix, suffix.lstrip(".") or "file"
    )


def load_manifest(folder: str | Path, verify: bool = True) -> dict[str, Any]:
    """``runtime.manifest.load_manifest`` (schema, and with ``verify`` every file's SHA-256 and size, no
    unlisted file) with its refusal as an ``ExportError`` naming the offending file."""
    try:
        return manifest.load_manifest(folder, verify)
    except manifest.ManifestError as exc:
        raise ExportError(str(exc)) from None


# ----------------------------------------------------------------------------------------- report
KIB = 1024


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


NO_AUDIO = "none (no audio available)"  # the evaluation's windows_source when nothing could be measured


def _quality_sentence(ev: dict[str, Any]) -> str:
    if ev["windows_source"] == NO_AUDIO:
        return (
            "No audio was available (no ../shared/data, no --calib or --eval folder), so the artifacts could not "
            f"be measured against torch here; the fp32 accuracy is the model card's: {_pct(ev['torch_fp32_accuracy'])}."
        )
    return (
        f"Logit errors and top-1 agreement on {ev['windows_source']}; clip accuracy = mean of window logits per "
        f"clip (stride {ev['window_stride_frames']} frames), source: {ev['accuracy_source']}. fp32 torch "
        f"accuracy: {_pct(ev['torch_fp32_accuracy'])}."
    )


def render_report(manifest: dict[str, Any], artifacts: dict[str, dict[str, Any]], folder: Path) -> str:
    """report.md: the manifest for people (sizes, op counts, arena and what dominates it, quality).
    Sizes are those of the files in ``folder``; the C array's row gives the flatbuffer it holds."""
    m = manifest
    ev = m["evaluation"]
    c = m["complexity"]
    fe = m["frontend"]
    lines = [
        f"# Export report: {m['name']}",
        "",
        f"Created by {m['created_by']}; weights sha256 `{str(m.get('weights_sha256'))[:16]}…`; "
        f"{len(m['labels'])} classes. Front end: {fe['sample_rate']} Hz, n_fft {fe['n_fft']}, hop "
        f"{fe['hop_length']}, {fe['n_mels']} mel bands, delta width {fe['delta_width']}; one input window = "
        f"{c['input_shape'][2]} frames × {c['input_shape'][3]} bands × {c['input_shape'][1]} channels "
        "(normalised with the stored mean/std).",
        "",
        "## Artifacts and quality (vs the fp32 torch model)",
        "",
        _quality_sentence(ev),
        "",
        "| file | bytes | precision | runtime | input | max abs Δ | mean abs Δ | top-1 agree | clip acc "
        "| drop (pt) |",
        "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rel, a in sorted(artifacts.items()):
        if "runtime" not in a:
            continue
        q = a.get("quality", {})
        acc = q.get("accuracy", {}) or {}
        i = a["input"]
        inp = f"{i['dtype']} {i['shape']}" + (
            f" s={i['scale']:.4g} zp={i['zero_point']}" if i.get("scale") else ""
        )
        max_err = q.get(
            "max_abs_logit_error", q.get("max_abs_output_diff_LSB", q.get("max_abs_output_diff_abs"))
        )
        lines.append(
            f"| {rel} | {a.get('model_bytes') or (folder / rel).stat().st_size:,} | "
            f"{a.get('precision', '-')} | {a['runtime']} | {inp} | {_fmt(max_err)} | "
            f"{_fmt(q.get('mean_abs_logit_error'))} | {_pct(q.get('top1_agreement'))} | "
            f"{_pct(acc.get('value'))} | {_fmt(acc.get('drop_points'), '+.2f')} |"
        )
    lines += [
        "",
        "The `mcu/model_data.cc` row compares TFLite Micro with LiteRT on the same int8 model "
        "(difference in output LSB); the `mcu/dssdn_model.c` row, the generated C with TFLite Micro on the same "
        "int8 inputs (0 LSB: bit-exact).",
        "",
        "## Complexity",
        "",
        f"- parameters (BN folded): {c['params']:,}; "
        f"in the export graph: {c.get('export_graph_params', 0):,}",
        f"- MACs per 1-s window, DCASE convention: {c['macs']:,} ({c['convention']})",
    ]
    if "graph_macs" in c:
        by_op = ", ".join(f"{k} {v:,}" for k, v in c["graph_macs_by_op"].items() if v)
        lines += [
            f"- MACs, full exported graph: {c['graph_macs']:,} ({by_op})",
            f"  - convention: {c['graph_macs_convention']}",
        ]
    lines += ["", "## Graph ops", ""]
    for rel, a in sorted(artifacts.items()):
        if "ops" in a:
            total = sum(a["ops"].values())
            lines.append(f"- {rel} ({total} ops): " + ", ".join(f"{k} {v}" for k, v in a["ops"].items()))
    mcu = artifacts.get("mcu/model_data.cc")
    if mcu is not None:
        lines += ["", "## TensorFlow Lite for Microcontrollers", ""] + _arena_text(mcu)
    gen = artifacts.get("mcu/dssdn_model.c")
    if gen is not None:
        lines += ["", "## Generated C (mcu/dssdn_model.c)", ""] + _generated_text(gen)
    fw = (artifacts.get("mcu/dssdn_model.h") or {}).get("firmware_cortex_m4")
    if fw is not None:
        from ..mcu.project import render_measured

        lines += ["", "## Generated C on an emulated Cortex-M4 (mcu/)", "",
                  render_measured(fw if fw.get("measured") else None, fw.get("why", ""))]
    for rel, a in sorted(artifacts.items()):
        if "choices" in a:
            lines += ["", f"## Phone file (waveform in): {rel}", ""] + _phone_text(a)
    cal = m["calibration"]
    lines += ["", "## Calibration", "", f"- source: {cal['source']}"]
    if cal.get("measured_on"):
        lines.append(f"- the shipped statistics were measured on: {cal['measured_on']}")
    if cal.get("method"):
        lines.append(f"- method: {cal['method']}")
    lines += ["", "## Tools", "", ", ".join(f"{k} {v}" for k, v in sorted(m["tools"].items())), ""]
    return "\n".join(lines)


def _phone_text(a: dict[str, Any]) -> list[str]:
    """The waveform-in file: what is inside, its input length and why, the in-graph features vs numpy, both
    body choices' numbers, the comparison with the int8 .tflite."""
    md, chk = a["metadata"], a["frontend_check"]
    length = a.get("input_length") or {}
    rate = md["audio_properties"]["sample_rate"]
    out = [
        f"- input float32 {a['input']['shape']} (mono audio at {rate} Hz"
        + (f", {length['samples']} samples = {length['seconds']:.3f} s: {length['meaning']}" if length else "")
        + f"), output float32 {a['output']['shape']} softmax scores; body: {a['body']}",
    ]
    for key in ("probe", "real"):
        c = chk.get(key)
        if not c:
            continue
        inner, edge, ce = c["interior_windows_features"], c["clip_edge_windows_features"], c["clip_edge_delta"]
        out.append(
            f"- in-graph features vs numpy on {c['signal']} ({c['windows']} windows: {c['interior_windows']} interior, "
            f"{c['clip_edge_windows']} reaching a clip edge): log-mel of every input frame max |Δ| "
            f"{c['logmel_every_input_frame']['max_abs_within_60db']:.2g} log10 units within 60 dB of each frame's "
            f"peak ({c['logmel_every_input_frame']['max_abs']:.2g} overall); the window's features vs the window cut "
            f"from the whole clip's: interior windows log-mel {inner['logmel_within_60db']:.2g}, delta "
            f"{inner['delta_within_60db']:.2g}; clip-edge windows log-mel {edge['logmel_within_60db']:.2g}, delta "
            f"{edge['delta_within_60db_except_clip_edge_frames']:.2g} away from the clip's first/last frames "
            f"(tolerance {chk['tolerance']:g}, delta {chk['delta_tolerance']:g}: "
            f"{'within' if c['within_tolerance'] else 'NOT within'}); "
            f"{ce['what']}: {ce['frames']} frames, max |Δ| {_fmt(ce['max_abs'], '.3g')} "
            f"(mean {_fmt(ce['mean_abs'], '.3g')}; mean |delta| there {_fmt(ce['mean_abs_offline_delta'], '.3g')})"
        )
    out += [
        f"- TFLite Model Metadata: name {md['name']!r}, version {md['version']!r}, AudioProperties "
        f"{rate} Hz × {md['audio_properties']['channels']} channel, "
        f"{md['labels_file']} ({md['labels_file_type']}), min parser {md['min_parser_version']}; "
        f"licence: {md['licence']}",
        f"- metadata written by {md['writer']}",
        f"- body choice: {a['body_precision']} ({a['choice_rule']})",
        "",
        "| body | bytes | clip acc | torch fp32 (features-in windows) | top-1 agree vs torch | top-1 agree vs "
        "features-in (interior / clip-edge windows) | features-in file acc | phone − features-in (pt) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, c in a["choices"].items():
        q, fi = c.get("quality", {}), c.get("features_in", {})
        acc = q.get("accuracy", {}) or {}
        out.append(
            f"| {name} | {c['bytes']:,} | {_pct(acc.get('value'))} | {_pct(acc.get('torch_fp32'))} | "
            f"{_pct(q.get('top1_agreement'))} | {_pct(fi.get('top1_agreement_same_windows'))} "
            f"({_pct(fi.get('top1_agreement_interior_windows'))} / "
            f"{_pct(fi.get('top1_agreement_clip_edge_windows'))}) | "
            f"{_pct(fi.get('accuracy'))} | {_fmt(fi.get('phone_minus_features_in_points'), '+.2f')} |"
        )
    out += [
        "",
        "Windows: the fold-5 windows the features-in files are scored on; the phone file gets each one's audio with "
        "its context (zeros outside the clip), so its features are the features-in windows' except the delta of a "
        "clip's first and last frames (clip-edge windows)."
        if any("quality" in c for c in a["choices"].values())
        else "Not measured: no evaluation audio was available, so the int8 body is kept when it exists.",
    ]
    vs = a.get("vs_int8_tflite")
    if vs:
        out.append(
            f"- phone file {_pct(vs['phone_accuracy'])} vs int8 .tflite {_pct(vs['int8_tflite_accuracy'])}: "
            f"{vs['difference_points']:+.2f} pt ({'within' if vs['within_0_5_points'] else 'NOT within'} 0.5 pt)"
        )
    if "size_over_int8_tflite_bytes" in a:
        out.append(f"- size over the int8 .tflite: {a['size_over_int8_tflite_bytes']:,} bytes")
    return out


def _generated_text(gen: dict[str, Any]) -> list[str]:
    g, q = gen["generated"], gen["quality"]
    check = (f"identical int8 outputs to TFLite Micro on {q['windows']} check windows" if q.get("checked")
             else f"not compared with TFLite Micro ({q.get('reason', 'no compiler')})")
    return [
        f"- activation arena: {g['arena_bytes']:,} bytes ({g['arena_bytes'] / KIB:.1f} KiB); TFLite Micro's "
        f"arena for the same model: {g['tflm_arena_bytes']:,} bytes ({g['tflm_arena_bytes'] / KIB:.1f} KiB)",
        f"- constants (weights, biases, per-channel multipliers and shifts, tables, op parameters): "
        f"{g['const_bytes']:,} bytes for {g['weights']:,} weights",
        f"- {check}",
    ]


def _arena_text(mcu: dict[str, Any]) -> list[str]:
    t = mcu["tflm"]
    peak = t["peak"]
    tensors = ", ".join(f"{p['shape']} ({p['bytes']:,} B)" for p in peak["peak_tensors"])
    over = t["arena_bytes"] - 128 * KIB
    out = [
        f"- model (flatbuffer): {mcu['model_bytes']:,} bytes ({mcu['model_bytes'] / KIB:.1f} KiB)",
        f"- arena measured by TFLM's recording allocator: {t['arena_bytes']:,} bytes "
        f"({t['arena_bytes'] / KIB:.1f} KiB) = {t['arena_head_bytes']:,} activations "
        f"(planned, non-persistent) + {t['arena_tail_bytes']:,} persistent (per-channel "
        "multipliers/shifts, tensor and node structs)",
    ]
    if t.get("offline_plan"):
        out.append(
            f"- the model carries an offline memory plan (`OfflineMemoryAllocation` metadata, read by TFLM, "
            f"ignored elsewhere); TFLM's default greedy planner would need "
            f"{t['arena_bytes_default_planner']:,} bytes ({t['arena_bytes_default_planner'] / KIB:.1f} KiB)"
        )
    out.append(
        f"- what dominates: the activations alive together at op {peak['peak_op']}: {tensors}; their sum "
        f"{peak['peak_live_bytes']:,} bytes is the lower bound of the planned part "
        f"(planned now: {t['arena_head_bytes']:,})"
    )
    if over > 0:
        out.append(
            f"- to go below 128 KiB the arena must lose {over:,} bytes, i.e. the largest early feature maps "
            "must shrink: fewer channels in the first layers (the maps scale with the stem width), or "
            "running the first block on time tiles (streaming it frame group by frame group, which needs a "
            "custom runtime loop rather than one TFLM invoke); the persistent part shrinks only with fewer "
            "output channels overall"
        )
    else:
        out.append("- the arena is already below 128 KiB.")
    out.append(f"- ops: {', '.join(f'{k} {v}' for k, v in t['ops'].items())}")
    return out
