"""The dti task: geometry of prepare/restore, a 2D model on every volume, the protocol."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.engine.infer import scaled_affine
from mrenhance.enhance_api import Enhancer
from mrenhance.errors import ConfigError, InputError
from mrenhance.models import create_model
from mrenhance.tasks import get_task
from mrenhance.volume import Volume

TASK = get_task("dti")
PLAN = {"patch_size": [8, 8], "overlap": [4, 4], "scale": [4, 4, 1], "slice_axis": 2}
TINY = {"subjects": {"train": 1, "validation": 1, "test": 1}, "shape": [32, 32, 4]}


def _series(rng, affine=None) -> Volume:
    data = 50 + 50 * rng.random((6, 5, 3, 4), dtype=np.float32)
    meta = {
        "source": "dwi.nii.gz",
        "bvals": np.array([0.0, 1000, 1000, 1000]),
        "bvecs": np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]]),
    }
    return Volume(data, np.diag([8.0, 8, 2, 1]) if affine is None else affine, meta)


def test_restore_puts_a_4x_output_on_the_scaled_grid_with_the_gradient_table(rng, oblique_affine):
    vol = _series(rng, oblique_affine)
    array, ctx = TASK.prepare(vol, None)
    assert array.shape == vol.shape
    big = np.repeat(np.repeat(array, 4, axis=0), 4, axis=1)
    out = TASK.restore(big, ctx, vol)
    assert out.shape == (24, 20, 3, 4)
    np.testing.assert_allclose(out.affine, scaled_affine(vol.affine, vol.shape[:3], (4, 4, 1)))
    np.testing.assert_allclose(out.voxel_size, np.array(vol.voxel_size) / [4, 4, 1], rtol=1e-6)
    # the field of view keeps its centre
    centre_in = vol.affine @ [*(np.array(vol.shape[:3]) - 1) / 2, 1]
    centre_out = out.affine @ [*(np.array(out.shape[:3]) - 1) / 2, 1]
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    np.testing.assert_array_equal(out.meta["bvals"], vol.meta["bvals"])
    np.testing.assert_allclose(out.data, np.clip(big * ctx["scale"], 0, None), rtol=1e-6)


def test_one_scale_for_the_series_from_its_b0(rng):
    vol = _series(rng)
    array, ctx = TASK.prepare(vol, None)
    ratio = array[..., 1:] / np.maximum(array[..., :1], 1e-6)
    np.testing.assert_allclose(ratio, vol.data[..., 1:] / vol.data[..., :1], rtol=1e-5)


def test_the_2d_model_runs_on_every_volume_alone(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = create_model("srresnet-dwi-x4", channels=4, n_blocks=1).eval()
    enhancer = Enhancer(model, TASK, inference=PLAN, scale=1.0)
    vol = _series(rng)
    out = enhancer(vol)
    assert out.shape == (24, 20, 3, 4)
    order = [2, 0, 3, 1]
    shuffled = Volume(
        vol.data[..., order],
        vol.affine,
        {**vol.meta, "bvals": vol.meta["bvals"][order], "bvecs": vol.meta["bvecs"][order]},
    )
    np.testing.assert_allclose(enhancer(shuffled).data, out.data[..., order], rtol=1e-5, atol=1e-5)


def test_check_input_refuses_series_it_cannot_fit(rng):
    vol = _series(rng)
    no_table = Volume(vol.data, vol.affine, {"source": "x.nii.gz"})
    with pytest.raises(InputError, match="x.nii.gz.*b-values"):
        TASK.check_input(no_table)
    bvecs = np.array([[0, 0, 1.0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])  # unit, as b > 50 needs
    no_b0 = Volume(vol.data, vol.affine, {**vol.meta, "bvals": np.full(4, 1000.0), "bvecs": bvecs})
    with pytest.raises(InputError, match="no b = 0"):
        TASK.check_input(no_b0)


def test_data_config_refuses_grids_the_factor_does_not_divide():
    with pytest.raises(ConfigError, match="data.shape"):
        TASK.data_config({"shape": [30, 32, 4]}, "r.yaml")
    with pytest.raises(ConfigError, match="data.factor"):
        TASK.data_config({"factor": 3}, "r.yaml")
    with pytest.raises(ConfigError, match="data.subjects"):
        TASK.data_config({"subjects": {"holdout": 1}}, "r.yaml")


def test_protocol_scores_bicubic_below_the_truth_and_tensor_errors_vanish_for_it():
    rows = TASK.evaluate(
        {"bicubic": TASK.baselines()["bicubic"], "oracle": lambda s: s.hr},
        data={**TINY, "test_slices": 2},
    )
    by = {r["method"]: r for r in rows}
    assert by["oracle"]["psnr"] > 100 and by["oracle"]["ssim"] == pytest.approx(1.0)
    assert by["oracle"]["fa_mae_wm"] == pytest.approx(0.0, abs=1e-6)
    assert 10 < by["bicubic"]["psnr"] < 60 and by["bicubic"]["fa_mae_wm"] > 0.01
    assert by["bicubic"]["angle_wm_deg"] > 1


def test_real_check_runs_on_dipy_small_64d():
    rows = TASK.evaluate({"bicubic": TASK.baselines()["bicubic"]}, which="real")
    assert rows[0]["subjects"] == 1 and np.isfinite(rows[0]["psnr"])
    assert "fa_mae_wm" in rows[0]


def test_real_regions_cover_the_tissue_of_a_crop_inside_the_brain():
    """small_64D lies inside the brain: the head is nearly all of it, WM a real share of it
    (Otsu on the b0 kept only bright CSF, and 'WM' was a few voxels at its borders)."""
    from mrenhance.diffusion import fit_tensors
    from mrenhance.tasks.dti import real_subject

    subject = real_subject()
    brain, wm = subject.regions["brain"], subject.regions["wm"]
    assert brain.sum() > 0.8 * brain.size
    assert wm.sum() > 0.3 * brain.sum()
    md = fit_tensors(subject.hr, subject.bvals, subject.bvecs, brain)["md"]
    assert 0.5e-3 < float(np.median(md[wm])) < 1.0e-3  # WM, not CSF (~3e-3)


def test_demo_section_has_each_method_its_fa_map_and_a_figure(tmp_path, monkeypatch):
    from mrenhance.tasks import dti

    monkeypatch.setitem(dti.DATA_DEFAULTS, "shape", [32, 32, 4])  # a small subject
    monkeypatch.setitem(dti.DATA_DEFAULTS, "test_slices", 2)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = create_model("srresnet-dwi-x4", channels=4, n_blocks=1).eval()
    enhancers = {"tiny-dwi": Enhancer(model, TASK, inference=PLAN)}
    section = TASK.demo(tmp_path, enhancers, say=lambda *_: None)
    assert [r["method"] for r in section["table_rows"]] == ["bicubic", "tiny-dwi"]
    assert section["images"][0].is_file()
    assert {p.name for p in section["files"].values()} == {
        "fa_lr.nii.gz",
        "fa_bicubic.nii.gz",
        "fa_tiny-dwi.nii.gz",
        "fa_hr.nii.gz",
    }


def test_the_kspace_option_of_a_recipe_reaches_the_tasks_lr_images():
    """``data.downsample: kspace`` in a recipe: the training subjects' LR images and the
    patches the network trains on are the k-space-truncated ones, not the block mean."""
    from mrenhance.config import load_recipe, recipe_path
    from mrenhance.simulate.dwi import degrade_dwi

    tiny = ["data.subjects={train: 1, validation: 0, test: 1}", "data.shape=[32, 32, 2]"]
    tiny += ["data.lr_noise=0.0"]  # noise-free: the LR is a function of the HR alone
    r = load_recipe(recipe_path("dti_srresnet"), [*tiny, "data.downsample=kspace"])
    assert r.data["downsample"] == "kspace"
    data = TASK.training_data(r.data, (4, 4))
    s = data.subjects[0]
    np.testing.assert_allclose(s.lr, degrade_dwi(s.hr, 4, method="kspace"), rtol=1e-6, atol=1e-6)
    area = degrade_dwi(s.hr, 4, method="area")
    assert np.abs(s.lr - area).max() > 1e-3 * np.abs(area).max()
    x, y, z, n = s.lr.shape
    inputs = np.asarray(data.dataset.inputs[0]).reshape(x, y, z * n)
    np.testing.assert_allclose(inputs, (s.lr / np.float32(s.input_scale)).reshape(x, y, z * n))
    assert "4x kspace downsampling" in TASK.protocol({**r.data})
    # the recipe's default is the block mean, as the cards' protocol says
    default = TASK.training_data(load_recipe(recipe_path("dti_srresnet"), tiny).data, (4, 4))
    np.testing.assert_allclose(default.subjects[0].lr, area, rtol=1e-6)
