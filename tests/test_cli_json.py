"""``--json`` output of ``info``, ``models`` and ``evaluate``: one JSON document on stdout;
``models NAME`` shows a card's defaults; ``evaluate`` states its basis everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

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


# ---------------------------------------------------------------------------- evaluate
@pytest.fixture
def pair(tmp_path):
    """(prediction, reference, mask) files: the prediction 0.1 above the reference."""
    rng = np.random.default_rng(0)
    ref = (rng.random((16, 16, 16)) + 1).astype(np.float32)
    mask = np.zeros(ref.shape, np.float32)
    mask[4:12, 4:12, 4:12] = 1
    for name, data in (("ref", ref), ("pred", ref + 0.1), ("mask", mask)):
        save(Volume(data, np.eye(4)), tmp_path / f"{name}.nii.gz")
    return tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", tmp_path / "mask.nii.gz", ref, mask


def _argv(pair, *extra):
    pred, ref, mask, *_ = pair
    return ["evaluate", "--prediction", str(pred), "--reference", str(ref), "--mask", str(mask),
            *extra]  # fmt: skip


def test_evaluate_prints_its_basis_above_the_table(pair, capsys):
    assert main(_argv(pair)) == 0
    first = capsys.readouterr().out.splitlines()[0]
    ref, mask = pair[3], pair[4]
    used = ref[mask > 0]
    assert first.startswith(f"basis: reference {pair[1]}; inside mask {pair[2]} (512 voxels)")
    assert f"data range {used.max() - used.min():.6g}" in first


def test_evaluate_json_states_the_basis_and_the_rows(pair, capsys):
    assert main(_argv(pair, "--data-range", "2", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["basis"]["mask"] == str(pair[2]) and doc["basis"]["voxels"] == 512
    assert doc["basis"]["data_range"] == 2.0 and doc["basis"]["data_range_source"] == "given"
    [row] = doc["rows"]
    assert row["psnr"] == pytest.approx(10 * np.log10(4 / 0.01), abs=0.01)


def test_evaluate_writes_csv_and_json_files_with_the_basis(pair, tmp_path, capsys):
    import csv

    out_csv, out_json, by_o = tmp_path / "m.csv", tmp_path / "m.json", tmp_path / "o.json"
    assert main(_argv(pair, "--csv", str(out_csv), "--out-json", str(out_json))) == 0
    assert main(_argv(pair, "-o", str(by_o))) == 0
    [row] = list(csv.DictReader(out_csv.open()))
    assert row["basis_mask"] == str(pair[2]) and row["basis_voxels"] == "512"
    peak = float(row["basis_data_range"])  # the masked reference's max - min
    assert float(row["psnr"]) == pytest.approx(10 * np.log10(peak**2 / 0.01), abs=0.01)
    for path in (out_json, by_o):
        doc = json.loads(path.read_text())
        assert doc["basis"]["reference"] == str(pair[1]) and len(doc["rows"]) == 1


def test_evaluate_refuses_a_result_file_that_is_an_input(pair, capsys):
    before = pair[1].read_bytes()
    assert main(_argv(pair, "--csv", str(pair[1]), "--overwrite")) == 2
    assert "is the input" in capsys.readouterr().err
    assert pair[1].read_bytes() == before


def test_evaluate_task_basis_is_the_tasks_protocol():
    from mrenhance.cli.evaluate import basis_line
    from mrenhance.tasks import get_task

    line = basis_line({"task": "sr_t1", "protocol": get_task("sr_t1").protocol()})
    assert line.startswith("basis: task sr_t1: ") and "held-out slab" in line
