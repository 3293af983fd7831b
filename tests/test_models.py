"""Networks: exact parameter counts (mDCSRN Tables 1-2), shapes, 2D variants, shared blocks."""

from __future__ import annotations

import pytest
import torch

from mrenhance.models import create_model, list_models
from mrenhance.models import dense as dense_module
from mrenhance.models.blocks import DenseBlock, ResidualBlock, activation, conv, norm
from mrenhance.models.complexity import count_parameters, macs_per_voxel
from mrenhance.models.critic import SRGANCritic
from mrenhance.models.dense import MDCSRN

GENERATORS = ["dcsrn-b1u8", "mdcsrn-b2u4", "mdcsrn-b3u4", "mdcsrn-b4u4", "fsrcnn3d", "srresnet3d"]

# Hand counts: see the class docstrings (e.g. b4u4 = conv0 896 + 4 blocks x 97,280
# + compressors 4,128 + 7,200 + 10,272 + reconstruction 417).
EXACT_PARAMETERS = {
    "dcsrn-b1u8": 306_753,
    "mdcsrn-b2u4": 199_809,
    "mdcsrn-b3u4": 304_385,
    "mdcsrn-b4u4": 412_033,
    "fsrcnn3d": 65_065,
    "srresnet3d": 1_976_714,
    # conv0 1,792 + blocks 110,784 + 221,568 + 442,752 + 885,504 + 1,770,240 + 3,540,480
    # + 7,079,424 (conv + GroupNorm affine) + dense 525,312 + 1,025
    "wgan-critic3d": 14_578_881,
    # encoder 512 + 4,040 | down 2,064 | 2 x 16,144 | down 8,224 | 2 x 64,544; decoder up
    # 2,064 + 12,816 + 6,416 | up 520 + 3,208 + 1,608 | head 9
    "stunet": 202_857,
    # temporal 128 + 2 x 1,808; spatial 4,640 + 3 x 9,248; head 33
    "hess-perfusion": 36_161,
    # PVS (Jung et al. 2019): conv0 224 + 6 blocks x 36,336 + bottleneck 4,752 + prediction 433
    "dcnn6-sc-b": 223_425,
    "dcnn6-sc": 226_233,
    "dcnn6": 219_537,
    "dcnn4-sc-b": 149_217,
    "dcnn2-sc-b": 75_009,
    "dcnn1": 37_905,
    "srcnn3d": 306_753,  # 46,720 + 256,032 + 4,001
    # DTI SRGAN (docs/dti.md): head 5,249 + 16 blocks x 74,113 + 37,056 + 2 x 147,713 + 5,185
    "srresnet-dwi-x4": 1_528_724,
    "srgan-discriminator2d": 5_214_273,
    # ASL (tests/test_asl_models.py): see the class docstrings
    "dwan": 592_011,
    "unet2d-asl": 1_925_025,
    "dilatednet-asl": 222_785,
}
# built only from a weights file the user supplies (nothing is downloaded)
NEEDS_WEIGHTS_FILE = {"vgg19-features"}


@pytest.mark.parametrize("name", sorted(EXACT_PARAMETERS))
def test_parameter_count_is_exact(name: str) -> None:
    assert count_parameters(create_model(name)) == EXACT_PARAMETERS[name]


def test_every_registered_model_has_an_exact_count_here() -> None:
    assert {i.name for i in list_models()} == set(EXACT_PARAMETERS) | NEEDS_WEIGHTS_FILE


