"""k-space truncation (mDCSRN Sec. 2.6) and thick-slice simulation."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.errors import InputError
from mrenhance.simulate.kspace import (
    _truncate_complex,
    degrade_volume,
    kept_kspace_mask,
    low_matrix_size,
    thick_slice,
    truncate_kspace,
)
from mrenhance.volume import Volume

SHAPES = [(16, 18, 8), (17, 15, 9), (16, 15, 7)]  # even, odd and mixed axes


def _band_limited(shape: tuple[int, ...], factors: tuple[float, ...], seed: int) -> np.ndarray:
    """A real random image whose spectrum lies inside the kept region."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fftn(rng.standard_normal(shape))
    spectrum[~kept_kspace_mask(shape, factors)] = 0
    return np.real(np.fft.ifftn(spectrum)).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
def test_band_limited_image_passes_unchanged(shape: tuple[int, ...]) -> None:
    factors = (2, 2, 1)
    image = _band_limited(shape, factors, seed=0)
    out = _truncate_complex(image, factors)
    np.testing.assert_allclose(out.real, image, atol=1e-5)
    np.testing.assert_allclose(truncate_kspace(image, factors), np.abs(image), atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_energy_outside_the_kept_region_is_removed(shape: tuple[int, ...]) -> None:
    factors = (2, 3, 1.5)
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    out = _truncate_complex(image, factors)
    spectrum = np.fft.fftn(out)
    mask = kept_kspace_mask(shape, factors)
    assert np.abs(spectrum[~mask]).max() < 1e-4 * np.abs(spectrum[mask]).max()
    # inside, the input spectrum is kept as it was
    np.testing.assert_allclose(spectrum[mask], np.fft.fftn(image)[mask], atol=1e-3)


@pytest.mark.parametrize("shape", SHAPES)
def test_symmetric_band_keeps_a_real_image_real(shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    for output in ("same_grid", "low_matrix"):
        out = _truncate_complex(image, (2, 2, 2), output=output)
        assert np.abs(out.imag).max() < 1e-5 * np.abs(out.real).max()


def test_kept_band_sizes_and_symmetry() -> None:
    mask = kept_kspace_mask((16, 17, 8), (2, 2, 1))
    # n=16, f=2: m=8 -> |k| <= 3 (7 lines, the low grid's Nyquist dropped); n=17: m=9 -> 9.
    assert mask[:, 0, 0].sum() == 7
    assert mask[0, :, 0].sum() == 9
    assert mask[0, 0, :].all()  # factor 1: the whole axis, Nyquist line included
    k = np.arange(16)
    np.testing.assert_array_equal(mask[k, 0, 0], mask[(-k) % 16, 0, 0])
    assert low_matrix_size(197, 2) == 99 and low_matrix_size(256, 2) == 128


def test_factors_of_one_are_the_identity(small_brain: np.ndarray) -> None:
    out = truncate_kspace(small_brain, (1, 1, 1))
    np.testing.assert_array_equal(out, small_brain)  # non-negative image: |x| == x
    low = truncate_kspace(small_brain, (1, 1, 1), output="low_matrix")
    np.testing.assert_array_equal(low, small_brain)


def test_a_factor_of_one_leaves_its_axis_untouched() -> None:
    image = np.random.default_rng(3).standard_normal((16, 6, 5)).astype(np.float32)
    out = _truncate_complex(image, (2, 1, 1))
    # the same truncation done by hand along axis 0 only (1D FFTs)
    spectrum = np.fft.fft(image.astype(np.float64), axis=0)
    spectrum[np.abs(np.fft.fftfreq(16) * 16) > 3] = 0
    np.testing.assert_allclose(out, np.fft.ifft(spectrum, axis=0), atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_low_matrix_shape_and_mean(shape: tuple[int, ...], small_brain: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    image = (5.0 + rng.random(shape)).astype(np.float32)  # positive: magnitude is harmless
    factors = (2, 3, 1.5)
    low = truncate_kspace(image, factors, output="low_matrix")
    expected = tuple(int(np.floor(n / f + 0.5)) for n, f in zip(shape, factors, strict=True))
    assert low.shape == expected
    assert low.dtype == np.float32
    assert low.mean() == pytest.approx(image.mean(), rel=1e-5)


def test_low_matrix_samples_the_zero_filled_image_every_f_voxels() -> None:
    image = np.random.default_rng(5).standard_normal((16, 18, 6)).astype(np.float32)
    same = _truncate_complex(image, (2, 3, 1))
    low = _truncate_complex(image, (2, 3, 1), output="low_matrix")
    assert low.shape == (8, 6, 6)
    np.testing.assert_allclose(low, same[::2, ::3, :], atol=1e-5)


def test_tapers_weight_the_band_and_reduce_ringing() -> None:
    step = np.zeros((64, 4, 4), dtype=np.float32)
    step[16:48] = 1.0
    overshoot = {
        taper: truncate_kspace(step, (4, 1, 1), taper=taper).max() - 1.0
        for taper in (None, "tukey", "hamming")
    }
    assert overshoot[None] > 0.05  # Gibbs ringing of the sharp cut-off
    assert overshoot["hamming"] < overshoot["tukey"] < overshoot[None]
    # a Tukey window with alpha 0 is the sharp cut-off
    np.testing.assert_allclose(
        truncate_kspace(step, (4, 1, 1), taper="tukey", tukey_alpha=0.0),
        truncate_kspace(step, (4, 1, 1)),
        atol=1e-6,
    )
    # Hamming: DC weight 1, outermost kept line 0.08
    image = np.random.default_rng(6).standard_normal((16, 4, 4)).astype(np.float32)
    ratio = np.fft.fft(_truncate_complex(image, (2, 1, 1), taper="hamming"), axis=0) / np.fft.fft(
        image, axis=0
    )
    assert ratio[0].real == pytest.approx(np.ones((4, 4)), abs=1e-5)
    assert ratio[3].real == pytest.approx(np.full((4, 4), 0.08), abs=1e-5)
    assert np.abs(ratio[4:13]).max() < 1e-5


def test_invalid_arguments_raise_input_errors() -> None:
    image = np.zeros((8, 8, 8), dtype=np.float32)
    with pytest.raises(InputError, match=">= 1"):
        truncate_kspace(image, (0.5, 1, 1))
    with pytest.raises(InputError, match="one per axis"):
        truncate_kspace(image, (2, 2))
    with pytest.raises(InputError, match="taper"):
        truncate_kspace(image, (2, 2, 1), taper="hann")
    with pytest.raises(InputError, match="output"):
        truncate_kspace(image, (2, 2, 1), output="small")
    with pytest.raises(InputError, match="integer"):
        thick_slice(image, 1.5)
    with pytest.raises(InputError, match="kind"):
        degrade_volume(Volume(image), "blur")


@pytest.mark.parametrize("profile", ["gaussian", "boxcar"])
def test_thick_slice_keeps_constants_and_images_constant_along_the_slice_axis(
    profile: str,
) -> None:
    rng = np.random.default_rng(7)
    in_plane = rng.random((6, 5, 1)).astype(np.float32)
    image = np.repeat(in_plane, 13, axis=2)  # varies in x, y only
    out = thick_slice(image, 3, axis=2, profile=profile)
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_thick_slice_boxcar_averages_each_slab() -> None:
    # Alternating slices +1/-1 along y: a boxcar slab of 2 voxels averages them to 0.
    image = np.ones((4, 12, 3), dtype=np.float32)
    image[:, 1::2, :] = -1.0
    out = thick_slice(image, 2, axis=1, profile="boxcar")
    np.testing.assert_allclose(out, 0.0, atol=1e-5)
    # the Gaussian profile of the same FWHM blurs but does not cancel them exactly
    assert np.abs(thick_slice(image, 2, axis=1, profile="gaussian")).max() > 1e-3


def test_thick_slice_keeps_a_linear_ramp_in_the_interior() -> None:
    z = np.arange(64, dtype=np.float32)
    image = np.broadcast_to(2.0 * z - 5.0, (3, 3, 64)).copy()
    out = thick_slice(image, 4, axis=2, profile="boxcar")
    # Slab centres at 1.5, 5.5, ..., 61.5 hold the line's values; the cubic spline (edge
    # repeated beyond the ends) reproduces the line away from the first and last slabs.
    np.testing.assert_allclose(out[..., 16:48], image[..., 16:48], atol=0.02)
    assert np.abs(out[..., -1] - image[..., -1]).max() > 0.5  # clamped past the last centre


def test_thick_slice_factor_one_with_one_voxel_boxcar_is_the_identity(
    small_brain: np.ndarray,
) -> None:
    out = thick_slice(small_brain, 1, axis=0, profile="boxcar")
    np.testing.assert_allclose(out, small_brain, atol=1e-5)


def test_thick_slice_removes_detail_along_its_axis_only(small_brain: np.ndarray) -> None:
    out = thick_slice(small_brain, 4, axis=2)
    diff_z = np.abs(np.diff(out, axis=2)).mean() / np.abs(np.diff(small_brain, axis=2)).mean()
    assert diff_z < 0.7
    assert out.mean() == pytest.approx(small_brain.mean(), rel=0.05)


def test_degrade_volume_records_provenance_and_low_matrix_affine(
    oblique_affine: np.ndarray, small_brain: np.ndarray
) -> None:
    vol = Volume(small_brain, oblique_affine, {"source": "t", "provenance": ["loaded"]})
    same = degrade_volume(vol, "kspace", factors=(2, 2, 1))
    assert same.shape == vol.shape
    np.testing.assert_array_equal(same.affine, vol.affine)
    assert same.meta["provenance"] == ["loaded", "truncate_kspace(factors=(2, 2, 1))"]

    low = degrade_volume(vol, "kspace", factors=(2, 2, 1), output="low_matrix")
    assert low.shape == (12, 14, 20)
    np.testing.assert_allclose(low.affine, oblique_affine @ np.diag([2.0, 2.0, 1.0, 1.0]))
    np.testing.assert_allclose(low.meta["voxel_size"], [1.8, 2.2, 2.5])
    np.testing.assert_array_equal(low.affine[:3, 3], oblique_affine[:3, 3])  # voxel 0 stays

    thick = degrade_volume(vol, "thick_slice", factor=2)
    assert thick.shape == vol.shape
    assert thick.meta["provenance"][-1] == "thick_slice(factor=2)"
    assert vol.meta["provenance"] == ["loaded"]  # the input is not modified


def test_degrade_volume_treats_each_frame_of_a_4d_volume() -> None:
    rng = np.random.default_rng(8)
    data = rng.random((8, 10, 4, 3)).astype(np.float32)
    out = degrade_volume(Volume(data), "kspace", factors=(2, 2, 1), output="low_matrix")
    assert out.shape == (4, 5, 4, 3)
    np.testing.assert_allclose(
        out.data[..., 1], truncate_kspace(data[..., 1], (2, 2, 1), output="low_matrix")
    )
