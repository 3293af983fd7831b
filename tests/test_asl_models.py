"""The ASL networks: DWAN (Fig. 1), U-Net and DilatedNet: counts, receptive field, shapes."""

from __future__ import annotations

import pytest
import torch

from mrenhance.models import create_model
from mrenhance.models.complexity import count_parameters


@pytest.mark.parametrize(
    "name,count",
    [("dwan", 592_011), ("unet2d-asl", 1_925_025), ("dilatednet-asl", 222_785)],
)
def test_parameter_counts_are_the_documented_ones(name, count):
    model = create_model(name)
    assert count_parameters(model) == count
    assert f"{count:,}" in (type(model).__doc__ or "")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _receptive_field(model, size=129):
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    model(x)[0, 0, size // 2, size // 2].backward()
    hit = (x.grad[0, 0].abs() > 0).nonzero()
    return int(hit[:, 0].max() - hit[:, 0].min() + 1)


def test_dwan_receptive_field_is_73_pixels():
    torch.manual_seed(0)
    model = create_model("dwan").double().float()
    assert _receptive_field(model) == 73


def test_dilatednet_receptive_field_is_47_pixels():
    # 3x3 convs: radius 1 (first) + 1 + 2 + 4 + 8 + 4 + 2 (dilated) + 1 (last) = 23
    torch.manual_seed(0)
    model = create_model("dilatednet-asl")
    assert _receptive_field(model) == 47
    with torch.no_grad():  # an impulse moves exactly the 47 x 47 pixels around it
        zero = torch.zeros(1, 1, 129, 129)
        impulse = zero.clone()
        impulse[0, 0, 64, 64] = 1.0
        moved = ((model(impulse) - model(zero))[0, 0].abs() > 0).nonzero()
    assert int(moved[:, 0].max() - moved[:, 0].min() + 1) == 47
    assert int(moved[:, 1].max() - moved[:, 1].min() + 1) == 47
    assert "field 47 x 47 pixels" in " ".join((type(model).__doc__ or "").split())


def test_dilatednet_docstring_and_registry_list_the_coded_dilations():
    from mrenhance.models.registry import get_model_info

    model = create_model("dilatednet-asl")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 4, 8, 4, 2, 1]
    info = get_model_info("dilatednet-asl")
    assert "eight 3x3 convs dilated 1, 1-2-4-8-4-2, 1" in info.description
    assert "dilations 1, 2, 4, 8, 4, 2" in " ".join((type(model).__doc__ or "").split())


def test_dwan_global_pathway_dilates_only_the_first_conv_of_each_block():
    model = create_model("dwan")
    firsts = [b.body[0].dilation[0] for b in model.global_path]
    seconds = [b.body[3].dilation[0] for b in model.global_path]
    assert firsts == [2, 4, 8, 16] and seconds == [1, 1, 1, 1]
    assert [b.body[0].dilation[0] for b in model.local_path] == [1, 1, 1, 1]


@pytest.mark.parametrize("name", ["dwan", "unet2d-asl", "dilatednet-asl"])
def test_networks_keep_a_109_by_91_slice(name):
    model = create_model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, 109, 91))
    assert y.shape == (2, 1, 109, 91) and torch.isfinite(y).all()
