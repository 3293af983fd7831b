"""PatchDataset: determinism in (seed, i), mask and region restrictions, channels, 2D slices,
scaled pairs and re-drawn targets. Items are dicts {"inputs", "target"[, "mask"]}."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrenhance.engine.augment import random_flip
from mrenhance.engine.patches import PatchDataset, _box_sums, patch_corners
from mrenhance.engine.training import collate_items
from mrenhance.errors import InputError


def _coords(shape: tuple[int, ...]) -> np.ndarray:
    """A volume whose value encodes its own voxel index, so patches reveal their corner."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (x * 10000 + y * 100 + z).astype(np.float32)


def _pair(item: dict) -> tuple[np.ndarray, np.ndarray]:
    return item["inputs"], item["target"]


def _corner_of(patch: np.ndarray) -> tuple[int, int, int]:
    v = int(patch.reshape(-1)[0])
    return v // 10000, (v // 100) % 100, v % 100


def test_same_index_gives_same_patch_in_two_instances(rng):
    vols = [rng.random((20, 18, 16), dtype=np.float32) for _ in range(3)]
    tgts = [v * 2 for v in vols]
    a = PatchDataset(vols, tgts, (8, 8, 8), seed=7, length=100)
    b = PatchDataset(vols, tgts, (8, 8, 8), seed=7, length=100)
    for i in (0, 5, 99, 42):
        xa, ya = _pair(a[i])
        xb, yb = _pair(b[i])
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Order of requests does not matter (as for ranks sharding indices).
    first = [a[i]["inputs"] for i in range(10)]
    second = [b[i]["inputs"] for i in reversed(range(10))][::-1]
    for p, q in zip(first, second, strict=True):
        np.testing.assert_array_equal(p, q)
    assert len(a) == 100


def test_shapes_dtype_and_target_aligned_with_input():
    vol = _coords((20, 18, 16))
    ds = PatchDataset([vol], [vol + 0.5], (6, 5, 4), seed=1)
    x, y = _pair(ds[3])
    assert x.shape == y.shape == (1, 6, 5, 4)
    assert x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(y, x + 0.5)
    cx, cy, cz = _corner_of(x[0])
    np.testing.assert_array_equal(x[0], vol[cx : cx + 6, cy : cy + 5, cz : cz + 4])


def test_different_seeds_differ():
    vol = _coords((30, 30, 30))
    a = PatchDataset([vol], [vol], (8, 8, 8), seed=0)
    b = PatchDataset([vol], [vol], (8, 8, 8), seed=1)
    corners_a = {_corner_of(a[i]["inputs"][0]) for i in range(20)}
    corners_b = {_corner_of(b[i]["inputs"][0]) for i in range(20)}
    assert corners_a != corners_b
    assert len(corners_a) > 10  # corners vary between samples too


def test_corners_cover_the_whole_valid_range():
    vol = _coords((10, 9, 8))
    ds = PatchDataset([vol], [vol], (8, 8, 8), seed=3)
    corners = {_corner_of(ds[i]["inputs"][0]) for i in range(300)}
    assert corners == {(a, b, 0) for a in range(3) for b in range(2)}


def test_mask_restriction_every_patch_holds_enough_mask():
    vol = _coords((30, 30, 30))
    mask = np.zeros(vol.shape, dtype=bool)
    mask[20:26, 3:9, 10:16] = True  # a 6^3 cube: 216 voxels
    ds = PatchDataset([vol], [vol], (8, 8, 8), mask=[mask], min_mask_fraction=0.2, seed=0)
    needed = 0.2 * 8**3
    for i in range(200):
        cx, cy, cz = _corner_of(ds[i]["inputs"][0])
        inside = mask[cx : cx + 8, cy : cy + 8, cz : cz + 8].sum()
        assert inside >= needed
    # With fraction 0 a mask still requires at least one mask voxel.
    ds0 = PatchDataset([vol], [vol], (8, 8, 8), mask=[mask], seed=0)
    for i in range(200):
        cx, cy, cz = _corner_of(ds0[i]["inputs"][0])
        assert mask[cx : cx + 8, cy : cy + 8, cz : cz + 8].any()


def test_mask_too_strict_is_an_input_error():
    vol = np.zeros((12, 12, 12), np.float32)
    mask = np.zeros(vol.shape, bool)
    mask[0, 0, 0] = True
    with pytest.raises(InputError, match="mask"):
        PatchDataset([vol], [vol], (4, 4, 4), mask=[mask], min_mask_fraction=0.5)


def test_box_sums_match_brute_force(rng):
    mask = rng.random((9, 7, 8)) > 0.6
    sums = _box_sums(mask, (3, 4, 2))
    assert sums.shape == (7, 4, 7)
    for c in [(0, 0, 0), (6, 3, 6), (2, 1, 5)]:
        expect = mask[c[0] : c[0] + 3, c[1] : c[1] + 4, c[2] : c[2] + 2].sum()
        assert sums[c] == expect


