"""Compile generated model C on the host (``cc``) and run it through ctypes, for tests and export checks.

One shared library can hold several generated models (each with its own ``symbol``); a small harness per
model adds ``<symbol>_run_batch`` so a batch of windows costs one foreign call. Builds are cached by the
hash of their sources in the folder the caller names.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ExportError
from .generate import KERNEL_FILES, KERNEL_SOURCES

CFLAGS = ("-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")

_HARNESS = """#include <string.h>
#include "{symbol}.h"

/* n samples; sample i is all inputs of the model back to back (input 0, input 1, ...) */
void {symbol}_run_batch(const int8_t *in, int8_t *out, int n)
{{
    static const long sizes[] = {{{sizes}}};
    long per = 0;
    for (int k = 0; k < {macro}_INPUTS; ++k) {{
        per += sizes[k];
    }}
    for (int i = 0; i < n; ++i) {{
        const int8_t *src = in + (long)i * per;
        for (int k = 0; k < {macro}_INPUTS; ++k) {{
            memcpy({symbol}_input_at(k), src, (size_t)sizes[k]);
            src += sizes[k];
        }}
        memcpy(out + (long)i * {macro}_OUT_CLASSES, {symbol}_invoke(), {macro}_OUT_CLASSES);
    }}
}}
"""


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ExportError("no C compiler found to build the generated model on the host (install gcc)")
    return cc


def _header_ints(text: str, macro: str) -> dict[str, int]:
    vals = {}
    for key in ("IN_FRAMES", "IN_BANDS", "IN_CHANNELS", "OUT_CLASSES", "ARENA_BYTES"):
        m = re.search(rf"#define {macro}_{key} \(?(-?\d+)\)?", text)
        if m is None:
            raise ExportError(f"{macro.lower()}.h: no {macro}_{key}")
        vals[key] = int(m.group(1))
    return vals


def build_library(c_dir: Path, symbols: Sequence[str], build_dir: Path, defines: Sequence[str] = ()) -> Path:
    """Compile the kernels and the models ``symbols`` found in ``c_dir`` into one shared library."""
    # absolute: the unity file that #includes the models is written in another folder than the caller's cwd
    c_dir, build_dir = Path(c_dir).resolve(), Path(build_dir).resolve()
    kernels = [c_dir / n for n in KERNEL_SOURCES]
    sources = [*kernels, *(c_dir / f"{sym}.c" for sym in symbols)]
    harness = {}
    for sym in symbols:
        text = (c_dir / f"{sym}.h").read_text()
        sizes = re.findall(rf"#define {sym.upper()}_IN\d+_BYTES (\d+)", text)
        harness[f"{sym}_harness.c"] = _HARNESS.format(symbol=sym, macro=sym.upper(), sizes=", ".join(sizes))
    h = hashlib.sha256()
    headers = [c_dir / n for n in KERNEL_FILES if n.endswith(".h")]
    for path in [*sources, *headers, *(c_dir / f"{sym}.h" for sym in symbols)]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    for name, text in sorted(harness.items()):
        h.update(name.encode() + text.encode())
    h.update(" ".join([*CFLAGS, *defines]).encode())
    key = h.hexdigest()[:16]
    lib = build_dir / f"libdssdn_{key}.so"
    if lib.exists():
        return lib
    build_dir.mkdir(parents=True, exist_ok=True)
    work = build_dir / f".build_{key}_{os.getpid()}"
    work.mkdir(exist_ok=True)
    try:
        # one translation unit for all models: one compiler process, however many models (names are prefixed)
        unity = work / "models_unity.c"
        unity.write_text("".join(f'#include "{c_dir / f"{sym}.c"}"\n' for sym in symbols)
                         + "".join(harness[f"{sym}_harness.c"] for sym in symbols))
        tmp = work / lib.name
        cmd = [compiler(), *CFLAGS, *(f"-D{d}" for d in defines), f"-I{c_dir}", *map(str, kernels),
               str(unity), "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            lines = res.stderr.strip().splitlines() or ["(no output)"]
            first = next((ln for ln in lines if "error" in ln), lines[0])
            raise ExportError(f"{c_dir}: the generated C does not compile on the host: {first}")
        tmp.replace(lib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lib


class HostModel:
    """A generated model compiled for this machine: raw int8 NHWC input(s) → raw int8 output(s)."""

    def __init__(self, c_dir: Path, build_dir: Path | None = None, symbol: str = "dssdn_model",
                 library: Path | None = None, defines: Sequence[str] = ()) -> None:
        c_dir = Path(c_dir)
        self.symbol = symbol
        info = _header_ints((c_dir / f"{symbol}.h").read_text(), symbol.upper())
        self.in_shape = (1, info["IN_FRAMES"], info["IN_BANDS"], info["IN_CHANNELS"])
        header = (c_dir / f"{symbol}.h").read_text()
        self.in_sizes = [int(v) for v in re.findall(rf"#define {symbol.upper()}_IN\d+_BYTES (\d+)", header)]
        self.out_size = info["OUT_CLASSES"]
        self.arena_bytes = info["ARENA_BYTES"]
        if library is None:
            library = build_library(c_dir, [symbol], Path(build_dir or c_dir / "build" / "host"), defines)
        self._lib = ctypes.CDLL(str(library))
        self._run = getattr(self._lib, f"{symbol}_run_batch")
        self._run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        self._run.restype = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: int8, one window of the model's input shape or a batch of them (leading axis). A model with
        several inputs takes each sample as all its inputs flattened back to back."""
        x = np.ascontiguousarray(x, np.int8)
        per = sum(self.in_sizes)
        if x.size % per:
            raise ExportError(f"{self.symbol}: input of {x.size} values is not a multiple of {self.in_shape}")
        n = x.size // per
        out = np.empty((n, self.out_size), np.int8)
        self._run(x.ctypes.data, out.ctypes.data, n)
        return out
