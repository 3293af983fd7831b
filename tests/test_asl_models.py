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
