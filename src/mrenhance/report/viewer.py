"""An interactive slice viewer for the self-contained HTML report.

One *case* is a set of 3D images on one grid (input, each method, the reference) plus their
``|error|`` maps. In the page every panel shows the same slice: one slice slider, one axis
switch (axial / coronal / sagittal), one window/level for the images, one colour scale for
the errors, and a zoom (1x to 8x) whose centre follows the pointer over any panel. Slice
numbers are voxel indices of the *whole* volume (a crop carries its ``offset``).

To keep the page small and offline, each image is reoriented to RAS, cropped to the
reference's foreground, strided down if it is still large, quantised to uint8 over a shared
range and zlib-compressed; the page inflates it with the browser's ``DecompressionStream``
(Chromium 80+, Firefox 113+, Safari 16.4+). No external resource is loaded.

# choice: a small hand-written canvas-2D viewer, not NiiVue. We tried both in headless
# Chromium 156: NiiVue 0.69 (BSD-2, one 2.3 MB UMD file) loads offline and draws, but only
# through the software-WebGL fallback that Chromium now logs as deprecated (a GPU-less VM
# or remote desktop may soon show an empty canvas), and it needs one WebGL context per
# panel (the demo has 9; Chromium keeps at most 16 alive). The canvas viewer needs no GPU,
# adds about 10 kB and keeps every panel on the same slice, window and zoom by design.
"""

from __future__ import annotations

import base64
import html
import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = ["VIEWER_CSS", "viewer_case", "viewer_html", "viewer_js"]

#: Above this many voxels per image the viewer strides the grid down (every 2nd voxel, ...).
MAX_VIEWER_VOXELS = 4_000_000
#: Percentiles of the reference that set the initial window (wide enough not to saturate
#: white matter in a T1).
WINDOW_PERCENTILES = (0.5, 99.9)
#: Percentile of all error maps that sets the top of the shared error scale.
ERROR_PERCENTILE = 99.5


def _as_array(name: str, value: Any) -> np.ndarray:
    data = value if isinstance(value, np.ndarray) else getattr(value, "data", value)
    arr = np.asarray(data)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"viewer: image {name!r} must be a real 3D array, got {arr.shape}")
    return arr.astype(np.float32, copy=False)


def _reorient(arrays: dict[str, np.ndarray], affine: Any, offset: Sequence[int]):
    """Arrays in RAS voxel order, voxel sizes and the offset in the reoriented full volume."""
    if affine is None:
        return arrays, [1.0, 1.0, 1.0], [int(o) for o in offset]
    import nibabel as nib

    aff = np.asarray(affine, dtype=np.float64)
    ornt = nib.orientations.io_orientation(aff)
    transform = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    sizes = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    ras_sizes, ras_offset = [1.0] * 3, [0] * 3
    for i in range(3):
        j, flip = int(transform[i, 0]), transform[i, 1] < 0
        ras_sizes[j] = float(sizes[i])
        # choice: a flipped axis would count from the other end of the full volume, whose
        # size is not known here; its slices are numbered within the crop
        ras_offset[j] = 0 if flip else int(offset[i])
    out = {k: nib.orientations.apply_orientation(v, transform) for k, v in arrays.items()}
    return out, ras_sizes, ras_offset


def _foreground_box(ref: np.ndarray, margin: int = 4) -> tuple[slice, ...]:
    finite = np.isfinite(ref)
    if not finite.any():
        return tuple(slice(0, n) for n in ref.shape)
    hi = float(np.percentile(ref[finite], 99.0))
    mask = ref > 0.02 * hi if hi > 0 else finite
    if not mask.any():
        return tuple(slice(0, n) for n in ref.shape)
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(0, idx[0] - margin), min(ref.shape[axis], idx[-1] + 1 + margin)))
    return tuple(box)


def _pack(q: np.ndarray) -> str:
    """uint8 (x, y, z) -> base64 of zlib of the bytes with x fastest (Fortran order)."""
    return base64.b64encode(zlib.compress(np.asfortranarray(q).tobytes(order="F"), 9)).decode()


