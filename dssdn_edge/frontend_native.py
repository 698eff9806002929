"""The C front end (csrc/dssdn_features.c on the log-mel twin) as the production front end of the host and the Pi.

One implementation on every target: the sources ``mcu/`` ships are compiled here into a shared library and
called through ``ctypes`` (``runtime.cfeatures``, which the device runs too; no CPython extension, so the
compiler that builds firmware builds this). numpy's ``Frontend`` stays the reference the tests hold the C
to; where no compiler exists, everything falls back to it with one line on stderr.

- Built at first use into the user's cache directory (``platformdirs.user_cache_dir("dssdn-edge")``, or
  ``$DSSDN_CACHE``), under a key hashing the generated sources, the compiler's identity and the flags: a new
  config, source or compiler is a new build, never a stale library. The build writes under a temporary name
  and renames, so concurrent processes never load half a file.
- Flags (``library_flags``): a host build is for the CPU it runs on (``-march=native``: AVX-512 / AVX2 vectors
  instead of SSE2, about 14 % off the C time on an AVX-512 EPYC), so what ``native`` expanded to on this CPU is
  part of the key (a cache folder shared between machines never hands one CPU's build to another). Every build
  has ``-ffp-contract=off``: no multiply-add is fused, each product rounds as numpy's does, so the features
  stay bit-identical to the SSE2 build's. A cross-build for a Pi targets the aarch64 baseline (NEON is part of
  it), so one file runs on every Pi from the 3 on.
- ``NativeFrontend`` is a ``Frontend``: ``features`` and ``stream`` give the same arrays (float32,
  unnormalised) from C, and also the int8 rows of the model input (normalised and quantised in C, NHWC order):
  what makes audio → label cheap, with no per-window normalise / quantise / transpose in numpy.
- ``make_frontend(config, "auto" | "c" | "numpy")`` is the one place that chooses (default ``$DSSDN_FRONTEND``,
  else auto). ``build_library(cfg, cc=AARCH64_CC)`` cross-builds the same library for a Pi.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DssdnError
from .frontend import Frontend, FrontendConfig, Normalization
from .frontend_c import CSRC, FEATURES_SOURCES, STATIC_SOURCES, TABLES_HEADER, render_tables_header
from .runtime.cfeatures import FeatureLibrary, FeatureStream, LibraryError

FRONTENDS = ("auto", "c", "numpy")
ENV_FRONTEND = "DSSDN_FRONTEND"
ENV_CACHE = "DSSDN_CACHE"
LIB_CFLAGS = ("-O2", "-std=c99", "-ffp-contract=off", "-fPIC", "-shared", "-Wall", "-Wextra")
NATIVE_FLAG = "-march=native"  # host builds only: the library is built on the machine that loads it
# Where the compiler has it: the library's own calls and tables are not interposable, so -fPIC costs no GOT
# loads and calls between its functions are direct (5 % of the C time on x86-64, measured).
OPTIONAL_FLAGS = ("-fno-semantic-interposition",)
LIB_NAME = "libdssdn_features.so"
AARCH64_CC = "aarch64-linux-gnu-gcc"


class NativeUnavailable(DssdnError):
    """The C front end cannot be built or loaded here (no compiler, a failed build, a foreign library)."""


def cache_root() -> Path:
    """Where built libraries live: ``$DSSDN_CACHE`` or the platform's user cache directory."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dssdn-edge"))


# ------------------------------------------------------------------------------------------- build
def library_sources(cfg: FrontendConfig) -> dict[str, str]:
    """The generated tables and the static C sources, as ``emit_c`` writes them into ``mcu/``."""
    out = {TABLES_HEADER: render_tables_header(cfg)}
    for name in (*STATIC_SOURCES, *FEATURES_SOURCES):
        out[name] = (CSRC / name).read_text(encoding="utf-8")
    return out


