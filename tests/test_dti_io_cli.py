"""DWI series in and out: FSL sidecars, DICOM DWI, `enhance` 4x and `mrenhance dti`."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom_factory import add_siemens_csa, write_series
from mrenhance.cli import main
from mrenhance.io import load, save
from mrenhance.models import create_model
from mrenhance.models.weights import save_weights
from mrenhance.tasks import get_task
from mrenhance.volume import Volume

BVALS = np.array([0.0, 1000, 1000, 1000, 1000, 1000, 1000])
BVECS = np.array(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0], [0, 0.6, 0.8], [0.8, 0, 0.6]]
)


def _dwi(rng, shape=(8, 8, 3)) -> np.ndarray:
    """A tensor-like series: S0 = 200 over an anisotropic blob, exp(-b g^T D g)."""
    d = np.diag([1.5e-3, 0.4e-3, 0.4e-3])
    att = np.exp(-BVALS * np.einsum("ni,ij,nj->n", BVECS, d, BVECS))
    s0 = np.zeros(shape, np.float32)
    s0[1:-1, 1:-1] = 200
    noise = 1 + 0.01 * rng.standard_normal((*shape, BVALS.size))
    return (s0[..., None] * att * noise).astype(np.float32)


def test_nifti_dwi_round_trip_keeps_the_gradient_table(tmp_path, rng):
    vol = Volume(_dwi(rng), np.diag([2.0, 2, 2, 1]), {"bvals": BVALS, "bvecs": BVECS})
    save(vol, tmp_path / "dwi.nii.gz")
    assert (tmp_path / "dwi.bval").is_file() and len(
        (tmp_path / "dwi.bvec").read_text().split("\n")
    ) == 4
    back = load(tmp_path / "dwi.nii.gz")
    np.testing.assert_allclose(back.meta["bvals"], BVALS)
    np.testing.assert_allclose(back.meta["bvecs"], BVECS, atol=1e-6)


def test_dicom_dwi_series_loads_with_its_table_and_fits_tensors(tmp_path, rng):
    series = tmp_path / "dicom"
    series.mkdir()
    write_series(series, _dwi(rng), np.diag([2.0, 2, 2, 1]), bvals=BVALS, bvecs=BVECS)
    vol = load(series)
    get_task("dti").check_input(vol)  # a 4D DWI with its table
    assert main(["dti", str(series), "-o", str(tmp_path / "maps"), "-q"]) == 0
    fa = load(tmp_path / "maps" / "fa.nii.gz").data
    v1 = load(tmp_path / "maps" / "v1.nii.gz").data
    assert load(tmp_path / "maps" / "cfa.nii.gz").shape == (8, 8, 3, 3)
    assert 0.5 < np.median(fa[2:-2, 2:-2]) < 0.8  # FA of diag(1.5, 0.4, 0.4) is 0.66
    assert load(tmp_path / "maps" / "md.nii.gz").shape == (8, 8, 3)
    # the fibre runs along the first image axis (up to the LPS -> FSL sign conventions)
    assert np.median(np.abs(v1[2:-2, 2:-2, :, 0])) > 0.95
    assert main(["dti", str(series), "-o", str(tmp_path / "maps"), "-q"]) == 2  # exists


def test_dicom_dwi_series_with_only_a_siemens_csa_header_fits_tensors(tmp_path, rng, capsys):
    """No standard or 0019 diffusion tags: the table comes from the CSA image header."""
    series = tmp_path / "dicom"
    series.mkdir()

    def csa(ds, k, t):
        add_siemens_csa(ds, b_value=BVALS[t], gradient=BVECS[t] if BVALS[t] else ())

    write_series(series, _dwi(rng), np.diag([2.0, 2, 2, 1]), times=range(7), edit=csa)
    assert "DiffusionBValue" not in pydicom.dcmread(next(series.iterdir()))
    assert main(["dti", str(series), "-o", str(tmp_path / "maps")]) == 0
    assert "warning" not in capsys.readouterr().err
    fa = load(tmp_path / "maps" / "fa.nii.gz").data
    v1 = load(tmp_path / "maps" / "v1.nii.gz").data
    assert 0.5 < np.median(fa[2:-2, 2:-2]) < 0.8  # FA of diag(1.5, 0.4, 0.4) is 0.66
    assert np.median(np.abs(v1[2:-2, 2:-2, :, 0])) > 0.95  # the fibre along the first axis


@pytest.fixture
def tiny_dti_weights(tmp_path):
    model = create_model("srresnet-dwi-x4", channels=4, n_blocks=1)
    card = {
        "task": "dti",
        "inference": {"patch_size": [8, 8], "overlap": [4, 4], "scale": [4, 4, 1], "slice_axis": 2},
    }
    return save_weights(model, tmp_path / "tiny-dwi.safetensors", card)


def test_enhance_super_resolves_every_volume_and_carries_the_table(tmp_path, rng, tiny_dti_weights):
    affine = np.diag([8.0, 8, 2, 1])
    save(Volume(_dwi(rng), affine, {"bvals": BVALS, "bvecs": BVECS}), tmp_path / "dwi.nii.gz")
    out = tmp_path / "dwi_sr.nii.gz"
    code = main(
        [
            "enhance",
            str(tmp_path / "dwi.nii.gz"),
            "-o",
            str(out),
            "--model",
            str(tiny_dti_weights),
            "-q",
        ]
    )
    assert code == 0
    sr = load(out)
    assert sr.shape == (32, 32, 3, 7)
    np.testing.assert_allclose(sr.voxel_size, (2.0, 2.0, 2.0), rtol=1e-6)
    np.testing.assert_allclose(sr.meta["bvals"], BVALS)
    np.testing.assert_allclose(sr.meta["bvecs"], BVECS, atol=1e-6)
    assert main(["dti", str(out), "-o", str(tmp_path / "maps"), "-q"]) == 0
    assert load(tmp_path / "maps" / "fa.nii.gz").shape == (32, 32, 3)
