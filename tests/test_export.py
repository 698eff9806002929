"""Export: fusion is exact, artifacts match torch, int8 fits the MCU budget and runs in TFLite Micro, exports
are deterministic and self-contained (shipped calibration), and every bad input fails with one clear line.

Real converters and runtimes throughout; the heavy exports are shared by module-scoped fixtures.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

os.environ.setdefault("DSSDN_PROGRESS", "0")

from dssdn_edge import runtime  # noqa: E402
from dssdn_edge.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from dssdn_edge.cli import main  # noqa: E402
from dssdn_edge.data import Dataset, default_data_root  # noqa: E402
from dssdn_edge.errors import CheckpointError, ExportError  # noqa: E402
from dssdn_edge.export import calibration, export_model, measure_gains, save_calibration, sources  # noqa: E402
from dssdn_edge.export.fuse import (  # noqa: E402
    channel_ranges,
    equalizable,
    equalization_gains,
    equalize,
    fuse_model,
)
from dssdn_edge.export.int8sim import Int8Sim  # noqa: E402
from dssdn_edge.export.manifest import MANIFEST, list_files, load_manifest  # noqa: E402
from dssdn_edge.export.tflite import clip_inputs, float_leftovers  # noqa: E402
from dssdn_edge.export.tflm import arena  # noqa: E402
from dssdn_edge.frontend import FrontendConfig, Normalization  # noqa: E402
from dssdn_edge.model import config_for  # noqa: E402
from dssdn_edge.pretrained import create_model, pretrained_path  # noqa: E402

KIB = 1024
HAVE_DATA = (default_data_root() / "metadata.csv").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="../shared/data (ESC-50 fold 4/5) is not available")


def shipped(name: str) -> Path:
    path = pretrained_path(name)
    if not path.is_file():
        pytest.skip(f"{path} is not shipped yet")
    return path


def random_checkpoint(folder: Path, name: str = "dssdn-small") -> Path:
    """A real checkpoint with untrained weights: for input-validation tests that must not need models/."""
    torch.manual_seed(0)
    fe = FrontendConfig()
    labels = list(Dataset.load().labels) if HAVE_DATA else [f"class{i}" for i in range(50)]
    return save_checkpoint(
        folder / f"{name}.safetensors",
        name,
        create_model(name).eval(),
        config_for(name),
        fe,
        Normalization.identity(fe),
        labels,
        {"metrics": {"test_accuracy": 0.5}},
    )


def real_windows(n: int = 48) -> np.ndarray:
    """Normalised fold-5 windows when the data is here, else fixed pseudo-random inputs."""
    ckpt = load_checkpoint(pretrained_path("small"))
    if not HAVE_DATA:
        return np.random.default_rng(0).standard_normal((n, 2, 51, 128)).astype(np.float32)
    from dssdn_edge.data import clip_features
    from dssdn_edge.frontend import Frontend

    clips = Dataset.load().split("test")[:: max(1, 400 // n)]
    feats = clip_features(clips, Frontend(ckpt.frontend_config), desc="test windows")
    index = feats.windows(51, 51)
    return ckpt.normalization.apply(feats.gather(index[:n], 51))


@pytest.fixture(scope="module")
def small_export(shared_small_export) -> Path:
    """The session's one full export of the shipped dssdn-small (tests/conftest.py); read-only here."""
    return shared_small_export


@pytest.fixture(scope="module")
def small_ckpt():
    return load_checkpoint(shipped("small"))


def artifact(folder: Path, suffix: str) -> Path:
    return folder / f"dssdn-small{suffix}"


