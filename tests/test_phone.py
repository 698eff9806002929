"""The phone file ``<name>.audio.tflite``: 1 s of raw audio in, labelled scores out, checked with MediaPipe.

Real throughout: one export of the shipped dssdn-small (tflite + phone, shared by the session), real ESC-50
fold-5 clips, LiteRT, and MediaPipe's own AudioClassifier (the client a phone app uses), compared with
``dssdn-edge predict`` on the very same 1-s windows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

os.environ.setdefault("DSSDN_PROGRESS", "0")

from dssdn_edge.audio import load_audio  # noqa: E402
from dssdn_edge.bench import runner as bench_runner  # noqa: E402
from dssdn_edge.cli import main  # noqa: E402
from dssdn_edge.data import Dataset  # noqa: E402
from dssdn_edge.errors import ExportError  # noqa: E402
from dssdn_edge.export import metadata as md  # noqa: E402
from dssdn_edge.export.manifest import load_manifest  # noqa: E402
from dssdn_edge.export.phone import (  # noqa: E402
    FEATURES_NAME,
    FRONTEND_RANGE,
    FRONTEND_TOL,
    AudioRunner,
    audio_windows,
    convert_frontend,
    frontend_error,
)
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization  # noqa: E402

NAME = "dssdn-small"
MP_CLIPS = 60  # fold-5 clips given to MediaPipe (5 windows each, minus digital silence)
MP_AGREEMENT = 0.99  # the acceptance
MIB = 1 << 20
DELTA_GAIN = 0.6  # |delta error| <= (1+2+1+2)/10 x the log-mel error of its 5 frames (5-frame regression)


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


# ------------------------------------------------------------------------------------------- MediaPipe
def test_mediapipe_audio_classifier_agrees_with_predict(phone_export, manifest, entry, tmp_path):
    """MediaPipe cuts each clip into 1-s pieces and classifies them; ``dssdn-edge predict`` classifies the
    same pieces (each written as a 1-s float WAV) with the phone file and with the features-in file inside it
    (numpy front end): top-1 must agree on >= 99 % of them, labels must come from the metadata."""
    audio, audio_data, base_options = _mediapipe_audio()
    model = phone_export / f"{NAME}.audio.tflite"
    fe = FrontendConfig.from_dict(manifest["frontend"])
    n = fe.segment_samples
    opts = audio.AudioClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(model)),
        running_mode=audio.RunningMode.AUDIO_CLIPS,
    )
    mp_top, mp_scores, files = [], [], []
    with audio.AudioClassifier.create_from_options(opts) as classifier:
        for clip in _fold5(MP_CLIPS):
            signal = load_audio(clip.path, fe.sample_rate)
            results = classifier.classify(audio_data.AudioData.create_from_array(signal, fe.sample_rate))
            assert len(results) == -(-len(signal) // n)  # one result per 1-s piece
            for k, res in enumerate(results):
                piece = signal[k * n : (k + 1) * n]
                if len(piece) < n or not np.any(piece):  # predict refuses digital silence; MediaPipe pads
                    continue
                assert res.timestamp_ms == 1000 * k * n // fe.sample_rate
                cats = res.classifications[0].categories
                assert len(cats) == len(manifest["labels"])
                assert all(c.category_name == manifest["labels"][c.index] for c in cats)
                mp_top.append(cats[0])
                mp_scores.append({c.index: c.score for c in cats})
                files.append(tmp_path / f"{clip.path.stem}-{k}.wav")
                sf.write(files[-1], piece, fe.sample_rate, subtype="FLOAT")  # the exact float samples
    assert len(files) >= 4 * MP_CLIPS  # ESC-50 pads short sounds with zeros: most pieces still have sound

    body = entry["body"].split(" ")[0]
    for model_file in (model, phone_export / body):
        result = CliRunner().invoke(
            main, ["predict", *map(str, files), "--model", str(model_file), "--json", "--top-k", "1"]
        )
        assert result.exit_code == 0, result.output[-500:]
        predicted = [p["top"][0]["label"] for p in json.loads(result.output)]
        agree = ties = 0
        for top, scores, label in zip(mp_top, mp_scores, predicted, strict=True):
            if top.category_name == label:
                agree += 1
            elif scores[manifest["labels"].index(label)] == top.score:  # equal scores: both are top-1
                ties += 1
        rate = (agree + ties) / len(files)
        assert rate >= MP_AGREEMENT, f"{model_file.name}: MediaPipe vs predict top-1 {rate:.2%} ({ties} ties)"
        assert ties <= len(files) // 100


def test_mediapipe_scores_equal_litert(phone_export, manifest):
    """MediaPipe feeds the model exactly the samples of each piece: its scores equal LiteRT's."""
    audio, audio_data, base_options = _mediapipe_audio()
    model = phone_export / f"{NAME}.audio.tflite"
    fe = FrontendConfig.from_dict(manifest["frontend"])
    opts = audio.AudioClassifierOptions(base_options=base_options.BaseOptions(model_asset_path=str(model)))
    clip = _fold5(1)[0]
    signal = load_audio(clip.path, fe.sample_rate)[: 2 * fe.segment_samples]
    with audio.AudioClassifier.create_from_options(opts) as classifier:
        results = classifier.classify(audio_data.AudioData.create_from_array(signal, fe.sample_rate))
    ours = AudioRunner(model.read_bytes())(signal.reshape(2, -1))
    for res, row in zip(results, ours, strict=True):
        got = np.zeros(len(row))
        for c in res.classifications[0].categories:
            got[c.index] = c.score
        assert np.abs(got - row).max() <= 1e-5
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
    assert entry["input"]["shape"] == [1, manifest["frontend"]["sample_rate"]]


