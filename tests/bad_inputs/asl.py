"""Bad ASL inputs for ``mrenhance enhance --model dwan-asl-lfn`` (issue 9, per task).

The asl task takes a 3D CBF map or a 4D series (x, y, z, t): label/control images when a
BIDS ``*_aslcontext.tsv`` lies beside a ``*_asl.nii.gz`` or ``--asl-order`` is given, else
per-pair CBF maps; the ``*_asl.json`` sidecar gives the timing of the quantification.
Cases: orders and contexts that do not fit the series, a raw label/control series with no
volume types (which would be read as CBF maps), a missing or misfit separate M0 scan,
sidecars the quantification cannot use, adaptation with one pair, ``asl-simulate`` option
values and outputs refused before any simulation, and the generic refusals on an ASL grid
(4 mm voxels, so the field of view passes the task's 40 mm minimum).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bad_inputs._tasks import batch_case, command_case, enhance_case, nifti
from bad_inputs.build import Case, case_for, smooth_image

MODEL = "dwan-asl-lfn"
VOXEL_MM = 4.0  # 12 x 14 voxels: a 48 x 56 mm field of view


def _cbf_map(path: Path, seed: int = 0) -> Path:
    return nifti(path, 0.6 * smooth_image((12, 14, 10), seed=seed), VOXEL_MM)


def _series(folder: Path, name: str = "asl.nii.gz", n: int = 6) -> Path:
    """A 4D label/control-like series, (12, 14, 10, n)."""
    data = smooth_image((12, 14, 10, n)) + 100.0
    data[..., 1::2] *= 0.99  # every second volume a little darker, as a label image
    return nifti(folder / name, data, VOXEL_MM, tr_s=4.0)


def _bids(folder: Path, types: list[str] | None = None, n: int = 6, sidecar=None) -> Path:
    """``sub-01_asl.nii.gz`` with its ``_aslcontext.tsv`` (``types``) and ``_asl.json``."""
    p = _series(folder, "sub-01_asl.nii.gz", n)
    types = ["control", "label"] * (n // 2) if types is None else types
    (folder / "sub-01_aslcontext.tsv").write_text("volume_type\n" + "\n".join(types) + "\n")
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        (folder / "sub-01_asl.json").write_text(text)
    return p


def _case(folder: Path, inp: Path, expect: str, names: Path | None = None, **kw) -> Case:
    return enhance_case(folder, inp, MODEL, expect, names, **kw)


# --------------------------------------------------------------------------- 3D or 4D


@case_for("asl")
def case_order_given_for_a_3d_map(folder: Path) -> Case:
    """``--asl-order`` says label/control pairs, the file is one 3D CBF map."""
    p = _cbf_map(folder / "cbf.nii.gz")
    return _case(folder, p, "describes a 4D label/control series, but this is a 3D image",
                 extra=("--asl-order", "control,label"),
                 meta={"asl_order": "control,label"})  # fmt: skip


@case_for("asl")
def case_5d_series(folder: Path) -> Case:
    p = nifti(folder / "asl5d.nii.gz", np.ones((12, 14, 10, 2, 2), np.float32), VOXEL_MM)
    return _case(folder, p, "expected a 3D or 4D image, got shape (12, 14, 10, 2, 2)")


@case_for("asl")
def case_field_of_view_too_small(folder: Path) -> Case:
    p = nifti(folder / "cbf.nii.gz", smooth_image((12, 14, 10)), 1.0)  # 12 x 14 mm
    return _case(folder, p, "in-plane field of view 12 x 14 mm is too small")


@case_for("asl")
def case_nan_in_series(folder: Path) -> Case:
    import nibabel as nib

    p = _series(folder)
    img = nib.load(str(p))
    data = np.asarray(img.dataobj, np.float32)
    data[3, 4, 5, 2] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(p))
    return _case(folder, p, "1 NaN/Inf voxels", extra=("--asl-order", "control,label"),
                 meta={"asl_order": "control,label"})  # fmt: skip


# --------------------------------------------------------------------------- volume order


@case_for("asl")
def case_order_does_not_tile_odd_series(folder: Path) -> Case:
    p = _series(folder, n=7)
    return _case(folder, p, "--asl-order 'control,label' does not tile the 7 volumes",
                 extra=("--asl-order", "control,label"),
                 meta={"asl_order": "control,label"})  # fmt: skip


@case_for("asl")
def case_order_unknown_volume_type(folder: Path) -> Case:
    p = _series(folder)
    return _case(folder, p, "--asl-order 'ctrl,label': use e.g. control,label",
                 extra=("--asl-order", "ctrl,label"), meta={"asl_order": "ctrl,label"})  # fmt: skip


@case_for("asl")
def case_order_for_a_model_of_another_task(folder: Path) -> Case:
    """``--asl-order`` with an SR model would be ignored: refused before any image."""
    p = _series(folder)
    return enhance_case(folder, p, "mdcsrn-b4u4", "mdcsrn-b4u4 is a sr_t1 model",
                        names="--asl-order", extra=("--asl-order", "control,label"),
                        api=None)  # fmt: skip


@case_for("asl")
def case_adaptation_with_one_pair(folder: Path) -> Case:
    """``--adapt`` learns from the series' own repeats: one pair has nothing to split."""
    p = _series(folder, n=2)
    return _case(folder, p, "adaptation needs at least 2 pairs, got 1",
                 extra=("--asl-order", "control,label", "--adapt-steps", "1"),
                 meta={"asl_order": "control,label"}, adapt_steps=1)  # fmt: skip