def test_srresnet_one_slope_per_prelu_is_what_gives_the_count() -> None:
    model = create_model("srresnet3d")
    prelus = [m for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    assert len(prelus) == 9
    assert all(p.weight.numel() == 1 for p in prelus)


def test_fsrcnn_prelu_is_per_channel() -> None:
    prelus = [m for m in create_model("fsrcnn3d").modules() if isinstance(m, torch.nn.PReLU)]
    assert [p.weight.numel() for p in prelus] == [56, 12, 12, 12, 12, 12, 56]


def test_macs_per_voxel_b4u4() -> None:
    assert macs_per_voxel(create_model("mdcsrn-b4u4")) == 409_856


def test_macs_do_not_depend_on_probe_size_for_same_size_networks() -> None:
    model = create_model("mdcsrn-b2u4", growth=4)
    assert macs_per_voxel(model, size=5) == macs_per_voxel(model, size=9)


def test_macs_leave_training_mode_as_it_was() -> None:
    model = create_model("fsrcnn3d", d=8, s=4, m=1).train()
    macs_per_voxel(model, size=6)
    assert model.training


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_keeps_odd_input_shape(name: str) -> None:
    model = create_model(name).eval()
    x = torch.randn(1, 1, 13, 11, 9)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_critic_scores_any_patch_size() -> None:
    critic = create_model("wgan-critic3d", base=4)
    assert critic(torch.randn(2, 1, 16, 16, 16)).shape == (2, 1)
    assert critic(torch.randn(3, 1, 9, 7, 5)).shape == (3, 1)


def test_critic_has_no_sigmoid_so_scores_leave_0_1() -> None:
    critic = create_model("wgan-critic3d", base=4)
    with torch.no_grad():
        critic.head[-1].bias.fill_(5.0)
        score = critic(torch.randn(1, 1, 8, 8, 8))
    assert score.item() > 1.0
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in critic.modules())


def test_critic_layer_norm_is_groupnorm_with_one_group() -> None:
    critic = SRGANCritic(base=4)
    groups = [m for m in critic.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(groups) == 7
    assert all(g.num_groups == 1 for g in groups)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in critic.modules())


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("mdcsrn-b4u4", {"growth": 4}),
        ("dcsrn-b1u8", {"growth": 4}),
        ("fsrcnn3d", {"d": 8, "s": 4}),
        ("srresnet3d", {"channels": 8, "n_blocks": 2}),
    ],
)
def test_2d_generators_build_and_keep_shape(name: str, config: dict) -> None:
    model = create_model(name, spatial_dims=2, **config).eval()
    assert not any(isinstance(m, torch.nn.Conv3d) for m in model.modules())
    x = torch.randn(2, 1, 15, 12)
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_2d_critic_scores() -> None:
    critic = create_model("wgan-critic3d", spatial_dims=2, base=4, norm="batch")
    assert critic(torch.randn(2, 1, 24, 20)).shape == (2, 1)


def test_2d_mdcsrn_count_follows_kernel_size() -> None:
    # b4u4's 3^3 conv weights are 27 * (32 + 4 * 224 * 16) = 27 * 14,368 (conv0 + units);
    # in 2D each becomes 3^2 and everything else (1^3 convs, biases, BN) is unchanged
    model = create_model("mdcsrn-b4u4", spatial_dims=2)
    assert count_parameters(model) == 412_033 - 18 * 14_368 == 153_409


def test_global_residual_adds_the_input_without_parameters() -> None:
    plain = create_model("mdcsrn-b2u4", growth=4).eval()
    residual = create_model("mdcsrn-b2u4", growth=4, global_residual=True).eval()
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(1, 1, 7, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(residual(x), plain(x) + x)
    assert count_parameters(residual) == count_parameters(plain)


def test_mdcsrn_uses_the_one_shared_dense_block() -> None:
    assert dense_module.DenseBlock is DenseBlock
    model = MDCSRN(growth=4, blocks=3, units=2)
    blocks = [m for m in model.modules() if type(m).__name__ == "DenseBlock"]
    assert len(blocks) == 3
    assert all(type(b) is DenseBlock for b in blocks)


def test_dense_block_channels_and_unit_order() -> None:
    block = DenseBlock(8, growth=4, units=3, spatial_dims=3)
    assert block.out_channels == 8 + 3 * 4
    first = block.units[0]
    assert [type(m).__name__ for m in first] == ["BatchNorm3d", "ELU", "Conv3d"]
    assert [u[-1].in_channels for u in block.units] == [8, 12, 16]
    y = block(torch.randn(2, 8, 5, 6, 7))
    assert y.shape == (2, 20, 5, 6, 7)


def test_dense_block_keeps_its_input_as_the_first_channels() -> None:
    block = DenseBlock(3, growth=2, units=2, spatial_dims=2).eval()
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x)[:, :3], x)


