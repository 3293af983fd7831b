"""NIfTI load/save: geometry and header round trips, and clean errors for bad files."""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrenhance.errors import InputError, OutputExistsError
from mrenhance.io import load, load_nifti, save, save_nifti
from mrenhance.io.validate import check_finite
from mrenhance.volume import Volume


def assert_clean_error(excinfo: pytest.ExceptionInfo, path: Path) -> str:
    """The error is one line that starts with the offending path; return the message."""
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    return msg


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, **header) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    for key, value in header.items():
        img.header[key] = value
    img.to_filename(str(path))
    return path


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_keeps_oblique_affine_codes_units_intent(tmp_path, rng, oblique_affine, suffix):
    data = rng.standard_normal((7, 6, 5)).astype(np.float32)
    img = nib.Nifti1Image(data, oblique_affine)
    img.header.set_qform(oblique_affine, code="scanner")
    img.header.set_sform(oblique_affine, code="mni")
    img.header.set_xyzt_units(xyz="mm", t="msec")
    img.header.set_intent("t test", (12,), name="tstat")
    src = tmp_path / f"in{suffix}"
    img.to_filename(str(src))

    vol = load(src)
    np.testing.assert_allclose(vol.affine, oblique_affine, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.meta["source"] == str(src)
    assert vol.meta["provenance"][0] == f"load {src}"
    np.testing.assert_allclose(vol.meta["voxel_size"], [0.9, 1.1, 2.5], rtol=1e-6)

    out = save(vol.with_data(vol.data * 2, step="doubled"), tmp_path / f"out{suffix}")
    back = nib.load(str(out))
    hdr = back.header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 4
    assert hdr.get_xyzt_units() == ("mm", "msec")
    assert hdr.get_intent() == ("t test", (12.0,), "tstat")
    assert hdr.get_data_dtype() == np.float32
    np.testing.assert_allclose(back.affine, oblique_affine, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hdr.get_qform(), oblique_affine, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data * 2)
    assert hdr["descrip"].item() == f"load in{suffix}; doubled".encode()
    assert (out.name.endswith(".gz")) == (out.read_bytes()[:2] == b"\x1f\x8b")


def test_4d_tr_is_read_in_seconds_and_kept_on_save(tmp_path, rng, oblique_affine):
    data = rng.random((4, 5, 3, 6)).astype(np.float32)
    img = nib.Nifti1Image(data, oblique_affine)
    img.header.set_xyzt_units(xyz="mm", t="msec")
    img.header["pixdim"][4] = 2500.0
    src = tmp_path / "bold.nii.gz"
    img.to_filename(str(src))

    vol = load(src)
    assert vol.shape == (4, 5, 3, 6)
    assert vol.meta["tr_s"] == pytest.approx(2.5)
    out = save(vol, tmp_path / "out.nii.gz")
    hdr = nib.load(str(out)).header
    assert hdr.get_xyzt_units()[1] == "msec"
    assert float(hdr["pixdim"][4]) == pytest.approx(2500.0)
    assert load(out).meta["tr_s"] == pytest.approx(2.5)


def test_save_without_header_uses_scanner_codes_and_tr(tmp_path, rng, oblique_affine):
    vol = Volume(rng.random((3, 4, 5, 2)), oblique_affine, {"tr_s": 1.5, "provenance": ["sim"]})
    out = save_nifti(vol, tmp_path / "sim.nii")
    hdr = nib.load(str(out)).header
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 1)
    assert hdr.get_xyzt_units() == ("mm", "sec")
    assert float(hdr["pixdim"][4]) == pytest.approx(1.5)
    assert hdr["descrip"].item() == b"sim"


def test_descrip_is_truncated_to_80_bytes(tmp_path, rng):
    vol = Volume(rng.random((2, 2, 2)), np.eye(4), {"provenance": ["step " + "x" * 200]})
    hdr = nib.load(str(save(vol, tmp_path / "a.nii"))).header
    assert hdr["descrip"].item() == ("step " + "x" * 75).encode()


