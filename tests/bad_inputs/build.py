"""The bad-input corpus, built at test time: one function per case.

Each ``case_*`` function takes an empty folder, writes the damaged input there (NIfTI bytes
patched at their header offsets, DICOM series from ``dicom_factory`` with ``skip``/``edit``,
weights with a flipped byte, recipes with a bad key, ...) and returns a :class:`Case`:

- ``argv``: the ``mrenhance`` command line that must exit 2 with one line on stderr;
- ``inputs``: the files and folders that must be byte-identical afterwards;
- ``expect``: a fragment of the message (the problem); ``names``: the path it must name;
- ``api``: the same operation through the Python API, which must raise
  :class:`mrenhance.errors.InputError` (or a subclass) with the same message;
- ``outputs``: paths that must not exist afterwards; the whole folder is also compared
  before and after, so no new file (partial output, temp file, run folder) may appear.

A batch case (``rc=1``) has one bad entry among good ones: exactly one error line (the bad
entry), its ``written`` siblings loadable, its ``summary`` listing the failure, and no file
other than those. :func:`check_promise` checks all of it, for ``tests/test_bad_inputs.py``
and ``benchmarks/reliability_counts.py`` alike.

**Adding a task's cases** (ASL, DSC, PVS, DTI, ...): write ``tests/bad_inputs/<task>.py``
with functions decorated ``@case_for("<task>")`` that take an empty folder and return a
:class:`Case` (helpers: :func:`write_nifti`, :func:`smooth_image`, :func:`_enhance_case`,
:func:`_info_case`, ``dicom_factory.write_series``). Every module of this package is
imported at the end of this file, so the cases join :data:`CASES` as ``<task>_<name>`` and
run in the tests and the benchmark with nothing else to edit.

Used by ``tests/test_bad_inputs.py`` and ``benchmarks/reliability_counts.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.io.sidecar import sidecar_path

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS) not in sys.path:  # dicom_factory lives in tests/
    sys.path.insert(0, str(_TESTS))

SHAPE = (12, 14, 10)
TINY_INFERENCE = {"patch_size": 16, "overlap": 4, "blend": "crop"}

# NIfTI-1 header byte offsets (nifti1.h)
_DIM, _DATATYPE, _BITPIX, _PIXDIM, _VOX_OFFSET = 40, 70, 72, 76, 108
_SCL_SLOPE, _SCL_INTER, _QFORM_CODE, _SFORM_CODE = 112, 116, 252, 254
_SROW_X, _MAGIC = 280, 344


@dataclass
class Case:
    """One bad input and what must happen with it (see the module docstring)."""

    name: str
    argv: list[str]
    inputs: list[Path]
    expect: str
    names: str
    api: Callable[[], Any] | None  # None: a command-line mistake with no API equivalent
    outputs: list[Path] = field(default_factory=list)
    may_change: tuple[str, ...] = ()  # files (relative to the folder) a refusal may rewrite
    check: Callable[[], None] | None = None  # an extra fact (e.g. a pickle did not run)
    rc: int = 2  # 1: a batch whose one bad entry fails alone
    written: list[Path] = field(default_factory=list)  # batch siblings that must be written
    summary: Path | None = None  # a batch's --summary, which must list the failed entry


CASES: dict[str, Callable[[Path], Case]] = {}


def case(fn: Callable[[Path], Case]) -> Callable[[Path], Case]:
    """Register ``fn`` (named ``case_<name>``) in :data:`CASES`."""
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def case_for(task: str) -> Callable[[Callable[[Path], Case]], Callable[[Path], Case]]:
    """Register a task's case ``case_<name>`` as ``<task>_<name>`` (see the module doc)."""

    def register(fn: Callable[[Path], Case]) -> Callable[[Path], Case]:
        name = f"{task}_{fn.__name__.removeprefix('case_')}"
        if name in CASES:
            raise ValueError(f"two bad-input cases named {name!r}")
        CASES[name] = fn
        return fn

    return register


PREFIX = "mrenhance: error: "


def check_promise(
    c: Case,
    folder: Path,
    before: dict[str, Any],
    after: dict[str, Any],
    rc: int,
    out: str,
    err: str,
) -> list[str]:
    """What broke of the promise for a run of ``c.argv`` in ``folder`` (exit code ``rc``,
    its stdout and stderr, :func:`snapshot` before and after); [] when it held."""
    from mrenhance.errors import printable

    problems = []
    lines = err.splitlines()
    line = lines[0] if lines else ""
    if rc != c.rc:
        problems.append(f"exit {rc}, expected {c.rc}")
    if len(lines) != 1 or not line.startswith(PREFIX):
        problems.append(f"stderr has {len(lines)} lines: {err[:300]!r}")
    if printable(c.names) not in line or c.expect not in line:
        problems.append(f"the line does not name {c.names!r} and {c.expect!r}: {line!r}")
    if c.rc == 2 and out:
        problems.append(f"stdout is not empty: {out[:200]!r}")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    allowed = set(c.may_change)
    allowed |= {str(Path(p).relative_to(folder)) for p in [*c.written, c.summary] if p}
    # every written image has its JSON provenance sidecar (mrenhance.io.sidecar), and a
    # written DWI series its gradient table (FSL .bval/.bvec beside it)
    for p in c.written:
        if str(p).endswith((".nii", ".nii.gz")):
            side = sidecar_path(Path(p)).relative_to(folder)
            allowed |= {str(side.with_suffix(s)) for s in (".json", ".bval", ".bvec")}
    if [k for k in changed if k not in allowed]:
        problems.append(f"files changed: {[k for k in changed if k not in allowed]}")
    for p in c.outputs:
        if os.path.lexists(p):
            problems.append(f"{p} was written")
    for p in c.written:
        problems += _loads_finite(p)
    if c.summary is not None:
        problems += _summary_lists_failure(c)
    if c.check is not None:
        try:
            c.check()
        except AssertionError as e:
            problems.append(str(e))
    return problems


