import math

import pytest
import torch
from torch import nn

from tileunet import UNet
from tileunet.model import (
    UNetConfig,
    center_crop,
    count_convs,
    norm_groups,
    upgrade_network_fields,
)


def test_paper_defaults_parameter_count_and_layers():
    net = UNet()
    assert sum(p.numel() for p in net.parameters()) == 31_030_658
    assert count_convs(net) == 23
    assert net.config == UNetConfig()
    assert net.margin == 92


def test_paper_sizes():
    net = UNet()
    assert net.output_size(572) == 388
    assert net.valid_input_size(572) == 572
    assert net.valid_input_size(570) == 572
    assert net.valid_input_size(500) == 508
    assert net.valid_input_size(1) == net.min_input_size() == 188
    assert net.output_size(188) == 4
    assert net.input_size_for_output(388) == 572
    for n, out in net.valid_sizes(1000):
        assert n - out == 2 * net.margin


def test_invalid_size_names_neighbours():
    net = UNet()
    with pytest.raises(ValueError, match="570 is not a valid input for depth 5.*556 and 572"):
        net.output_size(570)
    with pytest.raises(ValueError, match="smallest is 188"):
        net.output_size(100)


def test_forward_shape_small_net():
    net = UNet(in_channels=3, num_classes=4, depth=3, width=4).eval()
    n = net.valid_input_size(50)
    x = torch.randn(2, 3, n, n + net.size_step)
    y = net(x)
    assert y.shape == (2, 4, net.output_size(n), net.output_size(n + net.size_step))
    assert torch.isfinite(y).all()


def test_forward_rejects_invalid_shape():
    net = UNet(depth=3, width=4)
    with pytest.raises(ValueError, match="not a valid input"):
        net(torch.zeros(1, 1, 51, 51))


def test_same_padding_keeps_size():
    net = UNet(depth=4, width=4, padding="same").eval()
    assert net.output_size(64) == 64
    assert net(torch.zeros(1, 1, 64, 48)).shape == (1, 2, 64, 48)
    with pytest.raises(ValueError, match="not a valid input"):
        net.output_size(60)


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm2d), ("group", nn.GroupNorm)])
def test_norm_variants_run_and_have_no_conv_bias(norm, kind):
    net = UNet(depth=3, width=4, norm=norm)
    norms = [m for m in net.modules() if isinstance(m, kind)]
    convs3 = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(norms) == len(convs3) > 0  # one norm after each 3x3 convolution
    assert all(m.bias is None for m in convs3)  # the norm's shift replaces the bias
    plain = UNet(depth=3, width=4)
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    n = net.valid_input_size(40)
    net(torch.randn(2, 1, n, n)).sum().backward()
    assert all(m.weight.grad is not None for m in norms)


def test_group_norm_does_not_depend_on_the_batch():
    """Unlike batch norm, a tile's output in training mode is the same alone or in a batch."""
    torch.manual_seed(0)
    net = UNet(depth=3, width=6, norm="group", dropout=0.0).train()
    n = net.valid_input_size(40)
    x = torch.randn(3, 1, n, n)
    assert torch.allclose(net(x)[:1], net(x[:1]), atol=1e-5)
    groups = [m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert set(groups) == {6, 8}  # 6 channels: 6 groups; 12 and 24: 6 and 8 ...
    assert norm_groups(12) == 6 and norm_groups(24) == 8 and norm_groups(7) == 7


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        UNet(depth=3, width=4, norm="layer")


def test_configs_saved_with_batch_norm_flag_still_load():
    assert upgrade_network_fields({"width": 8, "batch_norm": True}) == {
        "width": 8, "norm": "batch"}
    assert upgrade_network_fields({"batch_norm": False})["norm"] == "none"
    net = UNet.from_config({"depth": 3, "width": 4, "batch_norm": True})
    assert net.config.norm == "batch"
    assert UNet(depth=3, width=4, batch_norm=True).config.norm == "batch"
    assert UNet(depth=3, width=4, batch_norm=False).config.norm == "none"
    with pytest.raises(ValueError, match="batch_norm must be true or false"):
        upgrade_network_fields({"batch_norm": "yes"})


def test_he_init_statistics():
    net = UNet(depth=3, width=32)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() > 5000:
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            std = m.weight.std().item()
            assert abs(std - math.sqrt(2 / fan_in)) / math.sqrt(2 / fan_in) < 0.05
            assert abs(m.weight.mean().item()) < 0.1 * std
            assert torch.all(m.bias == 0)


def test_every_parameter_gets_a_gradient():
    net = UNet(depth=3, width=4, dropout=0.5)
    n = net.valid_input_size(44)
    net(torch.randn(1, 1, n, n)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_dropout_only_in_training():
    net = UNet(depth=3, width=4, dropout=0.5)
    n = net.valid_input_size(44)
    x = torch.randn(1, 1, n, n)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_skip_connections_are_cropped_not_padded():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    assert torch.equal(center_crop(x, (2, 2)), torch.tensor([[[[14.0, 15.0], [20.0, 21.0]]]]))


def test_config_round_trip_and_validation():
    net = UNet(depth=3, width=8, dropout=0.0)
    again = UNet.from_config(net.config.to_dict())
    assert again.config == net.config
    with pytest.raises(ValueError, match="padding"):
        UNet(padding="reflect")
    with pytest.raises(ValueError, match="num_classes"):
        UNet(num_classes=1)
