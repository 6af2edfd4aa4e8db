"""When test-time augmentation is on: the cost count and the "auto" rule."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tileunet.inference.tta import (
    CHEAP_MULTIPLY_ADDS,
    TTA_PASSES,
    check_tta,
    multiply_adds_per_pixel,
    tta_cost,
    use_tta,
)
from tileunet.model import UNet, UNetConfig


@pytest.mark.parametrize("config", [
    UNetConfig(depth=3, width=4, padding="same"),
    UNetConfig(in_channels=3, num_classes=4, depth=4, width=8, padding="same"),
])
def test_the_count_is_what_torch_counts(config):
    net = UNet.from_config(config).eval()
    side = 32
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, config.in_channels, side, side))
    # torch counts a multiply-add as 2 operations
    assert multiply_adds_per_pixel(config) == counter.get_total_flops() / 2 / side**2


def test_the_paper_network_costs_about_what_its_layers_say():
    # 64 x 5: the first level's two 3x3 convs alone are 9 * (64 + 64 * 64) per pixel
    paper = multiply_adds_per_pixel(UNetConfig())
    assert 9 * (64 + 64 * 64) < paper < 20 * 9 * (64 + 64 * 64)
    assert paper > 200 * multiply_adds_per_pixel(UNetConfig(width=4, depth=3))


def test_the_cost_counts_8_passes_at_the_working_scale():
    config = UNetConfig(width=16, depth=4)
    per_pass = multiply_adds_per_pixel(config)
    assert tta_cost(config, (512, 512)) == TTA_PASSES * per_pass * 512 * 512
    assert tta_cost(config, (512, 512), scale=0.5) == TTA_PASSES * per_pass * 256 * 256
    assert tta_cost(config, (3, 512, 512)) == tta_cost(config, (512, 512))  # channels


def test_auto_averages_small_images_and_not_large_ones():
    config = UNetConfig(width=16, depth=4)
    side = int((CHEAP_MULTIPLY_ADDS["cpu"] / tta_cost(config, (1, 1))) ** 0.5)
    assert use_tta("auto", config, (side, side), device="cpu")
    assert not use_tta("auto", config, (side + 1, side + 1), device="cpu")
    assert use_tta("auto", config, (2 * side, 2 * side), scale=0.5, device="cpu")
    # a GPU's budget is larger; an unknown kind of device counts as a CPU
    assert use_tta("auto", config, (side + 1, side + 1), device="cuda")
    assert not use_tta("auto", config, (side + 1, side + 1), device="meta")


def test_an_explicit_choice_is_kept_whatever_the_size():
    config = UNetConfig()
    assert use_tta(True, config, (100_000, 100_000))
    assert not use_tta(False, config, (8, 8))


@pytest.mark.parametrize("bad", ["yes", "on", None, 1])
def test_anything_else_is_refused(bad):
    with pytest.raises(ValueError, match="tta must be True, False or 'auto'"):
        check_tta(bad)
    with pytest.raises(ValueError, match="tta must be"):
        use_tta(bad, UNetConfig(), (8, 8))