def check_api(c: Case, line: str) -> list[str]:
    """What broke of the promise for ``c.api``: it must raise InputError with ``line``'s
    message (the CLI prints non-UTF-8 name bytes as ``\\xe9``)."""
    from mrenhance.errors import InputError, printable

    if c.api is None:
        return []
    try:
        c.api()
    except InputError as e:
        if PREFIX + printable(str(e)) != line:
            return [f"the API's message differs: {PREFIX + printable(str(e))!r} vs {line!r}"]
        return []
    except Exception as e:  # noqa: BLE001 - any other exception breaks the promise
        return [f"the API raised {type(e).__name__}: {e}"]
    return ["the API did not raise"]


def _loads_finite(p: Path) -> list[str]:
    from mrenhance.io import load

    try:
        vol = load(p)
    except Exception as e:  # noqa: BLE001
        return [f"batch sibling {p} does not load: {e}"]
    return [] if np.isfinite(vol.data).all() else [f"batch sibling {p} holds NaN/Inf"]


def _summary_lists_failure(c: Case) -> list[str]:
    try:
        summary = json.loads(Path(c.summary).read_text())  # type: ignore[arg-type]
    except (OSError, ValueError) as e:
        return [f"summary {c.summary} unreadable: {e}"]
    failed = [r for r in summary.get("results", []) if r.get("status") == "failed"]
    ok = [r for r in summary.get("results", []) if r.get("status") == "ok"]
    problems = []
    if len(failed) != 1 or c.expect not in failed[0].get("error", ""):
        problems.append(f"summary does not list the one failure: {failed}")
    if len(ok) != len(c.written):
        problems.append(f"summary lists {len(ok)} ok entries, expected {len(c.written)}")
    return problems


def build(name: str, folder: Path) -> Case:
    """Build case ``name`` inside the (empty, existing) ``folder``."""
    c = CASES[name](Path(folder))
    c.name = name
    return c


# --------------------------------------------------------------------------- good material


def smooth_image(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """A positive smooth blob with a little texture, float32 ``shape`` (x, y, z[, t])."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[:3]], indexing="ij")
    r2 = sum(g**2 for g in grids)
    img = 100.0 * np.exp(-r2 / 0.4) + rng.uniform(0, 5, shape[:3])
    if len(shape) == 4:
        img = img[..., None] * np.linspace(1.0, 0.8, shape[3])
    return img.astype(np.float32)


def affine_1mm() -> np.ndarray:
    aff = np.diag([1.0, 1.1, 1.5, 1.0])
    aff[:3, 3] = [-6.0, -7.0, -8.0]
    return aff


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """A valid NIfTI-1 file (nibabel), ``.nii`` or ``.nii.gz`` by the name."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data), affine_1mm() if affine is None else affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


def patch_bytes(path: Path, offset: int, fmt: str, *values: Any) -> Path:
    """Overwrite the bytes at ``offset`` of an uncompressed file with ``struct.pack``."""
    raw = bytearray(path.read_bytes())
    packed = struct.pack("<" + fmt, *values)
    raw[offset : offset + len(packed)] = packed
    path.write_bytes(bytes(raw))
    return path


def make_tiny_weights(folder: Path, name: str = "tiny") -> Path:
    """A tiny mDCSRN (b2u4, growth 4) saved as ``folder/<name>.safetensors`` + card."""
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights

    torch.manual_seed(0)
    model = create_model("mdcsrn-b2u4", growth=4)
    return save_weights(
        model, folder / f"{name}.safetensors", {"task": "sr_t1", "inference": TINY_INFERENCE}
    )


def _weights(folder: Path) -> Path:
    """The case's good weights, in a subfolder so the case folder stays the input's."""
    wdir = folder / "weights"
    wdir.mkdir(exist_ok=True)
    return make_tiny_weights(wdir)


def api_enhance(inp: Path, out: Path, model: Path, **load_kw: Any) -> None:
    """What ``mrenhance enhance inp -o out --model model`` does, through the Python API."""
    from mrenhance.enhance_api import enhance, resolve_weights
    from mrenhance.io import load, save
    from mrenhance.io.atomic import check_output_path
    from mrenhance.models.weights import load_weights

    load_weights(resolve_weights(model))
    check_output_path(out, False)
    save(enhance(load(inp, **load_kw), model), out)


def _enhance_case(folder: Path, inp: Path, expect: str, names: Path | str | None = None) -> Case:
    """``mrenhance enhance <inp> -o <folder>/out.nii.gz --model <tiny weights>``."""
    weights = _weights(folder)
    out = folder / "out.nii.gz"
    return Case(
        name="",
        argv=["enhance", str(inp), "-o", str(out), "--model", str(weights), "-q"],
        inputs=[inp, weights],
        expect=expect,
        names=str(inp if names is None else names),
        api=lambda: api_enhance(inp, out, weights),
        outputs=[out],
    )


def _info_case(
    inp: Path, expect: str, kind: str, names: Path | None = None, extra: tuple[Path, ...] = ()
) -> Case:
    """``mrenhance info <inp> --expect <kind>`` (load, then check_series)."""
    from mrenhance.io import load
    from mrenhance.io.validate import check_series

    return Case(
        name="",
        argv=["info", str(inp), "--expect", kind],
        inputs=[inp, *extra],
        expect=expect,
        names=str(inp if names is None else names),
        api=lambda: check_series(load(inp), kind, str(inp)),
    )


def _nii(folder: Path, name: str = "img.nii", data: np.ndarray | None = None) -> Path:
    return write_nifti(folder / name, smooth_image() if data is None else data)


# --------------------------------------------------------------------------- NIfTI cases


@case
def case_truncated_nii_gz(folder: Path) -> Case:
    p = write_nifti(folder / "cut.nii.gz", smooth_image((32, 32, 32)))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    return _enhance_case(folder, p, "truncated")


@case
def case_truncated_nii(folder: Path) -> Case:
    p = _nii(folder, "cut.nii")
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - 100])
    return _enhance_case(folder, p, "truncated NIfTI file")


