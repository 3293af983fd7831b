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


def test_discriminator_layer_order_slopes_pooling_and_dense_head():
    """Sec. 4 / Ledig Fig. 4 layer by layer: conv + LeakyReLU, then 7 x (conv, BN,
    LeakyReLU), every slope 0.2; global *average* pooling; dense 1024, LeakyReLU, dense 1."""
    d = create_model("srgan-discriminator2d").eval()
    kinds = [type(m).__name__ for m in d.modules() if not list(m.children())]
    block = ["Conv2d", "BatchNorm2d", "LeakyReLU"]
    head = ["AdaptiveAvgPool2d", "Flatten", "Linear", "LeakyReLU", "Linear"]
    assert kinds == ["Conv2d", "LeakyReLU", *block * 7, *head]  # BN after all convs but the first
    slopes = [m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.2] * 9
    assert not any(isinstance(m, (nn.ReLU, nn.PReLU, nn.Sigmoid)) for m in d.modules())
    bn = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.num_features for m in bn] == [64, 128, 128, 256, 256, 512, 512]
    dense = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(512, 1024), (1024, 1)]
    # global average (not max) pooling to 1x1: any patch size gives one logit per image
    assert d.pool.output_size in (1, (1, 1))
    x = torch.randn(2, 512, 5, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(d.pool(x).flatten(1), x.mean(dim=(2, 3)))
    with torch.no_grad():
        assert d(torch.zeros(2, 1, 40, 24)).shape == (2, 1)
    # the slope acts: a negative input to the head's activation comes out x 0.2
    with torch.no_grad():
        assert float(d.head[2](torch.tensor([-1.0]))) == pytest.approx(-0.2)


def test_vgg19_feature_model_refuses_without_a_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="no weights file"):
        create_model("vgg19-features")
    with pytest.raises(ConfigError, match="not found"):
        create_model("vgg19-features", weights=str(tmp_path / "vgg19.safetensors"))


def _vgg19_file(path, layer=3, **replace):
    """A random torchvision-vgg19-shaped ``features`` state dict up to ``layer`` (plus a
    classifier key, which must be ignored), saved as safetensors; ``replace`` swaps tensors."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    widths = [64, 64, None, 128, 128]  # conv widths by conv position; None = max pool
    state, cin, index = {}, 3, 0
    for width in widths:
        if index > layer:
            break
        if width is None:
            index += 1
            continue
        state[f"features.{index}.weight"] = 0.1 * torch.randn(width, cin, 3, 3, generator=g)
        state[f"features.{index}.bias"] = torch.zeros(width)
        cin, index = width, index + 2
    state["classifier.0.weight"] = torch.zeros(2, 2)
    for key, value in replace.items():
        if value is None:
            state.pop(key.replace("__", "."))
        else:
            state[key.replace("__", ".")] = value
    save_file(state, str(path))
    return path


def test_vgg19_feature_model_builds_from_a_user_file_and_is_frozen(tmp_path):
    path = _vgg19_file(tmp_path / "vgg19.safetensors", layer=3)
    vgg = create_model("vgg19-features", weights=str(path), layer=3)
    from safetensors.torch import load_file

    stored = load_file(str(path))
    assert torch.equal(vgg.features[2].weight, stored["features.2.weight"])  # loaded, by index
    assert [type(m).__name__ for m in vgg.features] == ["Conv2d", "ReLU", "Conv2d", "ReLU"]
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(2, 1, 12, 12, requires_grad=True)
    y = vgg(x)
    assert y.shape == (2, 64, 12, 12) and bool((y >= 0).all())  # after the ReLU of layer 3
    y.sum().backward()  # frozen weights, yet the loss reaches the generator's output
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("replace", "layer", "match"),
    [
        ({"features__2__weight": None}, 3, r"missing features\.2\.weight"),
        ({"features__2__weight": torch.zeros(32, 64, 3, 3)}, 3, r"features\.2\.weight has shape"),
        ({"features__0__bias": torch.full((64,), float("nan"))}, 3, "not finite"),
        ({}, 36, "layer must be a features index"),
    ],
)
def test_vgg19_feature_model_refuses_a_file_that_is_not_vgg19_in_one_line(
    tmp_path, replace, layer, match
):
    path = _vgg19_file(tmp_path / "vgg19.safetensors", **replace)
    with pytest.raises(ConfigError, match=match) as err:
        create_model("vgg19-features", weights=str(path), layer=layer)
    assert "\n" not in str(err.value)


def test_vgg19_feature_model_refuses_a_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "vgg19.safetensors"
    path.write_bytes(b"PK\x03\x04 a torch.save zip, not safetensors")
    with pytest.raises(ConfigError, match="not a readable .safetensors file") as err:
        create_model("vgg19-features", weights=str(path), layer=3)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


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
