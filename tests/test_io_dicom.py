"""DICOM series and multi-frame loading: geometry against the NIfTI they came from and
against the DICOM standard's formula, 4D series, and one clean error line per bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_factory import add_siemens_csa, csa2_header, write_multiframe, write_series
from mrenhance.errors import InputError
from mrenhance.io import load, load_dicom

FLIP_Z = np.diag([1.0, 1.0, -1.0, 1.0])


def assert_clean_error(excinfo: pytest.ExceptionInfo, path: Path | str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    return msg


def mni_file() -> Path:
    import nilearn

    path = (
        Path(nilearn.__file__).parent
        / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    )
    if not path.is_file():
        pytest.skip("nilearn's MNI152 T1 is not installed")
    return path


@pytest.fixture
def mni_crop() -> np.ndarray:
    """A (40, 48, 30) int16 crop through the middle of the MNI152 T1 (values 0..~230)."""
    img = nib.load(str(mni_file()))
    return np.asarray(img.dataobj[80:120, 90:138, 70:100]).astype(np.int16)


@pytest.fixture
def small(rng) -> np.ndarray:
    """(6, 5, 4) integer-valued float32 test image."""
    return rng.integers(0, 500, size=(6, 5, 4)).astype(np.float32)


# --------------------------------------------------------------------------- good series


def test_oblique_mni_series_loads_like_the_nifti_it_was_cut_from(
    tmp_path, mni_crop, oblique_affine
):
    # The NIfTI: an oblique crop stored as int16 with scaling 2, -100.
    img = nib.Nifti1Image(mni_crop, oblique_affine)
    img.header.set_slope_inter(2.0, -100.0)
    img.header.set_qform(oblique_affine, code=1)
    img.header.set_sform(oblique_affine, code=1)
    nii = tmp_path / "crop.nii.gz"
    img.to_filename(str(nii))
    ref = load(nii)
    assert ref.data.max() > 300  # real anatomy, scaled

    series = tmp_path / "series"
    series.mkdir()
    files = write_series(series, ref.data, ref.affine, rescale=(2.0, -100.0), tr_ms=8.2)
    stored = pydicom.dcmread(files[0]).pixel_array
    assert stored.dtype == np.int16
    assert sorted(files) != files  # the names do not follow the slice order

    vol = load(series)
    assert vol.shape == (40, 48, 30)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_allclose(vol.meta["voxel_size"], [0.9, 1.1, 2.5], atol=1e-5)
    assert vol.meta["modality"] == "MR"
    assert vol.meta["series_description"] == "factory series"
    assert vol.meta["tr_s"] == pytest.approx(0.0082)
    assert vol.meta["provenance"] == [f"load {series}"]
    assert vol.meta["source"] == str(series)


def test_voxel_positions_follow_the_dicom_standard_formula(tmp_path, small, oblique_affine):
    # PS3.3 C.7.6.2.1.1: P = IPP + X * di * i + Y * dj * j, X = row cosine (IOP[:3]),
    # i = column index, di = PixelSpacing[1]; j = row index, dj = PixelSpacing[0].
    files = write_series(tmp_path, small, oblique_affine, shuffle=False)
    vol = load(tmp_path)
    for k in (0, 3):
        ds = pydicom.dcmread(files[k])
        iop = np.array(ds.ImageOrientationPatient, float)
        ipp = np.array(ds.ImagePositionPatient, float)
        dj, di = (float(v) for v in ds.PixelSpacing)
        pixels = ds.pixel_array
        for j, i in [(0, 0), (4, 5), (2, 3)]:
            p_lps = ipp + iop[:3] * di * i + iop[3:] * dj * j
            p_ras = p_lps * [-1, -1, 1]
            np.testing.assert_allclose(vol.affine @ [i, j, k, 1], [*p_ras, 1], atol=1e-4)
            assert vol.data[i, j, k] == pixels[j, i]


def test_left_handed_affine_loads_with_slices_along_the_normal(tmp_path, small, oblique_affine):
    aff = oblique_affine @ FLIP_Z  # det < 0: slice axis opposite to row x column
    write_series(tmp_path, small, aff)
    vol = load(tmp_path)
    # Same voxels in the same places, stored with the slice axis reversed.
    np.testing.assert_allclose(vol.affine, aff @ _reverse_k(small.shape[2]), atol=1e-4)
    np.testing.assert_array_equal(vol.data, small[:, :, ::-1])
    assert np.linalg.det(vol.affine[:3, :3]) > 0


def _reverse_k(nz: int) -> np.ndarray:
    m = np.eye(4)
    m[2, 2], m[2, 3] = -1, nz - 1
    return m


@pytest.mark.parametrize("per_frame_geometry", [False, True])
def test_enhanced_multiframe_round_trip(tmp_path, mni_crop, oblique_affine, per_frame_geometry):
    ref = mni_crop[:20, :24, :12].astype(np.float32) * 2 - 100
    path = write_multiframe(
        tmp_path / "enhanced.dcm",
        ref,
        oblique_affine,
        rescale=(2.0, -100.0),
        per_frame_geometry=per_frame_geometry,
        shuffle_frames=True,
    )
    vol = load(path)
    np.testing.assert_allclose(vol.affine, oblique_affine, atol=1e-4)
    np.testing.assert_array_equal(vol.data, ref)
    assert vol.meta["tr_s"] == pytest.approx(2.0)
    # The same file inside a folder loads the same way.
    np.testing.assert_array_equal(load(tmp_path).data, ref)


def test_4d_temporal_series_orders_volumes_and_records_times(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 300, size=(5, 4, 3, 4)).astype(np.float32)
    times = [0.0, 1.5, 3.0, 4.5]
    write_series(tmp_path, data, oblique_affine, times=times)
    vol = load(tmp_path)
    assert vol.shape == (5, 4, 3, 4)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.meta["times_s"], times, atol=1e-5)
    np.testing.assert_allclose(vol.affine, oblique_affine, atol=1e-4)
    assert "bvals" not in vol.meta and "bvecs" not in vol.meta  # no diffusion info: not DWI


def test_4d_temporal_multiframe(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 300, size=(5, 4, 3, 3)).astype(np.float32)
    path = write_multiframe(
        tmp_path / "mf.dcm", data, oblique_affine, times=[0, 2, 4], shuffle_frames=True
    )
    vol = load(path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.meta["times_s"], [0, 2, 4], atol=1e-5)


def _expected_fsl(bvecs_lps: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs: R^-1 g_ras with x negated (det > 0), R the affine's unit axes."""
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    out = np.linalg.solve(rot, (bvecs_lps * [-1, -1, 1]).T).T
    out[:, 0] *= -1
    return out