@case
def case_empty_file(folder: Path) -> Case:
    p = folder / "empty.nii.gz"
    p.write_bytes(b"")
    return _enhance_case(folder, p, "empty or truncated")


@case
def case_wrong_magic(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _MAGIC, "4s", b"xx1\x00")
    return _enhance_case(folder, p, "bad magic")


@case
def case_gzip_of_garbage(folder: Path) -> Case:
    p = folder / "garbage.nii.gz"
    p.write_bytes(gzip.compress(np.random.default_rng(1).bytes(5000), mtime=0))
    return _enhance_case(folder, p, "not a NIfTI file")


@case
def case_corrupt_gzip_stream(folder: Path) -> Case:
    p = write_nifti(folder / "flip.nii.gz", smooth_image((32, 32, 32)))
    raw = bytearray(p.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 64):  # a burst of damage in the deflate data
        raw[i] ^= 0xA5
    p.write_bytes(bytes(raw))
    return _enhance_case(folder, p, "corrupt gzip stream")


@case
def case_huge_header(folder: Path) -> Case:
    """A NIfTI-2 header claiming 100000^3 float32 voxels (4 PB): refused from the header."""
    import nibabel as nib

    hdr = nib.Nifti2Header()
    hdr.set_data_dtype(np.float32)
    hdr["dim"] = [3, 100000, 100000, 100000, 1, 1, 1, 1]
    hdr["pixdim"] = [1, 1, 1, 1, 1, 1, 1, 1]
    hdr["vox_offset"] = 544
    hdr["sform_code"] = 1
    hdr.set_sform(np.eye(4))
    p = folder / "huge.nii"
    p.write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 4096)
    return _enhance_case(folder, p, "more than the limit")


@case
def case_zero_length_axis(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _DIM, "8h", 3, 12, 0, 10, 1, 1, 1, 1)
    return _enhance_case(folder, p, "zero-length")


@case
def case_negative_axis(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _DIM, "8h", 3, 12, -14, 10, 1, 1, 1, 1)
    return _enhance_case(folder, p, "zero-length or negative axis")


@case
def case_bad_ndim(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _DIM, "h", 9)
    return _enhance_case(folder, p, "invalid number of dimensions 9")


@case
def case_nan_voxels(folder: Path) -> Case:
    data = smooth_image()
    data[1, 2, 3] = data[4, 5, 6] = data[7, 8, 9] = np.nan
    return _enhance_case(folder, _nii(folder, "nan.nii.gz", data), "3 NaN/Inf voxels")


@case
def case_inf_voxels(folder: Path) -> Case:
    data = smooth_image()
    data[0, 0, 0], data[1, 1, 1] = np.inf, -np.inf
    return _enhance_case(folder, _nii(folder, "inf.nii.gz", data), "2 NaN/Inf voxels")


@case
def case_2d_image(folder: Path) -> Case:
    p = _nii(folder, "slice.nii.gz", smooth_image((16, 16, 1))[:, :, 0])
    return _enhance_case(folder, p, "expected a 3D or 4D image, got shape (16, 16)")


@case
def case_5d_image(folder: Path) -> Case:
    p = _nii(folder, "five.nii.gz", np.ones((6, 6, 6, 2, 2), np.float32))
    return _enhance_case(folder, p, "expected a 3D or 4D image, got shape (6, 6, 6, 2, 2)")


@case
def case_4d_for_3d_model(folder: Path) -> Case:
    p = _nii(folder, "four.nii.gz", smooth_image((12, 14, 10, 3)))
    return _enhance_case(folder, p, "need a 3D image")


