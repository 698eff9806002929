"""The C twin of the front end: generate its tables, emit its sources, build and run a host harness.

``dssdn_edge/csrc/dssdn_frontend.{c,h}`` never change between configurations; everything that does
(sizes, window, twiddles, output order, sparse mel filterbank, log10 polynomial) goes into a generated
``dssdn_frontend_tables.h`` rendered from the very arrays the numpy ``Frontend`` computes with, so the
device cannot drift from training. The harness (``dssdn_frontend_main.c``) is only for checking and
timing on the host: raw float32 samples in, raw float32 log-mel frames out.

The tables follow the C code's algorithm (see the comment at the top of dssdn_frontend.c): the real FFT as a
radix-8 complex FFT of half the length whose last pass is fused into the real-FFT split step, the powers
stored at their bins through one table, each mel band zero-padded to a multiple of 4 bins, and log10 in the float
build as a polynomial on the float's mantissa. Each table function says which loop reads it and in what order.

Precision: the C code computes in ``DSSDN_REAL``, float by default, or double with ``-DDSSDN_DOUBLE``
(``compile_frontend_tool(..., precision="double")``). Measured on all 2000 ESC-50 clips against the float64
numpy path, double agrees to 4.8e-7 (log10 units) everywhere. float agrees to 4.9e-5 on every band within
60 dB of its frame's loudest band, but bands 70-130 dB below a loud peak (mostly the ~15 Hz band 0,
near the 1e-10 floor) differ by up to 2.0e-2 (0.05 % of values above 1e-4; the radix-4 FFT this replaced:
4.8e-5, 3.3e-2, 0.06 %). This is float32 itself, not the FFT: rounding the windowed samples to float32,
with everything after it in float64, already costs up to 1.6e-4.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import ExportError
from .frontend import Frontend, FrontendConfig, Normalization, SparseFilterbank

CSRC = Path(__file__).resolve().parent / "csrc"
TABLES_HEADER = "dssdn_frontend_tables.h"
INPUT_TABLES_HEADER = "dssdn_input_tables.h"
STATIC_SOURCES = ("dssdn_frontend.h", "dssdn_frontend.c")
FEATURES_SOURCES = ("dssdn_features.h", "dssdn_features.c")  # delta, normalisation, int8 input (streaming)
HARNESS_SOURCE = "dssdn_frontend_main.c"
BINARY_NAME = "dssdn_frontend"
CFLAGS = ("-O2", "-std=c99", "-Wall", "-Wextra", "-Werror")
PRECISIONS = {"float": (), "double": ("-DDSSDN_DOUBLE",)}
_REALS_PER_LINE = 4
_INTS_PER_LINE = 16
_UINT16_MAX = 0xFFFF
MEL_LANES = 4  # accumulators of the C mel loop: every band's run of bins is padded to a multiple of this
LOG10_POLY_LEN = 8  # coefficients of the float build's log10 polynomial (degree 7)
FUSED_LAST_LOG2 = 6  # from 2^6 complex points on, dssdn_frontend.c fuses the last FFT pass into the split step
CHUNK = 32  # elements per chunk of that fused pass (4 blocks of 8)
PCM16_SCALE = 1.0 / 32768.0  # int16 PCM to float, as soundfile reads PCM_16 (a power of two: exact)


# ------------------------------------------------------------------------------------------ tables
def _c_double(value: float) -> str:
    """A double literal that round-trips float64 (17 significant digits)."""
    if not np.isfinite(value):
        raise ExportError(f"{TABLES_HEADER}: non-finite table value {value}")
    text = f"{float(value):.17g}"
    return text if any(c in text for c in ".e") else text + ".0"


def _c_real(value: float) -> str:
    """A table entry: the exact float64 literal cast once to DSSDN_REAL (for float, ``np.float32(value)``)."""
    return f"DSSDN_R({_c_double(value)})"


def _c_array(
    ctype: str, name: str, values: Iterable[str], comment: str, per_line: int = _REALS_PER_LINE
) -> str:
    items = list(values)
    lines = ["    " + ", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line)]
    return f"/* {comment} */\nstatic const {ctype} {name}[{len(items)}] = {{\n" + "\n".join(lines) + "\n};\n"


def _uint16_array(name: str, values: np.ndarray, comment: str, narrow: bool = False) -> str:
    """A uint16_t table; with ``narrow``, uint8_t when every value fits (half the flash of a small table)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() > _UINT16_MAX):
        span = f"{values.min()}..{values.max()}"
        raise ExportError(f"{TABLES_HEADER}: {name} does not fit uint16_t (range {span})")
    ctype = "uint8_t" if narrow and (not values.size or values.max() <= 0xFF) else "uint16_t"
    return _c_array(ctype, name, (str(int(v)) for v in values), comment, _INTS_PER_LINE)


