"""Safe weights: safetensors files with a JSON model card beside them; never pickle.

A trained network is two files with one stem::

    mdcsrn-b4u4.safetensors   the state_dict (safetensors: tensors only, no code)
    mdcsrn-b4u4.json          the model card: how to rebuild the network, sha256 of the
                              .safetensors bytes, task, training data, recipe, metrics, ...

Loading checks the sha256 before any tensor is used, then rebuilds the architecture from
the card through the registry (:func:`mrenhance.models.create_model`) and loads the
state_dict strictly. Training checkpoints that must be ``torch.save`` files are read with
:func:`load_checkpoint`, which refuses anything but plain tensors and containers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from mrenhance.engine.checkpoint import load_checkpoint  # the one checkpoint loader
from mrenhance.errors import ConfigError, WeightsError
from mrenhance.io.atomic import check_output_path, write_bytes_atomic, write_text_atomic
from mrenhance.models.card import ModelCard, card_from_dict
from mrenhance.models.complexity import count_parameters
from mrenhance.models.registry import create_model, get_model_info

__all__ = [
    "list_shipped_weights",
    "load_checkpoint",
    "load_model",
    "load_pretrained",
    "load_weights",
    "read_card",
    "resolve_weights",
    "save_weights",
    "shipped_weights_dir",
]

_SUFFIX = ".safetensors"
_MAX_CARD_BYTES = 1 << 20  # a card is a few kB; anything this large is not a card


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, card) for a path given as ``x.safetensors``, ``x.json`` or the stem ``x``."""
    p = Path(path)
    if p.suffix == ".json":
        stem = p.with_suffix("")
    elif p.suffix == _SUFFIX:
        stem = p.with_suffix("")
    else:
        stem = p  # a bare stem; "model.v1" keeps its dot
    return stem.with_name(stem.name + _SUFFIX), stem.with_name(stem.name + ".json")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_weights(
    model: nn.Module,
    path: str | os.PathLike,
    card: dict[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``<stem>.safetensors`` and its model card ``<stem>.json``, each atomically.

    Parameters
    ----------
    model : torch.nn.Module
        A network built by :func:`mrenhance.models.create_model` (it carries
        ``mrenhance_name`` and ``mrenhance_config``). Its state_dict is saved as contiguous
        CPU tensors with metadata ``{"format": "pt"}``.
    path : path-like
        ``<stem>.safetensors``, ``<stem>.json`` or ``<stem>``; both files go beside each other.
    card : dict
        What the caller knows: training data, recipe, metrics, steps, created,
        mrenhance_version, ... (JSON-serialisable). The facts this function computes win
        over same-named keys: "name" (the stem), "architecture" ({"name", "config"}),
        "parameters", "sha256" (of the .safetensors bytes) and "format" ("safetensors").
        "task" is the caller's if given, else the registered model's task.
    overwrite : bool
        Replace existing files; otherwise an existing file raises OutputExistsError before
        anything is written.

    Returns
    -------
    pathlib.Path
        The path of the ``.safetensors`` file.
    """
    weights_path, card_path = _paths(path)
    name = getattr(model, "mrenhance_name", None)
    config = getattr(model, "mrenhance_config", None)
    if name is None or config is None:
        raise WeightsError(
            f"{weights_path}: the model was not built by mrenhance.models.create_model, "
            "so its architecture cannot be recorded"
        )
    check_output_path(weights_path, overwrite)
    check_output_path(card_path, overwrite)

    # clone: tensors sharing storage (tied weights, views) would be refused by safetensors
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    blob = _st_save(tensors, metadata={"format": "pt"})
    full = card.to_dict() if isinstance(card, ModelCard) else dict(card)
    full.setdefault("task", get_model_info(name).task)
    full.update(
        {
            "name": weights_path.name[: -len(_SUFFIX)],
            "architecture": {"name": name, "config": config},
            "parameters": count_parameters(model),
            "sha256": _sha256(blob),
            "format": "safetensors",
        }
    )
    try:
        json.dumps(full)
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{card_path}: model card is not JSON-serialisable ({err})") from err
    text = card_from_dict(full, str(card_path)).to_json()
    write_bytes_atomic(weights_path, blob, overwrite)
    write_text_atomic(card_path, text, overwrite)
    return weights_path


def read_card(path: str | os.PathLike) -> ModelCard:
    """The validated :class:`ModelCard` of ``<stem>.json`` (path: the .json, .safetensors or stem).

    Raises WeightsError (one line naming the card) if the card is missing, not JSON, nested
    absurdly deep, or fails :func:`mrenhance.models.card.card_from_dict`'s checks.
    """
    _, card_path = _paths(path)
    _check_regular(card_path, "model card", " (every weights file needs one)")
    if card_path.stat().st_size > _MAX_CARD_BYTES:
        raise WeightsError(f"{card_path}: model card is larger than {_MAX_CARD_BYTES} bytes")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsError(f"{card_path}: model card is not valid JSON ({err})") from err
    except RecursionError as err:
        raise WeightsError(f"{card_path}: model card is nested too deeply") from err
    return card_from_dict(card, str(card_path))


def load_weights(
    path: str | os.PathLike, *, verify: bool = True
) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Read a state_dict and its card, checking the file's sha256 against the card.

    Parameters
    ----------
    path : path-like
        ``<stem>.safetensors`` (or the .json, or the stem).
    verify : bool
        Compare the sha256 of the file bytes with the card's "sha256" (default True).

    Returns
    -------
    (state_dict, card)
        CPU tensors by name (every floating tensor finite), and the validated card.

    Raises
    ------
    WeightsError
        Missing card or file, corrupt card, hash mismatch (message gives the first 12 hex
        digits expected and actual), or a file that is not valid safetensors.
    """
    weights_path, _ = _paths(path)
    card = read_card(weights_path)
    _check_regular(weights_path, "weights file")
    blob = weights_path.read_bytes()
    if verify:
        expected = card.sha256
        if not expected:
            raise WeightsError(f"{weights_path}: model card has no sha256 to verify against")
        actual = _sha256(blob)
        if actual != expected.lower():
            raise WeightsError(
                f"{weights_path}: sha256 mismatch (expected {expected[:12]}, got {actual[:12]}); "
                "the file is corrupt or was modified"
            )
    try:
        state = _st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{weights_path}: not a valid safetensors file ({err})") from err
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{weights_path}: tensor {key!r} holds NaN/Inf values; refused")
    return state, card


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network named in the card, load its verified weights strictly, eval().

    Raises WeightsError for anything :func:`load_weights` refuses, a card whose
    architecture the registry cannot build, or a state_dict that does not fit it.
    """
    weights_path, _ = _paths(path)
    state, card = load_weights(weights_path)
    arch = card.architecture
    config = arch["config"]
    try:
        model = create_model(arch["name"], **config)
    except (ConfigError, TypeError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{weights_path}: cannot rebuild the architecture: {err}") from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise WeightsError(f"{weights_path}: weights do not fit {arch['name']}: {detail}") from err
    return model.to(device).eval()


def shipped_weights_dir() -> Path:
    """The package folder ``mrenhance/weights/`` holding shipped ``*.safetensors`` + ``*.json``."""
    return Path(__file__).resolve().parent.parent / "weights"


def list_shipped_weights(directory: str | os.PathLike | None = None) -> list[ModelCard]:
    """Cards of the shipped weights (those with both files), sorted by name.

    ``directory`` defaults to :func:`shipped_weights_dir`.
    """
    folder = Path(directory) if directory is not None else shipped_weights_dir()
    cards = []
    for card_path in sorted(folder.glob("*.json")):
        weights_path, _ = _paths(card_path)
        if weights_path.is_file():
            cards.append(read_card(card_path))
    return cards


def _check_regular(path: Path, what: str, hint: str = "") -> None:
    """A one-line WeightsError unless ``path`` is a regular file (never opens a FIFO)."""
    if os.path.isfile(path):
        return
    if os.path.exists(path):
        raise WeightsError(f"{path}: not a regular file (a folder, FIFO or device); not read")
    raise WeightsError(f"{path}: {what} not found{hint}")


def resolve_weights(
    model: str | os.PathLike, *, directory: str | os.PathLike | None = None
) -> Path:
    """The weights file of a shipped name (``mdcsrn-b4u4``) or of a ``.safetensors`` path.

    The one resolver of model names: ``enhance``, ``evaluate``, ``ship`` and
    :func:`load_pretrained` all go through it. ``directory`` defaults to the shipped
    weights. Raises WeightsError listing the available names for an unknown one.
    """
    from mrenhance.io.atomic import check_file_name

    text = str(model)
    if text.endswith(_SUFFIX):
        path = check_file_name(text)
        _check_regular(path, "weights file")
        return path
    folder = Path(directory) if directory is not None else shipped_weights_dir()
    path = check_file_name(folder / f"{text}{_SUFFIX}")
    if not os.path.isfile(path):
        available = sorted(p.name[: -len(_SUFFIX)] for p in folder.glob(f"*{_SUFFIX}"))
        listing = ", ".join(available) if available else "none shipped"
        raise WeightsError(f"{text}: no shipped weights of that name (available: {listing})")
    return path


def load_pretrained(
    name: str,
    device: str | torch.device = "cpu",
    *,
    directory: str | os.PathLike | None = None,
) -> nn.Module:
    """Load shipped weights ``<name>.safetensors`` as a ready model (see :func:`load_model`).

    An unknown name raises WeightsError listing the available names.
    """
    return load_model(resolve_weights(name, directory=directory), device=device)
