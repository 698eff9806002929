"""Training on real clips: the loop learns, resumes exactly, survives Ctrl-C, and refuses bad teachers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dssdn_edge.checkpoint import load_checkpoint, save_checkpoint, sidecar_path
from dssdn_edge.data import Dataset
from dssdn_edge.errors import CheckpointError, DssdnError
from dssdn_edge.frontend import FrontendConfig
from dssdn_edge.model import config_for
from dssdn_edge.train import STATE_FILE, TrainConfig, train
from dssdn_edge.train_steps import kd_loss

QUIET = {"log": lambda *_: None}


def tiny(**kw) -> TrainConfig:
    base = dict(model="small", epochs=4, limit_per_class=1, batch_size=16, warmup_epochs=1, eval_every=1, lr=3e-3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def straight(data_root: Path, teacher_file: Path, tmp_path_factory) -> Path:
    """Four epochs in one go, distilled from the real teacher file."""
    out = tmp_path_factory.mktemp("straight")
    result = train(tiny(teacher_logits=str(teacher_file)), out, Dataset.load(data_root), **QUIET)
    assert result.finished and result.checkpoint is not None
    return out


def test_a_run_writes_checkpoint_history_and_plot(straight: Path) -> None:
    ckpt = straight / "dssdn-small.safetensors"
    side = json.loads(sidecar_path(ckpt).read_text())
    for key in ("model_config", "frontend_config", "normalization", "labels", "metrics", "data", "training"):
        assert key in side
    assert side["training"]["teacher_info"]["kind"] == "file"
    assert side["training"]["windows_seen"] > 0
    history = json.loads((straight / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert all("val_accuracy" in h for h in history)
    assert (straight / "history.png").stat().st_size > 1000
    loaded = load_checkpoint(ckpt, expect_model=config_for("small"), expect_frontend=FrontendConfig())
    assert loaded.model(torch.zeros(1, 2, 51, 128)).shape == (1, 50)


def test_two_plus_two_resumed_epochs_equal_four_straight(
    straight: Path, data_root: Path, teacher_file: Path, tmp_path: Path
) -> None:
    cfg = tiny(teacher_logits=str(teacher_file))
    first = train(cfg, tmp_path, Dataset.load(data_root), stop_after=2, **QUIET)
    assert not first.finished and (tmp_path / STATE_FILE).is_file()
    assert not (tmp_path / "dssdn-small.safetensors").exists()
    second = train(TrainConfig(), tmp_path, resume=True, **QUIET)  # everything comes from the run folder
    assert second.finished
    a = load_file(str(straight / "dssdn-small.safetensors"))
    b = load_file(str(tmp_path / "dssdn-small.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    h1 = json.loads((straight / "history.json").read_text())
    h2 = json.loads((tmp_path / "history.json").read_text())
    assert [round(h["loss"], 5) for h in h1] == [round(h["loss"], 5) for h in h2]


def test_ctrl_c_leaves_a_resumable_run(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "DSSDN_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "dssdn_edge.cli", "train", "--data", str(data_root), "--epochs", "60",
           "--limit-per-class", "1", "--batch-size", "16", "--eval-every", "50", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "train_config.json").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(2.0)  # inside the training loop
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume with" in err or (out / STATE_FILE).is_file()
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert 0 < state["loop"]["windows_seen"]
    done = subprocess.run([sys.executable, "-m", "dssdn_edge.cli", "train", "--resume", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (out / "dssdn-small.safetensors").is_file()
    assert len(json.loads((out / "history.json").read_text())) == 60


def test_existing_run_folder_is_not_overwritten(straight: Path, data_root: Path) -> None:
    before = (straight / "dssdn-small.safetensors").read_bytes()
    with pytest.raises(DssdnError, match="already exists"):
        train(tiny(), straight, Dataset.load(data_root), **QUIET)
    with pytest.raises(DssdnError, match="is a file"):
        train(tiny(), straight / "history.json", Dataset.load(data_root), **QUIET)
    assert (straight / "dssdn-small.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop", "no teacher logits for"),
        ("classes", "teacher has 10 classes"),
        ("grid", "another front end's grid"),
        ("labels", "classes differ"),
    ],
)
def test_bad_teacher_files_are_refused(change: str, message: str, teacher_file: Path, data_root: Path,
                                       tmp_path: Path) -> None:
    with np.load(teacher_file) as z:
        data = {k: z[k] for k in ("filename", "start_frame", "logits", "labels")}
    if change == "drop":
        keep = data["start_frame"] != 100
        data = {k: (v[keep] if k != "labels" else v) for k, v in data.items()}
    elif change == "classes":
        data["logits"], data["labels"] = data["logits"][:, :10], data["labels"][:10]
    elif change == "grid":
        data["hop_length"] = np.int64(160)
    else:
        data["labels"] = data["labels"][::-1]
    bad = tmp_path / "teacher.npz"
    np.savez(bad, **data)
    with pytest.raises(DssdnError, match=message):
        train(tiny(teacher_logits=str(bad), epochs=1), tmp_path / "run", Dataset.load(data_root), **QUIET)


def test_kd_loss_is_zero_for_matching_distributions() -> None:
    s = torch.randn(4, 50)
    p = torch.softmax(s / 2.0, dim=1)
    assert kd_loss(s, p, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(s, torch.softmax(torch.randn(4, 50), 1), 2.0).item() > 0


def _copy(ckpt: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    target = dst / ckpt.name
    target.write_bytes(ckpt.read_bytes())
    sidecar_path(target).write_text(sidecar_path(ckpt).read_text())
    return target


def test_checkpoint_for_another_size_or_front_end_is_refused(straight: Path) -> None:
    ckpt = straight / "dssdn-small.safetensors"
    with pytest.raises(CheckpointError, match="expected a dssdn/sc"):
        load_checkpoint(ckpt, expect_model=config_for("large"))
    with pytest.raises(CheckpointError, match="another front end"):
        load_checkpoint(ckpt, expect_frontend=FrontendConfig(n_mels=64, split_band=32))


def test_truncated_or_mismatched_checkpoint_is_refused(straight: Path, tmp_path: Path) -> None:
    from dssdn_edge import create_model
    from dssdn_edge.frontend import Normalization

    path = _copy(straight / "dssdn-small.safetensors", tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    other = tmp_path / "other" / "x.safetensors"
    save_checkpoint(other, "x", create_model("large"), config_for("large"), FrontendConfig(),
                    Normalization.identity(FrontendConfig()), ["a"] * 50)
    path.write_bytes(other.read_bytes())
    with pytest.raises(CheckpointError, match="do not match their sidecar"):
        load_checkpoint(path)
    side = json.loads(sidecar_path(other).read_text())
    side["model_config"] = config_for("small").to_dict()
    sidecar_path(other).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_filter_augment_changes_the_spectrum_not_the_delta_or_silence() -> None:
    from dssdn_edge.augment import filter_augment_

    x = torch.randn(6, 2, 51, 128)
    x[0, 0, :10] = -10.0  # digital silence at the log floor
    before = x.clone()
    filter_augment_(x, 6.0, -10.0, torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 1], before[:, 1])
    assert torch.equal(x[0, 0, :10], before[0, 0, :10])
    shift = x[:, 0, 20:] - before[:, 0, 20:]
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))  # one curve per window, constant in time
    assert 0 < shift.abs().max() <= 0.6 + 1e-6 and shift[:, 0].std(dim=1).min() > 0  # ±6 dB, not flat


def test_embedding_distillation_trains_a_projection_and_resumes(data_root: Path, teacher_file: Path,
                                                                tmp_path: Path) -> None:
    cfg = tiny(teacher_logits=str(teacher_file), teacher_embedding=str(teacher_file), epochs=2, filter_aug_db=6.0)
    first = train(cfg, tmp_path, Dataset.load(data_root), stop_after=1, **QUIET)
    aux = torch.load(tmp_path / STATE_FILE, weights_only=True)["aux"]
    assert aux["proj.weight"].shape == (384, 192)
    assert not first.finished
    second = train(TrainConfig(), tmp_path, resume=True, **QUIET)
    assert second.finished
    side = json.loads(sidecar_path(tmp_path / "dssdn-small.safetensors").read_text())
    assert side["training"]["teacher_embedding"] == str(teacher_file)
    assert not any(k.startswith("proj") for k in load_file(str(tmp_path / "dssdn-small.safetensors")))
