"""The windows export measures on: the evaluation clips (and, with item 4, calibration) of a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint
from ..data import Dataset, clip_features
from ..errors import DssdnError, ExportError
from ..evaluate import label_remap
from ..frontend import Frontend
from . import calibration as calib_mod

EVAL_STRIDE = 25  # frames between evaluation windows, as dssdn_edge.evaluate.clip_logits in training


@dataclass
class EvalSet:
    """Fold-5 windows (stride 25) with the clip each belongs to: what clip accuracy is measured on."""

    windows: np.ndarray
    clip_of_window: np.ndarray
    targets: np.ndarray
    source: str
    index: np.ndarray | None = None  # (window, 2): clip and first frame; the phone file re-cuts the audio here
    clips: tuple = ()  # the clips, for their audio


def load_eval_set(ckpt: Checkpoint, eval_dir: str | Path | None) -> EvalSet | None:
    """The test split the export is scored on: ``eval_dir``'s (any layout ``Dataset.load`` reads), else the
    test split of the user's own data the model was trained on, else ESC-50 fold 5 from ../shared for a
    model with ESC-50's labels. None when there is nothing to score on. Classes are matched by name."""
    root = Path(eval_dir) if eval_dir is not None else None
    try:
        if root is not None:
            dataset = Dataset.load(root)
        else:
            dataset = calib_mod.training_dataset(ckpt)
            if dataset is None:
                if not calib_mod.dataset_root_available():
                    return None
                dataset = Dataset.load()
                if list(dataset.labels) != list(ckpt.labels):
                    return None  # a model of other classes is not scored on ESC-50 by default
        split = "test" if dataset.split("test") else "val"
        clips = dataset.split(split)
        if not clips:
            raise ExportError(f"{dataset.root}: no clips in its test (or val) split to measure accuracy on")
        remap = label_remap(dataset, list(ckpt.labels))
        feats = clip_features(clips, Frontend(ckpt.frontend_config), desc=f"evaluation features ({split})")
    except DssdnError as exc:
        raise ExportError(f"evaluation data: {exc}") from None
    seg = ckpt.frontend_config.segment_frames
    index = feats.windows(seg, EVAL_STRIDE)
    what = "fold 5" if dataset.kind == "esc50" and split == "test" else f"the {split} split"
    where = "../shared" if root is None and dataset.kind == "esc50" else str(dataset.root)
    return EvalSet(
        ckpt.normalization.apply(feats.gather(index, seg)),
        index[:, 0],
        remap[feats.targets],
        f"{what} of {where} ({len(clips)} clips, {len(index)} windows)",
        index,
        tuple(clips),
    )


