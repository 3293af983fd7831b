"""A recipe from YAML to shipped-style weights: both stages, then enhance with the result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.cli import main
from mrenhance.io import load, save
from mrenhance.models.weights import load_model, read_card


@pytest.mark.slow
def test_train_both_stages_then_enhance(tmp_path, small_brain, capsys):
    data = tmp_path / "t1.nii.gz"
    save(Volume(np.tile(small_brain, (1, 1, 2)) * 100), data)  # (24, 28, 40)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""
name: tiny_sr
task: sr_t1
model: {{name: mdcsrn-b2u4, growth: 4, global_residual: true}}
data:
  files: ["{data}"]
  held_out: {{axis: 2, validation: [14, 26], test: [28, 40], gap: 0}}
  augment: {{flip: true}}
train: {{steps: 4, batch_size: 2, patch_size: 12, val_every: 2, checkpoint_every: 2,
        log_every: 1, lr: 1.0e-3}}
gan: {{critic: {{name: wgan-critic3d, base: 4}}, critic_warmup_steps: 2, generator_steps: 2,
      critic_steps_per_generator_step: 2, extra_critic_every: 1, extra_critic_steps: 1}}
infer: {{patch_size: 16, overlap: 4, blend: crop}}
"""
    )
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--run-dir", str(run), "--stage", "all", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the weights are named after the run: never like a shipped model
    assert summary["supervised"]["weights"] == str(run / "run.safetensors")
    for name in ("run", "run-gan"):
        card = read_card(run / f"{name}.safetensors")
        assert card["task"] == "sr_t1" and card["name"] == name
        assert card["training"]["recipe"] == "tiny_sr"
        assert card["inference"]["patch_size"] == 16
        assert set(card["metrics"]["validation"]) >= {"psnr", "ssim"}
        # the rule training normalised with is the one enhance will apply
        assert card.normalisation.mask == "head" and card.normalisation.percentile == 99.5
        assert card.voxel_size_mm == (1.0, 1.0, 1.0)
        load_model(run / f"{name}.safetensors")
    assert summary["gan"]["steps"] == 2
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["model"]["growth"] == 4

    out = tmp_path / "sr.nii.gz"
    weights = run / "run-gan.safetensors"
    assert main(["enhance", str(data), "-o", str(out), "--model", str(weights), "-q"]) == 0
    src, res = load(data), load(out)
    assert res.shape == src.shape and np.isfinite(res.data).all()
    np.testing.assert_allclose(res.affine, src.affine, atol=1e-6)
