"""The C twin of the front end must give the numpy Frontend's log-mel frames, frame for frame.

The double build (-DDSSDN_DOUBLE) is held to 1e-4 (log10 units) on every value of real ESC-50 clips.
The float32 build (the device default) is held to 1e-4 on every band within 60 dB of its frame's
loudest band. float32 round-off sits ~140 dB below a frame's peak, so bands 70-130 dB down move by
more; most are the ~15 Hz band 0 of loud frames, near the 1e-10 floor. Measured over all 2000 clips:
float32 max 4.9e-5 within 60 dB and 2.0e-2 overall (0.05 % of values above 1e-4); double max 4.8e-7.
Rounding the windowed samples to float32 alone, with a float64 FFT after it, already costs up to
1.6e-4, so no float32 pipeline reaches 1e-4 everywhere.

The C code picks its FFT passes from log2(n_fft) (radix 8, a radix-2 or radix-4 pass for the remainder, the
last pass fused into the split step from 128 points on), so every such branch is compiled and checked here.
No test times anything: speed is benchmarks/frontend.py's job.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dssdn_edge.audio import load_audio
from dssdn_edge.errors import ExportError
from dssdn_edge.frontend import Frontend, FrontendConfig
from dssdn_edge.frontend_c import (
    CFLAGS,
    CSRC,
    HARNESS_SOURCE,
    MEL_LANES,
    TABLES_HEADER,
    bench_c_frontend,
    c_frontend_info,
    compile_frontend_tool,
    emit_c,
    fft_output_position,
    log10_poly,
    padded_mel_bands,
    power_order_table,
    run_c_frontend,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
AUDIO_DIR = SHARED / "data" / "esc50_16k" / "audio"
N_CLIPS = 24
TOL = 1e-4  # log10 units, C vs numpy float64
FLOAT32_RANGE = 6.0  # float32 build: TOL holds for bands within 6 log10 units (60 dB) of the frame's peak
SMALL_CFG = FrontendConfig(n_fft=512, hop_length=160, n_mels=64, split_band=32)

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")


def _clip_paths(n: int) -> list[Path]:
    """n clips spread evenly over the sorted ESC-50 list (all classes and folds), or skip."""
    if not AUDIO_DIR.is_dir():
        pytest.skip(f"real audio not found at {AUDIO_DIR} (the shared ESC-50 16 kHz copy)")
    files = sorted(AUDIO_DIR.glob("*.flac"))
    if len(files) < n:
        pytest.skip(f"need {n} clips in {AUDIO_DIR}, found {len(files)}")
    return files[:: len(files) // n][:n]


def _build(cfg: FrontendConfig, root: Path) -> dict[str, Path]:
    emit_c(cfg, root / "src")
    return {p: compile_frontend_tool(root / "src", root / "build", p) for p in ("float", "double")}


@pytest.fixture(scope="module")
def default_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _build(FrontendConfig(), tmp_path_factory.mktemp("c_default"))


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [load_audio(p, 16000) for p in _clip_paths(N_CLIPS)]


def _max_errors(
    binary: Path, cfg: FrontendConfig, audios: list[np.ndarray], within: float = np.inf
) -> list[float]:
    """Per clip, max |C - numpy| over the values at most ``within`` log10 units below their frame's peak."""
    fe = Frontend(cfg)
    errors = []
    for audio in audios:
        ref = fe.logmel(audio)
        got = run_c_frontend(binary, audio, cfg.n_mels)
        assert got.shape == ref.shape
        assert np.isfinite(got).all()
        considered = ref >= ref.max(axis=1, keepdims=True) - within
        errors.append(float(np.abs(got - ref)[considered].max()))
    return errors


def test_double_build_matches_numpy_on_real_clips(default_bins: dict[str, Path], clips: list) -> None:
    errors = _max_errors(default_bins["double"], FrontendConfig(), clips)
    assert len(errors) >= 20
    assert max(errors) <= TOL, f"max abs diff {max(errors):.3e} > {TOL} (per clip: {errors})"


def test_float_build_matches_numpy_within_60db_on_real_clips(
    default_bins: dict[str, Path], clips: list
) -> None:
    errors = _max_errors(default_bins["float"], FrontendConfig(), clips, within=FLOAT32_RANGE)
    assert max(errors) <= TOL, f"max abs diff {max(errors):.3e} > {TOL} within 60 dB of the frame peak"