@case_for("asl")
def case_raw_series_without_context(folder: Path) -> Case:
    """Label/control images with no aslcontext.tsv and no ``--asl-order``: read as per-pair
    CBF maps they gave exit 0 and ~7 ml/100 g/min of garbage."""
    p = _series(folder, "series.nii.gz")
    return _case(folder, p, "looks like label/control images, not per-pair CBF maps")


# --------------------------------------------------------------------------- aslcontext.tsv


@case_for("asl")
def case_aslcontext_row_count(folder: Path) -> Case:
    p = _bids(folder, ["control", "label", "control", "label"])  # 4 rows, 6 volumes
    tsv = folder / "sub-01_aslcontext.tsv"
    return _case(folder, p, "lists 4 volumes, sub-01_asl.nii.gz has 6", names=tsv)


@case_for("asl")
def case_aslcontext_unknown_label(folder: Path) -> Case:
    p = _bids(folder, ["control", "label", "control", "label", "control", "tag"])
    tsv = folder / "sub-01_aslcontext.tsv"
    return _case(folder, p, "unknown volume_type 'tag'", names=tsv)


@case_for("asl")
def case_aslcontext_unpaired(folder: Path) -> Case:
    p = _bids(folder, ["control", "label", "control", "label", "control", "control"])
    return _case(folder, p, "4 control and 2 label volumes; they must pair up")


@case_for("asl")
def case_aslcontext_without_header(folder: Path) -> Case:
    p = _bids(folder)
    tsv = folder / "sub-01_aslcontext.tsv"
    tsv.write_text("control\nlabel\ncontrol\nlabel\ncontrol\nlabel\n")
    return _case(folder, p, "expected a 'volume_type' header", names=tsv)


@case_for("asl")
def case_aslcontext_not_utf8(folder: Path) -> Case:
    p = _bids(folder)
    tsv = folder / "sub-01_aslcontext.tsv"
    tsv.write_bytes(b"volume_type\ncontr\xf4le\nlabel\n")
    return _case(folder, p, "not UTF-8 text", names=tsv)


@case_for("asl")
def case_deltam_series_without_m0(folder: Path) -> Case:
    p = _bids(folder, ["deltam"] * 6)
    return _case(folder, p, "deltam series need an M0")


@case_for("asl")
def case_separate_m0_missing(folder: Path) -> Case:
    """The sidecar says ``M0Type: Separate``, no ``sub-01_m0scan.nii.gz`` lies beside it."""
    p = _bids(folder, sidecar={"M0Type": "Separate"})
    return _case(folder, p, "M0Type is Separate but no *_m0scan.nii[.gz] lies beside it")


@case_for("asl")
def case_separate_m0_on_another_grid(folder: Path) -> Case:
    """``sub-01_m0scan.nii.gz`` has another matrix than the series."""
    p = _bids(folder, sidecar={"M0Type": "Separate"})
    m0 = nifti(folder / "sub-01_m0scan.nii.gz", 100.0 + smooth_image((10, 14, 10)), VOXEL_MM)
    return _case(folder, p, "M0 scan shape (10, 14, 10) differs from the image's (12, 14, 10)",
                 names=m0)  # fmt: skip


# --------------------------------------------------------------------------- asl.json


