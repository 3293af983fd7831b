"""Shared fixtures: small data built in memory; one torch thread per test worker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """A non-trivial affine: anisotropic voxels, rotated about two axes, shifted origin."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", [12.0, -7.0, 25.0], degrees=True).as_matrix()
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.9, 1.1, 2.5])
    aff[:3, 3] = [-90.5, 102.25, -60.0]
    return aff


@pytest.fixture
def small_brain(rng: np.random.Generator) -> np.ndarray:
    """A (24, 28, 20) float32 'head': smooth ellipsoid with texture, background zero."""
    from scipy.ndimage import gaussian_filter

    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in (24, 28, 20)], indexing="ij")
    inside = (x**2 / 0.8 + y**2 / 0.9 + z**2 / 0.7) < 1
    tex = gaussian_filter(rng.standard_normal((24, 28, 20)), 1.5)
    img = inside * (0.6 + 2.0 * tex)
    return np.clip(img, 0, None).astype(np.float32)
