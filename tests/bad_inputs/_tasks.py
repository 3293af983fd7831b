"""Helpers of the per-task bad-input modules (asl.py, dsc.py, pvs.py, dti.py).

A task's cases run its shipped model by name (``mrenhance enhance IN -o OUT --model
dwan-asl-lfn``) or its own command (``mrenhance perfusion``, ``pvs``, ``dti``). Not a case
module itself (the leading underscore keeps it out of the auto-import).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bad_inputs.build import Case, write_nifti


def nifti(path: Path, data: np.ndarray, voxel_mm: float, tr_s: float | None = None) -> Path:
    """A NIfTI of ``data`` (x, y, z[, t]) with ``voxel_mm`` voxels and, for 4D, a TR."""
    import nibabel as nib

    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -voxel_mm * (np.asarray(data.shape[:3]) - 1) / 2
    if data.ndim != 4 or tr_s is None:
        return write_nifti(path, data, affine)
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((voxel_mm,) * 3 + (tr_s,))
    nib.save(img, str(path))
    return path


def shifted(path: Path, data: np.ndarray, voxel_mm: float, shift_mm: float) -> Path:
    """Like :func:`nifti`, the grid moved ``shift_mm`` along x (same shape, another grid)."""
    import nibabel as nib

    p = nifti(path, data, voxel_mm)
    img = nib.load(str(p))
    affine = img.affine.copy()
    affine[0, 3] += shift_mm
    write_nifti(p, np.asarray(img.dataobj), affine)
    return p


def api_task_enhance(
    inp: Path,
    out: Path,
    model: str,
    *,
    meta: dict[str, Any] | None = None,
    mask: Path | None = None,
    adapt_steps: int = 0,
) -> None:
    """What ``mrenhance enhance inp -o out --model model [--mask ...] [--asl-order ...]
    [--adapt-steps N]`` does, through the Python API."""
    from mrenhance.enhance_api import enhance, resolve_weights
    from mrenhance.io import load, save
    from mrenhance.io.atomic import check_output_path
    from mrenhance.models.weights import load_weights

    load_weights(resolve_weights(model))
    check_output_path(out, False)
    vol = load(inp)
    vol.meta.update(meta or {})
    mask_vol = load(mask) if mask is not None else None
    save(enhance(vol, model, mask=mask_vol, adapt_steps=adapt_steps), out)


def enhance_case(
    folder: Path,
    inp: Path,
    model: str,
    expect: str,
    names: Path | str | None = None,
    *,
    extra: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
    mask: Path | None = None,
    adapt_steps: int = 0,
    api: Callable[[], Any] | None | bool = True,
) -> Case:
    """``mrenhance enhance <inp> -o <folder>/out.nii.gz --model <model> -q <extra>``.

    ``meta``, ``mask`` and ``adapt_steps`` are what ``extra`` means through the API;
    ``api=None``: a command-line mistake with no API equivalent.
    """
    out = folder / "out.nii.gz"
    argv = ["enhance", str(inp), "-o", str(out), "--model", model, "-q", *extra]
    if mask is not None:
        argv += ["--mask", str(mask)]
    if api is True:

        def api() -> None:
            api_task_enhance(inp, out, model, meta=meta, mask=mask, adapt_steps=adapt_steps)

    return Case(
        name="",
        argv=argv,
        inputs=[p for p in (inp, mask) if p is not None],
        expect=expect,
        names=str(inp if names is None else names),
        api=api or None,
        outputs=[out],
    )


def batch_case(
    folder: Path,
    scans: Path,
    model: str,
    bad: Path,
    expect: str,
    good: Sequence[Path],
    names: Path | None = None,
) -> Case:
    """``mrenhance enhance <scans>/ -o <folder>/out/ --model <model> --summary ...``: the one
    ``bad`` entry fails alone (exit 1), each of ``good`` is written."""
    from mrenhance.io.paths import enhanced_name

    out = folder / "out"
    out.mkdir()
    summary = out / "summary.json"
    return Case(
        name="",
        argv=[
            *("enhance", str(scans), "-o", str(out), "--model", model, "-q"),
            "--summary",
            str(summary),
        ],
        inputs=[scans],
        expect=expect,
        names=str(bad if names is None else names),
        api=lambda: api_task_enhance(bad, out / enhanced_name(bad), model),
        rc=1,
        written=[out / enhanced_name(g) for g in good],
        summary=summary,
    )


def command_case(
    argv: list[str],
    inputs: Sequence[Path],
    expect: str,
    names: Path | str,
    api: Callable[[], Any] | None,
    outputs: Sequence[Path] = (),
) -> Case:
    """A task command (``perfusion``, ``pvs``, ``dti``) refused before it writes anything."""
    return Case(
        name="",
        argv=[str(a) for a in argv],
        inputs=list(inputs),
        expect=expect,
        names=str(names),
        api=api,
        outputs=list(outputs),
    )