@pytest.mark.parametrize("multiframe", [False, True])
def test_4d_dwi_series_records_bvals_and_bvecs(tmp_path, rng, oblique_affine, multiframe):
    data = rng.integers(0, 300, size=(4, 5, 3, 5)).astype(np.float32)
    bvals = [0, 0, 1000, 1000, 2000]  # two b = 0 volumes: order by acquisition
    g = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0.6, 0.8], [0, 1, 0]], float)
    times = [0, 3, 6, 9, 12]
    if multiframe:
        write_multiframe(
            tmp_path / "dwi.dcm",
            data,
            oblique_affine,
            bvals=bvals,
            bvecs=g,
            times=times,
            shuffle_frames=True,
        )
    else:
        write_series(tmp_path, data, oblique_affine, bvals=bvals, bvecs=g, times=times)
    vol = load(tmp_path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_array_equal(vol.meta["bvals"], bvals)
    assert vol.meta["bvecs"].shape == (5, 3)
    np.testing.assert_allclose(vol.meta["bvecs"], _expected_fsl(g, oblique_affine), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vol.meta["bvecs"][2:], axis=1), 1, atol=1e-6)


def test_dwi_axis_aligned_bvec_signs(tmp_path, rng):
    # RAS-aligned image; LPS +x (towards the left) is RAS -x; FSL negates x for det > 0.
    data = rng.integers(0, 10, size=(3, 3, 3, 2)).astype(np.float32)
    write_series(tmp_path, data, np.eye(4), bvals=[0, 1000], bvecs=np.array([[0, 0, 0], [1, 0, 0]]))
    vol = load(tmp_path)
    np.testing.assert_allclose(vol.meta["bvecs"], [[0, 0, 0], [1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(vol.affine, np.eye(4), atol=1e-6)


def test_siemens_private_b_values_are_read(tmp_path, rng):
    data = rng.integers(0, 10, size=(3, 3, 3, 3)).astype(np.float32)
    bvals, g = [0, 800, 800], [[0, 0, 0], [0, 1, 0], [0, 0, 1]]

    def siemens(ds, k, t):
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0C, "IS", bvals[t])
        block.add_new(0x0E, "FD", g[t])

    write_series(tmp_path, data, np.eye(4), times=[0, 1, 2], edit=siemens)
    vol = load(tmp_path)
    np.testing.assert_array_equal(vol.meta["bvals"], bvals)
    np.testing.assert_allclose(vol.meta["bvecs"], [[0, 0, 0], [0, -1, 0], [0, 0, 1]], atol=1e-9)


# Siemens CSA image header (0029,1010): what older or anonymised exports keep when 0019 is gone
CSA_BVALS = [0, 0, 1000, 1000, 2000]
CSA_G = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0.6, 0.8], [0.48, -0.6, 0.64]])


