"""``manifest.json``: reading and checking an export folder before anything runs from it.

Why here, in the runtime layer and self-contained (stdlib only): the device's benchmark runner reads the
same manifest with the same checks as ``predict`` and ``bench`` on the host. ``manifest_problem`` is the one
validator (schema, types, label count = model output size, sane front-end values); ``load_manifest`` is the
strict reader of a whole export (every listed file with its SHA-256 and size, no unlisted file), and
``read_manifest`` the device's (the listed files' SHA-256). Both raise ``ManifestError``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1


class ManifestError(ValueError):
    """The folder is not a usable export; the message names the file and the problem."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


FRONTEND_KEYS = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "log_eps", "delta_width",
                 "split_band", "segment_seconds")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def frontend_problem(fe: Any) -> str | None:
    """Why a manifest's ``frontend`` cannot describe a working front end, or None when it can."""
    if not isinstance(fe, dict):
        return "'frontend' is not an object"
    missing = [k for k in FRONTEND_KEYS if k not in fe]
    if missing:
        return f"'frontend' lacks {', '.join(missing)}"
    bad = [k for k in FRONTEND_KEYS if not _is_num(fe[k])]
    if bad:
        return f"'frontend' value {bad[0]} is not a finite number ({fe[bad[0]]!r})"
    ints = ("sample_rate", "n_fft", "hop_length", "n_mels", "delta_width", "split_band")
    if any(float(fe[k]) != int(fe[k]) for k in ints):
        return f"'frontend' needs whole numbers for {', '.join(ints)}"
    sr, n_fft, hop, n_mels = int(fe["sample_rate"]), int(fe["n_fft"]), int(fe["hop_length"]), int(fe["n_mels"])
    checks = [
        (1000 <= sr <= 384000, f"sample_rate {sr} is not 1000..384000"),
        (n_fft >= 16 and n_fft & (n_fft - 1) == 0, f"n_fft {n_fft} is not a power of two >= 16"),
        (0 < hop <= n_fft, f"hop_length {hop} is not in 1..n_fft"),
        (1 <= n_mels <= 1024, f"n_mels {n_mels} is not in 1..1024"),
        (0 <= fe["fmin"] < fe["fmax"] <= sr / 2,
         f"need 0 <= fmin < fmax <= sample_rate/2, got {fe['fmin']}..{fe['fmax']}"),
        (fe["log_eps"] > 0, f"log_eps {fe['log_eps']} is not > 0"),
        (fe["delta_width"] == 0 or (fe["delta_width"] >= 3 and fe["delta_width"] % 2 == 1),
         f"delta_width {fe['delta_width']} is not 0 or an odd number >= 3"),
        (0 < fe["split_band"] < n_mels, f"split_band {fe['split_band']} is not in 1..n_mels-1"),
        (0 < fe["segment_seconds"] <= 60 and fe["segment_seconds"] * sr >= n_fft,
         f"segment_seconds {fe['segment_seconds']} is not a window of at least n_fft samples (and <= 60 s)"),
    ]
    for ok, why in checks:
        if not ok:
            return f"'frontend' {why}"
    return None


