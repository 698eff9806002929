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
