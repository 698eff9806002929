"""A short real training run, and checkpoints that refuse to load into the wrong thing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dssdn_edge.checkpoint import load_checkpoint, save_checkpoint, sidecar_path
from dssdn_edge.data import Dataset
from dssdn_edge.errors import CheckpointError
from dssdn_edge.frontend import FrontendConfig
from dssdn_edge.model import config_for
from dssdn_edge.train import TrainConfig, kd_loss, train


@pytest.fixture(scope="module")
def short_run(data_root: Path, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model="small", epochs=2, limit_per_class=2, windows_per_clip=8, lr=3e-3)
    result = train(cfg, out, Dataset.load(data_root), log=lambda *_: None)
    return result.checkpoint, result.history


def test_two_epochs_on_a_subset_lower_the_loss(short_run) -> None:
    ckpt, history = short_run
    assert len(history) == 2
    assert history[1]["loss"] < history[0]["loss"]
    assert ckpt.is_file() and sidecar_path(ckpt).is_file()
    assert (ckpt.parent / "history.png").is_file()


def test_checkpoint_sidecar_carries_what_deployment_needs(short_run) -> None:
    ckpt, _ = short_run
    side = json.loads(sidecar_path(ckpt).read_text())
    for key in ("model_config", "frontend_config", "normalization", "labels", "metrics", "data", "code_version",
                "weights_sha256", "training"):
        assert key in side
    assert len(side["labels"]) == 50 and "CC BY-NC" in side["data"]["licence"]
    loaded = load_checkpoint(ckpt, expect_model=config_for("small"), expect_frontend=FrontendConfig())
    assert loaded.model(torch.zeros(1, 2, 51, 128)).shape == (1, 50)


def test_training_is_reproducible(short_run, data_root: Path, tmp_path: Path) -> None:
    _, history = short_run
    cfg = TrainConfig(model="small", epochs=1, limit_per_class=2, windows_per_clip=8, lr=3e-3)
    again = train(cfg, tmp_path, Dataset.load(data_root), log=lambda *_: None)
    assert again.history[0]["loss"] == pytest.approx(history[0]["loss"], rel=1e-6)


def test_kd_loss_is_zero_for_identical_logits() -> None:
    s = torch.randn(4, 50)
    assert kd_loss(s, s.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(s, torch.randn(4, 50), 2.0).item() > 0


def _copy(ckpt: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    target = dst / ckpt.name
    target.write_bytes(ckpt.read_bytes())
    sidecar_path(target).write_text(sidecar_path(ckpt).read_text())
    return target


def test_checkpoint_for_another_size_is_refused(short_run, tmp_path: Path) -> None:
    ckpt, _ = short_run
    with pytest.raises(CheckpointError, match="expected a dssdn/sc"):
        load_checkpoint(ckpt, expect_model=config_for("large"))


def test_checkpoint_for_another_front_end_is_refused(short_run) -> None:
    ckpt, _ = short_run
    with pytest.raises(CheckpointError, match="another front end"):
        load_checkpoint(ckpt, expect_frontend=FrontendConfig(n_mels=64, split_band=32))


def test_truncated_checkpoint_is_refused(short_run, tmp_path: Path) -> None:
    path = _copy(short_run[0], tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_sidecar_not_matching_its_weights_is_refused(short_run, tmp_path: Path) -> None:
    path = _copy(short_run[0], tmp_path)
    # weights of another model under this sidecar
    from dssdn_edge import create_model
    from dssdn_edge.frontend import Normalization

    other = tmp_path / "other" / "x.safetensors"
    save_checkpoint(other, "x", create_model("large"), config_for("large"), FrontendConfig(),
                    Normalization.identity(FrontendConfig()), ["a"] * 50)
    path.write_bytes(other.read_bytes())
    with pytest.raises(CheckpointError, match="do not match their sidecar"):
        load_checkpoint(path)
    # and a sidecar edited to claim another architecture, hash updated: shapes no longer fit
    side = json.loads(sidecar_path(other).read_text())
    side["model_config"] = config_for("small").to_dict()
    sidecar_path(other).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_checkpoint(other)


def test_missing_checkpoint_and_sidecar(tmp_path: Path, short_run) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")
    path = _copy(short_run[0], tmp_path / "nosidecar")
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match="sidecar missing"):
        load_checkpoint(path)