def bit_reverse_table(n: int) -> np.ndarray:
    """Bit-reversal permutation of range(n), n a power of two (the FFT's input reordering)."""
    bits = n.bit_length() - 1
    idx = np.arange(n)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


def _unit_roots(j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of exp(-2 pi i j / n), the angle formed from integers in float64."""
    angle = 2.0 * np.pi * (np.asarray(j, dtype=np.float64) / n)
    return np.cos(angle), -np.sin(angle)


def fft_twiddle_table(n_fft: int) -> np.ndarray:
    """Twiddles of the N/2-point DIF FFT in dssdn_frontend.c, in the order its passes read them.

    With N/2 = 2^(3a + b): a first radix-8 pass over the whole frame (q = N/16), then a radix-2 pass if b = 1
    or a radix-4 pass if b = 2, then radix-8 passes down to blocks of 8, the last of which needs no twiddles.
    A radix-R pass with sub-blocks of q elements stores, for f = 1 .. R-1, [re | im] of W^(f k), k < q,
    W = exp(-2 pi i / (R q)). Radix 8 because it takes 3 bits per pass over the data (5 passes of radix 4/2
    became 3) for 13 % fewer operations.
    """
    m = n_fft // 2
    log2 = m.bit_length() - 1
    k = np.arange

    def radix(r: int, q: int) -> list[np.ndarray]:
        return [part for f in range(1, r) for part in _unit_roots(f * k(q), r * q)]

    parts = radix(8, m // 8)
    length = m // 8
    if log2 % 3 == 1:
        parts += radix(2, length // 2)
        length //= 2
    elif log2 % 3 == 2:
        parts += radix(4, length // 4)
        length //= 4
    q = length // 8
    while q >= 8:
        parts += radix(8, q)
        q //= 8
    return np.concatenate(parts)


def fft_output_position(n_fft: int) -> np.ndarray:
    """Where dssdn_frontend.c leaves bit-reversed output index p of its N/2-point FFT: p itself, except that
    with the fused last pass, chunks after the first hold block u's output s at 4s + u instead of 8u + s."""
    m = n_fft // 2
    p = np.arange(m)
    if m.bit_length() - 1 < FUSED_LAST_LOG2:
        return p
    chunk, r = np.divmod(p, CHUNK)
    moved = CHUNK * chunk + 4 * (r % 8) + r // 8
    return np.where(p < CHUNK, p, moved)


def split_twiddle_table(n_fft: int) -> np.ndarray:
    """Twiddles of the real-FFT split step, in the order dssdn_frontend.c walks the FFT output.

    Output position P holds Z[k]; the C code pairs P = 2h + t with its mirror 4h - 1 - t inside each block
    [2h, 4h), h = 1, 2, 4, ..., M/4 (M = N/2), and needs W^k, W = exp(-2 pi i / N), at each first-half P:
    per block [re | im] of its h values, except that with the fused last pass the blocks from h = 16 on
    come chunk by chunk ([re | im] of 16 values for h = 16, then of 32 per chunk).
    """
    m = n_fft // 2
    rev = bit_reverse_table(m)
    k_at = np.empty(m, dtype=np.int64)  # the frequency index each output position holds
    k_at[fft_output_position(n_fft)] = rev
    fused = m.bit_length() - 1 >= FUSED_LAST_LOG2
    parts: list[np.ndarray] = []
    h = 1
    while h <= m // 4:
        if not fused or h < CHUNK // 2:
            parts.extend(_unit_roots(k_at[2 * h + np.arange(h)], n_fft))
        elif h == CHUNK // 2:
            parts.extend(_unit_roots(k_at[CHUNK + np.arange(h)], n_fft))
        else:
            for chunk in range(2 * h // CHUNK, 3 * h // CHUNK):
                parts.extend(_unit_roots(k_at[CHUNK * chunk + np.arange(CHUNK)], n_fft))
        h *= 2
    return np.concatenate(parts)


def power_order_table(n_fft: int) -> np.ndarray:
    """Position of frequency bin k < N/2 in the C code's FFT output order (bit reversal, then the fused pass)."""
    return fft_output_position(n_fft)[bit_reverse_table(n_fft // 2)]


def power_bin_table(n_fft: int) -> np.ndarray:
    """Frequency bin whose Z[k] the C code's FFT leaves at output position p < N/2 (power_order_table
    inverted): the split step stores each |X[k]|^2 straight at its bin through it."""
    order = power_order_table(n_fft)
    out = np.empty_like(order)
    out[order] = np.arange(order.size)
    return out


def half_window_table(window: np.ndarray) -> np.ndarray:
    """The window table of dssdn_frontend.c: the window times 1/2 (the split step's factor, exact), its
    even-index samples w[0], w[2] .. w[N/2], then its odd-index samples w[1], w[3] .. w[N/2 - 1].

    Why half: the periodic window is symmetric (w[i] = w[N - i]), so the C reads the other half mirrored, and
    a microcontroller keeps N/2 + 1 reals of flash instead of N. The float64 window is symmetric only to an
    ulp (cos rounding); each pair must round to the same float32, or the device would compute another
    window than the reference: checked here."""
    w = np.asarray(window, dtype=np.float64)
    n = w.size
    mirror = w[n - np.arange(1, n)]
    if np.abs(w[1:] - mirror).max() > 1e-12 or not np.array_equal(np.float32(w[1:]), np.float32(mirror)):
        raise ExportError(f"{TABLES_HEADER}: the window is not symmetric (w[i] != w[N - i]): no half table")
    half = 0.5 * w
    return np.concatenate([half[0 : n // 2 + 1 : 2], half[1 : n // 2 : 2]])


def padded_mel_bands(fb: SparseFilterbank, lanes: int = MEL_LANES) -> SparseFilterbank:
    """The sparse filterbank with every band zero-padded to a multiple of ``lanes`` bins, for the C loop.

    Why: the C dot product then runs in ``lanes`` independent accumulators with no remainder loop (gcc -O2
    turns them into one SSE vector; a scalar core gets 4 sums without one long dependency chain). The
    padding goes before the band when its end would pass the last bin, so the loop reads power bins only
    (a band wider than all bins but ``lanes - 1`` reads up to 3 reals past them, still inside the C scratch).
    Zero weights leave every sum unchanged. Same (start, length, offset, weights) form as the numpy one.
    """
    starts, lengths, chunks = [], [], []
    for s, n, o in zip(fb.start, fb.length, fb.offset, strict=True):
        s, n, o = int(s), int(n), int(o)
        padded = max(lanes, -(-n // lanes) * lanes)  # an empty band too: the scalar C loop takes one chunk first
        first = max(0, min(s, fb.n_bins - padded))
        row = np.zeros(padded)
        row[s - first : s - first + n] = fb.weights[o : o + n]
        starts.append(first)
        lengths.append(padded)
        chunks.append(row)
    length = np.asarray(lengths, dtype=np.int32)
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int32)
    return SparseFilterbank(np.asarray(starts, np.int32), length, offset, np.concatenate(chunks), fb.n_bins)


def log10_poly(degree: int = LOG10_POLY_LEN - 1) -> np.ndarray:
    """Coefficients c (lowest first) with log10(1 + f) ~= f * sum_i c_i f^i for |f| <= 1/3.

    Why a polynomial: the float build takes log10 of every band of every frame; on the mantissa of a float
    (moved to [2/3, 4/3)) a degree-7 polynomial is within 3.3e-8 of log10 (5.7e-8 evaluated in float32,
    below float32's own half-ulp of a log-mel value), vectorises, and spares a microcontroller libm's
    log10f. Chebyshev interpolation of log10(1 + f) / f, converted to powers of f, all in float64.
    """
    third = 1.0 / 3.0

    def g(f: np.ndarray) -> np.ndarray:
        safe = np.where(f == 0.0, 1.0, f)
        return np.where(f == 0.0, 1.0 / np.log(10.0), np.log10(1.0 + safe) / safe)

    cheb = np.polynomial.chebyshev.Chebyshev.interpolate(g, degree, domain=[-third, third])
    coef = cheb.convert(kind=np.polynomial.Polynomial).coef
    if coef.shape != (degree + 1,):
        raise ExportError(f"{TABLES_HEADER}: log10 polynomial has {coef.size} coefficients, expected {degree + 1}")
    return coef


def config_id(cfg: FrontendConfig) -> int:
    """32 bits of the SHA-256 of the config: what a compiled library reports, so that a binding can refuse one
    built for another front end (a library shipped to a device, a stale cache)."""
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big")  # as runtime.cfeatures.config_id, which the device runs


def render_tables_header(cfg: FrontendConfig, pcm16: bool = False) -> str:
    """Text of dssdn_frontend_tables.h for ``cfg``, from the numpy Frontend's own window and filterbank.

    ``pcm16``: the front end takes 16-bit PCM (value = sample / 32768) instead of float samples, as a
    microcontroller's ADC gives them: its sample buffer then holds int16 (half the RAM: 2 KB at n_fft 1024)
    and no float copy of the audio is made. The 1/32768 is folded into the window table (a power of two:
    every product rounds as ``(sample / 32768) * w`` does, so the features are bit for bit the same)."""
    fe = Frontend(cfg)
    fb = padded_mel_bands(fe.filterbank)
    if cfg.n_fft // 2 > _UINT16_MAX + 1:
        raise ExportError(f"{TABLES_HEADER}: n_fft {cfg.n_fft} too large for uint16_t bit-reversal indices")
    config_json = json.dumps(cfg.to_dict(), sort_keys=True)
    scale, scaled = (PCM16_SCALE, "; times 1/32768 (int16 PCM in, exact)") if pcm16 else (1.0, "")
    head = [
        "/* dssdn_frontend_tables.h - GENERATED by dssdn_edge.frontend_c.render_tables_header; do not edit.",
        " *",
        f" * Front-end config: {config_json}",
        " *",
        " * Sizes and tables for dssdn_frontend.c: the float64 window and sparse mel filterbank of",
        " * dssdn_edge.frontend.Frontend laid out for the C loops, FFT twiddles and the log10 polynomial",
        " * computed in float64, all printed with 17 significant digits so the compiler rounds each once",
        " * to DSSDN_REAL (float unless -DDSSDN_DOUBLE).",
        " * The data is only defined where DSSDN_FRONTEND_TABLES_DEFINE is set (dssdn_frontend.c).",
        " */",
        "#ifndef DSSDN_FRONTEND_TABLES_H",
        "#define DSSDN_FRONTEND_TABLES_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define DSSDN_SAMPLE_RATE {cfg.sample_rate}",
        f"#define DSSDN_N_FFT {cfg.n_fft}",
        f"#define DSSDN_HOP {cfg.hop_length}",
        f"#define DSSDN_N_MELS {cfg.n_mels}",
        f"#define DSSDN_N_BINS {cfg.n_bins}",
        f"#define DSSDN_LOG_EPS {_c_double(cfg.log_eps)}",
        f"#define DSSDN_SPLIT_BAND {cfg.split_band}",
        f"#define DSSDN_DELTA_WIDTH {cfg.delta_width} /* 0: no delta channel */",
        f"#define DSSDN_CHANNELS {cfg.channels}",
        f"#define DSSDN_SEGMENT_FRAMES {cfg.segment_frames} /* frames of one model input window */",
        f"#define DSSDN_CONFIG_ID 0x{config_id(cfg):08x}u /* frontend_c.config_id: names this config */",
        f"#define DSSDN_N_MEL_WEIGHTS {fb.weights.size}",
        f"#define DSSDN_FFT_LOG2 {cfg.n_fft.bit_length() - 2} /* log2(N_FFT / 2), the complex FFT */",
        f"#define DSSDN_MEL_LANES {MEL_LANES} /* every dssdn_mel_len is a non-zero multiple of this */",
        f"#define DSSDN_LOG10_POLY_LEN {LOG10_POLY_LEN}",
        f"#define DSSDN_PCM16 {int(pcm16)} /* 1: samples are int16 PCM (value / 32768), 0: float */",
        "",
        "#endif /* DSSDN_FRONTEND_TABLES_H */",
        "",
        "#if defined(DSSDN_FRONTEND_TABLES_DEFINE) && !defined(DSSDN_FRONTEND_TABLES_DATA)",
        "#define DSSDN_FRONTEND_TABLES_DATA",
        "",
        "/* The explicit cast is the one rounding to DSSDN_REAL (and keeps -Wconversion quiet). */",
        "#define DSSDN_R(x) ((DSSDN_REAL)(x))",
        "",
    ]
    tables = [
        "#if DSSDN_WINDOW_HALF /* set by dssdn_frontend.c: scalar cores keep half the window */",
        _c_array(
            "DSSDN_REAL",
            "dssdn_window",
            map(_c_real, half_window_table(fe.window) * scale),
            "HALF the periodic Hann window (the split step's 1/2, exact), first half of its even-index samples "
            "(0 .. N/4) then of its odd-index ones (1 .. N/2 - 1, step 2): the C mirrors the rest" + scaled,
        ),
        "#else",
        _c_array(
            "DSSDN_REAL",
            "dssdn_window",
            map(_c_real, 0.5 * np.concatenate([fe.window[0::2], fe.window[1::2]]) * scale),
            "HALF the periodic Hann window (the split step's 1/2, exact), even-index samples then odd-index ones"
            + scaled,
        ),
        "#endif",
        _c_array(
            "DSSDN_REAL",
            "dssdn_fft_twiddle",
            map(_c_real, fft_twiddle_table(cfg.n_fft)),
            "FFT twiddles, pass after pass (see frontend_c.fft_twiddle_table)",
        ),
        _c_array(
            "DSSDN_REAL",
            "dssdn_split_twiddle",
            map(_c_real, split_twiddle_table(cfg.n_fft)),
            "exp(-2 pi i k / N_FFT) for the real-FFT split step, in its walk order (split_twiddle_table)",
        ),
        "#if DSSDN_POWER_SCATTER /* set by dssdn_frontend.c: scalar cores store each power at its bin */",
        _uint16_array(
            "dssdn_power_bin",
            power_bin_table(cfg.n_fft),
            "bin at each FFT output position (bit reversal, then the fused last pass)",
        ),
        "#else",
        _uint16_array(
            "dssdn_power_order",
            power_order_table(cfg.n_fft),
            "position of bin k in the FFT output order (bit reversal, then the fused last pass)",
        ),
        "#endif",
        _c_array(
            "DSSDN_REAL",
            "dssdn_mel_weights",
            map(_c_real, fb.weights),
            "mel weights, band after band, each band zero-padded to a multiple of DSSDN_MEL_LANES bins",
        ),
        _uint16_array("dssdn_mel_start", fb.start, "first FFT bin of each band"),
        _uint16_array("dssdn_mel_len", fb.length, "number of bins of each band", narrow=True),
        _c_array(
            "float",
            "dssdn_log10_poly",
            (_c_double(v) + "f" for v in log10_poly()),
            "log10(1 + f) ~= f * poly(f), |f| <= 1/3, lowest power first (float build only)",
        ),
    ]
    return "\n".join(head) + "\n".join(tables) + "\n#endif /* DSSDN_FRONTEND_TABLES_DATA */\n"


def _float32_literal(value: float, what: str) -> str:
    """A C float literal for a value that must already be a float32 (it then reads back exactly)."""
    f32 = np.float32(value)
    if not np.isfinite(f32) or float(f32) != float(value):
        raise ExportError(f"{INPUT_TABLES_HEADER}: {what} {value!r} is not a finite float32")
    return _c_double(float(f32)) + "f"


def render_input_tables(
    cfg: FrontendConfig, normalization: Normalization, input_quant: tuple[float, int] | None
) -> str:
    """Text of dssdn_input_tables.h: one model's stored normalisation and int8 input (scale, zero point).

    ``input_quant`` is the int8 input tensor's (scale, zero point) as the .tflite holds them (float32 scale);
    None for a model with a float input, which leaves scale 0 (dssdn_features then gives float rows only)."""
    shape = (cfg.channels, cfg.n_mels)
    mean, std = np.asarray(normalization.mean), np.asarray(normalization.std)
    if mean.shape != shape or std.shape != shape:
        raise ExportError(f"{INPUT_TABLES_HEADER}: normalisation is {mean.shape}, the front end needs {shape}")
    if not (std > 0).all():
        raise ExportError(f"{INPUT_TABLES_HEADER}: normalisation std must be positive")
    scale, zero_point = input_quant if input_quant is not None else (0.0, 0)
    if input_quant is not None and not (scale > 0 and -128 <= int(zero_point) <= 127):
        raise ExportError(f"{INPUT_TABLES_HEADER}: int8 input needs scale > 0 and a zero point in -128..127, "
                          f"got {scale}, {zero_point}")

    def rows(values: np.ndarray, what: str) -> str:
        out = []
        for ch in values:
            items = [_float32_literal(float(v), what) for v in ch]
            lines = ["        " + ", ".join(items[i : i + _REALS_PER_LINE]) + ","
                     for i in range(0, len(items), _REALS_PER_LINE)]
            out.append("    {\n" + "\n".join(lines) + "\n    },")
        return "{\n" + "\n".join(out) + "\n}"

    scale_text = _float32_literal(scale, "input scale")
    return "\n".join([
        "/* dssdn_input_tables.h - GENERATED by dssdn_edge.frontend_c.render_input_tables; do not edit.",
        " *",
        f" * Front-end config: {json.dumps(cfg.to_dict(), sort_keys=True)}",
        " *",
        " * One model's input: the per channel, per band mean and std of its normalisation (float32, from the",
        " * checkpoint) and its int8 input tensor's scale and zero point (from the int8 .tflite; scale 0: no",
        " * int8 input). Include it in ONE .c file and pass &dssdn_input_params to dssdn_features_init.",
        " */",
        "#ifndef DSSDN_INPUT_TABLES_H",
        "#define DSSDN_INPUT_TABLES_H",
        "",
        '#include "dssdn_features.h"',
        "",
        f"#if DSSDN_N_MELS != {cfg.n_mels} || DSSDN_CHANNELS != {cfg.channels}",
        f'#error "{INPUT_TABLES_HEADER}: made for another front end than dssdn_frontend_tables.h"',
        "#endif",
        "",
        f"#define DSSDN_INPUT_SCALE {scale_text}",
        f"#define DSSDN_INPUT_ZERO_POINT {int(zero_point)}",
        "",
        "static const dssdn_input_params_t dssdn_input_params = {",
        f"    /* mean[channel][band] */ {rows(mean, 'mean')},",
        f"    /* std[channel][band] */ {rows(std, 'std')},",
        "    DSSDN_INPUT_SCALE,",
        "    DSSDN_INPUT_ZERO_POINT,",
        "};",
        "",
        "#endif /* DSSDN_INPUT_TABLES_H */",
        "",
    ])


# ------------------------------------------------------------------------------------------- emit
def _write_atomic(path: Path, text: str) -> None:
    from .fileio import write_text

    write_text(path, text)


def emit_c(
    cfg: FrontendConfig,
    out_dir: Path,
    force: bool = False,
    normalization: Normalization | None = None,
    input_quant: tuple[float, int] | None = None,
    pcm16: bool = False,
) -> list[Path]:
    """Write the tables header and the static sources (log-mel, and the streaming features on top of it) into
    ``out_dir``, and with ``normalization`` one model's ``dssdn_input_tables.h`` (``input_quant``: its int8
    input's scale and zero point); refuse to clobber unless force. ``pcm16``: int16 PCM samples in (an
    ``mcu/`` project; see render_tables_header)."""
    out_dir = Path(out_dir)
    contents = {TABLES_HEADER: render_tables_header(cfg, pcm16)}
    for name in (*STATIC_SOURCES, *FEATURES_SOURCES):
        contents[name] = (CSRC / name).read_text(encoding="utf-8")
    if normalization is not None:
        contents[INPUT_TABLES_HEADER] = render_input_tables(cfg, normalization, input_quant)
    elif input_quant is not None:
        raise ExportError(f"{INPUT_TABLES_HEADER}: an input quantisation needs the model's normalisation too")
    targets = [out_dir / name for name in contents]
    if not force:
        for path in targets:
            if path.exists():
                raise ExportError(f"{path}: already exists (use --force to overwrite)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot create output directory ({exc.strerror})") from None
    for path in targets:
        _write_atomic(path, contents[path.name])
    return targets


# ---------------------------------------------------------------------------------------- compile
def compile_frontend_tool(out_dir: Path, build_dir: Path, precision: str = "float") -> Path:
    """Build the host harness from an ``emit_c`` directory with the system ``cc``; return the binary.

    ``precision="double"`` builds the same code with ``-DDSSDN_DOUBLE``: the reference build that matches
    numpy to 1e-4, where float32 (the device default) cannot on frames of very high dynamic range.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    out_dir, build_dir = Path(out_dir), Path(build_dir)
    for name in (TABLES_HEADER, *STATIC_SOURCES):
        if not (out_dir / name).is_file():
            raise ExportError(f"{out_dir / name}: missing (run emit_c first)")
    cc = shutil.which("cc")
    if cc is None:
        raise ExportError("cc: no C compiler on PATH (needed to build the C front-end harness)")
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / (BINARY_NAME if precision == "float" else f"{BINARY_NAME}_{precision}")
    cmd = [
        cc,
        *CFLAGS,
        *PRECISIONS[precision],
        f"-I{out_dir}",
        str(out_dir / "dssdn_frontend.c"),
        str(CSRC / HARNESS_SOURCE),
        "-o",
        str(binary),
        "-lm",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), f"exit {proc.returncode}")
        raise ExportError(f"{out_dir / 'dssdn_frontend.c'}: cc failed: {first}")
    return binary


# -------------------------------------------------------------------------------------------- run
def _run(binary: Path, args: list[str], audio: np.ndarray | None) -> bytes:
    data = b"" if audio is None else np.ascontiguousarray(audio, dtype="<f4").tobytes()
    proc = subprocess.run([str(binary), *args], input=data, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ExportError(f"{binary}: exit {proc.returncode}: {msg[0] if msg else 'no message'}")
    return proc.stdout


def c_frontend_info(binary: Path) -> dict[str, int]:
    """Sample rate, n_fft, hop and n_mels the binary was generated for."""
    values = [int(v) for v in _run(binary, ["--info"], None).split()]
    return dict(zip(("sample_rate", "n_fft", "hop_length", "n_mels"), values, strict=True))


def run_c_frontend(binary: Path, audio: np.ndarray, n_mels: int | None = None) -> np.ndarray:
    """Mono audio → (frames, n_mels) log-mel from the compiled C twin, fed float32 samples as a device is."""
    if n_mels is None:
        n_mels = c_frontend_info(binary)["n_mels"]
    out = np.frombuffer(_run(binary, [], np.asarray(audio).ravel()), dtype="<f4")
    return out.reshape(-1, n_mels).astype(np.float32)


def bench_c_frontend(binary: Path, audio: np.ndarray, reps: int) -> np.ndarray:
    """Seconds of each of ``reps`` runs turning ``audio`` into log-mel frames, timed inside the C process after
    one warm-up run (process start-up excluded): shape (reps, 2), columns wall clock and process CPU time.
    Raw per-run times, not a median, so a benchmark can pool them across interleaved rounds."""
    out = _run(binary, ["--bench", str(reps)], np.asarray(audio).ravel())
    times = np.array([[float(v) for v in line.split()] for line in out.decode().splitlines() if line.strip()])
    if times.shape != (reps, 2):
        raise ExportError(f"{binary}: --bench {reps} printed {times.shape[0]} lines, expected {reps}")
    return times
