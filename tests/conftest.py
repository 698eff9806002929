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
def shared_int8_tflite(request):
    """``get(size)`` → the int8 ``.tflite`` bytes of a shipped size, made once per session: dssdn-small's
    from ``shared_small_export``, the others with ``int8_tflite`` alone (no ONNX, phone file or scoring)."""
    from dssdn_edge.export.pipeline import int8_tflite
    from dssdn_edge.pretrained import pretrained_path

    made: dict[str, bytes] = {}

    def get(size: str) -> bytes:
        if size not in made:
            if not pretrained_path(size).is_file():
                pytest.skip(f"{pretrained_path(size)} is not shipped")
            if size == "small":
                export = request.getfixturevalue("shared_small_export")
                made[size] = (export / "dssdn-small.int8.tflite").read_bytes()
            else:
                made[size] = int8_tflite(size)
        return made[size]

    return get
