"""The DWI forward model and the paper's LR images (simulate.dwi)."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.diffusion import angular_error_deg, fit_tensors
from mrenhance.errors import InputError
from mrenhance.simulate import dwi as D
from mrenhance.simulate import subjects as S


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(3)
    subject = S.draw_subject(rng, voxel_mm=2.0, shape=(96, 112, 4), lesions=())
    bvals, bvecs = D.load_gradient_table()
    dwi, truth = D.simulate_dwi(subject, rng, bvals, bvecs, snr=30.0)
    return subject, bvals, bvecs, dwi, truth


def test_gradient_table_of_small_64d_and_from_fsl_files(tmp_path):
    bvals, bvecs = D.load_gradient_table("sample:small_64D")
    assert bvals.shape == (65,) and bvecs.shape == (65, 3)
    assert (bvals <= 50).sum() == 1
    np.testing.assert_allclose(np.linalg.norm(bvecs[bvals > 50], axis=1), 1.0, atol=1e-6)
    (tmp_path / "g.bval").write_text("0 1000 1000\n")
    (tmp_path / "g.bvec").write_text("0 2 0\n0 0 1\n0 0 0\n")  # 3 rows; normalised on load
    b, g = D.load_gradient_table(f"{tmp_path / 'g.bval'},{tmp_path / 'g.bvec'}")
    np.testing.assert_allclose(g, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    (tmp_path / "n.bval").write_text("1000 1000\n")
    (tmp_path / "n.bvec").write_text("1 0\n0 1\n0 0\n")
    with pytest.raises(InputError, match="no b = 0"):
        D.load_gradient_table(f"{tmp_path / 'n.bval'},{tmp_path / 'n.bvec'}")


def test_tissue_diffusion_is_what_was_asked(simulated):
    subject, bvals, bvecs, _, truth = simulated
    maps = fit_tensors(truth["noise_free"], bvals, bvecs, subject.brain_mask)
    fr = subject.fractions
    wm = fr["wm"] > 0.95
    gm, csf = fr["gm"] > 0.95, fr["csf"] > 0.95
    # pure WM: FA of the populations' mix; single fibres are 0.4-0.8, crossings lower it
    single = wm & (truth["w2"] < 0.05)
    assert single.sum() > 20
    assert 0.35 < np.median(maps["fa"][single]) < 0.85
    assert np.median(maps["fa"][wm]) > 0.3
    assert np.median(maps["fa"][gm]) < 0.05  # isotropic
    assert np.median(maps["md"][gm]) == pytest.approx(D.DIFFUSIVITY["gm"], rel=0.12)
    assert np.median(maps["md"][csf]) > 2.0e-3  # free water, partial volume aside
    # where one population dominates, the fitted V1 is its direction
    assert np.median(angular_error_deg(maps["v1"][single], truth["e1"][single])) < 5


def test_fibre_directions_are_smooth_unit_fields():
    rng = np.random.default_rng(0)
    e1, e2, w2 = D.fibre_fields(rng, (20, 20, 4), np.diag([2.0, 2, 2, 1]), spacing_mm=25)
    np.testing.assert_allclose(np.linalg.norm(e1, axis=-1), 1, atol=1e-5)
    assert 0 <= w2.min() and w2.max() <= 0.45
    neighbours = angular_error_deg(e1[1:], e1[:-1])  # 2 mm apart
    assert np.median(neighbours) < 10


def test_rician_noise_matches_the_snr_and_the_draw_is_reproducible(simulated):
    subject, bvals, bvecs, dwi, truth = simulated
    air = sum(subject.fractions.values()) == 0
    # Rician noise over zero signal has mean sigma * sqrt(pi / 2)
    assert dwi[air, 0].mean() == pytest.approx(truth["sigma"] * np.sqrt(np.pi / 2), rel=0.1)
    rng = np.random.default_rng(3)
    again = S.draw_subject(rng, voxel_mm=2.0, shape=(96, 112, 4), lesions=())
    dwi2, _ = D.simulate_dwi(again, rng, bvals, bvecs, snr=30.0)
    np.testing.assert_array_equal(dwi, dwi2)


def test_degradation_is_a_fov_aligned_block_mean_with_noise_first():
    hr = np.arange(8 * 8 * 2 * 3, dtype=np.float32).reshape(8, 8, 2, 3)
    lr = D.degrade_dwi(hr, 4)
    assert lr.shape == (2, 2, 2, 3)
    assert lr[1, 0, 1, 2] == pytest.approx(hr[4:8, 0:4, 1, 2].mean())
    noisy = D.degrade_dwi(hr, 4, noise_sigma=1.0, rng=np.random.default_rng(0))
    assert 0 < np.std(noisy - lr) < 0.5  # a block mean of 16 noise samples: sigma / 4
    smooth = D.degrade_dwi(np.ones((8, 8, 2), np.float32), 4, method="kspace")
    np.testing.assert_allclose(smooth, 1.0, atol=1e-5)
    with pytest.raises(InputError, match="multiple of the factor"):
        D.degrade_dwi(np.ones((6, 8, 2), np.float32), 4)


def _band_limited(image: np.ndarray, half: int) -> np.ndarray:
    """``image`` with every in-plane frequency |k| > ``half`` (x or y) removed, by hand."""
    spectrum = np.fft.fft2(image, axes=(0, 1))
    for axis in (0, 1):
        k = np.rint(np.fft.fftfreq(image.shape[axis]) * image.shape[axis])
        keep = (np.abs(k) <= half).reshape([-1 if a == axis else 1 for a in range(image.ndim)])
        spectrum = spectrum * keep
    return np.fft.ifft2(spectrum, axes=(0, 1)).real


def test_kspace_degradation_keeps_only_the_central_quarter_of_k_space_on_texture():
    """``method="kspace"``: the centre of k-space (|k| <= K per in-plane axis, K = (n / 4 -
    1) // 2: the LR matrix's band less its unpaired Nyquist line), then the block mean.
    Texture outside the band is gone; the block mean alone aliases it into the LR."""
    rng = np.random.default_rng(7)
    n, m = 32, 8
    hr = (10 + rng.uniform(0, 1, (n, n, 2, 3))).astype(np.float32)  # positive: |.| is a no-op
    lr_k = D.degrade_dwi(hr, 4, method="kspace")
    lr_a = D.degrade_dwi(hr, 4, method="area")
    assert lr_k.shape == lr_a.shape == (m, m, 2, 3)
    assert np.abs(lr_k - lr_a).max() > 0.05  # not the block mean
    half = (m - 1) // 2
    expected = D.degrade_dwi(_band_limited(hr, half).astype(np.float32), 4, method="area")
    np.testing.assert_allclose(lr_k, expected, atol=1e-4)
    # on the LR grid: nothing at the LR Nyquist line (|k| = m / 2 > K) of either axis
    spectrum = np.abs(np.fft.fft2(lr_k, axes=(0, 1)))
    dc = spectrum[0, 0].min()
    assert spectrum[m // 2].max() < 1e-5 * dc and spectrum[:, m // 2].max() < 1e-5 * dc
    assert np.abs(np.fft.fft2(lr_a, axes=(0, 1)))[m // 2].max() > 1e-3 * dc
    # one in-plane stripe pattern inside the band passes whole, one outside it vanishes
    x = np.arange(n)[:, None, None] * np.ones((1, n, 2))
    inside = (10 + np.cos(2 * np.pi * 2 * x / n)).astype(np.float32)
    outside = (10 + np.cos(2 * np.pi * 5 * x / n)).astype(np.float32)
    np.testing.assert_allclose(
        D.degrade_dwi(inside, 4, method="kspace"), D.degrade_dwi(inside, 4), atol=1e-4
    )
    np.testing.assert_allclose(D.degrade_dwi(outside, 4, method="kspace"), 10.0, atol=1e-4)
    assert np.ptp(D.degrade_dwi(outside, 4)) > 0.1  # the block mean lets it through
    # slices and volumes are degraded in-plane only, each alone
    one = D.degrade_dwi(hr[..., 1:2, 2], 4, method="kspace")
    np.testing.assert_allclose(one, lr_k[..., 1:2, 2], atol=1e-5)


def test_each_draw_gives_the_subject_its_own_diffusion(simulated):
    subject, bvals, bvecs, _, _ = simulated
    _, a = D.simulate_dwi(subject, np.random.default_rng(1), bvals, bvecs)
    _, b = D.simulate_dwi(subject, np.random.default_rng(2), bvals, bvecs)
    for key in ("fa_level", "snr", "fibre_spacing_mm"):
        assert a["params"][key] != b["params"][key]
    assert a["params"]["diffusivity_jitter"] != b["params"]["diffusivity_jitter"]
    assert a["sigma"] != b["sigma"]  # SNR drawn in [15, 40] per subject
    wm = subject.fractions["wm"] > 0.5
    # independent fibre fields: two unrelated axes differ by ~60 degrees in the median
    assert np.median(angular_error_deg(a["e1"][wm], b["e1"][wm])) > 30
    assert np.abs(a["w2"] - b["w2"]).mean() > 0.05
    # the drawn FA level is what the WM gets: the higher level gives the higher WM FA
    higher = a if a["params"]["fa_level"] > b["params"]["fa_level"] else b
    lower = b if higher is a else a
    assert np.median(higher["fa"][wm]) > np.median(lower["fa"][wm])


def test_s0_is_the_t2_weighted_contrast(simulated):
    subject, bvals, _, _, truth = simulated
    t2, s0, fr = truth["intensities"], truth["s0"], subject.fractions
    assert t2["csf"] > t2["gm"] > t2["wm"] > 0  # T2-weighted: long-T2 CSF brightest
    pure = {t: fr[t] > 0.95 for t in ("csf", "gm", "wm")}
    for tissue, where in pure.items():
        assert where.sum() > 20
        assert np.median(s0[where]) == pytest.approx(t2[tissue], rel=0.05)
    assert np.median(s0[pure["csf"]]) > np.median(s0[pure["gm"]]) > np.median(s0[pure["wm"]])
    # the b = 0 volume is S0 itself; scalp keeps a tenth of its T2w signal (fat suppression)
    np.testing.assert_array_equal(truth["noise_free"][..., bvals <= 50][..., 0], s0)
    scalp = fr["scalp"] > 0.95
    assert np.median(s0[scalp]) == pytest.approx(0.1 * t2["scalp"], rel=0.1)
