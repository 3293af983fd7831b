"""``--json`` output of ``info`` and ``models``: one JSON document on stdout; ``models
NAME`` shows a card's defaults."""

from __future__ import annotations

import json

import numpy as np

from mrenhance import Volume
from mrenhance.cli import main
from mrenhance.io import save


def test_info_json(tmp_path, small_brain, capsys):
    path = tmp_path / "t1.nii.gz"
    save(Volume(small_brain, np.diag([0.9, 1.1, 2.5, 1.0])), path)
    assert main(["info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["shape"] == [24, 28, 20] and doc["orientation"] == "RAS"
    assert np.allclose(doc["voxel_size_mm"], [0.9, 1.1, 2.5])


def test_models_json_has_whole_descriptions_and_cards(capsys):
    from mrenhance.models import list_models

    assert main(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {m["model"]: m for m in doc["models"]}
    for info in list_models():
        assert by_name[info.name]["description"] == info.description  # not cut
    assert "mdcsrn-b4u4" in doc["shipped"] and len(doc["shipped"]["mdcsrn-b4u4"]["sha256"]) == 64


# ---------------------------------------------------------------------------- models NAME
def test_models_name_shows_the_card_defaults_enhance_uses(capsys):
    from mrenhance.models.weights import read_card, resolve_weights

    card = read_card(resolve_weights("dcnn-pvs"))
    assert main(["models", "dcnn-pvs", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    defaults = doc["enhance_defaults"]
    for key in ("patch_size", "overlap", "blend"):
        assert defaults[key] == card.inference_defaults()[key]
    assert defaults["normalisation"]["method"] == card.normalisation.method

    assert main(["models", "mdcsrn-b4u4"]) == 0
    text = capsys.readouterr().out
    assert "tiling       exact" in text and "patch_size   64" in text and "test basis" in text


def test_models_name_of_a_registered_network_and_of_nothing(capsys):
    assert main(["models", "fsrcnn3d", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["registered"] and doc["shipped_weights"] is None and doc["description"]
    assert main(["models", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