def test_region_restriction_never_touches_held_out_slab():
    vol = _coords((24, 20, 30))
    train = [(slice(None), slice(None), slice(0, 12)), (slice(None), slice(None), slice(18, 30))]
    ds = PatchDataset([vol], [vol], (6, 6, 6), region=train, seed=0)
    seen_low = seen_high = False
    for i in range(300):
        x, _ = _pair(ds[i])
        z = x[0] % 100
        assert not ((z >= 12) & (z < 18)).any()
        seen_low |= bool((z < 12).all())
        seen_high |= bool((z >= 18).all())
    assert seen_low and seen_high


def test_region_per_subject_and_region_too_small():
    a, b = _coords((20, 20, 20)), _coords((20, 20, 20))
    per_subject = [
        [(slice(0, 8), slice(None), slice(None))],
        [(slice(12, 20),) + (slice(None),) * 2],
    ]
    ds = PatchDataset([a, b], [a, b], (4, 4, 4), region=per_subject, seed=2)
    for i in range(100):
        k, corner, _ = ds.corner(i)
        assert (corner[0] + 4 <= 8) if k == 0 else (corner[0] >= 12)
    with pytest.raises(InputError, match="region"):
        PatchDataset([a], [a], (4, 4, 4), region=[(slice(0, 3), slice(None), slice(None))])


def test_4d_channels_and_inputs_targets_may_differ_in_channels(rng):
    series = rng.random((12, 11, 10, 5), dtype=np.float32)
    cbv = series.mean(axis=-1)
    ds = PatchDataset([series], [cbv], (4, 4, 4), channel_axis=-1, seed=0)
    x, y = _pair(ds[0])
    assert x.shape == (5, 4, 4, 4) and y.shape == (1, 4, 4, 4)
    np.testing.assert_allclose(x.mean(axis=0), y[0], rtol=1e-6)


def test_4d_without_channel_axis_and_shape_mismatch_are_input_errors(rng):
    series = rng.random((12, 11, 10, 5), dtype=np.float32)
    with pytest.raises(InputError, match="channel_axis"):
        PatchDataset([series], [series[..., 0]], (4, 4, 4))
    with pytest.raises(InputError, match=r"\(12, 11, 10\).*\(12, 11, 9\)"):
        PatchDataset([series[..., 0]], [series[:, :, :9, 0]], (4, 4, 4))


def test_2d_slices_along_chosen_axis():
    vol = _coords((20, 18, 16))
    ds = PatchDataset([vol], [vol], (8, 6), seed=0)  # slices perpendicular to z
    x, _ = _pair(ds[4])
    assert x.shape == (1, 8, 6)
    assert len(np.unique(x[0] % 100)) == 1  # one z
    ds0 = PatchDataset([vol], [vol], (8, 6), slice_axis=0, seed=0)
    x0, _ = _pair(ds0[4])
    assert x0.shape == (1, 8, 6)
    assert len(np.unique(x0[0] // 10000)) == 1  # one x; the patch spans (y, z)


def test_flip_augmentation_keeps_pair_aligned():
    vol = _coords((16, 16, 16))
    ds = PatchDataset([vol], [vol.copy()], (8, 8, 8), augment=random_flip, seed=0)
    flipped = 0
    for i in range(20):
        x, y = _pair(ds[i])
        np.testing.assert_array_equal(x, y)
        cx, cy, cz = _corner_of(x[0])
        flipped += not np.array_equal(x[0], vol[cx : cx + 8, cy : cy + 8, cz : cz + 8])
    assert flipped > 0  # the augmentation really did something


def test_collate_and_dataloader_stack_batches():
    vol = _coords((12, 12, 12))
    ds = PatchDataset([vol], [vol], (4, 4, 4), length=6)
    batch = collate_items([ds[0], ds[1], ds[2]])
    assert set(batch) == {"inputs", "target"}
    xb = batch["inputs"]
    assert (
        isinstance(xb, torch.Tensor) and xb.shape == (3, 1, 4, 4, 4) and xb.dtype == torch.float32
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_items)
    batches = list(loader)
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[1]["inputs"][0].numpy(), ds[3]["inputs"])
    # (input, target) pairs, the older item form, collate to the same dict
    pairs = collate_items([_pair(ds[0]), _pair(ds[1])])
    np.testing.assert_array_equal(pairs["target"].numpy(), batch["target"][:2].numpy())


def test_patch_corners_cover_the_volume_with_the_expected_grid():
    corners = patch_corners((23, 17, 30), (8, 8, 8), (6, 8, 8))
    assert len(corners) == 4 * 3 * 4
    covered = np.zeros((23, 17, 30), bool)
    for c in corners:
        covered[c[0] : c[0] + 8, c[1] : c[1] + 8, c[2] : c[2] + 8] = True
        assert all(ci + 8 <= n for ci, n in zip(c, (23, 17, 30), strict=True))
    assert covered.all()
    assert patch_corners((5, 20, 8), (8, 8, 8), 8) == [(0, 0, 0), (0, 8, 0), (0, 12, 0)]


def test_scaled_pairs_target_is_the_input_region_on_the_finer_grid():
    # in-plane 4x4 (DWI SR): target on a grid 4x finer along x and y, same z
    coarse = _coords((10, 9, 8))
    fine = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)  # (40, 36, 8)
    ds = PatchDataset([coarse], [fine], (4, 3, 5), scale=(4, 4, 1), seed=0)
    for i in range(20):
        x, y = _pair(ds[i])
        assert x.shape == (1, 4, 3, 5) and y.shape == (1, 16, 12, 5)
        cx, cy, cz = _corner_of(x[0])
        np.testing.assert_array_equal(
            y[0], fine[4 * cx : 4 * cx + 16, 4 * cy : 4 * cy + 12, cz : cz + 5]
        )
        # every input voxel is the block of 4x4 target voxels it covers
        np.testing.assert_array_equal(y[0][::4, ::4], x[0])
    with pytest.raises(InputError, match=r"times scale \(4, 4, 1\) = \(40, 36, 8\)"):
        PatchDataset([coarse], [fine[:, :35]], (4, 3, 5), scale=(4, 4, 1))
    flipped = PatchDataset([coarse], [fine], (4, 3, 5), scale=(4, 4, 1), augment=random_flip)
    x, y = _pair(flipped[1])
    np.testing.assert_array_equal(np.repeat(np.repeat(x, 4, 1), 4, 2), y)  # still aligned


