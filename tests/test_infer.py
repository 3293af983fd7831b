"""Patch-wise inference: exact blends, seams that match a whole-volume call, bounded batches."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from mrenhance.engine.grid import (
    DEFAULT_PLAN,
    GridPlan,
    activation_bytes_per_voxel,
    plan_for_memory,
)
from mrenhance.engine.infer import gaussian_weights, infer, receptive_field_radius, scaled_affine
from mrenhance.engine.patches import patch_corners
from mrenhance.errors import InputError
from mrenhance.volume import Volume

BLENDS = ("crop", "average", "gaussian")


def _unit_conv(channels: int = 1, dims: int = 3) -> nn.Module:
    conv = (nn.Conv3d if dims == 3 else nn.Conv2d)(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(channels):
            conv.weight[(c, c) + (0,) * dims] = 1.0
    return conv


def _three_layer_net(seed: int = 0, channels: int = 1) -> nn.Module:
    """A fixed random net of three 3^3 convolutions (receptive radius 3), zero padding."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(4, 1, 3, padding=1),
    )


def _whole_volume(net: nn.Module, vol: np.ndarray, pad: int, mode: str) -> np.ndarray:
    """The net on the whole volume padded by ``pad`` voxels, cropped back."""
    padded = np.pad(vol, pad, mode=mode) if pad else vol
    with torch.no_grad():
        out = net(torch.from_numpy(padded)[None, None]).numpy()[0, 0]
    crop = tuple(slice(pad, pad + n) for n in vol.shape)
    return out[crop]


