"""Paired augmentations: identical on input and target, seeded, configurable from a recipe."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.engine.augment import (
    build_augment,
    compose,
    random_bias_field,
    random_blobs,
    random_elastic,
    random_flip,
    random_gamma,
)
from mrenhance.errors import ConfigError


@pytest.fixture
def pair(rng):
    x = rng.random((2, 10, 9, 8), dtype=np.float32)
    return x, x[:1].copy()  # target: the first input channel


def _identical_on_first_channel(x: np.ndarray, y: np.ndarray) -> None:
    np.testing.assert_allclose(x[:1], y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "fn",
    [
        random_flip,
        random_gamma,
        random_bias_field,
        lambda x, y, r: random_elastic(x, y, r, sigma_vox=3.0, alpha_vox=2.0),
        lambda x, y, r: random_blobs(x, y, r, count=(1, 3)),
    ],
    ids=["flip", "gamma", "bias_field", "elastic", "blobs"],
)
def test_same_transform_on_input_and_target_and_seeded(fn, pair):
    x, y = pair
    changed = False
    for seed in range(4):
        xa, ya = fn(x, y, np.random.default_rng(seed))
        assert xa.shape == x.shape and ya.shape == y.shape and xa.dtype == np.float32
        _identical_on_first_channel(xa, ya)
        xb, _ = fn(x, y, np.random.default_rng(seed))
        np.testing.assert_array_equal(xa, xb)
        changed |= not np.allclose(xa, x)
    assert changed


def test_flip_really_mirrors_and_skips_missing_axes():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    seen = set()
    for seed in range(30):
        xf, _ = random_flip(x, x, np.random.default_rng(seed))
        for axes in [(), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)]:
            if np.array_equal(xf, np.flip(x, axes) if axes else x):
                seen.add(axes)
    assert len(seen) == 8
    x2d = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    out, _ = random_flip(x2d, x2d, np.random.default_rng(0))  # axis 2 absent: skipped
    assert out.shape == (1, 3, 4)


def test_gamma_keeps_unit_range_and_is_a_power():
    x = np.linspace(0, 1, 50, dtype=np.float32).reshape(1, 5, 10)
    out, _ = random_gamma(x, x, np.random.default_rng(3), log_gamma_range=(0.2, 0.2))
    np.testing.assert_allclose(out, x ** np.exp(0.2), rtol=1e-5)
    assert out.min() == 0 and out.max() == pytest.approx(1)


def test_bias_field_is_exp_of_a_cubic_polynomial():
    ones = np.ones((1, 16, 16, 16), np.float32)
    field, _ = random_bias_field(ones, ones, np.random.default_rng(1), coefficient_range=0.3)
    assert field.min() > 0
    log_field = np.log(field.astype(np.float64))
    assert log_field.std() > 0.05
    for axis in (1, 2, 3):  # a cubic along every axis: 4th differences vanish
        assert np.abs(np.diff(log_field, n=4, axis=axis)).max() < 1e-4


def test_elastic_moves_at_most_alpha():
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None], (20, 20, 20))[None]
    out, _ = random_elastic(ramp, ramp, np.random.default_rng(0), sigma_vox=4.0, alpha_vox=1.5)
    # On a ramp along x the value is the sampled x coordinate: displacement <= alpha.
    assert np.abs(out - ramp).max() <= 1.5 + 1e-4
    assert np.abs(out - ramp).max() > 0.1


def test_compose_applies_in_order():
    def add_one(x, y, rng):
        return x + 1, y + 1

    def double(x, y, rng):
        return x * 2, y * 2

    x = np.zeros((1, 2, 2), np.float32)
    out, _ = compose(add_one, double)(x, x, np.random.default_rng(0))
    assert (out == 2).all()


def test_build_augment_from_recipe_section(pair):
    x, y = pair
    aug = build_augment(
        {
            "flip": True,
            "gamma": 0.3,
            "bias_field": 0.3,
            "elastic": {"alpha": 2.0, "sigma": 8.0},
            "p": 0.5,
        }
    )
    outs = [aug(x, y, np.random.default_rng(s)) for s in range(8)]
    for xa, ya in outs:
        _identical_on_first_channel(xa, ya)
    assert any(not np.allclose(xa, x) for xa, _ in outs)
    # p = 0: nothing happens.
    xa, _ = build_augment({"flip": True, "gamma": 0.3, "p": 0.0})(x, y, np.random.default_rng(0))
    np.testing.assert_array_equal(xa, x)
    # Empty section: identity.
    np.testing.assert_array_equal(build_augment({})(x, y, np.random.default_rng(0))[0], x)


@pytest.mark.parametrize(
    "bad",
    [
        {"rotate": 10},
        {"gamma": "lots"},
        {"p": 2},
        {"flip": "x"},
        {"elastic": {"alpha": 1, "beta": 2}},
        {"bias_field": -1},
        {"blobs": {"count": [3, 1]}},
        {"blobs": {"factor": [0, 2]}},
        {"blobs": {"radius": [2]}},
        {"blobs": {"size": [1, 2]}},
        {"blobs": {"count": [0.5, 2]}},
    ],
)
def test_build_augment_rejects_unknown_keys_and_bad_values(bad):
    with pytest.raises(ConfigError, match="augment"):
        build_augment(bad)


def _one_blob(x, y, *, seed, factor, radius):
    """One blob of a fixed gain and radius (sharp edge) on the patches x, y."""
    return random_blobs(
        x,
        y,
        np.random.default_rng(seed),
        count=(1, 1),
        factor=(factor, factor),
        radius_vox=(radius, radius),
        edge_vox=0.5,
    )


def test_blobs_scale_a_region_by_their_factor_and_leave_the_rest():
    """One 2D blob of gain 4: its centre is x 4, far corners untouched, both patches alike."""
    x = np.ones((1, 40, 40), dtype=np.float32)
    y = 2 * x
    xa, ya = _one_blob(x, y, seed=3, factor=4.0, radius=5.0)
    np.testing.assert_allclose(ya, 2 * xa, rtol=1e-6)
    assert xa.max() == pytest.approx(4.0, rel=1e-3)
    assert (xa >= 1.0 - 1e-6).all() and (xa <= 4.0 + 1e-6).all()
    inside = (xa > 2.5).sum()  # w > 1/2: inside the ellipse
    assert 0.25 * np.pi * 25 <= inside <= 1.1 * np.pi * 25  # the disc (radius 5), >= a quarter in
    # count 0: identity; a cold blob lowers values
    np.testing.assert_array_equal(random_blobs(x, y, np.random.default_rng(0), count=(0, 0))[0], x)
    cold, _ = _one_blob(x, y, seed=1, factor=0.25, radius=6.0)
    assert cold.min() == pytest.approx(0.25, rel=1e-2)


def test_blobs_from_a_recipe_section(pair):
    x, y = pair
    aug = build_augment({"blobs": {"count": [1, 2], "factor": [2, 3], "radius": [2, 4]}})
    xa, ya = aug(x, y, np.random.default_rng(0))
    _identical_on_first_channel(xa, ya)
    ratio = xa / x
    assert ratio.min() >= 1.0 - 1e-5 and 2.0 - 1e-3 <= ratio.max() <= 9.0 + 1e-3
