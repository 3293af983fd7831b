"""Tensor fitting on real DWIs: dipy's ``small_64D`` (a 10x10x10 crop inside a brain).

Bounds are the measured values (dipy 1.12, WLS) with margin, and the textbook ranges
(adult WM FA ~0.4-0.7, MD ~0.7e-3 mm^2/s; CSF ~3e-3, Pierpaoli et al. 1996).
"""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.diffusion import angular_error_deg, fit_tensors
from mrenhance.samples import dipy_small_64d


@pytest.fixture(scope="module")
def small_64d():
    vol = dipy_small_64d()
    bvals, bvecs = vol.meta["bvals"], vol.meta["bvecs"]
    # the whole crop lies inside the brain: no mask (an Otsu mask of its b0 keeps only the
    # bright CSF)
    return vol.data, bvals, fit_tensors(vol.data, bvals, bvecs)


def test_small_64d_white_matter_has_plausible_fa_md_and_coherent_directions(small_64d):
    _, _, maps = small_64d
    fa, md, v1 = maps["fa"], maps["md"], maps["v1"]
    assert fa.min() >= 0 and fa.max() <= 1
    wm = fa > 0.3
    assert wm.sum() > 300  # measured 595 of 1000 voxels
    assert 0.40 < np.median(fa[wm]) < 0.60  # measured 0.49
    assert 0.60e-3 < np.median(md[wm]) < 0.90e-3  # measured 0.74e-3 mm^2/s
    assert 0.60e-3 < np.median(md) < 1.10e-3  # the whole crop; measured 0.84e-3
    np.testing.assert_allclose(np.linalg.norm(v1[wm], axis=-1), 1.0, atol=1e-4)
    # neighbouring WM voxels (2 mm apart) point alike: random axes would differ by ~60 deg
    both = wm[1:] & wm[:-1]
    assert np.median(angular_error_deg(v1[1:][both], v1[:-1][both])) < 25  # measured 13


def test_small_64d_bright_b0_is_free_water(small_64d):
    dwi, bvals, maps = small_64d
    b0 = dwi[..., bvals <= 50].mean(axis=-1)
    csf = b0 > np.percentile(b0, 85)  # CSF is brightest on the T2-weighted b0
    assert np.median(maps["md"][csf]) > 2.0e-3  # measured 3.2e-3 (free water ~3e-3 at 37 C)
    assert np.median(maps["fa"][csf]) < 0.25  # isotropic; measured 0.13
    tissue = b0 < np.percentile(b0, 50)
    assert np.median(maps["md"][tissue]) < 1.0e-3  # measured 0.69e-3