def _b_matrix(b: float, g: np.ndarray) -> list[float]:
    """Upper triangle of b g g^T (s/mm^2) rounded to integers, as scanners store it."""
    m = b * np.outer(g, g)
    return [float(round(m[i, j])) for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))]


@pytest.mark.parametrize("direction_tag", ["DiffusionGradientDirection", "B_matrix"])
def test_siemens_csa_only_series_loads_its_table(tmp_path, rng, oblique_affine, direction_tag):
    data = rng.integers(0, 300, size=(4, 5, 3, 5)).astype(np.float32)

    def csa(ds, k, t):
        if CSA_BVALS[t] == 0:  # b = 0: B_value 0; the first without a direction tag at all
            add_siemens_csa(ds, b_value=0, gradient=() if t else None)
        elif direction_tag == "B_matrix":
            add_siemens_csa(ds, b_value=CSA_BVALS[t], b_matrix=_b_matrix(CSA_BVALS[t], CSA_G[t]))
        else:
            add_siemens_csa(ds, b_value=CSA_BVALS[t], gradient=CSA_G[t])

    write_series(tmp_path, data, oblique_affine, times=[0, 3, 6, 9, 12], edit=csa)
    vol = load(tmp_path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_array_equal(vol.meta["bvals"], CSA_BVALS)
    want = _expected_fsl(CSA_G, oblique_affine)
    if direction_tag == "B_matrix":  # a B matrix fixes the direction up to its sign
        dots = np.abs(np.sum(vol.meta["bvecs"][2:] * want[2:], axis=1))
        np.testing.assert_allclose(dots, 1, atol=1e-3)  # integer rounding of b g g^T
        np.testing.assert_array_equal(vol.meta["bvecs"][:2], 0)
    else:
        np.testing.assert_allclose(vol.meta["bvecs"], want, atol=1e-6)


def _siemens_0019(ds, b, g):
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", int(b))
    if b > 0 and g is not None:
        block.add_new(0x0E, "FD", [float(v) for v in g])


def test_siemens_0019_and_agreeing_csa_give_one_table_without_warning(
    tmp_path, rng, oblique_affine, caplog
):
    data = rng.integers(0, 300, size=(4, 5, 3, 5)).astype(np.float32)
    nudge = np.array([2e-4, -2e-4, 1e-4])  # within the 1e-3 tolerance: decimal strings

    def both(ds, k, t):
        # 0019 has no direction for t = 4: that one comes from the CSA header
        _siemens_0019(ds, CSA_BVALS[t], CSA_G[t] if t < 4 else None)
        g_csa = CSA_G[t] + (nudge if t < 4 else 0)
        add_siemens_csa(ds, b_value=CSA_BVALS[t], gradient=g_csa if CSA_BVALS[t] else ())

    write_series(tmp_path, data, oblique_affine, times=[0, 3, 6, 9, 12], edit=both)
    with caplog.at_level("WARNING", logger="mrenhance"):
        vol = load(tmp_path)
    np.testing.assert_array_equal(vol.meta["bvals"], CSA_BVALS)
    # t < 4: exactly the 0019 directions (not the nudged CSA ones)
    np.testing.assert_allclose(vol.meta["bvecs"], _expected_fsl(CSA_G, oblique_affine), atol=1e-9)
    assert not caplog.records
    assert not any("CSA" in step for step in vol.meta["provenance"])


@pytest.mark.parametrize("what", ["b-value", "gradient"])
def test_siemens_0019_wins_over_a_disagreeing_csa_header_with_one_warning(
    tmp_path, rng, oblique_affine, caplog, what
):
    data = rng.integers(0, 300, size=(4, 5, 3, 5)).astype(np.float32)

    def both(ds, k, t):
        _siemens_0019(ds, CSA_BVALS[t], CSA_G[t])
        b_csa, g_csa = CSA_BVALS[t], CSA_G[t]
        if t == 3 and what == "b-value":
            b_csa = 1500
        if t == 3 and what == "gradient":
            g_csa = -CSA_G[3][[0, 2, 1]]  # (0, -0.8, -0.6)
        add_siemens_csa(ds, b_value=b_csa, gradient=g_csa if CSA_BVALS[t] else ())

    files = write_series(tmp_path, data, oblique_affine, times=[0, 3, 6, 9, 12], edit=both)
    with caplog.at_level("WARNING", logger="mrenhance"):
        vol = load(tmp_path)
    np.testing.assert_array_equal(vol.meta["bvals"], CSA_BVALS)
    np.testing.assert_allclose(vol.meta["bvecs"], _expected_fsl(CSA_G, oblique_affine), atol=1e-6)
    [record] = caplog.records  # one warning for the series, not one per file
    msg = record.getMessage()
    assert msg.startswith(str(tmp_path)) and "\n" not in msg
    assert "disagree in 3 image(s)" in msg and "using (0019,100C/100E)" in msg
    assert ("1500" in msg) == (what == "b-value")
    assert any(str(f) in msg for f in files[9:12])  # names a file of volume t = 3
    assert msg in vol.meta["provenance"]


DAMAGED_CSA = {
    "truncated": lambda: csa2_header(
        {"B_value": ("IS", 1, [1000]), "DiffusionGradientDirection": ("FD", 3, [1.0, 0, 0])}
    )[:70],
    "too many tags": lambda: b"SV10\x04\x03\x02\x01" + bytes([0xFF] * 8) + bytes(200),
    "random bytes": lambda: np.random.default_rng(3).bytes(301),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_CSA))
