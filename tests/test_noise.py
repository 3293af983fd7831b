"""Gaussian and Rician noise at a requested SNR."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.errors import InputError
from mrenhance.simulate.noise import add_gaussian_noise, add_rician_noise, noise_sigma_for_snr


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """(64, 64, 64) image: 100 in a central cube, 300 in a smaller one, 0 outside."""
    image = np.zeros((64, 64, 64), dtype=np.float32)
    image[8:56, 8:56, 8:56] = 100.0
    image[24:40, 24:40, 24:40] = 300.0
    return image, image > 0


def test_sigma_is_mean_signal_over_snr() -> None:
    image, mask = _phantom()
    assert noise_sigma_for_snr(image, 20.0) == pytest.approx(image[mask].mean() / 20.0)
    inner = image == 300.0
    assert noise_sigma_for_snr(image, 10.0, signal_mask=inner) == pytest.approx(30.0)
    assert noise_sigma_for_snr(image, np.inf) == 0.0


@pytest.mark.parametrize("snr", [5.0, 20.0])
def test_gaussian_noise_has_the_requested_snr(snr: float, rng: np.random.Generator) -> None:
    image, mask = _phantom()
    noisy = add_gaussian_noise(image, snr, rng)
    assert noisy.dtype == np.float32 and noisy.shape == image.shape
    measured = image[mask].mean() / (noisy - image).std()
    assert measured == pytest.approx(snr, rel=0.05)
    assert abs((noisy - image).mean()) < 0.05 * image[mask].mean() / snr


def test_rician_noise_has_the_requested_snr_where_the_signal_is_high(
    rng: np.random.Generator,
) -> None:
    image, mask = _phantom()
    snr = 20.0
    sigma = noise_sigma_for_snr(image, snr)
    noisy = add_rician_noise(image, snr, rng)
    assert noisy.min() >= 0
    bright = image == 300.0  # signal / sigma = 40: Rician ~ Gaussian there
    assert noisy[bright].std() == pytest.approx(sigma, rel=0.05)
    assert image[mask].mean() / noisy[bright].std() == pytest.approx(snr, rel=0.05)


def test_rician_noise_is_biased_upwards_at_low_snr(rng: np.random.Generator) -> None:
    image, mask = _phantom()
    snr = 2.0
    sigma = noise_sigma_for_snr(image, snr)
    noisy = add_rician_noise(image, snr, rng)
    assert noisy[image == 100.0].mean() > 100.0 * 1.05
    # the background is Rayleigh distributed with mean sigma * sqrt(pi / 2)
    assert noisy[~mask].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)
    gaussian = add_gaussian_noise(image, snr, np.random.default_rng(0))
    assert abs(gaussian[image == 100.0].mean() - 100.0) < 1.0


def test_noise_is_reproducible_and_leaves_global_state_alone() -> None:
    image, _ = _phantom()
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (checking it is untouched)
    a = add_rician_noise(image, 10.0, np.random.default_rng(42))
    b = add_rician_noise(image, 10.0, np.random.default_rng(42))
    c = add_rician_noise(image, 10.0, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_infinite_snr_adds_nothing(rng: np.random.Generator) -> None:
    image, _ = _phantom()
    np.testing.assert_array_equal(add_gaussian_noise(image, np.inf, rng), image)
    np.testing.assert_array_equal(add_rician_noise(image, np.inf, rng), image)


def test_invalid_arguments() -> None:
    image, _ = _phantom()
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="snr"):
        add_gaussian_noise(image, 0.0, rng)
    with pytest.raises(InputError, match="shape"):
        add_gaussian_noise(image, 10.0, rng, signal_mask=np.ones((4, 4, 4), bool))
    with pytest.raises(InputError, match="no voxel"):
        add_rician_noise(np.zeros((4, 4, 4)), 10.0, rng)
    with pytest.raises(TypeError, match="Generator"):
        add_gaussian_noise(image, 10.0, 0)  # type: ignore[arg-type]
