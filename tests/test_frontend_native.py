"""The C front end as the host's production front end (frontend_native, runtime.cfeatures, csrc/dssdn_features.c).

What must hold: the C stream's float features are numpy's (``Frontend.features``) to float32 round-off, frame for
frame, in any chunking, with the same edge replication at both ends; given the same float features its int8 rows
are numpy's ``Normalization.apply`` + ``runtime.quantize`` bit for bit (ties to even included); from audio,
its int8 windows equal numpy's on every fold-5 window except where float32 round-off crosses a rounding boundary
(counted and bounded). Without a compiler everything falls back to numpy with one line.

The default-config library is built once into a session folder (``native_cache``); nothing here is timed.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import stream_chunked

from dssdn_edge.audio import load_audio
from dssdn_edge.data import pad_to_window, silent_frames, window_starts
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization
from dssdn_edge.frontend_c import CFLAGS, INPUT_TABLES_HEADER, emit_c
from dssdn_edge.frontend_native import (
    AARCH64_CC,
    LIB_CFLAGS,
    LIB_NAME,
    NATIVE_FLAG,
    ModelInput,
    NativeFrontend,
    NativeUnavailable,
    build_key,
    build_library,
    frontend_name,
    library_flags,
    library_sources,
    make_frontend,
    native_target,
)
from dssdn_edge.runtime import quantize
from dssdn_edge.runtime.cfeatures import FeatureLibrary, LibraryError

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

CFG = FrontendConfig()
NO_DELTA = FrontendConfig(n_fft=512, hop_length=160, n_mels=64, split_band=32, delta_width=0)
WIDE_DELTA = FrontendConfig(n_fft=512, hop_length=160, n_mels=40, split_band=20, delta_width=7)
TOL = 1e-4  # log10 units within 60 dB of a frame's peak (the float32 build's bound, tests/test_frontend_c.py)


@pytest.fixture(scope="module")
def native_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache folder for this module's builds (the user's own cache stays untouched)."""
    path = tmp_path_factory.mktemp("native-cache")
    old = os.environ.get("DSSDN_CACHE")
    os.environ["DSSDN_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DSSDN_CACHE", None)
    else:
        os.environ["DSSDN_CACHE"] = old


@pytest.fixture(scope="module")
def native(native_cache: Path) -> NativeFrontend:
    return NativeFrontend(CFG)


@pytest.fixture(scope="module")
def audios(real_clips: list[Path]) -> list[np.ndarray]:
    return [load_audio(p, CFG.sample_rate) for p in real_clips[::3]]


def _close(ref: np.ndarray, got: np.ndarray) -> float:
    """Max |C - numpy| over values within 60 dB of their frame's loudest band (per channel 0 frame)."""
    peak = ref[0].max(axis=-1, keepdims=True)
    considered = np.broadcast_to(ref[0] >= peak - 6.0, ref.shape)
    return float(np.abs(got - ref)[considered].max())


# ---------------------------------------------------------------------------------------- float
def test_features_equal_numpy_and_any_chunking_equals_offline(native: NativeFrontend, audios: list) -> None:
    fe = Frontend(CFG)
    rng = np.random.default_rng(0)
    for audio in audios:
        ref, got = fe.features(audio), native.features(audio)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert _close(ref, got) <= TOL
        stream = native.stream()
        assert np.array_equal(stream_chunked(stream, audio, rng, 0, 1500), got)  # same bits, however chunked
    assert stream.flush().shape == (0, 2, CFG.n_mels)
    with pytest.raises(RuntimeError, match="flushed"):
        stream.push(audios[0][:10])


