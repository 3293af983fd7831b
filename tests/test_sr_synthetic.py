"""sr_t1's synthetic data source: drawn scans, randomised acquisitions, held-out slabs."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.errors import ConfigError
from mrenhance.models.card import Normalisation
from mrenhance.tasks import get_task
from mrenhance.tasks.sr_synthetic import (
    SyntheticSRDataset,
    apply_degradation,
    check_degradation,
    check_synthetic,
    draw_degradation,
)

HELD_OUT = {"axis": 2, "validation": [64, 76], "test": [96, 128], "gap": 4}


def _dataset(seed: int = 0, **synthetic) -> SyntheticSRDataset:
    # small 2 mm subjects with a partial field of view: each scan renders in well under 1 s
    spec = check_synthetic(
        {"voxel_mm": [2.0, 2.0], "fov_fraction": [0.7, 0.8], "patches_per_scan": 2, **synthetic}
    )
    return SyntheticSRDataset(
        spec,
        check_degradation({}),
        (16, 16, 16),
        rule=Normalisation(),
        seed=seed,
        held_out=HELD_OUT,
    )


def test_samples_are_patch_pairs_and_a_function_of_the_seed():
    a, b = _dataset(seed=3), _dataset(seed=3)
    first, again = a[1], b[1]
    assert first["inputs"].shape == first["target"].shape == (1, 16, 16, 16)
    assert first["inputs"].dtype == np.float32
    np.testing.assert_array_equal(first["inputs"], again["inputs"])
    np.testing.assert_array_equal(first["target"], again["target"])
    assert not np.array_equal(first["inputs"], first["target"])  # the input is degraded


def test_acquisitions_differ_from_scan_to_scan():
    ds = _dataset(seed=0)
    drawn = [ds.sample_info(2 * j)["degradation"] for j in range(4)]  # 4 scans
    assert len({repr(d) for d in drawn}) == 4
    assert ds.sample_info(0)["scan"] == ds.sample_info(1)["scan"] == 0  # patches_per_scan 2


def test_patches_never_touch_the_held_out_slabs_of_the_template():
    ds = _dataset(seed=1)
    banned = [(60, 80), (92, 132)]  # the slabs +- the 4-voxel gap
    for i in range(0, 12, 2):
        lo, hi = ds.sample_info(i)["template_z"]
        assert all(hi < a - 0.5 or lo >= b + 0.5 for a, b in banned), (i, lo, hi)


def test_training_input_is_what_enhance_prepares():
    ds = _dataset(seed=2)
    scan = ds.scan(0)
    x, _, info = ds._sample(0)
    box = tuple(slice(c, c + 16) for c in info["corner"])
    prepared, ctx = get_task("sr_t1").prepare(Volume(scan.lr, np.eye(4)), Normalisation())
    assert ctx["scale"] == pytest.approx(scan.scale)
    np.testing.assert_allclose(x[0], prepared[box], rtol=1e-6)


def test_degradation_draws_and_applies_each_kind():
    spec = check_degradation({"kspace_p": 1.0, "thick_p": 1.0, "noise_p": 1.0})
    drawn = draw_degradation(np.random.default_rng(0), spec, voxel_mm=1.0)
    assert drawn["kspace_factors"] is not None and drawn["thick"] is not None
    assert 2.0 <= drawn["thick"]["fwhm_vox"] <= 5.0 and drawn["noise_snr"] >= 10
    hr = np.random.default_rng(1).random((24, 24, 24), dtype=np.float32)
    lr = apply_degradation(hr, drawn, np.random.default_rng(2))
    assert lr.shape == hr.shape and lr.min() >= 0
    # nothing drawn -> the first k-space choice (never an identity acquisition)
    none = check_degradation({"kspace_p": 0.0, "thick_p": 0.0, "noise_p": 0.0})
    assert draw_degradation(np.random.default_rng(0), none)["kspace_factors"] == (2.0, 2.0, 1.0)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"synthetic": {"subjects": 3}}, "synthetic.subjects"),
        ({"synthetic": {"contrast": "x-ray"}}, "synthetic.contrast"),
        ({"synthetic": {"mix_mni": 2}}, "mix_mni"),
        ({"degradation": {"kspace_factors": [[2, 2]]}}, "kspace_factors"),
        ({"degradation": {"thick_slice_mm": [5, 2]}}, "thick_slice_mm"),
    ],
)
def test_data_config_refuses_bad_synthetic_values(data, match):
    with pytest.raises(ConfigError, match=match):
        get_task("sr_t1").data_config(data)


def test_shipped_recipe_validates():
    from mrenhance.config import load_recipe, recipe_path

    recipe = load_recipe(recipe_path("sr_mdcsrn_synth"), [])
    cfg = get_task("sr_t1").data_config(recipe.data)
    assert cfg["synthetic"]["mix_mni"] == 0.2
    assert [2.0, 2.0, 1.0] in cfg["degradation"]["kspace_factors"]  # Sec. 2.6
    assert recipe.train.init_weights == "mdcsrn-b4u4"


def test_a_scan_whose_coarse_draws_hold_no_patch_falls_back_to_the_finest_voxels():
    # coarse voxels leave no 16^3 patch between the held-out slabs: after its redraws the scan
    # is drawn once at the smallest voxel size with the whole head, instead of failing
    ds = _dataset(seed=0, voxel_mm=[2.0, 6.0])
    original = ds._draw_synthetic

    def coarse_fail(rng, finest=False):
        scan = original(rng, finest=finest)
        if not finest:
            scan.corners = scan.corners[:0]
        return scan

    ds._draw_synthetic = coarse_fail
    info = ds.sample_info(0)
    assert info["voxel_mm"] == 2.0 and info["kind"] == "synthetic"
