"""ASL training variety beyond the paper: hard-label perfusion and random acquisitions."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.config import load_recipe
from mrenhance.errors import ConfigError
from mrenhance.simulate import asl as A
from mrenhance.tasks import asl as T
from mrenhance.tasks import get_task

TASK = get_task("asl")


def test_hard_labels_give_piecewise_constant_perfusion_of_the_same_subject():
    soft = A.draw_perfusion(np.random.default_rng(3), label_probability=0.0)
    hard = A.draw_perfusion(np.random.default_rng(3), label_probability=1.0)
    assert not soft.params["hard_labels"] and hard.params["hard_labels"]
    assert np.array_equal(soft.gm, hard.gm) and np.array_equal(soft.m0, hard.m0)
    s, g, r = (hard.params[k] for k in ("global_scale", "gm_cbf", "gm_wm_ratio"))
    # without spatial variation every tissue voxel is one of three values
    flat = A.draw_perfusion(
        np.random.default_rng(3),
        label_probability=1.0,
        spatial_variation=(0.0, 0.0),
        territory_probability=0.0,
    )
    s, g, r = (flat.params[k] for k in ("global_scale", "gm_cbf", "gm_wm_ratio"))
    values = np.unique(flat.cbf[flat.brain_mask])
    expected = np.array([0.0, s * g / r, s * g])
    assert np.abs(values[:, None] - expected[None]).min(axis=1).max() < 1e-3
    # GM-dominant voxels carry the GM value, WM-dominant ones the WM value
    gm_vox = (flat.gm > flat.wm) & (flat.gm > flat.csf) & flat.brain_mask & (flat.gm > 0.5)
    np.testing.assert_allclose(flat.cbf[gm_vox], s * g, rtol=1e-5)
    # sharper than fractions: more voxels at the GM value than with soft fractions
    assert (np.abs(hard.cbf - soft.cbf) > 1).mean() > 0.01


def test_default_draws_are_unchanged_by_the_label_option():
    a = A.draw_perfusion(np.random.default_rng([0, 3, 1]))
    b = A.draw_perfusion(np.random.default_rng([0, 3, 1]), label_probability=0.0)
    assert np.array_equal(a.cbf, b.cbf)


def test_draw_acquisition_keeps_the_field_of_view_and_its_ranges():
    rng = np.random.default_rng(0)
    ranges = {"voxel_mm": [[2.5, 4.0], [2.5, 4.0], [3.0, 10.0]], "psf": [0.0, 1.0]}
    draws = [A.draw_acquisition(rng, **ranges) for _ in range(20)]
    for d in draws:
        p = d["protocol"]
        pairs = zip(p.voxel_mm, ranges["voxel_mm"], strict=True)
        assert all(lo <= v <= hi for v, (lo, hi) in pairs)
        fov = np.asarray(p.matrix) * np.asarray(p.voxel_mm)
        assert np.all(fov >= np.asarray(A.FOV_MM) - 1e-6)
        assert np.all(fov < np.asarray(A.FOV_MM) + np.asarray(p.voxel_mm))
        assert 0.8 * p.voxel_mm[2] - 1e-9 <= p.slice_thickness_mm <= p.voxel_mm[2]
        assert 0.0 <= d["psf_scale"] <= 1.0
        assert p.n_pairs == 40  # the paper's series
    assert len({d["protocol"].matrix for d in draws}) > 5


def test_psf_scale_zero_is_sharper_than_the_default_psf():
    perf = A.draw_perfusion(np.random.default_rng(1))
    kw = dict(thermal_noise=1e-6, outlier_fraction=0.0, motion_mm=0.0, physiological_noise=0.0)
    blur = A.acquire_pairs(perf, np.random.default_rng(2), **kw)
    point = A.acquire_pairs(perf, np.random.default_rng(2), psf_scale=0.0, **kw)
    gx = [float(np.abs(np.diff(s.control[..., 0], axis=0)).mean()) for s in (blur, point)]
    assert gx[1] > 1.05 * gx[0]


def test_acquisition_ranges_reach_the_training_subjects_only():
    base = {
        **TASK.data_config(load_recipe("asl_dwan").data),
        "subjects": {"train": 1, "validation": 1, "test": 0},
        "outlier_fraction": 0.0,
    }
    assert base["acquisition"] is None and base["vary_splits"] == ["train"]  # off in the recipe
    varied = {**base, "acquisition": {"voxel_mm": [[2.5, 2.5], [2.5, 2.5], [3.0, 3.0]]}}
    seed = T.subject_seed(0, "train", 0)
    opts = T.acquisition_options(seed, varied["acquisition"])
    assert opts["protocol"].voxel_mm == (2.5, 2.5, 3.0)
    assert T.acquisition_options(seed, None) is None
    (a,), (b,) = T.load_cases(varied, "train"), T.load_cases(base, "train")
    np.testing.assert_allclose(a.truth, b.truth)  # same subject, another acquisition
    assert not np.allclose(a.segments, b.segments)
    (va,), (vb,) = T.load_cases(varied, "validation"), T.load_cases(base, "validation")
    np.testing.assert_array_equal(va.segments, vb.segments)  # validation keeps the protocol
    both = {**varied, "vary_splits": ["train", "validation"]}
    (vc,) = T.load_cases(both, "validation")
    assert not np.allclose(vc.segments, vb.segments)


@pytest.mark.parametrize(
    "acquisition, words",
    [
        ({"voxels": [[1, 2]] * 3}, "unknown option"),
        ({"voxel_mm": [[2.0, 3.0]]}, "three [low, high]"),
        ({"voxel_mm": [[3.0, 2.0]] * 3}, "three [low, high]"),
        ({"psf": [0.0, 5.0]}, "[low, high]"),
        ({"gap": [0.5]}, "[low, high]"),
        ("wide", "mapping"),
    ],
)
def test_data_config_refuses_bad_acquisition_options(acquisition, words):
    with pytest.raises(ConfigError, match="data.acquisition") as err:
        TASK.data_config({"acquisition": acquisition})
    assert words in str(err.value)


def test_data_config_refuses_bad_vary_splits():
    with pytest.raises(ConfigError, match="vary_splits"):
        TASK.data_config({"vary_splits": ["train", "holdout"]})
    with pytest.raises(ConfigError, match="probability"):
        TASK.data_config({"perfusion": {"label_probability": 2}})


def test_outlier_range_draws_per_subject_fractions_for_the_varied_splits():
    fractions = [
        T.outlier_fraction(T.subject_seed(0, "train", i), 0.1, [0.0, 0.3]) for i in range(30)
    ]
    assert all(0.0 <= f <= 0.3 for f in fractions) and max(fractions) - min(fractions) > 0.15
    assert T.outlier_fraction([0, 0, 1], 0.1, None) == 0.1
    base = {
        **TASK.data_config(load_recipe("asl_dwan").data),
        "subjects": {"train": 1, "validation": 1, "test": 0},
    }
    assert base["outlier_range"] is None  # off in the recipe
    clean = {**base, "outlier_range": [0.0, 0.0]}
    (a,), (b,) = T.load_cases(clean, "train"), T.load_cases(base, "train")
    np.testing.assert_allclose(a.truth, b.truth)
    (va,), (vb,) = T.load_cases(clean, "validation"), T.load_cases(base, "validation")
    np.testing.assert_array_equal(va.segments, vb.segments)
    for bad in ([0.3, 0.1], [0.0, 1.5], [0.1], "some", [True, 0.2]):
        with pytest.raises(ConfigError, match="outlier_range"):
            TASK.data_config({"outlier_range": bad})