@functools.lru_cache(maxsize=8)
def compiler_identity(cc: str) -> str:
    """``path|target|version`` of a compiler: part of the build key (memoised: one probe per process)."""
    path = shutil.which(cc)
    if path is None:
        raise NativeUnavailable(f"{cc}: no C compiler on PATH")
    parts = [path]
    for flag in ("-dumpmachine", "--version"):
        try:
            proc = subprocess.run([path, flag], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NativeUnavailable(f"{cc}: cannot run ({exc})") from None
        out = proc.stdout.strip()
        parts.append(out.splitlines()[0] if out else "")
    return "|".join(parts)


@functools.lru_cache(maxsize=8)
def native_target(cc: str) -> str | None:
    """What ``-march=native`` means for ``cc`` on this CPU (the target options the driver expands it to), or
    None when ``cc`` builds for another machine (a cross-compiler) or has no such flag. Part of the build key."""
    if shutil.which(cc) is None:
        return None
    machine = compiler_identity(cc).split("|")[1].split("-")[0]
    if machine != platform.machine():
        return None
    proc = _driver_dry_run(cc, NATIVE_FLAG)
    if proc is None:
        return None
    # gcc: its cc1 line (-march=znver3 -mavx512f ... --param l1-cache-size=32 ...); clang: its -cc1 line
    # (-target-cpu znver4 -target-feature +avx512f ...). The target options of that line are the key.
    line = next((ln for ln in proc.stderr.splitlines() if "cc1" in ln), None)
    if line is None:
        return None
    try:
        tokens = shlex.split(line)
    except ValueError:
        tokens = line.split()
    keep = [t for i, t in enumerate(tokens) if t.startswith(("-m", "-target-")) or "cache" in t
            or (i > 0 and tokens[i - 1] in ("-target-cpu", "-target-feature", "-tune-cpu"))]
    return " ".join(keep) or None


@functools.lru_cache(maxsize=16)
def accepts_flag(cc: str, flag: str) -> bool:
    """Does ``cc`` take ``flag`` (its driver, asked with ``-###``: nothing is compiled)?"""
    return _driver_dry_run(cc, flag) is not None


def _driver_dry_run(cc: str, flag: str) -> subprocess.CompletedProcess[str] | None:
    """``cc``'s driver asked with ``-###`` what it would run for ``flag`` (nothing is compiled); None when
    ``cc`` is missing or refuses the flag. Its stderr lists the expanded compiler command line."""
    path = shutil.which(cc)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, flag, "-###", "-x", "c", "-c", os.devnull, "-o", os.devnull],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc if proc.returncode == 0 else None


def library_flags(cc: str) -> tuple[tuple[str, ...], str]:
    """(compiler flags, what of the machine they depend on) for a build by ``cc``: ``LIB_CFLAGS``, the
    ``OPTIONAL_FLAGS`` it accepts, and ``-march=native`` when ``cc`` builds for this machine and accepts it (its
    expansion is the second part)."""
    flags = (*LIB_CFLAGS, *(f for f in OPTIONAL_FLAGS if accepts_flag(cc, f)))
    native = native_target(cc)
    if native is None:
        return flags, ""
    return (*flags, NATIVE_FLAG), native


def build_key(sources: dict[str, str], compiler: str, flags: tuple[str, ...], target: str = "") -> str:
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    h.update(compiler.encode() + b"\0" + " ".join(flags).encode() + b"\0" + target.encode())
    return h.hexdigest()[:16]


def build_library(cfg: FrontendConfig, cc: str | None = None, cache: Path | None = None) -> Path:
    """The shared library for ``cfg`` built by ``cc`` (default ``$CC``, else ``cc``), taken from the cache when
    this exact build exists. ``cc=AARCH64_CC`` cross-builds for a Pi (not loadable here)."""
    cc = cc or os.environ.get("CC") or "cc"
    compiler = compiler_identity(cc)
    sources = library_sources(cfg)
    flags, target = library_flags(cc)
    key = build_key(sources, compiler, flags, target)
    machine = compiler.split("|")[1] or "unknown"
    out_dir = (cache or cache_root()) / "native" / f"{machine}-{key}"
    lib = out_dir / LIB_NAME
    if lib.is_file():
        return lib
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NativeUnavailable(f"{out_dir}: cannot create the build folder ({exc.strerror})") from None
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        src = Path(tmp)
        for name, text in sources.items():
            (src / name).write_text(text, encoding="utf-8")
        target = src / LIB_NAME
        cmd = [cc, *flags, f"-I{src}", str(src / "dssdn_frontend.c"), str(src / "dssdn_features.c"),
               "-o", str(target), "-lm"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NativeUnavailable(f"{cc}: cannot build the C front end ({exc})") from None
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), f"exit {proc.returncode}")
            raise NativeUnavailable(f"{cc}: building the C front end failed: {first}")
        os.replace(target, lib)
    return lib


def load_library(cfg: FrontendConfig) -> FeatureLibrary:
    """The host build for ``cfg`` (built on first use), loaded once per process, compiler and cache folder."""
    return _load(cfg, os.environ.get("CC") or "cc", str(cache_root()))


