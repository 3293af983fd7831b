"""The PVS phantom (simulate/pvs.py): tubes with partial volume, regions, image and target."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.simulate import pvs


def _straight_tube(radius_mm: float, length_mm: float, voxel_mm: float, n: int):
    centre = (np.array([n / 2] * 3) + [0.31, 0.17, 0.0]) * voxel_mm  # off the voxel centres
    t = np.linspace(-length_mm / 2, length_mm / 2, int(length_mm / 0.05) + 1)
    pts = centre + t[:, None] * np.array([0.0, 0.0, 1.0])
    return pvs.Tube("centrum_semiovale", radius_mm, length_mm, pts)


@pytest.mark.parametrize("radius_mm", [0.25, 0.6, 1.5])
def test_partial_volume_of_a_straight_tube_matches_its_cylinder(radius_mm):
    voxel = 0.5
    tube = _straight_tube(radius_mm, 8.0, voxel, 40)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    frac, inst, table = pvs.rasterise_tubes([tube], (40, 40, 40), affine)
    # cylinder plus the two half-sphere caps of the union of balls along the centreline
    expected = np.pi * radius_mm**2 * 8.0 + 4 / 3 * np.pi * radius_mm**3
    assert frac.sum() * voxel**3 == pytest.approx(expected, rel=0.12)
    assert table[0]["volume_mm3"] == pytest.approx(frac.sum() * voxel**3, rel=1e-3)
    assert 0 <= frac.min() and frac.max() <= 1
    # even a tube thinner than a voxel keeps its centreline voxels as truth
    assert table[0]["voxels"] >= 8.0 / voxel and set(np.unique(inst)) == {0, 1}


def test_allowed_caps_the_fraction():
    tube = _straight_tube(1.0, 6.0, 0.5, 24)
    allowed = np.zeros((24, 24, 24), np.float32)
    allowed[:, :, :12] = 1.0
    frac, inst, _ = pvs.rasterise_tubes([tube], allowed.shape, np.diag([0.5] * 3 + [1]), allowed)
    assert frac[:, :, 12:].max() == 0 and frac[:, :, :12].max() > 0.9
    assert not inst[:, :, 12:].any()


@pytest.fixture(scope="module")
def case():
    return pvs.simulate_pvs_case(np.random.default_rng(3), crop_shape=(48, 48, 64), hemisphere=1)


def test_same_seed_gives_the_same_phantom(case):
    again = pvs.simulate_pvs_case(np.random.default_rng(3), crop_shape=(48, 48, 64), hemisphere=1)
    assert np.array_equal(case.image, again.image) and np.array_equal(
        case.instances, again.instances
    )


def test_tubes_follow_the_drawn_ranges_and_regions(case):
    assert case.tubes, "the default densities give tubes in a 24x24x32 mm crop"
    for tube in case.tubes:
        assert 0.25 <= tube.radius_mm <= 1.5 and 3.0 <= tube.length_mm <= 20.0
        assert tube.region in pvs.REGIONS
    assert [r["id"] for r in case.tube_table] == list(range(1, len(case.tubes) + 1))
    ids = np.unique(case.instances[case.instances > 0])
    assert ids.max() <= len(case.tubes)
    # PVS replace parenchyma only, and sit where PVS may be (WM or basal ganglia)
    inside = case.possible[case.pvs_mask].mean()
    assert inside > 0.8


def test_pvs_are_csf_like_and_the_target_raises_their_contrast(case):
    m = case.pvs_fraction > 0.9
    wm = case.wm & (case.pvs_fraction == 0)
    nf, tg = case.noise_free, case.target
    assert nf[m].mean() > 1.5 * nf[wm].mean()  # hyperintense on T2w
    # target: the PVS excess over the tissue doubled (pvs_gain 1), elsewhere the noise-free image
    excess_nf = nf[m].mean() - nf[wm].mean()
    excess_tg = tg[m].mean() - tg[wm].mean()
    assert excess_tg == pytest.approx(2 * excess_nf, rel=0.15)
    away = case.pvs_fraction == 0
    assert np.allclose(tg[away], nf[away], atol=1e-5)
    # the observed image carries noise the target does not
    assert np.std(case.image[wm] - nf[wm]) > 0.02 * nf[wm].mean()


def test_regions_come_from_the_anatomy(case):
    cso, bg = case.regions["centrum_semiovale"], case.regions["basal_ganglia"]
    assert cso.any() and bg.any() and not (cso & bg).any()
    mni = pvs.subject_mni_mm
    assert callable(mni)
    # the centrum semiovale lies above the basal ganglia (z is superior in the subject too)
    assert np.argwhere(cso)[:, 2].mean() > np.argwhere(bg)[:, 2].mean()