def test_integer_dtype_stores_exact_integers_without_scaling(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5
    out = save(Volume(data, np.eye(4)), tmp_path / "seg.nii.gz", dtype=np.int16)
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(img.dataobj.get_unscaled()), data)
    np.testing.assert_array_equal(load(out).data, data)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shape=st.lists(st.integers(1, 5), min_size=3, max_size=4),
    angles=st.lists(st.floats(-180, 180), min_size=3, max_size=3),
    zooms=st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3),
    shift=st.lists(st.floats(-300, 300), min_size=3, max_size=3),
    flip=st.booleans(),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_round_trip_is_exact(tmp_path, shape, angles, zooms, shift, flip, gz, seed):
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(
        [-zooms[0] if flip else zooms[0], zooms[1], zooms[2]]
    )
    affine[:3, 3] = shift
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    path = tmp_path / f"p{seed}_{len(shape)}{'.nii.gz' if gz else '.nii'}"
    save(Volume(data, affine), path, overwrite=True)
    back = load(path)
    if len(shape) == 4 and shape[3] == 1:  # a trailing singleton axis is squeezed
        data = data[..., 0]
    assert back.shape == data.shape
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, affine, rtol=1e-6, atol=1e-6)
    # Saved again from the loaded header: still the same geometry (the header path).
    save(back, path, overwrite=True)
    np.testing.assert_allclose(load(path).affine, affine, rtol=1e-6, atol=1e-6)


def test_bval_bvec_sidecars_are_read(tmp_path, rng):
    write_nifti(tmp_path / "dwi.nii.gz", rng.random((3, 3, 3, 4)).astype(np.float32), np.eye(4))
    (tmp_path / "dwi.bval").write_text("0 1000 1000 2000\n")
    (tmp_path / "dwi.bvec").write_text("0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    vol = load(tmp_path / "dwi.nii.gz")
    np.testing.assert_array_equal(vol.meta["bvals"], [0, 1000, 1000, 2000])
    assert vol.meta["bvecs"].shape == (4, 3)
    np.testing.assert_array_equal(vol.meta["bvecs"][2], [0, 1, 0])


def test_bvec_nan_direction_on_b0_becomes_zero_and_n_by_3_layout_is_read(tmp_path, rng):
    write_nifti(tmp_path / "dwi.nii", rng.random((3, 3, 3, 4)).astype(np.float32), np.eye(4))
    (tmp_path / "dwi.bval").write_text("0\n1000\n1000\n1000\n")
    (tmp_path / "dwi.bvec").write_text("nan nan nan\n1 0 0\n0 0.6 0.8\n0 1 0\n")
    bvecs = load(tmp_path / "dwi.nii").meta["bvecs"]
    np.testing.assert_array_equal(bvecs, [[0, 0, 0], [1, 0, 0], [0, 0.6, 0.8], [0, 1, 0]])
    (tmp_path / "dwi.bval").write_text("1000 1000 1000 1000\n")
    with pytest.raises(InputError) as e:
        load(tmp_path / "dwi.nii")
    assert "NaN" in assert_clean_error(e, tmp_path / "dwi.bvec")


def test_sidecar_with_wrong_count_names_the_sidecar(tmp_path, rng):
    write_nifti(tmp_path / "dwi.nii", rng.random((3, 3, 3, 4)).astype(np.float32), np.eye(4))
    (tmp_path / "dwi.bval").write_text("0 1000 1000\n")
    with pytest.raises(InputError) as e:
        load(tmp_path / "dwi.nii")
    assert "3 b-values for 4 volumes" in assert_clean_error(e, tmp_path / "dwi.bval")


def test_trailing_singleton_dims_are_squeezed(tmp_path, rng):
    data = rng.random((3, 4, 5, 2, 1)).astype(np.float32)
    path = write_nifti(tmp_path / "a.nii", data, np.eye(4))
    assert load(path).shape == (3, 4, 5, 2)


def test_metre_units_are_converted_to_mm(tmp_path, rng):
    aff = np.diag([0.001, 0.002, 0.003, 1.0])
    img = nib.Nifti1Image(rng.random((2, 2, 2)).astype(np.float32), aff)
    img.header.set_xyzt_units(xyz="meter")
    img.to_filename(str(tmp_path / "m.nii"))
    vol = load(tmp_path / "m.nii")
    np.testing.assert_allclose(vol.voxel_size, [1, 2, 3], rtol=1e-5)
    out = save(vol, tmp_path / "o.nii")
    assert nib.load(str(out)).header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(load(out).voxel_size, [1, 2, 3], rtol=1e-5)


# --------------------------------------------------------------------------- save refusals


def test_save_refuses_existing_file_and_leaves_it_untouched(tmp_path, rng):
    vol = Volume(rng.random((2, 3, 4)), np.eye(4))
    path = save(vol, tmp_path / "a.nii.gz")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError) as e:
        save(vol.with_data(vol.data + 1), path)
    assert_clean_error(e, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.nii.gz"]
    save(vol.with_data(vol.data + 1), path, overwrite=True)
    np.testing.assert_allclose(load(path).data, vol.data + 1)
    assert sorted(os.listdir(tmp_path)) == ["a.nii.gz"]


def test_save_refuses_missing_folder_and_other_suffixes(tmp_path, rng):
    vol = Volume(rng.random((2, 3, 4)), np.eye(4))
    with pytest.raises(InputError) as e:
        save(vol, tmp_path / "nope" / "a.nii")
    assert "does not exist" in assert_clean_error(e, tmp_path / "nope" / "a.nii")
    with pytest.raises(InputError) as e:
        save(vol, tmp_path / "a.mgz")
    assert_clean_error(e, tmp_path / "a.mgz")
    assert os.listdir(tmp_path) == []


def test_save_failure_leaves_no_temp_file(tmp_path, rng, monkeypatch):
    def disk_full(self, filename, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib.Nifti1Image, "to_filename", disk_full)
    vol = Volume(rng.random((2, 3, 4)), np.eye(4))
    with pytest.raises(InputError) as e:
        save(vol, tmp_path / "a.nii")
    assert "No space left" in assert_clean_error(e, tmp_path / "a.nii")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- bad inputs


def _raw_header(shape, dtype=np.int16, klass=nib.Nifti1Header) -> bytes:
    hdr = klass()
    hdr.set_data_dtype(dtype)
    hdr["dim"][0] = len(shape)
    hdr["dim"][1 : len(shape) + 1] = shape
    hdr["pixdim"][1:4] = 1.0
    hdr["vox_offset"] = hdr.single_vox_offset
    return hdr.binaryblock + b"\x00" * 4


def test_truncated_gzip_is_refused(tmp_path, rng):
    data = rng.random((20, 20, 20)).astype(np.float32)
    good = write_nifti(tmp_path / "a.nii.gz", data, np.eye(4))
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError) as e:
        load(bad)
    assert "truncated" in assert_clean_error(e, bad)