def test_dense_block_pvs_variant_post_activation_new_maps_only() -> None:
    # PVS network (Jung et al. Sec. 2.1): conv -> ReLU, 6 units of 8, block emits 48 maps
    block = DenseBlock(8, 8, 6, 3, norm=None, activation="relu", order="post", include_input=False)
    assert block.out_channels == 48
    assert [type(m).__name__ for m in block.units[0]] == ["Conv3d", "Identity", "ReLU"]
    assert block(torch.randn(1, 8, 4, 4, 4)).shape == (1, 48, 4, 4, 4)


def test_residual_block_is_identity_when_its_last_norm_is_zeroed() -> None:
    block = ResidualBlock(4, spatial_dims=3).eval()
    with torch.no_grad():
        block.body[-1].weight.zero_()
        block.body[-1].bias.zero_()
        x = torch.randn(1, 4, 5, 5, 5)
        torch.testing.assert_close(block(x), x)


def test_residual_block_wide_activation_variant() -> None:
    # ASL DWAN (Fig. 1): 3x3x128 dilated conv, activation, 3x3x32 conv, skip; no norm
    block = ResidualBlock(32, 3, 2, norm=None, activation="relu", hidden_channels=128, dilation=4)
    assert block.body[0].dilation == (4, 4)
    assert block.body[0].out_channels == 128
    assert block(torch.randn(1, 32, 20, 20)).shape == (1, 32, 20, 20)


def test_factories() -> None:
    assert isinstance(conv(2, 1, 4, 3), torch.nn.Conv2d)
    assert conv(3, 1, 4, 5).padding == (2, 2, 2)
    assert conv(3, 1, 4, 3, dilation=2).padding == (2, 2, 2)
    assert isinstance(norm("layer", 6, 3), torch.nn.GroupNorm)
    assert isinstance(norm("instance", 6, 2), torch.nn.InstanceNorm2d)
    assert isinstance(norm(None, 6), torch.nn.Identity)
    assert activation("prelu_channelwise", 7).weight.numel() == 7
    assert activation("leaky_relu").negative_slope == 0.2


@pytest.mark.parametrize(
    "make",
    [lambda: conv(4, 1, 1), lambda: norm("weird", 4), lambda: activation("swishy")],
)
def test_factories_reject_unknown_choices(make) -> None:
    from mrenhance.errors import ConfigError

    with pytest.raises(ConfigError):
        make()


def test_every_class_docstring_cites_a_section() -> None:
    from mrenhance.models.fsrcnn import FSRCNN3D
    from mrenhance.models.srresnet import SRResNet3D

    for cls in (MDCSRN, FSRCNN3D, SRResNet3D, SRGANCritic, DenseBlock, ResidualBlock):
        doc = cls.__doc__ or ""
        assert "Sec." in doc or "Fig." in doc, cls.__name__


@pytest.mark.parametrize("name", ["mdcsrn-b4u4", "fsrcnn3d", "srresnet3d"])
def test_global_residual_starts_as_identity_and_adds_no_parameters(name):
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.complexity import count_parameters

    torch.manual_seed(0)
    plain, res = create_model(name), create_model(name, global_residual=True)
    assert count_parameters(plain) == count_parameters(res)
    x = torch.rand(1, 1, 12, 11, 10)
    res.eval()
    with torch.no_grad():
        assert torch.equal(res(x), x)
