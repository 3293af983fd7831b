"""Shipping a trained network: evaluate it on its task's held-out data, then publish it.

``mrenhance ship RUN/name.safetensors`` (or :func:`ship_weights`) runs the task's
evaluation protocol (:meth:`mrenhance.tasks.base.Task.evaluate`) on the weights and the
task's baselines, through :class:`mrenhance.enhance_api.Enhancer` (the code path of
``enhance``), records the numbers, the protocol and the provenance in the model card, and
writes ``<name>.safetensors`` (byte for byte; its sha256 is unchanged) and ``<name>.json``
into the destination folder (default: the package's shipped weights).
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

from mrenhance.errors import InputError
from mrenhance.models.card import ModelCard

__all__ = ["ship_weights"]

_METRIC_KEYS = ("ssim", "psnr", "nrmse")


def _run_seconds(weights: Path, card: ModelCard) -> float | None:
    """Wall time summed over resumes, from the run's ``metrics.csv`` when it is beside us.

    Seconds to 1 ms (a 2-step test run on a fast CPU takes < 0.1 s).
    """
    stage = (
        "gan" if str(card.training.get("stage", "")).startswith(("WGAN", "GAN")) else "supervised"
    )
    log = weights.parent / stage / "metrics.csv"
    if not log.is_file():
        return None
    with open(log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return round(float(rows[-1]["seconds"]), 3) if rows else None
    except (KeyError, ValueError):
        return None


def ship_weights(
    weights: str | os.PathLike,
    *,
    dest: str | os.PathLike | None = None,
    note: str = "",
    device: str = "cpu",
    baselines: tuple[str, ...] | None = None,
    overwrite: bool = True,
    data: dict[str, Any] | None = None,
    limitations: list[str] | tuple[str, ...] | None = None,
) -> tuple[ModelCard, list[dict[str, Any]]]:
    """Evaluate ``weights`` through its task's protocol and publish it with its card.

    Parameters
    ----------
    weights : a ``.safetensors`` file with its ``.json`` card beside it.
    dest : destination folder (default :func:`mrenhance.models.weights.shipped_weights_dir`).
    note : free text recorded in the card's provenance (e.g. the training budget).
    baselines : which of the task's baselines to record beside the network (default all).
    overwrite : replace an existing shipped model of the same name.
    data : the task's ``data`` config to evaluate on (default: the task's own held-out data).
    limitations : the card's ``limitations`` (free text, one item each); None keeps the
        source card's.

    Returns
    -------
    (card, rows): the card as written, and the evaluation rows (one per method).
    """
    from mrenhance.enhance_api import Enhancer
    from mrenhance.io.atomic import write_text_atomic
    from mrenhance.models.weights import shipped_weights_dir
    from mrenhance.runtime import provenance

    src = Path(weights)
    enhancer = Enhancer.from_weights(src, device=device)  # sha256 + values checked here
    card, task = enhancer.card, enhancer.task
    folder = Path(dest) if dest is not None else shipped_weights_dir()
    target = folder / f"{card.name}.safetensors"
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists (pass overwrite=True / --overwrite)")
    methods = dict(task.baselines())
    if baselines is not None:
        methods = {k: v for k, v in methods.items() if k in baselines}
    methods[card.name] = task.network_method(enhancer)
    rows = task.evaluate(methods, data=data)
    if hasattr(task, "card_metrics"):  # a task with several rows per method (doses, ...)
        test, test_baselines = task.card_metrics(rows, card.name)
    else:
        by = {r["method"]: r for r in rows}
        keys = tuple(  # a task may name its own
            getattr(task, "card_metric_keys", None) or getattr(task, "metric_keys", _METRIC_KEYS)
        )
        test = {k: by[card.name][k] for k in keys if k in by[card.name]}
        test_baselines = {
            m: {k: by[m][k] for k in keys if k in by[m]} for m in by if m != card.name
        }
    card.metrics = {
        **card.metrics,
        "test": test,
        "test_baselines": test_baselines,
        "test_protocol": task.protocol(data),
    }
    seconds = _run_seconds(src, card)
    if seconds is not None:
        card.training = {**card.training, "seconds": seconds}
    if limitations is not None:
        card.limitations = [str(text).strip() for text in limitations if str(text).strip()]
    card.provenance = {**provenance(), "note": note, "shipped_from": src.name}
    folder.mkdir(parents=True, exist_ok=True)
    if src.resolve() != target.resolve():
        tmp = target.with_name(f".{target.name}.partial")
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    write_text_atomic(folder / f"{card.name}.json", card.to_json(), overwrite=True)
    return card, rows