def manifest_problem(manifest: Any) -> str | None:
    """The one manifest validator (``predict``, ``bench`` and this runner use it): schema, types, label count
    = model output size, sane front-end values. None when the manifest is usable."""
    if not isinstance(manifest, dict):
        return "not a JSON object"
    for key in ("labels", "frontend", "normalization", "artifacts"):
        if key not in manifest:
            return f"lacks {key!r}"
    labels = manifest["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        return "'labels' must be a list of at least 2 non-empty strings"
    bad = next((x for x in labels if not x.isprintable()), None)
    if bad is not None:  # a newline in a label would forge an extra output line
        return f"label {bad.encode('unicode_escape').decode('ascii')!r} holds a control or non-printable character"
    if len(set(labels)) != len(labels):
        return f"label {next(x for x in labels if labels.count(x) > 1)!r} appears twice"
    why = frontend_problem(manifest["frontend"])
    if why:
        return why
    fe = manifest["frontend"]
    channels, n_mels = (2 if fe["delta_width"] else 1), int(fe["n_mels"])
    norm = manifest["normalization"]
    if not isinstance(norm, dict) or "mean" not in norm or "std" not in norm:
        return "'normalization' needs 'mean' and 'std'"
    for key in ("mean", "std"):
        rows = norm[key]
        if (not isinstance(rows, list) or len(rows) != channels
                or any(not isinstance(r, list) or len(r) != n_mels for r in rows)):
            return f"'normalization' {key} is not {channels} x {n_mels} numbers (channels x mel bands)"
        if not all(_is_num(v) for r in rows for v in r):
            return f"'normalization' {key} holds a value that is not a finite number"
    if any(v <= 0 for r in norm["std"] for v in r):
        return "'normalization' std holds a value <= 0"
    arts = manifest["artifacts"]
    if not isinstance(arts, dict) or not arts:
        return "'artifacts' is empty or not an object"
    for rel, art in arts.items():
        if not isinstance(art, dict):
            return f"artifact {rel!r} is not an object"
        if os.path.isabs(rel) or rel.startswith("~") or ".." in rel.replace("\\", "/").split("/"):
            return f"artifact {rel!r} is not a name inside the export folder (absolute or leads outside it)"
        digest = art.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            return f"artifact {rel!r} has no sha256"
        out = art.get("output")
        if isinstance(out, dict) and isinstance(out.get("shape"), list) and out["shape"]:
            if out["shape"][-1] != len(labels):
                return f"artifact {rel!r} has {out['shape'][-1]} outputs but there are {len(labels)} labels"
    return None


def read_manifest(export_dir: str, verify: bool = True) -> dict[str, Any]:
    """Read manifest.json, validate it and check every listed artifact's size and SHA-256 before anything runs."""
    path = os.path.join(export_dir, MANIFEST)
    if os.path.isfile(export_dir):
        raise ManifestError(f"{export_dir}: is a file; give the export folder that holds {MANIFEST}")
    if not os.path.isdir(export_dir):
        raise ManifestError(f"{export_dir}: export folder not found")
    if not os.path.isfile(path):
        raise ManifestError(f"{export_dir}: no {MANIFEST} (not an export folder; run dssdn-edge export)")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    why = manifest_problem(manifest)
    if why:
        raise ManifestError(f"{path}: invalid manifest: {why}")
    if verify:
        top = os.path.realpath(export_dir)
        for rel, art in manifest["artifacts"].items():
            file = os.path.join(export_dir, rel)
            if not os.path.realpath(file).startswith(top + os.sep):  # a symbolic link out of the folder
                raise ManifestError(f"{file}: listed in {MANIFEST} but leads outside {export_dir}; refused")
            if not os.path.isfile(file):
                raise ManifestError(f"{file}: listed in {MANIFEST} but missing")
            digest = sha256_file(file)
            if digest != art.get("sha256"):
                want = str(art.get("sha256"))[:12]
                raise ManifestError(
                    f"{file}: sha256 {digest[:12]}… does not match {MANIFEST} ({want}…);"
                    " the export was modified or copied incompletely"
                )
    return manifest


BUILD_PRODUCTS = "mcu/build/"  # what `make -C mcu` writes: not part of the export


def list_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every regular file under ``folder`` except the manifest and ``make -C mcu``'s
    build folder, sorted."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and not rel.startswith(BUILD_PRODUCTS):
            out.append(rel)
    return out



def load_manifest(folder: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read ``folder/manifest.json``; with ``verify`` every listed file must exist with its SHA-256 and
    size, and no unlisted file may be present. Raises ``ManifestError`` naming the offending file."""
    folder = Path(folder)
    path = folder / MANIFEST
    if folder.is_file():
        raise ManifestError(f"{folder}: is a file; give the export folder that holds {MANIFEST}")
    if not path.is_file():
        raise ManifestError(f"{path}: manifest missing (not an export folder, or the export was interrupted)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("artifacts"), dict)
    ):
        raise ManifestError(f"{path}: not a format-{FORMAT} dssdn-edge manifest")
    why = manifest_problem(data)
    if why:
        raise ManifestError(f"{path}: invalid manifest: {why}")
    if verify:
        verify_files(folder, data["artifacts"])
    return data


def verify_files(folder: Path, artifacts: dict[str, dict[str, Any]]) -> None:
    top = folder.resolve()
    for rel, entry in sorted(artifacts.items()):
        target = folder / rel
        if top not in target.resolve().parents:  # never a file outside the export (a link, a ../ name)
            raise ManifestError(f"{target}: listed in {MANIFEST} but leads outside {folder}; refused")
        if not target.is_file():
            raise ManifestError(f"{target}: listed in {MANIFEST} but missing")
        if not entry.get("sha256"):
            raise ManifestError(f"{target}: {MANIFEST} gives no sha256 for it (damaged manifest)")
        if target.stat().st_size != entry.get("bytes") or sha256_file(target) != entry.get("sha256"):
            raise ManifestError(f"{target}: does not match its sha256 in {MANIFEST} (modified or truncated)")
    extra = [rel for rel in list_files(folder) if rel not in artifacts and not Path(rel).name.startswith(".")]
    if extra:
        raise ManifestError(f"{folder / extra[0]}: not listed in {MANIFEST} (not part of this export)")


# ------------------------------------------------------------------------------- reading entries
def artifact_format(rel: str, art: dict[str, Any]) -> str:
    """'tflite' / 'onnx' / other, from the file name first (robust to wording of the 'format' field)."""
    for ext in ("tflite", "onnx"):
        if rel.endswith("." + ext):
            return ext
    return str(art.get("format", "")).lower()


def precision_of(rel: str, art: dict[str, Any]) -> str:
    """'int8' or 'fp32': the manifest's precision ('int8 QDQ' has float I/O), else I/O dtype, else name;
    'audio-in int8' / 'audio-in fp32' for a waveform-in file, so tables never mix it with the features-in ones."""
    if rel.endswith(".audio.tflite"):
        return f"audio-in {art.get('body_precision') or 'fp32'}"
    declared = str(art.get("precision", "")).split(" ")[0].lower()
    if declared in ("int8", "fp32"):
        return declared
    dtype = str((art.get("input") or {}).get("dtype", ""))
    return "int8" if "int8" in dtype or "int8" in rel else "fp32"