def test_unreadable_csa_header_that_hides_a_b_value_is_refused_naming_the_file(
    tmp_path, rng, oblique_affine, damage
):
    data = rng.integers(0, 300, size=(4, 5, 3, 3)).astype(np.float32)
    bvals, g = [0, 1000, 1000], np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]])

    def csa(ds, k, t):
        if (k, t) == (1, 2):
            add_siemens_csa(ds, blob=DAMAGED_CSA[damage]())
        else:
            add_siemens_csa(ds, b_value=bvals[t], gradient=g[t] if t else ())

    files = write_series(tmp_path, data, oblique_affine, times=[0, 1, 2], edit=csa)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, files[2 * 3 + 1])
    assert "Siemens CSA image header (0029,1010) is unreadable" in msg


@pytest.mark.parametrize("damage", sorted(DAMAGED_CSA))
def test_unreadable_csa_header_is_ignored_where_nothing_needs_it(
    tmp_path, rng, oblique_affine, damage
):
    """A T1 with a damaged CSA header loads; a DWI with 0019 tags keeps their table."""
    t1, dwi = tmp_path / "t1", tmp_path / "dwi"
    t1.mkdir(), dwi.mkdir()
    data = rng.integers(0, 300, size=(4, 5, 3, 3)).astype(np.float32)
    bvals, g = [0, 1000, 1000], np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]])

    def damaged(ds, k, t):
        add_siemens_csa(ds, blob=DAMAGED_CSA[damage]())

    def damaged_with_0019(ds, k, t):
        _siemens_0019(ds, bvals[t], g[t])
        damaged(ds, k, t)

    write_series(t1, data[..., 0], oblique_affine, edit=damaged)
    write_series(dwi, data, oblique_affine, times=[0, 1, 2], edit=damaged_with_0019)
    vol = load(t1)
    np.testing.assert_array_equal(vol.data, data[..., 0])
    assert any("CSA image header unreadable in 3 image(s)" in s for s in vol.meta["provenance"])
    vol = load(dwi)
    np.testing.assert_array_equal(vol.meta["bvals"], bvals)
    np.testing.assert_allclose(vol.meta["bvecs"], _expected_fsl(g, oblique_affine), atol=1e-6)


def test_single_slice_file_gets_its_thickness(tmp_path, rng):
    data = rng.integers(0, 100, size=(4, 5, 1)).astype(np.float32)
    aff = np.diag([0.5, 0.7, 3.0, 1.0])
    (path,) = write_series(tmp_path, data, aff)
    vol = load(path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, aff, atol=1e-6)


