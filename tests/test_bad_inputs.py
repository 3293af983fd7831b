"""End to end: every case of the bad-input corpus (tests/bad_inputs/build.py) is refused.

For each case the CLI exits 2 with exactly one stderr line naming the file and the problem
(no traceback, no warning), nothing is written and the inputs are byte-identical; the
Python API raises InputError (or a subclass) with the same message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bad_inputs.build import (
    CASES,
    api_enhance,
    build,
    check_api,
    check_promise,
    make_tiny_weights,
    snapshot,
    write_nifti,
)
from mrenhance.cli import main
from mrenhance.errors import InputError

PREFIX = "mrenhance: error: "

# The issue's list, each mapped to the corpus case(s) that cover it.
REQUIRED = {
    "truncated .nii.gz": ["truncated_nii_gz"],
    "wrong magic": ["wrong_magic"],
    "100000^3 voxels": ["huge_header"],
    "zero-length axis": ["zero_length_axis"],
    "NaN and Inf voxels": ["nan_voxels", "inf_voxels"],
    "2D where 3D is needed": ["2d_image"],
    "5D": ["5d_image"],
    "non-invertible or non-finite affine": ["singular_affine", "nonfinite_affine"],
    "overflow in scl_slope": ["scl_slope_overflow"],
    "DICOM two series": ["dicom_two_series"],
    "DICOM missing slice": ["dicom_missing_slice"],
    "DICOM uneven spacing": ["dicom_uneven_spacing"],
    "DICOM no pixel data": ["dicom_no_pixel_data"],
    "non-DICOM named .dcm": ["non_dicom_named_dcm"],
    "DSC with too few frames": ["dsc_too_few_frames", "dicom_dsc_too_few_frames"],
    "DWI bvals count": ["dwi_bval_count"],
    "unreadable file": ["unreadable_file"],
    "output folder missing": ["output_folder_missing"],
    "output exists without --overwrite": ["output_exists"],
    "weights sha256 mismatch": ["weights_sha256_mismatch"],
    "recipe unknown key / wrong type": ["recipe_unknown_key", "recipe_wrong_type"],
    # the data-loss issue: an output that is, or resolves to, an input (docs/reliability.md)
    "output is an input": ["output_is_input", "summary_is_input", "simulate_output_is_input"],
    "output through a symlink, .., a hard link": [
        "output_symlink_to_input",
        "output_dotdot_to_input",
        "output_through_symlinked_folder",
        "output_hard_link_to_input",
    ],
    "output inside an input folder": [
        "output_inside_dicom_series",
        "output_folder_is_input_folder",
    ],
    "run or report folder over inputs": [
        "train_run_dir_holds_data",
        "demo_output_holds_shipped_weights",
        "evaluate_output_is_weights_card",
    ],
    "two inputs, one output name": [
        "batch_two_inputs_one_output",
        "batch_nii_and_nii_gz_one_output",
    ],
    "output holding NaN/Inf": ["output_holds_nan"],
}


# Issue 9 (reliability, round two): each class mapped to the cases that cover it.
REQUIRED_ROUND_TWO = {
    "FIFO, socket, device as input": [
        "fifo_input", "fifo_info", "socket_input", "character_device_input",
        "fifo_recipe", "fifo_weights", "fifo_model_card", "batch_with_fifo",
    ],
    "YAML alias bombs, deep nesting, huge scalars": [
        "recipe_alias_bomb", "recipe_alias_bomb_in_a_known_key", "recipe_self_alias",
        "recipe_deep_nesting", "recipe_huge_scalar", "recipe_too_large",
        "recipe_override_deep", "card_deeply_nested", "card_too_large",
    ],
    "file names too long or not UTF-8": [
        "input_name_too_long", "input_folder_name_too_long", "output_name_too_long",
        "output_name_leaves_no_room_for_temp", "summary_name_too_long",
        "model_name_too_long", "recipe_name_too_long", "run_dir_name_too_long",
        "non_utf8_name_truncated", "batch_non_utf8_sibling_and_bad_entry",
        "batch_output_name_too_long",
    ],
    "model cards with wrong types or values": [
        "card_inference_not_mapping", "card_negative_architecture_size",
        "card_unknown_task", "card_patch_not_integers", "card_normalisation_not_mapping",
    ],
    "recipes with impossible values": [
        "recipe_steps_zero", "recipe_steps_negative", "recipe_lr_nan", "recipe_lr_negative",
        "recipe_lr_infinite", "recipe_batch_size_zero", "recipe_patch_axes_mismatch",
        "recipe_patch_larger_than_data", "recipe_unknown_loss", "recipe_unknown_model",
        "recipe_unknown_task", "recipe_not_a_mapping",
    ],
    "options: --patch-size axes, --device, argparse": [
        "patch_size_two_axes_for_3d_model", "patch_size_four_axes", "device_banana",
        "device_empty", "device_cuda_missing", "device_cuda_index_out_of_range",
        "device_unsupported_type", "train_device_banana", "argparse_unknown_option",
        "argparse_not_an_int", "argparse_unknown_command",
    ],
    "DICOM series that disagree": [
        "dicom_mixed_modality", "dicom_mixed_matrix", "dicom_mixed_pixel_spacing",
    ],
    "NaN/Inf weights": ["weights_hold_inf"],
    "library warnings": ["library_warning_and_nan_voxels"],
}  # fmt: skip


# Issue 9, its last part: "ASL, DSC, PVS and DTI inputs get the same treatment" (one module
# per task, tests/bad_inputs/<task>.py), each class of the issue mapped to its cases.
REQUIRED_TASKS = {
    "a 3D map given to a 4D model (or 4D to a 3D one)": [
        "dsc_3d_volume_to_stunet", "dti_3d_input_to_4d_model", "pvs_4d_input_to_3d_model",
        "asl_order_given_for_a_3d_map", "asl_5d_series",
    ],
    "a series with too few frames or mismatched timing": [
        "dsc_too_few_frames_for_stunet", "dsc_frame_interval_far_from_training",
        "dsc_sidecar_repetition_time_disagrees", "dsc_sidecar_volume_timing_count",
        "dsc_dicom_uneven_frame_times", "asl_order_does_not_tile_odd_series",
        "asl_adaptation_with_one_pair", "asl_sidecar_slice_timing_mismatch",
        "asl_sidecar_delays_per_volume_mismatch",
    ],
    "b-values/b-vectors that disagree with the volumes or are not unit vectors": [
        "dti_bval_count_differs", "dti_bvec_wrong_shape", "dti_bvec_not_unit",
        "dti_bvec_zero_for_weighted_volume", "dti_command_bvec_not_unit", "dti_no_b0_volume",
        "dti_bval_not_numeric", "dti_bval_negative",
    ],
    "label/control order files that do not match the series": [
        "asl_aslcontext_row_count", "asl_aslcontext_unknown_label", "asl_aslcontext_unpaired",
        "asl_aslcontext_without_header", "asl_aslcontext_not_utf8",
        "asl_order_unknown_volume_type",
    ],
    "AIF (and other) masks on another grid": [
        "dsc_perfusion_aif_mask_on_another_grid", "dsc_perfusion_aif_mask_other_shape",
        "pvs_mask_on_another_grid", "pvs_command_mask_on_another_grid",
        "pvs_command_regions_on_another_grid", "dti_command_mask_on_another_grid",
    ],
    "a batch with one bad entry": [
        "asl_batch_one_bad_series", "dsc_batch_one_bad_series", "dti_batch_one_bad_series",
    ],
    "a task command's output onto its input": [
        "dsc_perfusion_output_is_input", "pvs_command_output_is_input",
        "dti_command_output_is_input",
    ],
}  # fmt: skip


def test_corpus_covers_the_issue_and_has_at_least_25_cases():
    missing = [k for k, names in REQUIRED.items() if not all(n in CASES for n in names)]
    assert not missing
    assert len(CASES) >= 25


def test_corpus_covers_round_two_with_at_least_40_new_cases():
    from bad_inputs import hostile

    names = [n for ns in REQUIRED_ROUND_TWO.values() for n in ns]
    assert [n for n in names if n not in CASES] == []
    new = [n for n, fn in CASES.items() if fn.__module__ == hostile.__name__]
    assert sorted(names) == sorted(new)  # each new case is listed under its class
    assert len(new) >= 40


def test_corpus_covers_each_task_with_at_least_5_cases():
    from bad_inputs import asl, dsc, dti, pvs

    assert [n for ns in REQUIRED_TASKS.values() for n in ns if n not in CASES] == []
    for module in (asl, dsc, dti, pvs):
        task = module.__name__.rsplit(".", 1)[1]
        names = [n for n, fn in CASES.items() if fn.__module__ == module.__name__]
        assert len(names) >= 5 and all(n.startswith(f"{task}_") for n in names), task


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str, list]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's errors exit like the installed command
            rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err, caught


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_by_cli_and_api(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    c = build(name, tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)

    rc, out, err, caught = _run_cli(c.argv, capsys)

    problems = check_promise(c, tmp_path, before, snapshot(tmp_path), rc, out, err)
    assert problems == [], err
    assert [str(w.message) for w in caught] == []  # a warning would print more lines
    assert check_api(c, err.splitlines()[0]) == []


def test_huge_header_is_refused_before_any_allocation(tmp_path: Path):
    from mrenhance.io import load

    c = build("huge_header", tmp_path)
    huge = Path(c.argv[1])
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="more than the limit"):
            load(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # bytes: the header is read, no array of the claimed size


def test_max_voxels_refuses_a_real_image_before_reading_its_data(tmp_path: Path):
    from mrenhance.io import load

    p = write_nifti(tmp_path / "big.nii", np.zeros((64, 64, 64), np.float32))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="262144 voxels, more than the limit of 1000"):
            load(p, max_voxels=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64**3  # bytes: a quarter of one float32 copy of the data (1 MiB)


# ---------------------------------------------------------------------------- NaN policy


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


def test_nan_policy_zero_is_accepted_and_recorded_in_the_output(
    tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
):
    c = build("nan_voxels", tmp_path)
    nan_file = Path(c.argv[1])
    out = tmp_path / "fixed.nii.gz"

    rc, _, err, _ = _run_cli(
        [
            "enhance",
            str(nan_file),
            "-o",
            str(out),
            "--model",
            str(tiny_weights),
            "-q",
            "--nan-policy",
            "zero",
        ],  # fmt: skip
        capsys,
    )

    assert rc == 0, err
    img = nib.load(out)
    assert np.isfinite(img.get_fdata()).all()
    descrip = img.header["descrip"].tobytes().decode()
    assert "nan_policy=zero: replaced 3 non-finite voxels" in descrip


def test_nan_policy_zero_through_the_api_keeps_the_step_in_provenance(
    tmp_path: Path, tiny_weights: Path
):
    from mrenhance.enhance_api import enhance
    from mrenhance.io import load

    c = build("inf_voxels", tmp_path)
    vol = load(Path(c.argv[1]), nan_policy="zero")
    result = enhance(vol, tiny_weights)

    steps = result.meta["provenance"]
    assert "nan_policy=zero: replaced 2 non-finite voxels" in steps
    assert steps[-1].startswith("enhance model=tiny")
    assert np.isfinite(result.data).all()
    with pytest.raises(InputError, match="2 NaN/Inf voxels"):
        api_enhance(Path(c.argv[1]), tmp_path / "o.nii.gz", tiny_weights)


# ---------------------------------------------------------------------------- real processes

SUBPROCESS_CASES = [
    "truncated_nii_gz",
    "dicom_two_series",
    "weights_sha256_mismatch",
    "recipe_unknown_key",
    "checkpoint_pickle_with_code",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_refused_by_the_installed_command(name: str, tmp_path: Path):
    """The same promise from a fresh ``python -m mrenhance`` process (real exit code)."""
    c = build(name, tmp_path)
    before = snapshot(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}

    proc = subprocess.run(
        [sys.executable, "-m", "mrenhance", *c.argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )

    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), proc.stderr
    assert c.names in lines[0] and c.expect in lines[0]
    after = snapshot(tmp_path)
    changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
    assert [k for k in changed if k not in c.may_change] == []
    if c.check is not None:
        c.check()


# ---------------------------------------------------------------------------- good series


def test_info_expect_accepts_good_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from bad_inputs.build import smooth_image

    t1 = write_nifti(tmp_path / "t1.nii.gz", smooth_image())
    dsc = write_nifti(tmp_path / "dsc.nii.gz", smooth_image((8, 8, 6, 10)))
    dwi = write_nifti(tmp_path / "dwi.nii.gz", smooth_image((8, 8, 6, 4)))
    (tmp_path / "dwi.bval").write_text("0 1000 1000 1000\n")
    (tmp_path / "dwi.bvec").write_text("0 1 0 0\n0 0 1 0\n0 0 0 1\n")

    codes = {kind: main(["info", str(p), "--expect", kind])
             for kind, p in (("t1", t1), ("dsc", dsc), ("dwi", dwi))}  # fmt: skip

    out = capsys.readouterr().out
    assert codes == {"t1": 0, "dsc": 0, "dwi": 0}
    assert "bvals        [0.0, 1000.0, 1000.0, 1000.0]" in out


def test_check_series_refuses_bvecs_of_the_wrong_shape():
    from mrenhance.io.validate import check_series
    from mrenhance.volume import Volume

    vol = Volume(np.zeros((4, 4, 4, 3), np.float32), np.eye(4), {"source": "dwi.nii.gz"})
    vol.meta["bvals"] = np.array([0.0, 1000.0, 1000.0])
    vol.meta["bvecs"] = np.zeros((3, 2))

    with pytest.raises(InputError, match=r"dwi.nii.gz: gradient directions have shape \(3, 2\)"):
        check_series(vol, "dwi")
    vol.meta["bvecs"] = np.array([[0.0, 0, 0], [1, 0, 0], [0, 0.6, 0.8]])
    assert check_series(vol, "dwi") is vol
    vol.meta["bvecs"] = np.zeros((3, 3))  # a diffusion-weighted volume needs a direction
    with pytest.raises(InputError, match="volume 1 .b = 1000. has length 0; b-vectors must"):
        check_series(vol, "dwi")
    with pytest.raises(InputError, match="unknown series kind 'dti'"):
        check_series(vol, "dti")
