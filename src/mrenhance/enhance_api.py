"""Apply a trained network to a whole volume: the path from ``mrenhance enhance`` to a file.

load weights (sha256-checked) -> task's intensity preparation -> tiled inference
(``engine.infer``) -> undo the preparation -> a Volume on the input's grid, with provenance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.volume import Volume


def resolve_weights(model: str | os.PathLike) -> Path:
    """A shipped model name (``mdcsrn-b4u4``) or a path to a ``.safetensors`` file."""
    from mrenhance.errors import WeightsError
    from mrenhance.models.weights import list_shipped_weights, shipped_weights_dir

    text = str(model)
    if text.endswith(".safetensors"):
        path = Path(text)
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found")
        return path
    path = shipped_weights_dir() / f"{text}.safetensors"
    if not path.is_file():
        names = ", ".join(sorted(c["name"] for c in list_shipped_weights())) or "none"
        raise WeightsError(f"{text}: no shipped weights of that name (available: {names})")
    return path


def enhance(
    volume: Volume,
    model: str | os.PathLike,
    *,
    device: str = "cpu",
    patch_size: int | tuple[int, ...] | None = None,
    overlap: int | tuple[int, ...] | None = None,
    blend: str | None = None,
    batch_size: int = 1,
    progress: bool = False,
    upsample: tuple[float, ...] | None = None,
    upsample_method: str = "sinc",
) -> Volume:
    """Enhance ``volume`` with a shipped model name or a weights path.

    Parameters
    ----------
    volume : Volume, (x, y, z) for the SR models.
    model : shipped name (see ``mrenhance models``) or path to ``*.safetensors`` with its card.
    patch_size, overlap, blend : tiling; default to the model card's ``inference`` section.
    upsample : optional zoom factors per axis, e.g. (2, 2, 1): first resample a low-matrix
        acquisition onto the finer grid (``upsample_method`` "sinc" = zero-filled k-space,
        or "cubic"), as the SR networks expect their input on the target grid.

    Returns
    -------
    Volume on the input grid (or the upsampled grid), float32, provenance appended.
    """
    from mrenhance.engine.infer import infer
    from mrenhance.models.weights import load_model, read_card
    from mrenhance.tasks import get_task

    if not np.all(np.isfinite(volume.data)):
        bad = int(np.size(volume.data) - np.count_nonzero(np.isfinite(volume.data)))
        raise InputError(f"{volume.meta.get('source', 'input')}: {bad} NaN/Inf voxels")
    path = resolve_weights(model)
    card = read_card(path)
    net = load_model(path, device=device)
    task = get_task(card.get("task", "sr_t1"))
    if upsample is not None:
        from mrenhance.baselines.interpolate import interpolate_volume

        volume = interpolate_volume(volume, zoom=tuple(upsample), method=upsample_method)
    inference = card.get("inference", {})
    patch_size = inference.get("patch_size", 64) if patch_size is None else patch_size
    overlap = inference.get("overlap", 6) if overlap is None else overlap
    blend = blend or inference.get("blend", "crop")
    check_tiling(patch_size, overlap, batch_size)
    array, ctx = task.prepare_input(volume)
    out = infer(
        net,
        array,
        patch_size,
        overlap,
        blend=blend,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    data = task.restore_output(out, ctx)
    step = (
        f"enhance model={card.get('name', path.stem)} sha256={card.get('sha256', '')[:12]} "
        f"patch={patch_size} overlap={overlap} blend={blend}"
    )
    result = volume.with_data(data, step=step)
    result.meta["model_card"] = {k: card.get(k) for k in ("name", "task", "sha256")}
    return result


MAX_PATCH = 512  # voxels per axis: a 512^3 tile of mDCSRN b4u4 needs > 100 GB of activations


def check_tiling(
    patch_size: int | tuple[int, ...], overlap: int | tuple[int, ...], batch_size: int
) -> None:
    """Refuse absurd tiling options before any work: one line naming the option."""
    patches = (patch_size,) if isinstance(patch_size, int) else tuple(patch_size)
    overlaps = (overlap,) if isinstance(overlap, int) else tuple(overlap)
    if not patches or any(not isinstance(p, int) or p < 1 or p > MAX_PATCH for p in patches):
        raise InputError(f"--patch-size {patch_size}: each size must be 1..{MAX_PATCH} voxels")
    if any(not isinstance(o, int) or o < 0 for o in overlaps):
        raise InputError(f"--overlap {overlap}: must be >= 0 voxels")
    n = max(len(patches), len(overlaps))
    if len(patches) not in (1, n) or len(overlaps) not in (1, n):
        raise InputError(f"--overlap {overlap}: give one value or one per patch axis")
    sizes = patches * n if len(patches) == 1 else patches
    margins = overlaps * n if len(overlaps) == 1 else overlaps
    if any(o >= p for p, o in zip(sizes, margins, strict=True)):
        raise InputError(f"--overlap {overlap}: must be smaller than the patch size {patch_size}")
    if not isinstance(batch_size, int) or batch_size < 1 or batch_size > 4096:
        raise InputError(f"--batch-size {batch_size}: must be 1..4096")


def describe(model: str | os.PathLike) -> dict[str, Any]:
    """The model card of a shipped name or weights path."""
    from mrenhance.models.weights import read_card

    return read_card(resolve_weights(model))
