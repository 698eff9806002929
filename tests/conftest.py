"""Shared fixtures: the real ESC-50 audio beside the checkout (../shared/data), never copied here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DSSDN_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "esc50_16k"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "metadata.csv").is_file():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def teacher_file(data_root: Path) -> Path:
    """The AudioSet teacher's per-window logits for folds 1-4 (../shared/data/README.md)."""
    path = data_root / "teacher" / "efficientat-mn04-windows.npz"
    if not path.is_file():
        pytest.skip(f"teacher outputs not found at {path}")
    return path


@pytest.fixture(scope="session")
def real_clips(data_root: Path) -> list[Path]:
    """24 real clips, two per class of the first 12 classes, from all folds."""
    import csv

    with (data_root / "metadata.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    chosen: dict[str, list[Path]] = {}
    for r in rows:
        if int(r["target"]) < 12 and len(chosen.setdefault(r["target"], [])) < 2:
            chosen[r["target"]].append(data_root / r["filename"])
    return [p for paths in chosen.values() for p in paths]


def stream_chunked(stream, audio, rng, low: int, high: int):
    """Push ``audio`` through a streaming front end in random chunks of ``low``..``high - 1`` samples, then
    flush: the (channels, frames, bands) features, to compare with the offline path."""
    import numpy as np

    parts, pos = [], 0
    while pos < len(audio):
        n = int(rng.integers(low, high))
        parts.append(stream.push(audio[pos : pos + n]))
        pos += n
    parts.append(stream.flush())
    return np.concatenate(parts).transpose(1, 0, 2)


def invoke(*args: str, env: dict[str, str] | None = None):
    """Run the real CLI in-process; stdout and stderr stay apart."""
    from click.testing import CliRunner

    from dssdn_edge.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def assert_one_line_error(res, *needles: str) -> None:
    """Exit status != 0, exactly one line on stderr beginning 'error:', no traceback, naming the needles."""
    err = res.stderr.strip()
    assert res.exit_code not in (0, None), (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output, res.output
    assert err.startswith("error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture(scope="session")
def shared_small_export(tmp_path_factory) -> Path:
    """One full export of the shipped dssdn-small for every test module that only reads it (copy it before
    changing anything)."""
    from dssdn_edge.export import export_model
    from dssdn_edge.pretrained import pretrained_path

    if not pretrained_path("small").is_file():
        pytest.skip(f"{pretrained_path('small')} is not shipped")
    out = tmp_path_factory.mktemp("shared-export") / "dssdn-small"
    export_model("small", out)
    return out


@pytest.fixture(scope="session")
def shared_export(request, tmp_path_factory):
    """``get(name)`` → an export folder of a shipped model, made once per session for every module that only
    reads it: dssdn-small is ``shared_small_export``; the other models are exported with what a
    microcontroller needs (int8 ``.tflite`` + ``mcu/``, scored on fold 5), the costliest exports of the suite."""
    from dssdn_edge.export import export_model
    from dssdn_edge.pretrained import pretrained_path

    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            if name == "dssdn-small":
                made[name] = request.getfixturevalue("shared_small_export")
            else:
                if not pretrained_path(name).is_file():
                    pytest.skip(f"{pretrained_path(name)} is not shipped")
                out = tmp_path_factory.mktemp(f"shared-{name}") / name
                export_model(name, out, formats=("tflite", "c"))
                made[name] = out
        return made[name]

    return get


@pytest.fixture(scope="session")
def shared_int8_tflite(shared_export):
    """``get(size)`` → the int8 ``.tflite`` bytes of a shipped size, from the session's shared export."""

    def get(size: str) -> bytes:
        name = f"dssdn-{size}"
        return (shared_export(name) / f"{name}.int8.tflite").read_bytes()

    return get
