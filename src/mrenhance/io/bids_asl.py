"""BIDS ASL: write a subject's label/control series and read it back (BIDS 1.9, ASL).

A BIDS ASL acquisition is ``sub-<label>/perf/sub-<label>_asl.nii.gz`` (4D) with
``_aslcontext.tsv`` (one ``volume_type`` per volume: control, label, m0scan, deltam, cbf),
``_asl.json`` (ArterialSpinLabelingType, PostLabelingDelay, LabelingDuration, M0Type,
BackgroundSuppression, ...) and, for ``M0Type: "Separate"``, ``_m0scan.nii.gz`` + json.
asldro, ExploreASL and ASLPrep read and write this layout.

:func:`attach_asl_context` is what :func:`mrenhance.io.load` calls on every NIfTI: when an
``*_aslcontext.tsv`` (and ``*_asl.json``) lie beside an ``*_asl.nii[.gz]``, the volume types
and the sidecar go into ``meta["aslcontext"]`` and ``meta["asl"]``, and a separate M0 scan's
path into ``meta["m0scan_path"]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.volume import Volume

__all__ = [
    "attach_asl_context",
    "check_asl_sidecar",
    "read_aslcontext",
    "read_bids_asl",
    "write_bids_asl",
]

VOLUME_TYPES = ("control", "label", "m0scan", "deltam", "cbf", "noise")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_aslcontext(path: str | os.PathLike) -> list[str]:
    """The ``volume_type`` column of an ``*_aslcontext.tsv`` (one-line InputError if bad)."""
    p = Path(path)
    try:
        lines = [ln.rstrip("\r\n") for ln in p.read_text().splitlines() if ln.strip()]
    except OSError as err:
        raise InputError(f"{p}: cannot read ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise InputError(f"{p}: not UTF-8 text (byte {err.start})") from err
    if not lines or lines[0].split("\t")[0].strip() != "volume_type":
        raise InputError(f"{p}: expected a 'volume_type' header")
    types = [ln.split("\t")[0].strip().lower() for ln in lines[1:]]
    bad = [t for t in types if t not in VOLUME_TYPES]
    if bad:
        raise InputError(f"{p}: unknown volume_type {bad[0]!r} (known: {', '.join(VOLUME_TYPES)})")
    return types


def _times(doc: dict[str, Any], key: str, n: int, what: str, source: Any, *, positive: bool):
    """``doc[key]``: one time in seconds or a list of ``n`` (one per volume or slice)."""
    value = doc[key]
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) != n:
        raise InputError(f"{source}: {key} lists {len(value)} values for {n} {what}")
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
        if not ok or v < 0 or (positive and v == 0):
            sign = "> 0" if positive else ">= 0"
            raise InputError(f"{source}: {key} {v!r:.40}: expected a time in seconds {sign}")


def check_asl_sidecar(doc: Any, shape: tuple[int, ...], source: Any) -> None:
    """Refuse an ASL sidecar (``*_asl.json``, or ``meta["asl"]``) whose timing the CBF
    quantification cannot use; ``shape`` is the series' (x, y, z[, t]).

    ``PostLabelingDelay`` (>= 0 s) and ``LabelingDuration`` (> 0 s): a number, or a list
    of one per volume (BIDS); ``LabelingEfficiency`` in (0, 1]; ``SliceTiming`` one time
    (>= 0 s) per slice. One-line InputError naming ``source``.
    """
    if not isinstance(doc, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    n_volumes = shape[3] if len(shape) == 4 else 1
    for key, positive in (("PostLabelingDelay", False), ("LabelingDuration", True)):
        if key in doc:
            _times(doc, key, n_volumes, "volumes", source, positive=positive)
    if "SliceTiming" in doc:
        if not isinstance(doc["SliceTiming"], list):
            raise InputError(f"{source}: SliceTiming must be a list of times, one per slice")
        _times(doc, "SliceTiming", shape[2], "slices", source, positive=False)
    if "LabelingEfficiency" in doc:
        eff = doc["LabelingEfficiency"]
        ok = isinstance(eff, (int, float)) and not isinstance(eff, bool)
        if not (ok and 0 < eff <= 1):
            raise InputError(
                f"{source}: LabelingEfficiency {eff!r:.40}: expected a value in (0, 1]"
            )


def attach_asl_context(volume: Volume, path: str | os.PathLike) -> Volume:
    """Add BIDS ASL metadata from the files beside ``path`` (no-op for other images)."""
    p = Path(path)
    stem = _stem(p)
    if not stem.endswith("_asl"):
        return volume
    base = stem[: -len("_asl")]
    tsv = p.with_name(f"{base}_aslcontext.tsv")
    if os.path.isfile(tsv):
        types = read_aslcontext(tsv)
        n = volume.data.shape[3] if volume.data.ndim == 4 else 1
        if len(types) != n:
            raise InputError(f"{tsv}: lists {len(types)} volumes, {p.name} has {n}")
        volume.meta["aslcontext"] = types
    sidecar = p.with_name(f"{base}_asl.json")
    if os.path.isfile(sidecar):
        try:
            doc = json.loads(sidecar.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"{sidecar}: not valid JSON ({err})") from err
        check_asl_sidecar(doc, volume.data.shape, sidecar)
        volume.meta["asl"] = doc
    for ext in (".nii.gz", ".nii"):
        m0 = p.with_name(f"{base}_m0scan{ext}")
        if os.path.isfile(m0):
            volume.meta["m0scan_path"] = str(m0)
            break
    return volume


def write_bids_asl(
    folder: str | os.PathLike,
    subject: str,
    images: np.ndarray,
    affine: np.ndarray,
    m0scan: np.ndarray | None,
    *,
    pld_s: float = 1.5,
    label_duration_s: float = 1.5,
    tr_s: float = 4.0,
    te_s: float = 0.011,
    slice_timing_s: list[float] | None = None,
    labelling_efficiency: float = 0.85,
    order: tuple[str, str] = ("control", "label"),
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write one pCASL acquisition as BIDS ASL under ``folder/sub-<subject>/perf/``.

    images : (x, y, z, 2n) pairs in ``order``; m0scan : (x, y, z) or None (then
    ``M0Type: "Absent"``: the control images stand for M0). Returns the written paths.
    """
    from mrenhance.io import save
    from mrenhance.io.atomic import write_text_atomic

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[3] % 2:
        raise InputError(f"write_bids_asl: expected (x, y, z, 2n) pairs, got {images.shape}")
    perf = Path(folder) / f"sub-{subject}" / "perf"
    perf.mkdir(parents=True, exist_ok=True)
    base = perf / f"sub-{subject}"
    out: dict[str, Path] = {}
    vol = Volume(images, affine, {"source": "simulated pCASL", "tr_s": tr_s})
    out["asl"] = save(vol, f"{base}_asl.nii.gz", overwrite=overwrite)
    types = list(order) * (images.shape[3] // 2)
    out["aslcontext"] = Path(f"{base}_aslcontext.tsv")
    write_text_atomic(out["aslcontext"], "volume_type\n" + "\n".join(types) + "\n",
                      overwrite=overwrite)  # fmt: skip
    sidecar: dict[str, Any] = {
        "ArterialSpinLabelingType": "PCASL",
        "PCASLType": "balanced",
        "PostLabelingDelay": pld_s,
        "LabelingDuration": label_duration_s,
        "BackgroundSuppression": False,
        "M0Type": "Separate" if m0scan is not None else "Absent",
        "RepetitionTimePreparation": tr_s,
        "RepetitionTime": tr_s,
        "EchoTime": te_s,
        "MagneticFieldStrength": 3,
        "LabelingEfficiency": labelling_efficiency,
        "MRAcquisitionType": "2D",
        "PulseSequenceType": "EPI",
    }
    if slice_timing_s is not None:
        sidecar["SliceTiming"] = [round(float(t), 6) for t in slice_timing_s]
    out["asl_json"] = Path(f"{base}_asl.json")
    write_text_atomic(out["asl_json"], json.dumps(sidecar, indent=2), overwrite=overwrite)
    if m0scan is not None:
        m0 = Volume(np.asarray(m0scan, np.float32), affine, {"source": "simulated M0"})
        out["m0scan"] = save(m0, f"{base}_m0scan.nii.gz", overwrite=overwrite)
        out["m0scan_json"] = Path(f"{base}_m0scan.json")
        m0_sidecar = {"IntendedFor": f"perf/sub-{subject}_asl.nii.gz", "RepetitionTime": 10.0,
                      "EchoTime": te_s}  # fmt: skip
        write_text_atomic(out["m0scan_json"], json.dumps(m0_sidecar, indent=2),
                          overwrite=overwrite)  # fmt: skip
    return out


def read_bids_asl(path: str | os.PathLike, *, with_m0: bool = True) -> Volume:
    """Load an ``*_asl.nii[.gz]`` with its context and sidecar (and M0 scan, appended).

    With ``with_m0`` and a separate M0 scan, the M0 image is appended to the series as a
    last ``m0scan`` volume, so the series is self-contained for quantification.
    """
    from mrenhance.io import load

    vol = load(path)
    if "aslcontext" not in vol.meta:
        raise InputError(f"{path}: no *_aslcontext.tsv beside it (not a BIDS ASL series)")
    m0_path = vol.meta.get("m0scan_path")
    if with_m0 and m0_path and "m0scan" not in vol.meta["aslcontext"]:
        m0 = load(m0_path)
        if m0.data.shape[:3] != vol.data.shape[:3]:
            raise InputError(f"{m0_path}: shape {m0.data.shape} differs from the series'")
        m0_data = m0.data if m0.data.ndim == 3 else m0.data.mean(axis=-1)
        data = np.concatenate([vol.data, m0_data[..., None]], axis=-1)
        meta = dict(vol.meta)
        meta["aslcontext"] = [*vol.meta["aslcontext"], "m0scan"]
        vol = Volume(data, vol.affine, meta)
    return vol