def _quantise(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (np.nan_to_num(a, nan=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def viewer_case(
    images: Mapping[str, Any],
    *,
    reference: str | None = None,
    error_keys: Sequence[str] | None = None,
    error_label: str | None = None,
    affine: Any = None,
    offset: Sequence[int] = (0, 0, 0),
    title: str | None = None,
    centre: Sequence[int] | None = None,
    crop_foreground: bool = True,
    max_voxels: int = MAX_VIEWER_VOXELS,
) -> dict[str, Any]:
    """The JSON payload of one viewer case (what :func:`viewer_html` embeds).

    Parameters
    ----------
    images : dict of str to (x, y, z) array or Volume
        Panel title -> image, all on one grid, in display order (input first, reference
        last, e.g. ``{"LR": lr, "tricubic": tc, "mDCSRN": sr, "HR": hr}``).
    reference : str, optional
        Key of the ground truth: sets the window, and ``|image - reference|`` is shown for
        each of ``error_keys`` (default: every other image).
    error_label : str, optional
        Title pattern of the error panels, ``{name}`` and ``{reference}`` filled in;
        default ``"|{name} - {reference}|"``.
    affine : (4, 4) array, optional
        Voxel-to-world matrix (default: taken from a Volume among ``images``); the images
        are shown in RAS with the voxel aspect. Without one: RAS order, square voxels.
    offset : (i, j, k)
        Index of the images' first voxel in the full volume they were cropped from, so the
        page numbers slices as the full volume does.
    centre : (i, j, k), optional
        The voxel (of ``images``, in RAS order) whose slices the page opens on; default
        the middle.
    crop_foreground : bool
        Crop to the reference's (or first image's) foreground plus 4 voxels.
    max_voxels : int
        Stride the grid down (same stride on every axis) until an image fits.

    Returns
    -------
    dict
        ``{"title", "shape", "voxel_mm", "offset", "stride", "range", "window", "images":
        [{"name", "kind", "data"}], "error_range"}``; ``kind`` is ``"image"`` or ``"error"``.
    """
    if not images:
        raise InputError("viewer: no images")
    arrays = {str(k): _as_array(str(k), v) for k, v in images.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise InputError(
            "viewer: images must share one grid, got "
            + ", ".join(f"{k} {a.shape}" for k, a in arrays.items())
        )
    if reference is not None and reference not in arrays:
        raise InputError(f"viewer: reference {reference!r} is not an image ({', '.join(arrays)})")
    if affine is None:
        affine = next((getattr(v, "affine", None) for v in images.values()), None)
    if len(offset) != 3:
        raise InputError(f"viewer: offset must be (i, j, k), got {offset!r}")
    arrays, voxel_mm, offset = _reorient(arrays, affine, offset)
    ref_key = reference if reference is not None else next(iter(arrays))
    if error_keys is None:
        error_keys = [k for k in arrays if k != reference] if reference is not None else []
    missing = [k for k in error_keys if k not in arrays]
    if missing:
        raise InputError(f"viewer: error_keys {missing} are not images")
    if error_keys and reference is None:
        raise InputError("viewer: error_keys need a reference")

    start = [n // 2 for n in next(iter(arrays.values())).shape]
    if centre is not None:
        start = [int(c) for c in centre]
    box = _foreground_box(arrays[ref_key]) if crop_foreground else None
    if box is not None:
        start = [c - (b.start or 0) for c, b in zip(start, box, strict=True)]
        arrays = {k: a[box] for k, a in arrays.items()}
        offset = [o + (b.start or 0) for o, b in zip(offset, box, strict=True)]
    n = int(np.prod(next(iter(arrays.values())).shape))
    stride = 1
    while n / stride**3 > max_voxels:
        stride += 1
    if stride > 1:
        arrays = {k: a[::stride, ::stride, ::stride] for k, a in arrays.items()}
        voxel_mm = [v * stride for v in voxel_mm]
        start = [c // stride for c in start]

    ref = arrays[ref_key]
    finite = ref[np.isfinite(ref)]
    w_lo, w_hi = (
        (float(v) for v in np.percentile(finite, WINDOW_PERCENTILES)) if finite.size else (0, 1)
    )
    every = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays.values()])
    q_lo = min(float(every.min()) if every.size else 0.0, w_lo)
    q_hi = max(float(np.percentile(every, 99.99)) if every.size else 1.0, w_hi)
    if q_hi <= q_lo:
        q_hi = q_lo + 1.0
    if w_hi <= w_lo:
        w_lo, w_hi = q_lo, q_hi

    entries = [
        {"name": k, "kind": "image", "data": _pack(_quantise(a, q_lo, q_hi))}
        for k, a in arrays.items()
    ]
    e_hi = 1.0
    if error_keys:
        errors = {k: np.abs(arrays[k] - arrays[reference]) for k in error_keys}
        values = np.concatenate([e[np.isfinite(e)].ravel() for e in errors.values()])
        e_hi = float(np.percentile(values, ERROR_PERCENTILE)) if values.size else 1.0
        e_hi = e_hi if e_hi > 0 else 1.0
        label = error_label or "|{name} - {reference}|"
        entries += [
            {
                "name": label.format(name=k, reference=reference),
                "kind": "error",
                "data": _pack(_quantise(e, 0.0, e_hi)),
            }
            for k, e in errors.items()
        ]
    return {
        "title": title or "",
        "shape": [int(s) for s in ref.shape],
        "voxel_mm": [round(float(v), 6) for v in voxel_mm],
        "offset": [int(o) for o in offset],
        "start": [int(min(max(c, 0), n - 1)) for c, n in zip(start, ref.shape, strict=True)],
        "stride": stride,
        "range": [q_lo, q_hi],
        "window": [w_lo, w_hi],
        "error_range": [0.0, e_hi],
        "images": entries,
    }


def _magma_lut() -> str:
    from matplotlib import colormaps

    rgb = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return base64.b64encode(rgb.tobytes()).decode()


def viewer_html(case: Mapping[str, Any], element_id: str) -> str:
    """The HTML of one viewer: a ``<div class="mrv">`` and its JSON payload.

    The page must include :data:`VIEWER_CSS` and :func:`viewer_js` once
    (:func:`mrenhance.report.html.render_html_report` does).
    """
    payload = json.dumps(dict(case), separators=(",", ":"), allow_nan=False)
    # no "<" at all: a name cannot end the <script> element or open a comment there
    payload = payload.replace("<", "\\u003c")
    eid = html.escape(element_id, quote=True)
    return (
        f'<div class="mrv" id="{eid}" data-payload="{eid}-data">'
        "<noscript>The interactive viewer needs JavaScript.</noscript></div>\n"
        f'<script type="application/json" id="{eid}-data">{payload}</script>'
    )


VIEWER_CSS = """
.mrv { margin: 1em 0; }
.mrv .controls { display: flex; flex-wrap: wrap; gap: .4em 1.2em; align-items: center;
  font-size: .9em; margin-bottom: .5em; position: sticky; top: 0; background: #fff;
  padding: .3em 0; z-index: 1; }
.mrv .controls label { white-space: nowrap; }
.mrv .controls input[type=range] { vertical-align: middle; }
.mrv .slider { width: 16em; }
.mrv .axis-btn { border: 1px solid #999; background: #f4f4f4; padding: .15em .6em;
  cursor: pointer; }
.mrv .axis-btn[aria-pressed=true] { background: #345; color: #fff; }
.mrv .panels { display: flex; flex-wrap: wrap; gap: 6px; }
.mrv figure { margin: 0; }
.mrv canvas { display: block; background: #000; image-rendering: pixelated; cursor: crosshair; }
.mrv figcaption { font-size: .8em; text-align: center; max-width: 100%; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.mrv .readout { font-family: ui-monospace, monospace; font-size: .8em; color: #444;
  min-height: 1.3em; margin-top: .3em; white-space: pre-wrap; }
"""


def viewer_js() -> str:
    """The viewer's script, ``viewer.js`` beside this module, with matplotlib's magma map."""
    from importlib.resources import files

    text = files("mrenhance.report").joinpath("viewer.js").read_text(encoding="utf-8")
    return text.replace("@MAGMA@", _magma_lut())
