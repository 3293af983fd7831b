"""One normalisation rule: head masks on unstripped, noisy scans, and the scale they give."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.models.card import Normalisation
from mrenhance.preprocess import head_mask, intensity_scale


def _head(rng, shape=(40, 44, 36), noise=10.0):
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r2 = x**2 / 0.7 + y**2 / 0.8 + z**2 / 0.6
    img = np.where(r2 < 1, 500.0, 0.0)
    img[(r2 < 1) & (r2 > 0.8)] = 900.0  # bright scalp fat
    img[r2 < 0.05] = 80.0  # dark ventricles, inside the head
    img = np.abs(img + rng.normal(0, noise, shape) + 1j * rng.normal(0, noise, shape))
    return img.astype(np.float32), r2 < 1


def test_head_mask_excludes_background_noise_and_keeps_dark_ventricles(rng):
    img, truth = _head(rng)
    mask = head_mask(img)
    assert (mask & truth).sum() / truth.sum() > 0.97
    assert (mask & ~truth).sum() / (~truth).sum() < 0.01
    x, y, z = (n // 2 for n in img.shape)
    assert mask[x, y, z]  # the ventricle at the centre is filled in


def test_scale_is_stable_when_the_field_of_view_adds_air(rng):
    img, _ = _head(rng)
    wider = np.pad(img, 20)
    wider[wider == 0] = np.abs(rng.normal(0, 10, (wider == 0).sum()))
    assert intensity_scale(wider) == pytest.approx(intensity_scale(img), rel=0.01)
    # the old rule (all voxels > 0) moves with the amount of air
    old = [float(np.percentile(a[a > 0], 50)) for a in (img, wider)]
    assert abs(old[1] / old[0] - 1) > 0.1


def test_rules_and_degenerate_images():
    flat = np.full((5, 5, 5), 7.0, np.float32)
    assert head_mask(flat).all()
    assert intensity_scale(np.zeros((4, 4, 4))) == 1.0
    assert intensity_scale(flat, Normalisation("none")) == 1.0
    ramp = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    assert intensity_scale(ramp, Normalisation("percentile", 50.0, "all")) == pytest.approx(499.5)
    assert intensity_scale(ramp - 500, Normalisation("percentile", 100.0, "nonzero")) == 499.0


def test_air_is_found_around_a_head_and_not_in_a_crop_inside_it(rng):
    from mrenhance.preprocess import has_air, head_or_field_of_view

    img, truth = _head(rng)
    assert has_air(img)
    assert np.array_equal(head_or_field_of_view(img), head_mask(img))
    # a crop inside the brain: tissue (500) with a bright CSF-like blob (900), noisy
    crop = np.full((16, 16, 16), 500.0)
    crop[6:10, 6:10, 6:10] = 900.0
    crop = np.abs(crop + rng.normal(0, 10, crop.shape)).astype(np.float32)
    assert not has_air(crop)
    assert head_mask(crop).mean() < 0.5  # Otsu splits the tissue classes there
    assert head_or_field_of_view(crop).all()  # the detection domain is the whole crop
    assert not has_air(np.zeros((4, 4, 4), np.float32))
