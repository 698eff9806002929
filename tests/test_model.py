"""Operators, sizes, budgets and the factory."""

from __future__ import annotations

import pytest
import torch

from dssdn_edge import create_model
from dssdn_edge.complexity import measure
from dssdn_edge.model import BUDGETS, DSSDB, build_model, config_for, resolve_name
from dssdn_edge.ops import OSC, SC, SPC


@pytest.mark.parametrize("name", list(BUDGETS))
def test_budget_holds_at_the_shipped_front_end(name: str) -> None:
    c = measure(create_model(name))
    assert c.input_shape == [1, 2, 51, 128]
    assert c.params <= BUDGETS[name]["params"], f"{name}: {c.params} params"
    assert c.macs <= BUDGETS[name]["macs"], f"{name}: {c.macs} MACs"
    assert c.params_trainable <= BUDGETS[name]["params"] * 1.05


def test_resnet_baseline_is_at_least_20x_small() -> None:
    small = measure(create_model("small")).params
    resnet = measure(create_model("resnet")).params
    assert resnet >= 20 * small


@pytest.mark.parametrize("op", [SC, OSC, SPC])
def test_operators_keep_the_spatial_size(op) -> None:
    x = torch.randn(2, 16, 13, 32)
    for cout in (16, 8, 24):
        assert op(16, cout)(x).shape == (2, cout, 13, 32)


@pytest.mark.parametrize("split", [True, False])
def test_distillation_block_halves_freq_and_time(split: bool) -> None:
    block = DSSDB("spc", 16, 24, split)
    y = block(torch.randn(2, 16, 51, 128))
    assert y.shape == ((2, 24, 25, 64) if split else (2, 24, 25, 64))


def test_split_block_deep_path_sees_only_the_low_band() -> None:
    """Changing the high band moves the output only through the 1×1 shortcut (linear in it)."""
    torch.manual_seed(0)
    block = DSSDB("sc", 8, 8, split=True).eval()
    x = torch.randn(1, 8, 10, 16)
    x2 = x.clone()
    x2[..., 8:] += 1.0
    # with the shortcut for the high band zeroed, the high band has no effect at all
    with torch.no_grad():
        block.short_b.weight.zero_()
        block.short_b.bias.zero_()
        assert torch.allclose(block(x), block(x2))


@pytest.mark.parametrize("name", ["small", "middle", "large", "resnet"])
def test_models_run_on_one_second(name: str) -> None:
    model = create_model(name).eval()
    assert model(torch.randn(3, 2, 51, 128)).shape == (3, 50)
    assert all("GELU" not in type(m).__name__ for m in model.modules())


def test_osc_regulariser_only_on_middle() -> None:
    assert create_model("middle").regularization_loss().item() > 0
    assert create_model("small").regularization_loss().item() == 0


def test_osc_regulariser_alone_makes_w1_orthonormal() -> None:
    torch.manual_seed(0)
    op = OSC(64, 64)
    before = op.orth_loss().item()
    opt = torch.optim.SGD(op.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss = op.orth_loss()
        loss.backward()
        opt.step()
    after = op.orth_loss().item()
    assert after < 0.1 * before, (before, after)


def test_factory_names_and_errors() -> None:
    assert resolve_name("small") == "dssdn-small"
    assert resolve_name("dssdn-large") == "dssdn-large"
    with pytest.raises(ValueError, match="unknown model"):
        resolve_name("tiny")
    with pytest.raises(ValueError):
        build_model(config_for("small").__class__(operator="nope"))
