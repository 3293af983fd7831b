"""Interpolation baselines: grid conventions, exactness, sinc consistency, affines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter, map_coordinates

from mrenhance.baselines.interpolate import (
    interpolate_volume,
    resampled_affine,
    source_coordinates,
    upsample,
)
from mrenhance.errors import InputError
from mrenhance.simulate.kspace import degrade_volume, truncate_kspace
from mrenhance.volume import Volume

SPLINES = ("nearest", "linear", "cubic")


@pytest.mark.parametrize(
    "method,alignment",
    [(m, a) for m in SPLINES for a in ("dft", "fov")] + [("sinc", "dft")],
)
def test_constant_image_is_reproduced_exactly(method: str, alignment: str) -> None:
    low = np.full((5, 6, 4), 3.25, dtype=np.float32)
    out = upsample(low, (10, 12, 4), method, alignment=alignment)
    assert out.shape == (10, 12, 4)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 3.25, atol=1e-5)


def test_linear_reproduces_a_ramp_in_the_interior() -> None:
    x, y, z = np.meshgrid(np.arange(6), np.arange(7), np.arange(5), indexing="ij")
    low = (2.0 * x - 0.5 * y + 0.25 * z + 1.0).astype(np.float32)
    out = upsample(low, (12, 14, 5), "linear")  # dft: output j at low coordinate j / 2
    xs, ys, zs = np.meshgrid(np.arange(12) / 2, np.arange(14) / 2, np.arange(5), indexing="ij")
    expected = 2.0 * xs - 0.5 * ys + 0.25 * zs + 1.0
    interior = (xs <= 5) & (ys <= 6)  # beyond the last low voxel the edge is repeated
    np.testing.assert_allclose(out[interior], expected[interior], atol=1e-5)
    assert not np.allclose(out[~interior], expected[~interior])


@pytest.mark.parametrize("method", [*SPLINES, "sinc"])
def test_dft_alignment_keeps_the_low_samples_at_multiples_of_f(method: str) -> None:
    low = np.random.default_rng(1).random((6, 7, 5)).astype(np.float32)
    out = upsample(low, (12, 21, 5), method)
    np.testing.assert_allclose(out[::2, ::3, :], low, atol=1e-5)


@pytest.mark.parametrize("method,order", [("nearest", 0), ("linear", 1), ("cubic", 3)])
@pytest.mark.parametrize("boundary", ["nearest", "grid-wrap"])
@pytest.mark.parametrize("alignment", ["dft", "fov"])
def test_axis_by_axis_equals_one_map_coordinates_call(
    method: str, order: int, boundary: str, alignment: str
) -> None:
    low = np.random.default_rng(2).random((5, 6, 7))
    shape = (10, 13, 7)
    coords = np.meshgrid(
        *[source_coordinates(m, n, alignment) for m, n in zip(low.shape, shape, strict=True)],
        indexing="ij",
    )
    expected = map_coordinates(low, coords, order=order, mode=boundary)
    out = upsample(low, shape, method, alignment=alignment, boundary=boundary)
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 18, 8), (17, 15, 9), (16, 15, 7)])
def test_sinc_upsampling_of_the_low_matrix_equals_zero_filling(shape: tuple[int, ...]) -> None:
    # A smooth, strictly positive image: its truncated version stays positive, so the
    # magnitude taken by truncate_kspace changes nothing and the identity is exact.
    rng = np.random.default_rng(3)
    smooth = gaussian_filter(rng.standard_normal(shape), 1.5, mode="wrap")
    image = (2.0 + smooth).astype(np.float32)
    factors = (2, 2, 1)
    same_grid = truncate_kspace(image, factors, output="same_grid")
    low = truncate_kspace(image, factors, output="low_matrix")
    assert same_grid.min() > 0.1
    assert not np.allclose(same_grid, image, atol=1e-3)  # the truncation did something
    np.testing.assert_allclose(upsample(low, shape, "sinc"), same_grid, atol=1e-5)


def test_paper_literal_linear_lr_differs_from_zero_filling(small_brain: np.ndarray) -> None:
    low = truncate_kspace(small_brain, (2, 2, 1), output="low_matrix")
    linear = upsample(low, small_brain.shape, "linear")
    sinc = upsample(low, small_brain.shape, "sinc")
    assert linear.shape == sinc.shape == small_brain.shape
    assert np.abs(linear - sinc).max() > 1e-2


def test_invalid_options_raise_input_errors() -> None:
    low = np.zeros((4, 4, 4), dtype=np.float32)
    with pytest.raises(InputError, match="method"):
        upsample(low, (8, 8, 4), "bicubic")
    with pytest.raises(InputError, match="alignment"):
        upsample(low, (8, 8, 4), "sinc", alignment="fov")
    with pytest.raises(InputError, match="has 2 axes"):
        upsample(low, (8, 8), "linear")
    vol = Volume(low)
    with pytest.raises(InputError, match="exactly one"):
        interpolate_volume(vol, (2, 2, 1), target_shape=(8, 8, 4))
    with pytest.raises(InputError, match="zoom"):
        interpolate_volume(vol, (2, 0, 1))


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return (affine @ np.append(np.asarray(ijk, dtype=np.float64), 1.0))[:3]


def test_fov_alignment_keeps_the_corners_of_the_field_of_view(
    oblique_affine: np.ndarray,
) -> None:
    vol = Volume(np.ones((5, 6, 4), dtype=np.float32), oblique_affine, {"source": "t"})
    out = interpolate_volume(vol, (2, 2, 1), method="linear", alignment="fov")
    assert out.shape == (10, 12, 4)
    lo = np.array(vol.shape) - 0.5
    hi = np.array(out.shape) - 0.5
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner, dtype=bool)
        low_corner = np.where(c, lo, -0.5)
        high_corner = np.where(c, hi, -0.5)
        np.testing.assert_allclose(
            _world(out.affine, high_corner), _world(vol.affine, low_corner), atol=1e-9
        )
    np.testing.assert_allclose(out.voxel_size, np.array(vol.voxel_size) / [2, 2, 1])
    assert out.meta["voxel_size"] == pytest.approx(out.voxel_size)
    assert out.meta["provenance"][-1].startswith("interpolate_volume(")


def test_dft_alignment_puts_low_voxel_i_at_output_voxel_i_times_f(
    oblique_affine: np.ndarray,
) -> None:
    vol = Volume(np.ones((5, 6, 4), dtype=np.float32), oblique_affine)
    out = interpolate_volume(vol, target_shape=(10, 18, 4), method="nearest")
    for i, j, k in [(0, 0, 0), (4, 5, 3), (2, 1, 0)]:
        np.testing.assert_allclose(
            _world(out.affine, [2 * i, 3 * j, k]), _world(vol.affine, [i, j, k]), atol=1e-9
        )
    # The field of view keeps its size: m voxels of size d span what n voxels of d*m/n do.
    np.testing.assert_allclose(
        np.array(out.voxel_size) * out.shape[:3], np.array(vol.voxel_size) * vol.shape[:3]
    )


def test_degrade_then_interpolate_round_trips_the_affine(oblique_affine: np.ndarray) -> None:
    hr = Volume(np.ones((16, 15, 6), dtype=np.float32), oblique_affine)
    low = degrade_volume(hr, "kspace", factors=(2, 2, 1), output="low_matrix")
    back = interpolate_volume(low, target_shape=hr.shape, method="sinc")
    np.testing.assert_allclose(back.affine, hr.affine, atol=1e-12)
    np.testing.assert_allclose(back.data, 1.0, atol=1e-5)


def test_interpolate_volume_resamples_each_frame_of_a_4d_volume() -> None:
    data = np.stack([np.full((3, 4, 2), t, dtype=np.float32) for t in range(3)], axis=-1)
    out = interpolate_volume(Volume(data), (2, 2, 2), method="cubic")
    assert out.shape == (6, 8, 4, 3)
    np.testing.assert_allclose(out.data[..., 2], 2.0, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 9),
    n=st.integers(1, 20),
    alignment=st.sampled_from(["dft", "fov"]),
)
def test_resampled_affine_places_voxels_where_they_were_sampled(
    m: int, n: int, alignment: str
) -> None:
    aff = np.diag([1.5, 2.0, 0.7, 1.0])
    aff[:3, 3] = [10.0, -3.0, 4.0]
    new = resampled_affine(aff, (m, 3, 2), (n, 3, 2), alignment)
    coords = source_coordinates(m, n, alignment)
    for j in range(n):
        np.testing.assert_allclose(_world(new, [j, 1, 1]), _world(aff, [coords[j], 1, 1]))
