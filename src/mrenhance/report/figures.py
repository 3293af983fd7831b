"""Figures for reports: orthogonal slice mosaics with error maps and zooms, training curves, bars.

Every figure is drawn on its own :class:`matplotlib.figure.Figure` with the Agg canvas (no
``pyplot``, so no global figure state and no GUI backend), rendered to PNG bytes in memory and
written atomically with :func:`mrenhance.io.atomic.write_bytes_atomic`.

Display orientation. Volumes are expected in RAS+ voxel order (x: left to right, y: posterior
to anterior, z: inferior to superior), e.g. after ``nibabel.as_closest_canonical``; pass
``affine`` to :func:`orthogonal_mosaic` to have them reoriented. Slices are shown with the
superior (or, for axial slices, anterior) side up, the subject's right on the right of the
coronal and axial views and anterior on the right of the sagittal view. # choice: the
"neurological" convention of nilearn's plots; radiological viewers mirror left and right.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mrenhance.errors import InputError
from mrenhance.io.atomic import check_output_path, write_bytes_atomic

__all__ = [
    "display_slice",
    "metric_bars",
    "orthogonal_mosaic",
    "save_figure",
    "training_curves",
]

VIEW_NAMES = ("sagittal", "coronal", "axial")
#: Percentiles of the reference that set the shared grey scale of image panels (the top one
#: high enough that white matter in a T1 is not saturated).
GREY_PERCENTILES = (0.5, 99.9)
#: Percentile of all error maps that sets the top of the shared error colour scale.
ERROR_PERCENTILE = 99.5


def save_figure(
    fig: Figure, path: str | os.PathLike, *, dpi: int = 100, overwrite: bool = True
) -> Path:
    """Render ``fig`` to PNG in memory and write it atomically; return the path."""
    check_output_path(path, overwrite)
    FigureCanvasAgg(fig)  # attach an Agg canvas: no pyplot, no GUI backend
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return Path(write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite))


# ---------------------------------------------------------------------------------------------
# slices


def display_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice ``index`` across ``axis`` of a RAS volume, as it is drawn (row 0 on top).

    Parameters
    ----------
    volume : (x, y, z) array in RAS+ voxel order
    axis : {0, 1, 2}
        0 = sagittal (columns: posterior to anterior, rows: superior on top),
        1 = coronal (columns: left to right, rows: superior on top),
        2 = axial (columns: left to right, rows: anterior on top).
    index : int
        Slice index along ``axis``.

    Returns
    -------
    (rows, columns) array
        ``flipud(slice.T)``: the transpose puts the later axis vertically and the flip puts
        its high end (superior, or anterior) at the top.
    """
    s = np.take(volume, index, axis=axis)
    return np.flipud(s.T)


def _aspect(voxel_size: Sequence[float], axis: int) -> float:
    """imshow aspect (pixel height / width) of a display_slice across ``axis``."""
    col_axis, row_axis = [a for a in range(3) if a != axis]
    return float(voxel_size[row_axis]) / float(voxel_size[col_axis])


def _to_ras(
    arrays: dict[str, np.ndarray], affine: np.ndarray | None
) -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
    if affine is None:
        return arrays, (1.0, 1.0, 1.0)
    import nibabel as nib

    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise InputError(f"orthogonal_mosaic: affine must be 4x4, got shape {aff.shape}")
    ornt = nib.orientations.io_orientation(aff)
    transform = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    sizes = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    # transform[i, 0] is the output axis that input axis i becomes
    ras_sizes = [0.0, 0.0, 0.0]
    for i in range(3):
        ras_sizes[int(transform[i, 0])] = float(sizes[i])
    out = {k: nib.orientations.apply_orientation(v, transform) for k, v in arrays.items()}
    return out, (ras_sizes[0], ras_sizes[1], ras_sizes[2])


