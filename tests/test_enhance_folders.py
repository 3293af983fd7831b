"""``mrenhance enhance in_dir/ -o out_dir/``: NIfTI files and DICOM series found in nested
subfolders, outputs in the same relative subfolders below a created output folder."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest

from bad_inputs.build import affine_1mm, make_tiny_weights, smooth_image, write_nifti
from dicom_factory import write_series
from mrenhance.cli import main
from mrenhance.io import paths


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


def _tree(root: Path) -> Path:
    """A study folder as FSL/BIDS-style users keep them: subject and session subfolders,
    NIfTIs at several depths, DICOM series folders, a hidden folder."""
    scans = root / "scans"
    (scans / "sub-01" / "anat").mkdir(parents=True)
    (scans / "sub-02").mkdir()
    (scans / ".cache").mkdir()
    write_nifti(scans / "sub-01" / "anat" / "t1.nii.gz", smooth_image(seed=1))
    write_nifti(scans / "sub-02" / "t1.nii", smooth_image(seed=2))
    write_nifti(scans / "top.nii.gz", smooth_image(seed=3))
    write_nifti(scans / ".cache" / "old.nii.gz", smooth_image(seed=4))
    series = scans / "dicom" / "patient1" / "series3"
    series.mkdir(parents=True)
    write_series(series, smooth_image((10, 12, 6)), affine_1mm())
    return scans


EXPECTED = [
    "dicom/patient1/series3_enhanced.nii.gz",
    "sub-01/anat/t1_enhanced.nii.gz",
    "sub-02/t1_enhanced.nii.gz",
    "top_enhanced.nii.gz",
]


def test_find_images_walks_subfolders_and_treats_a_dicom_folder_as_one_series(tmp_path):
    scans = _tree(tmp_path)
    found = {str(rel): src for src, rel in paths.find_images(scans)}
    assert sorted(found) == EXPECTED  # .cache is hidden: skipped
    assert found["dicom/patient1/series3_enhanced.nii.gz"] == scans / "dicom/patient1/series3"
    assert paths.is_image_tree(scans)
    assert not paths.is_image_tree(scans / "dicom" / "patient1" / "series3")  # one series


def test_a_nested_folder_is_enhanced_into_a_mirrored_new_folder(tmp_path, tiny_weights, capsys):
    scans = _tree(tmp_path)
    out = tmp_path / "results" / "enhanced"  # neither folder exists yet

    rc = main(["enhance", str(scans), "-o", str(out), "--model", str(tiny_weights), "-q",
               "--summary", str(out / "summary.json")])  # fmt: skip

    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["failed"] == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.nii.gz"))
    assert written == EXPECTED
    assert nib.load(out / "sub-01/anat/t1_enhanced.nii.gz").shape == smooth_image().shape
    assert nib.load(out / "dicom/patient1/series3_enhanced.nii.gz").shape == (10, 12, 6)
    assert (out / "sub-02" / "t1_enhanced.json").is_file()  # the sidecar beside its image


def test_a_tree_with_a_nifti_file_name_as_output_is_refused_before_any_work(
    tmp_path, tiny_weights, capsys
):
    scans = _tree(tmp_path)
    out = tmp_path / "out.nii.gz"
    rc = main(["enhance", str(scans), "-o", str(out), "--model", str(tiny_weights), "-q"])
    assert rc == 2
    assert "-o is a folder" in capsys.readouterr().err
    assert not out.exists()


def test_an_output_folder_inside_the_tree_is_refused_and_not_made(tmp_path, tiny_weights, capsys):
    scans = _tree(tmp_path)
    out = scans / "derived"
    rc = main(["enhance", str(scans), "-o", str(out), "--model", str(tiny_weights), "-q"])
    assert rc == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_single_dicom_series_folder_is_still_one_image(tmp_path, tiny_weights, capsys):
    series = tmp_path / "series"
    series.mkdir()
    write_series(series, smooth_image((10, 12, 6)), affine_1mm())
    out = tmp_path / "one.nii.gz"
    rc = main(["enhance", str(series), "-o", str(out), "--model", str(tiny_weights), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert nib.load(out).shape == (10, 12, 6)