# ---------------------------------------------------------------------------------------- front end
def test_in_graph_features_match_numpy_on_real_audio(phone_export, manifest, real_clips):
    """Inside the phone file, log-mel and normalised features equal the numpy front end within the C twin's
    float32 bound (1e-4 log10 units on bands within 60 dB of their frame's peak; deltas scaled by 0.6)."""
    cfg = FrontendConfig.from_dict(manifest["frontend"])
    norm = Normalization.from_dict(manifest["normalization"])
    data = (phone_export / f"{NAME}.audio.tflite").read_bytes()
    windows = np.concatenate([audio_windows(load_audio(p, cfg.sample_rate), cfg, 50)[:2] for p in real_clips])
    assert len(windows) >= 40
    errors = frontend_error(data, cfg, windows)
    assert errors["max_abs_log10_error_within_60db"] <= FRONTEND_TOL, errors

    runner, fe, w = AudioRunner(data, preserve_all_tensors=True), Frontend(cfg), cfg.delta_width // 2
    worst_mel = worst_delta = 0.0
    for x in windows:
        runner(x[None])
        got = runner.tensor(FEATURES_NAME)[0].transpose(2, 0, 1).astype(np.float64)  # (C, T, M)
        ref = fe.features(x).astype(np.float64)
        err = np.abs((got - norm.apply(ref)) * norm.std[:, None, :])  # back in log10 units
        mel = ref[0]
        near = mel >= mel.max(axis=1, keepdims=True) - FRONTEND_RANGE
        worst_mel = max(worst_mel, float(err[0][near].max()))
        rows = np.clip(np.arange(len(mel))[:, None] + np.arange(-w, w + 1)[None, :], 0, len(mel) - 1)
        delta_ok = near[rows].all(axis=1)  # (T, M): all frames the delta reads are within 60 dB
        worst_delta = max(worst_delta, float(err[1][delta_ok].max()))
    assert worst_mel <= FRONTEND_TOL + 1e-6, worst_mel  # + the float32 rounding of (x - mean) / std
    assert worst_delta <= DELTA_GAIN * FRONTEND_TOL + 1e-6, worst_delta


@pytest.mark.parametrize(
    "cfg",
    [FrontendConfig(n_fft=512, hop_length=160, n_mels=64, split_band=32), FrontendConfig(delta_width=0)],
    ids=["n_fft512-hop160-64mels", "no-delta"],
)
def test_front_end_graph_is_generic(cfg, real_clips):
    """Other front-end configurations convert too and give the numpy features (identity normalisation)."""
    front = convert_frontend(cfg, Normalization.identity(cfg))
    runner = _plain_runner(front)
    fe = Frontend(cfg)
    worst = 0.0
    for p in real_clips[:6]:
        x = audio_windows(load_audio(p, cfg.sample_rate), cfg, 50)[0]
        got = runner(x[None])[0].transpose(2, 0, 1)
        ref = fe.features(x)
        assert got.shape == ref.shape
        near = ref[0] >= ref[0].max(axis=1, keepdims=True) - FRONTEND_RANGE
        worst = max(worst, float(np.abs(got[0] - ref[0])[near].max()))
    assert worst <= FRONTEND_TOL, worst


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
        # the in-graph front end + splice = the features-in body on the same windows (numpy front end)
        assert choice["features_in"]["top1_agreement_same_windows"] >= 0.99, name
        assert choice["quality"]["accuracy"]["value"] is not None
    acc = {k: c["quality"]["accuracy"]["value"] for k, c in entry["choices"].items()}
    assert (entry["body_precision"] == "int8") == (acc["int8"] >= acc["fp32"] - 0.005)  # the stated rule
    size = (phone_export / f"{NAME}.audio.tflite").stat().st_size
    extra = size - (phone_export / f"{NAME}.int8.tflite").stat().st_size
    assert extra == entry["size_over_int8_tflite_bytes"] and extra <= MIB
    report = (phone_export / "report.md").read_text()
    assert f"## Phone file (waveform in): {NAME}.audio.tflite" in report
    assert "| int8 |" in report and "| fp32 |" in report and "within 0.5 pt" in report


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
    assert row["input"]["shape"] == [1, manifest["frontend"]["sample_rate"]]
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
    copy.mkdir()
    for p in phone_export.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    target = copy / f"{NAME}.audio.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0xFF
    target.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["predict", "x.wav", "--model", str(target)])
    assert result.exit_code != 0 and str(target) in result.output and "sha256" in result.output
    assert len(result.output.strip().splitlines()) == 1
