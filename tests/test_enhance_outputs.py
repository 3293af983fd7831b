"""``mrenhance enhance`` outputs that drop into pipelines (issue #15): ``--format dicom``,
``--dtype``, cal_min/cal_max, ``--per-volume``, the training voxel-size warning and
``--resample``. A tiny random-weights mDCSRN keeps each run well under a second."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from bad_inputs.build import TINY_INFERENCE, smooth_image, write_nifti
from dicom_factory import write_series
from mrenhance.cli import main
from mrenhance.io import load


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sr_t1 network whose card says it was trained on 1 mm voxels."""
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.card import DEFAULT_NORMALISATION
    from mrenhance.models.weights import save_weights

    torch.manual_seed(0)
    card = {
        "task": "sr_t1",
        "inference": TINY_INFERENCE,
        "preprocessing": {"normalisation": DEFAULT_NORMALISATION, "voxel_size_mm": [1, 1, 1]},
    }
    folder = tmp_path_factory.mktemp("weights")
    return save_weights(create_model("mdcsrn-b2u4", growth=4), folder / "tiny1mm.safetensors", card)


def _enhance(src: Path, dst: Path, weights: Path, *options: str) -> int:
    """``mrenhance enhance SRC -o DST --model WEIGHTS OPTIONS...``; its exit code."""
    return main(["enhance", str(src), "-o", str(dst), "--model", str(weights), *options])


def _dicom_input(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    folder.mkdir()
    affine = np.diag([1.0, 1.1, 1.2, 1.0])
    affine[:3, 3] = [-10.0, 12.0, 30.0]
    write_series(folder, smooth_image((20, 18, 12)) * 10, affine, series_description="t1")
    return folder


# ------------------------------------------------------------------------- --format dicom
def test_dicom_in_dicom_out_is_the_nifti_result_within_the_rescale_step(tmp_path, weights):
    series = _dicom_input(tmp_path)

    assert _enhance(series, tmp_path / "sr_dicom", weights, "--format", "dicom", "-q") == 0
    assert _enhance(series, tmp_path / "sr.nii.gz", weights, "-q") == 0
    as_dicom, as_nifti, original = (
        load(tmp_path / "sr_dicom"),
        load(tmp_path / "sr.nii.gz"),
        load(series),
    )

    first = pydicom.dcmread(sorted((tmp_path / "sr_dicom").iterdir())[0])
    assert np.abs(as_dicom.data - as_nifti.data).max() <= float(first.RescaleSlope) / 2 + 1e-3
    np.testing.assert_allclose(as_dicom.affine, original.affine, atol=1e-5)
    assert first.SeriesInstanceUID != original.meta["series_uid"]
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.SeriesDescription == "t1 mrenhance tiny1mm"
    sidecar = json.loads((tmp_path / "sr_dicom.json").read_text())
    assert sidecar["mrenhance"]["parameters"]["format"] == "dicom"


def test_nifti_in_dicom_out_keeps_the_grid(tmp_path, weights):
    nifti = write_nifti(tmp_path / "t1.nii.gz", smooth_image((20, 18, 12)))

    assert _enhance(nifti, tmp_path / "sr", weights, "--format", "dicom", "-q") == 0

    back = load(tmp_path / "sr")
    np.testing.assert_allclose(back.affine, load(nifti).affine, atol=1e-5)
    assert back.shape == (20, 18, 12) and len(os.listdir(tmp_path / "sr")) == 12


def test_an_existing_output_folder_gets_a_series_folder_named_after_the_input(tmp_path, weights):
    series = _dicom_input(tmp_path)
    (tmp_path / "out").mkdir()

    assert _enhance(series, tmp_path / "out", weights, "--format", "dicom", "-q") == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["series_enhanced", "series_enhanced.json"]


def test_a_dicom_output_is_never_written_into_its_input_series(tmp_path, weights, capsys):
    series = _dicom_input(tmp_path)
    before = sorted(os.listdir(series))

    code = _enhance(series, series / "sr", weights, "--format", "dicom")

    assert code == 2 and "inside the input folder" in capsys.readouterr().err
    assert sorted(os.listdir(series)) == before


def test_format_dicom_with_a_nifti_name_is_refused_before_any_work(tmp_path, weights, capsys):
    series = _dicom_input(tmp_path)
    code = _enhance(series, tmp_path / "sr.nii.gz", weights, "--format", "dicom")
    assert code == 2 and "series folder" in capsys.readouterr().err
    assert not (tmp_path / "sr.nii.gz").exists()


# --------------------------------------------------------------------- --dtype, cal_min/max
def test_dtype_input_keeps_int16_with_a_slope(tmp_path, weights):
    src = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.round(smooth_image((20, 18, 12)) * 30).astype(np.int16), None), src)

    assert _enhance(src, tmp_path / "float.nii.gz", weights, "-q") == 0
    assert _enhance(src, tmp_path / "int.nii.gz", weights, "--dtype", "input", "-q") == 0

    as_float, as_int = nib.load(tmp_path / "float.nii.gz"), nib.load(tmp_path / "int.nii.gz")
    assert as_float.get_data_dtype() == np.float32  # the default
    assert as_int.get_data_dtype() == np.int16
    slope = float(as_int.dataobj.slope)
    assert slope != 1.0
    assert np.abs(as_int.get_fdata() - as_float.get_fdata()).max() <= slope / 2 + 1e-3


def test_cal_min_and_cal_max_are_the_range_of_the_written_data(tmp_path, weights):
    write_nifti(tmp_path / "t1.nii.gz", smooth_image((20, 18, 12)))
    assert _enhance(tmp_path / "t1.nii.gz", tmp_path / "sr.nii.gz", weights, "-q") == 0

    img = nib.load(tmp_path / "sr.nii.gz")
    data = img.get_fdata()
    assert img.header["cal_min"] == pytest.approx(data.min(), rel=1e-6)
    assert img.header["cal_max"] == pytest.approx(data.max(), rel=1e-6)