def test_other_files_beside_the_series_are_skipped(tmp_path, small, oblique_affine):
    write_series(tmp_path, small, oblique_affine)
    (tmp_path / "README.txt").write_text("scanned on Tuesday\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    vol = load(tmp_path)
    np.testing.assert_array_equal(vol.data, small)
    assert any("skipped 1 non-image files: README.txt" in p for p in vol.meta["provenance"])


def test_series_uid_picks_one_of_two_series(tmp_path, small, oblique_affine):
    write_series(tmp_path, small, oblique_affine, series_uid="1.2.3.4", prefix="A")
    write_series(tmp_path, small + 1, oblique_affine, series_uid="1.2.3.5", prefix="B")
    vol = load_dicom(tmp_path, series_uid="1.2.3.5")
    np.testing.assert_array_equal(vol.data, small + 1)


# Each volume of a DWI series has one b-value and one direction, in every one of its images
DWI_BVALS = [0, 1000, 1000, 2000]
DWI_G = np.array([[0, 0, 0], [1, 0, 0], [0, 0.6, 0.8], [0.48, -0.6, 0.64]])


def _drop_b_value(ds) -> None:
    for keyword in ("DiffusionBValue", "DiffusionGradientOrientation"):
        if keyword in ds:
            delattr(ds, keyword)


@pytest.mark.parametrize("source", ["standard", "multiframe", "CSA"])
def test_volume_without_any_b_value_is_refused_naming_its_first_file(
    tmp_path, rng, oblique_affine, source
):
    """Volume t = 2 has no b-value in any of its 3 images; it would become b = 0."""
    data = rng.integers(0, 300, size=(4, 5, 3, 4)).astype(np.float32)
    times = [0, 3, 6, 9]
    if source == "multiframe":

        def drop(ds):
            for f in ds.PerFrameFunctionalGroupsSequence[2 * 3 : 3 * 3]:  # frames of t = 2
                del f.MRDiffusionSequence

        path = write_multiframe(
            tmp_path / "mf.dcm", data, oblique_affine, bvals=DWI_BVALS, bvecs=DWI_G,
            times=times, edit=drop,
        )  # fmt: skip
        first = f"{path}: frame 7"
    else:

        def edit(ds, k, t):
            if source == "CSA":
                _drop_b_value(ds)
                b_value = None if t == 2 else DWI_BVALS[t]
                add_siemens_csa(ds, b_value=b_value, gradient=DWI_G[t] if t else ())
            elif t == 2:
                _drop_b_value(ds)

        files = write_series(
            tmp_path, data, oblique_affine, bvals=DWI_BVALS, bvecs=DWI_G, times=times, edit=edit
        )
        first = min(files[2 * 3 : 3 * 3])
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, first)
    assert "none of the 3 image(s) of volume 3 of 4 has a b-value" in msg
    assert "would silently become b = 0" in msg


def test_image_without_the_b_value_of_its_volume_is_refused(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 300, size=(4, 5, 3, 4)).astype(np.float32)

    def edit(ds, k, t):
        if (k, t) == (1, 3):
            _drop_b_value(ds)

    files = write_series(
        tmp_path, data, oblique_affine, bvals=DWI_BVALS, bvecs=DWI_G, times=[0, 3, 6, 9], edit=edit
    )
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, files[3 * 3 + 1])
    assert "no b-value, while" in msg and "of the same volume has 2000" in msg


def _dwi_with_slice_direction(folder, data, affine, source, g_slice):
    """A DWI series whose image (k, t) = (2, 2) has direction ``g_slice`` (None: none)."""

    def edit(ds, k, t):
        g = g_slice if (k, t) == (2, 2) else DWI_G[t]
        _drop_b_value(ds)
        if source == "standard":
            ds.DiffusionBValue = DWI_BVALS[t]
            if t and g is not None:
                ds.DiffusionGradientOrientation = [float(v) for v in g]
        else:
            add_siemens_csa(ds, b_value=DWI_BVALS[t], gradient=g if t else ())

    return write_series(
        folder, data, affine, bvals=DWI_BVALS, bvecs=DWI_G, times=[0, 3, 6, 9], edit=edit
    )


@pytest.mark.parametrize("source", ["standard", "CSA"])
def test_slice_whose_direction_differs_from_its_volume_is_refused(
    tmp_path, rng, oblique_affine, source
):
    data = rng.integers(0, 300, size=(4, 5, 3, 4)).astype(np.float32)
    files = _dwi_with_slice_direction(tmp_path, data, oblique_affine, source, [0, 0.8, 0.6])
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, files[2 * 3 + 2])
    assert "gradient direction [0.0, 0.8, 0.6] differs from" in msg
    assert "([0.0, 0.6, 0.8]) in the same volume (b = 1000)" in msg


