"""The click layer: real commands on real files, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from dssdn_edge.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_info_reports_budget_and_convention() -> None:
    res = run("info", "--size", "small", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["complexity"]["params"] <= data["budget"]["params"]
    assert "torchinfo" in data["complexity"]["convention"]
    res = run("info", "--size", "large", "--layers")
    assert res.exit_code == 0 and "DepthwisePair" not in res.output and "MACs per 1-s input" in res.output


def test_features_saves_npy_and_png_and_refuses_to_overwrite(real_clips, tmp_path: Path) -> None:
    npy, png = tmp_path / "f.npy", tmp_path / "f.png"
    res = run("features", str(real_clips[0]), "--npy", str(npy), "--png", str(png))
    assert res.exit_code == 0, res.output
    assert "(2, 251, 128)" in res.output and "low (2, 251, 64)" in res.output
    assert np.load(npy).shape == (2, 251, 128)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(main, ["features", str(real_clips[0]), "--npy", str(npy)])
    assert res.exit_code != 0 and "already exists" in res.output
    assert run("features", str(real_clips[0]), "--npy", str(npy), "--force").exit_code == 0
    assert not list(tmp_path.glob("*.tmp*"))


def test_features_emit_c_writes_the_twin(tmp_path: Path) -> None:
    res = run("features", "--emit-c", str(tmp_path / "c"))
    assert res.exit_code == 0, res.output
    names = {p.name for p in (tmp_path / "c").iterdir()}
    assert {"dssdn_frontend.c", "dssdn_frontend.h", "dssdn_frontend_tables.h"} <= names


def test_eval_writes_confusion_matrix(data_root: Path, tmp_path: Path) -> None:
    res = run("eval", "--size", "small", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "clip accuracy" in res.output
    result = json.loads((tmp_path / "dssdn-small-test.json").read_text())
    assert np.array(result["confusion"]).sum() == 400
    assert (tmp_path / "dssdn-small-test-confusion.png").is_file()


def test_missing_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["info", "--checkpoint", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "x.safetensors" in res.output
