"""Evaluation entry points behind ``mrenhance evaluate``: a task's protocol, or two files.

A task's protocol (:meth:`mrenhance.tasks.base.Task.evaluate`) is run on its held-out data
with its baselines and networks; every network runs through
:class:`mrenhance.enhance_api.Enhancer`, the code path of ``mrenhance enhance``, so the
numbers measure what a user gets from the same weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError


def evaluate_files(
    prediction: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    data_range: float | None = None,
) -> list[dict[str, Any]]:
    """PSNR, SSIM, NRMSE, MAE of ``prediction`` against ``reference`` (optionally in a mask)."""
    rows, _ = evaluate_files_with_basis(prediction, reference, mask=mask, data_range=data_range)
    return rows


def evaluate_files_with_basis(
    prediction: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    data_range: float | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`evaluate_files` and the basis of its numbers: ``{"reference", "mask",
    "region", "voxels", "data_range", "data_range_source", "nrmse"}`` (what was compared
    with what, over which voxels, with which PSNR/SSIM peak)."""
    from mrenhance.io import load
    from mrenhance.metrics import compute_metrics

    pred, ref = load(prediction), load(reference)
    if pred.shape != ref.shape:
        raise InputError(f"{prediction}: shape {pred.shape} differs from the reference {ref.shape}")
    if not np.allclose(pred.affine, ref.affine, atol=1e-3):
        raise InputError(f"{prediction}: affine differs from the reference's; resample first")
    m = None
    if mask is not None:
        mvol = load(mask)
        if mvol.shape[:3] != ref.shape[:3]:
            raise InputError(f"{mask}: mask shape {mvol.shape} differs from {ref.shape}")
        m = mvol.data > 0
    values = compute_metrics(
        pred.data, ref.data, names=("psnr", "ssim", "nrmse", "mae"), data_range=data_range, mask=m
    )
    used = ref.data[m] if m is not None else ref.data
    basis = {
        "reference": str(reference),
        "mask": None if mask is None else str(mask),
        "region": "inside the mask" if m is not None else "the whole image",
        "voxels": int(used.size),
        "data_range": float(data_range)
        if data_range is not None
        else float(used.max() - used.min()),
        "data_range_source": "given"
        if data_range is not None
        else "reference max - min over the voxels compared",
        "nrmse": "||prediction - reference|| / ||reference|| over the voxels compared",
    }
    return [{"prediction": str(prediction), **values}], basis


def weights_method(path: str | os.PathLike, device: str = "cpu") -> tuple[Any, Any]:
    """A weights file (checked once) as its task's evaluation method, tiled as its card says.

    Returns (method, card); the method goes through the Enhancer, i.e. ``enhance``'s path.
    """
    from mrenhance.enhance_api import Enhancer

    enhancer = Enhancer.from_weights(path, device=device)
    return enhancer.task.network_method(enhancer), enhancer.card


def shipped_methods(task: str, device: str = "cpu") -> dict[str, tuple[Any, Any]]:
    """Shipped networks of ``task`` as evaluation methods, with their cards."""
    from mrenhance.models.weights import list_shipped_weights, shipped_weights_dir

    return {
        card.name: weights_method(shipped_weights_dir() / f"{card.name}.safetensors", device)
        for card in list_shipped_weights()
        if card.task == task
    }


def evaluate_task(
    task: str,
    models: str = "all",
    *,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    weights: list[str | os.PathLike] | None = None,
) -> list[dict[str, Any]]:
    """Run a task's evaluation protocol on its held-out data with baselines and shipped nets.

    For ``sr_t1``: the MNI152 T1's test slab (see :mod:`mrenhance.tasks.sr_t1`).
    ``weights``: extra ``.safetensors`` files (or folders of them) to evaluate beside the
    shipped ones, e.g. your own training runs. Each row holds the method's parameter count
    and its inference time on this machine. Writes ``<output>/evaluation.{md,csv,json}``
    when ``output`` is given.
    """
    from mrenhance.report.tables import write_table
    from mrenhance.tasks import get_task

    t = get_task(task)
    if output is not None:
        out = Path(output)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: not a folder")
        if (out / "evaluation.json").exists() and not overwrite:
            raise InputError(f"{out}/evaluation.json: exists (use --overwrite)")
    methods: dict[str, Any] = dict(t.baselines())
    params: dict[str, int] = {}
    extra = [(p, None) for p in _weight_files(weights or [])]
    for name, (method, card) in shipped_methods(task, device).items():
        methods[name] = method
        params[name] = card.parameters
    for path, _ in extra:
        method, card = weights_method(path, device)
        if card.task != task:
            raise InputError(f"{path}: weights are for task {card.task!r}, not {task!r}")
        methods[card.name] = method
        params[card.name] = card.parameters
    if models != "all":
        wanted = [m.strip() for m in models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            raise InputError(
                f"evaluate: unknown method {unknown[0]!r}; available: {', '.join(methods)}"
            )
        methods = {k: methods[k] for k in wanted}
    rows = t.evaluate(methods)
    for row in rows:
        row["parameters"] = params.get(row["method"], 0)
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
        write_table(rows, Path(output) / "evaluation", title=f"{task}: {t.protocol()}")
    return rows


def _weight_files(items: list[str | os.PathLike]) -> list[Path]:
    """``.safetensors`` files named directly or found (not recursively) in folders."""
    found: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(p.glob("*.safetensors")))
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(f"{p}: weights file or folder not found")
    return found