@pytest.mark.parametrize("source", ["standard", "CSA"])
def test_slice_without_the_direction_of_its_volume_is_refused(
    tmp_path, rng, oblique_affine, source
):
    data = rng.integers(0, 300, size=(4, 5, 3, 4)).astype(np.float32)
    files = _dwi_with_slice_direction(tmp_path, data, oblique_affine, source, None)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, files[2 * 3 + 2])
    assert "no gradient direction, while" in msg and "has [0.0, 0.6, 0.8]" in msg


@pytest.mark.parametrize("change", ["within 1e-3", "opposite sign"])
def test_slice_directions_that_agree_give_the_volume_one_direction(
    tmp_path, rng, oblique_affine, change
):
    """g and -g are one diffusion weighting; 5e-4 is decimal-string rounding."""
    data = rng.integers(0, 300, size=(4, 5, 3, 4)).astype(np.float32)
    g = DWI_G[2] + 5e-4 if change == "within 1e-3" else -DWI_G[2]
    _dwi_with_slice_direction(tmp_path, data, oblique_affine, "standard", g)
    vol = load(tmp_path)
    np.testing.assert_array_equal(vol.meta["bvals"], DWI_BVALS)
    # the table holds the direction of the first slice of each volume
    np.testing.assert_allclose(vol.meta["bvecs"], _expected_fsl(DWI_G, oblique_affine), atol=1e-6)


# Siemens mosaics: several slices tiled into one image are refused, not read as one slice
def _mosaic_csa(n_tiles: int) -> bytes:
    return csa2_header(
        {
            "AcquisitionMatrixText": ("SH", 1, ["4p*4"]),
            "NumberOfImagesInMosaic": ("US", 1, [n_tiles]),
            "B_value": ("IS", 1, [0]),
        }
    )


MOSAIC_MARKS = {
    "ImageType MOSAIC": lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]),
    "CSA NumberOfImagesInMosaic": lambda ds: add_siemens_csa(ds, blob=_mosaic_csa(9)),
    "(0019,100A)": lambda ds: ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(
        0x0A, "US", 9
    ),
}


@pytest.mark.parametrize("mark", sorted(MOSAIC_MARKS))
def test_siemens_mosaic_is_refused_naming_the_file_and_dcm2niix(
    tmp_path, rng, oblique_affine, mark
):
    """Each file holds a 3x3 grid of 4x4 tiles (9 slices); any one of the marks is enough."""
    tiles = rng.integers(0, 300, size=(12, 12, 2, 2)).astype(np.float32)
    files = write_series(
        tmp_path, tiles, oblique_affine, times=[0, 3], edit=lambda ds, k, t: MOSAIC_MARKS[mark](ds)
    )
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, min(files))
    assert "Siemens mosaic image" in msg and "12x12 image" in msg
    assert "dcm2niix" in msg and str(tmp_path) in msg
    assert ("9 slices" in msg) == (mark != "ImageType MOSAIC")


def test_siemens_scanner_mosaic_is_refused_with_exit_code_2(tmp_path, capsys):
    """A real Siemens DWI mosaic (nibabel's test data: 48 slices of 128x128 in 896x896)."""
    import gzip

    import nibabel.nicom

    from mrenhance.cli import main

    src = Path(nibabel.nicom.__file__).parent / "tests/data/siemens_dwi_1000.dcm.gz"
    if not src.is_file():
        pytest.skip("nibabel's DICOM test data are not installed")
    (tmp_path / "dwi").mkdir()
    (tmp_path / "dwi/IM0001.dcm").write_bytes(gzip.decompress(src.read_bytes()))
    assert main(["info", str(tmp_path / "dwi")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.strip().splitlines()
    assert "IM0001.dcm: Siemens mosaic image (48 slices tiled in one 896x896 image)" in line


def test_plain_siemens_images_with_a_csa_header_are_not_mosaics(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 300, size=(4, 5, 3)).astype(np.float32)

    def plain(ds, k, t):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]
        add_siemens_csa(ds, blob=_mosaic_csa(1))  # a count of 1 is one image, not a mosaic

    write_series(tmp_path, data, oblique_affine, edit=plain)
    np.testing.assert_array_equal(load(tmp_path).data, data)


# --------------------------------------------------------------------------- bad series


def test_two_series_in_one_folder_are_refused(tmp_path, small, oblique_affine):
    write_series(tmp_path, small, oblique_affine, series_uid="1.2.3.4", prefix="A")
    write_series(tmp_path, small[:, :, :2], oblique_affine, series_uid="1.2.3.5", prefix="B")
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, tmp_path)
    assert "2 DICOM series" in msg and "1.2.3.4" in msg and "1.2.3.5" in msg


