"""Tests for mrenhance.metrics: agreement with skimage, known values, masks, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from mrenhance import metrics
from mrenhance.errors import InputError


def skimage_ssim(x: np.ndarray, reference: np.ndarray, data_range: float) -> float:
    return float(
        structural_similarity(
            x,
            reference,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
    )


def mni_t1() -> np.ndarray:
    nilearn = pytest.importorskip("nilearn")
    nib = pytest.importorskip("nibabel")
    path = (
        Path(nilearn.__file__).parent
        / "datasets"
        / "data"
        / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    )
    if not path.exists():
        pytest.skip(f"{path} not installed")
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


# --- SSIM -------------------------------------------------------------------------------------


def test_ssim_matches_skimage_on_random_3d(rng):
    reference = rng.random((36, 30, 26))
    x = reference + 0.15 * rng.standard_normal(reference.shape)
    ours = metrics.ssim(x, reference, data_range=1.0)
    assert ours == pytest.approx(skimage_ssim(x, reference, 1.0), abs=1e-4)
    assert 0.0 < ours < 1.0


def test_ssim_matches_skimage_on_random_2d(rng):
    reference = gaussian_filter(rng.random((64, 48)), 1.0)
    x = reference + 0.05 * rng.standard_normal(reference.shape)
    data_range = float(reference.max() - reference.min())
    assert metrics.ssim(x, reference) == pytest.approx(
        skimage_ssim(x, reference, data_range), abs=1e-4
    )


def test_ssim_matches_skimage_on_real_mni_crop_and_degraded_copy(rng):
    t1 = mni_t1()
    reference = t1[60:124, 70:134, 60:108]  # a (64, 64, 48) crop through the brain
    degraded = gaussian_filter(reference, 1.2) + 4.0 * rng.standard_normal(reference.shape)
    ours = metrics.ssim(degraded, reference, data_range=255.0)
    theirs = skimage_ssim(degraded, reference, 255.0)
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert 0.3 < ours < 0.99  # a real degradation, not a trivial 0 or 1
    # 2D on one axial slice too
    z = 24
    assert metrics.ssim(degraded[..., z], reference[..., z], data_range=255.0) == pytest.approx(
        skimage_ssim(degraded[..., z], reference[..., z], 255.0), abs=1e-4
    )


def test_ssim_2d_on_3d_is_mean_of_slice_ssims(rng):
    reference = rng.random((30, 28, 12))
    x = reference + 0.1 * rng.standard_normal(reference.shape)
    per_slice = [skimage_ssim(x[..., k], reference[..., k], 1.0) for k in range(12)]
    assert metrics.ssim(x, reference, data_range=1.0, spatial_dims=2) == pytest.approx(
        np.mean(per_slice), abs=1e-4
    )


def test_ssim_2d_does_not_mix_slices(rng):
    reference = rng.random((30, 28, 12))
    x = reference.copy()
    x[..., 5] += 0.3 * rng.standard_normal((30, 28))  # only slice 5 differs
    _, map_2d = metrics.ssim(x, reference, data_range=1.0, spatial_dims=2, return_map=True)
    _, map_3d = metrics.ssim(x, reference, data_range=1.0, return_map=True)
    assert np.allclose(np.delete(map_2d, 5, axis=2), 1.0)
    assert map_2d[..., 5].mean() < 0.9
    assert map_3d[..., 4].mean() < 0.99  # the 3D window reaches into the neighbours


def test_ssim_identical_is_one_and_map_has_image_shape(small_brain):
    value, smap = metrics.ssim(small_brain, small_brain, return_map=True)
    assert value == pytest.approx(1.0)
    assert smap.shape == small_brain.shape
    assert np.allclose(smap, 1.0)


def test_masked_ssim_is_mean_of_map_over_mask(rng, small_brain):
    x = small_brain + 0.2 * rng.standard_normal(small_brain.shape).astype(np.float32)
    mask = small_brain > 0.5
    value, smap = metrics.ssim(x, small_brain, data_range=3.0, mask=mask, return_map=True)
    assert value == pytest.approx(float(smap[mask].mean()))
    assert value != pytest.approx(metrics.ssim(x, small_brain, data_range=3.0), abs=1e-3)


def test_ssim_default_data_range_is_reference_range_over_mask(rng, small_brain):
    x = small_brain + 0.1 * rng.standard_normal(small_brain.shape)
    mask = small_brain > 0.5
    brain = small_brain[mask]
    expected = metrics.ssim(x, small_brain, data_range=brain.max() - brain.min(), mask=mask)
    assert metrics.ssim(x, small_brain, mask=mask) == pytest.approx(expected)


def test_ssim_rejects_images_smaller_than_window(rng):
    a = rng.random((8, 30, 30))
    with pytest.raises(InputError, match="smaller than the 11-voxel window"):
        metrics.ssim(a, a, data_range=1.0)


# --- PSNR -------------------------------------------------------------------------------------


def test_psnr_of_constant_offset_is_known_value(small_brain):
    data_range, offset = 200.0, 2.0
    x = small_brain + offset
    assert metrics.psnr(x, small_brain, data_range=data_range) == pytest.approx(
        20 * np.log10(data_range / offset)
    )


def test_psnr_matches_skimage_and_defaults_to_reference_range(rng):
    reference = rng.random((20, 22, 18)) * 50
    x = reference + rng.standard_normal(reference.shape)
    data_range = float(reference.max() - reference.min())
    assert metrics.psnr(x, reference) == pytest.approx(
        peak_signal_noise_ratio(reference, x, data_range=data_range)
    )


def test_psnr_identical_is_inf(small_brain):
    assert metrics.psnr(small_brain, small_brain) == float("inf")


def test_masked_psnr_only_sees_masked_voxels(rng, small_brain):
    mask = small_brain > 0.5
    x = small_brain + 0.1 * rng.standard_normal(small_brain.shape).astype(np.float32)
    before = metrics.psnr(x, small_brain, data_range=3.0, mask=mask)
    x_changed = x.copy()
    x_changed[~mask] = 1000.0  # wreck everything outside the mask
    reference_changed = small_brain.copy()
    reference_changed[~mask] = np.nan  # NaN outside the mask is allowed
    assert metrics.psnr(x_changed, reference_changed, data_range=3.0, mask=mask) == before
    assert metrics.psnr(x_changed, small_brain, data_range=3.0) < before - 10


# --- NRMSE and voxel-wise errors --------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["euclidean", "min-max", "mean", "Euclidean"])
def test_nrmse_matches_skimage(rng, normalization):
    reference = rng.random((16, 18, 14)) + 0.5
    x = reference + 0.1 * rng.standard_normal(reference.shape)
    assert metrics.nrmse(x, reference, normalization=normalization) == pytest.approx(
        normalized_root_mse(reference, x, normalization=normalization), rel=1e-12
    )


def test_nrmse_unknown_normalization():
    a = np.ones((4, 4))
    with pytest.raises(InputError, match="unknown normalization"):
        metrics.nrmse(a, a, normalization="max")


def test_error_metrics_known_values_and_aliases():
    reference = np.zeros((4, 5, 6))
    x = reference.copy()
    x[0, 0, :] = 3.0  # 6 voxels off by 3 out of 120
    assert metrics.mae(x, reference) == pytest.approx(6 * 3 / 120)
    assert metrics.mse(x, reference) == pytest.approx(6 * 9 / 120)
    assert metrics.rmse(x, reference) == pytest.approx(np.sqrt(6 * 9 / 120))
    assert metrics.l1 is metrics.mae and metrics.l2 is metrics.mse
    mask = np.zeros_like(reference, dtype=bool)
    mask[0, 0, :3] = True
    mask[1, 1, :3] = True
    assert metrics.mae(x, reference, mask=mask) == pytest.approx(1.5)


# --- ROI measures -----------------------------------------------------------------------------


def test_snr_contrast_and_cnr_on_synthetic_rois(rng):
    image = np.zeros((60, 60, 10))
    gm = np.zeros(image.shape, dtype=bool)
    wm = np.zeros(image.shape, dtype=bool)
    gm[:30] = True
    wm[30:] = True
    image[gm] = 60.0
    image[wm] = 25.0
    image += rng.normal(0.0, 5.0, image.shape)
    assert metrics.snr(image, gm, wm) == pytest.approx(60.0 / 5.0, rel=0.05)
    assert metrics.contrast_ratio(image, gm, wm) == pytest.approx(60.0 / 25.0, rel=0.02)
    assert metrics.contrast_to_noise(image, gm, wm, wm) == pytest.approx(35.0 / 5.0, rel=0.05)
    assert metrics.contrast_to_noise(image, wm, gm, wm) < 0


def test_snr_errors():
    image = np.ones((5, 5))
    roi = np.zeros((5, 5), dtype=bool)
    with pytest.raises(InputError, match="signal_mask is empty"):
        metrics.snr(image, roi, image > 0)
    with pytest.raises(InputError, match="zero std"):
        metrics.snr(image, image > 0, image > 0)
    with pytest.raises(InputError, match="roi_b has shape"):
        metrics.contrast_ratio(image, image > 0, np.ones((4, 4), dtype=bool))


# --- correlation ------------------------------------------------------------------------------


def test_repetition_correlation_identical_is_one(small_brain):
    repeats = np.stack([small_brain] * 4)
    assert metrics.repetition_correlation(repeats) == pytest.approx(1.0)


def test_repetition_correlation_independent_noise_is_near_zero(rng):
    repeats = rng.standard_normal((5, 30, 30, 20))
    assert abs(metrics.repetition_correlation(repeats)) < 0.02


def test_repetition_correlation_known_value_and_mask(rng):
    signal = rng.standard_normal((40, 40, 10))
    # signal + noise of equal variance: r between two repeats is 1 / (1 + 1) = 0.5
    repeats = signal + rng.standard_normal((3, 40, 40, 10))
    assert metrics.repetition_correlation(repeats) == pytest.approx(0.5, abs=0.03)
    mask = np.zeros(signal.shape, dtype=bool)
    mask[:20] = True
    masked = metrics.repetition_correlation(repeats, mask=mask)
    assert masked == pytest.approx(metrics.repetition_correlation(repeats[:, :20]))


def test_repetition_correlation_needs_two_repeats(small_brain):
    with pytest.raises(InputError, match="n >= 2"):
        metrics.repetition_correlation(small_brain[None])


def test_voxelwise_correlation_map(rng):
    truth = rng.standard_normal((12, 6, 5, 4))  # 12 subjects
    output = 2.0 * truth + 1.0
    noise = rng.standard_normal(truth.shape)
    assert np.allclose(metrics.voxelwise_correlation(output, truth), 1.0)
    r = metrics.voxelwise_correlation(noise, truth)
    assert r.shape == (6, 5, 4) and np.all(np.abs(r) <= 1)
    mask = np.zeros((6, 5, 4), dtype=bool)
    mask[0] = True
    masked = metrics.voxelwise_correlation(output, truth, mask=mask)
    assert np.all(np.isnan(masked[1:])) and np.allclose(masked[0], 1.0)


# --- errors and the registry ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(metrics.METRICS))
def test_every_metric_rejects_shape_mismatch(name):
    with pytest.raises(InputError, match=r"has shape \(20, 20, 20\) but reference has shape"):
        metrics.METRICS[name](np.ones((20, 20, 20)), np.ones((20, 20, 19)))


@pytest.mark.parametrize("name", sorted(metrics.METRICS))
def test_every_metric_rejects_empty_mask(name, rng):
    a = rng.random((20, 20, 20))
    with pytest.raises(InputError, match="mask is empty"):
        metrics.METRICS[name](a, a, mask=np.zeros(a.shape, dtype=bool))


@pytest.mark.parametrize("name", sorted(metrics.METRICS))
def test_every_metric_rejects_nan(name, rng):
    a = rng.random((20, 20, 20))
    b = a.copy()
    b[3, 4, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        metrics.METRICS[name](b, a)


def test_constant_reference_without_data_range_is_an_error():
    reference = np.full((12, 12, 12), 5.0)
    with pytest.raises(InputError, match="data_range"):
        metrics.psnr(reference + 1.0, reference)


def test_compute_metrics_and_registry(rng, small_brain):
    x = small_brain + 0.1 * rng.standard_normal(small_brain.shape)
    mask = small_brain > 0.5
    result = metrics.compute_metrics(x, small_brain, data_range=3.0, mask=mask)
    assert list(result) == ["psnr", "ssim", "nrmse"]
    assert result["psnr"] == metrics.psnr(x, small_brain, data_range=3.0, mask=mask)
    assert result["ssim"] == metrics.ssim(x, small_brain, data_range=3.0, mask=mask)
    assert result["nrmse"] == metrics.nrmse(x, small_brain, mask=mask)
    assert all(isinstance(v, float) for v in result.values())
    assert set(metrics.compute_metrics(x, small_brain, names=metrics.METRICS)) == set(
        metrics.METRICS
    )
    with pytest.raises(InputError, match="unknown metric.*'psnrr'"):
        metrics.compute_metrics(x, small_brain, names=["psnrr"])
