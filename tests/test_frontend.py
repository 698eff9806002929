"""The numpy front end against librosa (the reference), and streaming against offline."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from conftest import stream_chunked

from dssdn_edge.audio import load_audio
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization, SparseFilterbank, mel_filterbank


def librosa_mel_power(y: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    return librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        window="hann", center=True, pad_mode="constant", power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=cfg.fmax, htk=True, norm=None, dtype=np.float64,
    ).T


def test_filterbank_matches_librosa() -> None:
    cfg = FrontendConfig()
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                              fmax=cfg.fmax, htk=True, norm=None, dtype=np.float64)
    ours = mel_filterbank(cfg)
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    nz = ref > 0
    assert np.allclose(ours[nz], ref[nz], rtol=1e-4, atol=0)


def test_sparse_filterbank_round_trips_and_is_sparse() -> None:
    fe = Frontend()
    dense = mel_filterbank(fe.config)
    sparse = SparseFilterbank.from_dense(dense)
    assert np.array_equal(sparse.to_dense(), dense)
    assert (sparse.length > 0).all(), "every mel band covers at least one FFT bin"
    assert sparse.weights.size < dense.size / 20


def test_logmel_matches_librosa_on_real_clips(real_clips) -> None:
    fe = Frontend()
    cfg = fe.config
    assert len(real_clips) >= 20
    for path in real_clips:
        y = load_audio(path, cfg.sample_rate)
        ours = fe.logmel(y)
        ref_power = librosa_mel_power(y, cfg)
        ref = np.log10(ref_power + cfg.log_eps)
        assert ours.shape == ref.shape == (1 + len(y) // cfg.hop_length, cfg.n_mels)
        # relative on the mel power (where it is above the log floor) and on the log values
        ours_power = 10.0**ours - cfg.log_eps
        big = ref_power > 1e-6
        assert np.all(np.abs(ours_power[big] - ref_power[big]) <= 1e-4 * ref_power[big]), path
        assert np.all(np.abs(ours - ref) <= 1e-4 * np.maximum(np.abs(ref), 1e-2)), path


def test_delta_matches_librosa_in_the_interior(real_clips) -> None:
    fe = Frontend()
    y = load_audio(real_clips[0], 16000)
    feats = fe.features(y)
    ref = librosa.feature.delta(feats[0].T.astype(np.float64), width=5, order=1).T
    assert np.allclose(feats[1][2:-2], ref[2:-2], atol=1e-4)


def test_one_second_gives_51_frames_and_split_bands() -> None:
    fe = Frontend()
    feats = fe.features(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    assert feats.shape == (2, 51, 128) and feats.dtype == np.float32
    low, high = fe.split(feats)
    assert low.shape == high.shape == (2, 51, 64)
    assert np.array_equal(np.concatenate([low, high], axis=-1), feats)
    assert fe.config.segment_frames == 51


@pytest.mark.parametrize("cfg", [FrontendConfig(), FrontendConfig(delta_width=0),
                                 FrontendConfig(n_fft=512, hop_length=160, n_mels=64, split_band=24)])
def test_streaming_equals_offline_for_random_chunks(real_clips, cfg: FrontendConfig) -> None:
    fe = Frontend(cfg)
    rng = np.random.default_rng(1)
    for path in real_clips[:4]:
        y = load_audio(path, cfg.sample_rate)[: int(rng.integers(2000, 80000))]
        offline = fe.features(y)
        online = stream_chunked(fe.stream(), y, rng, 1, 4001)
        assert online.shape == offline.shape
        assert np.abs(online - offline).max() <= 1e-6


def test_streaming_single_samples_and_tiny_input() -> None:
    fe = Frontend()
    y = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    stream = fe.stream()
    outs = [stream.push(y[i : i + 1]) for i in range(len(y))] + [stream.flush()]
    assert np.abs(np.concatenate(outs).transpose(1, 0, 2) - fe.features(y)).max() <= 1e-6
    with pytest.raises(RuntimeError):
        stream.push(y)


def test_config_round_trip_and_validation() -> None:
    cfg = FrontendConfig(n_mels=64, split_band=20)
    assert FrontendConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"n_fft": 1000}, {"hop_length": 0}, {"fmax": 9000.0}, {"delta_width": 4}, {"split_band": 128}):
        with pytest.raises(ValueError):
            FrontendConfig(**bad)
    with pytest.raises(ValueError):
        FrontendConfig.from_dict({"n_fft": 1024, "bogus": 1})


def test_normalization_uses_stored_stats_not_the_clip() -> None:
    cfg = FrontendConfig()
    feats = np.random.default_rng(3).standard_normal((10, 2, 51, 128)).astype(np.float32) * 3 + 1
    norm = Normalization.fit(feats)
    assert np.allclose(norm.apply(feats).mean(axis=(0, 2)), 0, atol=1e-4)
    # a single quiet clip is not re-centred on itself
    one = norm.apply(feats[0] - 5)
    assert one.mean() < -1
    assert Normalization.from_dict(norm.to_dict()).mean.shape == (cfg.channels, cfg.n_mels)
