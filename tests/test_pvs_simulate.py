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


def _principal_axis(points: np.ndarray) -> np.ndarray:
    """(3,) unit vector of the largest variance of ``points`` (n, 3)."""
    _, vectors = np.linalg.eigh(np.cov((points - points.mean(0)).T))
    return vectors[:, -1]


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two axes (directions without sign), degrees in [0, 90]."""
    cos = abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(min(cos, 1.0))))


@pytest.fixture(scope="module")
def dense_case():
    """No deformation, so subject world mm are MNI mm and the expected axes are known."""
    density = {"centrum_semiovale": (6.0, 6.0), "basal_ganglia": (6.0, 6.0)}
    return pvs.simulate_pvs_case(
        np.random.default_rng(7),
        crop_shape=(48, 48, 64),
        hemisphere=1,
        deform="none",
        density_per_cm3=density,
    )


@pytest.mark.slow
def test_tubes_are_radial_in_the_centrum_semiovale_and_vertical_in_the_basal_ganglia(dense_case):
    """Each instance's principal axis (from the instance mask) against its region's axis:
    radial in the coronal plane from MNI (x, z) = (0, 5) mm in the CSO, z in the BG."""
    case = dense_case
    angles: dict[str, list[float]] = {"centrum_semiovale": [], "basal_ganglia": []}
    to_vertical: dict[str, list[float]] = {"centrum_semiovale": [], "basal_ganglia": []}
    for k, tube in enumerate(case.tubes, start=1):
        vox = np.argwhere(case.instances == k)
        if len(vox) < 12:  # too few voxels for an axis (cut by the crop or by CSF)
            continue
        xyz = vox @ case.affine[:3, :3].T + case.affine[:3, 3]
        centre = xyz.mean(0)
        if tube.region == "centrum_semiovale":
            x0, z0 = pvs.RADIAL_ORIGIN_MM
            expected = np.array([centre[0] - x0, 0.0, centre[2] - z0])
        else:
            expected = np.array([0.0, 0.0, 1.0])
        axis = _principal_axis(xyz)
        angles[tube.region].append(_angle_deg(axis, expected))
        to_vertical[tube.region].append(_angle_deg(axis, np.array([0.0, 0.0, 1.0])))
    for region, values in angles.items():
        assert len(values) >= 8, region
        # tilted up to 15 deg and curved: mostly, not exactly, along the region's axis
        assert np.median(values) < 15 and np.mean(np.array(values) < 30) >= 0.9, region
    # the CSO axis is not the vertical one: the two regions are told apart
    assert np.median(to_vertical["centrum_semiovale"]) > 25
    assert np.median(to_vertical["basal_ganglia"]) < 15


def test_tube_centrelines_are_curved(dense_case):
    """A straight centreline has zero distance from its chord; these wander off it."""
    deviation, length = [], []
    for tube in dense_case.tubes:
        p = tube.points_mm
        chord = (p[-1] - p[0]) / np.linalg.norm(p[-1] - p[0])
        off = (p - p[0]) - np.outer((p - p[0]) @ chord, chord)
        deviation.append(np.linalg.norm(off, axis=1).max())
        length.append(tube.length_mm)
    deviation, length = np.array(deviation), np.array(length)
    assert np.mean(deviation > 0.05) >= 0.8  # most bend by more than a tenth of a voxel
    assert np.median(deviation / length) > 0.01
    # and the drawn length is the arc length, not the chord
    arcs = [np.linalg.norm(np.diff(t.points_mm, axis=0), axis=1).sum() for t in dense_case.tubes]
    assert np.allclose(arcs, length, rtol=0.02)


@pytest.fixture(scope="module")
def whole_brain_subject():
    from mrenhance.simulate import subjects as S

    params = S.draw_subject_params(np.random.default_rng(0), voxel_mm=1.0, lesions=())
    subject = S.build_subject(params)
    return subject, pvs.pvs_regions(subject)


@pytest.mark.slow
def test_counts_vary_per_subject_from_a_few_to_hundreds(whole_brain_subject):
    subject, regions = whole_brain_subject
    counts = [
        len(pvs.draw_tubes(np.random.default_rng([5, i]), subject, regions)[0]) for i in range(8)
    ]
    assert len(set(counts)) == len(counts) and max(counts) > 4 * min(counts)
    # the ends of the default density ranges: a few tens in a healthy brain, hundreds in SVD
    ends = {}
    for end in (0, 1):
        density = {k: (v[end], v[end]) for k, v in pvs.DEFAULT_DENSITY_PER_CM3.items()}
        tubes, _ = pvs.draw_tubes(
            np.random.default_rng(1), subject, regions, density_per_cm3=density
        )
        ends[end] = {r: sum(t.region == r for t in tubes) for r in pvs.REGIONS}
    assert sum(ends[0].values()) < 40 and sum(ends[1].values()) > 300
    for region in pvs.REGIONS:  # each region's count spans more than a factor of 10
        assert ends[1][region] > 10 * max(ends[0][region], 1), (region, ends)


@pytest.mark.slow
def test_whole_brain_mode_at_1mm():
    density = {"centrum_semiovale": (0.05, 0.05), "basal_ganglia": (0.1, 0.1)}
    case = pvs.simulate_pvs_case(
        np.random.default_rng(2), voxel_mm=1.0, crop_shape=None, density_per_cm3=density
    )
    assert case.image.shape == case.target.shape == case.instances.shape == (197, 233, 189)
    assert np.allclose(np.abs(np.diag(case.affine)[:3]), 1.0) and case.voxel_mm == 1.0
    assert 0 < len(case.tubes) < 60
    for region in pvs.REGIONS:  # both regions of both hemispheres are in the image
        xs = np.argwhere(case.regions[region])[:, 0]
        assert xs.min() < 98 < xs.max(), region
    assert case.pvs_mask.any() and case.possible[case.pvs_mask].mean() > 0.8
