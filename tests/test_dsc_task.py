"""The dsc task (tasks/dsc.py): Sec. 4.2 preprocessing, strips, scoring, the networks, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrenhance.models import create_model
from mrenhance.tasks import dsc as T
from mrenhance.tasks import get_task
from mrenhance.volume import Volume


def test_crop_resamples_a_square_prism_and_inverts_on_smooth_images():
    mask = np.zeros((40, 30, 2), bool)
    mask[5:35, 8:24] = True
    crop = T.Crop.around(mask, 32)
    assert crop.length == 30 and crop.size == 32
    x, y = np.meshgrid(np.arange(40.0), np.arange(30.0), indexing="ij")
    img = np.repeat((x + 2 * y)[..., None], 2, axis=2)
    back = crop.inverse(crop.forward(img))
    inner = np.zeros_like(mask)
    inner[7:33, 10:22] = True
    np.testing.assert_allclose(back[inner], img[inner], atol=0.6)
    assert np.all(back[0] == 0)  # outside the prism


def test_standardise_uses_brain_statistics_and_clips():
    rng = np.random.default_rng(0)
    v = rng.normal(3, 2, (10, 10, 3))
    mask = np.ones(v.shape, bool)
    z = T.standardise(v, mask, clip=None)
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1, rel=1e-4)
    v[0, 0, 0] = 1e6
    assert T.standardise(v, mask).max() == 5.0


def test_eq1_commutes_with_the_standardisation_used_for_training_strips():
    from mrenhance.simulate.dsc import low_dose_eq1

    rng = np.random.default_rng(1)
    s = 100 + rng.normal(0, 1, (4, 4, 30)).cumsum(-1)
    a, b = 0.37, -12.0
    np.testing.assert_allclose(
        low_dose_eq1(a * s + b, 0.25), a * low_dose_eq1(s, 0.25) + b, rtol=1e-5, atol=1e-3
    )


def test_strip_dataset_yields_frames_as_channels_and_cbv_strips():
    inputs = [np.zeros((32, 32, 2, 12), np.float32)]
    targets = [np.zeros((32, 32, 2), np.float32)]
    ds = T.StripDataset(
        inputs,
        targets,
        strip=16,
        stride=8,
        doses=[1.0, 0.25],
        eq1={"window": 5, "n_baseline": 5},
        clip=5,
    )
    assert len(ds) == 3 * 2 * 2  # x starts 0, 8, 16 x slices x doses
    item = ds[5]
    assert item["inputs"].shape == (12, 16, 32) and item["target"].shape == (1, 16, 32)


def test_score_maps_are_zero_for_a_rescaled_copy():
    rng = np.random.default_rng(2)
    cbv = rng.random((20, 20, 3)) + 1
    brain = np.ones(cbv.shape, bool)
    tumour = np.zeros(cbv.shape, bool)
    tumour[5:8, 5:8] = True
    m = T.score_maps(7 * cbv + 3, cbv, brain, tumour)
    assert m["l1"] < 1e-5 and m["t_l2"] < 1e-8 and m["ssim"] == pytest.approx(1, abs=1e-6)
    worse = T.score_maps(cbv + rng.random(cbv.shape), cbv, brain, tumour)
    assert worse["l1"] > 0.1 and worse["ssim"] < 0.95


@pytest.mark.parametrize(("name", "params"), [("stunet", 202_857), ("hess-perfusion", 36_161)])
def test_networks_map_strips_of_any_length_to_cbv_strips(name, params):
    torch.manual_seed(0)
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.no_grad():
        for t, sx, sy in ((48, 16, 64), (37, 13, 30)):
            assert model(torch.randn(2, t, sx, sy)).shape == (2, 1, sx, sy)


def test_stunet_skips_take_the_max_over_time():
    model = create_model("stunet")
    level0 = model.encoders[0]
    x = torch.randn(1, 1, 16, 16, 48)
    feats = level0(x)
    assert feats.amax(-1).shape == (1, 8, 16, 16)
    kinds = [(m.kernel_size, m.stride) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert ((3, 3, 7), (1, 1, 1)) in kinds and ((2, 2, 4), (2, 2, 4)) in kinds
    decoder = [m.kernel_size for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert (5, 5) in decoder and (1, 1) in decoder


def test_enhancer_turns_a_series_into_a_cbv_map_on_its_grid():
    from mrenhance.enhance_api import Enhancer

    task = get_task("dsc")
    vol = task.example_input(np.random.default_rng(0))
    vol.affine[:3, 3] = (10.0, -5.0, 2.0)
    model = create_model("stunet", widths=[4, 8])
    card = {"preprocessing": {"dsc": {"slice_size": 16, "cbv_mean": 3.0, "cbv_std": 1.5}}}
    enhancer = Enhancer(
        model,
        task,
        normalisation=card,
        inference={"patch_size": [8, 16], "overlap": [6, 0], "blend": "average", "slice_axis": 2},
    )
    out = enhancer(vol)
    assert out.data.shape == vol.data.shape[:3]
    np.testing.assert_array_equal(out.affine, vol.affine)
    assert "tr_s" not in out.meta and np.isfinite(out.data).all()


def test_check_input_refuses_short_series():
    from mrenhance.errors import InputError

    bad = Volume(np.ones((8, 8, 2, 5), np.float32), meta={"source": "short.nii.gz"})
    with pytest.raises(InputError, match="short.nii.gz.*frames"):
        get_task("dsc").check_input(bad)


def test_perfusion_command_writes_maps_on_the_input_grid(tmp_path):
    from mrenhance.cli import main
    from mrenhance.io import load, save
    from mrenhance.simulate import dsc as D
    from mrenhance.simulate import subjects as S

    subject = S.draw_subject(np.random.default_rng(3), voxel_mm=4.0, lesions=("tumour",))
    sim = D.simulate_dsc(
        subject, np.random.default_rng(0), D.DSCProtocol(n_frames=40), z_range=(20, 23)
    )
    save(sim.volume(), tmp_path / "dsc.nii.gz")
    save(Volume(sim.aif_mask.astype(np.float32), sim.affine), tmp_path / "aif.nii.gz")
    rc = main(
        [
            "perfusion",
            str(tmp_path / "dsc.nii.gz"),
            "--aif-mask",
            str(tmp_path / "aif.nii.gz"),
            "-o",
            str(tmp_path / "maps"),
        ]
    )
    assert rc == 0
    for name in ("cbv", "cbf", "mtt", "tmax"):
        m = load(tmp_path / "maps" / f"{name}.nii.gz")
        assert m.data.shape == sim.cbv.shape
        np.testing.assert_allclose(m.affine, sim.affine, atol=1e-4)
    rows = (tmp_path / "maps" / "aif.tsv").read_text().splitlines()
    assert len(rows) == 41 and (tmp_path / "maps" / "aif.png").stat().st_size > 1000
    assert main(["perfusion", str(tmp_path / "dsc.nii.gz"), "-o", str(tmp_path / "maps")]) == 2


def test_enhance_with_the_shipped_stunet_writes_a_3d_cbv_map(tmp_path):
    """``mrenhance enhance dsc.nii.gz -o cbv.nii.gz --model stunet-dsc-cbv``: 4D in, 3D out."""
    from mrenhance.cli import main
    from mrenhance.io import load, save
    from mrenhance.models.weights import shipped_weights_dir
    from mrenhance.simulate import dsc as D
    from mrenhance.simulate import subjects as S

    if not (shipped_weights_dir() / "stunet-dsc-cbv.safetensors").is_file():
        pytest.skip("stunet-dsc-cbv is not shipped")
    subject = S.draw_subject(np.random.default_rng(4), voxel_mm=3.0, lesions=("tumour",))
    sim = D.simulate_dsc(
        subject, np.random.default_rng(0), D.DSCProtocol(n_frames=48), z_range=(28, 31)
    )
    save(sim.volume(), tmp_path / "dsc.nii.gz")
    args = ["enhance", str(tmp_path / "dsc.nii.gz"), "-o", str(tmp_path / "cbv.nii.gz")]
    assert main([*args, "--model", "stunet-dsc-cbv", "-q"]) == 0
    cbv = load(tmp_path / "cbv.nii.gz")
    assert cbv.data.shape == sim.cbv.shape
    np.testing.assert_allclose(cbv.affine, sim.affine, atol=1e-4)
    inside = sim.brain_mask & (sim.cbv > 0.5)
    assert np.corrcoef(cbv.data[inside], sim.cbv[inside])[0, 1] > 0.3


def test_demo_section_scores_osvd_and_a_network_against_the_truth(tmp_path, monkeypatch):
    from mrenhance.enhance_api import Enhancer

    small = {"voxel_mm": 6.0, "slices": 2, "slice_size": 16, "n_frames": 30}
    for key, value in small.items():  # one small test subject
        monkeypatch.setitem(T.DATA_DEFAULTS, key, value)
    made = []
    monkeypatch.setattr(T, "make_case", lambda *a, _f=T.make_case: made.append(a) or _f(*a))
    torch.manual_seed(0)
    model = create_model("stunet", widths=[4, 8]).eval()  # untrained
    card = {"preprocessing": {"dsc": {"slice_size": 16, "cbv_mean": 3.0, "cbv_std": 1.5}}}
    plan = {"patch_size": [8, 16], "overlap": [4, 0], "blend": "average", "slice_axis": 2}
    enhancers = {"tiny": Enhancer(model, get_task("dsc"), normalisation=card, inference=plan)}
    section = get_task("dsc").demo(tmp_path, enhancers, say=lambda *_: None)
    assert [a[1:] for a in made] == [("test", 0)]  # only the subject it shows
    rows = section["table_rows"]
    assert [(r["method"], r["dose"]) for r in rows] == [
        ("oSVD", 1.0),
        ("tiny", 1.0),
        ("oSVD", 0.25),
        ("tiny", 0.25),
    ]
    assert all(r["reference"] == "truth" and r["n"] == 1 for r in rows)
    by = {(r["method"], r["dose"]): r for r in rows}
    for dose in (1.0, 0.25):  # the classical maps beat an untrained network
        assert by[("oSVD", dose)]["l1"] < 0.7 * by[("tiny", dose)]["l1"]
    figure = section["images"][0]
    assert figure.name == "figure.png" and figure.stat().st_size > 5000
    assert {p.name for p in section["files"].values()} == {
        "cbv_truth.nii.gz",
        "cbv_osvd_dose1.nii.gz",
        "cbv_osvd_dose0.25.nii.gz",
        "cbv_tiny_dose1.nii.gz",
        "cbv_tiny_dose0.25.nii.gz",
    }
    assert all(p.is_file() for p in section["files"].values())
    assert (tmp_path / "dsc" / "metrics.md").is_file()


@pytest.mark.slow
def test_stride_1_test_strips_agree_with_the_default_stride_4(tmp_path):
    """The card tiles with stride 4 (overlap 12 of 16); ``--overlap 15,0`` is the paper's
    stride 1 (Sec. 3). Both average the same network's strips: the maps agree closely."""
    from mrenhance.cli import main
    from mrenhance.enhance_api import Enhancer
    from mrenhance.io import load, save
    from mrenhance.models.weights import shipped_weights_dir
    from mrenhance.simulate import dsc as D
    from mrenhance.simulate import subjects as S

    if not (shipped_weights_dir() / "stunet-dsc-cbv.safetensors").is_file():
        pytest.skip("stunet-dsc-cbv is not shipped")
    prepared = (64, 64, 2)  # slices resampled to the card's 64 x 64
    default = Enhancer.from_weights("stunet-dsc-cbv").plan
    stride1 = Enhancer.from_weights("stunet-dsc-cbv", inference={"overlap": [15, 0]}).plan
    assert default.blend == stride1.blend == "average"
    assert default.layout(prepared).n_tiles == 13 * 2  # x starts 0, 4, ..., 48
    assert stride1.layout(prepared).n_tiles == 49 * 2  # every x start

    subject = S.draw_subject(
        np.random.default_rng(4), voxel_mm=4.0, shape=(64, 64, 47), lesions=("tumour",)
    )
    zc = int(np.argwhere(subject.lesion_masks["tumour"]).mean(axis=0)[2])
    sim = D.simulate_dsc(
        subject, np.random.default_rng(0), D.DSCProtocol(n_frames=40), z_range=(zc - 1, zc + 1)
    )
    save(sim.volume(), tmp_path / "dsc.nii.gz")
    args = ["enhance", str(tmp_path / "dsc.nii.gz"), "--model", "stunet-dsc-cbv", "-q"]
    assert main([*args, "-o", str(tmp_path / "stride4.nii.gz")]) == 0
    assert main([*args, "--overlap", "15,0", "-o", str(tmp_path / "stride1.nii.gz")]) == 0
    a = load(tmp_path / "stride4.nii.gz").data
    b = load(tmp_path / "stride1.nii.gz").data
    brain = b > 0
    assert brain.sum() > 1000 and not np.array_equal(a, b)
    # measured: correlation 0.998, mean |difference| 1.4 % of the mean, max 0.24 brain std
    assert np.corrcoef(a[brain], b[brain])[0, 1] > 0.995
    assert np.abs(a - b)[brain].mean() < 0.02 * b[brain].mean()
    assert np.abs(a - b)[brain].max() < 0.5 * b[brain].std()


@pytest.mark.parametrize("recipe", ["dsc_stunet", "dsc_hess"])
def test_the_shipped_recipe_trains_and_writes_weights_with_a_card(recipe, tmp_path):
    """``mrenhance train dsc_stunet|dsc_hess`` runs its own recipe (both refused it once)."""
    import json

    from mrenhance.cli import main
    from mrenhance.enhance_api import Enhancer

    overrides = [
        "data.subjects={train: 1, validation: 1, test: 1}",
        "data.slices=2",
        "data.slice_size=24",
        "data.n_frames=16",
        "train.steps=2",
        "train.batch_size=2",
        "train.patch_size=[8, 24]",
        "train.val_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "infer.patch_size=[8, 24]",
        "infer.overlap=[4, 0]",
    ]
    run = tmp_path / "run"
    assert main(["train", recipe, *overrides, "--run-dir", str(run), "-q"]) == 0
    weights = sorted(run.glob("*.safetensors"))
    assert len(weights) == 1
    card = json.loads(weights[0].with_suffix(".json").read_text())
    assert card["task"] == "dsc" and card["training"]["steps"] == 2
    assert card["training"]["recipe"] == recipe
    enhancer = Enhancer.from_weights(weights[0])
    assert enhancer.card.task == "dsc"
