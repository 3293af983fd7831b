"""The ModelCard schema: read, validate, write; bad cards refused in one line naming the file."""

from __future__ import annotations

import json

import pytest

from mrenhance.errors import WeightsError
from mrenhance.models import create_model
from mrenhance.models.card import DEFAULT_INFERENCE, ModelCard, card_from_dict
from mrenhance.models.weights import list_shipped_weights, read_card, save_weights


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
        if card.task == "dsc":  # Sec. 4.2 standardisation, one entry per reference and dose
            assert card.preprocessing["dsc"]["slice_size"] == card.inference["patch_size"][1]
            assert set(card.metrics["test"]) >= {"osvd/dose0.25", "truth/dose1"}
