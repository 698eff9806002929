"""Streaming: the library's StreamClassifier and the device runner's StreamingFeatures see exactly the windows
that the offline front end cuts from the same audio, one per hop, and label them with a real model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dssdn_edge.audio import load_audio
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization
from dssdn_edge.pretrained import create_model
from dssdn_edge.runtime import logmel
from dssdn_edge.stream import StreamClassifier


class Recorder:
    """A real (random-weight) dssdn-small in torch that also keeps every window it was given."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = create_model("small").eval()
        self.windows: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.windows.append(x[0].copy())
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()


def _norm(cfg: FrontendConfig) -> Normalization:
    rng = np.random.default_rng(0)
    shape = (cfg.channels, cfg.n_mels)
    return Normalization(rng.normal(-3, 1, shape).astype(np.float32), rng.uniform(0.5, 2, shape).astype(np.float32))


def _offline_windows(audio: np.ndarray, cfg: FrontendConfig, norm: Normalization, hop_frames: int) -> np.ndarray:
    feats = norm.apply(Frontend(cfg).features(audio))
    t = cfg.segment_frames
    starts = range(0, feats.shape[1] - t + 1, hop_frames)
    return np.stack([feats[:, s : s + t] for s in starts])


def test_stream_classifier_windows_equal_offline(real_clips) -> None:
    cfg = FrontendConfig()
    norm = _norm(cfg)
    audio = load_audio(real_clips[0], cfg.sample_rate)[: int(3.7 * cfg.sample_rate)]
    rec = Recorder()
    clf = StreamClassifier(rec, Frontend(cfg), norm, [f"c{i}" for i in range(50)], hop_seconds=0.5)
    rng = np.random.default_rng(3)
    hops, i = [], 0
    while i < len(audio):
        n = int(rng.integers(1, 5000))
        hops += clf.push(audio[i : i + n])
        i += n
    ref = _offline_windows(audio, cfg, norm, clf.hop_frames)
    assert len(hops) == len(ref) >= 5
    assert [h.first_frame for h in hops] == [k * clf.hop_frames for k in range(len(hops))]
    np.testing.assert_allclose(np.stack(rec.windows[: len(ref)]), ref, rtol=0, atol=1e-5)
    logits = rec.model(torch.from_numpy(ref)).detach().numpy()
    assert [h.class_index for h in hops] == list(logits.argmax(1))
    tail = clf.flush()
    assert len(tail) <= 1 and all(h.first_frame > hops[-1].first_frame for h in tail)


def test_runner_streaming_features_equal_library_windows(real_clips) -> None:
    cfg = FrontendConfig()
    norm = _norm(cfg)
    audio = load_audio(real_clips[1], cfg.sample_rate)[: 3 * cfg.sample_rate]
    fe = logmel.LogMel(json.loads(json.dumps(cfg.to_dict())))
    stream = logmel.StreamingFeatures(fe, norm.mean[:, None, :], norm.std[:, None, :])
    hop = cfg.sample_rate // 2
    got = []
    for k in range(len(audio) // hop):
        stream.push(audio[k * hop : (k + 1) * hop])
        if stream.window() is not None:
            got.append(((k + 1) * hop, stream.window().copy()))
    offline = norm.apply(Frontend(cfg).features(audio))
    assert len(got) >= 3
    t = cfg.segment_frames
    for pushed, w in got:  # frames finished by `pushed` samples, less the delta's look-ahead
        end = 1 + (pushed - cfg.n_fft // 2) // cfg.hop_length - cfg.delta_width // 2
        np.testing.assert_allclose(w, offline[:, end - t : end], rtol=0, atol=1e-5)


def test_bad_hop_is_refused() -> None:
    with pytest.raises(ValueError, match="hop"):
        StreamClassifier(Recorder(), Frontend(), Normalization.identity(FrontendConfig()), ["a"], hop_seconds=0.001)
