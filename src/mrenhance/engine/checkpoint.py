"""Training checkpoints: atomic ``torch.save``, safe ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, dicts, lists, ints, floats, strings, bools and
None (the types ``weights_only=True`` unpickles), e.g. as written by
:class:`mrenhance.engine.training.Trainer`::

    {"format": "mrenhance-checkpoint", "version": 2,
     "kind": "supervised" | "wgan-gp" | "gan",                 # the step type
     "step": int, "sub_step": int,                             # position in the run
     "rng": [capture_rng_state() per rank], "best_metric": float | None,
     "best_step": int | None, "best_metrics": {...} | None, "settings": {...},
     "seconds": float,
     # the step's state_dict, merged in: e.g.
     "model": state_dict, "optimizer": state_dict,
     "critic": state_dict, "critic_optimizer": state_dict,      # GAN steps
     "gp_rng": uint8 tensor, "critic_steps": int}               # WGAN-GP step

Loading never runs code from the file: a pickle that would call anything outside
PyTorch's allow-list is refused with :class:`~mrenhance.errors.WeightsError`.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrenhance.errors import WeightsError
from mrenhance.io.atomic import atomic_path

__all__ = [
    "capture_rng_state",
    "load_checkpoint",
    "load_model_weights",
    "restore_rng_state",
    "save_checkpoint",
]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically (temp file, fsync, rename).

    The parent folder is created. A crash while writing leaves the previous file intact.

    Parameters
    ----------
    path:
        Destination, conventionally ``<run_dir>/checkpoints/last.pt``; replaced if present.
    state:
        Plain containers of tensors and Python scalars (see the module docstring); other
        objects would save but not load with ``weights_only=True``.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(final, overwrite=True) as tmp:
        torch.save(state, tmp)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a ``torch.save`` checkpoint onto the CPU without executing code from the file.

    The one checkpoint loader of the project (training resume, best-checkpoint selection,
    user files): ``torch.load(weights_only=True)`` refuses a pickle that names any global
    beyond tensors and plain containers before it can run.

    Raises
    ------
    WeightsError
        Missing file; "refused: not a plain tensor checkpoint (it names the global x.y)";
        not a readable PyTorch file; or a file that does not hold a dict.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{p}: refused: not a plain tensor checkpoint ({_reason(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - junk bytes fail in many ways inside pickle
        raise WeightsError(f"{p}: not a readable torch checkpoint ({_reason(exc)})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{p}: checkpoint holds a {type(state).__name__}, expected a dict")
    return state


def _reason(exc: BaseException) -> str:
    """Why torch refused a pickle, in a few words, without its advice to load unsafely."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    refused_global = re.search(r"GLOBAL ([\w.]+)", text)
    if refused_global:
        return f"it names the global {refused_global.group(1)}"
    opcode = re.search(r"operand \d+", text)
    if opcode:
        return f"unsupported pickle {opcode.group(0)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def load_model_weights(model: nn.Module, path: str | os.PathLike, key: str = "model") -> int:
    """Load ``checkpoint[key]`` into ``model`` (strict); returns the checkpoint's step.

    Use it to start the GAN stage from the supervised stage's ``best.pt`` (mDCSRN
    Sec. 3.2: "we transfer the weights from well-trained mDCSRN ... as the initial G").

    Raises
    ------
    WeightsError
        Unreadable file, no ``key`` in it, or parameter names/shapes that do not match.
    """
    state = load_checkpoint(path)
    if key not in state or not isinstance(state[key], dict):
        raise WeightsError(f"{path}: checkpoint has no {key!r} state_dict")
    try:
        model.load_state_dict(state[key])
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise WeightsError(f"{path}: weights do not fit this model ({first})") from None
    return int(state.get("step", 0))


# --------------------------------------------------------------------------------------
# RNG state as weights_only-loadable plain data
# --------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU, CUDA), NumPy's legacy RNG and ``random``.

    Returns
    -------
    dict
        ``{"torch": uint8 tensor, "cuda": [uint8 tensors], "numpy": {...plain ints...},
        "python": [version, [625 ints], gauss_next]}``; loadable with ``weights_only``.
    """
    # the legacy global RNG on purpose: it is what third-party code draws from unseeded
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002
    assert isinstance(np_state, dict)
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": [int(v) for v in np_state["state"]["key"]],
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [int(version), [int(v) for v in internal], gauss],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
