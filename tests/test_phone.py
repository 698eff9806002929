"""The phone file ``<name>.audio.tflite``: a 1-s window's audio + its context in, labelled scores out, checked
with MediaPipe.

Real throughout: one export of the shipped dssdn-small (shared by the session), real ESC-50 clips, LiteRT,
and MediaPipe's own AudioClassifier (the client a phone app uses), compared with ``dssdn-edge predict`` on
the very same windows. The input is a window plus the context its frames and delta read
(``FrontendConfig.context_samples``, 18304 samples at the defaults), so its in-graph features are the
features-in path's for that window; only the delta of a clip's first and last frames differs (measured).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

os.environ.setdefault("DSSDN_PROGRESS", "0")

from dssdn_edge import runtime  # noqa: E402
from dssdn_edge.audio import load_audio  # noqa: E402
from dssdn_edge.audio_stream import file_windows  # noqa: E402
from dssdn_edge.bench import runner as bench_runner  # noqa: E402
from dssdn_edge.cli import main  # noqa: E402
from dssdn_edge.data import Dataset  # noqa: E402
from dssdn_edge.errors import ExportError  # noqa: E402
from dssdn_edge.export import metadata as md  # noqa: E402
from dssdn_edge.export.manifest import load_manifest  # noqa: E402
from dssdn_edge.export.metadata import FEATURES_NAME  # noqa: E402
from dssdn_edge.export.phone import convert_frontend  # noqa: E402
from dssdn_edge.export.quality import FRONTEND_RANGE, FRONTEND_TOL, NORM_SLACK, delta_gain, frontend_error  # noqa: E402
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization  # noqa: E402
from dssdn_edge.predict import Predictor  # noqa: E402
from dssdn_edge.windows import audio_windows, clip_starts, context_windows, edge_windows, pad_to_window  # noqa: E402

NAME = "dssdn-small"
MP_CLIPS = 60  # fold-5 clips whose windows are given to MediaPipe (up to 9 each, minus digital silence)
MP_AGREEMENT = 0.99  # the acceptance
MIB = 1 << 20
STRIDE = 25  # predict's window stride (frames)


def _mediapipe_audio():
    try:
        from mediapipe.tasks.python import audio
        from mediapipe.tasks.python.components.containers import audio_data
        from mediapipe.tasks.python.core import base_options
    except ImportError as exc:  # the test extra installs it; a platform without a wheel skips
        pytest.skip(f"mediapipe is not installed here ({exc}); pip install -e '.[test]'")
    return audio, audio_data, base_options


@pytest.fixture(scope="session")
def phone_export(shared_small_export, data_root) -> Path:
    """The session's one full export of the shipped dssdn-small (phone file included)."""
    return shared_small_export


@pytest.fixture(scope="session")
def manifest(phone_export) -> dict:
    return load_manifest(phone_export)


@pytest.fixture(scope="session")
def entry(manifest) -> dict:
    return manifest["artifacts"][f"{NAME}.audio.tflite"]