# --------------------------------------------------------------------------------------------- fusion
@pytest.mark.parametrize("name", ["dssdn-small", "dssdn-middle", "dssdn-large", "resnet"])
def test_fusion_is_exact(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    for m in model.modules():  # non-trivial BN statistics so that folding is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(3, 2, 51, 128)
    with torch.no_grad():
        ref = model(x)
        for dilated in (True, False):
            assert (fuse_model(model, dilated)(x) - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["dssdn-middle", "dssdn-large"])
def test_channel_equalisation_is_exact(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    fused = fuse_model(model)
    x = torch.randn(8, 2, 51, 128)
    with torch.no_grad():
        gains = equalization_gains(channel_ranges(fused, x))
        assert len(gains) == 10 and max(max(g) for g in gains.values()) > 1.5
        assert (equalize(fuse_model(model), gains)(x) - model(x)).abs().max() <= 1e-4


# ------------------------------------------------------------------------------------------ artifacts
def test_fp32_artifacts_match_torch(small_export, small_ckpt):
    x = real_windows()
    with torch.no_grad():
        ref = small_ckpt.model(torch.from_numpy(x)).numpy()
    for runner in (
        runtime.load(artifact(small_export, ".tflite")),
        runtime.load(artifact(small_export, ".onnx")),
    ):
        assert np.abs(runner(x) - ref).max() <= 1e-4


def test_int8_is_fully_integer_and_fits(small_export):
    int8 = artifact(small_export, ".int8.tflite").read_bytes()
    assert float_leftovers(int8) == []
    assert len(int8) <= 128 * KIB
    entry = load_manifest(small_export)["artifacts"]["dssdn-small.int8.tflite"]
    assert entry["input"]["dtype"] == "int8" and entry["output"]["dtype"] == "int8"
    assert entry["input"]["shape"] == [1, 51, 128, 2]  # NHWC: frames, bands, channels


def test_tflm_runs_int8_within_arena_budget(small_export):
    int8 = artifact(small_export, ".int8.tflite").read_bytes()
    micro, lite = runtime.load(int8, kind="tflm"), runtime.load(int8, kind="tflite")
    for x in real_windows(4):
        q = lite.prepare(x[None])
        expected = lite.invoke(q).astype(int)
        # reference (TFLM) and optimised (LiteRT) int8 kernels round differently; a few LSB after 99 ops
        assert np.abs(micro.invoke(q).astype(int) - expected).max() <= 4
    arena_bytes = arena(micro).arena_bytes
    assert arena_bytes <= 256 * KIB
    mcu = load_manifest(small_export)["artifacts"]["mcu/model_data.cc"]
    assert mcu["tflm"]["arena_bytes"] == arena_bytes
    text = (small_export / "mcu" / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_data[]" in text
    assert f"const unsigned int g_model_data_len = {len(int8)};" in text
    assert {"dssdn_frontend.c", "dssdn_frontend.h", "dssdn_frontend_tables.h", "model_data.h", "dssdn_features.c",
            "dssdn_features.h", "dssdn_input_tables.h"} <= {p.name for p in (small_export / "mcu").iterdir()}
    # the C front end's int8 input is this model's: its scale and zero point, rendered for the C compiler
    tables = (small_export / "mcu" / "dssdn_input_tables.h").read_text()
    scale = float(tables.split("#define DSSDN_INPUT_SCALE ")[1].split("f")[0])
    assert np.float32(scale) == np.float32(mcu["input"]["scale"])
    assert f"#define DSSDN_INPUT_ZERO_POINT {mcu['input']['zero_point']}" in tables


@needs_data
def test_int8_keeps_accuracy_on_fold5(small_export):
    """Issue 9's int8 bar, on the shipped dssdn-small: the full-integer .tflite within 0.5 points of fp32 on
    fold 5 and the same top-1 as fp32 on >= 97 % of clips (the ONNX QDQ model within 1 point)."""
    q = load_manifest(small_export)["artifacts"]["dssdn-small.int8.tflite"]["quality"]
    assert q["windows"] > 1000 and q["accuracy"]["source"].startswith("fold 5")
    assert abs(q["accuracy"]["drop_points"]) <= 0.5 and q["clip_top1_agreement"] >= 0.97, q
    onnx = load_manifest(small_export)["artifacts"]["dssdn-small.int8.onnx"]["quality"]
    assert onnx["accuracy"]["drop_points"] <= 1.0 + 1e-9 and onnx["clip_top1_agreement"] >= 0.95, onnx


@needs_data
def test_int8_simulation_matches_litert(small_export, small_ckpt):
    """The torch int8 simulation behind benchmarks/int8_error_budget.py behaves like the real int8 model: the
    same logit error and the same top-1 disagreement with fp32 (statistically: its rounding noise is not
    bit-identical to LiteRT's, so individual logits differ)."""
    windows = real_windows(400)
    calib = sources.fold4_windows(small_ckpt)
    fused = fuse_model(small_ckpt.model, n_bands=128)
    if equalizable(fused):
        fused = equalize(fused, measure_gains(fused, calib.windows))
    with torch.no_grad():
        fp32 = fused(torch.from_numpy(windows)).numpy()
        sim_model = Int8Sim(fused)
        sim_model.calibrate(torch.from_numpy(clip_inputs(calib.windows)))
        sim = sim_model(torch.from_numpy(clip_inputs(windows))).numpy()
    real = runtime.load(artifact(small_export, ".int8.tflite"))(windows)
    sim_err, real_err = np.abs(sim - fp32).mean(), np.abs(real - fp32).mean()
    # on the strided-stem graph the simulation sees ~2/3 of LiteRT's logit error: a ranking tool, not a twin
    assert 0.5 <= sim_err / real_err <= 1.25, (sim_err, real_err)
    top1 = {k: v.argmax(1) for k, v in {"fp32": fp32, "sim": sim, "real": real}.items()}
    sim_agree, real_agree = (top1["sim"] == top1["fp32"]).mean(), (top1["real"] == top1["fp32"]).mean()
    assert real_agree < 0.995  # int8 really does disagree, so the comparison below means something
    assert abs(sim_agree - real_agree) <= 0.02, (sim_agree, real_agree)


def test_manifest_lists_every_file(small_export):
    m = load_manifest(small_export)
    assert set(m["artifacts"]) == set(list_files(small_export))
    assert m["format"] == 1 and m["created_by"].startswith("dssdn-edge ")
    assert len(m["labels"]) == 50 and m["frontend"] == FrontendConfig().to_dict()
    assert m["complexity"]["graph_macs"] > m["complexity"]["macs"] > 0
    assert (small_export / "report.md").read_text().startswith("# Export report: dssdn-small")


@pytest.mark.slow
def test_export_is_deterministic(small_export, tmp_path):
    again = tmp_path / "b"
    export_model("small", again)
    files = list_files(small_export) + [MANIFEST]
    assert files == list_files(again) + [MANIFEST]
    for rel in files:
        assert (small_export / rel).read_bytes() == (again / rel).read_bytes(), rel


@pytest.mark.slow
def test_export_without_shared_uses_shipped_calibration(small_export, small_ckpt, tmp_path, monkeypatch):
    """A clone without ../shared exports from models/<name>.calib.json; statistics saved from fold 4 give the
    very int8 models that calibrating on fold 4 gives; the shipped file holds the ranges fold 4 gives now.

    Ranges are compared with a tolerance, not bit for bit: they come from running the fp32 graph, and
    another CPU's float kernels (the one the shipped file was measured on) round differently."""
    stats = calibration.stats_path(small_ckpt)
    if not stats.is_file():
        pytest.skip(f"{stats} not shipped yet")
    fold4 = load_manifest(small_export)["calibration"]["kind"] == "fold4"
    if fold4:
        copy = tmp_path / "ckpt"
        copy.mkdir()
        for path in (small_ckpt.path, small_ckpt.path.with_suffix(".json")):
            shutil.copy(path, copy / path.name)
        saved = calibration.load_stats(save_calibration(str(copy / small_ckpt.path.name)), small_ckpt)
        shipped_stats = calibration.load_stats(stats, small_ckpt)
        for section in ("tflite", "onnx"):
            assert saved[section]["graph"] == shipped_stats[section]["graph"], section
        for name, entry in saved["tflite"]["qsvs"].items():
            for key, value in entry.items():
                np.testing.assert_allclose(
                    shipped_stats["tflite"]["qsvs"][name][key]["values"], value["values"], rtol=1e-3, atol=1e-6
                )
    monkeypatch.setenv("DSSDN_DATA", str(tmp_path / "no-such-data"))
    out = tmp_path / "fresh"
    export_model("small", out, formats=("tflite", "onnx"))
    m = load_manifest(out)
    assert m["calibration"]["kind"] == "shipped"
    assert m["evaluation"]["accuracy_source"] == "model card"
    assert m["artifacts"]["dssdn-small.int8.tflite"]["quality"]["top1_agreement"] is None  # nothing to measure on
    assert "No audio was available" in (out / "report.md").read_text()
    if fold4:
        again = tmp_path / "from-saved"
        export_model(str(copy / small_ckpt.path.name), again, formats=("tflite", "onnx"))
        assert load_manifest(again)["calibration"]["kind"] == "shipped"
        for suffix in (".int8.tflite", ".int8.onnx"):  # same ranges → the very same int8 models
            assert artifact(again, suffix).read_bytes() == artifact(small_export, suffix).read_bytes()


def test_stale_shipped_statistics_are_refused(tmp_path, monkeypatch):
    ckpt = load_checkpoint(random_checkpoint(tmp_path))
    stats = calibration.stats_path(ckpt)
    calibration.save_stats(stats, ckpt, "test", tflite=None, onnx=None)
    other = load_checkpoint(random_checkpoint(tmp_path / "other"))
    shutil.copy(stats, calibration.stats_path(other))
    other.meta["weights_sha256"] = "0" * 64
    monkeypatch.setenv("DSSDN_DATA", str(tmp_path / "no-such-data"))
    with pytest.raises(ExportError, match="measured for other weights"):
        sources.source_windows(other, "calibration")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dssdn-middle", "dssdn-large", "resnet"])  # small: the module export
def test_every_size_exports_and_runs_in_tflm(name, tmp_path, shared_export):
    path = pretrained_path(name)
    if path.is_file():
        out = shared_export(name)  # one export per session, shared with the whole-model MCU tests
    else:
        if not HAVE_DATA:
            pytest.skip(f"{path} not shipped and no calibration data for untrained weights")
        path = random_checkpoint(tmp_path, name)
        out = tmp_path / "out"
        export_model(str(path), out, formats=("tflite", "c"))
    manifest = load_manifest(out)
    mcu = manifest["artifacts"]["mcu/model_data.cc"]
    assert mcu["tflm"]["arena_bytes"] > 0 and mcu["quality"]["top1_agreement"] >= 0.75
    assert float_leftovers((out / f"{name}.int8.tflite").read_bytes()) == []
    if HAVE_DATA and path == pretrained_path(name):  # the accuracy target holds for every shipped size
        q = manifest["artifacts"][f"{name}.int8.tflite"]["quality"]
        # the cards' criteria (within 0.5 pt of fp32, same top-1 on >= 97 % of clips) with one clip of slack:
        # calibrating with another CPU's float kernels can move a clip
        assert q["accuracy"]["source"].startswith("fold 5") and abs(q["accuracy"]["drop_points"]) <= 0.75 + 1e-9
        assert q["clip_top1_agreement"] >= 0.97 - 0.0025 - 1e-9 and q["top1_agreement"] >= 0.93


@needs_data
def test_user_audio_calibration_windows(tmp_path):
    ckpt = load_checkpoint(random_checkpoint(tmp_path))
    folder = tmp_path / "audio" / "nested"
    folder.mkdir(parents=True)
    for clip in Dataset.load().split("val")[:8]:
        shutil.copy(clip.path, folder / clip.path.name)
    (folder / "notes.txt").write_text("not audio")
    cal = sources.source_windows(ckpt, "calibration", tmp_path / "audio")
    assert cal.kind == "audio" and cal.windows.shape[1:] == (2, 51, 128) and len(cal.windows) >= 32
    assert cal.index.shape == (len(cal.windows), 2) and set(cal.clip_of_window.tolist()) <= set(range(8))
    assert cal.details["files"] == 8 and cal.details["not_audio_files"] == 1 and cal.details["skipped_files"] == []


# ------------------------------------------------------------------------------------------ bad inputs
def nothing_left(out: Path) -> bool:
    return not out.exists() and not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())


def test_missing_checkpoint(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="nope.safetensors: checkpoint not found"):
        export_model(tmp_path / "nope.safetensors", out)
    assert nothing_left(out)


def test_corrupt_checkpoint(tmp_path):
    path = random_checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(path)):
        export_model(path, tmp_path / "out")
    assert nothing_left(tmp_path / "out")


def test_empty_calib_folder(tmp_path):
    empty = tmp_path / "calib"
    empty.mkdir()
    with pytest.raises(ExportError, match="calibration folder is empty"):
        export_model(random_checkpoint(tmp_path), tmp_path / "out", calib_dir=empty)
    assert nothing_left(tmp_path / "out")


def test_missing_calib_folder(tmp_path):
    with pytest.raises(ExportError, match="calibration folder not found"):
        export_model(random_checkpoint(tmp_path), tmp_path / "out", calib_dir=tmp_path / "nowhere")


def test_unreadable_calib_folder(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        (folder / f"file{i}.wav").write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(ExportError, match="no readable audio among 3 files"):
        export_model(random_checkpoint(tmp_path), tmp_path / "out", calib_dir=folder)
    assert nothing_left(tmp_path / "out")


def test_calib_folder_with_too_few_windows(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    noise = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    sf.write(folder / "short.wav", noise, 16000)
    sf.write(folder / "silence.wav", np.zeros(16000 * 20, np.float32), 16000)  # all-zero windows are dropped
    with pytest.raises(ExportError, match=r"only 5 usable 1-s windows in 2 audio files \(need at least 32"):
        export_model(random_checkpoint(tmp_path), tmp_path / "out", calib_dir=folder)
    assert nothing_left(tmp_path / "out")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create the export folder"):
        export_model(random_checkpoint(tmp_path), blocker / "out")
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(ExportError, match=str(locked)):
            export_model(random_checkpoint(tmp_path), locked / "out")


def test_existing_output_without_force_via_cli(tmp_path):
    ckpt = random_checkpoint(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(ckpt), "--out", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "--force" in lines[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_missing_checkpoint_via_cli(tmp_path):
    result = CliRunner().invoke(
        main, ["export", "--checkpoint", str(tmp_path / "x.safetensors"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "x.safetensors" in result.output


def test_unknown_format(tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'tf'"):
        export_model(random_checkpoint(tmp_path), tmp_path / "out", formats="onnx,tf")


def test_manifest_hash_mismatch(small_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_export, copy)
    load_manifest(copy)  # intact copy verifies
    target = copy / "dssdn-small.int8.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="dssdn-small.int8.tflite: does not match its sha256"):
        load_manifest(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(ExportError, match="manifest missing"):
        load_manifest(copy)
