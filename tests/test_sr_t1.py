"""The sr_t1 task: pairs, held-out regions, one normalisation, evaluation rows."""

import numpy as np
import pytest

from mrenhance.errors import ConfigError, InputError
from mrenhance.io import save
from mrenhance.models import create_model
from mrenhance.models.card import Normalisation
from mrenhance.models.weights import save_weights
from mrenhance.tasks import get_task, sr_t1
from mrenhance.volume import Volume

TASK = get_task("sr_t1")


def test_training_regions_never_touch_held_out_slabs():
    held = {"axis": 2, "validation": [64, 76], "test": [96, 128], "gap": 4}
    regions = sr_t1.training_regions((197, 233, 189), held, (32, 32, 32))
    covered = np.zeros(189, bool)
    for box in regions:
        covered[box[2]] = True
        assert box[2].stop - box[2].start >= 32
    assert not covered[60:80].any() and not covered[92:132].any()
    assert covered[:60].all() and covered[132:].all()


def test_training_regions_refuse_when_nothing_left():
    held = {"axis": 2, "validation": [0, 10], "test": [10, 20], "gap": 0}
    with pytest.raises(ConfigError, match="no training region"):
        sr_t1.training_regions((8, 8, 20), held, (8, 8, 8))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"colour": "red"}, "data.colour"),
        ({"factors": [0.5, 2, 1]}, "factors"),
        ({"files": []}, "data.files"),
        ({"normalise": {"method": "percentile", "percentile": 140}}, "percentile"),
        ({"normalise": {"mask": "skull"}}, "mask"),
    ],
)
def test_data_config_refuses_bad_values(data, match):
    with pytest.raises(ConfigError, match=match):
        TASK.data_config(data, "r.yaml")


