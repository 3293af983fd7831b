"""The ModelCard schema: read, validate, write; bad cards refused in one line naming the file."""

from __future__ import annotations

import json

import pytest

from mrenhance.errors import WeightsError
from mrenhance.models import create_model
from mrenhance.models.card import DEFAULT_INFERENCE, ModelCard, card_from_dict
from mrenhance.models.weights import list_shipped_weights, read_card, save_weights
from mrenhance.training import adversarial_record, stage_label


@pytest.fixture
def card_file(tmp_path):
    path = save_weights(
        create_model("mdcsrn-b2u4", growth=4), tmp_path / "m.safetensors", {"task": "sr_t1"}
    )
    return path.with_suffix(".json")


def test_written_card_has_the_schema(card_file):
    card = read_card(card_file)
    assert isinstance(card, ModelCard)
    assert card.task == "sr_t1" and card.name == "m" and len(card.sha256) == 64
    assert card.architecture["name"] == "mdcsrn-b2u4" and card.parameters > 0
    assert card.normalisation.percentile == 99.5 and card.normalisation.mask == "head"
    assert card.inference_defaults() == DEFAULT_INFERENCE
    again = card_from_dict(json.loads(card.to_json()), "x")
    assert again.to_dict() == card.to_dict()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"inference": "fast"}, "inference must be an object"),
        ({"inference": {"patch_size": -4}}, "inference.patch_size"),
        ({"inference": {"blend": "smear"}}, "blend"),
        ({"inference": {"colour": "red"}}, "colour"),
        ({"task": "astrology"}, "unknown task"),
        ({"architecture": {"name": "mdcsrn-b2u4", "config": {"growth": -3}}}, "growth"),
        ({"architecture": "mdcsrn"}, "architecture"),
        ({"sha256": "abc"}, "sha256"),
        ({"parameters": "many"}, "parameters"),
        ({"preprocessing": {"normalisation": {"percentile": 0}}}, "percentile"),
        ({"preprocessing": {"voxel_size_mm": [1, -1, 1]}}, "voxel_size_mm"),
        ({"limitations": "simulated only"}, "limitations must be a list"),
        ({"limitations": ["simulated only", ""]}, "non-empty strings"),
    ],
)
def test_bad_cards_are_refused_naming_the_file(card_file, edit, match):
    d = json.loads(card_file.read_text())
    d.update(edit)
    card_file.write_text(json.dumps(d))
    with pytest.raises(WeightsError, match=match) as err:
        read_card(card_file)
    assert str(card_file) in str(err.value) and "\n" not in str(err.value)


def test_deeply_nested_card_is_refused(card_file):
    card_file.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(WeightsError, match="nested too deeply|not valid JSON|JSON object"):
        read_card(card_file)


def test_shipped_cards_follow_the_schema():
    cards = list_shipped_weights()
    assert cards, "the package ships weights"
    for card in cards:
        assert card.provenance.get("git_commit")
        assert card.metrics["test"] and card.metrics["test_protocol"]
        assert card.voxel_size_mm, f"{card.name}: no training voxel size"
        if card.task == "sr_t1":
            assert card.voxel_size_mm == (1.0, 1.0, 1.0)  # the MNI152 1 mm template
            assert card.preprocessing["normalisation"]["mask"] == "head"
            tricubic = card.metrics["test_baselines"]["tricubic"]["psnr"]
            assert card.metrics["test"]["psnr"] > tricubic
            # exact, memory-planned tiles (a card without it runs 64^3 tiles with seams)
            assert card.inference.get("tiling") == "exact", card.name
        if card.task == "dsc":  # Sec. 4.2 standardisation, one entry per reference and dose
            assert card.preprocessing["dsc"]["slice_size"] == card.inference["patch_size"][1]
            assert set(card.metrics["test"]) >= {"osvd/dose0.25", "truth/dose1"}


def test_limitations_are_free_text_that_round_trips(card_file):
    d = json.loads(card_file.read_text())
    assert read_card(card_file).limitations == []  # an older card without the key
    d["limitations"] = ["trained on simulated anatomy only", "worse than bicubic on real data"]
    card_file.write_text(json.dumps(d))
    card = read_card(card_file)
    assert card.limitations == d["limitations"] and "limitations" not in card.extra
    assert card_from_dict(json.loads(card.to_json())).limitations == d["limitations"]


def test_shipped_dti_cards_say_where_not_to_trust_them(capsys):
    from mrenhance.cli import main

    for card in list_shipped_weights():
        if card.task != "dti":
            continue
        text = " ".join(card.limitations)
        assert "simulated anatomy only" in text and "use bicubic for FA/MD/V1" in text
        assert "small_64D" in text  # the real-data numbers, with their source
    assert main(["models", "srresnet-dwi-x4"]) == 0
    assert "limitations  Trained on simulated anatomy only" in capsys.readouterr().out


def _recipe_of(card):
    """The card's recipe with the overrides that decide its losses and GAN schedule."""
    from mrenhance.config import load_recipe, recipe_path

    kept = [o for o in card.training["overrides"] if o.startswith(("train.loss", "gan."))]
    return load_recipe(recipe_path(card.training["recipe_file"].removesuffix(".yaml")), kept)


_WGAN_SCHEDULE = (
    "critic_warmup_steps",
    "critic_steps_per_generator_step",
    "extra_critic_every",
    "extra_critic_steps",
)


def test_shipped_cards_name_the_loss_and_settings_their_recipe_trains():
    for card in list_shipped_weights():
        r, stage = _recipe_of(card), card.training["stage"]
        if stage.startswith("supervised"):
            assert stage == stage_label("supervised", r.train.loss), card.name
            continue
        assert stage == stage_label(r.gan.type, ""), card.name
        if r.gan.type == "gan":  # BCE: no critic schedule is run, so none is recorded
            assert not set(_WGAN_SCHEDULE) & set(card.training), card.name
            assert card.training["adv_weight"] == r.gan.adv_weight
            assert card.training["feature_weight"] == r.gan.feature_weight
        else:
            assert card.training["critic_warmup_steps"] == r.gan.critic_warmup_steps, card.name


def test_a_gan_stage_records_only_the_settings_of_its_step(tmp_path):
    from _tiny import TinyCritic, TinyNet, TinyPairs
    from mrenhance.engine.training import GANStep, Trainer, WGANGPStep

    def record(step, run):
        return adversarial_record(
            Trainer(step, TinyPairs(), steps=1, run_dir=tmp_path / run, progress=False).settings()
        )

    bce = record(GANStep(TinyNet(), TinyCritic(), adv_weight=0.01), "bce")
    wgan = record(WGANGPStep(TinyNet(), TinyCritic()), "wgan")
    assert stage_label("supervised", "l2") == "supervised (L2)"
    assert stage_label("gan", "l2") == "GAN (BCE)" and stage_label("wgan-gp", "l1") == "WGAN-GP"
    assert bce["adv_weight"] == 0.01 and bce["content_loss"] == "l2" and bce["lr"] == 1e-4
    assert not set(_WGAN_SCHEDULE) & set(bce) and "feature_loss" not in bce  # weight 0
    assert bce["critic"] == "tiny-critic" and bce["feature_weight"] == 0.0
    assert wgan["critic_warmup_steps"] == 10000 and wgan["lambda_gp"] == 10.0
    json.dumps(bce), json.dumps(wgan)  # plain JSON, for the card