def test_corrupt_gzip_crc_is_refused(tmp_path):
    data = np.zeros((8, 8, 8), np.float32)
    good = write_nifti(tmp_path / "a.nii.gz", data, np.eye(4))
    raw = bytearray(good.read_bytes())
    raw[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    bad = tmp_path / "crc.nii.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        load(bad)
    assert_clean_error(e, bad)


def test_truncated_uncompressed_file_is_refused(tmp_path, rng):
    good = write_nifti(tmp_path / "a.nii", rng.random((6, 6, 6)).astype(np.float32), np.eye(4))
    bad = tmp_path / "cut.nii"
    bad.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(InputError) as e:
        load(bad)
    assert "truncated" in assert_clean_error(e, bad)


def test_wrong_magic_and_garbage_are_refused(tmp_path, rng):
    good = write_nifti(tmp_path / "a.nii", rng.random((3, 3, 3)).astype(np.float32), np.eye(4))
    raw = bytearray(good.read_bytes())
    raw[344:348] = b"xyz\x00"
    bad = tmp_path / "magic.nii"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        load(bad)
    assert "magic" in assert_clean_error(e, bad)
    text = tmp_path / "notes.nii.gz"
    text.write_text("hello, I am not an image\n" * 10)
    with pytest.raises(InputError) as e:
        load(text)
    assert_clean_error(e, text)
    gz_text = tmp_path / "text.nii.gz"
    gz_text.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(InputError) as e:
        load(gz_text)
    assert "not a NIfTI" in assert_clean_error(e, gz_text)


def test_huge_header_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.nii"
    path.write_bytes(_raw_header((100000, 100000, 100000), klass=nib.Nifti2Header))
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "max_voxels" in assert_clean_error(e, path)
    assert peak < 20e6  # the 8e15-voxel array was never allocated


def test_header_larger_than_file_is_refused_quickly(tmp_path):
    # 1000^3 int16 is below max_voxels, but the file holds no data: refused as truncated.
    for name, blob in [
        ("big.nii", _raw_header((1000, 1000, 1000))),
        ("big.nii.gz", gzip.compress(_raw_header((1000, 1000, 1000)) + b"\x00" * 1000)),
    ]:
        path = tmp_path / name
        path.write_bytes(blob)
        tracemalloc.start()
        try:
            with pytest.raises(InputError) as e:
                load(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "truncated" in assert_clean_error(e, path)
        if name.endswith(".nii"):  # the file size alone shows it: nothing is allocated
            assert peak < 50e6
        # a .gz must be inflated to know its size: the 2 GB array is allocated (untouched
        # pages) before the stream ends short; refusing it is what matters here


def test_max_voxels_is_honoured(tmp_path, rng):
    path = write_nifti(tmp_path / "a.nii", rng.random((4, 4, 4)).astype(np.float32), np.eye(4))
    with pytest.raises(InputError) as e:
        load(path, max_voxels=63)
    assert_clean_error(e, path)
    assert load(path, max_voxels=64).shape == (4, 4, 4)


def test_zero_length_axis_is_refused(tmp_path):
    path = tmp_path / "empty.nii"
    path.write_bytes(_raw_header((4, 0, 4)))
    with pytest.raises(InputError) as e:
        load(path)
    assert "zero-length" in assert_clean_error(e, path)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((64, 64), "got shape (64, 64)"), ((3, 3, 3, 2, 2), "got shape (3, 3, 3, 2, 2)")],
)
def test_2d_and_5d_images_are_refused(tmp_path, shape, expected):
    path = write_nifti(tmp_path / "x.nii", np.zeros(shape, np.float32), np.eye(4))
    with pytest.raises(InputError) as e:
        load(path)
    msg = assert_clean_error(e, path)
    assert "expected a 3D or 4D image" in msg and expected in msg