# --------------------------------------------------------------------------- --per-volume
def test_a_4d_series_needs_per_volume_and_then_gets_a_4d_output(tmp_path, weights, capsys):
    series = smooth_image((20, 20, 20, 3))
    write_nifti(tmp_path / "bold.nii.gz", series, np.eye(4))
    for t in range(3):  # each volume alone, for comparison
        write_nifti(tmp_path / f"v{t}.nii.gz", series[..., t], np.eye(4))

    refused = _enhance(tmp_path / "bold.nii.gz", tmp_path / "sr.nii.gz", weights)
    refusal = capsys.readouterr().err
    code = _enhance(tmp_path / "bold.nii.gz", tmp_path / "sr.nii.gz", weights, "--per-volume")
    progress = capsys.readouterr().err
    for t in range(3):
        _enhance(tmp_path / f"v{t}.nii.gz", tmp_path / f"sr{t}.nii.gz", weights, "-q")

    assert refused == 2 and "--per-volume" in refusal and "\n" not in refusal.strip()
    assert code == 0
    out = load(tmp_path / "sr.nii.gz")
    assert out.shape == (20, 20, 20, 3)
    for t in range(3):
        np.testing.assert_allclose(
            out.data[..., t], load(tmp_path / f"sr{t}.nii.gz").data, atol=1e-5
        )
    assert "volume 1/3" in progress and "volume 3/3" in progress
    sidecar = json.loads((tmp_path / "sr.json").read_text())["mrenhance"]
    assert sidecar["parameters"]["per_volume"] is True
    assert any(step.startswith("per-volume") for step in sidecar["provenance"])


# ------------------------------------------------------------- voxel size and --resample
def test_a_voxel_size_far_from_the_training_one_is_warned_about_once(tmp_path, weights, capsys):
    near = write_nifti(
        tmp_path / "near.nii.gz", smooth_image((20, 18, 12)), np.diag([1.2, 1, 0.8, 1])
    )
    far = write_nifti(tmp_path / "far.nii.gz", smooth_image((20, 18, 12)), np.diag([1, 1, 3.0, 1]))

    assert _enhance(near, tmp_path / "near_sr.nii.gz", weights, "-q") == 0
    quiet = capsys.readouterr().err
    assert _enhance(far, tmp_path / "far_sr.nii.gz", weights) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [x for x in err if x.startswith("mrenhance: warning:")]
    assert _enhance(far, tmp_path / "far_sr.nii.gz", weights, "-q", "--overwrite") == 0
    silenced = capsys.readouterr().err  # -q: errors only

    assert quiet == "" and silenced == ""
    assert len(warned) == 1
    line = warned[0]
    assert line.startswith(f"mrenhance: warning: {far}: voxel size 1x1x3 mm")
    assert "training voxel size 1x1x1 mm" in line and "--resample" in line


def test_a_card_trained_on_a_range_of_voxel_sizes_warns_only_beyond_it(tmp_path, capsys):
    """A card that saw 1-2.5 mm scans: a 3 mm input is fine, 4 mm is warned about."""
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.card import DEFAULT_NORMALISATION
    from mrenhance.models.weights import save_weights

    torch.manual_seed(0)
    card = {
        "task": "sr_t1",
        "inference": TINY_INFERENCE,
        "preprocessing": {
            "normalisation": DEFAULT_NORMALISATION,
            "voxel_size_mm": [1, 1, 1],
            "voxel_size_range_mm": [1.0, 2.5],
        },
    }
    w = save_weights(create_model("mdcsrn-b2u4", growth=4), tmp_path / "rng.safetensors", card)
    ok = write_nifti(tmp_path / "ok.nii.gz", smooth_image((20, 18, 12)), np.diag([3, 3, 3, 1]))
    far = write_nifti(tmp_path / "far.nii.gz", smooth_image((20, 18, 12)), np.diag([1, 1, 4, 1]))
    capsys.readouterr()
    assert _enhance(ok, tmp_path / "ok_sr.nii.gz", w) == 0
    assert "warning" not in capsys.readouterr().err
    assert _enhance(far, tmp_path / "far_sr.nii.gz", w) == 0
    warned = [x for x in capsys.readouterr().err.splitlines() if "warning:" in x]
    assert len(warned) == 1 and "training voxel sizes 1-2.5 mm" in warned[0]


def test_resample_runs_the_model_on_the_training_grid(tmp_path, weights, capsys):
    affine = np.diag([2.0, 2.0, 1.0, 1.0])
    affine[:3, 3] = [-20.0, -18.0, 5.0]
    src = write_nifti(tmp_path / "lr.nii.gz", smooth_image((10, 9, 12)), affine)

    code = _enhance(src, tmp_path / "sr.nii.gz", weights, "--resample", "-q")

    assert code == 0 and capsys.readouterr().err == ""  # resampled: nothing to warn about
    out = load(tmp_path / "sr.nii.gz")
    assert out.shape == (20, 18, 12)
    np.testing.assert_allclose(out.voxel_size, (1.0, 1.0, 1.0))
    # the field of view is kept: the outer voxel edges coincide
    corner_in = affine @ np.array([-0.5, -0.5, -0.5, 1])
    corner_out = out.affine @ np.array([-0.5, -0.5, -0.5, 1])
    np.testing.assert_allclose(corner_out, corner_in, atol=1e-6)
    sidecar = json.loads((tmp_path / "sr.json").read_text())["mrenhance"]
    assert sidecar["parameters"]["resample"] is True
    assert any("training voxel size" in step for step in sidecar["provenance"])
