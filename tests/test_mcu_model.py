"""Whole-model bit-exactness: every fold-5 window of each shipped size, the same int8 input through the
generated C (host build) and through TFLite Micro: the int8 logits must be identical."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dssdn_edge.export import tflite as tflite_mod
from dssdn_edge.export.pipeline import load_eval_set, resolve_checkpoint
from dssdn_edge.export.tflm import TflmRunner
from dssdn_edge.mcu import generate_model_c
from dssdn_edge.mcu.host import HostModel


def int8_windows(model: bytes, size: str) -> np.ndarray:
    """Fold-5 windows (the export's own cutting and normalisation), quantised like the model's input."""
    ckpt = resolve_checkpoint(size)
    ev = load_eval_set(ckpt, None)
    if ev is None:
        pytest.skip("ESC-50 fold 5 is not available")
    in_io, _ = tflite_mod.io_details(model)
    return tflite_mod.quantize(ev.windows.transpose(0, 2, 3, 1), in_io)


@pytest.mark.parametrize("size", ["small", "middle", "large"])
def test_every_fold5_window_matches_tflm(size, shared_int8_tflite, data_root, tmp_path):
    model = shared_int8_tflite(size)
    report = generate_model_c(model, tmp_path / "c", f"dssdn-{size}")
    host = HostModel(tmp_path / "c", tmp_path / "build")
    x = int8_windows(model, size)
    assert len(x) > 1500 and len(np.unique(x)) > 100  # all of fold 5, real (not constant) inputs

    t0 = time.perf_counter()
    mine = host(x)
    t1 = time.perf_counter()
    tflm = TflmRunner(model, f"dssdn-{size}")
    theirs = np.stack([tflm(w[None]).reshape(-1) for w in x])
    t2 = time.perf_counter()
    print(f"\n{size}: {len(x)} windows, generated C {t1 - t0:.2f} s, TFLM {t2 - t1:.2f} s, "
          f"arena {report.arena_bytes} B, constants {report.const_bytes} B")

    assert mine.shape == theirs.shape == (len(x), 50)
    bad = np.flatnonzero((mine != theirs).any(axis=1))
    assert bad.size == 0, f"{bad.size} of {len(x)} windows differ (first: #{bad[0]})"
    assert len(np.unique(mine.argmax(1))) > 10  # the logits are a working classifier, not a constant
