"""``--json`` output of ``info`` and ``models``: one JSON document on stdout."""

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
