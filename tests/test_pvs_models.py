"""The PVS networks (Jung et al. 2019, Sec. 2.1; Table 1): counts, layout, receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrenhance.engine.grid import receptive_field_radius
from mrenhance.models import create_model
from mrenhance.models.blocks import DenseBlock


def _convs(model: nn.Module) -> list[nn.Conv3d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv3d)]


def test_dcnn6_sc_b_has_the_papers_39_layers_296_bottleneck_inputs_and_223425_parameters():
    model = create_model("dcnn6-sc-b")
    assert len(_convs(model)) == 39
    assert model.bottleneck.in_channels == 296 and model.bottleneck.out_channels == 16
    assert model.bottleneck.kernel_size == (1, 1, 1)
    assert sum(p.numel() for p in model.parameters()) == 223_425
    # layer j of a block: 8j -> 8 maps, 3^3, ReLU behind it; no BatchNorm anywhere
    block = model.blocks[0]
    assert isinstance(block, DenseBlock) and not block.include_input
    assert [u[0].in_channels for u in block.units] == [8, 16, 24, 32, 40, 48]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 36  # + conv0 and bottleneck


def test_srcnn_9_5_5_has_306753_parameters():
    model = create_model("srcnn3d")
    assert [c.kernel_size[0] for c in _convs(model)] == [9, 5, 5]
    assert sum(p.numel() for p in model.parameters()) == 306_753


@pytest.mark.parametrize(
    ("name", "params", "convs", "radius"),
    [
        ("dcnn6", 219_537, 38, 38),
        ("dcnn6-sc", 226_233, 38, 38),
        ("dcnn4-sc-b", 149_217, 27, 26),
        ("dcnn2-sc-b", 75_009, 15, 14),
        ("dcnn1", 37_905, 9, 8),
    ],
)
def test_ablations_come_from_the_same_class(name, params, convs, radius):
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(_convs(model)) == convs
    assert receptive_field_radius(model) == radius


def test_receptive_field_is_77_voxels_and_the_radius_formula_is_exact_for_dense_blocks():
    assert receptive_field_radius(create_model("dcnn6-sc-b")) == 38  # 77^3 voxels
    torch.manual_seed(0)
    model = create_model("dcnn1").double()  # radius 8: measured by the gradient
    with torch.no_grad():
        for m in model.modules():  # positive weights: no ReLU cancels a path
            if isinstance(m, nn.Conv3d):
                m.weight.uniform_(0.01, 0.1)
                m.bias.fill_(0.01)
    x = torch.ones(1, 1, 21, 21, 21, dtype=torch.float64, requires_grad=True)
    model(x)[0, 0, 10, 10, 10].backward()
    support = (x.grad[0, 0] != 0).nonzero()
    assert (support.max(0).values - support.min(0).values + 1).tolist() == [17, 17, 17]


def test_he_initialisation_and_zero_biases():
    torch.manual_seed(0)
    model = create_model("dcnn6-sc-b")
    conv = model.blocks[5].units[5][0]  # 48 -> 8 maps, fan_in 48 * 27
    assert torch.all(conv.bias == 0)
    std = float(conv.weight.detach().std())
    assert abs(std - (2.0 / (48 * 27)) ** 0.5) < 0.1 * std


def test_forward_keeps_odd_sizes():
    out = create_model("dcnn1")(torch.zeros(2, 1, 7, 9, 5))
    assert out.shape == (2, 1, 7, 9, 5)
