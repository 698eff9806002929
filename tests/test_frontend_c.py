"""The C twin of the front end must give the numpy Frontend's log-mel frames, frame for frame.

The double build (-DDSSDN_DOUBLE) is held to 1e-4 (log10 units) on every value of real ESC-50 clips.
The float32 build (the device default) is held to 1e-4 on every band within 60 dB of its frame's
loudest band. float32 round-off sits ~140 dB below a frame's peak, so bands 70-130 dB down move by
more; most are the ~15 Hz band 0 of loud frames, near the 1e-10 floor. Measured over all 2000 clips:
float32 max 4.8e-5 within 60 dB and 3.3e-2 overall (0.06 % of values above 1e-4); double max 4.8e-7.
Rounding the windowed samples to float32 alone, with a float64 FFT after it, already costs up to
1.6e-4, so no float32 pipeline reaches 1e-4 everywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dssdn_edge.audio import load_audio
from dssdn_edge.errors import ExportError
from dssdn_edge.frontend import Frontend, FrontendConfig
from dssdn_edge.frontend_c import (
    TABLES_HEADER,
    c_frontend_info,
    compile_frontend_tool,
    emit_c,
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
    assert sorted(p.name for p in written) == sorted([TABLES_HEADER, "dssdn_frontend.c", "dssdn_frontend.h"])
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
