"""``type: gan`` end to end on a tiny SRGAN: train both stages, ship through the protocol."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

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
    # the BCE step's own settings, never the WGAN-GP critic schedule it does not run
    assert card["training"]["adv_weight"] == 0.001 and card["training"]["content_loss"] == "l2"
    assert "critic_warmup_steps" not in card["training"]
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


def _vgg19_file(path):
    """A random VGG19 ``features`` state dict up to layer 3 (two 64-wide convs) as safetensors."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    save_file(
        {
            "features.0.weight": 0.2 * torch.randn(64, 3, 3, 3, generator=g),
            "features.0.bias": torch.zeros(64),
            "features.2.weight": 0.05 * torch.randn(64, 64, 3, 3, generator=g),
            "features.2.bias": torch.zeros(64),
        },
        str(path),
    )
    return path


class _Slices:
    """Four (1, 4, 4) LR / (1, 16, 16) HR pairs, as the DTI task's patches."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.hr = rng.uniform(0, 1, (4, 1, 16, 16)).astype(np.float32)
        self.lr = self.hr.reshape(4, 1, 4, 4, 4, 4).mean(axis=(3, 5))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"inputs": self.lr[i], "target": self.hr[i]}


def _one_vgg_gan_step(tmp_path, feature_weight, vgg):
    """One BCE GAN update of a tiny generator, built from the recipe with a VGG19 file."""
    from mrenhance.config import load_recipe, recipe_path
    from mrenhance.engine.training import Trainer
    from mrenhance.models import create_model
    from mrenhance.training import _build_gan_step

    overrides = [
        *TINY,
        f"gan.feature_model={{name: vgg19-features, weights: '{vgg}', layer: 3}}",
        f"gan.feature_weight={feature_weight}",
    ]
    r = load_recipe(recipe_path("dti_srgan"), overrides)
    torch.manual_seed(0)
    generator = create_model("srresnet-dwi-x4", channels=4, n_blocks=1)
    critic = create_model("srgan-discriminator2d", base=4)
    step = _build_gan_step(r.gan, r.train, generator, critic, "dti_srgan.yaml")
    run = tmp_path / f"w{feature_weight}"
    Trainer(step, _Slices(), steps=1, batch_size=2, run_dir=run, log_every=1, progress=False).fit()
    with open(run / "metrics.csv", newline="") as fh:
        row = {k: float(v) for k, v in next(csv.DictReader(fh)).items() if v}
    return row, {k: v.clone() for k, v in generator.state_dict().items()}, step


def test_vgg_feature_loss_is_part_of_the_generator_loss_and_moves_the_generator(tmp_path):
    vgg = _vgg19_file(tmp_path / "vgg19.safetensors")
    row, with_vgg, step = _one_vgg_gan_step(tmp_path, 0.5, vgg)
    assert step.settings()["feature_model"] == "vgg19-features"
    assert row["feature_loss"] > 0
    expected = row["pixel_loss"] + 1e-3 * row["adv_loss"] + 0.5 * row["feature_loss"]
    assert row["generator_loss"] == pytest.approx(expected, rel=1e-5)
    # the VGG stays frozen (same weights as the file) while its loss reaches the generator
    from safetensors.torch import load_file

    stored = load_file(str(vgg))["features.2.weight"]
    assert torch.equal(step.feature_model.features[2].weight.cpu(), stored)
    # the same start and batch with 4x the weight: the same feature distance, weighted 2.0
    row2, heavier, _ = _one_vgg_gan_step(tmp_path, 2.0, vgg)
    assert row2["feature_loss"] == pytest.approx(row["feature_loss"], rel=1e-5)
    gap = row2["generator_loss"] - row["generator_loss"]
    assert gap == pytest.approx(1.5 * row["feature_loss"], rel=1e-4)
    # only the feature term differs, so its gradient is what moved the weights apart
    moved = [k for k in with_vgg if not torch.equal(with_vgg[k], heavier[k])]
    assert moved


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["gan.feature_weight=0.006"], "a feature loss needs gan.feature_model"),
        (["gan.feature_model={name: vgg19-features, weights: v.safetensors}"], "weight > 0"),
        (
            [
                "gan.type=wgan-gp",
                "gan.feature_model={name: vgg19-features, weights: v.safetensors}",
                "gan.feature_weight=0.006",
            ],
            "only gan.type gan",
        ),
    ],
)
def test_a_half_set_feature_loss_is_refused_rather_than_silently_off(overrides, match):
    from mrenhance.config import load_recipe, recipe_path
    from mrenhance.errors import ConfigError

    with pytest.raises(ConfigError, match=match) as err:
        load_recipe(recipe_path("dti_srgan"), overrides)
    assert "\n" not in str(err.value) and "dti_srgan" in str(err.value)


def test_gan_stage_with_a_file_that_is_not_vgg19_refuses_in_one_line(tmp_path):
    from mrenhance.errors import ConfigError

    junk = tmp_path / "vgg19.safetensors"
    junk.write_bytes(b"not safetensors")
    bad = [
        *TINY,
        f"gan.feature_model={{name: vgg19-features, weights: '{junk}'}}",
        "gan.feature_weight=0.006",
    ]
    with pytest.raises(ConfigError, match=r"gan.feature_model: .*not a readable") as err:
        train_recipe("dti_srgan", bad, run_dir=tmp_path / "run", stage="gan", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_dti_recipes_train_with_the_papers_adam_lr_batch_and_adversarial_weight(tmp_path):
    """Sec. 5's table: Adam, learning rate 1e-4, batch size 8; Ledig et al.'s adversarial
    weight 1e-3. Checked on the recipes and on the optimisers and loop built from them."""
    from mrenhance.config import load_recipe, recipe_path
    from mrenhance.engine.training import OptimizerSpec, SupervisedStep, Trainer
    from mrenhance.models import create_model
    from mrenhance.training import _build_gan_step

    for name in ("dti_srresnet", "dti_srgan"):
        r = load_recipe(recipe_path(name))
        assert (r.train.optimizer, r.train.lr, r.train.batch_size) == ("adam", 1e-4, 8), name
        opt = OptimizerSpec.from_section(r.train).build(torch.nn.Linear(2, 2).parameters())
        assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 1e-4
        step = SupervisedStep(torch.nn.Linear(2, 2), loss=r.train.loss)
        trainer = Trainer.from_config(step, _Slices(), r.train, run_dir=tmp_path / name)
        assert trainer.batch_size == 8
    assert load_recipe(recipe_path("dti_srresnet")).gan is None  # stage 1 only: no GAN
    r = load_recipe(recipe_path("dti_srgan"), TINY)  # TINY shrinks the networks only
    assert (r.gan.type, r.gan.adv_weight, r.gan.optimizer, r.gan.lr) == ("gan", 1e-3, "adam", 1e-4)
    generator = create_model("srresnet-dwi-x4", channels=4, n_blocks=1)
    critic = create_model("srgan-discriminator2d", base=4)
    step = _build_gan_step(r.gan, r.train, generator, critic, "dti_srgan.yaml")
    assert step.adv_weight == 1e-3 and step.content_name == "l2"
    for spec, net in ((step.spec, generator), (step.critic_spec, critic)):
        opt = spec.build(net.parameters())
        assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 1e-4


def test_the_shipped_dti_cards_record_what_they_trained_with():
    """Each card's batch, steps and GAN settings are its recipe under the card's own
    overrides (the CPU budget's step counts), and its note states the same batch and Adam lr."""
    from mrenhance.config import load_recipe, recipe_path
    from mrenhance.models.weights import list_shipped_weights

    cards = {c.name: c for c in list_shipped_weights() if c.task == "dti"}
    assert set(cards) == {"srresnet-dwi-x4", "srgan-dwi-x4"}
    for card in cards.values():
        t = card.training
        default = load_recipe(recipe_path(t["recipe"]))
        r = load_recipe(recipe_path(t["recipe"]), t["overrides"])
        assert t["batch_size"] == r.train.batch_size == 8, card.name
        assert t["patch_size"] == list(r.train.patch_size), card.name
        note = card.provenance["note"]
        assert f"batch {r.train.batch_size} " in note, card.name
        lr = r.train.lr if r.gan is None else r.gan.lr
        assert float(re.search(r"Adam ([0-9.e-]+)", note).group(1)) == lr == 1e-4, card.name
        if r.gan is None:
            # a CPU budget: fewer steps than the recipe's, stated as an override
            assert t["steps"] == r.train.steps < default.train.steps
            assert f"train.steps={t['steps']}" in t["overrides"]
            assert f"{t['steps']:,} steps" in note
        else:
            assert t["generator_steps"] == r.gan.generator_steps < default.gan.generator_steps
            assert f"gan.generator_steps={t['generator_steps']}" in t["overrides"]
            assert t["lr"] == r.gan.lr and t["critic_lr"] == (r.gan.critic_lr or r.gan.lr)
            assert t["adv_weight"] == r.gan.adv_weight and "adv 1e-3" in note
            assert t["content_loss"] == r.gan.content_loss


@pytest.mark.parametrize("stage", [None, "supervised", "gan", "all"])
def test_cli_refuses_the_vgg_loss_without_a_file_at_every_stage(tmp_path, capsys, stage):
    """`mrenhance train dti_srgan 'gan.feature_model={name: vgg19-features}'` without a
    weights file: exit 2, one stderr line (weights are the user's file, nothing is
    downloaded), no run folder; stage 1 does not start first (tests/bad_inputs/dti.py has
    the default-stage case with its byte-for-byte promise)."""
    from mrenhance.cli import main

    run = tmp_path / "run"
    argv = ["train", "dti_srgan", "gan.feature_model={name: vgg19-features}"]
    argv += ["gan.feature_weight=0.006", *TINY, "--run-dir", str(run), "-q"]
    capsys.readouterr()
    assert main(argv + (["--stage", stage] if stage else [])) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("mrenhance: error: ") and "dti_srgan.yaml: gan.feature_model" in err
    assert "no weights file (nothing is downloaded)" in err
    assert "gan.feature_model.weights to a .safetensors" in err
    assert not run.exists() and list(tmp_path.iterdir()) == []
