"""GridPlan geometry: defaults, exact halos, shifted-back placement, memory-budget plans."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mrenhance.engine.grid import (
    DEFAULT_PLAN,
    GridPlan,
    activation_bytes_per_voxel,
    estimate_tile_bytes,
    plan_for_memory,
    receptive_field_radius,
)
from mrenhance.errors import InputError


def _chain(depth: int, channels: int = 4, dims: int = 3) -> nn.Module:
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    layers: list[nn.Module] = [conv(1, channels, 3, padding=1)]
    for _ in range(depth - 2):
        layers += [nn.ReLU(), conv(channels, channels, 3, padding=1)]
    layers += [nn.ReLU(), conv(channels, 1, 3, padding=1)]
    return nn.Sequential(*layers)


def test_default_plan_is_the_projects_tiling():
    assert DEFAULT_PLAN == GridPlan()
    assert DEFAULT_PLAN.patch == (64, 64, 64) and DEFAULT_PLAN.overlap == (6, 6, 6)
    assert DEFAULT_PLAN.halo == (3, 3, 3)  # the mDCSRN paper's 3-voxel margin
    assert DEFAULT_PLAN.blend == "crop" and DEFAULT_PLAN.placement == "shift"
    assert DEFAULT_PLAN.scale == (1, 1, 1)


def test_plan_normalises_ints_and_is_frozen():
    plan = GridPlan(patch=(8, 6), overlap=2, slice_axis=-3, scale=(1, 4, 4))
    assert plan.patch == (8, 6) and plan.overlap == (2, 2) and plan.slice_axis == 0
    assert plan.is_2d and plan.tiled_axes == (1, 2)
    assert plan.tile_shape == (1, 8, 6) and plan.tile_overlap == (0, 2, 2)
    assert plan.output_shape((5, 7, 9)) == (5, 28, 36)
    with pytest.raises(AttributeError):
        plan.blend = "average"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch": (8, 8, 8, 8)}, "2 or 3"),
        ({"patch": 0}, "patch"),
        ({"patch": 8, "overlap": 8}, "overlap"),
        ({"blend": "hann"}, "blend"),
        ({"placement": "wrap"}, "placement"),
        ({"pad_mode": "wrap"}, "pad_mode"),
        ({"patch": (8, 8), "scale": (4, 4, 4)}, "slice axis"),
        ({"slice_axis": 3}, "slice_axis"),
    ],
)
def test_bad_plans_are_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        GridPlan(**kwargs)


def test_dict_round_trip_and_the_older_margin_spelling():
    plan = GridPlan(patch=(32, 32, 16), overlap=(4, 4, 2), blend="gaussian", scale=(2, 2, 1))
    assert GridPlan.from_dict(plan.to_dict()) == plan
    card = GridPlan.from_dict({"patch_size": 64, "overlap": 0, "blend": "crop", "margin": 3})
    assert card.overlap == (6, 6, 6)
    with pytest.raises(InputError, match="unknown key"):
        GridPlan.from_dict({"stride": 4})


def test_exact_plan_takes_its_halo_from_the_receptive_field():
    net = _chain(5)
    assert receptive_field_radius(net) == 5
    plan = GridPlan.exact_for(net, patch=32)
    assert plan.overlap == (10, 10, 10) and plan.halo == (5, 5, 5) and plan.patch == (32,) * 3
    assert GridPlan.exact_for(net, patch=6).patch == (11, 11, 11)  # grown to leave a centre
    flat = GridPlan.exact_for(_chain(3, dims=2), patch=(16, 16), slice_axis=1)
    assert flat.overlap == (6, 6) and flat.tile_overlap == (6, 0, 6)
    with pytest.raises(InputError, match="nn.Module"):
        GridPlan.exact_for(lambda x: x)


def test_last_tile_is_shifted_back_and_only_a_small_volume_is_padded():
    plan = GridPlan(patch=(10, 10, 10), overlap=4)
    axes = plan.layout((25, 10, 7)).axes
    assert axes[0].starts == (0, 6, 12, 15)  # 18 would pass the border: shifted to 15
    assert (axes[0].pad_before, axes[0].pad_after) == (0, 0)
    assert axes[1].starts == (0,) and (axes[1].pad_before, axes[1].pad_after) == (0, 0)
    assert (axes[2].pad_before, axes[2].pad_after) == (1, 2)  # 7 -> 10, centred
    # crop: cut at the middle of each overlap; the border sides keep everything
    assert axes[0].crop == ((0, 8), (8, 14), (14, 18), (18, 25))
    assert axes[2].crop == ((0, 7),)
    pad = replace(plan, placement="pad").layout((25, 10, 7)).axes
    assert (pad[0].pad_before, pad[0].pad_after) == (2, 2)


@given(
    shape=st.tuples(*[st.integers(1, 30)] * 3),
    patch=st.tuples(*[st.integers(1, 12)] * 3),
    overlap=st.tuples(*[st.integers(0, 11)] * 3),
    placement=st.sampled_from(["shift", "pad"]),
    blend=st.sampled_from(["crop", "average"]),
)
@settings(max_examples=150, deadline=None)
def test_crop_writes_every_voxel_once_with_a_full_halo(shape, patch, overlap, placement, blend):
    overlap = tuple(min(o, p - 1) for o, p in zip(overlap, patch, strict=True))
    plan = GridPlan(patch=patch, overlap=overlap, placement=placement, blend=blend)
    layout = plan.layout(shape)
    count = np.zeros(shape, dtype=np.int32)
    for tile in layout.tiles():
        count[tuple(slice(lo, hi) for lo, hi in tile.out)] += 1
        for (lo, hi), axis in zip(tile.local, layout.axes, strict=True):
            assert 0 <= lo < hi <= axis.tile
    if blend == "crop":
        assert (count == 1).all()
    else:
        assert count.min() >= 1
    for axis, p, o in zip(layout.axes, patch, overlap, strict=True):
        total = axis.length + axis.pad_before + axis.pad_after
        assert total >= p and axis.starts[-1] + p == total  # last tile ends at the border
        assert all(0 < b - a <= p - o for a, b in itertools.pairwise(axis.starts))
        # In crop mode a tile keeps >= halo voxels of context on every side facing a
        # neighbour, so it sees what one whole-volume call would.
        for i, ((lo, hi), s) in enumerate(zip(axis.crop, axis.starts, strict=True)):
            if i > 0:
                assert lo + axis.pad_before - s >= o // 2
            if i < len(axis.starts) - 1:
                assert s + p - (hi + axis.pad_before) >= o // 2


def test_activation_bytes_are_the_peak_of_live_tensors():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 1, 3, padding=1))
    # the input (1 channel) + the conv's and the ReLU's outputs alive together (4 + 4); the
    # conv output is freed before the last conv runs (4 + 1 alive)
    assert activation_bytes_per_voxel(net) == pytest.approx(4 * (1 + 4 + 4))
    up = nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.PixelShuffle(4))
    # input 2 + conv 16 + shuffle 16 (the same count per input pixel, at 16 x the pixels)
    assert activation_bytes_per_voxel(up, in_channels=2, patch_dims=2) == pytest.approx(136)
    # linear in the tile: the same figure from any probe size
    assert activation_bytes_per_voxel(_chain(4), probe=8) == activation_bytes_per_voxel(_chain(4))


def test_memory_plan_fits_the_budget_and_grows_with_it():
    net = _chain(4)
    bpv = activation_bytes_per_voxel(net)
    shape = (120, 100, 90)
    work = []
    for budget in (2e6, 8e6, 32e6, 128e6):
        plan = plan_for_memory(net, shape, budget)
        assert plan.overlap == (8, 8, 8) and plan.blend == "crop"
        assert estimate_tile_bytes(net, plan.patch, bytes_per_voxel=bpv) <= budget
        counts = [
            1 if p >= n else -(-(n - 8) // (p - 8)) for n, p in zip(shape, plan.patch, strict=True)
        ]
        work.append(np.prod(counts) * np.prod(plan.patch))
        # the tiles cover each axis with the halo: no axis has a spare tile
        for n, p, c in zip(shape, plan.patch, counts, strict=True):
            assert c == 1 or (c - 1) * (p - 8) < n - 8
    assert work == sorted(work, reverse=True) and work[0] > work[-1]
    assert work[-1] < 1.5 * np.prod(shape)  # a generous budget wastes little
    assert plan_for_memory(net, shape, 1e12).patch == shape  # one tile when it all fits


def test_memory_plan_prefers_uneven_tiles_to_wasted_work():
    """197x233x189 with room for ~1.5 M voxels: 2x3x2 tiles, not 3x3x2 cubes shifted back."""
    net = _chain(17)  # halo 17, as mDCSRN b4u4
    bpv = activation_bytes_per_voxel(net)
    plan = plan_for_memory(net, (197, 233, 189), 1.52e6 * bpv, bytes_per_voxel=bpv)
    assert plan.overlap == (34, 34, 34)
    assert plan.patch == (116, 101, 112)


def test_memory_plan_options_and_refusal():
    net = _chain(3)
    plan = plan_for_memory(net, (50, 50, 8), 5e6, multiple_of=8, batch_size=2)
    assert all(p % 8 == 0 for p in plan.patch) and plan.patch[2] == 8
    flat = plan_for_memory(_chain(3, dims=2), (300, 300, 40), 4e6, base=GridPlan(patch=(8, 8)))
    assert flat.is_2d and flat.patch[0] == flat.patch[1] > 8
    with pytest.raises(InputError, match="too little"):
        plan_for_memory(net, (50, 50, 50), 1000)
