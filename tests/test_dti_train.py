"""``type: gan`` end to end on a tiny SRGAN: train both stages, ship through the protocol."""

from __future__ import annotations

import json

import pytest

from mrenhance.shipping import ship_weights
from mrenhance.training import train_recipe

TINY = [
    "model.channels=4",
    "model.n_blocks=1",
    "gan.critic.base=4",
    "data.subjects={train: 1, validation: 1, test: 1}",
    "data.shape=[32, 32, 2]",
    "data.test_slices=2",
    "train.patch_size=[4, 4]",
    "train.steps=3",
    "train.val_every=3",
    "train.log_every=1",
    "gan.generator_steps=2",
]


@pytest.mark.slow
def test_srgan_recipe_trains_both_stages_and_ships_with_tensor_metrics(tmp_path):
    summary = train_recipe("dti_srgan", TINY, run_dir=tmp_path / "run", stage="all", progress=False)
    gan = tmp_path / "run" / "srgan-dwi-x4.safetensors"
    assert summary["gan"]["weights"] == str(gan) and summary["gan"]["steps"] == 2
    log = (tmp_path / "run" / "gan" / "metrics.csv").read_text().splitlines()
    assert {"discriminator_loss", "adv_loss", "pixel_loss"} <= set(log[0].split(","))
    card = json.loads(gan.with_suffix(".json").read_text())
    assert card["training"]["stage"] == "GAN (BCE)"
    assert card["inference"]["scale"] == [4, 4, 1] and card["inference"]["slice_axis"] == 2
    data = {"subjects": {"test": 1}, "shape": [32, 32, 2], "test_slices": 2}
    shipped, rows = ship_weights(gan, dest=tmp_path / "shipped", data=data)
    assert {r["method"] for r in rows} == {"bicubic", "srgan-dwi-x4"}
    assert {"psnr", "ssim", "fa_mae_wm", "angle_wm_deg"} <= set(shipped.metrics["test"])
    assert "bicubic" in shipped.metrics["test_baselines"]
    assert shipped.training["seconds"] > 0  # read from the GAN stage's own log


def test_gan_stage_without_vgg_weights_refuses_in_one_line(tmp_path):
    from mrenhance.errors import ConfigError

    bad = [*TINY, "gan.feature_model={name: vgg19-features}", "gan.feature_weight=0.006"]
    with pytest.raises(ConfigError, match="no weights file"):
        train_recipe("dti_srgan", bad, run_dir=tmp_path / "run", stage="gan", progress=False)