@pytest.mark.parametrize("cfg", [CFG, NO_DELTA, WIDE_DELTA], ids=["default", "no-delta", "delta7"])
@pytest.mark.parametrize("n", [0, 1, 319, 320, 1023, 1024, 1500, 16001])
def test_frame_count_and_edges_for_odd_lengths(native_cache: Path, cfg: FrontendConfig, n: int) -> None:
    """Short streams are where the edge replication at both ends meets: every frame must still be numpy's."""
    audio = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    ref, got = Frontend(cfg).features(audio), NativeFrontend(cfg).features(audio)
    assert got.shape == ref.shape == (cfg.channels, 1 + n // cfg.hop_length, cfg.n_mels)
    assert np.abs(got - ref).max() <= TOL  # white noise: every band is within 60 dB of the peak


# ----------------------------------------------------------------------------------------- int8
def _model_input(seed: int, scale: float, zero_point: int) -> ModelInput:
    rng = np.random.default_rng(seed)
    shape = (CFG.channels, CFG.n_mels)
    norm = Normalization(rng.normal(-1, 1, shape).astype(np.float32), rng.uniform(0.2, 2, shape).astype(np.float32))
    return ModelInput(norm, float(np.float32(scale)), zero_point)


def _numpy_rows(feats_nchw: np.ndarray, mi: ModelInput) -> np.ndarray:
    return quantize(mi.normalization.apply(feats_nchw).transpose(1, 2, 0), mi.scale, mi.zero_point, np.int8)


def test_int8_rows_are_numpys_bit_for_bit_on_the_same_features(native: NativeFrontend, audios: list) -> None:
    """Same float features in: the C normalisation and rounding must be numpy's exactly, clipping included."""
    mi = _model_input(1, 0.047058824, -3)
    for audio in audios[:3]:
        feats = native.features(audio)
        assert np.array_equal(native.features_int8(audio, mi), _numpy_rows(feats, mi))
    # exact halfway points (k + 1/2) * scale, and their float neighbours, both signs, past both clip ends
    scale = np.float32(0.05)
    norm = Normalization(np.zeros((2, CFG.n_mels), np.float32), np.ones((2, CFG.n_mels), np.float32))
    mi = ModelInput(norm, float(scale), 1)
    k = np.arange(-140, 140) + 0.5
    mid = (k * np.float64(scale)).astype(np.float32)
    values = np.concatenate([mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf)),
                             np.float32([0.0, -0.0, 1e30, -1e30])])
    values = np.resize(values, (len(values) // 256 + 1) * 256).reshape(-1, 2, CFG.n_mels)
    got = native.quantize(values, mi)
    want = _numpy_rows(values.transpose(1, 0, 2), mi)
    assert np.array_equal(got, want)
    assert (want == 127).any() and (want == -128).any()


def test_clip_features_equal_the_stream_with_one_reused_buffer(native: NativeFrontend, audios: list) -> None:
    """The bench's clip path (three C calls into one buffer): the stream's frames for any length, float or int8,
    longer and shorter clips after each other; a result is a view of the buffer, valid until the next clip."""
    mi = _model_input(4, 0.047058824, -1)
    rows, floats = native.library.clip(native.params(mi)), native.library.clip()
    for audio in (audios[0][:16000], audios[1], audios[0][:16000], audios[0][:100], audios[0][:0],
                  audios[2].astype(np.float64)):
        stream = native.stream(mi)
        assert np.array_equal(rows(audio), np.concatenate([stream.push_int8(audio), stream.flush_int8()]))
        stream = native.stream()
        assert np.array_equal(floats(audio), np.concatenate([stream.push(audio), stream.flush()]))
    first = rows(audios[0][:16000])
    kept = first.copy()
    second = rows(audios[1][:16000])
    assert np.shares_memory(first, second) and np.array_equal(second, native.features_int8(audios[1][:16000], mi))
    assert not np.array_equal(first, kept)


def test_window_stream_gives_the_newest_rows_every_hop(native: NativeFrontend, audios: list) -> None:
    """What an always-on device classifies every hop: the newest 51 int8 rows, equal to the offline rows."""
    from dssdn_edge.runtime.cfeatures import WindowStream

    mi = _model_input(3, 0.047058824, 2)
    audio = np.concatenate(audios[:2])
    offline = native.features_int8(audio, mi)
    ws = WindowStream(native.library, CFG.segment_frames, native.params(mi))
    seen = 0
    for hop in (8000, 100, 33000, 320, 7999, 20000):  # under a frame, over a window, across the buffer's wrap
        for _ in range(3):
            chunk, seen = audio[seen : seen + hop], seen + hop
            ws.push(chunk)
            window = ws.window()
            if ws.total < CFG.segment_frames:
                assert window is None
            else:
                assert np.array_equal(window, offline[ws.total - CFG.segment_frames : ws.total])
    # before the end padding of a flush: the frames whose window is complete, less the delta's look-ahead
    complete = 1 + (len(audio) + CFG.n_fft // 2 - CFG.n_fft) // CFG.hop_length
    assert ws.total == complete - CFG.delta_width // 2 and seen > len(audio)


def test_int8_windows_equal_numpys_on_every_fold5_window(
    native: NativeFrontend, data_root: Path, shared_small_export: Path
) -> None:
    """Audio in, the shipped int8 model's input out, on all 400 fold-5 clips (every window the project cuts).
    Differences may only be float32 round-off landing on the other side of a rounding boundary: one step, where
    numpy's unrounded value is within 0.05 of k + 1/2, and rare (measured: 403 of 43.6 M values, all within
    0.017 of the boundary)."""
    import json

    manifest = json.loads((shared_small_export / "manifest.json").read_text())
    entry = next(a for rel, a in manifest["artifacts"].items() if rel.endswith(".int8.tflite"))
    norm = Normalization.from_dict(manifest["normalization"])
    mi = ModelInput(norm, entry["input"]["scale"], entry["input"]["zero_point"])
    cfg, fe, seg = CFG, Frontend(CFG), CFG.segment_frames
    with (data_root / "metadata.csv").open() as fh:
        names = [r["filename"] for r in csv.DictReader(fh) if r["fold"] == "5"]
    windows = values = differing = 0
    for name in names:
        audio = pad_to_window(load_audio(data_root / name, cfg.sample_rate, min_samples=cfg.hop_length), cfg)
        ref = norm.apply(fe.features(audio)).transpose(1, 2, 0)
        want, got = quantize(ref, mi.scale, mi.zero_point, np.int8), native.features_int8(audio, mi)
        assert got.shape == want.shape
        for s in window_starts(silent_frames(audio, cfg), seg, 25) or [0]:
            diff = want[s : s + seg].astype(np.int16) - got[s : s + seg]
            windows, values = windows + 1, values + diff.size
            bad = diff != 0
            if bad.any():
                unrounded = np.asarray(ref[s : s + seg][bad], np.float64) / mi.scale
                assert np.abs(diff).max() == 1, name
                assert np.abs(unrounded - np.floor(unrounded) - 0.5).max() <= 0.05, name
                differing += int(bad.sum())
    assert len(names) == 400 and windows > 3000
    assert differing <= 2e-5 * values, f"{differing} of {values} int8 values differ"


# ------------------------------------------------------------------------------ build, cache, fallback
def test_library_is_cached_by_key_and_refused_for_another_config(native: NativeFrontend, native_cache: Path) -> None:
    path = build_library(CFG)
    mtime = path.stat().st_mtime_ns
    assert build_library(CFG) == path and path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert path.is_relative_to(native_cache) and not list(path.parent.glob(".build-*"))
    with pytest.raises(LibraryError, match="another front end config"):
        FeatureLibrary(str(path), NO_DELTA.to_dict())
    assert frontend_name(native) == "c" and frontend_name(Frontend(CFG)) == "numpy"


def test_host_build_is_for_this_cpu_and_keeps_the_portable_builds_bits(native: NativeFrontend, audios: list,
                                                                       tmp_path: Path) -> None:
    """The host library is built for this CPU (``-march=native``, what it expanded to in the build key) without
    contracting multiply-adds into FMA: its float features and int8 rows are bit for bit those of the portable
    ``LIB_CFLAGS`` build (SSE2 on x86-64). A cross-build for a Pi gets no -march=native."""
    flags, target = library_flags("cc")
    assert "-ffp-contract=off" in flags
    if native_target("cc") is None:
        pytest.skip("cc does not take -march=native here")
    assert NATIVE_FLAG in flags and target
    sources = library_sources(CFG)
    assert build_key(sources, "cc", flags, target) != build_key(sources, "cc", flags, target + " -mno-avx2")
    assert native.library.path.endswith(LIB_NAME)
    src = tmp_path / "src"
    src.mkdir()
    for name, text in sources.items():
        (src / name).write_text(text)
    portable = tmp_path / "portable.so"
    subprocess.run(["cc", *LIB_CFLAGS, f"-I{src}", str(src / "dssdn_frontend.c"), str(src / "dssdn_features.c"),
                    "-o", str(portable), "-lm"], check=True, capture_output=True)
    base = FeatureLibrary(str(portable), CFG.to_dict())
    mi = _model_input(5, 0.047058824, 3)
    for audio in audios[:4]:
        got, want = native.library.features(audio), base.features(audio)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
        assert np.array_equal(native.features_int8(audio, mi), base.features_int8(audio, base.params(
            mi.normalization.mean, mi.normalization.std, mi.scale, mi.zero_point)))
    if shutil.which(AARCH64_CC) is not None:
        cross_flags, cross_target = library_flags(AARCH64_CC)
        assert NATIVE_FLAG not in cross_flags and "-ffp-contract=off" in cross_flags and cross_target == ""


def test_scalar_core_paths_give_the_vector_paths_bits(native: NativeFrontend, audios: list, tmp_path: Path) -> None:
    """A microcontroller's build takes other code paths (one lane, mel sums and log fused per band, the int8 row
    by a fast loop with a careful pass for a frame holding a tie or an out-of-range value): built here with the
    two switches that pick them, its float features and int8 rows are bit for bit the host's, careful pass too."""
    sources = library_sources(CFG)
    src = tmp_path / "src"
    src.mkdir()
    for name, text in sources.items():
        (src / name).write_text(text)
    scalar = tmp_path / "scalar.so"
    subprocess.run(["cc", *LIB_CFLAGS, "-DDSSDN_LANES=1", "-DDSSDN_VECTOR_QUANTIZE=0", f"-I{src}",
                    str(src / "dssdn_frontend.c"), str(src / "dssdn_features.c"), "-o", str(scalar), "-lm"],
                   check=True, capture_output=True)
    lib = FeatureLibrary(str(scalar), CFG.to_dict())
    # a usual input, and one whose every value is out of the fast path's range (the careful pass, every frame)
    for mi in (_model_input(5, 0.047058824, 3), _model_input(6, 1e-6, -7)):
        params = lib.params(mi.normalization.mean, mi.normalization.std, mi.scale, mi.zero_point)
        for audio in audios[:2]:
            assert np.array_equal(lib.features(audio).view(np.uint32), native.library.features(audio).view(np.uint32))
            assert np.array_equal(lib.features_int8(audio, params), native.features_int8(audio, mi))
    scale = np.float32(0.05)
    norm = Normalization(np.zeros((2, CFG.n_mels), np.float32), np.ones((2, CFG.n_mels), np.float32))
    mi = ModelInput(norm, float(scale), 1)
    mid = ((np.arange(-140, 140) + 0.5) * np.float64(scale)).astype(np.float32)
    values = np.resize(np.concatenate([mid, np.nextafter(mid, np.float32(np.inf)), np.float32([np.nan, 1e30])]),
                       (3, 2, CFG.n_mels))
    got = lib.quantize(values, lib.params(norm.mean, norm.std, mi.scale, mi.zero_point))
    assert np.array_equal(got, native.quantize(values, mi))


def test_no_compiler_falls_back_to_numpy_with_one_line(
    native_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("DSSDN_CACHE", str(tmp_path / "cache"))
    cfg = FrontendConfig(n_mels=96, split_band=48)  # not built in this process yet
    with pytest.raises(NativeUnavailable, match="no C compiler"):
        make_frontend(cfg, "c")
    first, second = make_frontend(cfg, "auto"), make_frontend(cfg)
    assert type(first) is Frontend and type(second) is Frontend
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "using the numpy front end" in err[0] and "no-such-cc" in err[0]
    monkeypatch.setenv("DSSDN_FRONTEND", "numpy")
    assert type(make_frontend(cfg)) is Frontend


@pytest.mark.skipif(shutil.which(AARCH64_CC) is None, reason=f"{AARCH64_CC} not installed (gcc-aarch64-linux-gnu)")
def test_aarch64_cross_build_is_an_arm64_shared_library(native_cache: Path) -> None:
    path = build_library(CFG, cc=AARCH64_CC)
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    assert "aarch64" in path.parent.name


def test_emitted_mcu_sources_compile_strictly_with_the_input_tables(tmp_path: Path) -> None:
    """What ``mcu/`` gets: the features sources and one model's input tables, compiled with -Werror -Wconversion
    into a program that links (the tables header included once, as the README of the header says)."""
    mi = _model_input(2, 0.047058824, 0)
    written = emit_c(CFG, tmp_path, normalization=mi.normalization, input_quant=(mi.scale, mi.zero_point))
    assert INPUT_TABLES_HEADER in {p.name for p in written}
    main = tmp_path / "main.c"
    main.write_text('#include "dssdn_input_tables.h"\nstatic dssdn_features_t st;\n'
                    "int main(void) {\n    static const float x[DSSDN_HOP];\n"
                    "    static int8_t row[DSSDN_FRAME_VALUES * DSSDN_FEATURES_FLUSH_FRAMES];\n"
                    "    dssdn_features_init(&st, &dssdn_input_params);\n"
                    "    return dssdn_features_push(&st, x, DSSDN_HOP, 0, row, 1) < 0;\n}\n")
    import subprocess

    cmd = ["cc", *CFLAGS, "-Wconversion", f"-I{tmp_path}", str(main), str(tmp_path / "dssdn_frontend.c"),
           str(tmp_path / "dssdn_features.c"), "-o", str(tmp_path / "prog")]
    subprocess.run(cmd, check=True, capture_output=True)
    assert subprocess.run([str(tmp_path / "prog")]).returncode == 0
    text = (tmp_path / INPUT_TABLES_HEADER).read_text()
    assert "GENERATED" in text and f"{np.float32(mi.scale):.8g}"[:6] in text


# ------------------------------------------------------------------------------------ predict and stream
def _int8_tflite(export: Path) -> Path:
    return next(p for p in sorted(export.glob("*.int8.tflite")) if not p.name.endswith(".packed.tflite"))


def test_stream_int8_path_gives_the_float_paths_bits(native: NativeFrontend, shared_small_export: Path,
                                                    real_clips: list[Path]) -> None:
    """The streaming classifier feeds an int8 .tflite the C int8 rows raw; the same C features normalised and
    quantised by numpy and the runtime (the float path) must give the very same probabilities, hop by hop."""
    from dssdn_edge.predict import Predictor
    from dssdn_edge.stream import StreamClassifier

    pred = Predictor.from_path(_int8_tflite(shared_small_export), frontend="c")
    assert frontend_name(pred.frontend) == "c"
    model = pred.run
    fast = StreamClassifier(model, pred.frontend, pred.normalization, pred.labels)
    slow = StreamClassifier(lambda x: model(x), pred.frontend, pred.normalization, pred.labels)  # no .invoke
    assert fast.int8_path and not slow.int8_path
    audio = load_audio(real_clips[5], CFG.sample_rate)
    got, want = [], []
    for i in range(0, len(audio), 7000):
        got += fast.push(audio[i : i + 7000])
        want += slow.push(audio[i : i + 7000])
    got, want = got + fast.flush(), want + slow.flush()
    assert len(got) == len(want) >= 8
    for g, w in zip(got, want, strict=True):
        assert (g.first_frame, g.class_index) == (w.first_frame, w.class_index)
        assert np.array_equal(g.probabilities, w.probabilities)


def test_predict_with_c_agrees_with_numpy_on_fold5_clips(shared_small_export: Path, data_root: Path,
                                                         native_cache: Path) -> None:
    """Two fold-5 clips per class (100): the C front end's clip labels are numpy's (the whole fold, 400 clips:
    benchmarks/frontend_equality.py, 100 % top-1 agreement and the same accuracy, 68.25 %)."""
    from dssdn_edge.predict import Predictor

    with (data_root / "metadata.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "5"]
    chosen: dict[str, list[str]] = {}
    for r in rows:
        if len(chosen.setdefault(r["target"], [])) < 2:
            chosen[r["target"]].append(r["filename"])
    names = [n for pair in chosen.values() for n in pair]
    model = _int8_tflite(shared_small_export)
    tops = {}
    for kind in ("numpy", "c"):
        pred = Predictor.from_path(model, frontend=kind)
        assert frontend_name(pred.frontend) == kind
        tops[kind] = [int(np.argmax(pred.logits(data_root / n)[0])) for n in names]
    agree = np.mean(np.array(tops["numpy"]) == np.array(tops["c"]))
    assert len(names) == 100 and agree >= 0.99, agree
