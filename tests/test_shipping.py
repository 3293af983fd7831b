"""Shipping: evaluate through the task protocol, record it in the card, copy byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.errors import InputError, WeightsError
from mrenhance.io import save
from mrenhance.models import create_model
from mrenhance.models.weights import load_weights, read_card, save_weights
from mrenhance.shipping import ship_weights


@pytest.fixture
def toy_data(tmp_path, small_brain):
    hr = tmp_path / "hr.nii.gz"
    save(Volume(np.tile(small_brain, (1, 1, 3)) * 300), hr)  # (24, 28, 60)
    return {
        "files": [str(hr)],
        "held_out": {"axis": 2, "validation": [10, 20], "test": [30, 45], "gap": 0},
    }


def test_ship_records_protocol_metrics_and_keeps_bytes(tmp_path, toy_data):
    model = create_model("mdcsrn-b2u4", growth=4, global_residual=True)
    run = tmp_path / "run"
    run.mkdir()
    src = save_weights(
        model,
        run / "toy-sr.safetensors",
        {"task": "sr_t1", "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"}},
    )
    dest = tmp_path / "shipped"
    card, rows = ship_weights(
        src, dest=dest, note="tiny budget", data=toy_data, limitations=["toy data only", " "]
    )
    assert (dest / "toy-sr.safetensors").read_bytes() == src.read_bytes()
    written = read_card(dest / "toy-sr.json")
    assert written.sha256 == card.sha256 == read_card(src).sha256
    by = {r["method"]: r for r in rows}
    # a zero-initialised residual network returns its input: the same numbers as the input row
    assert written.metrics["test"]["psnr"] == pytest.approx(
        by["zero-filled (input)"]["psnr"], abs=1e-4
    )
    assert set(written.metrics["test_baselines"]) >= {"tricubic", "zero-filled (input)"}
    assert "k-space truncated 2x2x1" in written.metrics["test_protocol"]
    assert written.provenance["note"] == "tiny budget" and written.provenance["git_commit"]
    assert written.limitations == ["toy data only"]  # blank items dropped
    load_weights(dest / "toy-sr.safetensors")  # still verifies


def test_ship_refuses_existing_without_overwrite(tmp_path, toy_data):
    model = create_model("mdcsrn-b2u4", growth=4)
    src = save_weights(model, tmp_path / "m.safetensors", {"task": "sr_t1"})
    dest = tmp_path / "shipped"
    dest.mkdir()
    (dest / "m.safetensors").write_bytes(b"keep")
    with pytest.raises(InputError, match="exists"):
        ship_weights(src, dest=dest, overwrite=False, data=toy_data)
    assert (dest / "m.safetensors").read_bytes() == b"keep"


def test_ship_refuses_weights_with_nan(tmp_path, toy_data):
    import torch

    model = create_model("mdcsrn-b2u4", growth=4)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    src = save_weights(model, tmp_path / "nan.safetensors", {"task": "sr_t1"})
    with pytest.raises(WeightsError, match="NaN"):
        ship_weights(src, dest=tmp_path / "shipped", data=toy_data)
    assert not (tmp_path / "shipped").exists()


@pytest.mark.slow
def test_ship_command_on_the_task_protocol(tmp_path, capsys):
    from mrenhance.cli import main

    model = create_model("mdcsrn-b2u4", growth=4, global_residual=True)
    src = save_weights(
        model,
        tmp_path / "tiny-sr.safetensors",
        {"task": "sr_t1", "inference": {"patch_size": 32, "overlap": 6, "blend": "crop"}},
    )
    dest = tmp_path / "shipped"
    assert main(["ship", str(src), "--dest", str(dest), "--note", "test"]) == 0
    out = capsys.readouterr().out
    card = read_card(dest / "tiny-sr.json")
    # identity network (zero-initialised residual): exactly the input's numbers, MNI slab
    assert card.metrics["test"]["psnr"] == pytest.approx(32.95, abs=0.01)
    assert card.metrics["test_baselines"]["tricubic"]["psnr"] == pytest.approx(32.16, abs=0.01)
    assert "tiny-sr" in out and "tricubic" in out


def test_ship_command_refuses_dest_onto_its_own_card(tmp_path, capsys):
    from mrenhance.cli import main

    model = create_model("mdcsrn-b2u4", growth=4)
    run = tmp_path / "run"
    run.mkdir()
    src = save_weights(model, run / "m.safetensors", {"task": "sr_t1"})
    link = tmp_path / "link"
    link.symlink_to(run)
    before = src.with_suffix(".json").read_bytes()
    assert main(["ship", str(src), "--dest", str(link)]) == 2
    assert "m.safetensors" in capsys.readouterr().err
    assert src.with_suffix(".json").read_bytes() == before