def test_missing_slice_is_refused_naming_the_file(tmp_path, small, oblique_affine):
    files = write_series(tmp_path, small, oblique_affine, skip=[(2, 0)])
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, files[2])  # slice 3 (index 2 of the written files)
    assert "missing slice" in msg and str(files[1]) in msg


def test_uneven_spacing_is_refused(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 100, size=(4, 4, 6)).astype(np.float32)

    def shift(ds, k, t):
        if k == 3:  # 0.3 mm further along the slice normal: 12% of the 2.5 mm spacing
            iop = np.array(ds.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            ds.ImagePositionPatient = list(np.array(ds.ImagePositionPatient, float) + 0.3 * normal)

    files = write_series(tmp_path, data, oblique_affine, edit=shift, shuffle=False)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "spacing" in assert_clean_error(e, files[3])


def test_small_position_noise_is_accepted(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 100, size=(4, 4, 6)).astype(np.float32)

    def jitter(ds, k, t):
        if k == 2:  # 0.005 mm: rounding in a scanner's DS strings
            ds.ImagePositionPatient = list(np.array(ds.ImagePositionPatient, float) + 0.005)

    write_series(tmp_path, data, oblique_affine, edit=jitter)
    np.testing.assert_allclose(load(tmp_path).affine, oblique_affine, atol=1e-3)


def test_non_dicom_dcm_file_is_refused(tmp_path, small, oblique_affine):
    write_series(tmp_path, small, oblique_affine)
    bad = tmp_path / "zz_notes.dcm"
    bad.write_text("not a DICOM file at all\n")
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "not a DICOM file" in assert_clean_error(e, bad)
    with pytest.raises(InputError) as e:
        load(bad)
    assert_clean_error(e, bad)


def test_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "no DICOM files" in assert_clean_error(e, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as e:
        load(empty)
    assert_clean_error(e, empty)


def test_no_pixel_data_is_refused_naming_the_file(tmp_path, small, oblique_affine):
    def strip(ds, k, t):
        if k == 1:
            del ds.PixelData

    files = write_series(tmp_path, small, oblique_affine, edit=strip)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "no pixel data" in assert_clean_error(e, files[1])


def test_truncated_pixel_data_is_refused_naming_the_file(tmp_path, small, oblique_affine):
    files = write_series(tmp_path, small, oblique_affine)
    files[2].write_bytes(files[2].read_bytes()[:-20])
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert_clean_error(e, files[2])


@pytest.mark.parametrize("what", ["orientation", "matrix", "spacing"])
def test_mixed_geometry_is_refused(tmp_path, small, oblique_affine, what):
    def change(ds, k, t):
        if k != 2:
            return
        if what == "orientation":
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        elif what == "matrix":
            ds.Rows, ds.Columns = ds.Columns, ds.Rows
        else:
            ds.PixelSpacing = [1.3, 1.3]

    files = write_series(tmp_path, small, oblique_affine, edit=change)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = assert_clean_error(e, files[2])
    assert {"orientation": "mixed orientations", "matrix": "matrix", "spacing": "PixelSpacing"}[
        what
    ] in msg


def test_inconsistent_volume_count_is_refused(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 100, size=(4, 4, 3, 3)).astype(np.float32)
    files = write_series(tmp_path, data, oblique_affine, times=[0, 1, 2], skip=[(1, 2)])
    with pytest.raises(InputError) as e:
        load(tmp_path)
    msg = str(e.value)
    assert msg.startswith((f"{files[1]}:", f"{files[4]}:")), msg  # the two files at k = 1
    assert "2 images at slice position" in msg and "\n" not in msg


def test_4d_volumes_that_cannot_be_told_apart_are_refused(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 100, size=(4, 4, 3, 2)).astype(np.float32)
    write_series(tmp_path, data, oblique_affine, time_tags=False)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "tells them apart" in assert_clean_error(e, tmp_path)


def test_duplicate_file_is_refused(tmp_path, small, oblique_affine):
    files = write_series(tmp_path, small, oblique_affine)
    copy = tmp_path / "zz_copy.dcm"
    shutil.copy(files[0], copy)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "duplicate" in str(e.value)
    assert "\n" not in str(e.value)


def test_rescale_overflow_and_max_voxels_are_refused(tmp_path, small, oblique_affine):
    def huge_slope(ds, k, t):
        ds.RescaleSlope = "1e38"

    write_series(tmp_path, small + 1000, oblique_affine, edit=huge_slope)
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "overflow" in assert_clean_error(e, tmp_path)
    with pytest.raises(InputError) as e:
        load(tmp_path, max_voxels=100)
    assert "max_voxels" in assert_clean_error(e, tmp_path)


def test_unreadable_file_is_refused(tmp_path, small, oblique_affine):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    files = write_series(tmp_path, small, oblique_affine)
    files[0].chmod(0)
    try:
        with pytest.raises(InputError) as e:
            load(tmp_path)
        assert "permission" in assert_clean_error(e, files[0])
    finally:
        files[0].chmod(0o644)


def test_newline_in_a_header_string_still_gives_one_line(tmp_path, small, oblique_affine):
    def evil(ds, k, t):
        ds.SeriesDescription = "T1\nTraceback (most recent call last):"

    write_series(tmp_path, small, oblique_affine, series_uid="1.2.3.4", prefix="A", edit=evil)
    write_series(tmp_path, small, oblique_affine, series_uid="1.2.3.5", prefix="B")
    with pytest.raises(InputError) as e:
        load(tmp_path)
    assert "T1?Traceback" in assert_clean_error(e, tmp_path)


def test_damaged_files_give_only_input_errors(tmp_path, rng, oblique_affine):
    """Seeded fuzzing: random byte changes and truncations of a series file and of an
    Enhanced MR file either still load or raise one InputError line naming the input."""
    data = rng.integers(0, 100, size=(4, 3, 3, 2)).astype(np.float32)
    series = tmp_path / "series"
    series.mkdir()
    files = write_series(series, data, oblique_affine, times=[0, 1])
    mf = write_multiframe(tmp_path / "mf.dcm", data, oblique_affine, times=[0, 1])
    originals = {files[0]: files[0].read_bytes(), mf: mf.read_bytes()}
    fuzz = np.random.default_rng(7)
    n_errors = 0
    for trial in range(120):
        target = files[0] if trial % 2 else mf
        raw = bytearray(originals[target])
        if trial % 3 == 0:
            raw = raw[: fuzz.integers(0, len(raw))]
        else:
            for _ in range(fuzz.integers(1, 6)):
                raw[fuzz.integers(0, min(len(raw), 1200))] = fuzz.integers(0, 256)
        target.write_bytes(bytes(raw))
        try:
            load(series if target != mf else mf)
        except InputError as e:
            n_errors += 1
            assert "\n" not in str(e)
            assert str(e).startswith(str(target if target == mf else series))
    assert n_errors > 30  # the damage was real


def test_cardiac_series_is_ordered_by_trigger_time(tmp_path, rng):
    data = rng.integers(0, 100, size=(4, 4, 2, 3)).astype(np.float32)
    delays_ms = [30.0, 130.0, 230.0]

    def cine(ds, k, t):
        del ds.AcquisitionTime, ds.TemporalPositionIdentifier, ds.InstanceNumber
        ds.TriggerTime = delays_ms[t]

    write_series(tmp_path, data, np.eye(4), edit=cine)
    vol = load(tmp_path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.meta["times_s"], [0.03, 0.13, 0.23])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(2, 4)),
    angles=st.tuples(*[st.floats(-180, 180)] * 3),
    zooms=st.tuples(*[st.floats(0.3, 4.0)] * 3),
    shift=st.tuples(*[st.floats(-200, 200)] * 3),
    left_handed=st.booleans(),
)
def test_property_series_geometry_round_trip(
    tmp_path_factory, shape, angles, zooms, shift, left_handed
):
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(zooms)
    affine[:3, 3] = shift
    if left_handed:
        affine = affine @ FLIP_Z
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    folder = tmp_path_factory.mktemp("series")
    write_series(folder, data, affine)
    vol = load(folder)
    if left_handed:  # slices come back in increasing position along row x column
        affine, data = affine @ _reverse_k(shape[2]), data[:, :, ::-1]
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)
