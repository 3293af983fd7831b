"""The DTI paper's networks (Sec. 4): counts, shapes, and the 3D SRResNet left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrenhance.errors import ConfigError
from mrenhance.models import create_model
from mrenhance.models.blocks import ResidualBlock


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_generator_has_the_issue_parameter_count_and_upsamples_4x():
    g = create_model("srresnet-dwi-x4")
    assert _count(g) == 1_528_724
    assert sum(isinstance(m, ResidualBlock) for m in g.modules()) == 16  # the shared block
    assert sum(isinstance(m, nn.PixelShuffle) for m in g.modules()) == 2
    y = g.eval()(torch.zeros(2, 1, 5, 7))
    assert y.shape == (2, 1, 20, 28)


def test_discriminator_is_the_papers_eight_conv_network_with_a_logit():
    d = create_model("srgan-discriminator2d")
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.stride[0]) for c in convs] == [
        (64, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2),
    ]  # fmt: skip
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 7  # all but the first
    dense = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in dense] == [1024, 1]
    assert d(torch.zeros(3, 1, 64, 64)).shape == (3, 1)


def test_vgg19_feature_model_refuses_without_a_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="no weights file"):
        create_model("vgg19-features")
    with pytest.raises(ConfigError, match="not found"):
        create_model("vgg19-features", weights=str(tmp_path / "vgg19.safetensors"))


def test_3d_srresnet_is_unchanged_by_sharing_its_block():
    torch.manual_seed(0)
    m = create_model("srresnet3d").eval()
    x = torch.randn(1, 1, 10, 10, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = m(x)
    assert _count(m) == 1_976_714
    # reference values from the model before the DTI networks were added
    assert float(y.sum()) == pytest.approx(-54.520057678222656, rel=1e-4)
    assert float(y[0, 0, 5, 5, 5]) == pytest.approx(0.05365956574678421, rel=1e-4)