def test_nan_voxels_error_by_default_and_zero_policy_is_recorded(tmp_path, rng):
    data = rng.random((4, 4, 4)).astype(np.float32)
    data[0, 0, :3] = np.nan
    data[1, 2, 3] = np.inf
    path = write_nifti(tmp_path / "nan.nii.gz", data, np.eye(4))
    with pytest.raises(InputError) as e:
        load(path)
    msg = assert_clean_error(e, path)
    assert msg == f"{path}: 4 NaN/Inf voxels (use --nan-policy zero to replace them with 0)"
    vol = load(path, nan_policy="zero")
    assert np.isfinite(vol.data).all()
    assert vol.data[0, 0, 0] == 0 and vol.data[1, 2, 3] == 0
    assert vol.data[3, 3, 3] == data[3, 3, 3]
    assert vol.meta["provenance"][-1] == "nan_policy=zero: replaced 4 non-finite voxels"
    with pytest.raises(InputError):
        load(path, nan_policy="ignore")


def test_check_finite_replaces_in_a_copy_of_readonly_data():
    data = np.array([1.0, np.nan, np.inf], np.float32)
    data.flags.writeable = False
    out = check_finite(data, "x.nii", "zero")
    np.testing.assert_array_equal(out, [1, 0, 0])
    with pytest.raises(InputError, match=r"^x.nii: 2 NaN/Inf voxels"):
        check_finite(data, "x.nii", "error")


@pytest.mark.parametrize("bad", ["nan", "singular"])
def test_bad_affine_is_refused(tmp_path, bad):
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4))
    hdr = img.header
    hdr.set_qform(None, code=0)
    aff = np.eye(4)
    if bad == "nan":
        aff[0, 3] = np.nan
    else:
        aff[:3, 1] = aff[:3, 0]
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = aff[0], aff[1], aff[2]
    hdr["sform_code"] = 1
    path = tmp_path / "aff.nii"
    path.write_bytes(hdr.binaryblock + b"\x00" * 4 + np.zeros(27, np.float32).tobytes())
    with pytest.raises(InputError) as e:
        load(path)
    assert "affine" in assert_clean_error(e, path)


@pytest.mark.parametrize(("slope", "inter", "word"), [(1e38, 0.0, "overflow"), (np.inf, 0, "scal")])
def test_scaling_overflow_and_non_finite_slope_are_refused(tmp_path, slope, inter, word):
    path = tmp_path / "scl.nii"
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4, 4, 4))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    hdr["scl_slope"], hdr["scl_inter"] = slope, inter
    data = np.full((4, 4, 4), 1000, np.int16)
    path.write_bytes(hdr.binaryblock + b"\x00" * 4 + data.tobytes(order="F"))
    with pytest.raises(InputError) as e:
        load(path)
    assert word in assert_clean_error(e, path)


def test_scaled_integer_data_is_loaded_as_float32(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((2, 2, 2))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    hdr["scl_slope"], hdr["scl_inter"] = 2.0, -100.0
    stored = np.arange(8, dtype=">i2").reshape(2, 2, 2)
    big = nib.Nifti1Header(endianness=">")
    big.set_data_shape((2, 2, 2))
    big.set_data_dtype(">i2")
    big["vox_offset"] = 352
    big["scl_slope"], big["scl_inter"] = 2.0, -100.0
    path = tmp_path / "be.nii"
    path.write_bytes(big.binaryblock + b"\x00" * 4 + stored.tobytes(order="F"))
    vol = load(path)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, stored.astype(np.float32) * 2 - 100)


