"""Classical PVS enhancers (baselines/vessels.py) on a bright line in noise."""

from __future__ import annotations

import numpy as np

from mrenhance.baselines import vessels


def _line_and_blob(rng):
    img = np.full((32, 32, 32), 0.3, np.float32)
    img[15:17, 15:17, 4:28] = 1.0  # a 1 mm thick tube along z (0.5 mm voxels)
    img[4:14, 4:14, 4:14] = 1.0  # a 5 mm blob: CSF-like, not tubular
    return img + rng.normal(0, 0.03, img.shape).astype(np.float32)


def test_tophat_keeps_the_thin_tube_and_drops_the_blob(rng):
    img = _line_and_blob(rng)
    enhanced, response = vessels.white_tophat(img, voxel_mm=0.5, radius_mm=2.0)
    assert response[15:17, 15:17, 8:24].mean() > 0.5
    assert response[6:12, 6:12, 6:12].mean() < 0.1
    assert np.allclose(enhanced, img + response)


def test_frangi_prefers_tubes_to_blobs(rng):
    img = _line_and_blob(rng)
    _, v = vessels.frangi_vesselness(img, voxel_mm=0.5)
    assert v[15:17, 15:17, 8:24].mean() > 3 * v[8:10, 8:10, 8:10].mean()  # the blob inside


def test_nlm_denoises_before_the_tophat(rng):
    img = _line_and_blob(rng)
    assert abs(vessels.noise_sigma_mad(img) - 0.03) < 0.01
    enhanced, response = vessels.nlm_tophat(img, voxel_mm=0.5)
    flat = (slice(20, 30), slice(2, 12), slice(16, 30))
    assert enhanced[flat].std() < 0.5 * img[flat].std()
    assert response[15:17, 15:17, 8:24].mean() > 0.5
