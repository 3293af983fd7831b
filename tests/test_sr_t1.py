"""The sr_t1 task: pairs, held-out regions, normalisation, evaluation rows."""

import numpy as np
import pytest

from mrenhance.errors import ConfigError, InputError
from mrenhance.tasks import get_task, sr_t1
from mrenhance.volume import Volume


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


def test_data_config_refuses_unknown_key_and_bad_factors():
    with pytest.raises(ConfigError, match="data.colour"):
        sr_t1.validate_data_config({"colour": "red"})
    with pytest.raises(ConfigError, match="factors"):
        sr_t1.validate_data_config({"factors": [0.5, 2, 1]})


def test_prepare_and_restore_round_trip(small_brain):
    vol = Volume(small_brain * 300)
    arr, ctx = sr_t1.prepare_input(vol)
    assert 0.5 < np.percentile(arr[arr > 0], 99.5) <= 1.0001
    np.testing.assert_allclose(sr_t1.restore_output(arr, ctx), vol.data, rtol=1e-5, atol=1e-3)


def test_prepare_refuses_4d():
    with pytest.raises(InputError, match="3D image"):
        sr_t1.prepare_input(Volume(np.zeros((4, 4, 4, 2))))


def test_make_lr_removes_detail_but_keeps_mean(small_brain):
    lr = sr_t1.make_lr(small_brain, (2, 2, 1))
    assert lr.shape == small_brain.shape
    # the magnitude folds negative ringing up, so the mean rises a little (~5% on this toy)
    assert abs(lr.mean() - small_brain.mean()) < 0.1 * small_brain.mean()
    assert np.abs(lr - small_brain).mean() > 1e-3


def test_evaluate_region_rows_have_metrics(small_brain):
    hr = small_brain / small_brain.max()
    subj = sr_t1.SRSubject("toy", hr, sr_t1.make_lr(hr, (2, 2, 1)), hr > 0.05, 1.0)
    held = {"axis": 2, "validation": [1, 4], "test": [5, 17], "gap": 0}
    methods = {"perfect": lambda lr, hr_: hr_, **sr_t1.baseline_methods((2, 2, 1))}
    rows = sr_t1.evaluate_region(methods, subj, held, "test")
    by = {r["method"]: r for r in rows}
    assert by["perfect"]["psnr"] == float("inf") or by["perfect"]["psnr"] > 100
    assert by["perfect"]["ssim"] == pytest.approx(1.0)
    assert by["tricubic"]["psnr"] < by["perfect"]["psnr"]
    assert by["nearest"]["ssim"] < 1.0


def test_task_registry():
    assert get_task("sr_t1") is sr_t1
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("nope")