def test_missing_unknown_and_unreadable_paths(tmp_path):
    with pytest.raises(InputError) as e:
        load(tmp_path / "nope.nii.gz")
    assert_clean_error(e, tmp_path / "nope.nii.gz")
    other = tmp_path / "table.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(InputError) as e:
        load(other)
    assert "unknown file type" in assert_clean_error(e, other)
    with pytest.raises(InputError):
        load_nifti(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        locked = write_nifti(tmp_path / "locked.nii", np.zeros((2, 2, 2), np.float32), np.eye(4))
        locked.chmod(0)
        try:
            with pytest.raises(InputError) as e:
                load(locked)
            assert "permission" in assert_clean_error(e, locked)
        finally:
            locked.chmod(0o644)


def test_nifti_is_recognised_by_content_without_suffix(tmp_path, rng):
    data = rng.random((2, 3, 4)).astype(np.float32)
    src = write_nifti(tmp_path / "a.nii", data, np.eye(4))
    renamed = tmp_path / "image.bin"
    renamed.write_bytes(src.read_bytes())
    np.testing.assert_array_equal(load(renamed).data, data)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_damaged_files_give_only_input_errors(tmp_path, rng, suffix):
    """Seeded fuzzing: random byte changes and truncations either still load or raise one
    InputError line naming the file, never another exception."""
    good = write_nifti(
        tmp_path / f"good{suffix}", rng.random((6, 5, 4, 2)).astype(np.float32), np.eye(4)
    )
    original = good.read_bytes()
    fuzz = np.random.default_rng(11)
    bad = tmp_path / f"bad{suffix}"
    n_errors = 0
    for trial in range(150):
        raw = bytearray(original)
        if trial % 3 == 0:
            raw = raw[: fuzz.integers(0, len(raw))]
        else:
            limit = len(raw) if trial % 3 == 1 else 360  # anywhere, or in the header
            for _ in range(fuzz.integers(1, 6)):
                raw[fuzz.integers(0, min(len(raw), limit))] = fuzz.integers(0, 256)
        bad.write_bytes(bytes(raw))
        try:
            load(bad, max_voxels=10**6)
        except InputError as e:
            n_errors += 1
            assert "\n" not in str(e) and str(e).startswith(str(bad))
    assert n_errors > 50


def test_nifti2_round_trip_and_long_axes_switch_to_nifti2(tmp_path, rng, oblique_affine):
    data = rng.random((3, 4, 5)).astype(np.float32)
    img = nib.Nifti2Image(data, oblique_affine)
    img.header.set_sform(oblique_affine, code=3)
    img.to_filename(str(tmp_path / "n2.nii"))
    vol = load(tmp_path / "n2.nii")
    out = nib.load(str(save(vol, tmp_path / "out.nii")))
    assert isinstance(out, nib.Nifti2Image) and int(out.header["sform_code"]) == 3
    np.testing.assert_allclose(out.affine, oblique_affine, rtol=1e-6, atol=1e-6)
    long = save(Volume(np.zeros((40000, 1, 2), np.float32), np.eye(4)), tmp_path / "long.nii")
    assert isinstance(nib.load(str(long)), nib.Nifti2Image)
    assert load(long).shape == (40000, 1, 2)


def test_damaged_extension_and_unknown_units(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((2, 2, 2))
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"] = 400
    data = np.arange(8, dtype=np.float32).tobytes()
    # extension flag set, then an extension whose size field (7) is not a multiple of 16
    ext = np.array([7, 6], "<i4").tobytes() + b"\x00" * 36
    path = tmp_path / "ext.nii"
    path.write_bytes(hdr.binaryblock + b"\x01\x00\x00\x00" + ext + data)
    with pytest.raises(InputError) as e:
        load(path)
    assert_clean_error(e, path)
    hdr["vox_offset"] = 352
    hdr["xyzt_units"] = 7  # no such unit code
    path.write_bytes(hdr.binaryblock + b"\x00" * 4 + data)
    np.testing.assert_array_equal(load(path).data.ravel(order="F"), np.arange(8))


@pytest.mark.parametrize("dtype", [np.float16, "no-such-type", np.complex64, bool])
def test_unsupported_output_dtype_is_refused(tmp_path, rng, dtype):
    vol = Volume(rng.random((2, 2, 2)), np.eye(4))
    with pytest.raises(InputError) as e:
        save(vol, tmp_path / "a.nii", dtype=dtype)
    assert_clean_error(e, tmp_path / "a.nii")
    assert os.listdir(tmp_path) == []
