"""DICOM output (io/dicom_write.py): a new MR series our reader and pydicom read back.

The geometry goes out through the output's own affine and comes back through the reader's
rules; the pixel data come back within half a RescaleSlope step; nothing is left behind
when a write fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_factory import write_series
from mrenhance.errors import InputError, OutputExistsError
from mrenhance.io import load, save
from mrenhance.io.dicom_write import rescale_16bit, save_dicom
from mrenhance.volume import Volume


def _series(tmp_path: Path, data: np.ndarray, affine: np.ndarray, **kw) -> Volume:
    folder = tmp_path / "in"
    folder.mkdir()
    write_series(folder, data, affine, series_description="t1 mprage", **kw)
    return load(folder)


def _enhanced(volume: Volume, data: np.ndarray | None = None) -> Volume:
    """What Enhancer returns: a float result on the input's grid with the model's name."""
    out = volume.with_data(volume.data * 1.37 + 0.25 if data is None else data, step="enhance")
    out.meta["model_card"] = {"name": "tiny-model"}
    return out


def _headers(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def test_a_derived_series_reads_back_as_the_same_image_and_grid(tmp_path, rng, oblique_affine):
    data = rng.uniform(0, 900, (7, 6, 5)).astype(np.float32)
    result = _enhanced(_series(tmp_path, data, oblique_affine))

    save_dicom(result, tmp_path / "out")
    back = load(tmp_path / "out")

    slope = float(_headers(tmp_path / "out")[0].RescaleSlope)
    assert np.abs(back.data - result.data).max() <= slope / 2 + 1e-4
    np.testing.assert_allclose(back.affine, result.affine, atol=1e-5)


def test_a_derived_series_is_new_and_says_what_made_it(tmp_path, rng, oblique_affine):
    data = rng.uniform(0, 900, (7, 6, 5)).astype(np.float32)
    volume = _series(tmp_path, data, oblique_affine)
    source = volume.meta["dicom_header"]

    save_dicom(_enhanced(volume), tmp_path / "out")
    headers = _headers(tmp_path / "out")
    inputs = _headers(tmp_path / "in")

    assert len(headers) == 5  # one file per slice
    assert {h.SeriesInstanceUID for h in headers} == {headers[0].SeriesInstanceUID}
    assert headers[0].SeriesInstanceUID != source.SeriesInstanceUID
    assert not {h.SOPInstanceUID for h in headers} & {h.SOPInstanceUID for h in inputs}
    assert len({h.SOPInstanceUID for h in headers}) == 5
    first = headers[0]
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.SeriesDescription == "t1 mprage mrenhance tiny-model"
    assert first.SOPClassUID == pydicom.uid.MRImageStorage
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    # same patient, study and patient space: it overlays on its input
    assert first.StudyInstanceUID == source.StudyInstanceUID
    assert first.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert first.PatientID == source.PatientID
    assert first.PixelRepresentation == 0 and first.BitsAllocated == 16
    assert float(first.SliceThickness) == pytest.approx(2.5)  # the input's, same grid


def test_an_output_on_a_finer_grid_gets_its_own_geometry(tmp_path, rng):
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    volume = _series(tmp_path, rng.uniform(0, 500, (6, 6, 4)).astype(np.float32), affine)
    fine = np.diag([1.0, 1.0, 1.5, 1.0])
    fine[:3, 3] = [-0.5, -0.5, -0.75]  # the same field of view
    result = _enhanced(volume, rng.uniform(0, 500, (12, 12, 8)).astype(np.float32))
    result.affine = fine

    save_dicom(result, tmp_path / "out")
    first = _headers(tmp_path / "out")[0]

    np.testing.assert_allclose(load(tmp_path / "out").affine, fine, atol=1e-6)
    assert [float(v) for v in first.PixelSpacing] == [1.0, 1.0]
    assert float(first.SliceThickness) == 1.5
    assert (first.Rows, first.Columns) == (12, 12)


def test_a_nifti_input_becomes_a_minimal_mr_series(tmp_path, rng, oblique_affine):
    nifti = tmp_path / "t1.nii.gz"
    save(Volume(rng.uniform(-50, 400, (5, 6, 4)), oblique_affine), nifti)
    result = _enhanced(load(nifti))

    save_dicom(result, tmp_path / "out")
    back = load(tmp_path / "out")
    first = _headers(tmp_path / "out")[0]

    slope = float(first.RescaleSlope)
    assert first.PixelRepresentation == 1  # negative values: int16
    assert np.abs(back.data - result.data).max() <= slope / 2 + 1e-4
    np.testing.assert_allclose(back.affine, result.affine, atol=1e-5)
    assert first.Modality == "MR" and list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.SeriesDescription == "t1 mrenhance tiny-model"
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID",
                    "ScanningSequence", "SequenceVariant", "StudyDate"):  # fmt: skip
        assert keyword in first


def test_slices_against_the_normal_are_written_in_increasing_position(tmp_path, rng):
    las = np.diag([-1.0, 1.0, 2.0, 1.0])  # r x c points down: k runs against the normal
    data = rng.uniform(0, 100, (4, 5, 3)).astype(np.float32)
    result = _enhanced(Volume(data, las, {"source": "las.nii"}), data)

    save_dicom(result, tmp_path / "out")
    back = load(tmp_path / "out")

    ijk = np.array([1, 2, 0, 1.0])
    world = las @ ijk  # the same point holds the same value
    found = np.rint(np.linalg.solve(back.affine, world)).astype(int)
    assert back.data[tuple(found[:3])] == pytest.approx(data[1, 2, 0], abs=0.01)


def test_a_4d_series_keeps_its_volume_order_and_times(tmp_path, rng):
    data = rng.uniform(0, 100, (4, 4, 3, 3)).astype(np.float32)
    volume = _series(tmp_path, data, np.eye(4), times=[0.0, 2.0, 4.0])

    save_dicom(_enhanced(volume), tmp_path / "out")
    back = load(tmp_path / "out")

    assert back.shape == (4, 4, 3, 3)
    np.testing.assert_allclose(back.data, volume.data * 1.37 + 0.25, atol=0.01)
    np.testing.assert_allclose(back.meta["times_s"], [0.0, 2.0, 4.0], atol=1e-3)


@pytest.mark.parametrize(
    ("data", "dtype", "slope"),
    [
        (np.array([0.0, 3.0, 4095.0]), np.uint16, 1.0),  # whole numbers: stored as they are
        (np.array([0.0, 0.5, 1.0]), np.uint16, 1.0 / 65535),
        (np.array([-2.0, 0.0, 1.5]), np.int16, 2.0 / 32767),
    ],
)
def test_the_rescale_fits_the_range_and_keeps_zero(data, dtype, slope):
    stored, got_slope, intercept = rescale_16bit(data)

    assert stored.dtype == dtype and intercept == 0.0
    assert got_slope == pytest.approx(slope, rel=1e-9)
    assert np.abs(stored * got_slope - data).max() <= got_slope / 2 + 1e-12
    assert stored[data == 0] == 0


def test_a_failed_write_leaves_nothing(tmp_path, rng, monkeypatch):
    volume = Volume(rng.uniform(0, 1, (4, 4, 3)), np.eye(4))
    calls = []

    def broken(self, path, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        Path(path).write_bytes(b"partial")

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", broken)
    with pytest.raises(OSError):
        save_dicom(volume, tmp_path / "out")
    assert os.listdir(tmp_path) == []

    nan = volume.with_data(np.full((4, 4, 3), np.nan))
    with pytest.raises(InputError, match="NaN"):
        save_dicom(nan, tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_an_existing_series_is_replaced_only_with_overwrite(tmp_path, rng):
    volume = Volume(rng.uniform(0, 1, (4, 4, 3)), np.eye(4))
    save_dicom(volume, tmp_path / "out")
    with pytest.raises(OutputExistsError):
        save_dicom(volume, tmp_path / "out")

    save_dicom(volume.with_data(volume.data[:, :, :2]), tmp_path / "out", overwrite=True)

    assert len(os.listdir(tmp_path / "out")) == 2
    assert os.listdir(tmp_path) == ["out"]  # no temp or old folder left


def test_a_folder_holding_other_files_is_never_replaced(tmp_path, rng):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    volume = Volume(rng.uniform(0, 1, (4, 4, 3)), np.eye(4))

    with pytest.raises(InputError, match="notes.txt"):
        save_dicom(volume, tmp_path / "out", overwrite=True)
    assert os.listdir(tmp_path / "out") == ["notes.txt"]


def test_a_sheared_grid_is_refused_in_one_line(tmp_path, rng):
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(InputError, match="not perpendicular") as e:
        save_dicom(Volume(rng.uniform(0, 1, (4, 4, 3)), sheared), tmp_path / "out")
    assert "\n" not in str(e.value) and os.listdir(tmp_path) == []
