"""JSON sidecars: the full provenance of every output, beside it (``sr.nii.gz`` -> ``sr.json``).

A NIfTI ``descrip`` holds 80 bytes; the sidecar holds everything: the sources, the model
(name, task, weights sha256), the inference parameters, every processing step and the
versions of the software. Fields of the input's own sidecar (a BIDS or dcm2niix JSON beside
the input) are carried over where they still describe the output: acquisition parameters
(``RepetitionTime``, ``EchoTime``, ``MagneticFieldStrength``, ...) hold; fields about the
old grid (``SliceTiming``, matrix sizes) are dropped when the grid changed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrenhance.io.atomic import write_text_atomic

__all__ = ["output_sidecar", "read_sidecar", "sidecar_path", "software_versions", "write_sidecar"]

#: Input-sidecar fields never carried over: they describe how the *input* was derived.
NOT_CARRIED = frozenset({"Sources", "RawSources", "Description", "GeneratedBy", "mrenhance"})
#: Input-sidecar fields that describe the input's grid: dropped when the output grid differs.
GRID_FIELDS = frozenset(
    {
        "SliceTiming",
        "SliceThickness",
        "SliceEncodingDirection",
        "AcquisitionMatrixPE",
        "ReconMatrixPE",
        "BaseResolution",
        "PercentPhaseFOV",
        "PercentSampling",
        "PhaseResolution",
        "EffectiveEchoSpacing",
        "TotalReadoutTime",
        "PixelBandwidth",
        "ImageOrientationPatientDICOM",
    }
)


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """``x.nii.gz`` / ``x.nii`` -> ``x.json``; a DICOM series folder ``d/`` -> ``d.json``."""
    p = Path(image_path)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_name(name.rstrip("/") + ".json") if os.path.isdir(p) else p.with_suffix(".json")


def read_sidecar(image_path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON sidecar beside an input image, or None (missing or not a JSON object)."""
    p = Path(image_path)
    if os.path.isdir(p):
        return None  # choice: a DICOM folder's facts are in its headers
    side = sidecar_path(p)
    if not os.path.isfile(side):
        return None
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def software_versions() -> dict[str, str]:
    """The versions that produced an output: mrenhance, Python, torch, numpy, nibabel."""
    from mrenhance import __version__

    out = {"mrenhance": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "nibabel", "pydicom"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def output_sidecar(
    volume: Any,
    *,
    sources: Sequence[str],
    model_card: Any = None,
    parameters: Mapping[str, Any] | None = None,
    input_sidecar: Mapping[str, Any] | None = None,
    grid_changed: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """The sidecar of one output.

    Parameters
    ----------
    volume : the output Volume (its ``meta["provenance"]`` is the list of steps).
    sources : the inputs, as BIDS URIs (``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``) or paths.
    model_card : the ModelCard (or dict) of the network, if one made the output.
    parameters : the options that shaped the output (tiling, upsampling, dtype, ...).
    input_sidecar : the input's own sidecar; its fields are carried over (see module doc).
    grid_changed : the output grid differs from the input's (drops :data:`GRID_FIELDS`).

    Returns
    -------
    dict
        Carried fields first, then ``Sources``, ``Description`` (BIDS derivatives), and an
        ``mrenhance`` object with ``model``, ``parameters``, ``provenance`` and ``versions``.
    """
    doc: dict[str, Any] = {}
    for key, value in (input_sidecar or {}).items():
        if key in NOT_CARRIED or (grid_changed and key in GRID_FIELDS):
            continue
        doc[key] = value
    card = model_card.to_dict() if hasattr(model_card, "to_dict") else model_card
    doc["Sources"] = [str(s) for s in sources]
    if description is None:
        description = (
            f"Enhanced by mrenhance with the {card.get('name')} network ({card.get('task')})"
            if card
            else "Written by mrenhance"
        )
    doc["Description"] = description
    info: dict[str, Any] = {}
    if card:
        info["model"] = {
            k: card.get(k) for k in ("name", "task", "architecture", "sha256") if card.get(k)
        }
        voxel = (card.get("preprocessing") or {}).get("voxel_size_mm")
        if voxel is not None:
            info["model"]["training_voxel_size_mm"] = voxel
    info["parameters"] = _plain(dict(parameters or {}))
    info["provenance"] = [str(s) for s in (getattr(volume, "meta", {}) or {}).get("provenance", [])]
    info["versions"] = software_versions()
    doc["mrenhance"] = info
    return doc


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_sidecar(
    image_path: str | os.PathLike, doc: Mapping[str, Any], *, overwrite: bool = False
) -> Path:
    """Write ``doc`` as the JSON sidecar of ``image_path`` (atomically); return its path."""
    path = sidecar_path(image_path)
    # ASCII escapes: a file name that is not UTF-8 (surrogate-escaped) stays exact and writable
    text = json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False, default=str) + "\n"
    return Path(write_text_atomic(path, text, overwrite=overwrite))
