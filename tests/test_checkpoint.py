import random

import numpy as np
import pytest
import torch
from torch import nn

from mrenhance.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    save_checkpoint,
)
from mrenhance.errors import WeightsError


def _trained_state() -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv3d(2, 1, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    model(torch.rand(2, 1, 4, 4, 4)).mean().backward()
    opt.step()
    return {
        "format": "mrenhance-checkpoint",
        "step": 3,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": {"name": "constant", "step": 3},
        "rng": capture_rng_state(),
        "best_metric": 31.5,
        "best_step": None,
    }


class _Payload:
    """Pickles to ``open(marker, "w")``: loading it unsafely creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_with_weights_only(tmp_path):
    state = _trained_state()
    path = save_checkpoint(tmp_path / "checkpoints" / "last.pt", state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and loaded["best_metric"] == 31.5
    for k, v in state["model"].items():
        assert torch.equal(loaded["model"][k], v)
    exp_avg = state["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], exp_avg)
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert loaded["rng"]["numpy"]["key"] == state["rng"]["numpy"]["key"]


def test_save_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp files left


def test_pickle_with_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "x": _Payload(str(marker))}, path)
    with pytest.raises(
        WeightsError,
        match=r"evil.pt: refused: not a plain tensor checkpoint \(it names the global io.open\)",
    ):
        load_checkpoint(path)
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="junk.pt: "):
        load_checkpoint(junk)
    with pytest.raises(WeightsError, match="missing.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(WeightsError, match="holds a list, expected a dict"):
        load_checkpoint(listed)


def _draw():
    # the global (legacy) NumPy RNG is what the checkpoint has to restore
    return (torch.rand(3), np.random.random(3), random.random(), np.random.standard_normal())  # noqa: NPY002


def test_rng_state_round_trip():
    state = capture_rng_state()
    expected = _draw()
    restore_rng_state(state)
    again = _draw()
    assert torch.equal(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_load_model_weights_strict(tmp_path):
    state = _trained_state()
    path = save_checkpoint(tmp_path / "best.pt", state)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv3d(2, 1, 1))
    assert load_model_weights(model, path) == 3
    assert torch.equal(model[0].weight, state["model"]["0.weight"])
    other = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1))
    with pytest.raises(WeightsError, match="best.pt: weights do not fit this model"):
        load_model_weights(other, path)