@case
def case_singular_affine(folder: Path) -> Case:
    p = _nii(folder)
    patch_bytes(p, _QFORM_CODE, "hh", 0, 1)
    patch_bytes(p, _SROW_X, "12f", 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0)  # z axis of length 0
    return _enhance_case(folder, p, "affine is not invertible")


@case
def case_nonfinite_affine(folder: Path) -> Case:
    p = _nii(folder)
    patch_bytes(p, _QFORM_CODE, "hh", 0, 1)
    patch_bytes(p, _SROW_X, "4f", 1, 0, float("nan"), 0)
    return _enhance_case(folder, p, "affine has NaN/Inf entries")


@case
def case_scl_slope_overflow(folder: Path) -> Case:
    """int16 voxels up to 30000 times scl_slope 1e36 overflow float32 (max 3.4e38)."""
    p = _nii(folder, data=(smooth_image() * 300).astype(np.int16))
    patch_bytes(p, _SCL_SLOPE, "ff", 1e36, 0.0)
    return _enhance_case(folder, p, "overflow float32 after scaling")


@case
def case_scl_slope_infinite(folder: Path) -> Case:
    p = _nii(folder, data=(smooth_image() * 300).astype(np.int16))
    patch_bytes(p, _SCL_SLOPE, "ff", float("inf"), 0.0)
    return _enhance_case(folder, p, "non-finite scaling")


@case
def case_unknown_datatype(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _DATATYPE, "h", 999)
    return _enhance_case(folder, p, "unknown NIfTI datatype code 999")


@case
def case_complex_datatype(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _DATATYPE, "hh", 32, 64)  # complex64
    return _enhance_case(folder, p, "unsupported NIfTI data type")


@case
def case_bad_vox_offset(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _VOX_OFFSET, "f", 10.0)
    return _enhance_case(folder, p, "invalid vox_offset")


@case
def case_hdr_img_pair(folder: Path) -> Case:
    p = patch_bytes(_nii(folder), _MAGIC, "4s", b"ni1\x00")
    return _enhance_case(folder, p, "(.hdr/.img) are not supported")


@case
def case_unknown_file_type(folder: Path) -> Case:
    p = folder / "notes.txt"
    p.write_text("not an image\n")
    return _enhance_case(folder, p, "unknown file type")


@case
def case_missing_input(folder: Path) -> Case:
    return _enhance_case(folder, folder / "nowhere.nii.gz", "no such file")


@case
def case_unreadable_file(folder: Path) -> Case:
    """Permission bits stop other users; root ignores them, so there a read fails with EIO."""
    p = folder / "locked.nii.gz"
    if os.geteuid() == 0:
        p.symlink_to("/proc/self/mem")  # open() works, read() at offset 0 fails (EIO)
        expect = "cannot read file"
    else:
        write_nifti(p, smooth_image())
        p.chmod(0)
        expect = "permission denied"
    return _enhance_case(folder, p, expect)


# --------------------------------------------------------------------------- series kinds


@case
def case_dwi_bval_count(folder: Path) -> Case:
    p = _nii(folder, "dwi.nii.gz", smooth_image((8, 8, 6, 6)))
    bval = folder / "dwi.bval"
    bval.write_text("0 1000 1000 1000 1000\n")  # 5 values for 6 volumes
    return _info_case(p, "5 b-values for 6 volumes", "dwi", names=bval, extra=(bval,))


@case
def case_dwi_bvec_shape(folder: Path) -> Case:
    p = _nii(folder, "dwi.nii.gz", smooth_image((8, 8, 6, 4)))
    (folder / "dwi.bval").write_text("0 1000 1000 1000\n")
    bvec = folder / "dwi.bvec"
    bvec.write_text("0 1 0 0\n0 0 1 0\n")  # two rows, FSL needs three
    return _info_case(p, "expected 3 rows of 4 values", "dwi", names=bvec, extra=(bvec,))


@case
def case_dwi_bval_not_number(folder: Path) -> Case:
    p = _nii(folder, "dwi.nii.gz", smooth_image((8, 8, 6, 3)))
    bval = folder / "dwi.bval"
    bval.write_text("0 1000 lots\n")
    return _info_case(p, "not a number", "dwi", names=bval, extra=(bval,))


@case
def case_dwi_without_bvals(folder: Path) -> Case:
    p = _nii(folder, "dwi.nii.gz", smooth_image((8, 8, 6, 4)))
    return _info_case(p, "DWI series has no b-values", "dwi")


@case
def case_dsc_too_few_frames(folder: Path) -> Case:
    p = _nii(folder, "dsc.nii.gz", smooth_image((8, 8, 6, 5)))
    return _info_case(p, "DSC series has 5 time frames, at least 10", "dsc")


@case
def case_t1_given_4d(folder: Path) -> Case:
    p = _nii(folder, "t1.nii.gz", smooth_image((8, 8, 6, 2)))
    return _info_case(p, "a T1 image must be 3D", "t1")


# --------------------------------------------------------------------------- DICOM cases


def _series(folder: Path, name: str = "series", **kw: Any) -> Path:
    from dicom_factory import write_series

    d = folder / name
    d.mkdir()
    data = kw.pop("data", None)
    write_series(d, smooth_image((10, 12, 6)) if data is None else data, affine_1mm(), **kw)
    return d