def test_non_default_config_matches(tmp_path: Path, clips: list) -> None:
    bins = _build(SMALL_CFG, tmp_path)
    assert c_frontend_info(bins["float"]) == {
        "sample_rate": 16000,
        "n_fft": 512,
        "hop_length": 160,
        "n_mels": 64,
    }
    subset = clips[:: len(clips) // 6]
    assert max(_max_errors(bins["double"], SMALL_CFG, subset)) <= TOL
    assert max(_max_errors(bins["float"], SMALL_CFG, subset, within=FLOAT32_RANGE)) <= TOL


# The FFT plans of dssdn_frontend.c not covered by the default (1024: radix 8, 8, fused last) and SMALL_CFG
# (512: 8, 4, fused last): n_fft 16 / 32 / 64 are the tiny ones (a first radix-8 pass with under 4 elements per
# sub-block, alone, then radix 2, then radix 4), 128 is the first with the fused last pass, 256 and 2048 have
# a radix-2 pass, 4096 a radix-4 pass before radix-8 ones (see fft_twiddle_table).
PLAN_CFGS = [
    FrontendConfig(n_fft=n, hop_length=n // 4, n_mels=m, split_band=m // 2)
    for n, m in ((16, 4), (32, 8), (64, 16), (128, 32), (256, 40), (2048, 128), (4096, 128))
]


@pytest.mark.parametrize("cfg", PLAN_CFGS, ids=lambda c: f"n_fft{c.n_fft}")
def test_every_fft_plan_matches_numpy(cfg: FrontendConfig, tmp_path: Path, clips: list) -> None:
    bins = _build(cfg, tmp_path)
    subset = clips[:: len(clips) // 4][:4]
    assert max(_max_errors(bins["double"], cfg, subset)) <= TOL
    assert max(_max_errors(bins["float"], cfg, subset, within=FLOAT32_RANGE)) <= TOL


def test_scalar_lanes_give_the_same_bits(tmp_path: Path, clips: list) -> None:
    """The FFT loops run 4 lanes where the compiler has vectors (8 with AVX) and 1 on a Cortex-M (DSSDN_LANES);
    all must do the same arithmetic in the same order, so the device build is the host build, bit for bit."""
    cfg = FrontendConfig()
    emit_c(cfg, tmp_path / "src")
    outs = []
    for lanes in (1, 4, 8):
        binary = tmp_path / f"fe_lanes{lanes}"
        src = tmp_path / "src"
        cmd = ["cc", *CFLAGS, f"-DDSSDN_LANES={lanes}", f"-I{src}", str(src / "dssdn_frontend.c"),
               str(CSRC / HARNESS_SOURCE), "-o", str(binary), "-lm"]
        subprocess.run(cmd, check=True, capture_output=True)
        outs.append(np.concatenate([run_c_frontend(binary, a, cfg.n_mels) for a in clips[:3]]))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


def test_tables_keep_the_numpy_filterbank_and_a_tight_log() -> None:
    """The C layouts are the numpy arrays rearranged: padding adds zeros only, every bin order is a permutation."""
    for cfg in (FrontendConfig(), SMALL_CFG, *PLAN_CFGS):
        fb = Frontend(cfg).filterbank
        padded = padded_mel_bands(fb)
        assert np.array_equal(padded.to_dense(), fb.to_dense())
        assert (padded.length % MEL_LANES == 0).all() and (padded.length >= MEL_LANES).all()
        assert (padded.start + padded.length <= cfg.n_bins).all()
        m = cfg.n_fft // 2
        for order in (fft_output_position(cfg.n_fft), power_order_table(cfg.n_fft)):
            assert np.array_equal(np.sort(order), np.arange(m))
    coef = log10_poly()
    f = np.linspace(-1 / 3, 1 / 3, 100_001)
    assert np.abs(f * np.polynomial.polynomial.polyval(f, coef) - np.log10(1 + f)).max() < 1e-7


def test_bench_mode_reports_wall_and_cpu_time_per_run(default_bins: dict[str, Path]) -> None:
    times = bench_c_frontend(default_bins["float"], np.zeros(16000, np.float32), 3)
    assert times.shape == (3, 2) and (times > 0).all()


@pytest.mark.parametrize("n", [0, 1, 319, 320, 321, 16001])
def test_frame_count_for_odd_lengths(default_bins: dict[str, Path], n: int) -> None:
    cfg = FrontendConfig()
    audio = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    ref = Frontend(cfg).logmel(audio)
    for binary in default_bins.values():
        got = run_c_frontend(binary, audio, cfg.n_mels)
        assert got.shape == (1 + n // cfg.hop_length, cfg.n_mels)
    assert np.abs(run_c_frontend(default_bins["double"], audio) - ref).max() <= TOL


def test_emit_c_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    written = emit_c(FrontendConfig(), tmp_path)
    assert sorted(p.name for p in written) == sorted([TABLES_HEADER, "dssdn_frontend.c", "dssdn_frontend.h",
                                                      "dssdn_features.c", "dssdn_features.h"])
    header = tmp_path / TABLES_HEADER
    header.write_text("/* edited by hand */\n")
    with pytest.raises(ExportError) as info:
        emit_c(FrontendConfig(), tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "\n" not in message
    assert header.read_text() == "/* edited by hand */\n"  # untouched
    emit_c(SMALL_CFG, tmp_path, force=True)
    text = header.read_text()
    assert "GENERATED" in text and '"n_fft": 512' in text and "#define DSSDN_N_MELS 64" in text
    assert not list(tmp_path.glob(".*.tmp*"))  # atomic writes leave no temp files behind


def test_compile_reports_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="missing"):
        compile_frontend_tool(tmp_path, tmp_path / "build")