class Recorder(nn.Module):
    """Wraps a model; records the shape of every batch and the mode it was called in."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.shapes: list[tuple[int, ...]] = []
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        self.modes.append(self.training)
        return self.inner(x)


class Constant(nn.Module):
    def __init__(self, values: tuple[float, ...]) -> None:
        super().__init__()
        self.values = torch.tensor(values, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], len(self.values), *x.shape[2:])
        return self.values.view(1, -1, *([1] * (x.ndim - 2))).expand(shape).clone()


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("shape", [(23, 17, 30), (5, 6, 3), (9, 1, 12)])
@pytest.mark.parametrize("model", [nn.Identity(), _unit_conv()], ids=["identity", "conv1x1"])
def test_identity_model_returns_the_input(blend, shape, model, rng):
    vol = rng.random(shape, dtype=np.float32)
    out = infer(model, vol, (8, 7, 9), overlap=(2, 3, 4), blend=blend)
    assert out.shape == vol.shape and out.dtype == np.float32
    if blend == "crop":
        np.testing.assert_array_equal(out, vol)
    else:  # a weighted mean of equal values: exact up to float32 rounding
        np.testing.assert_allclose(out, vol, rtol=1e-6, atol=0)


@pytest.mark.parametrize("blend", BLENDS)
def test_identity_on_4d_input_keeps_channels_last(blend, rng):
    vol = rng.random((11, 13, 7, 3), dtype=np.float32)
    out = infer(_unit_conv(3), vol, 6, overlap=2, blend=blend, batch_size=3)
    assert out.shape == vol.shape
    np.testing.assert_allclose(out, vol, rtol=1e-6, atol=0)


@given(
    shape=st.tuples(*[st.integers(1, 14)] * 3),
    patch=st.tuples(*[st.integers(1, 9)] * 3),
    overlap=st.integers(0, 4),
    blend=st.sampled_from(BLENDS),
)
@settings(max_examples=40, deadline=None)
@example(shape=(7, 6, 12), patch=(5, 2, 5), overlap=4, blend="gaussian")  # 8.5 ulp, once
def test_identity_property_any_sizes(shape, patch, overlap, blend):
    overlap = tuple(min(overlap, p - 1) for p in patch)
    vol = np.random.default_rng(0).random(shape, dtype=np.float32) + 0.5
    out = infer(nn.Identity(), vol, patch, overlap=overlap, blend=blend, batch_size=2)
    # a weighted mean of up to 5 x 2 x 5 float32 copies (patch 5, overlap 4): its rounding
    # grows with the number of tiles summed; 1e-6 (8 ulp) was exceeded once by 1.2e-8
    np.testing.assert_allclose(out, vol, rtol=2e-5, atol=0)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("shape", [(23, 17, 30), (5, 6, 4)])
def test_crop_with_margin_over_receptive_radius_equals_whole_volume(pad_mode, shape, rng):
    net = _three_layer_net()
    assert receptive_field_radius(net) == 3
    vol = rng.standard_normal(shape).astype(np.float32)
    for margin in (3, 4):
        tiled = infer(net, vol, 12, blend="crop", margin=margin, pad_mode=pad_mode)
        expected = _whole_volume(net, vol, margin, pad_mode)
        np.testing.assert_allclose(tiled, expected, rtol=0, atol=1e-5)


def test_crop_without_margin_has_seams(rng):
    net = _three_layer_net()
    vol = rng.standard_normal((24, 24, 24)).astype(np.float32)  # 2 x 2 x 2 patches
    tiled = infer(net, vol, 12, blend="crop", margin=0)
    whole = _whole_volume(net, vol, 0, "constant")  # the net's own zero padding
    error = np.abs(tiled - whole)
    assert error.max() > 1e-3
    # The error sits on the seams at 12: voxels >= 3 (the radius) away from them are exact.
    away = np.ones(24, bool)
    away[9:15] = False
    assert error[np.ix_(away, away, away)].max() < 1e-5
    assert error[9:15].max() > 1e-3


@pytest.mark.parametrize("blend", ["average", "gaussian"])
def test_average_and_gaussian_of_a_constant_model_are_exact(blend, rng):
    vol = rng.random((23, 17, 30), dtype=np.float32)
    out = infer(Constant((0.5,)), vol, 8, overlap=5, blend=blend)
    np.testing.assert_array_equal(out, np.full(vol.shape, 0.5, np.float32))
    multi = infer(Constant((0.25, -2.0, 4.0)), vol, (8, 9, 7), overlap=3, blend=blend)
    assert multi.shape == (23, 17, 30, 3)
    np.testing.assert_array_equal(multi[..., 1], -2.0)
    np.testing.assert_allclose(
        infer(Constant((0.7,)), vol, 8, overlap=5, blend=blend), 0.7, rtol=1e-6
    )


def test_volume_in_volume_out_same_grid(oblique_affine, small_brain):
    vol = Volume(small_brain, oblique_affine, {"source": "brain.nii.gz", "provenance": ["load"]})
    out = infer(_unit_conv(), vol, 10, overlap=4)
    assert isinstance(out, Volume)
    np.testing.assert_array_equal(out.affine, oblique_affine)
    np.testing.assert_array_equal(out.data, small_brain)
    assert out.meta["source"] == "brain.nii.gz"
    assert out.meta["provenance"][0] == "load" and out.meta["provenance"][1].startswith("infer")
    assert vol.meta["provenance"] == ["load"]  # the input is left alone


@pytest.mark.parametrize("blend", BLENDS)
def test_batch_size_does_not_change_the_result(blend, rng):
    net = _three_layer_net(seed=1)
    vol = rng.standard_normal((19, 14, 21)).astype(np.float32)
    one = infer(net, vol, 10, overlap=4, blend=blend, batch_size=1)
    four = infer(net, vol, 10, overlap=4, blend=blend, batch_size=4)
    np.testing.assert_allclose(one, four, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("blend", "kwargs", "step"),
    [("average", {"overlap": 2}, 6), ("gaussian", {"overlap": 3}, 5), ("crop", {"margin": 1}, 6)],
)
def test_number_of_patches_is_the_grid_size_and_batches_are_bounded(blend, kwargs, step, rng):
    shape, patch = (23, 17, 30), 8
    vol = rng.random(shape, dtype=np.float32)
    model = Recorder(nn.Identity())
    model.train()
    infer(model, vol, patch, blend=blend, batch_size=4, **kwargs)
    if blend == "crop":  # cores of patch - 2 * margin tile the volume
        expected = math.prod(math.ceil(n / step) for n in shape)
        assert len(patch_corners(shape, (step,) * 3, step)) == expected
    else:
        expected = math.prod(1 + math.ceil((n - patch) / step) for n in shape)
        assert len(patch_corners(shape, (patch,) * 3, step)) == expected
    assert sum(s[0] for s in model.shapes) == expected
    assert all(s[0] <= 4 and s[1:] == (1, patch, patch, patch) for s in model.shapes)
    assert len(model.shapes) == math.ceil(expected / 4)
    assert not any(model.modes)  # eval during the call ...
    assert model.training  # ... and the previous mode restored


def test_2d_model_on_slices(rng):
    vol = rng.random((12, 10, 7), dtype=np.float32)
    model = Recorder(_unit_conv(dims=2))
    out = infer(model, vol, (8, 8), overlap=2, blend="gaussian", batch_size=5)
    np.testing.assert_allclose(out, vol, rtol=1e-6)
    assert all(len(s) == 4 and s[2:] == (8, 8) for s in model.shapes)
    assert sum(s[0] for s in model.shapes) == 7 * 2 * 2  # 7 slices, a 2 x 2 grid each
    out0 = infer(_unit_conv(dims=2), vol, (6, 6), blend="crop", slice_axis=0)
    np.testing.assert_array_equal(out0, vol)


def test_bfloat16_autocast_and_progress_bar(rng, capsys):
    net = _three_layer_net()
    vol = rng.standard_normal((10, 10, 10)).astype(np.float32)
    exact = infer(net, vol, 8, margin=2, device="auto")
    bf16 = infer(net, vol, 8, margin=2, amp_dtype=torch.bfloat16, progress=True)
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - exact).max() < 0.05 * np.abs(exact).max()
    assert "patch" in capsys.readouterr().err


def test_gaussian_weights_shape_peak_and_floor():
    w = gaussian_weights((8, 9, 1))
    assert w.shape == (8, 9, 1) and w.max() == pytest.approx(1.0) and w.min() > 0
    np.testing.assert_allclose(w, w[::-1, ::-1], rtol=1e-6)  # centred


def test_errors_are_input_errors(rng):
    vol = rng.random((10, 10, 10), dtype=np.float32)
    with pytest.raises(InputError, match="blend"):
        infer(nn.Identity(), vol, 8, blend="hann")
    with pytest.raises(InputError, match="same-size"):
        infer(nn.Conv3d(1, 1, 3), vol, 8)  # no padding: output shrinks
    with pytest.raises(InputError, match="margin"):
        infer(nn.Identity(), vol, 8, margin=4)
    with pytest.raises(InputError, match="margin"):
        infer(nn.Identity(), vol, 8, blend="average", margin=1)
    with pytest.raises(InputError, match="overlap"):
        infer(nn.Identity(), vol, 8, overlap=8, blend="average")
    with pytest.raises(InputError, match="expected"):
        infer(nn.Identity(), vol[0], 8)


# -- GridPlan form: shifted-back tiles, 2D slices, scaled outputs, other channels -------------


def _untiled(net: nn.Module, vol: np.ndarray) -> np.ndarray:
    """One call of a same-size net on the whole (x, y, z) volume, its own zero padding."""
    with torch.no_grad():
        return net(torch.from_numpy(vol)[None, None]).numpy()[0, 0]


@pytest.mark.parametrize("shape", [(23, 17, 30), (12, 13, 19), (12, 12, 12)])
def test_exact_plan_with_shifted_last_tiles_equals_one_untiled_call(shape, rng):
    net = _three_layer_net(seed=2)
    plan = GridPlan.exact_for(net, patch=12)
    assert plan.overlap == (6, 6, 6) and plan.placement == "shift" and plan.blend == "crop"
    layout = plan.layout(shape)
    assert layout.padding == ((0, 0),) * 3  # the volume is never padded
    vol = rng.standard_normal(shape).astype(np.float32)
    tiled = infer(net, vol, plan, batch_size=3)
    np.testing.assert_allclose(tiled, _untiled(net, vol), rtol=0, atol=1e-5)


def test_shifted_last_tile_is_exercised_and_a_small_halo_is_not_exact(rng):
    net = _three_layer_net(seed=2)
    shape = (23, 17, 30)
    plan = GridPlan.exact_for(net, patch=12)
    starts = plan.layout(shape).axes[0].starts
    assert starts == (0, 6, 11)  # the last tile shifted back from 12 to end at 23
    vol = rng.standard_normal(shape).astype(np.float32)
    seams = infer(net, vol, replace(plan, overlap=2))  # halo 1 < radius 3
    assert np.abs(seams - _untiled(net, vol)).max() > 1e-3


def _two_d_net(seed: int = 0, c_in: int = 1, upscale: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(c_in, 4, 3, padding=1), nn.ReLU()]
    layers.append(nn.Conv2d(4, upscale**2, 3, padding=1))
    if upscale > 1:
        layers.append(nn.PixelShuffle(upscale))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_2d_slice_wise_inference_equals_the_network_on_each_slice(slice_axis, rng):
    net = _two_d_net(seed=3)
    vol = rng.standard_normal((14, 11, 9)).astype(np.float32)
    plan = GridPlan.exact_for(net, patch=(8, 8), slice_axis=slice_axis)
    assert plan.tiled_axes == tuple(a for a in range(3) if a != slice_axis)
    out = infer(net, vol, plan, batch_size=4)
    slices = np.moveaxis(vol, slice_axis, 0)
    with torch.no_grad():
        expected = net(torch.from_numpy(slices)[:, None]).numpy()[:, 0]
    np.testing.assert_allclose(out, np.moveaxis(expected, 0, slice_axis), rtol=0, atol=1e-5)


def test_4x_in_plane_model_gives_the_scaled_shape_values_and_affine(oblique_affine, rng):
    net = _two_d_net(seed=4, upscale=4)  # 2D conv + PixelShuffle: 4x in-plane, per slice
    data = rng.standard_normal((13, 10, 5)).astype(np.float32)
    vol = Volume(data, oblique_affine, {"source": "dwi.nii.gz"})
    plan = GridPlan.exact_for(net, patch=(8, 8), scale=(4, 4, 1), slice_axis=2)
    out = infer(net, vol, plan, batch_size=2)
    assert out.shape == (52, 40, 5)
    with torch.no_grad():
        expected = net(torch.from_numpy(np.moveaxis(data, 2, 0))[:, None]).numpy()[:, 0]
    np.testing.assert_allclose(out.data, np.moveaxis(expected, 0, 2), rtol=0, atol=1e-5)
    # Geometry: voxels 4x smaller in-plane, same field of view and centre.
    np.testing.assert_allclose(out.voxel_size, np.array(vol.voxel_size) / (4, 4, 1), rtol=1e-12)
    assert out.meta["voxel_size"] == out.voxel_size

    def world(affine, index):
        return affine[:3, :3] @ np.asarray(index, float) + affine[:3, 3]

    centre_in = world(vol.affine, (np.array(vol.shape) - 1) / 2)
    centre_out = world(out.affine, (np.array(out.shape) - 1) / 2)
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    # FOV edges aligned: output voxel 0 sits at input coordinate 0.5 / 4 - 0.5 in-plane.
    np.testing.assert_allclose(
        world(out.affine, (0, 0, 0)), world(vol.affine, (-0.375, -0.375, 0)), atol=1e-9
    )
    np.testing.assert_array_equal(out.affine, scaled_affine(oblique_affine, data.shape, (4, 4, 1)))


@pytest.mark.parametrize("blend", BLENDS)
def test_3d_upsampling_model_with_every_blend(blend, rng):
    torch.manual_seed(5)
    net = nn.Sequential(
        nn.Conv3d(1, 2, 3, padding=1), nn.Upsample(scale_factor=(2, 1, 3), mode="nearest")
    )
    vol = rng.standard_normal((11, 9, 10)).astype(np.float32)
    plan = GridPlan(patch=6, overlap=2, blend=blend, scale=(2, 1, 3))
    out = infer(net, vol, plan, batch_size=5)
    assert out.shape == (22, 9, 30, 2)
    with torch.no_grad():
        whole = net(torch.from_numpy(vol)[None, None]).numpy()[0]
    whole = np.moveaxis(whole, 0, -1)
    if blend == "crop":  # halo 1 = the radius: exact
        np.testing.assert_allclose(out, whole, rtol=0, atol=1e-5)
    else:  # tiles agree away from their borders only; the interior of each tile is exact
        inner = (slice(2, 20), slice(1, 8), slice(3, 27))
        assert np.abs(out - whole)[inner].mean() < 0.5 * np.abs(whole).mean()
    identity = infer(nn.Upsample(scale_factor=(2, 1, 3)), vol, plan)
    np.testing.assert_allclose(identity, vol.repeat(2, 0).repeat(3, 2), rtol=1e-6)


def test_t_frames_in_one_map_out(oblique_affine, rng):
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv3d(8, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 1, 1))
    series = rng.standard_normal((15, 12, 9, 8)).astype(np.float32)  # (x, y, z, t)
    vol = Volume(series, oblique_affine, {"source": "dsc.nii.gz"})
    out = infer(net, vol, GridPlan.exact_for(net, patch=8))
    assert out.shape == (15, 12, 9) and isinstance(out, Volume)
    np.testing.assert_array_equal(out.affine, oblique_affine)
    with torch.no_grad():
        whole = net(torch.from_numpy(np.moveaxis(series, -1, 0))[None]).numpy()[0, 0]
    np.testing.assert_allclose(out.data, whole, rtol=0, atol=1e-5)


def test_any_callable_is_a_predictor_and_the_default_plan_is_used(rng):
    vol = rng.random((70, 20, 9), dtype=np.float32)
    calls = []

    def double(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return 2 * x

    out = infer(double, vol)  # DEFAULT_PLAN: 64^3 tiles, overlap 6
    np.testing.assert_allclose(out, 2 * vol, rtol=1e-6)
    assert calls == [(1, 1, 64, 64, 64)] * 2  # x: 0 and 6 (shifted back); y, z padded


def test_plan_and_old_tiling_arguments_do_not_mix(rng):
    vol = rng.random((8, 8, 8), dtype=np.float32)
    with pytest.raises(InputError, match="overlap"):
        infer(nn.Identity(), vol, DEFAULT_PLAN, 4)
    with pytest.raises(InputError, match="margin"):
        infer(nn.Identity(), vol, GridPlan(patch=4, overlap=2), margin=1)
    with pytest.raises(InputError, match="scale"):
        infer(nn.Identity(), vol, GridPlan(patch=4, overlap=2, scale=(2, 2, 1)))


def test_memory_plan_runs_exactly(rng):
    net = _three_layer_net(seed=7)
    vol = rng.standard_normal((21, 18, 25)).astype(np.float32)
    bpv = activation_bytes_per_voxel(net)
    plan = plan_for_memory(net, vol.shape, max_bytes=int(bpv * 14**3) + 10_000)
    assert plan.overlap == (6, 6, 6) and min(plan.patch) >= 7
    assert np.prod(plan.patch) <= 14**3  # the budget: tiles may be uneven, not larger
    np.testing.assert_allclose(infer(net, vol, plan), _untiled(net, vol), rtol=0, atol=1e-5)