@case
def case_dicom_two_series(folder: Path) -> Case:
    from dicom_factory import write_series

    d = _series(folder, prefix="A")
    write_series(d, smooth_image((10, 12, 6)), affine_1mm(), prefix="B")
    return _enhance_case(folder, d, "2 DICOM series in one folder")


@case
def case_dicom_missing_slice(folder: Path) -> Case:
    return _enhance_case(folder, _series(folder, skip=[(3, 0)]), "missing slice")


@case
def case_dicom_uneven_spacing(folder: Path) -> Case:
    def shift(ds: Any, k: int, t: int) -> None:
        if k >= 4:  # slices 4, 5 moved 0.6 mm further along the normal
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [f"{ipp[0]:.6g}", f"{ipp[1]:.6g}", f"{ipp[2] + 0.6:.6g}"]

    return _enhance_case(folder, _series(folder, edit=shift), "spacing")


@case
def case_dicom_no_pixel_data(folder: Path) -> Case:
    def strip(ds: Any, k: int, t: int) -> None:
        if k == 2:
            del ds.PixelData

    return _enhance_case(folder, _series(folder, edit=strip), "no pixel data")


@case
def case_dicom_mixed_orientation(folder: Path) -> Case:
    def tilt(ds: Any, k: int, t: int) -> None:
        if k == 1:
            ds.ImageOrientationPatient = ["0", "1", "0", "1", "0", "0"]

    return _enhance_case(folder, _series(folder, edit=tilt), "orientation")


@case
def case_dicom_duplicate_file(folder: Path) -> Case:
    d = _series(folder)
    first = sorted(d.iterdir())[0]
    shutil.copy(first, d / "copy_of_first.dcm")
    return _enhance_case(folder, d, "duplicate file")


@case
def case_non_dicom_named_dcm(folder: Path) -> Case:
    p = folder / "scan.dcm"
    p.write_bytes(b"this is a report, not an image\n" * 20)
    return _enhance_case(folder, p, "not a DICOM file")


@case
def case_non_dicom_dcm_in_series(folder: Path) -> Case:
    d = _series(folder)
    bad = d / "zz_report.dcm"
    bad.write_bytes(b"PDF-ish bytes" * 50)
    return _enhance_case(folder, d, "not a DICOM file", names=bad)


@case
def case_dicom_empty_folder(folder: Path) -> Case:
    d = folder / "empty_series"
    d.mkdir()
    return _enhance_case(folder, d, "no DICOM files found")


@case
def case_dicom_dsc_too_few_frames(folder: Path) -> Case:
    d = _series(folder, data=smooth_image((10, 12, 4, 3)), times=[0.0, 1.5, 3.0])
    return _info_case(d, "DSC series has 3 time frames", "dsc")


# --------------------------------------------------------------------------- outputs


