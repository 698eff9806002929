"""Shipped weights: load through the factory and reproduce the accuracy their model card states."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dssdn_edge import create_model, load_pretrained
from dssdn_edge.data import Dataset, clip_features
from dssdn_edge.evaluate import clip_logits
from dssdn_edge.frontend import Frontend
from dssdn_edge.model import BUDGETS
from dssdn_edge.pretrained import models_dir

SHIPPED = ["dssdn-small", "dssdn-middle", "dssdn-large", "resnet"]


def card_accuracy(name: str) -> float:
    text = (models_dir() / f"{name}.md").read_text()
    match = re.search(r"fold-5 accuracy, fp32, clip level \(\*\*test\*\*\) \| \*\*([0-9.]+) %\*\*", text)
    assert match, f"{name}.md states no fold-5 accuracy"
    return float(match.group(1)) / 100


@pytest.mark.parametrize("name", SHIPPED)
def test_every_size_ships_small_weights_with_a_card(name: str) -> None:
    weights = models_dir() / f"{name}.safetensors"
    assert weights.is_file(), f"{weights} is missing"
    assert weights.stat().st_size < 2.5 * 1024 * 1024
    card = (models_dir() / f"{name}.md").read_text()
    needed = ("CC BY-NC", "Exact command", "MACs", "teacher") + (("windows seen",) if name in BUDGETS else ())
    for words in needed:
        assert words in card, f"{name}.md lacks {words!r}"


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_reproduces_the_card(name: str, data_root: Path) -> None:
    model = create_model(name, pretrained=True)
    assert isinstance(model, torch.nn.Module) and not model.training
    ckpt = load_pretrained(name)
    fe = Frontend(ckpt.frontend_config)
    feats = clip_features(Dataset.load(data_root).split("test"), fe)
    logits = clip_logits(model, feats, ckpt.normalization, fe.config.segment_frames, 25)
    acc = float((logits.argmax(1) == feats.targets).mean())
    assert abs(acc - card_accuracy(name)) <= 0.005, (name, acc, card_accuracy(name))


def test_dssdn_sizes_beat_or_explain_the_baseline() -> None:
    base = card_accuracy("resnet")
    for name in BUDGETS:
        acc = card_accuracy(name)
        card = (models_dir() / f"{name}.md").read_text()
        assert acc > base or "below the ResNet baseline" in card, name


@pytest.mark.parametrize("name", list(BUDGETS))
def test_cards_state_int8_accuracy_and_agreement(name: str) -> None:
    """The int8 rows come from a real export of the shipped weights (tools/make_model_card.py --export)."""
    card = (models_dir() / f"{name}.md").read_text()
    m = re.search(r"fold-5 accuracy, int8 \.tflite \(full integer\) \| ([0-9.]+) % \(([-+0-9.]+) points", card)
    assert m, f"{name}.md states no int8 accuracy"
    agree = re.search(r"agreement, clips / 1-s windows \| ([0-9.]+) % / ([0-9.]+) %", card)
    assert agree, f"{name}.md states no int8 agreement"
    assert abs(float(m.group(2))) <= 0.5 and float(agree.group(1)) >= 97.0, (name, m.groups(), agree.groups())
