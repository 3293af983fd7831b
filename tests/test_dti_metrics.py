"""The dti protocol's metric functions on cases with known answers: per-slice PSNR/SSIM,
V1 angles, tensor-map errors and the intensity ratios."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.diffusion import angular_error_deg, fit_tensors, tensor_map_errors
from mrenhance.tasks.dti import intensity_ratios, per_slice_psnr_ssim


def _with_mse(hr: np.ndarray, mse: float) -> np.ndarray:
    """``hr`` plus a +-sqrt(mse) checkerboard: exactly that MSE."""
    x, y = np.indices(hr.shape[:2])
    sign = np.where((x + y) % 2 == 0, 1.0, -1.0)
    return hr + np.sqrt(mse) * sign.reshape(sign.shape + (1,) * (hr.ndim - 2))


def test_psnr_is_the_mean_of_each_slice_of_each_volume_not_the_pooled_mse():
    rng = np.random.default_rng(0)
    hr = rng.uniform(0.2, 0.8, (12, 12, 2, 2))
    sr = np.empty_like(hr)
    # (slice, volume) -> MSE 1e-2, 1e-3, 1e-4, 1e-5: PSNR 20, 30, 40, 50 dB
    for k, (z, v) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        sr[:, :, z, v] = _with_mse(hr[:, :, z, v], 10.0 ** -(2 + k))
    psnr, _ = per_slice_psnr_ssim(sr, hr)
    assert psnr == pytest.approx(35.0, abs=1e-9)
    pooled = 10 * np.log10(1 / np.mean((sr - hr) ** 2))
    assert pooled == pytest.approx(25.56, abs=0.01)  # what a pooled PSNR would say


def test_ssim_is_the_mean_over_slices_and_volumes():
    rng = np.random.default_rng(1)
    hr = rng.uniform(0.2, 0.8, (16, 16, 2, 2))
    sr = hr.copy()
    sr[:, :, 1, 0] = rng.uniform(0.2, 0.8, (16, 16))  # one unrelated slice of four
    _, ssim = per_slice_psnr_ssim(sr, hr)
    _, alone = per_slice_psnr_ssim(sr[:, :, 1:2, 0:1], hr[:, :, 1:2, 0:1])
    assert alone < 0.2
    assert ssim == pytest.approx((3 * 1.0 + alone) / 4, abs=1e-6)


def _rotate_z(v: np.ndarray, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    r = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return v @ r.T


def test_v1_angle_is_the_rotation_and_blind_to_the_sign():
    v = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [0, 0.6, 0.8]])
    assert np.allclose(angular_error_deg(_rotate_z(v[:2], 30), v[:2]), 30)
    assert np.allclose(angular_error_deg(-v, v), 0, atol=1e-5)  # an axis, not an arrow
    assert np.allclose(angular_error_deg(_rotate_z(v[:1], 150), v[:1]), 30)  # 150 = -30 axis
    assert np.allclose(angular_error_deg(_rotate_z(v[:1], 90), 3 * v[:1]), 90)  # lengths ignored
    assert np.allclose(angular_error_deg(np.array([[0, 0, 0.0]]), v[:1]), 90)  # no direction


def test_tensor_map_errors_per_region_in_um2_per_ms():
    shape = (4, 3, 2)
    wm = np.zeros(shape, bool)
    wm[:2] = True
    gm = ~wm
    reference = {"fa": np.full(shape, 0.5), "md": np.full(shape, 0.7e-3)}
    reference["v1"] = np.broadcast_to([1.0, 0, 0], (*shape, 3)).copy()
    estimate = {"fa": np.where(wm, 0.6, 0.45), "md": np.where(wm, 0.8e-3, 0.7e-3)}
    estimate["v1"] = np.where(wm[..., None], _rotate_z(reference["v1"], 30), -reference["v1"])
    out = tensor_map_errors(estimate, reference, {"wm": wm, "gm": gm, "csf": np.zeros(shape, bool)})
    # an empty region has no entry; angles only where asked (WM)
    expected = {"fa_mae_wm": 0.1, "md_mae_wm": 0.1, "angle_wm_deg": 30.0}
    assert out == pytest.approx({**expected, "fa_mae_gm": 0.05, "md_mae_gm": 0.0})
    both = tensor_map_errors(estimate, reference, {"gm": gm}, angle_regions=("gm",))
    assert both["angle_gm_deg"] == pytest.approx(0.0, abs=1e-5)  # -v1 is the same axis


def test_fitted_tensors_rotated_30_degrees_give_30_degrees_and_no_fa_md_error():
    """Noise-free signals of one tensor and of it turned 30 degrees about z, fitted by
    dipy: V1 30 degrees apart, FA and MD equal."""
    from mrenhance.simulate.dwi import load_gradient_table

    bvals, bvecs = load_gradient_table()
    evals = np.diag([1.6e-3, 0.4e-3, 0.3e-3])

    def series(degrees):
        t = np.radians(degrees)
        r = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        d = r @ evals @ r.T
        s = 100 * np.exp(-bvals * np.einsum("ni,ij,nj->n", bvecs, d, bvecs))
        return np.broadcast_to(s, (2, 2, 1, bvals.size)).astype(np.float32).copy()

    mask = np.ones((2, 2, 1), bool)
    ref = fit_tensors(series(0), bvals, bvecs, mask)
    est = fit_tensors(series(30), bvals, bvecs, mask)
    out = tensor_map_errors(est, ref, {"wm": mask})
    assert out["angle_wm_deg"] == pytest.approx(30.0, abs=0.05)
    assert out["fa_mae_wm"] < 1e-4 and out["md_mae_wm"] < 1e-4
    assert float(ref["md"].mean()) == pytest.approx(0.766e-3, rel=1e-3)


def test_intensity_ratios_split_b0_and_dw_volumes_inside_the_mask():
    rng = np.random.default_rng(2)
    hr = rng.uniform(50, 100, (6, 6, 2, 4)).astype(np.float32)
    bvals = np.array([0.0, 1000, 5, 1000])  # b <= 50 counts as b0
    sr = hr * np.array([1.1, 0.9, 1.1, 0.9], np.float32)
    mask = np.zeros((6, 6, 2), bool)
    mask[1:5, 1:5] = True
    sr[~mask] = 1e6  # outside the brain: not counted
    out = intensity_ratios(sr, hr, bvals, mask)
    assert out == pytest.approx({"b0_ratio": 1.1, "dw_ratio": 0.9}, rel=1e-6)
    assert intensity_ratios(hr[..., :1], hr[..., :1], bvals[:1], mask) == {"b0_ratio": 1.0}