def _sidecar_case(folder: Path, sidecar, expect: str) -> Case:
    p = _bids(folder, sidecar=sidecar)
    return _case(folder, p, expect, names=folder / "sub-01_asl.json")


@case_for("asl")
def case_sidecar_delay_not_a_number(folder: Path) -> Case:
    return _sidecar_case(folder, {"PostLabelingDelay": "soon"},
                         "PostLabelingDelay 'soon': expected a time in seconds")  # fmt: skip


@case_for("asl")
def case_sidecar_negative_delay(folder: Path) -> Case:
    return _sidecar_case(folder, {"PostLabelingDelay": -1.5},
                         "PostLabelingDelay -1.5: expected a time in seconds >= 0")  # fmt: skip


@case_for("asl")
def case_sidecar_delays_per_volume_mismatch(folder: Path) -> Case:
    return _sidecar_case(folder, {"PostLabelingDelay": [1.5, 1.8]},
                         "PostLabelingDelay lists 2 values for 6 volumes")  # fmt: skip


@case_for("asl")
def case_sidecar_slice_timing_mismatch(folder: Path) -> Case:
    return _sidecar_case(folder, {"SliceTiming": [0.0, 0.04, 0.08]},
                         "SliceTiming lists 3 values for 10 slices")  # fmt: skip


@case_for("asl")
def case_sidecar_labelling_efficiency_zero(folder: Path) -> Case:
    return _sidecar_case(folder, {"LabelingEfficiency": 0},
                         "LabelingEfficiency 0: expected a value in (0, 1]")  # fmt: skip


@case_for("asl")
def case_sidecar_not_an_object(folder: Path) -> Case:
    return _sidecar_case(folder, "[1.5, 1.5]", "expected a JSON object, got list")


# --------------------------------------------------------------------------- batch


@case_for("asl")
def case_batch_one_bad_series(folder: Path) -> Case:
    """Two CBF maps and a BIDS series whose aslcontext.tsv lists too few volumes."""
    scans = folder / "scans"
    scans.mkdir()
    good = [_cbf_map(scans / "a.nii.gz"), _cbf_map(scans / "c.nii.gz", seed=1)]
    bad = _bids(scans, ["control", "label"])
    tsv = scans / "sub-01_aslcontext.tsv"
    return batch_case(folder, scans, MODEL, bad, "lists 2 volumes", good, names=tsv)


# --------------------------------------------------------------------------- asl-simulate


def _simulate_case(folder: Path, extra: list[str], expect: str, names: str, inputs=()) -> Case:
    """``mrenhance asl-simulate -o <folder>/bids <extra>``: refused before any simulation."""
    import argparse

    from mrenhance.tasks import _asl_cli

    out = folder / "bids"
    argv = ["asl-simulate", "-o", str(out), "-q", *extra]
    parser = argparse.ArgumentParser()
    _asl_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args([a for a in argv if a != "-q"])
    args.quiet = True
    outputs = [] if out.exists() else [out]
    return command_case(argv, inputs, expect, names, lambda: _asl_cli.check_options(args),
                        outputs=outputs + _asl_cli.output_paths(out, 1))  # fmt: skip


@case_for("asl")
def case_simulate_outlier_fraction_above_one(folder: Path) -> Case:
    return _simulate_case(folder, ["--outlier-fraction", "1.5"], "must be in [0, 1]",
                          "--outlier-fraction 1.5")  # fmt: skip


@case_for("asl")
def case_simulate_negative_thermal_noise(folder: Path) -> Case:
    return _simulate_case(folder, ["--thermal-noise", "-0.01"], "must be in [0, 1)",
                          "--thermal-noise -0.01")  # fmt: skip


@case_for("asl")
def case_simulate_too_many_subjects(folder: Path) -> Case:
    return _simulate_case(folder, ["--subjects", "100000"], "must be in 1..999",
                          "--subjects 100000")  # fmt: skip


@case_for("asl")
def case_simulate_later_subject_exists(folder: Path) -> Case:
    """``--subjects 2`` where sub-02 exists: it wrote all of sub-01, then exited 2."""
    perf = folder / "bids" / "sub-02" / "perf"
    perf.mkdir(parents=True)
    existing = perf / "sub-02_asl.nii.gz"
    _series(perf, existing.name)
    return _simulate_case(folder, ["--subjects", "2"], "output exists (use --overwrite",
                          str(existing), inputs=[existing])  # fmt: skip