def test_prepare_and_restore_round_trip(small_brain):
    vol = Volume(small_brain * 300)
    arr, ctx = TASK.prepare(vol)
    assert 0.5 < np.percentile(arr[arr > 0], 99.5) <= 1.0001
    assert ctx["normalisation"] == Normalisation().to_dict()
    back = TASK.restore(arr, ctx, vol)
    np.testing.assert_allclose(back.data, vol.data, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(back.affine, vol.affine)


def test_prepare_refuses_4d_and_nan():
    with pytest.raises(InputError, match="3D image"):
        TASK.prepare(Volume(np.zeros((4, 4, 4, 2))))
    bad = np.ones((4, 4, 4), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        TASK.prepare(Volume(bad))


def test_prepare_scale_ignores_background_noise(small_brain, rng):
    """The head mask keeps the scale of a noisy-background scan near the clean one's."""
    clean = small_brain * 300
    noisy = clean + np.abs(rng.normal(0, 15, clean.shape)).astype(np.float32)
    _, c1 = TASK.prepare(Volume(clean))
    _, c2 = TASK.prepare(Volume(noisy))
    assert abs(c2["scale"] / c1["scale"] - 1) < 0.08


def test_make_lr_removes_detail_but_keeps_mean(small_brain):
    lr = sr_t1.make_lr(small_brain, (2, 2, 1))
    assert lr.shape == small_brain.shape
    # the magnitude folds negative ringing up, so the mean rises a little (~5% on this toy)
    assert abs(lr.mean() - small_brain.mean()) < 0.1 * small_brain.mean()
    assert np.abs(lr - small_brain).mean() > 1e-3


def test_evaluate_region_rows_have_metrics(small_brain):
    hr = small_brain * 50
    subj = sr_t1.SRSubject("toy", hr, sr_t1.make_lr(hr, (2, 2, 1)), hr > 2.5, 1.0, 50.0)
    held = {"axis": 2, "validation": [1, 4], "test": [5, 17], "gap": 0}
    methods = {"perfect": lambda s, box: s.hr[box], **sr_t1.baseline_methods((2, 2, 1))}
    rows = sr_t1.evaluate_region(methods, subj, held, "test")
    by = {r["method"]: r for r in rows}
    assert by["perfect"]["psnr"] == float("inf") or by["perfect"]["psnr"] > 100
    assert by["perfect"]["ssim"] == pytest.approx(1.0)
    assert by["tricubic"]["psnr"] < by["perfect"]["psnr"]
    assert by["nearest"]["ssim"] < 1.0


def test_task_registry():
    assert isinstance(get_task("sr_t1"), sr_t1.SRT1Task)
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("nope")


def test_training_and_enhance_feed_the_network_identical_arrays(tmp_path, small_brain, monkeypatch):
    """The bug this guards: training normalised by the HR brain, enhance by the LR > 0."""
    from mrenhance.cli import main

    hr_file = tmp_path / "hr.nii.gz"
    save(Volume(np.tile(small_brain, (1, 1, 2)) * 300), hr_file)
    data = {
        "files": [str(hr_file)],
        "held_out": {"axis": 2, "validation": [14, 26], "test": [28, 40], "gap": 0},
        "augment": None,
    }
    cfg = TASK.data_config(data)
    training = TASK.training_data(data, (12, 12, 12))
    subject = training.subjects[0]
    sample = training.dataset[0]
    sample_input = sample["inputs"] if isinstance(sample, dict) else sample[0]
    assert sample_input.max() <= subject.inputs.max() + 1e-6  # patches come from inputs

    model = create_model("mdcsrn-b2u4", growth=4)
    card = {
        "task": "sr_t1",
        "preprocessing": TASK.preprocessing(cfg, training.subjects),
        "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"},
    }
    weights = save_weights(model, tmp_path / "tiny.safetensors", card)
    lr_file = tmp_path / "lr.nii.gz"
    save(Volume(subject.lr, subject.affine), lr_file)  # the LR scan a user would have

    seen = []
    import mrenhance.engine.infer as engine_infer

    real = engine_infer.infer

    def spy(model, array, *args, **kwargs):
        seen.append(np.array(array, copy=True))
        return real(model, array, *args, **kwargs)

    monkeypatch.setattr(engine_infer, "infer", spy)
    out = tmp_path / "sr.nii.gz"
    assert main(["enhance", str(lr_file), "-o", str(out), "--model", str(weights), "-q"]) == 0
    # the first call is the network on the input (a second one may be the consistency
    # self-check on a further-degraded copy, tasks/sr_t1.py run_network)
    assert len(seen) >= 1
    np.testing.assert_array_equal(seen[0], subject.inputs)


def test_evaluation_goes_through_enhance(small_brain, tmp_path):
    """A network method of the protocol returns what enhance writes for the same region."""
    from mrenhance.enhance_api import Enhancer

    hr = np.tile(small_brain, (1, 1, 3)) * 300  # (24, 28, 60)
    subject = sr_t1.SRSubject("toy", hr, sr_t1.make_lr(hr, (2, 2, 1)), hr > 10, 1.0, 300.0)
    model = create_model("mdcsrn-b2u4", growth=4)
    enhancer = Enhancer(model, TASK, inference={"patch_size": 16, "overlap": 4})
    box = (slice(None), slice(None), slice(0, 60))
    via_protocol = TASK.network_method(enhancer)(subject, box)
    via_enhance = enhancer(subject.lr_volume()).data
    np.testing.assert_allclose(via_protocol, via_enhance, atol=1e-6)


def test_demo_without_networks_writes_rows_figure_and_files(tmp_path):
    from mrenhance.demo import run_demo

    result = run_demo(tmp_path / "demo", networks=False, echo=False, tasks=["sr_t1"])
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"LR (zero-filled)", "tricubic"}
    # the numbers of the evaluation protocol (README: tricubic 32.16 dB, input 32.95 dB)
    assert rows["tricubic"]["psnr"] == pytest.approx(32.16, abs=0.01)
    assert rows["LR (zero-filled)"]["psnr"] == pytest.approx(32.95, abs=0.01)
    assert result["figure"].is_file() and result["html"].is_file()
    assert {p.name for p in result["files"].values()} == {
        "lr.nii.gz",
        "tricubic.nii.gz",
        "hr.nii.gz",
    }


def test_validation_function_scores_the_validation_slab(tmp_path, small_brain):
    """An identity network scores exactly what the zero-filled input scores there."""
    hr_file = tmp_path / "hr.nii.gz"
    save(Volume(np.tile(small_brain, (1, 1, 3)) * 300), hr_file)  # (24, 28, 60)
    data = {
        "files": [str(hr_file)],
        "held_out": {"axis": 2, "validation": [10, 22], "test": [40, 52], "gap": 0},
        "augment": None,
    }
    training = TASK.training_data(data, (12, 12, 12))
    identity = create_model("mdcsrn-b2u4", growth=4, global_residual=True)  # zero-init tail
    scores = training.validate(identity)
    subject = training.subjects[0]
    held = TASK.data_config(data)["held_out"]
    expected = sr_t1.evaluate_region(
        {"input": sr_t1.baseline_methods((2, 2, 1))["zero-filled (input)"]},
        subject,
        held,
        "validation",
        metrics=("psnr", "ssim"),
    )[0]
    assert set(scores) == {"psnr", "ssim"}
    assert scores["psnr"] == pytest.approx(expected["psnr"], abs=1e-3)
    # and the training patches never come from the held-out slabs
    for i in range(20):
        corner = training.dataset.corner(i)[1]
        z0 = corner[2]
        assert z0 + 12 <= 10 or 22 <= z0 <= 40 - 12 or z0 >= 52