@functools.lru_cache(maxsize=8)
def _load(cfg: FrontendConfig, cc: str, cache: str) -> FeatureLibrary:
    path = build_library(cfg, cc, Path(cache))
    try:
        return FeatureLibrary(str(path), cfg.to_dict())
    except LibraryError as exc:
        raise NativeUnavailable(str(exc)) from None


# ---------------------------------------------------------------------------------------- frontend
@dataclass(frozen=True)
class ModelInput:
    """What turns features into one model's input: its normalisation and, for an int8 input, the tensor's
    scale and zero point (``export.tflite.TensorIO``); ``scale=None`` for a float input."""

    normalization: Normalization
    scale: float | None = None
    zero_point: int = 0


class NativeFrontend(Frontend):
    """``Frontend`` whose features come from the C library; it also gives a model's int8 input rows."""

    def __init__(self, config: FrontendConfig | None = None, library: FeatureLibrary | None = None) -> None:
        super().__init__(config)
        self.library = library or load_library(self.config)
        if self.library.config != self.config.to_dict():
            raise NativeUnavailable(f"{self.library.path}: built for another front end config")

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio → unnormalised (channels, frames, n_mels) float32, as ``Frontend.features``."""
        stream = self.stream()
        frames = np.concatenate([stream.push(_mono(audio)), stream.flush()])
        return np.ascontiguousarray(frames.transpose(1, 0, 2))

    def logmel(self, audio: np.ndarray) -> np.ndarray:
        return self.features(audio)[0]

    def features_int8(self, audio: np.ndarray, model_input: ModelInput) -> np.ndarray:
        """Mono audio → the int8 model input rows (frames, n_mels, channels): normalised, quantised, NHWC."""
        stream = self.stream(model_input)
        return np.concatenate([stream.push_int8(_mono(audio)), stream.flush_int8()])

    def quantize(self, frames: np.ndarray, model_input: ModelInput) -> np.ndarray:
        """(n, channels, n_mels) float features → (n, n_mels, channels) int8 rows, in C."""
        return self.library.quantize(frames, self.params(model_input))

    def params(self, model_input: ModelInput) -> ctypes.Structure:
        norm = model_input.normalization
        try:
            return self.library.params(norm.mean, norm.std, model_input.scale, model_input.zero_point)
        except LibraryError as exc:
            raise DssdnError(str(exc)) from None

    def stream(self, model_input: ModelInput | None = None) -> FeatureStream:  # type: ignore[override]
        """Streaming features from C; with an int8 ``model_input`` also ``push_int8`` / ``flush_int8``."""
        return self.library.stream(None if model_input is None else self.params(model_input))

    def int8_stream(self, normalization: Normalization, scale: float, zero_point: int) -> FeatureStream:
        """A stream of one int8 model's input rows (``push_int8`` / ``flush_int8``): what
        ``stream.StreamClassifier`` asks a front end for when the model takes int8 NHWC windows raw."""
        return self.stream(ModelInput(normalization, scale, zero_point))


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
    return audio


# ---------------------------------------------------------------------------------------- selector
@functools.lru_cache(maxsize=1)
def _say_fallback_once(reason: str) -> None:
    """The one line of the numpy fallback (memoised so that a process says it once, not once per file)."""
    print(f"dssdn-edge: C front end unavailable ({reason}); using the numpy front end", file=sys.stderr)


def make_frontend(config: FrontendConfig | None = None, kind: str | None = None) -> Frontend:
    """The front end to compute with: ``"c"`` (the C library; an error if it cannot be built), ``"numpy"`` (the
    reference) or ``"auto"`` (C, else numpy with one line on stderr). Default: ``$DSSDN_FRONTEND``, else auto."""
    config = config or FrontendConfig()
    kind = kind or os.environ.get(ENV_FRONTEND) or "auto"
    if kind not in FRONTENDS:
        raise DssdnError(f"front end must be one of {', '.join(FRONTENDS)}, got {kind!r}")
    if kind == "numpy":
        return Frontend(config)
    try:
        return NativeFrontend(config)
    except NativeUnavailable as exc:
        if kind == "c":
            raise
        _say_fallback_once(str(exc))
        return Frontend(config)


def frontend_name(frontend: Frontend) -> str:
    """``"c"`` or ``"numpy"``: which implementation computes (for reports)."""
    return "c" if isinstance(frontend, NativeFrontend) else "numpy"
