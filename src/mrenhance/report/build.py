"""Reports built from results: a folder of NIfTIs (``mrenhance report DIR``) or an
``enhance`` batch (``mrenhance enhance ... --report``).

Both write one self-contained HTML page (:func:`mrenhance.report.html.write_html_report`)
with one viewer case per grid: the images side by side, their ``|difference|`` maps, the
metrics table when there is one, the model cards and the provenance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = ["enhance_case", "report_folder", "write_enhance_report"]

#: File stems taken as the reference of a folder when ``reference`` is not given.
REFERENCE_STEMS = ("hr", "reference", "ref", "ground_truth", "gt")


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _card_dict(name: str) -> dict[str, Any] | None:
    """The card of a shipped model or a weights path, as a dict (None when not found)."""
    try:
        from mrenhance.models.weights import read_card, resolve_weights

        return read_card(resolve_weights(name)).to_dict()
    except Exception:  # a report must not fail on a card it cannot find
        return None


def report_folder(
    folder: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    reference: str | None = None,
    title: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``folder/report.html`` (or ``output``) showing every NIfTI of ``folder``.

    Parameters
    ----------
    folder : path
        Holds NIfTI files (searched recursively); files on one grid (same shape and affine)
        form one case. ``metrics.json`` (from :func:`~mrenhance.report.tables.write_table`)
        becomes the metrics table; a JSON sidecar beside an image (``<stem>.json``) is shown
        as its provenance, and the model it names gets its card shown.
    output : path, optional
        The HTML file; default ``folder/report.html``.
    reference : str, optional
        File stem of the reference (``hr`` for ``hr.nii.gz``); default the first file
        named like one of :data:`REFERENCE_STEMS`. With a reference, each case shows
        ``|image - reference|``.
    """
    from mrenhance.io import load
    from mrenhance.io.nifti import is_nifti_name
    from mrenhance.report.html import write_html_report

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_nifti_name(p))
    if not files:
        raise InputError(f"{root}: holds no NIfTI file (.nii or .nii.gz)")
    out = Path(output) if output is not None else root / "report.html"

    groups: dict[tuple, dict[str, Any]] = {}
    sidecars: dict[str, Any] = {}
    cards: dict[str, dict[str, Any]] = {}
    for path in files:
        vol = load(path)
        if vol.data.ndim != 3:
            continue  # choice: the viewer shows 3D images; a 4D series is skipped
        key = (vol.data.shape, tuple(np.round(vol.affine, 4).ravel()))
        name = str(path.relative_to(root))
        name = name[: -len(path.name)] + _stem(path)
        groups.setdefault(key, {"images": {}, "affine": vol.affine})["images"][name] = vol.data
        side = path.with_name(_stem(path) + ".json")
        if side.is_file():
            try:
                sidecars[name] = json.loads(side.read_text(encoding="utf-8"))
            except ValueError:
                sidecars[name] = f"{side}: not valid JSON"
        prov = vol.meta.get("provenance")
        if name not in sidecars and prov:
            sidecars[name] = {"provenance": list(prov)}
        model = (
            sidecars.get(name, {}).get("model") if isinstance(sidecars.get(name), dict) else None
        )
        if isinstance(model, dict):
            model = model.get("name")
        if isinstance(model, str) and model not in cards:
            card = _card_dict(model)
            if card is not None:
                cards[model] = card

    sections: list[dict[str, Any]] = []
    metrics = root / "metrics.json"
    rows = None
    if metrics.is_file():
        try:
            rows = json.loads(metrics.read_text(encoding="utf-8")).get("rows")
        except (ValueError, AttributeError):
            rows = None
    for i, group in enumerate(groups.values()):
        images = group["images"]
        ref = _pick_reference(images, reference)
        shape = next(iter(images.values())).shape
        section: dict[str, Any] = {
            "heading": f"Case {i + 1}: {len(images)} images on a {shape} grid",
            "viewers": [
                {
                    "images": _reference_last(images, ref),
                    "reference": ref,
                    "affine": group["affine"],
                }
            ],
        }
        if i == 0 and rows:
            section["table_rows"] = rows
        sections.append(section)
    if reference is not None and not any(
        reference in g["images"] for g in groups.values()
    ):  # fmt: skip
        raise InputError(f"{root}: no image named {reference!r} (stems: {_stems(groups)})")
    tail: dict[str, Any] = {"heading": "Models and provenance"}
    if cards:
        tail["cards"] = list(cards.values())
    if sidecars:
        tail["provenance"] = sidecars
    if len(tail) > 1:
        sections.append(tail)
    return write_html_report(
        out, title=title or f"mrenhance report: {root.name}", sections=sections,
        overwrite=overwrite,
    )  # fmt: skip


def _stems(groups: dict) -> str:
    return ", ".join(k for g in groups.values() for k in g["images"])


def _pick_reference(images: dict[str, Any], reference: str | None) -> str | None:
    if reference is not None:
        return reference if reference in images else None
    for name in images:
        if Path(name).name.lower() in REFERENCE_STEMS:
            return name
    return None


def _reference_last(images: dict[str, Any], ref: str | None) -> dict[str, Any]:
    if ref is None:
        return dict(images)
    return {**{k: v for k, v in images.items() if k != ref}, ref: images[ref]}


def enhance_case(source: Any, volume: Any, result: Any, *, model: str) -> dict[str, Any]:
    """One viewer case of ``enhance``: the input, the output and ``|output - input|``.

    Returns the viewer payload (compressed already, so a batch keeps only small strings).
    When the output grid differs from the input's (``--upsample``, a 4D input), only the
    output is shown.
    """
    from mrenhance.report.viewer import viewer_case

    name = Path(str(source)).name
    data_in, data_out = np.asarray(volume.data), np.asarray(result.data)
    if data_out.ndim != 3:
        raise InputError(f"{source}: the report shows 3D outputs, got shape {data_out.shape}")
    if data_in.shape == data_out.shape:
        return viewer_case(
            {f"input {name}": data_in, f"output ({model})": data_out},
            reference=f"input {name}",
            error_label="|output - input|",
            affine=result.affine,
            title=str(source),
        )
    return viewer_case({f"output ({model})": data_out}, affine=result.affine, title=str(source))


def write_enhance_report(
    path: str | os.PathLike,
    cases: list[dict[str, Any]],
    results: list[dict[str, Any]],
    *,
    model: str,
    overwrite: bool = True,
) -> Path:
    """The ``enhance --report`` page: a case per written output, the batch table, the card."""
    from mrenhance.report.html import write_html_report

    card = _card_dict(model)
    sections: list[dict[str, Any]] = [
        {"heading": "Outputs", "table_rows": results},
        *({"heading": c["title"], "viewers": [{**c, "title": ""}]} for c in cases),
    ]
    if card is not None:
        sections.append({"heading": "Model", "cards": [card]})
    return write_html_report(
        path, title=f"mrenhance enhance: {model}", sections=sections, overwrite=overwrite
    )
