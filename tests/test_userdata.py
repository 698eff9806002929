"""Your own sounds: a class-folder dataset built from real clips at test time, trained, exported, predicted.

The end-to-end test runs with ``DSSDN_DATA`` pointing nowhere, as on a fresh clone without ../shared:
the shipped weights are the initialisation, the user's folder is the only data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_one_line_error, invoke
from scipy.signal import resample_poly

from dssdn_edge.data import Dataset
from dssdn_edge.errors import DssdnError
from dssdn_edge.userdata import MAX_CLASSES, stratified_split

# ESC-50 class -> the user's label (spaces and non-ASCII on purpose)
CLASSES = {"glass_breaking": "glass break", "crying_baby": "bébé qui pleure", "engine": "machine fault"}
FORMATS = [(44100, 2, "wav", "PCM_16"), (16000, 1, "flac", "PCM_16"), (22050, 1, "ogg", "VORBIS"),
           (32000, 1, "wav", "FLOAT"), (16000, 1, "wav", "PCM_24")]


def write_clip(src: Path, dst: Path, rate: int, channels: int, subtype: str) -> None:
    y, sr = sf.read(str(src), dtype="float32")
    if rate != sr:
        from fractions import Fraction

        f = Fraction(rate, sr)
        y = resample_poly(y, f.numerator, f.denominator).astype(np.float32)
    data = np.stack([y, y * 0.5], axis=1) if channels == 2 else y
    sf.write(str(dst), data, rate, subtype=subtype)


@pytest.fixture(scope="module")
def user_folder(data_root: Path, tmp_path_factory) -> Path:
    """3 classes × 5 clips in mixed formats and rates, plus a README.txt that is not audio."""
    root = tmp_path_factory.mktemp("mysounds")
    with (data_root / "metadata.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for esc, label in CLASSES.items():
        clips = [r for r in rows if r["label"] == esc][:5]
        (root / label).mkdir()
        for i, (r, (rate, ch, ext, subtype)) in enumerate(zip(clips, FORMATS, strict=True)):
            write_clip(data_root / r["filename"], root / label / f"clip{i}.{ext}", rate, ch, subtype)
    (root / "README.txt").write_text("not audio, not a class")
    (root / "glass break" / "notes.txt").write_text("not audio: skipped")
    return root


@pytest.fixture(scope="module")
def no_shared(tmp_path_factory) -> dict[str, str]:
    """Environment of a fresh clone: no ../shared data, a cache of its own."""
    tmp = tmp_path_factory.mktemp("env")
    return {"DSSDN_DATA": str(tmp / "no-such-data"), "DSSDN_CACHE": str(tmp / "cache"), "DSSDN_PROGRESS": "0"}


@pytest.fixture(scope="module")
def finetuned(user_folder: Path, no_shared: dict[str, str], tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    res = invoke("train", "--data", user_folder, "--init", "dssdn-small", "--epochs", "2", "--freeze-epochs", "1",
                 "--eval-every", "1", "--out", out, env=no_shared)
    assert res.exit_code == 0, res.output
    assert "dssdn-edge export --checkpoint" in res.stdout  # the summary names the next command
    return out / "dssdn-small.safetensors"


def test_folder_layout_reads_labels_formats_and_split(user_folder: Path) -> None:
    ds = Dataset.load(user_folder)
    assert ds.kind == "folder" and sorted(ds.labels) == sorted(CLASSES.values())
    assert len(ds.clips) == 15 and not any(c.path.suffix == ".txt" for c in ds.clips)
    for label in ds.labels:  # stratified: every class in train, and in test (5 clips each)
        assert any(c.label == label and c.split == "train" for c in ds.clips)
        assert any(c.label == label and c.split == "test" for c in ds.clips)
    again = Dataset.load(user_folder)
    assert [c.split for c in again.clips] == [c.split for c in ds.clips]  # seeded


def test_finetune_export_predict_with_the_users_labels(finetuned: Path, user_folder: Path,
                                                       no_shared: dict[str, str], tmp_path: Path) -> None:
    side = json.loads(finetuned.with_suffix(".json").read_text(encoding="utf-8"))
    assert side["labels"] == sorted(CLASSES.values())
    assert side["training"]["init"] == "dssdn-small" and side["data"]["kind"] == "folder"
    assert set(side["metrics"]) >= {"train_accuracy", "test_accuracy"}
    assert (finetuned.parent / "history.png").is_file()

    res = invoke("eval", "--data", user_folder, "--checkpoint", finetuned, "--out", tmp_path / "ev", env=no_shared)
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "ev" / "dssdn-small-test.json").read_text(encoding="utf-8"))
    assert set(ev["per_class"]) <= set(CLASSES.values())
    assert (tmp_path / "ev" / "dssdn-small-test-confusion.png").is_file()

    exp = tmp_path / "exp"
    res = invoke("export", "--checkpoint", finetuned, "--int8", "--formats", "tflite", "--out", exp, env=no_shared)
    assert res.exit_code == 0, res.output
    manifest = json.loads((exp / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["labels"] == sorted(CLASSES.values())
    assert "train split" in manifest["calibration"]["source"]  # calibrated on the user's training audio
    assert str(user_folder) in manifest["evaluation"]["windows_source"]  # scored on the user's test split
    clip = next((user_folder / "glass break").glob("*.flac"))
    res = invoke("predict", clip, "--model", exp / "dssdn-small.int8.tflite", "--json", "--top-k", "3",
                 env=no_shared)
    assert res.exit_code == 0, res.output
    top = json.loads(res.stdout)[0]["top"]
    assert len(top) == 3 and {t["label"] for t in top} == set(CLASSES.values())


def test_csv_layouts(user_folder: Path, tmp_path: Path) -> None:
    files = sorted(p.relative_to(user_folder).as_posix() for p in user_folder.rglob("clip*"))
    lines = ["filename,label,split"] + [f"{f},{f.split('/')[0]},{'test' if f.endswith('0.wav') else 'train'}"
                                        for f in files]
    (user_folder / "split.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = Dataset.load(user_folder / "split.csv")
    assert ds.kind == "csv" and len(ds.split("test")) == 3 and len(ds.split("train")) == 12
    folds = ["filename,label,fold"] + [f"{f},{f.split('/')[0]},{i % 3 + 1}" for i, f in enumerate(files)]
    (user_folder / "folds.csv").write_text("\n".join(folds) + "\n", encoding="utf-8")
    ds = Dataset.load(user_folder / "folds.csv")
    assert {c.split for c in ds.clips} == {"train", "val", "test"}


def test_groups_never_straddle_splits() -> None:
    rows = [{"label": f"c{i % 2}", "group": f"g{i // 3}"} for i in range(60)]
    out = stratified_split(rows, (0.6, 0.2, 0.2), seed=3)
    by_group: dict[str, set[str]] = {}
    for r, s in zip(rows, out, strict=True):
        by_group.setdefault(r["group"], set()).add(s)
    assert all(len(v) == 1 for v in by_group.values())
    assert {"train", "val", "test"} <= set(out)


# ------------------------------------------------------------------------------------------ bad input
def _copy_class(user_folder: Path, dst: Path, label: str, n: int) -> None:
    (dst / label).mkdir(parents=True)
    for p in sorted((user_folder / label).glob("clip*"))[:n]:
        (dst / label / p.name).write_bytes(p.read_bytes())


@pytest.mark.parametrize("case", ["empty", "single", "too_few", "unreadable", "csv_missing", "csv_column",
                                  "many_classes", "not_a_dataset"])
def test_bad_datasets_are_one_line_errors(case: str, user_folder: Path, tmp_path: Path,
                                          no_shared: dict[str, str]) -> None:
    root = tmp_path / "data"
    root.mkdir()
    a, b = list(CLASSES.values())[:2]
    needle = str(root)
    if case == "single":
        _copy_class(user_folder, root, a, 3)
        needle = "only one class"
    elif case == "too_few":
        _copy_class(user_folder, root, a, 3)
        _copy_class(user_folder, root, b, 1)
        needle = b
    elif case == "unreadable":
        _copy_class(user_folder, root, a, 3)
        _copy_class(user_folder, root, b, 3)
        (root / b / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
        needle = "broken.wav"
    elif case == "csv_missing":
        root = root / "list.csv"
        root.write_text("filename,label\nnope.wav,x\nnope2.wav,y\n", encoding="utf-8")
        needle = "nope.wav"
    elif case == "csv_column":
        root = root / "list.csv"
        root.write_text("filename,label,speaker\na.wav,x,bob\n", encoding="utf-8")
        needle = "speaker"
    elif case == "many_classes":
        src = next((user_folder / a).glob("*.flac"))
        for i in range(MAX_CLASSES + 1):
            (root / f"c{i}").mkdir()
            for j in range(2):
                (root / f"c{i}" / f"{j}.flac").symlink_to(src)
        needle = "at most 1000"
    elif case == "not_a_dataset":
        root = root / "x.wav"
        root.write_bytes(b"")
        needle = "expected a folder"
    out = tmp_path / "run"
    res = invoke("train", "--data", root, "--epochs", "1", "--out", out, env=no_shared)
    assert_one_line_error(res, needle)
    assert not out.exists()  # nothing half-written


def test_skip_bad_skips_and_counts(user_folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for label in list(CLASSES.values())[:2]:
        _copy_class(user_folder, root, label, 3)
    (root / list(CLASSES.values())[0] / "broken.wav").write_bytes(b"garbage")
    with pytest.raises(DssdnError, match="broken.wav"):
        Dataset.load(root)
    from dssdn_edge.userdata import LoadReport, load_user_data

    report = LoadReport()
    ds = load_user_data(root, skip_bad=True, report=report)
    assert len(ds.clips) == 6 and [p.name for p, _ in report.skipped_bad] == ["broken.wav"]


def test_init_with_another_front_end_is_refused(user_folder: Path, tmp_path: Path, no_shared) -> None:
    """The run adopts the --init checkpoint's front end; a teacher on another front end is refused."""
    import torch

    from dssdn_edge.checkpoint import save_checkpoint
    from dssdn_edge.frontend import FrontendConfig, Normalization
    from dssdn_edge.model import build_model, config_for

    fe = FrontendConfig(n_mels=64, split_band=32)
    ckpt = tmp_path / "other" / "dssdn-small.safetensors"
    torch.manual_seed(0)
    cfg = config_for("small", n_classes=2)  # as many outputs as labels: the checkpoint validator insists
    save_checkpoint(ckpt, "dssdn-small", build_model(cfg), cfg, fe,
                    Normalization.identity(fe), ["a", "b"])
    res = invoke("train", "--data", user_folder, "--init", ckpt, "--teacher", "resnet", "--epochs", "1",
                 "--out", tmp_path / "run", env=no_shared)
    assert_one_line_error(res, "another front end")
