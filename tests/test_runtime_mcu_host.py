"""The generated microcontroller C as one more runtime: ``runtime.load`` on an export's ``mcu/`` gives the
host build, and ``predict --model mcu/dssdn_model.c`` runs it like any other exported file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke

from dssdn_edge import runtime


@pytest.fixture(scope="module")
def export(shared_small_export: Path) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    return shared_small_export


def test_mcu_host_runtime_equals_tflm_bit_for_bit(export: Path, tmp_path: Path) -> None:
    host = runtime.load(export / "mcu", build_dir=tmp_path / "build")
    tflm = runtime.load(export / "dssdn-small.int8.tflite", kind="tflm")
    assert host.kind == "mcu-host" and host.input_shape == tflm.input_shape
    x = np.random.default_rng(3).standard_normal((6, 2, 51, 128)).astype(np.float32) * 2
    q = tflm.prepare(x)
    assert np.array_equal(host.prepare(x), q)
    assert np.array_equal(host.invoke(q), np.concatenate([tflm.invoke(w[None]) for w in q]))
    assert np.array_equal(host(x), tflm(x))
    assert host.activation_memory()["bytes"] > 0


def test_predict_runs_the_generated_c(export: Path, real_clips: list[Path]) -> None:
    clips = [str(p) for p in real_clips[:2]]
    c_model = invoke("predict", *clips, "--model", export / "mcu" / "dssdn_model.c", "--top-k", "1")
    tflite = invoke("predict", *clips, "--model", export / "dssdn-small.int8.tflite", "--top-k", "1")
    assert c_model.exit_code == 0 and tflite.exit_code == 0, (c_model.output, tflite.output)
    labels = [line.split(":")[1].split()[0] for line in c_model.stdout.splitlines()]
    assert labels == [line.split(":")[1].split()[0] for line in tflite.stdout.splitlines()]


def test_a_folder_without_a_generated_model_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "mcu"
    bad.mkdir()
    with pytest.raises(runtime.ModelLoadError, match="dssdn_model.h not found"):
        runtime.load(bad, kind="mcu-host")
    (bad / "dssdn_model.c").write_text("int x;\n")
    assert_one_line_error(invoke("predict", __file__, "--model", bad / "dssdn_model.c"), "dssdn_model.c")


def test_a_relative_export_folder_builds(export: Path, tmp_path: Path, monkeypatch) -> None:
    """`dssdn-edge export` writes to exports/<model> by default: the host build must not depend on the cwd."""
    monkeypatch.chdir(export.parent)
    host = runtime.load(Path(export.name) / "mcu", build_dir=Path(tmp_path.name))
    x = np.zeros((1, 2, 51, 128), np.float32)
    assert host(x).shape == (1, 50)