def test_scaled_2d_patches_need_scale_one_along_the_slice_axis():
    coarse = _coords((10, 9, 8))
    fine = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    ds = PatchDataset([coarse], [fine], (4, 3), scale=(2, 2, 1), slice_axis=2, seed=0)
    x, y = _pair(ds[0])
    assert x.shape == (1, 4, 3) and y.shape == (1, 8, 6)
    np.testing.assert_array_equal(y[0][::2, ::2], x[0])
    with pytest.raises(InputError, match="slice axis"):
        PatchDataset([coarse], [fine], (4, 3), scale=(2, 2, 1), slice_axis=0)


def test_redrawn_targets_differ_per_sample_and_are_reproducible_from_the_seed():
    clean = _coords((12, 12, 12)) / 1e5

    def noisy_target(subject, box, rng):
        # learning from noise: a fresh noisy copy of the clean region for every sample
        return clean[box] + 0.1 * rng.standard_normal(clean[box].shape)

    a = PatchDataset([clean], None, (4, 4, 4), target_provider=noisy_target, seed=3)
    b = PatchDataset([clean], None, (4, 4, 4), target_provider=noisy_target, seed=3)
    other = PatchDataset([clean], None, (4, 4, 4), target_provider=noisy_target, seed=4)
    plain = PatchDataset([clean], [clean], (4, 4, 4), seed=3)
    for i in range(5):
        np.testing.assert_array_equal(a[i]["target"], b[i]["target"])  # same seed, same draw
        # corners are those without a provider: the provider has its own stream
        np.testing.assert_array_equal(a[i]["inputs"], plain[i]["inputs"])
        noise = a[i]["target"] - a[i]["inputs"]
        assert 0.05 < noise.std() < 0.2
    # the same region drawn twice gets two different noise draws
    same_region = [i for i in range(1, 400) if np.array_equal(a[i]["inputs"], a[0]["inputs"])]
    assert same_region, "expected a repeated corner among 400 draws of 729"
    j = same_region[0]
    assert not np.array_equal(a[j]["target"], a[0]["target"])
    assert not np.array_equal(other[0]["target"], a[0]["target"])
    with pytest.raises(InputError, match="targets or a target_provider"):
        PatchDataset([clean], None, (4, 4, 4))


def test_mask_patch_in_items():
    vol = _coords((12, 12, 12))
    mask = np.zeros(vol.shape, bool)
    mask[2:10, 2:10, 2:10] = True
    ds = PatchDataset([vol], [vol], (4, 4, 4), mask=[mask], return_mask=True, seed=0)
    item = ds[0]
    cx, cy, cz = _corner_of(item["inputs"][0])
    assert item["mask"].dtype == np.float32 and item["mask"].shape == (1, 4, 4, 4)
    np.testing.assert_array_equal(item["mask"][0], mask[cx : cx + 4, cy : cy + 4, cz : cz + 4])
    assert set(collate_items([ds[0], ds[1]])) == {"inputs", "target", "mask"}
