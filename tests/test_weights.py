"""Safe weights: safetensors + model card round trip, tamper detection, refused pickles."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from mrenhance.errors import OutputExistsError, WeightsError
from mrenhance.models import create_model
from mrenhance.models.weights import (
    list_shipped_weights,
    load_checkpoint,
    load_model,
    load_pretrained,
    load_weights,
    read_card,
    save_weights,
    shipped_weights_dir,
)


@pytest.fixture
def trained(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    """A small mDCSRN with non-default weights AND batch-norm statistics, saved."""
    torch.manual_seed(0)
    model = create_model("mdcsrn-b2u4", growth=4)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, 6, 6, 6) * 3 + 1)  # moves the running statistics
    model.eval()
    card = {"task": "sr_t1", "training_data": "unit test", "metrics": {"psnr": 30.5}}
    path = save_weights(model, tmp_path / "tiny.safetensors", card)
    return model, path


def test_round_trip_gives_the_same_outputs(trained: tuple[torch.nn.Module, Path]) -> None:
    model, path = trained
    loaded = load_model(path)
    assert not loaded.training
    x = torch.randn(1, 1, 9, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    bn = next(m for m in loaded.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_card_records_the_architecture_and_the_file_hash(
    trained: tuple[torch.nn.Module, Path],
) -> None:
    model, path = trained
    card = read_card(path)
    assert path.name == "tiny.safetensors"
    assert path.with_suffix(".json").is_file()
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["name"] == "tiny"
    assert card["format"] == "safetensors"
    assert card["architecture"] == {"name": "mdcsrn-b2u4", "config": model.mrenhance_config}
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["metrics"] == {"psnr": 30.5} and card["training_data"] == "unit test"
    assert card["task"] == "sr_t1"


def test_file_is_safetensors_not_pickle(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    head = path.read_bytes()[:2]
    assert head != b"\x80\x04" and head[:2] != b"PK"  # neither a pickle nor a torch zip
    state, card = load_weights(path)
    assert all(isinstance(t, torch.Tensor) for t in state.values())


def test_a_tampered_byte_is_caught(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's data: still valid safetensors
    path.write_bytes(bytes(data))
    expected = read_card(path)["sha256"][:12]
    with pytest.raises(WeightsError, match="sha256 mismatch") as err:
        load_model(path)
    assert "tiny.safetensors" in str(err.value) and expected in str(err.value)
    load_weights(path, verify=False)  # the caller can opt out, knowingly


def test_corrupt_safetensors_is_a_weights_error(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    card_path = path.with_suffix(".json")
    blob = b"\xff" * 64
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(blob).hexdigest()  # hash matches, content is garbage
    card_path.write_text(json.dumps(card))
    path.write_bytes(blob)
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        load_weights(path)


def test_missing_or_corrupt_card(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    card_path = path.with_suffix(".json")
    card_path.write_text("{not json")
    with pytest.raises(WeightsError, match="tiny.json: model card is not valid JSON"):
        load_model(path)
    card_path.unlink()
    with pytest.raises(WeightsError, match="model card not found"):
        load_weights(path)


def test_missing_weights_file(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    path.unlink()
    with pytest.raises(WeightsError, match="weights file not found"):
        load_weights(path)


def test_weights_that_do_not_fit_the_card_architecture(
    trained: tuple[torch.nn.Module, Path],
) -> None:
    _, path = trained
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["architecture"]["config"]["growth"] = 8
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="do not fit mdcsrn-b2u4"):
        load_model(path)
    card["architecture"] = {"name": "no-such-net", "config": {}}
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="cannot rebuild"):
        load_model(path)


def test_no_silent_overwrite(trained: tuple[torch.nn.Module, Path]) -> None:
    model, path = trained
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        save_weights(model, path, {})
    assert path.read_bytes() == before
    save_weights(model, path.with_suffix(""), {"note": "again"}, overwrite=True)
    assert read_card(path)["note"] == "again"


def test_a_plain_module_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="create_model"):
        save_weights(torch.nn.Conv3d(1, 1, 1), tmp_path / "x", {})
    assert list(tmp_path.iterdir()) == []


def test_pretrained_lookup(trained: tuple[torch.nn.Module, Path]) -> None:
    model, path = trained
    folder = path.parent
    assert [c["name"] for c in list_shipped_weights(folder)] == ["tiny"]
    loaded = load_pretrained("tiny", directory=folder)
    assert loaded.mrenhance_name == "mdcsrn-b2u4"
    with pytest.raises(WeightsError, match=r"available: tiny"):
        load_pretrained("huge", directory=folder)


def test_shipped_weights_dir_is_the_package_folder() -> None:
    import mrenhance

    folder = shipped_weights_dir()
    assert folder == Path(mrenhance.__file__).resolve().parent / "weights"
    assert isinstance(list_shipped_weights(), list)


class _Evil:
    """Unpickling this would run a shell command (the classic pickle attack)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "pickle-protocol-2", "torch.save"])
def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    if writer.startswith("pickle"):
        payload = {"step": 3, "evil": _Evil(f"touch {marker}")}
        protocol = 2 if writer.endswith("2") else pickle.DEFAULT_PROTOCOL
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}, "evil": _Evil(f"touch {marker}")}, path)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="refused: not a plain tensor checkpoint") as err:
        load_checkpoint(path)
    assert not marker.exists()
    if writer != "pickle":  # protocol 4+ is refused at an opcode, before the global is read
        assert "it names the global posix.system" in str(err.value)
    assert "weights_only` set to `False`" not in str(err.value)  # no advice to load unsafely


def test_plain_checkpoint_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"model": {"w": torch.arange(3.0)}, "step": 7}, path)
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 7
    torch.testing.assert_close(ckpt["model"]["w"], torch.arange(3.0))


def test_unreadable_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError):
        load_checkpoint(junk)
