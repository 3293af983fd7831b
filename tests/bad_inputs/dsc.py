"""Bad DSC inputs for ``mrenhance enhance --model stunet-dsc-cbv`` and ``mrenhance perfusion``
(issue 9, per task).

The dsc task takes a 4D DSC series (x, y, z, t) of at least 10 frames with one frame
interval (NIfTI header TR, or DICOM frame times), near the 1 s frames the shipped networks
were trained on; ``perfusion`` also takes AIF and brain masks on the series' grid. Cases: 3D
volumes, too few frames, timing that disagrees (frame interval, a JSON sidecar, uneven
DICOM frame times), a series without a bolus, masks on another grid, outputs onto inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bad_inputs._tasks import batch_case, command_case, enhance_case, nifti, shifted
from bad_inputs.build import Case, case_for

MODEL = "stunet-dsc-cbv"
VOXEL_MM = 3.0


def _signal(n_frames: int = 20, seed: int = 0) -> np.ndarray:
    """A small DSC series (16, 16, 3, n_frames) with a bolus passage (the task's example)."""
    from mrenhance.tasks.dsc import DSCTask

    data = DSCTask().example_input(np.random.default_rng(seed)).data
    return np.ascontiguousarray(np.resize(data, (*data.shape[:3], n_frames)), np.float32)


def _series(path: Path, n_frames: int = 20, tr_s: float = 1.0, seed: int = 0) -> Path:
    return nifti(path, _signal(n_frames, seed), VOXEL_MM, tr_s=tr_s)


def _case(folder: Path, inp: Path, expect: str, names: Path | None = None, **kw) -> Case:
    return enhance_case(folder, inp, MODEL, expect, names, **kw)


def _perfusion(folder: Path, inp: Path, extra: list, expect: str, names, api) -> Case:
    out = folder / "maps"
    return command_case(["perfusion", inp, "-o", out, *extra], [inp], expect, names, api,
                        outputs=[out])  # fmt: skip


def _load(path: Path):
    from mrenhance.io import load

    return load(path)


# --------------------------------------------------------------------------- enhance


@case_for("dsc")
def case_3d_volume_to_stunet(folder: Path) -> Case:
    p = nifti(folder / "cbv.nii.gz", _signal()[..., 0], VOXEL_MM)
    return _case(folder, p, "dsc models need a 4D DSC series (x, y, z, t), got shape (16, 16, 3)")


@case_for("dsc")
def case_too_few_frames_for_stunet(folder: Path) -> Case:
    p = _series(folder / "dsc.nii.gz", n_frames=6)
    return _case(folder, p, "DSC series has 6 time frames, at least 10 are needed")


@case_for("dsc")
def case_frame_interval_far_from_training(folder: Path) -> Case:
    p = _series(folder / "dsc.nii.gz", tr_s=25.0)
    return _case(folder, p, "frame interval 25 s, but stunet-dsc-cbv was trained on series "
                 "with 1 s frames")  # fmt: skip


@case_for("dsc")
def case_sidecar_repetition_time_disagrees(folder: Path) -> Case:
    p = _series(folder / "dsc.nii.gz", tr_s=1.0)
    side = folder / "dsc.json"
    side.write_text(json.dumps({"RepetitionTime": 1.6, "EchoTime": 0.03}))
    return _case(folder, p, "RepetitionTime 1.6 s differs from the frame interval 1 s",
                 names=side)  # fmt: skip


@case_for("dsc")
def case_sidecar_volume_timing_count(folder: Path) -> Case:
    p = _series(folder / "dsc.nii.gz")
    side = folder / "dsc.json"
    side.write_text(json.dumps({"RepetitionTime": 1.0, "VolumeTiming": [0.0, 1.0, 2.0, 3.0]}))
    return _case(folder, p, "VolumeTiming lists 4 times, the series has 20 frames", names=side)


@case_for("dsc")
def case_dicom_uneven_frame_times(folder: Path) -> Case:
    """A DICOM series whose 12 volumes were not acquired at one rate (a pause after 6)."""
    from dicom_factory import write_series

    d = folder / "dsc_dicom"
    d.mkdir()
    times = [0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14]
    data = np.resize(_signal(12)[:10, :12], (10, 12, 3, 12))
    write_series(d, data, np.diag([VOXEL_MM] * 3 + [1.0]), times=times, tr_ms=1000.0)
    return _case(folder, d, "uneven frame times (intervals 1 to 4 s)")


@case_for("dsc")
def case_series_without_bolus(folder: Path) -> Case:
    """Every frame the same: the contrast never arrives (a failed injection)."""
    data = np.repeat(_signal()[..., :1], 20, axis=-1)
    p = nifti(folder / "dsc.nii.gz", data, VOXEL_MM, tr_s=1.0)
    return _case(folder, p, "does not change over time (every frame is the same")


@case_for("dsc")
def case_mask_for_a_task_without_masks(folder: Path) -> Case:
    p = _series(folder / "dsc.nii.gz")
    m = nifti(folder / "brain.nii.gz", np.ones((16, 16, 3), np.float32), VOXEL_MM)
    return _case(folder, p, "--mask: task dsc does not take a mask", names="--mask", mask=m)


@case_for("dsc")
def case_batch_one_bad_series(folder: Path) -> Case:
    scans = folder / "scans"
    scans.mkdir()
    good = [_series(scans / "a.nii.gz"), _series(scans / "c.nii.gz", seed=1)]
    bad = _series(scans / "b.nii.gz", n_frames=5)
    return batch_case(folder, scans, MODEL, bad, "DSC series has 5 time frames", good)


# --------------------------------------------------------------------------- perfusion


def _aif_mask_case(folder: Path, mask: Path, expect: str) -> Case:
    from mrenhance.io.validate import check_same_grid

    p = _series(folder / "dsc.nii.gz")
    c = _perfusion(folder, p, ["--aif-mask", mask], expect, mask,
                   api=lambda: check_same_grid(_load(mask), _load(p), "AIF mask"))  # fmt: skip
    c.inputs.append(mask)
    return c


def _aif_voxels() -> np.ndarray:
    m = np.zeros((16, 16, 3), np.float32)
    m[7:9, 7:9, 1] = 1
    return m


@case_for("dsc")
def case_perfusion_aif_mask_on_another_grid(folder: Path) -> Case:
    m = shifted(folder / "aif.nii.gz", _aif_voxels(), VOXEL_MM, shift_mm=12.0)
    return _aif_mask_case(folder, m, "AIF mask is on another grid than")


@case_for("dsc")
def case_perfusion_aif_mask_other_shape(folder: Path) -> Case:
    m = nifti(folder / "aif.nii.gz", np.ones((16, 16, 4), np.float32), VOXEL_MM)
    return _aif_mask_case(folder, m, "AIF mask shape (16, 16, 4) differs from the image's")


@case_for("dsc")
def case_perfusion_aif_mask_empty(folder: Path) -> Case:
    m = nifti(folder / "aif.nii.gz", np.zeros((16, 16, 3), np.float32), VOXEL_MM)
    return _aif_mask_case(folder, m, "the AIF mask is empty")


@case_for("dsc")
def case_perfusion_output_is_input(folder: Path) -> Case:
    """``perfusion cbv.nii.gz -o .`` would write its CBV map over the series."""
    from mrenhance.io.paths import check_not_input

    p = _series(folder / "cbv.nii.gz")
    return command_case(
        ["perfusion", p, "-o", folder, "--overwrite"], [p], "output is the input", p,
        api=lambda: check_not_input(folder / "cbv.nii.gz", [p]),
    )  # fmt: skip


@case_for("dsc")
def case_perfusion_negative_tr(folder: Path) -> Case:
    p = _series(folder / "dsc.nii.gz")
    return _perfusion(folder, p, ["--tr", "-1"], "must be a time in seconds > 0", "--tr -1",
                      api=None)  # fmt: skip


@case_for("dsc")
def case_perfusion_series_without_bolus(folder: Path) -> Case:
    from mrenhance.io.validate import check_series

    p = nifti(folder / "dsc.nii.gz", np.repeat(_signal()[..., :1], 20, -1), VOXEL_MM, tr_s=1.0)
    return _perfusion(folder, p, [], "does not change over time", p,
                      api=lambda: check_series(_load(p), "dsc"))  # fmt: skip