def _good_input_case(folder: Path, out: Path, expect: str, names: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    weights = _weights(folder)
    return Case(
        name="",
        argv=["enhance", str(inp), "-o", str(out), "--model", str(weights), "-q"],
        inputs=[inp, weights],
        expect=expect,
        names=str(names),
        api=lambda: api_enhance(inp, out, weights),
        outputs=[] if os.path.lexists(out) else [out],
    )


@case
def case_output_folder_missing(folder: Path) -> Case:
    out = folder / "no_such_dir" / "out.nii.gz"
    return _good_input_case(folder, out, "does not exist", out)


@case
def case_output_exists(folder: Path) -> Case:
    out = folder / "out.nii.gz"
    out.write_bytes(b"an earlier result the user wants to keep")
    c = _good_input_case(folder, out, "output exists (use --overwrite", out)
    c.inputs.append(out)
    return c


@case
def case_output_parent_is_file(folder: Path) -> Case:
    parent = folder / "results.nii.gz"
    parent.write_bytes(b"a file, not a folder")
    out = parent / "out.nii.gz"
    c = _good_input_case(folder, out, "is not a folder", out)
    c.inputs.append(parent)
    return c


@case
def case_output_not_nifti(folder: Path) -> Case:
    out = folder / "out.png"
    return _good_input_case(folder, out, "can only save NIfTI", out)


@case
def case_summary_folder_missing(folder: Path) -> Case:
    c = _good_input_case(folder, folder / "out.nii.gz", "does not exist", "")
    summary = folder / "missing" / "summary.json"
    c.argv += ["--summary", str(summary)]
    c.names = str(summary)

    def api() -> None:
        from mrenhance.io.atomic import check_output_path

        check_output_path(summary, overwrite=True)

    c.api = api
    return c


# --------------------------------------------------------------------------- outputs onto inputs
# Path safety (src/mrenhance/io/paths.py, docs/reliability.md): an output that is, or
# resolves to, an input is refused even with --overwrite, before any work.


def _path_case(
    folder: Path, inputs: list[Path], out: Path, expect: str, names: Path | str, *extra: str
) -> Case:
    """``mrenhance enhance <inputs> -o <out> --model <tiny> --overwrite`` refused by the
    path checks; the API is :func:`mrenhance.io.paths.plan_enhance_outputs`."""
    from mrenhance.io.paths import plan_enhance_outputs

    weights = _weights(folder)
    return Case(
        name="",
        argv=[
            "enhance",
            *map(str, inputs),
            "-o",
            str(out),
            "--model",
            str(weights),
            "-q",
            "--overwrite",
            *extra,
        ],  # fmt: skip
        inputs=[*inputs, weights],
        expect=expect,
        names=str(names),
        api=lambda: plan_enhance_outputs([str(p) for p in inputs], out),
    )


@case
def case_output_is_input(folder: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    return _path_case(folder, [inp], inp, "output is the input", inp)


@case
def case_output_symlink_to_input(folder: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    link = folder / "link.nii.gz"
    link.symlink_to(inp.name)
    return _path_case(folder, [inp], link, f"output is the input {inp}", link)


@case
def case_output_dotdot_to_input(folder: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    (folder / "sub").mkdir()
    out = folder / "sub" / ".." / "good.nii.gz"
    return _path_case(folder, [inp], out, f"output is the input {inp}", out)


@case
def case_output_through_symlinked_folder(folder: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    (folder / "alias").symlink_to(".", target_is_directory=True)
    out = folder / "alias" / "good.nii.gz"
    return _path_case(folder, [inp], out, f"output is the input {inp}", out)


@case
def case_output_hard_link_to_input(folder: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    hard = folder / "hard.nii.gz"
    os.link(inp, hard)
    return _path_case(folder, [inp], hard, f"output is the input {inp}", hard)


@case
def case_output_inside_dicom_series(folder: Path) -> Case:
    d = _series(folder)
    out = d / "enhanced.nii.gz"
    return _path_case(folder, [d], out, f"inside the input folder {d}", out)


@case
def case_output_folder_is_input_folder(folder: Path) -> Case:
    scans = folder / "scans"
    scans.mkdir()
    a = _nii(scans, "a.nii.gz")
    c = _path_case(
        folder, [scans], scans, f"inside the input folder {scans}", scans / "a_enhanced.nii.gz"
    )
    c.inputs.append(a)
    return c


@case
def case_batch_two_inputs_one_output(folder: Path) -> Case:
    a, b = folder / "a", folder / "b"
    a.mkdir()
    b.mkdir()
    out = folder / "out"
    out.mkdir()
    first, second = _nii(a, "t1.nii.gz"), _nii(b, "t1.nii.gz", smooth_image(seed=1))
    return _path_case(
        folder, [first, second], out, f"inputs {first} and {second} would both be written",
        out / "t1_enhanced.nii.gz",
    )  # fmt: skip


@case
def case_batch_nii_and_nii_gz_one_output(folder: Path) -> Case:
    out = folder / "out"
    out.mkdir()
    first, second = _nii(folder, "t1.nii"), _nii(folder, "t1.nii.gz", smooth_image(seed=1))
    return _path_case(
        folder, [first, second], out, f"inputs {first} and {second} would both be written",
        out / "t1_enhanced.nii.gz",
    )  # fmt: skip


def _summary_case(folder: Path, target: Callable[[Path, Path], Path], expect: str) -> Case:
    from mrenhance.io.paths import check_not_input

    inp = _nii(folder, "good.nii.gz")
    weights = _weights(folder)
    summary = target(inp, weights)
    out = folder / "out.nii.gz"
    return Case(
        name="",
        argv=[
            "enhance",
            str(inp),
            "-o",
            str(out),
            "--model",
            str(weights),
            "-q",
            "--summary",
            str(summary),
        ],  # fmt: skip
        inputs=[inp, weights, weights.with_suffix(".json")],
        expect=expect,
        names=str(summary),
        api=lambda: check_not_input(
            summary, [inp, inp, out, weights, weights.with_suffix(".json")], what="summary"
        ),
        outputs=[out],
    )


@case
def case_summary_is_input(folder: Path) -> Case:
    return _summary_case(folder, lambda inp, w: inp, "summary is the input")


@case
def case_summary_is_model_card(folder: Path) -> Case:
    return _summary_case(folder, lambda inp, w: w.with_suffix(".json"), "summary is the input")


@case
def case_simulate_output_is_input(folder: Path) -> Case:
    from mrenhance.io.paths import check_not_input

    inp = _nii(folder, "good.nii.gz")
    alias = folder / "sub" / ".." / "good.nii.gz"
    (folder / "sub").mkdir()
    return Case(
        name="",
        argv=["simulate", "kspace", str(inp), "-o", str(alias), "--overwrite"],
        inputs=[inp],
        expect=f"output is the input {inp}",
        names=str(alias),
        api=lambda: check_not_input(alias, [inp]),
    )


@case
def case_evaluate_output_is_weights_card(folder: Path) -> Case:
    """Weights named ``evaluation.safetensors``: ``-o`` their folder would overwrite the card
    with ``evaluation.json``."""
    from mrenhance.io.paths import check_not_input

    wdir = folder / "run"
    wdir.mkdir()
    weights = make_tiny_weights(wdir, "evaluation")
    card = weights.with_suffix(".json")
    return Case(
        name="",
        argv=[
            "evaluate",
            "sr_t1",
            "--models",
            "tricubic",
            "--weights",
            str(weights),
            "-o",
            str(wdir),
            "--overwrite",
        ],  # fmt: skip
        inputs=[weights, card],
        expect=f"output is the input {card}",
        names=str(wdir / "evaluation.json"),
        api=lambda: check_not_input(wdir / "evaluation.json", [weights, card]),
    )


@case
def case_train_run_dir_holds_data(folder: Path) -> Case:
    from mrenhance.io.paths import check_run_folder

    data = write_nifti(folder / "blob.nii.gz", smooth_image((24, 24, 24)))
    recipe = write_recipe(folder / "tiny.yaml", tiny_recipe(data))
    return Case(
        name="",
        argv=["train", str(recipe), "--run-dir", str(folder), "-q"],
        inputs=[recipe, data],
        expect="run folder holds the input",
        names=str(folder),
        api=lambda: check_run_folder(folder, [recipe, data]),
    )


@case
def case_demo_output_holds_shipped_weights(folder: Path) -> Case:
    from mrenhance.io.paths import check_run_folder
    from mrenhance.models.weights import shipped_weights_dir

    package = shipped_weights_dir().parent
    return Case(
        name="",
        argv=["demo", "--output", str(package)],
        inputs=[],
        expect="demo output folder holds the input",
        names=str(package),
        api=lambda: check_run_folder(package, [shipped_weights_dir()], what="demo output folder"),
    )


@case
def case_output_holds_nan(folder: Path) -> Case:
    """Finite weights whose bias overflows float32: the result is Inf/NaN and never written."""
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights

    inp = _nii(folder, "good.nii.gz")
    wdir = folder / "weights"
    wdir.mkdir()
    torch.manual_seed(0)
    model = create_model("mdcsrn-b2u4", growth=4)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.fill_(3e38 if n.endswith("bias") else 1e10)
    weights = save_weights(
        model, wdir / "overflow.safetensors", {"task": "sr_t1", "inference": TINY_INFERENCE}
    )
    out = folder / "out.nii.gz"
    return Case(
        name="",
        argv=["enhance", str(inp), "-o", str(out), "--model", str(weights), "-q"],
        inputs=[inp, weights],
        expect="NaN/Inf voxels; nothing written",
        names=str(inp),
        api=lambda: api_enhance(inp, out, weights),
        outputs=[out],
    )


@case
def case_weights_hold_nan(folder: Path) -> Case:
    """A NaN tensor (with a matching sha256) is refused when the weights are loaded."""
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights

    wdir = folder / "weights"
    wdir.mkdir()
    model = create_model("mdcsrn-b2u4", growth=4)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("bias")).fill_(float("nan"))
    weights = save_weights(
        model, wdir / "nan.safetensors", {"task": "sr_t1", "inference": TINY_INFERENCE}
    )
    return _weights_case(folder, weights, "holds NaN/Inf values; refused", weights)


# --------------------------------------------------------------------------- weights


def _weights_case(folder: Path, weights: Path, expect: str, names: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    out = folder / "out.nii.gz"
    inputs = [inp] + [p for p in (weights, weights.with_suffix(".json")) if os.path.lexists(p)]
    return Case(
        name="",
        argv=["enhance", str(inp), "-o", str(out), "--model", str(weights), "-q"],
        inputs=inputs,
        expect=expect,
        names=str(names),
        api=lambda: api_enhance(inp, out, weights),
        outputs=[out],
    )


@case
def case_weights_sha256_mismatch(folder: Path) -> Case:
    weights = _weights(folder)
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(raw))
    return _weights_case(folder, weights, "sha256 mismatch", weights)


@case
def case_weights_card_missing(folder: Path) -> Case:
    weights = _weights(folder)
    card = weights.with_suffix(".json")
    card.unlink()
    return _weights_case(folder, weights, "model card not found", card)


@case
def case_weights_card_not_json(folder: Path) -> Case:
    weights = _weights(folder)
    card = weights.with_suffix(".json")
    card.write_text("{ this is not json")
    return _weights_case(folder, weights, "not valid JSON", card)


@case
def case_weights_not_safetensors(folder: Path) -> Case:
    """Junk bytes whose sha256 the card matches: the hash passes, the format does not."""
    weights = _weights(folder)
    junk = b"\x00\x01junk" * 100
    weights.write_bytes(junk)
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(junk).hexdigest()
    card_path.write_text(json.dumps(card))
    return _weights_case(folder, weights, "not a valid safetensors file", weights)


@case
def case_weights_missing(folder: Path) -> Case:
    weights = folder / "weights" / "gone.safetensors"
    weights.parent.mkdir()
    return _weights_case(folder, weights, "weights file not found", weights)


@case
def case_unknown_model_name(folder: Path) -> Case:
    inp = _nii(folder, "good.nii.gz")
    out = folder / "out.nii.gz"
    return Case(
        name="",
        argv=["enhance", str(inp), "-o", str(out), "--model", "no-such-model", "-q"],
        inputs=[inp],
        expect="no shipped weights of that name",
        names="no-such-model",
        api=lambda: api_enhance(inp, out, "no-such-model"),  # type: ignore[arg-type]
        outputs=[out],
    )


# --------------------------------------------------------------------------- recipes


def tiny_recipe(data_file: Path, **train: Any) -> dict[str, Any]:
    """A recipe that trains the tiny mDCSRN on one small NIfTI in a few seconds on a CPU."""
    t = {
        "patch_size": 16,
        "steps": 12,
        "checkpoint_every": 1,
        "val_every": 0,
        "batch_size": 2,
        "log_every": 1,
        "seed": 0,
    }
    t.update(train)
    return {
        "name": "tiny",
        "task": "sr_t1",
        "model": {"name": "mdcsrn-b2u4", "growth": 4},
        "data": {"files": [str(data_file)], "held_out": None, "augment": {"flip": True}},
        "train": t,
    }


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _recipe_case(
    folder: Path, recipe: dict[str, Any] | str, expect: str, overrides: tuple[str, ...] = ()
) -> Case:
    from mrenhance.training import train_recipe

    data = folder / "blob.nii.gz"
    if not data.exists():
        write_nifti(data, smooth_image((24, 24, 24)))
    path = folder / "bad.yaml"
    if isinstance(recipe, str):
        path.write_text(recipe)
    else:
        write_recipe(path, recipe)
    run = folder / "run"
    return Case(
        name="",
        argv=["train", str(path), *overrides, "--run-dir", str(run), "-q"],
        inputs=[path, data],
        expect=expect,
        names=str(path),
        api=lambda: train_recipe(path, list(overrides), run_dir=run, progress=False),
        outputs=[run],
    )


@case
def case_recipe_unknown_key(folder: Path) -> Case:
    r = tiny_recipe(folder / "blob.nii.gz")
    r["train"]["learning_rate"] = 0.01
    return _recipe_case(folder, r, "train.learning_rate: unknown key")


@case
def case_recipe_wrong_type(folder: Path) -> Case:
    r = tiny_recipe(folder / "blob.nii.gz")
    r["train"]["lr"] = "fast"
    return _recipe_case(folder, r, "train.lr: expected float")


@case
def case_recipe_bad_value(folder: Path) -> Case:
    r = tiny_recipe(folder / "blob.nii.gz", checkpoint_every=0)
    return _recipe_case(folder, r, "train.checkpoint_every: must be > 0")


@case
def case_recipe_unknown_data_key(folder: Path) -> Case:
    r = tiny_recipe(folder / "blob.nii.gz")
    r["data"]["filez"] = ["x.nii.gz"]
    return _recipe_case(folder, r, "data.filez: unknown key")


@case
def case_recipe_yaml_syntax(folder: Path) -> Case:
    return _recipe_case(folder, "name: tiny\ntask: [sr_t1\nmodel: {}\n", "YAML error")


@case
def case_recipe_override_type(folder: Path) -> Case:
    r = tiny_recipe(folder / "blob.nii.gz")
    return _recipe_case(folder, r, "train.steps: expected int", ("train.steps=twelve",))


@case
def case_recipe_missing_data_file(folder: Path) -> Case:
    missing = folder / "not_here.nii.gz"
    c = _recipe_case(folder, tiny_recipe(missing), "no such file")
    c.names = str(missing)
    return c


@case
def case_checkpoint_pickle_with_code(folder: Path) -> Case:
    """``train --resume`` on a last.pt whose pickle would run a shell command."""
    import torch

    from mrenhance.training import train_recipe

    marker = folder / "pwned"

    class Evil:
        def __reduce__(self):  # a pickle that calls os.system when loaded without care
            return (os.system, (f"touch {marker}",))

    data = write_nifti(folder / "blob.nii.gz", smooth_image((24, 24, 24)))
    path = write_recipe(folder / "tiny.yaml", tiny_recipe(data))
    run = folder / "run"
    ckpt = run / "supervised" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"format": "mrenhance-checkpoint", "kind": "supervised", "x": Evil()}, ckpt)
    (run / "config.json").write_text("{}")

    def not_run() -> None:
        assert not marker.exists(), "the pickle's code ran"

    return Case(
        name="",
        argv=["train", str(path), "--run-dir", str(run), "--resume", "-q"],
        inputs=[path, data, ckpt],
        expect="refused",
        names=str(ckpt),
        api=lambda: train_recipe(path, run_dir=run, resume=True, progress=False),
        may_change=("run/config.json",),
        check=not_run,
    )


# --------------------------------------------------------------------------- snapshots


def snapshot(root: Path) -> dict[str, Any]:
    """Every entry under ``root``: kind, and sha256 of regular files (mode for unreadable)."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            elif not stat.S_ISREG(st.st_mode):  # a FIFO or socket: never opened
                out[rel] = ("special", stat.S_IFMT(st.st_mode), st.st_mtime_ns)
            else:
                try:
                    out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
                except OSError:
                    st = p.stat()
                    out[rel] = ("unreadable", st.st_size, st.st_mtime_ns, st.st_mode)
    return out


# --------------------------------------------------------------------------- more modules
# Every other module of this package holds more cases (tests/bad_inputs/<class or task>.py,
# registered with @case or @case_for): importing them here puts them in CASES.


def _import_case_modules() -> None:
    import importlib
    import pkgutil

    package = Path(__file__).resolve().parent
    for info in sorted(pkgutil.iter_modules([str(package)]), key=lambda i: i.name):
        if info.name != "build" and not info.name.startswith("_"):
            importlib.import_module(f"bad_inputs.{info.name}")


_import_case_modules()
