"""Bad PVS inputs for ``mrenhance enhance --model dcnn-pvs`` and ``mrenhance pvs`` (issue 9,
per task).

The pvs task takes one finite 3D T2w image (x, y, z) and, optionally, a brain mask on its
grid (``--mask``); ``mrenhance pvs`` also takes a region label image on that grid and a
detection threshold. Cases: 4D input, one slice, NaN, masks of another shape, on another
grid, 4D or empty, options that cannot work and outputs onto inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bad_inputs._tasks import command_case, enhance_case, nifti, shifted
from bad_inputs.build import Case, case_for, smooth_image

MODEL = "dcnn-pvs"
VOXEL_MM = 0.5
SHAPE = (12, 14, 10)


def _t2(path: Path, shape: tuple[int, ...] = SHAPE) -> Path:
    return nifti(path, smooth_image(shape), VOXEL_MM)


def _ones(path: Path, shape: tuple[int, ...] = SHAPE) -> Path:
    return nifti(path, np.ones(shape, np.float32), VOXEL_MM)


def _case(folder: Path, inp: Path, expect: str, names: Path | None = None, **kw) -> Case:
    return enhance_case(folder, inp, MODEL, expect, names, **kw)


def _mask_case(folder: Path, mask: Path, expect: str) -> Case:
    return _case(folder, _t2(folder / "t2.nii.gz"), expect, names=mask, mask=mask)


# --------------------------------------------------------------------------- the image


@case_for("pvs")
def case_4d_input_to_3d_model(folder: Path) -> Case:
    p = _t2(folder / "t2.nii.gz", (*SHAPE, 3))
    return _case(folder, p, "got a 4D series of shape (12, 14, 10, 3); use --per-volume")


@case_for("pvs")
def case_single_slice(folder: Path) -> Case:
    p = _t2(folder / "t2.nii.gz", (12, 14, 1))
    return _case(folder, p, "at least 3 voxels along each axis, got shape (12, 14, 1)")


@case_for("pvs")
def case_nan_voxels(folder: Path) -> Case:
    data = smooth_image(SHAPE)
    data[5, 6, 7] = np.nan
    p = nifti(folder / "t2.nii.gz", data, VOXEL_MM)
    return _case(folder, p, "1 NaN/Inf voxels")


# --------------------------------------------------------------------------- --mask


@case_for("pvs")
def case_mask_other_shape(folder: Path) -> Case:
    m = _ones(folder / "brain.nii.gz", (12, 14, 9))
    return _mask_case(folder, m, "mask shape (12, 14, 9) differs from the image's (12, 14, 10)")


@case_for("pvs")
def case_mask_on_another_grid(folder: Path) -> Case:
    m = shifted(folder / "brain.nii.gz", np.ones(SHAPE, np.float32), VOXEL_MM, shift_mm=3.0)
    return _mask_case(folder, m, "mask is on another grid than")


@case_for("pvs")
def case_mask_empty(folder: Path) -> Case:
    m = nifti(folder / "brain.nii.gz", np.zeros(SHAPE, np.float32), VOXEL_MM)
    return _mask_case(folder, m, "the mask is empty (no voxel > 0)")


@case_for("pvs")
def case_mask_4d(folder: Path) -> Case:
    m = _ones(folder / "brain.nii.gz", (*SHAPE, 2))
    return _mask_case(folder, m, "a mask must be 3D (x, y, z), got shape (12, 14, 10, 2)")


@case_for("pvs")
def case_mask_with_nan(folder: Path) -> Case:
    data = np.ones(SHAPE, np.float32)
    data[0, 0, 0] = np.nan
    m = nifti(folder / "brain.nii.gz", data, VOXEL_MM)
    return _mask_case(folder, m, "1 NaN/Inf voxels")


# --------------------------------------------------------------------------- mrenhance pvs


def _command(folder: Path, extra: list, expect: str, names, api, inputs=()) -> Case:
    """``mrenhance pvs <folder>/t2.nii.gz -o <folder>/pvs_out <extra>``, refused."""
    p = folder / "t2.nii.gz"
    if not p.exists():
        _t2(p)
    out = folder / "pvs_out"
    return command_case(["pvs", p, "-o", out, *extra], [p, *inputs], expect, names, api,
                        outputs=[out])  # fmt: skip


def _grid_api(other: Path, what: str, nonempty: bool = True):
    """The API's refusal of ``other`` (a mask or label image) beside ``t2.nii.gz``."""

    def api() -> None:
        from mrenhance.io import load
        from mrenhance.io.validate import check_same_grid

        image = load(other.parent / "t2.nii.gz")
        check_same_grid(load(other), image, what, nonempty=nonempty)

    return api


@case_for("pvs")
def case_command_mask_on_another_grid(folder: Path) -> Case:
    m = shifted(folder / "brain.nii.gz", np.ones(SHAPE, np.float32), VOXEL_MM, shift_mm=-2.0)
    return _command(folder, ["--mask", m], "mask is on another grid than", m,
                    _grid_api(m, "mask"), [m])  # fmt: skip


@case_for("pvs")
def case_command_regions_on_another_grid(folder: Path) -> Case:
    labels = np.zeros(SHAPE, np.float32)
    labels[2:6], labels[6:10] = 1, 2
    r = shifted(folder / "regions.nii.gz", labels, VOXEL_MM, shift_mm=5.0)
    return _command(folder, ["--regions", r], "label image is on another grid than", r,
                    _grid_api(r, "label image", nonempty=False), [r])  # fmt: skip


@case_for("pvs")
def case_command_threshold_not_a_number(folder: Path) -> Case:
    return _command(folder, ["--threshold", "nan"], "must be a finite number > 0",
                    "--threshold nan", None)  # fmt: skip


@case_for("pvs")
def case_command_min_voxels_zero(folder: Path) -> Case:
    return _command(folder, ["--min-voxels", "0"], "must be >= 1", "--min-voxels 0", None)


@case_for("pvs")
def case_command_model_of_another_task(folder: Path) -> Case:
    return _command(folder, ["--model", "srresnet-dwi-x4"], "a dti model, not a pvs model",
                    "srresnet-dwi-x4", None)  # fmt: skip


@case_for("pvs")
def case_command_output_is_input(folder: Path) -> Case:
    """``mrenhance pvs enhanced.nii.gz -o .`` would write the enhanced image over its input."""
    from mrenhance.io.paths import check_not_input

    p = _t2(folder / "enhanced.nii.gz")
    return command_case(
        ["pvs", p, "-o", folder, "--overwrite"], [p], "output is the input", p,
        api=lambda: check_not_input(folder / "enhanced.nii.gz", [p]),
    )  # fmt: skip