def _fold5(n: int) -> list:
    clips = Dataset.load().split("test")
    return clips[:: max(1, len(clips) // n)][:n]


def _scores(result, n: int) -> np.ndarray:
    out = np.zeros(n)
    for c in result.classifications[0].categories:
        out[c.index] = c.score
    return out


def _window_logits(predictor: Predictor, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(starts, per-window logits or log-scores) of one file, as ``predict`` computes them (streamed)."""
    parts = list(predictor.window_logits(path))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ------------------------------------------------------------------------------------------- MediaPipe
def test_mediapipe_audio_classifier_agrees_with_predict(phone_export, manifest, entry):
    """MediaPipe is fed each window's context-sized piece (the window's audio + the context its frames read,
    zeros outside the clip: what an app passes per classification); ``dssdn-edge predict`` streams the same
    clip files and cuts the same pieces. Per window, MediaPipe's top-1 must equal predict's with the phone
    file on >= 99 % of them, and the features-in file inside it (numpy front end on the whole clip) on >= 99 %
    of the interior windows (identical features); the windows that reach a clip's edge are measured apart.
    Per clip, the CLI's label must be the top-1 of MediaPipe's mean log-scores."""
    audio, audio_data, base_options = _mediapipe_audio()
    model = phone_export / f"{NAME}.audio.tflite"
    cfg = FrontendConfig.from_dict(manifest["frontend"])
    labels = manifest["labels"]
    phone = Predictor.from_path(model)
    body = Predictor.from_path(phone_export / entry["body"].split(" ")[0])
    opts = audio.AudioClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(model)),
        running_mode=audio.RunningMode.AUDIO_CLIPS,
    )
    clips = _fold5(MP_CLIPS)
    mp_top, phone_top, body_top, edge, ties, mp_clip = [], [], [], [], 0, []
    with audio.AudioClassifier.create_from_options(opts) as classifier:
        for clip in clips:
            signal = pad_to_window(load_audio(clip.path, cfg.sample_rate), cfg)
            starts = clip_starts(signal, cfg, STRIDE)
            pieces = context_windows(signal, starts, cfg)
            p_starts, p_logs = _window_logits(phone, clip.path)
            b_starts, b_logits = _window_logits(body, clip.path)
            assert list(p_starts) == list(b_starts) == starts  # predict cuts the very windows cut here
            mp = []
            for piece in pieces:
                results = classifier.classify(audio_data.AudioData.create_from_array(piece, cfg.sample_rate))
                assert len(results) == 1  # a piece of exactly the input length is one classification
                cats = results[0].classifications[0].categories
                assert len(cats) == len(labels) and all(c.category_name == labels[c.index] for c in cats)
                mp.append(_scores(results[0], len(labels)))
            mp = np.stack(mp)
            for row, p, b in zip(mp, p_logs, b_logits, strict=True):
                top, mine = int(row.argmax()), int(p.argmax())
                tie = top != mine and row[mine] == row[top]  # equal scores: both are MediaPipe's top-1
                ties += tie
                mp_top.append(mine if tie else top)
                phone_top.append(mine)
                body_top.append(int(b.argmax()))
            edge.extend(edge_windows(starts, len(signal), cfg))
            mp_clip.append(labels[int(np.log(np.maximum(mp, 1e-38)).mean(axis=0).argmax())])
    mp_top, phone_top, body_top, edge = map(np.asarray, (mp_top, phone_top, body_top, edge))
    assert len(mp_top) >= 5 * MP_CLIPS and edge.any() and (~edge).any()
    vs_phone = float((mp_top == phone_top).mean())
    vs_body_inner = float((mp_top == body_top)[~edge].mean())
    vs_body_edge = float((mp_top == body_top)[edge].mean())
    print(f"\nMediaPipe vs predict (phone file) top-1: {vs_phone:.2%} of {len(mp_top)} windows ({ties} ties); "
          f"vs the features-in {body.source.rsplit('/', 1)[-1]}: interior {vs_body_inner:.2%} of {(~edge).sum()}, "
          f"clip-edge {vs_body_edge:.2%} of {edge.sum()}")
    assert vs_phone >= MP_AGREEMENT and ties <= len(mp_top) // 100
    assert vs_body_inner >= MP_AGREEMENT

    result = CliRunner().invoke(main, ["predict", *(str(c.path) for c in clips), "--model", str(model), "--json",
                                       "--top-k", "1"])
    assert result.exit_code == 0, result.output[-500:]
    cli = [p["top"][0]["label"] for p in json.loads(result.output)]
    assert float(np.mean([a == b for a, b in zip(cli, mp_clip, strict=True)])) >= MP_AGREEMENT


def test_mediapipe_cuts_a_recording_into_consecutive_inputs(phone_export, manifest):
    """Given a whole recording, MediaPipe cuts consecutive pieces of the input length (no overlap) and scores
    each exactly as LiteRT does: result k covers the 1-s window in the middle of samples [k·L, (k+1)·L)."""
    audio, audio_data, base_options = _mediapipe_audio()
    model = phone_export / f"{NAME}.audio.tflite"
    cfg = FrontendConfig.from_dict(manifest["frontend"])
    n = cfg.context_samples
    opts = audio.AudioClassifierOptions(base_options=base_options.BaseOptions(model_asset_path=str(model)))
    clip = _fold5(1)[0]
    signal = load_audio(clip.path, cfg.sample_rate)[: 2 * n]
    with audio.AudioClassifier.create_from_options(opts) as classifier:
        results = classifier.classify(audio_data.AudioData.create_from_array(signal, cfg.sample_rate))
    assert [r.timestamp_ms for r in results] == [0, 1000 * n // cfg.sample_rate]
    ours = runtime.load(model)(signal.reshape(2, -1))
    for res, row in zip(results, ours, strict=True):
        assert np.abs(_scores(res, len(row)) - row).max() <= 1e-5
        assert abs(row.sum() - 1.0) <= 1e-5  # softmax scores


def test_metadata_reads_back_with_the_official_schema(phone_export, manifest, entry):
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    except ImportError as exc:
        pytest.skip(f"the official metadata schema module comes with mediapipe ({exc})")
    data = (phone_export / f"{NAME}.audio.tflite").read_bytes()
    buf = md.metadata_buffer(data)
    assert buf is not None and fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    meta = fb.ModelMetadata.GetRootAs(buf, 0)
    assert meta.Name().decode() == NAME and meta.MinParserVersion().decode() == "1.3.0"
    assert meta.Version().decode().startswith("dssdn-edge ") and meta.Author()
    assert "ESC-50" in meta.License().decode() and meta.Description()
    sub = meta.SubgraphMetadata(0)
    inp, out = sub.InputTensorMetadata(0), sub.OutputTensorMetadata(0)
    assert inp.Content().ContentPropertiesType() == fb.ContentProperties.AudioProperties
    props = fb.AudioProperties()
    table = inp.Content().ContentProperties()
    props.Init(table.Bytes, table.Pos)
    assert (props.SampleRate(), props.Channels()) == (manifest["frontend"]["sample_rate"], 1)
    labels_file = out.AssociatedFiles(0)
    assert labels_file.Type() == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    assert labels_file.Name().decode() == md.LABELS_FILE
    text = md.read_associated_files(data)[md.LABELS_FILE].decode()
    assert text.split("\n") == manifest["labels"]
    assert entry["metadata"]["writer"] == md.WRITER
    cfg = FrontendConfig.from_dict(manifest["frontend"])
    assert entry["input"]["shape"] == [1, cfg.context_samples] == [1, 18304]  # derived; 18304 at the defaults
    length = entry["input_length"]
    assert length["samples"] == cfg.context_samples and length["window_samples"] == cfg.segment_samples
    assert length["context_before_samples"] + length["window_samples"] + length["context_after_samples"] == 18304
    assert "window + its context" in length["meaning"] and str(cfg.context_samples) in inp.Description().decode()


# ---------------------------------------------------------------------------------------- front end
def test_in_graph_features_match_numpy_on_real_audio(phone_export, manifest, entry, real_clips):
    """Every window (stride 25) of 24 real clips: the in-graph log-mel of every input frame equals numpy on the
    same samples, and the window's normalised features equal the window cut from the whole clip's numpy
    features — the features-in path's — within the C twin's float32 bound (1e-4 log10 units on bands within
    60 dB of their frame's peak; deltas 0.6 of it): interior windows entirely, windows reaching a clip's edge
    except the delta of the clip's first and last 2 frames (edge replication offline), measured here."""
    cfg = FrontendConfig.from_dict(manifest["frontend"])
    norm = Normalization.from_dict(manifest["normalization"])
    data = (phone_export / f"{NAME}.audio.tflite").read_bytes()
    runner = runtime.load(data, kind="audio-tflite", delegate="none", preserve_all_tensors=True)
    fe = Frontend(cfg)
    w, seg = cfg.delta_width // 2, cfg.segment_frames
    std, mean = norm.std.astype(np.float64)[:, None, :], norm.mean.astype(np.float64)[:, None, :]
    worst = {"interior mel": 0.0, "interior delta": 0.0, "edge mel": 0.0, "edge delta": 0.0}
    clip_edge_err, clip_edge_delta, n_windows, n_edge = [], [], 0, 0
    all_pieces = []
    for path in real_clips:
        signal = pad_to_window(load_audio(path, cfg.sample_rate), cfg)
        ref = fe.features(signal).astype(np.float64)  # the whole clip, as the features-in path
        n = ref.shape[1]
        near = ref[0] >= ref[0].max(axis=1, keepdims=True) - FRONTEND_RANGE
        rows = np.clip(np.arange(n)[:, None] + np.arange(-w, w + 1)[None, :], 0, n - 1)
        delta_ok = near[rows].all(axis=1)  # (N, M): all frames the delta reads are within 60 dB
        at_edge = (np.arange(n) < w) | (np.arange(n) >= n - w)
        starts = clip_starts(signal, cfg, STRIDE)
        pieces = context_windows(signal, starts, cfg)
        all_pieces.append(pieces)
        for s, x in zip(starts, pieces, strict=True):
            runner(x[None])
            got = runner.tensor(FEATURES_NAME)[0].transpose(2, 0, 1).astype(np.float64) * std + mean  # (C, T, M)
            err = np.abs(got - ref[:, s : s + seg])
            edge = s - w < 0 or s + seg + w > n
            kind = "edge" if edge else "interior"
            n_windows += 1
            n_edge += edge
            inner = ~at_edge[s : s + seg]
            worst[f"{kind} mel"] = max(worst[f"{kind} mel"], float(err[0][near[s : s + seg]].max()))
            worst[f"{kind} delta"] = max(worst[f"{kind} delta"],
                                         float(err[1][delta_ok[s : s + seg] & inner[:, None]].max()))
            if edge:
                clip_edge_err.append(err[1][~inner])
                clip_edge_delta.append(np.abs(ref[1][s : s + seg][~inner]))
    assert n_windows >= 150 and 0 < n_edge < n_windows
    errors = frontend_error(data, cfg, np.concatenate(all_pieces))  # log-mel of every input frame
    edge_err, edge_ref = np.concatenate(clip_edge_err), np.concatenate(clip_edge_delta)
    print(f"\n{n_windows} windows ({n_edge} reach a clip edge): log-mel of every input frame "
          f"{errors['max_abs_log10_error_within_60db']:.2g}; features max |err| {worst}; delta at the clips' first/"
          f"last {w} frames vs edge replication: max {edge_err.max():.3g}, mean {edge_err.mean():.3g} log10/frame "
          f"(mean |offline delta| there {edge_ref.mean():.3g}; delta std {float(np.median(norm.std[1])):.3g})")
    assert errors["max_abs_log10_error_within_60db"] <= FRONTEND_TOL, errors
    for kind in ("interior", "edge"):
        assert worst[f"{kind} mel"] <= FRONTEND_TOL + NORM_SLACK, worst
        assert worst[f"{kind} delta"] <= delta_gain(cfg) * FRONTEND_TOL + NORM_SLACK, worst  # 0.6 x
    real = entry["frontend_check"]["real"]  # the exporter's own measurement on fold-5 clips says the same
    assert real["within_tolerance"] and real["interior_windows"] > 0 and real["clip_edge_windows"] > 0
    assert real["clip_edge_delta"]["frames"] >= w * real["clip_edge_windows"] > 0  # w frames at each clip edge


def test_streamed_context_windows_equal_the_offline_cut(real_clips, tmp_path):
    """``predict`` cuts the phone file's inputs while streaming a file in blocks (bounded memory): they equal
    the offline cut of the whole clip, for small odd blocks, a resampled file and a clip shorter than 1 s."""
    cfg = FrontendConfig()
    fe = Frontend(cfg)
    short = tmp_path / "short.wav"
    sound = load_audio(real_clips[0], cfg.sample_rate)
    loud = max(int(np.abs(sound).argmax()) - 4500, 0)
    sf.write(short, sound[loud : loud + 9000], cfg.sample_rate, subtype="FLOAT")
    resampled = tmp_path / "resampled.wav"
    sf.write(resampled, load_audio(real_clips[1], 22050), 22050, subtype="FLOAT")
    for path in (*real_clips[2:6], short, resampled):
        batches = list(file_windows(path, fe, STRIDE, batch=3, block_seconds=0.37, with_audio=True))
        starts = np.concatenate([b.starts for b in batches])
        pieces = np.concatenate([b.audio for b in batches])
        signal = load_audio(path, cfg.sample_rate)
        assert list(starts) == clip_starts(signal, cfg, STRIDE)
        assert pieces.shape[1] == cfg.context_samples
        assert np.array_equal(pieces, audio_windows(signal, cfg, STRIDE)), path.name


@pytest.mark.parametrize(
    "cfg",
    [FrontendConfig(n_fft=512, hop_length=160, n_mels=64, split_band=32), FrontendConfig(delta_width=0),
     FrontendConfig(delta_width=7)],
    ids=["n_fft512-hop160-64mels", "no-delta", "delta7"],
)
def test_front_end_graph_is_generic(cfg, real_clips):
    """Other front-end configurations convert too, take their own context length and give the whole clip's
    numpy features of an interior window (identity normalisation)."""
    front = convert_frontend(cfg, Normalization.identity(cfg))
    runner = _plain_runner(front)
    fe = Frontend(cfg)
    w = cfg.delta_width // 2
    worst_mel = worst_delta = 0.0
    for p in real_clips[:6]:
        signal = load_audio(p, cfg.sample_rate)
        s = clip_starts(signal, cfg, STRIDE)[1]  # the second window: inside the clip
        x = context_windows(signal, [s], cfg)
        assert x.shape[1] == (cfg.segment_frames - 1 + 2 * w) * cfg.hop_length + cfg.n_fft
        got = runner(x)[0].transpose(2, 0, 1).astype(np.float64)
        whole = fe.features(signal).astype(np.float64)
        win = slice(s, s + cfg.segment_frames)
        assert got.shape == whole[:, win].shape
        near = whole[0] >= whole[0].max(axis=1, keepdims=True) - FRONTEND_RANGE
        worst_mel = max(worst_mel, float(np.abs(got[0] - whole[0, win])[near[win]].max()))
        if w:
            rows = np.arange(s, s + cfg.segment_frames)[:, None] + np.arange(-w, w + 1)[None, :]
            ok = near[rows].all(axis=1)
            worst_delta = max(worst_delta, float(np.abs(got[1] - whole[1, win])[ok].max()))
    assert worst_mel <= FRONTEND_TOL, worst_mel
    assert worst_delta <= delta_gain(cfg) * FRONTEND_TOL + NORM_SLACK, worst_delta


def _plain_runner(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        it.set_tensor(i, np.ascontiguousarray(x, np.float32))
        it.invoke()
        return it.get_tensor(o).copy()

    return run


# ----------------------------------------------------------------------------------- quality and size
def test_phone_accuracy_and_size_in_manifest_and_report(phone_export, entry):
    """Fold-5 accuracy within 0.5 pt of the int8 .tflite, both body choices measured, file <= 1 MiB larger."""
    vs = entry["vs_int8_tflite"]
    int8_file = load_manifest(phone_export)["artifacts"][f"{NAME}.int8.tflite"]
    assert vs["int8_tflite_accuracy"] == int8_file["quality"]["accuracy"]["value"]  # the same measurement
    assert vs["phone_accuracy"] == entry["quality"]["accuracy"]["value"]
    assert abs(vs["difference_points"]) <= 0.5 + 1e-9 and vs["within_0_5_points"], vs
    assert set(entry["choices"]) == {"int8", "fp32"}
    for name, choice in entry["choices"].items():
        # front end in the graph + splice = the features-in body on the same windows, where the features agree
        fi = choice["features_in"]
        assert fi["top1_agreement_interior_windows"] >= 0.99, name
        assert fi["top1_agreement_clip_edge_windows"] is not None and fi["clip_edge_windows"] > 0, name
        assert choice["quality"]["accuracy"]["value"] is not None
    assert entry["choices"]["fp32"]["features_in"]["top1_agreement_interior_windows"] == 1.0
    acc = {k: c["quality"]["accuracy"]["value"] for k, c in entry["choices"].items()}
    assert (entry["body_precision"] == "int8") == (acc["int8"] >= acc["fp32"] - 0.005)  # the stated rule
    size = (phone_export / f"{NAME}.audio.tflite").stat().st_size
    extra = size - (phone_export / f"{NAME}.int8.tflite").stat().st_size
    assert extra == entry["size_over_int8_tflite_bytes"] and extra <= MIB
    report = (phone_export / "report.md").read_text()
    assert f"## Phone file (waveform in): {NAME}.audio.tflite" in report
    assert "| int8 |" in report and "| fp32 |" in report and "within 0.5 pt" in report
    assert "18304 samples = 1.144 s: 1-s window + its context" in report


# --------------------------------------------------------------------------------------- predict, bench
def test_predict_and_bench_take_the_audio_file(phone_export, manifest, entry, real_clips):
    model = phone_export / f"{NAME}.audio.tflite"
    result = CliRunner().invoke(main, ["predict", str(real_clips[0]), "--model", str(model), "--json"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.output)[0]
    assert top["windows"] >= 1 and top["top"][0]["label"] in manifest["labels"]
    assert abs(sum(t["score"] for t in top["top"])) <= 1.0 + 1e-6

    streamed = CliRunner().invoke(main, ["predict", str(real_clips[0]), "--model", str(model), "--stream"])
    assert streamed.exit_code == 1 and "audio.tflite" in streamed.output
    assert len(streamed.output.strip().splitlines()) == 1

    bench = bench_runner.run_benchmark(str(phone_export), "litert", runs=20, warmup=2)
    row = next(e for e in bench["results"] if e["artifact"] == model.name)
    assert row["error"] is None, row["error"]
    assert row["precision"] == f"audio-in {entry['body_precision']}"
    assert row["input"]["shape"] == entry["input"]["shape"] == [1, FrontendConfig().context_samples]
    assert row["label"] in manifest["labels"] and row["latency_ms"]["p50"] > 0
    assert {e["precision"] for e in bench["results"] if e["artifact"] != model.name} <= {"int8", "fp32"}


# -------------------------------------------------------------------------------------------- bad input
def test_metadata_refuses_bad_labels(phone_export, manifest):
    base = dict(name="x", version="1", description="d", author="a", licence="l", sample_rate=16000,
                channels=1, input_description="i", output_description="o")
    with pytest.raises(ValueError, match="single lines"):
        md.AudioClassifierInfo(labels=("dog", "two\nlines"), **base)
    with pytest.raises(ValueError, match="mono"):
        md.AudioClassifierInfo(labels=("a", "b"), **{**base, "channels": 2})
    data = (phone_export / f"{NAME}.audio.tflite").read_bytes()
    with pytest.raises(ExportError, match="3 labels for a model with 50 outputs"):
        md.populate(data, md.AudioClassifierInfo(labels=("a", "b", "c"), **base))


def test_tampered_audio_file_is_refused(phone_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(phone_export, copy)  # the whole export (it has an mcu/ folder)
    target = copy / f"{NAME}.audio.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0xFF
    target.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["predict", "x.wav", "--model", str(target)])
    assert result.exit_code != 0 and str(target) in result.output and "sha256" in result.output
    assert len(result.output.strip().splitlines()) == 1