def _panel_array(key: str, value: Any) -> np.ndarray:
    # a Volume or a plain array (ndarray.data is a raw buffer, not image data)
    data = value if isinstance(value, np.ndarray) else getattr(value, "data", value)
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise InputError(f"orthogonal_mosaic: panel {key!r} must be a 3D array, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"orthogonal_mosaic: panel {key!r} must be real, got {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _check_zoom_box(zoom_box: Any, shape: tuple[int, ...]):
    try:
        (x0, x1), (y0, y1), z = zoom_box
        x0, x1, y0, y1, z = (int(v) for v in (x0, x1, y0, y1, z))
    except (TypeError, ValueError):
        raise InputError(
            f"orthogonal_mosaic: zoom_box must be ((x0, x1), (y0, y1), z), got {zoom_box!r}"
        ) from None
    if not (0 <= x0 < x1 <= shape[0] and 0 <= y0 < y1 <= shape[1] and 0 <= z < shape[2]):
        raise InputError(
            f"orthogonal_mosaic: zoom_box {zoom_box!r} is outside the volume of shape {shape}"
        )
    return (x0, x1), (y0, y1), z


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def orthogonal_mosaic(
    panels: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    reference_key: str | None = None,
    error_keys: Sequence[str] | None = None,
    zoom_box: tuple[tuple[int, int], tuple[int, int], int] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    centre: Sequence[int] | None = None,
    affine: np.ndarray | None = None,
    index_offset: Sequence[int] = (0, 0, 0),
    crop_foreground: bool = True,
    panel_size_in: float = 2.2,
    dpi: int = 100,
    overwrite: bool = True,
) -> Path:
    """A grid of orthogonal slices: one column per image, one row per view, plus errors and zooms.

    Rows, top to bottom: sagittal, coronal and axial slices through ``centre``; then, if
    ``reference_key`` is given, ``|panel - reference|`` on the axial slice for each panel in
    ``error_keys`` (blank under the others) with one shared colour bar; then, if ``zoom_box``
    is given, the boxed detail of the axial slice ``z`` of every panel (the box is outlined on
    the axial row when that row shows slice ``z``).

    Parameters
    ----------
    panels : dict of str to (x, y, z) array (or :class:`~mrenhance.volume.Volume`)
        Column title -> image, all of the same shape and on the same grid, in display order,
        e.g. ``{"LR": lr, "tricubic": tc, "mDCSRN": sr, "HR": hr}``. Resample low-resolution
        inputs onto the reference grid first.
    path : path
        Output PNG file.
    reference_key : str, optional
        Key of the ground truth: sets the grey scale and enables the error row.
    error_keys : sequence of str, optional
        Panels whose error is shown; default all but the reference.
    zoom_box : ((x0, x1), (y0, y1), z), optional
        Voxel index ranges (half-open) of the zoomed detail on axial slice ``z``.
    vmin, vmax : float, optional
        Grey scale shared by all image panels; default the 0.5th and 99.5th percentiles of the
        reference (of all panels together when there is no reference).
    title : str, optional
        Figure title.
    centre : (i, j, k), optional
        Voxel where the three slices cross; default the middle of the volume, with the axial
        slice moved to ``z`` of ``zoom_box`` when one is given.
    affine : (4, 4) array, optional
        Voxel-to-world matrix shared by the panels: the arrays are reoriented to RAS (indices
        in ``centre`` and ``zoom_box`` then refer to the reoriented arrays) and the pixel
        aspect follows the voxel sizes. Without it, arrays are taken as RAS with square voxels.
    index_offset : (i, j, k)
        Index of the arrays' first voxel in the volume they were cropped from: labels give
        slice numbers of that volume (``centre`` and ``zoom_box`` stay array indices).
    crop_foreground : bool
        Draw only the reference's (or, without one, the first panel's) foreground bounding
        box plus 4 voxels, so a thin slab is not drawn as a thin strip of background.
    panel_size_in : float
        Size of one panel in inches.
    dpi : int
        Resolution of the PNG.
    overwrite : bool
        Replace an existing file (default).

    Returns
    -------
    Path
        ``path``.
    """
    if not panels:
        raise InputError("orthogonal_mosaic: no panels to draw")
    check_output_path(path, overwrite)
    arrays = {str(k): _panel_array(str(k), v) for k, v in panels.items()}
    shapes = {k: a.shape for k, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise InputError(
            "orthogonal_mosaic: panels must share one grid (resample LR inputs first), got "
            + ", ".join(f"{k} {s}" for k, s in shapes.items())
        )
    if reference_key is not None and reference_key not in arrays:
        raise InputError(
            f"orthogonal_mosaic: reference_key {reference_key!r} is not a panel "
            f"({', '.join(arrays)})"
        )
    if affine is None:
        first = next(iter(panels.values()))
        affine = getattr(first, "affine", None)  # Volumes carry their affine
    arrays, voxel_size = _to_ras(arrays, affine)
    shape = next(iter(arrays.values())).shape
    keys = list(arrays)

    box = _check_zoom_box(zoom_box, shape) if zoom_box is not None else None
    if centre is None:
        centre_idx = [n // 2 for n in shape]
        if box is not None:
            centre_idx[2] = box[2]
    else:
        centre_idx = [int(c) for c in centre]
        if len(centre_idx) != 3 or not all(
            0 <= c < n for c, n in zip(centre_idx, shape, strict=True)
        ):
            raise InputError(f"orthogonal_mosaic: centre {centre} is outside the shape {shape}")

    if error_keys is None:
        error_keys = [k for k in keys if k != reference_key] if reference_key else []
    else:
        error_keys = [str(k) for k in error_keys]
        missing = [k for k in error_keys if k not in arrays]
        if missing:
            raise InputError(f"orthogonal_mosaic: error_keys {missing} are not panels")
        if error_keys and reference_key is None:
            raise InputError("orthogonal_mosaic: error_keys need a reference_key")

    # one grey scale for all image panels, from the reference
    if vmin is None or vmax is None:
        source = (
            arrays[reference_key]
            if reference_key is not None
            else np.concatenate([a.ravel() for a in arrays.values()])
        )
        finite = source[np.isfinite(source)]
        lo, hi = np.percentile(finite, GREY_PERCENTILES) if finite.size else np.array([0.0, 1.0])
        vmin = float(lo) if vmin is None else vmin
        vmax = float(hi) if vmax is None else vmax
        if vmax <= vmin:
            vmax = vmin + 1.0

    axial_z = centre_idx[2]
    errors: dict[str, np.ndarray] = {}
    if reference_key is not None:
        ref_axial = display_slice(arrays[reference_key], 2, axial_z)
        for k in error_keys:
            errors[k] = np.abs(display_slice(arrays[k], 2, axial_z) - ref_axial)
    show_errors = bool(errors)

    if len(index_offset) != 3:
        raise InputError(f"orthogonal_mosaic: index_offset must be (i, j, k), got {index_offset}")
    off = [int(o) for o in index_offset]
    row_labels = [
        f"{name}\n{'xyz'[a]} = {centre_idx[a] + off[a]}" for a, name in enumerate(VIEW_NAMES)
    ]
    if show_errors:
        row_labels.append(f"|error|\nz = {axial_z + off[2]}")
    if box is not None:
        row_labels.append(f"zoom\nz = {box[2] + off[2]}")

    # crop the drawing to the foreground (after the slices and the box were chosen)
    if crop_foreground:
        from mrenhance.report.viewer import _foreground_box

        fg = _foreground_box(arrays[reference_key] if reference_key else arrays[keys[0]])
        fg = tuple(
            slice(min(b.start, c), max(b.stop, c + 1)) for b, c in zip(fg, centre_idx, strict=True)
        )
        if box is not None:
            (x0, x1), (y0, y1), _ = box
            fg = (
                slice(min(fg[0].start, x0), max(fg[0].stop, x1)),
                slice(min(fg[1].start, y0), max(fg[1].stop, y1)),
                fg[2],
            )
            box = ((x0 - fg[0].start, x1 - fg[0].start), (y0 - fg[1].start, y1 - fg[1].start),
                   box[2] - fg[2].start)  # fmt: skip
        arrays = {k: a[fg] for k, a in arrays.items()}
        centre_idx = [c - b.start for c, b in zip(centre_idx, fg, strict=True)]
        axial_z = centre_idx[2]
        shape = next(iter(arrays.values())).shape
        if errors:
            ref_axial = display_slice(arrays[reference_key], 2, axial_z)
            errors = {k: np.abs(display_slice(arrays[k], 2, axial_z) - ref_axial) for k in errors}
    nrows, ncols = len(row_labels), len(keys)

    # row heights follow each view's displayed aspect (height / width in mm), so a thin slab
    # does not leave empty bands; clipped so no row vanishes or dominates
    vx, vy, vz = (float(v) for v in voxel_size)
    nx, ny, nz = shape
    view_ratio = [(nz * vz) / (ny * vy), (nz * vz) / (nx * vx), (ny * vy) / (nx * vx)]
    ratios = view_ratio + ([view_ratio[2]] if show_errors else []) + ([1.0] if box else [])
    ratios = [float(np.clip(r, 0.3, 2.0)) for r in ratios]
    fig = Figure(
        figsize=(
            panel_size_in * ncols + (0.9 if show_errors else 0.3),
            panel_size_in * sum(ratios) + 0.25 * nrows + (0.5 if title else 0.2),
        )
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"height_ratios": ratios})
    grey = {"cmap": "gray", "vmin": vmin, "vmax": vmax, "interpolation": "nearest"}
    for j, key in enumerate(keys):
        vol = arrays[key]
        for axis in range(3):
            ax = axes[axis, j]
            ax.imshow(
                display_slice(vol, axis, centre_idx[axis]), aspect=_aspect(voxel_size, axis), **grey
            )
            _blank(ax)
        axes[0, j].set_title(key, fontsize=10)
        if box is not None and box[2] == axial_z:
            (x0, x1), (y0, y1), _ = box
            # display rows run from y = ny - 1 (top) down to y = 0
            top = shape[1] - y1 - 0.5
            axes[2, j].add_patch(
                Rectangle(
                    (x0 - 0.5, top), x1 - x0, y1 - y0, fill=False, edgecolor="yellow", linewidth=1.0
                )
            )

    row = 3
    if show_errors:
        emax_values = np.concatenate([e[np.isfinite(e)].ravel() for e in errors.values()])
        emax = float(np.percentile(emax_values, ERROR_PERCENTILE)) if emax_values.size else 1.0
        emax = emax if emax > 0 else 1.0
        image = None
        for j, key in enumerate(keys):
            ax = axes[row, j]
            _blank(ax)
            if key in errors:
                image = ax.imshow(
                    errors[key],
                    cmap="magma",
                    vmin=0.0,
                    vmax=emax,
                    aspect=_aspect(voxel_size, 2),
                    interpolation="nearest",
                )
            else:
                ax.set_facecolor("white")
        if image is not None:
            fig.colorbar(
                image,
                ax=list(axes[row, :]),
                fraction=0.03,
                pad=0.01,
                label=f"|x - {reference_key}|",
            )
        row += 1
    if box is not None:
        (x0, x1), (y0, y1), z = box
        # the zoom has its own window, from the reference's detail: the shared one is set
        # by the whole image and would saturate the bright tissue of a small region
        detail = arrays[reference_key] if reference_key else arrays[keys[0]]
        detail = detail[x0:x1, y0:y1, z]
        detail = detail[np.isfinite(detail)]
        z_lo, z_hi = np.percentile(detail, (0.5, 100.0)) if detail.size else (vmin, vmax)
        # choice: 20 % headroom, so the brightest tissue of the detail is light grey with
        # its texture visible rather than flat white
        z_hi = float(z_hi) + 0.2 * float(z_hi - z_lo)
        zoom_grey = {**grey, "vmin": float(z_lo), "vmax": z_hi if z_hi > z_lo else z_lo + 1}
        for j, key in enumerate(keys):
            ax = axes[row, j]
            ax.imshow(
                display_slice(arrays[key][x0:x1, y0:y1, :], 2, z),
                aspect=_aspect(voxel_size, 2),
                **zoom_grey,
            )
            _blank(ax)
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_edgecolor("yellow")
    for i, label in enumerate(row_labels):
        # horizontal two-line labels: a rotated one is longer than a thin row is high
        axes[i, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.set_layout_engine("constrained")
    return Path(save_figure(fig, path, dpi=dpi, overwrite=overwrite))


# ---------------------------------------------------------------------------------------------
# curves and bars


def _read_log(log: Any) -> dict[str, list[float]]:
    """A training log as column -> values (NaN where a row has no value)."""
    if isinstance(log, (str, os.PathLike)):
        p = Path(log)
        if not p.is_file():
            raise InputError(f"{p}: training log not found")
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise InputError(f"{p}: training log has no rows")
        columns: dict[str, list[float]] = {}
        for key in rows[0]:
            values = []
            for row in rows:
                text = (row.get(key) or "").strip()
                try:
                    values.append(float(text) if text else math.nan)
                except ValueError:
                    values.append(math.nan)
            columns[key] = values
        return columns
    if isinstance(log, Mapping):
        return {
            str(k): [math.nan if v is None else float(v) for v in vals] for k, vals in log.items()
        }
    if isinstance(log, Sequence) and all(isinstance(r, Mapping) for r in log):
        keys: dict[str, None] = {}
        for r in log:
            keys.update(dict.fromkeys(map(str, r)))
        return {k: [math.nan if r.get(k) is None else float(r[k]) for r in log] for k in keys}
    raise InputError(
        "training_curves: log must be a CSV path, a dict of lists or a list of row dicts, "
        f"got {type(log).__name__}"
    )


def training_curves(
    log_csv_or_dict: str | os.PathLike | Mapping[str, Sequence[float]] | Sequence[Mapping],
    path: str | os.PathLike,
    keys: Sequence[str] = ("loss", "val_psnr"),
    *,
    x_key: str | None = None,
    title: str | None = None,
    dpi: int = 100,
    overwrite: bool = True,
) -> Path:
    """Line plots of training-log columns, one subplot per key, against step or epoch.

    Parameters
    ----------
    log_csv_or_dict : path, dict or list of dict
        A CSV file with a header row (empty cells allowed, e.g. validation columns filled
        every N steps), a dict ``{column: values}``, or a list of row dicts.
    path : path
        Output PNG file.
    keys : sequence of str
        Columns to plot. Columns absent from the log are skipped; none present is an error.
    x_key : str, optional
        Column for the horizontal axis; default ``"step"``, else ``"epoch"``, else the row
        number.
    title, dpi, overwrite
        As in :func:`orthogonal_mosaic`.

    Returns
    -------
    Path
    """
    check_output_path(path, overwrite)
    columns = _read_log(log_csv_or_dict)
    present = [k for k in keys if k in columns]
    if not present:
        raise InputError(
            f"training_curves: none of {list(keys)} is in the log (columns: {', '.join(columns)})"
        )
    if x_key is None:
        x_key = next((k for k in ("step", "epoch") if k in columns), None)
    elif x_key not in columns:
        raise InputError(f"training_curves: x_key {x_key!r} is not in the log")
    n = len(columns[present[0]])
    x = np.asarray(columns[x_key], dtype=float) if x_key else np.arange(n, dtype=float)

    fig = Figure(figsize=(4.0 * len(present), 3.0))
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, key in zip(axes, present, strict=True):
        y = np.asarray(columns[key], dtype=float)
        ok = np.isfinite(y) & np.isfinite(x[: len(y)])
        ax.plot(x[: len(y)][ok], y[ok], marker="." if ok.sum() < 50 else None, linewidth=1.2)
        ax.set_xlabel(x_key or "row")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        if key.lower().endswith("loss") and np.all(y[ok] > 0) and ok.sum() > 1:
            ax.set_yscale("log")  # losses span decades
    if title:
        fig.suptitle(title)
    fig.set_layout_engine("constrained")
    return Path(save_figure(fig, path, dpi=dpi, overwrite=overwrite))


def metric_bars(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    path: str | os.PathLike,
    *,
    label_key: str = "method",
    title: str | None = None,
    dpi: int = 100,
    overwrite: bool = True,
) -> Path:
    """Bar chart of one metric per label: the mean over rows sharing a label, +- 1 std if >1.

    Parameters
    ----------
    rows : list of dict
        E.g. one row per (method, subject) with ``{"method": ..., "psnr": ...}``.
    metric : str
        Column to plot.
    path : path
        Output PNG file.
    label_key : str
        Column naming the bars, in first-seen order.
    """
    check_output_path(path, overwrite)
    groups: dict[str, list[float]] = {}
    for row in rows:
        if metric not in row or label_key not in row:
            continue
        value = row[metric]
        if value is None:
            continue
        groups.setdefault(str(row[label_key]), []).append(float(value))
    if not groups:
        raise InputError(f"metric_bars: no row has both {label_key!r} and {metric!r}")
    labels = list(groups)
    means = [float(np.mean(groups[k])) for k in labels]
    stds = [float(np.std(groups[k], ddof=1)) if len(groups[k]) > 1 else 0.0 for k in labels]

    fig = Figure(figsize=(max(3.0, 0.9 * len(labels) + 1.5), 3.2))
    ax = fig.subplots()
    positions = np.arange(len(labels))
    bars = ax.bar(positions, means, yerr=stds if any(stds) else None, capsize=3, color="#4878a8")
    ax.bar_label(bars, fmt="%.4g", fontsize=8, label_type="center", color="white")
    ax.set_xticks(positions, labels, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.grid(True, axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    fig.set_layout_engine("constrained")
    return Path(save_figure(fig, path, dpi=dpi, overwrite=overwrite))
