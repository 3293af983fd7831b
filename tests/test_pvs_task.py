"""The pvs task: resampling to the card's voxel size and back, masks, the protocol, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mrenhance import Volume
from mrenhance.cli import main
from mrenhance.enhance_api import Enhancer
from mrenhance.errors import ConfigError, InputError
from mrenhance.io import load, save
from mrenhance.models import create_model
from mrenhance.models.weights import save_weights
from mrenhance.tasks import get_task

TASK = get_task("pvs")
CARD = {"preprocessing": {"voxel_size_mm": [0.5, 0.5, 0.5]}}
TINY = {
    "crop_shape": [32, 32, 48],
    "density_per_cm3": {"centrum_semiovale": [4.0, 4.0], "basal_ganglia": [4.0, 4.0]},
    "train_subjects": 1,
    "validation_subjects": 1,
    "test_subjects": 1,
}


def _head(shape=(16, 18, 14), voxel=1.0):
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    data = (x**2 + y**2 + z**2 < 0.7) * (200.0 + 50 * x)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = [-7.0, 3.0, 11.5]
    return Volume(data.astype(np.float32), affine, {"source": "head.nii.gz"})


def test_a_1mm_input_runs_at_05mm_and_comes_back_on_its_own_grid():
    vol = _head()
    array, ctx = TASK.prepare(vol, CARD)
    assert ctx["resampled_shape"] == (32, 36, 28)
    assert array.shape == (32, 36, 28)  # the head box plus the margin covers the grid
    out = TASK.restore(array, ctx, vol)  # an identity network
    assert out.data.shape == vol.data.shape and np.array_equal(out.affine, vol.affine)
    inside = vol.data > 0
    assert np.abs(out.data - vol.data)[inside].mean() < 0.05 * vol.data[inside].mean()


def test_a_mask_restricts_the_network_and_the_output():
    vol = _head(voxel=0.5)
    mask = np.zeros(vol.shape, bool)
    mask[2:8, 3:9, 4:10] = True
    array, ctx = TASK.prepare(vol, CARD, mask=mask)
    assert "resampled_shape" not in ctx  # already at 0.5 mm
    out = TASK.restore(array, ctx, vol)
    assert np.all(out.data[~mask] == 0) and np.allclose(out.data[mask], vol.data[mask], rtol=1e-5)
    with pytest.raises(InputError, match="--mask"):
        TASK.prepare(vol, CARD, mask=np.ones((3, 3, 3)))


def test_other_tasks_refuse_a_mask():
    model = create_model("mdcsrn-b2u4", growth=2)
    enhancer = Enhancer(model.eval(), "sr_t1", inference={"patch_size": 8, "overlap": 2})
    vol = _head()
    with pytest.raises(InputError, match="does not take a mask"):
        enhancer(vol, mask=vol)


def test_data_config_checks_the_target_switch():
    assert TASK.data_config({"target": "nlm_tophat"})["target"] == "nlm_tophat"
    with pytest.raises(ConfigError, match="data.target"):
        TASK.data_config({"target": "hou"}, "r.yaml")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("dcnn1", growth=2, units=2, bottleneck_channels=2)
    path = tmp_path_factory.mktemp("w") / "tiny-pvs.safetensors"
    card = {
        "task": "pvs",
        "preprocessing": {
            "normalisation": {"method": "percentile", "percentile": 99.5, "mask": "head"},
            "voxel_size_mm": [0.5, 0.5, 0.5],
        },
        "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"},
        "metrics": {"test": {"threshold": 0.6}},
    }
    return save_weights(model.eval(), path, card)


def test_the_protocol_scores_images_and_detection_for_networks_and_filters(tiny_weights):
    enhancer = Enhancer.from_weights(tiny_weights)
    base = TASK.baselines(TINY)
    methods = {k: base[k] for k in ("input (noisy)", "top-hat (Uchiyama)")}
    methods["tiny"] = TASK.network_method(enhancer)
    rows = TASK.evaluate(methods, data=TINY)
    by = {r["method"]: r for r in rows}
    assert set(by) == set(methods)
    for row in rows:
        assert np.isfinite(row["psnr_wm"]) and 0 <= row["ssim_brain"] <= 1
        assert 0 <= row["auc"] <= 1 and 0 <= row["dice"] <= 1 and 0 <= row["f1"] <= 1
        assert {"dice_cso", "f1_bg", "count_diff", "volume_diff_mm3"} <= set(row)
    # a top-hat finds the bright tubes far better than chance
    assert by["top-hat (Uchiyama)"]["auc"] > 0.8


def test_pvs_command_writes_map_mask_and_table(tmp_path, tiny_weights, capsys):
    vol = _head(shape=(20, 20, 16))
    src = save(vol, tmp_path / "t2.nii.gz")
    mask = save(vol.with_data((vol.data > 0).astype(np.float32)), tmp_path / "brain.nii.gz")
    out = tmp_path / "out"
    code = main(
        ["pvs", str(src), "-o", str(out), "--model", str(tiny_weights), "--mask", str(mask)]
    )
    assert code == 0
    for name in ("enhanced.nii.gz", "pvs_probability.nii.gz", "pvs_mask.nii.gz"):
        written = load(out / name)
        assert written.shape == vol.shape and np.allclose(written.affine, vol.affine)
    prob = load(out / "pvs_probability.nii.gz").data
    assert prob.min() >= 0 and prob.max() <= 1
    rows = json.loads((out / "pvs_run.json").read_text())["rows"]
    assert rows[0]["region"] == "all" and rows[0]["count"] >= 0
    enhanced = tmp_path / "e.nii.gz"
    args = ["enhance", str(src), "-o", str(enhanced), "--model", str(tiny_weights), "-q"]
    assert main([*args, "--mask", str(mask)]) == 0
    assert np.all(load(enhanced).data[vol.data == 0] == 0)


def test_demo_figure_outlines_the_true_pvs_on_a_zoomed_slice(tmp_path):
    from types import SimpleNamespace

    from mrenhance.tasks.pvs import pvs_figure

    shape = (40, 40, 20)
    mask = np.zeros(shape, bool)
    mask[20:22, 10:30, 12] = True
    cso = np.zeros(shape, bool)
    cso[5:35, 5:35, 10:15] = True
    image = np.where(mask, 1.0, 0.4).astype(np.float32)
    case = SimpleNamespace(
        regions={"centrum_semiovale": cso},
        pvs_mask=mask,
        image=image,
        target=image,
        brain=np.ones(shape, bool),
    )
    path = pvs_figure({"input": image, "target": image}, case, tmp_path / "f.png")
    assert path.stat().st_size > 1000


@pytest.fixture(scope="module")
def smoothing_weights(tmp_path_factory):
    """A tiny untrained DCNN with non-negative weights and no biases: a positive linear
    smoothing of its input (ReLUs pass it), so bright tubes stay bright in its output."""
    torch.manual_seed(0)
    model = create_model("dcnn1", growth=2, units=2, bottleneck_channels=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(p.abs() if name.endswith("weight") else torch.zeros_like(p))
    path = tmp_path_factory.mktemp("w") / "smooth-pvs.safetensors"
    card = {
        "task": "pvs",
        "preprocessing": {
            "normalisation": {"method": "percentile", "percentile": 99.5, "mask": "head"},
            "voxel_size_mm": [0.5, 0.5, 0.5],
        },
        "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"},
    }
    return save_weights(model.eval(), path, card)


def test_the_command_masks_what_the_protocol_scored_at_the_same_threshold(
    tmp_path, smoothing_weights
):
    """One unit for thresholds: ``mrenhance pvs`` applies a threshold to the map the
    protocol chose it on (enhanced / the input's scale), not to the raw enhanced image."""
    from mrenhance.preprocess import intensity_scale
    from mrenhance.tasks.pvs import load_cases, threshold_mask

    tiny_weights = smoothing_weights
    enhancer = Enhancer.from_weights(tiny_weights)
    method = TASK.network_method(enhancer)
    (row,) = TASK.evaluate({"tiny": method}, data=TINY)
    case = load_cases(TASK.data_config(TINY), "test")[0]
    scored = method(case)
    t = row["threshold"]
    expected = threshold_mask(scored["score"], t, case.possible)
    vol = Volume(case.image, case.affine, {"source": "phantom"})
    src = save(vol, tmp_path / "t2.nii.gz")
    # the protocol's domain as --mask (on a crop with no air the automatic head mask is
    # Otsu's bright CSF only)
    domain = save(vol.with_data(case.possible.astype(np.float32)), tmp_path / "domain.nii.gz")
    out = tmp_path / "out"
    args = ["pvs", str(src), "-o", str(out), "--model", str(tiny_weights), "--mask", str(domain)]
    assert main([*args, "--threshold", str(t), "--min-voxels", "1"]) == 0
    written = load(out / "pvs_mask.nii.gz").data > 0
    enhanced = load(out / "enhanced.nii.gz").data
    assert np.allclose(enhanced[case.possible], scored["image"][case.possible], rtol=1e-5)
    assert 0 < expected.sum() < case.possible.sum()
    assert np.array_equal(written, expected)
    # the raw enhanced image is in the phantom's units: thresholding it gives another mask
    assert abs(intensity_scale(case.image, enhancer.card.normalisation) - 1) > 0.05
    assert not np.array_equal(threshold_mask(scored["image"], t, case.possible), expected)


@pytest.mark.parametrize("kind", ["tophat", "nlm_tophat", "frangi"])
def test_a_classical_target_switch_trains_on_that_enhancers_output(kind):
    """data.target: the training pairs' targets are the enhancer's output of the noisy
    input (/ the input's scale), not the phantom's truth."""
    from mrenhance.baselines import vessels
    from mrenhance.models.card import Normalisation
    from mrenhance.tasks.pvs import classical_target, input_scale, training_target

    data = TASK.training_data({**TINY, "target": kind}, (16, 16, 16))
    case = data.subjects[0]
    fn = {
        "tophat": vessels.white_tophat,
        "nlm_tophat": vessels.nlm_tophat,
        "frangi": vessels.frangi_vesselness,
    }[kind]
    expected = fn(case.image, voxel_mm=case.voxel_mm)[0]
    assert np.array_equal(classical_target(case.image, kind, case.voxel_mm), expected)
    assert np.array_equal(training_target(case, kind), expected)
    scale = np.float32(input_scale(case, Normalisation()))
    target = data.dataset.targets[0][0]
    assert np.allclose(target, expected / scale, rtol=1e-6)
    assert not np.allclose(target, case.target / scale, rtol=0.05)
    sample = data.dataset[0]
    assert sample["target"].shape == (1, 16, 16, 16) and np.isfinite(sample["target"]).all()
    if kind == "tophat":  # the validation metric scores against the same switch
        torch.manual_seed(0)
        model = create_model("dcnn1", growth=2, units=2, bottleneck_channels=2).eval()
        assert np.isfinite(data.validate(model)["psnr"])


def test_demo_writes_the_pvs_figure_table_and_images(tmp_path, monkeypatch, tiny_weights):
    from mrenhance.tasks import pvs

    for key, value in TINY.items():  # a small phantom
        monkeypatch.setitem(pvs.DATA_DEFAULTS, key, value)
    enhancers = {"tiny": Enhancer.from_weights(tiny_weights)}
    section = TASK.demo(tmp_path, enhancers, say=lambda *_: None)
    methods = [r["method"] for r in section["table_rows"]]
    assert methods == ["input (noisy)", "Frangi", "top-hat (Uchiyama)", "tiny"]
    assert section["images"][0].is_file() and section["images"][0].stat().st_size > 1000
    table = (tmp_path / "pvs" / "metrics.md").read_text()
    assert all(m in table for m in methods) and "dice" in table
    assert set(section["files"]) == {*methods, "target (enhanced truth)", "true PVS mask"}
    mask = load(section["files"]["true PVS mask"])
    assert mask.shape == tuple(TINY["crop_shape"]) and mask.data.max() == 1


def _phantom_and_threshold(weights, regions=("centrum_semiovale", "basal_ganglia")):
    """The first tiny test phantom as a Volume, a label image (1, 2, ... for ``regions``)
    and the Dice-optimal threshold of ``weights``' detection map on it."""
    from mrenhance.detection import best_threshold
    from mrenhance.tasks.pvs import load_cases, network_score

    case = load_cases(TASK.data_config(TINY), "test")[0]
    vol = Volume(case.image, case.affine, {"source": "phantom"})
    enhancer = Enhancer.from_weights(weights)
    score = network_score(enhancer, case.image, enhancer(vol).data)
    t = best_threshold([score], [case.pvs_mask], [case.possible])
    labels = np.zeros(case.image.shape, np.float32)
    for k, name in enumerate(regions, start=1):
        labels[case.regions[name]] = k
    return case, vol, labels, t


def test_pvs_command_counts_pvs_by_region(tmp_path, smoothing_weights, capsys):
    from scipy import ndimage

    from mrenhance.detection import CONNECTIVITY_26

    case, vol, labels, t = _phantom_and_threshold(smoothing_weights)
    src = save(vol, tmp_path / "t2.nii.gz")
    regions = save(vol.with_data(labels), tmp_path / "labels.nii.gz")
    domain = save(vol.with_data(case.possible.astype(np.float32)), tmp_path / "domain.nii.gz")
    out = tmp_path / "out"
    args = ["pvs", str(src), "-o", str(out), "--model", str(smoothing_weights)]
    args += ["--mask", str(domain), "--regions", str(regions), "--threshold", f"{t:.6g}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    rows = {r["region"]: r for r in json.loads((out / "pvs_table.json").read_text())["rows"]}
    assert list(rows) == ["all", "centrum_semiovale", "basal_ganglia"]
    mask = load(out / "pvs_mask.nii.gz").data > 0
    for k, name in ((1, "centrum_semiovale"), (2, "basal_ganglia")):
        inside = mask & (labels == k)
        count = ndimage.label(inside, structure=CONNECTIVITY_26)[1]
        assert rows[name]["count"] == count > 0, name
        assert rows[name]["volume_mm3"] == pytest.approx(inside.sum() * 0.125, abs=0.01)
        assert f"{name}: {count} PVS" in printed
    assert rows["all"]["volume_mm3"] >= sum(rows[n]["volume_mm3"] for n in list(rows)[1:])


def test_pvs_command_without_a_mask_looks_everywhere_in_an_air_free_crop(
    tmp_path, smoothing_weights
):
    from mrenhance.preprocess import has_air, head_mask

    case, vol, labels, t = _phantom_and_threshold(smoothing_weights, ("centrum_semiovale",))
    assert not has_air(case.image)  # the phantom is a crop inside the brain
    # Otsu's head mask there keeps the bright class (CSF and the tubes themselves), not the
    # white matter and basal ganglia where tubes are looked for
    assert (head_mask(case.image) & case.possible).sum() < 0.2 * case.possible.sum()
    src = save(vol, tmp_path / "t2.nii.gz")
    regions = save(vol.with_data(labels), tmp_path / "labels.nii.gz")
    out = tmp_path / "out"
    args = ["pvs", str(src), "-o", str(out), "--model", str(smoothing_weights)]
    assert main([*args, "--regions", str(regions), "--threshold", f"{t:.6g}"]) == 0
    rows = {r["region"]: r for r in json.loads((out / "pvs_table.json").read_text())["rows"]}
    assert rows["centrum_semiovale"]["count"] > 0
    found = load(out / "pvs_mask.nii.gz").data > 0
    assert (found & case.pvs_mask).sum() > 0.3 * case.pvs_mask.sum()
    # the tubes' dimmer partial-volume rims lie below Otsu's threshold: found there too
    assert (found & case.pvs_mask & ~head_mask(case.image)).any()
