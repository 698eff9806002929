"""Property tests: any length, rate, channel count, dtype, NaN/Inf or silence — a result or an
``AudioError`` naming the file, never a traceback; and the front end's invariants on arbitrary audio."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dssdn_edge.audio import load_audio, to_mono_at_rate
from dssdn_edge.audio_stream import file_windows
from dssdn_edge.errors import AudioError
from dssdn_edge.frontend import Frontend

FE = Frontend()
RATES = st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000])
SUBTYPES = st.sampled_from([("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"),
                            ("WAV", "PCM_U8")])
KINDS = st.sampled_from(["noise", "silence", "tone", "clipped", "nan", "inf", "tiny"])


def make(kind: str, n: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, channels)).astype(np.float32) * 0.1
    if kind == "silence":
        x[:] = 0
    elif kind == "tone":
        x[:] = np.sin(np.arange(n) * 0.05)[:, None] * 0.5
    elif kind == "clipped":
        x = np.clip(x * 100, -1, 1)
    elif kind == "tiny":
        x *= 1e-6
    elif kind in ("nan", "inf") and n:
        x[rng.integers(n)] = np.nan if kind == "nan" else np.inf
    return x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=KINDS, n=st.integers(0, 40000), channels=st.integers(1, 3), rate=RATES, fmt=SUBTYPES,
       seed=st.integers(0, 2**16))
def test_any_file_loads_or_fails_with_one_named_error(kind, n, channels, rate, fmt, seed) -> None:
    x = make(kind, n, channels, seed)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"a.{fmt[0].lower()}"
        try:
            sf.write(str(path), x, rate, format=fmt[0], subtype=fmt[1])
        except Exception:  # noqa: BLE001 - a file soundfile itself cannot write (FLAC of NaN, 0 frames): no case
            return
        try:
            audio = load_audio(path, 16000, min_samples=320)
        except AudioError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        else:
            assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
            assert abs(len(audio) - round(n * 16000 / rate)) <= 1
        try:
            windows = [b.windows for b in file_windows(path, FE, 25)]
        except AudioError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        else:
            w = np.concatenate(windows)
            assert w.shape[1:] == (2, 51, 128) and np.isfinite(w).all()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30000), channels=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64, np.int16, np.int32]), rate=RATES,
       seed=st.integers(0, 2**16))
def test_arrays_of_any_dtype_and_rate_are_mono_float32(n, channels, dtype, rate, seed) -> None:
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((n, channels)) * (1000 if np.issubdtype(dtype, np.integer) else 0.1)).astype(dtype)
    try:
        audio = to_mono_at_rate(data, rate, 16000, name="array", min_samples=1)
    except AudioError as exc:
        assert str(exc).startswith("array:")
    else:
        assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20000), scale=st.floats(0, 10), seed=st.integers(0, 2**16))
def test_front_end_is_finite_bounded_and_streams_like_offline(n, scale, seed) -> None:
    audio = np.random.default_rng(seed).standard_normal(n).astype(np.float32) * np.float32(scale)
    feats = FE.features(audio)
    assert feats.shape == (2, 1 + n // 320, 128) and np.isfinite(feats).all()
    assert feats[0].min() >= np.log10(FE.config.log_eps) - 1e-6  # never below the log floor
    stream = FE.stream()
    cuts = np.sort(np.random.default_rng(seed + 1).integers(0, n + 1, 3))
    parts = [stream.push(p) for p in np.split(audio, cuts)] + [stream.flush()]
    streamed = np.concatenate(parts).transpose(1, 0, 2)
    np.testing.assert_allclose(streamed, feats, rtol=1e-5, atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=40))
def test_any_label_prints_on_one_line_and_only_printable_labels_pass_the_validator(text) -> None:
    from dssdn_edge.validate import label_problem, safe_label

    shown = safe_label(text)
    assert shown.isprintable() and "\n" not in shown and "\r" not in shown
    ok = label_problem([text, text + "x"]) is None
    assert ok == (text.isprintable() and bool(text.strip()))


PARTS = st.sampled_from(["a", "b", "..", ".", "", "/", "~", "x.tflite", "/etc/passwd", "../other"])


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(PARTS, min_size=1, max_size=6))
def test_confined_names_never_leave_their_folder(parts) -> None:
    from dssdn_edge.errors import DssdnError
    from dssdn_edge.paths import confined, lexically_confined

    rel = "/".join(parts)
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "export"
        base.mkdir()
        for fn in (confined, lexically_confined):
            try:
                got = fn(base, rel, "manifest.json")
            except DssdnError as exc:
                assert "\n" not in str(exc) and str(exc).startswith("manifest.json:")
            else:
                assert got.resolve() == base.resolve() or base.resolve() in got.resolve().parents
