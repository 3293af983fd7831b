"""Bad DWI inputs for ``mrenhance enhance --model srresnet-dwi-x4`` and ``mrenhance dti``
(issue 9, per task).

The dti task takes a 4D DWI series (x, y, z, n) with one b-value per volume (an FSL
``.bval`` beside the NIfTI), at least one b = 0 volume and, where given, unit gradient
directions (``.bvec``: 3 rows of n, or n rows of 3); ``mrenhance dti`` also needs 6
diffusion-weighted directions and takes a mask on the series' grid. Cases: 3D input,
b-values and b-vectors that disagree with the volumes or are not unit vectors, files that
are not numbers, masks on another grid, outputs onto inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bad_inputs._tasks import batch_case, command_case, enhance_case, nifti, shifted
from bad_inputs.build import Case, case_for, smooth_image

MODEL = "srresnet-dwi-x4"
VOXEL_MM = 2.0
BVALS = "0 1000 1000 1000 1000 1000 1000\n"
BVECS = (
    "0 1 0 0 0.7071 0.7071 0\n"
    "0 0 1 0 0.7071 0 0.7071\n"
    "0 0 0 1 0 0.7071 0.7071\n"
)  # fmt: skip


def _dwi(folder: Path, name: str = "dwi", bvals: str | None = BVALS,
         bvecs: str | None = BVECS, shape: tuple[int, ...] = (12, 14, 4, 7)) -> Path:  # fmt: skip
    """``<name>.nii.gz`` (x, y, z, n) with its ``.bval`` and ``.bvec`` (None: not written)."""
    data = smooth_image(shape)
    data[..., 1:] *= 0.5  # diffusion weighting attenuates
    p = nifti(folder / f"{name}.nii.gz", data, VOXEL_MM)
    if bvals is not None:
        (folder / f"{name}.bval").write_text(bvals)
    if bvecs is not None:
        (folder / f"{name}.bvec").write_text(bvecs)
    return p


def _case(folder: Path, inp: Path, expect: str, names: Path | None = None, **kw) -> Case:
    c = enhance_case(folder, inp, MODEL, expect, names, **kw)
    c.inputs += [q for q in (inp.parent / "dwi.bval", inp.parent / "dwi.bvec") if q.exists()]
    return c


# --------------------------------------------------------------------------- the series


@case_for("dti")
def case_3d_input_to_4d_model(folder: Path) -> Case:
    p = nifti(folder / "b0.nii.gz", smooth_image((12, 14, 4)), VOXEL_MM)
    return _case(folder, p, "dti models need a 4D DWI series (x, y, z, n), got shape (12, 14, 4)")


@case_for("dti")
def case_no_b0_volume(folder: Path) -> Case:
    p = _dwi(folder, bvals="1000 " * 7 + "\n", bvecs=BVECS.replace("0", "1", 1))  # volume 0: x
    return _case(folder, p, "the DWI series has no b = 0 volume")


@case_for("dti")
def case_no_bvals(folder: Path) -> Case:
    p = _dwi(folder, bvals=None, bvecs=None)
    return _case(folder, p, "DWI series has no b-values (put a .bval file beside it)")


# --------------------------------------------------------------------------- .bval


@case_for("dti")
def case_bval_count_differs(folder: Path) -> Case:
    p = _dwi(folder, bvals="0 1000 1000 1000 1000\n")
    return _case(folder, p, "5 b-values for 7 volumes", names=folder / "dwi.bval")


@case_for("dti")
def case_bval_not_numeric(folder: Path) -> Case:
    p = _dwi(folder, bvals="0 1000 1000 b=1000 1000 1000 1000\n")
    return _case(folder, p, ".bval file holds a value that is not a number",
                 names=folder / "dwi.bval")  # fmt: skip


@case_for("dti")
def case_bval_negative(folder: Path) -> Case:
    p = _dwi(folder, bvals="0 1000 -1000 1000 1000 1000 1000\n")
    return _case(folder, p, "b-value -1000 of volume 2 is negative", names=folder / "dwi.bval")


# --------------------------------------------------------------------------- .bvec


@case_for("dti")
def case_bvec_not_unit(folder: Path) -> Case:
    p = _dwi(folder, bvecs=BVECS.replace("0 1 0 0 0.7071", "0 3 0 0 0.7071", 1))
    return _case(folder, p, "the gradient direction of volume 1 (b = 1000) has length 3; "
                 "b-vectors must be unit vectors", names=folder / "dwi.bvec")  # fmt: skip


@case_for("dti")
def case_bvec_zero_for_weighted_volume(folder: Path) -> Case:
    p = _dwi(folder, bvecs=BVECS.replace("0 1 0 0 0.7071", "0 0 0 0 0.7071", 1))
    return _case(folder, p, "the gradient direction of volume 1 (b = 1000) has length 0",
                 names=folder / "dwi.bvec")  # fmt: skip


@case_for("dti")
def case_bvec_wrong_shape(folder: Path) -> Case:
    p = _dwi(folder, bvecs="0 1 0\n0 0 1\n0 0 0\n")
    return _case(folder, p, "expected 3 rows of 7 values (FSL bvecs), got 3 rows of [3]",
                 names=folder / "dwi.bvec")  # fmt: skip


@case_for("dti")
def case_bvec_nan_for_weighted_volume(folder: Path) -> Case:
    p = _dwi(folder, bvecs=BVECS.replace("0 1 0 0 0.7071", "0 nan 0 0 0.7071", 1))
    return _case(folder, p, "NaN/Inf gradient direction for a diffusion-weighted volume",
                 names=folder / "dwi.bvec")  # fmt: skip


# --------------------------------------------------------------------------- batch


@case_for("dti")
def case_batch_one_bad_series(folder: Path) -> Case:
    """Two small DWI series and one whose .bvec is not unit vectors."""
    scans = folder / "scans"
    scans.mkdir()
    shape = (6, 6, 2, 7)
    good = [_dwi(scans, "a", shape=shape), _dwi(scans, "c", shape=shape)]
    bad = _dwi(scans, "b", bvecs=BVECS.replace("0 1 0 0", "0 2 0 0", 1), shape=shape)
    return batch_case(folder, scans, MODEL, bad, "b-vectors must be unit vectors", good,
                      names=scans / "b.bvec")  # fmt: skip


# --------------------------------------------------------------------------- mrenhance dti


def _command(folder: Path, inp: Path, extra: list, expect: str, names, api) -> Case:
    out = folder / "maps"
    inputs = [inp, *(q for q in (folder / "dwi.bval", folder / "dwi.bvec") if q.exists())]
    return command_case(["dti", inp, "-o", out, "-q", *extra], inputs, expect, names, api,
                        outputs=[out])  # fmt: skip


def _load(path: Path):
    from mrenhance.io import load

    return load(path)


@case_for("dti")
def case_command_bvec_not_unit(folder: Path) -> Case:
    """dipy would raise its own ValueError; the .bvec is refused when the series is read."""
    p = _dwi(folder, bvecs=BVECS.replace("0 1 0 0 0.7071", "0 0.5 0 0 0.7071", 1))
    return _command(folder, p, [], "has length 0.5; b-vectors must be unit vectors",
                    folder / "dwi.bvec", api=lambda: _load(p))  # fmt: skip


@case_for("dti")
def case_command_too_few_directions(folder: Path) -> Case:
    from mrenhance.errors import InputError

    p = _dwi(folder, bvals="0 1000 1000 1000\n", bvecs="0 1 0 0\n0 0 1 0\n0 0 0 1\n",
             shape=(12, 14, 4, 4))  # fmt: skip

    def api() -> None:
        vol = _load(p)
        if (np.asarray(vol.meta["bvals"]) > 50).sum() < 6:
            raise InputError(f"{p}: a tensor fit needs b-vectors and >= 6 DW volumes")

    return _command(folder, p, [], "a tensor fit needs b-vectors and >= 6 DW volumes", p, api)


@case_for("dti")
def case_command_mask_on_another_grid(folder: Path) -> Case:
    from mrenhance.io.validate import check_same_grid

    p = _dwi(folder)
    m = shifted(folder / "brain.nii.gz", np.ones((12, 14, 4), np.float32), VOXEL_MM, 4.0)
    c = _command(folder, p, ["--mask", m], "mask is on another grid than", m,
                 api=lambda: check_same_grid(_load(m), _load(p), "mask"))  # fmt: skip
    c.inputs.append(m)
    return c


@case_for("dti")
def case_command_output_is_input(folder: Path) -> Case:
    """``mrenhance dti fa.nii.gz -o . --overwrite`` would write the FA map over the series."""
    from mrenhance.io.paths import check_not_input

    p = _dwi(folder, "fa")
    return command_case(
        ["dti", p, "-o", folder, "-q", "--overwrite"], [p], "output is the input", p,
        api=lambda: check_not_input(folder / "fa.nii.gz", [p]),
    )  # fmt: skip


# --------------------------------------------------------------------------- mrenhance train


@case_for("dti")
def case_train_vgg19_feature_loss_without_weights_file(folder: Path) -> Case:
    """``mrenhance train dti_srgan`` asking for the VGG19 feature loss without the user's
    weights file: nothing is downloaded, and the refusal comes before stage 1 starts (the
    default stage), not hours later at the GAN stage. The tiny overrides keep a regression
    (a run that starts) short."""
    from mrenhance.config import recipe_path
    from mrenhance.training import train_recipe

    overrides = [
        "gan.feature_model={name: vgg19-features}",
        "gan.feature_weight=0.006",
        "model.channels=4",
        "model.n_blocks=1",
        "data.subjects={train: 1, validation: 1, test: 1}",
        "data.shape=[16, 16, 2]",
        "train.patch_size=[4, 4]",
        "train.steps=1",
        "gan.generator_steps=1",
    ]
    run = folder / "run"
    return Case(
        name="",
        argv=["train", "dti_srgan", *overrides, "--run-dir", str(run), "-q"],
        inputs=[],
        expect="gan.feature_model: vgg19-features: no weights file (nothing is downloaded): "
        "set gan.feature_model.weights to a .safetensors",
        names=str(recipe_path("dti_srgan")),
        api=lambda: train_recipe("dti_srgan", overrides, run_dir=run, progress=False),
        outputs=[run],
    )
