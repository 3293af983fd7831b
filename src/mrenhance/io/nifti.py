"""NIfTI (.nii, .nii.gz) loading and saving that keeps the geometry and the header.

Loading reads and checks the header *before* any image data: dimensions, voxel count,
data type, file size, scaling and affine are validated, so a damaged or hostile file gives
one :class:`~mrenhance.errors.InputError` line that names it, never a traceback from
nibabel, zlib or numpy, and never a huge allocation. The data are then read by us
(nibabel parses the header) so a truncated file is caught by counting bytes.

Saving writes float32 by default, resets ``scl_slope``/``scl_inter`` and keeps the
original header's codes, units, intent and TR; it is atomic (see :mod:`mrenhance.io.atomic`).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mrenhance.errors import InputError, printable
from mrenhance.io.atomic import atomic_path, check_output_path
from mrenhance.io.validate import (
    B0_THRESHOLD,
    check_affine,
    check_bvals,
    check_bvecs,
    check_finite,
    check_nan_policy,
    check_spatial_shape,
    count_nonfinite,
    one_line_error,
)
from mrenhance.volume import Volume, voxel_sizes

NIFTI_SUFFIXES = (".nii", ".nii.gz")

_GZIP_MAGIC = b"\x1f\x8b"
_N1_SIZE = 348
_N2_SIZE = 540
# choice: extensions (AFNI, dcm2niix JSON, comments) are small; more than 64 MiB between
# the header and the data means a corrupt vox_offset, not a real extension.
_MAX_EXTENSION_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 16 * 1024 * 1024
_SCALE_CHUNK = 1 << 24
_SPACE_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3, "unknown": 1.0}
# choice: a time unit of "unknown" is taken as seconds, the most common case in the wild.
_TIME_TO_S = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6, "unknown": 1.0}


def is_nifti_name(path: str | os.PathLike) -> bool:
    """True if the file name ends in ``.nii`` or ``.nii.gz``."""
    return str(path).endswith(NIFTI_SUFFIXES)


def sniff_nifti(head: bytes) -> bool:
    """True if the first bytes of a file look like an uncompressed NIfTI-1/2 single file."""
    if len(head) >= _N1_SIZE and head[344:348] == b"n+1\x00":
        return True
    return len(head) >= 12 and head[4:12] == b"n+2\x00\r\n\x1a\n"


def _stem(path: Path) -> Path:
    name = path.name
    for suf in (".nii.gz", ".nii"):
        if name.endswith(suf):
            return path.with_name(name[: -len(suf)])
    return path.with_suffix("")


# --------------------------------------------------------------------------- loading


def _open_stream(path: Path) -> tuple[BinaryIO, bool]:
    """Open ``path`` for reading, through gzip when its first bytes are the gzip magic."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic == _GZIP_MAGIC:
            return gzip.open(path, "rb"), True
        return open(path, "rb"), False
    except PermissionError as e:
        raise InputError(f"{path}: cannot read file (permission denied)") from e
    except OSError as e:
        raise InputError(f"{path}: cannot read file ({e.strerror or e})") from e


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = fh.read(n - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _read_header(path: Path, fh: BinaryIO) -> tuple[Any, int]:
    """Parse the NIfTI-1/2 header (and extensions) from the start of ``fh``.

    Returns the nibabel header and the number of bytes read from ``fh`` so far.
    """
    import nibabel as nib

    raw = _read_exact(fh, 4)
    if len(raw) < 4:
        raise InputError(f"{path}: not a NIfTI file (file is empty or truncated)")
    sizes = {int.from_bytes(raw, "little"), int.from_bytes(raw, "big")}
    # sizeof_hdr tells the byte order; nibabel would guess it from dim[0], which a damaged
    # header gets wrong (every later field then reads as garbage)
    endian = "<" if int.from_bytes(raw, "little") in (_N1_SIZE, _N2_SIZE) else ">"
    if _N1_SIZE in sizes:
        klass, size, min_offset = nib.Nifti1Header, _N1_SIZE, _N1_SIZE
    elif _N2_SIZE in sizes:
        klass, size, min_offset = nib.Nifti2Header, _N2_SIZE, _N2_SIZE
    else:
        raise InputError(f"{path}: not a NIfTI file (bad header size field)")
    raw += _read_exact(fh, size - 4)
    if len(raw) < size:
        raise InputError(f"{path}: truncated NIfTI header ({len(raw)} of {size} bytes)")
    magic = raw[344:348] if klass is nib.Nifti1Header else raw[4:12]
    if magic in (b"ni1\x00", b"ni2\x00\r\n\x1a\n"):
        raise InputError(f"{path}: NIfTI header/image pairs (.hdr/.img) are not supported")
    if magic not in (b"n+1\x00", b"n+2\x00\r\n\x1a\n"):
        raise InputError(f"{path}: not a NIfTI file (bad magic {magic!r})")
    hdr0 = klass(binaryblock=raw, endianness=endian, check=False)
    vox_offset = float(hdr0["vox_offset"])
    if not np.isfinite(vox_offset) or vox_offset < min_offset:
        raise InputError(f"{path}: invalid vox_offset {vox_offset} in the NIfTI header")
    vox_offset = int(vox_offset)
    ext_flag = _read_exact(fh, 4) if vox_offset >= size + 4 else b""
    if ext_flag[:1] in (b"", b"\x00"):
        hdr = hdr0
        consumed = size + len(ext_flag)
    else:
        n_ext = vox_offset - size - 4
        if n_ext > _MAX_EXTENSION_BYTES:
            raise InputError(f"{path}: implausible vox_offset {vox_offset} in the NIfTI header")
        ext = _read_exact(fh, n_ext)
        if len(ext) < n_ext:
            raise InputError(f"{path}: truncated NIfTI file (ends inside the header extensions)")
        hdr = klass.from_fileobj(io.BytesIO(raw + ext_flag + ext), endianness=endian, check=False)
        consumed = vox_offset
    return hdr, consumed


def _read_data(
    path: Path, fh: BinaryIO, compressed: bool, offset: int, consumed: int, dtype, n_vox: int
) -> np.ndarray:
    """Read ``n_vox`` values of ``dtype`` at byte ``offset``; raise if the file is short."""
    n_bytes = n_vox * dtype.itemsize
    if not compressed:
        size = path.stat().st_size
        if size < offset + n_bytes:
            raise InputError(
                f"{path}: truncated NIfTI file (header needs {offset + n_bytes} bytes, "
                f"file has {size})"
            )
        fh.seek(offset)
        flat = np.fromfile(fh, dtype=dtype, count=n_vox)
        if flat.size != n_vox:
            raise InputError(f"{path}: truncated NIfTI file (short read)")
        return flat
    # Compressed: the decompressed size is unknown until the stream is read, so read into
    # an uninitialised buffer (pages are only committed as they are filled) and count.
    skip = offset - consumed
    while skip > 0:
        b = fh.read(min(skip, _READ_CHUNK))
        if not b:
            raise InputError(f"{path}: truncated NIfTI file (ends before the image data)")
        skip -= len(b)
    buf = np.empty(n_bytes, dtype=np.uint8)
    view = memoryview(buf)
    got = 0
    while got < n_bytes:
        n = fh.readinto(view[got : min(n_bytes, got + _READ_CHUNK)])
        if not n:
            raise InputError(
                f"{path}: truncated NIfTI file (header needs {n_bytes} bytes of image data, "
                f"file has {got})"
            )
        got += n
    # Reading one more byte makes gzip verify its CRC when the stream ends here.
    fh.read(1)
    return buf.view(dtype)


def _to_float32(
    path: Path, flat: np.ndarray, slope: float, inter: float, nan_policy: str
) -> tuple[np.ndarray, int]:
    """Scale raw values to float32; return them and the number of non-finite raw values."""
    n_raw_bad = count_nonfinite(flat)
    if slope == 1.0 and inter == 0.0 and flat.dtype == np.float32:
        out = flat
    else:
        out = np.empty(flat.shape, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            for i in range(0, flat.size, _SCALE_CHUNK):
                seg = flat[i : i + _SCALE_CHUNK].astype(np.float64)
                if slope != 1.0 or inter != 0.0:
                    seg = seg * slope + inter
                out[i : i + _SCALE_CHUNK] = seg
    n_out_bad = n_raw_bad if out is flat else count_nonfinite(out)
    if n_out_bad > n_raw_bad:
        raise InputError(
            f"{path}: {n_out_bad - n_raw_bad} voxels overflow float32 after scaling "
            f"(scl_slope={slope:g}, scl_inter={inter:g})"
        )
    return out, n_raw_bad


def read_sidecars(path: Path, n_volumes: int) -> dict[str, np.ndarray]:
    """Read FSL ``.bval``/``.bvec`` files next to a NIfTI (``x.nii.gz`` -> ``x.bval``).

    Returns
    -------
    dict
        ``"bvals"``: (N,) float64 in s/mm^2; ``"bvecs"``: (N, 3) float64, one direction
        per volume as written in the file (FSL convention: image frame, x flipped for
        images with a positive affine determinant). Only the files that exist are read; N
        must equal the number of volumes. The ``.bvec`` file may hold 3 rows (FSL) or N rows
        of 3; a NaN direction (dipy's files) on a b=0 volume becomes (0, 0, 0).
    """
    stem = _stem(path)
    out: dict[str, np.ndarray] = {}
    for key, suffix in (("bvals", ".bval"), ("bvecs", ".bvec")):
        side = stem.with_name(stem.name + suffix)
        if not side.is_file():
            continue
        try:
            lines = [ln.split() for ln in side.read_text().splitlines() if ln.strip()]
            rows = [np.array([float(v) for v in ln], dtype=np.float64) for ln in lines]
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{side}: cannot read {suffix} file ({e})") from e
        except ValueError as e:
            raise InputError(f"{side}: {suffix} file holds a value that is not a number") from e
        if key == "bvals":
            arr = np.concatenate(rows) if rows else np.zeros(0)
            if arr.size != n_volumes:
                raise InputError(f"{side}: {arr.size} b-values for {n_volumes} volumes")
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{side}: .bval file holds NaN/Inf")
            check_bvals(arr, side)
        else:
            lens = {r.size for r in rows}
            if len(rows) == 3 and lens == {n_volumes}:
                arr = np.stack(rows).T
            elif len(rows) == n_volumes and lens == {3}:
                arr = np.stack(rows)  # choice: accept the (N x 3) layout dipy ships too
            else:
                raise InputError(
                    f"{side}: expected 3 rows of {n_volumes} values (FSL bvecs), got "
                    f"{len(rows)} rows of {sorted(lens)} values"
                )
            bad = ~np.isfinite(arr).all(axis=1)
            b0 = out["bvals"] <= B0_THRESHOLD if "bvals" in out else np.zeros(n_volumes, bool)
            if np.any(bad & ~b0):
                raise InputError(
                    f"{side}: NaN/Inf gradient direction for a diffusion-weighted volume"
                )
            arr[bad] = 0.0
            check_bvecs(arr, out.get("bvals"), side)
        out[key] = arr
    return out


def write_sidecars(
    path: Path, bvals: np.ndarray, bvecs: np.ndarray | None, *, overwrite: bool = False
) -> list[Path]:
    """Write FSL ``.bval`` (one row) and ``.bvec`` (3 rows) files next to a NIfTI path.

    The inverse of :func:`read_sidecars`: ``bvals`` (N,) s/mm^2, ``bvecs`` (N, 3) in the
    convention they were read in. Returns the paths written (atomically).
    """
    from mrenhance.io.atomic import write_text_atomic

    stem = _stem(Path(path))
    bvals = np.asarray(bvals, dtype=np.float64).reshape(-1)
    written = []
    rows = {".bval": [bvals]}
    if bvecs is not None:
        rows[".bvec"] = list(np.asarray(bvecs, dtype=np.float64).reshape(-1, 3).T)
    for suffix, lines in rows.items():
        side = stem.with_name(stem.name + suffix)
        text = "".join(" ".join(f"{v:.6g}" for v in line) + "\n" for line in lines)
        write_text_atomic(side, text, overwrite=overwrite)
        written.append(side)
    return written


def load_nifti(
    path: str | os.PathLike, *, nan_policy: str = "error", max_voxels: int = 2**31
) -> Volume:
    """Load a .nii/.nii.gz file into a :class:`~mrenhance.volume.Volume`.

    Parameters
    ----------
    path:
        The NIfTI-1 or NIfTI-2 single file, optionally gzipped.
    nan_policy:
        ``"error"`` (default) refuses NaN/Inf voxels; ``"zero"`` sets them to 0 and records
        it in ``meta["provenance"]``.
    max_voxels:
        Refuse images with more voxels than this, checked from the header before reading.

    Returns
    -------
    Volume
        ``data``: float32 (x, y, z) or (x, y, z, t), scaled by scl_slope/scl_inter;
        ``affine``: the header's best affine (sform, else qform, else pixdim) in mm;
        ``meta``: ``source``, ``voxel_size`` (mm), ``provenance``, ``nifti_header`` (the
        nibabel header, kept by :func:`save_nifti`), ``tr_s`` (4D with a TR), ``bvals``
        (N,) and ``bvecs`` (N, 3) from ``.bval``/``.bvec`` sidecars.

    Raises
    ------
    InputError
        One line starting with the file name, for any unreadable or inconsistent file.
    """
    path = Path(path).expanduser()
    try:
        return _load_nifti(path, nan_policy, max_voxels)
    except InputError as e:
        raise one_line_error(e) from e.__cause__


def _load_nifti(path: Path, nan_policy: str, max_voxels: int) -> Volume:
    check_nan_policy(nan_policy, path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    fh, compressed = _open_stream(path)
    try:
        with fh:
            return _load_open(path, fh, compressed, nan_policy, max_voxels)
    except InputError:
        raise
    except MemoryError as e:
        raise InputError(f"{path}: not enough memory to load this image") from e
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: truncated or corrupt gzip stream ({e})") from e
    except PermissionError as e:
        raise InputError(f"{path}: cannot read file (permission denied)") from e
    except Exception as e:  # noqa: BLE001
        # choice: nibabel raises HeaderDataError (not a ValueError), KeyError, struct and
        # numpy errors on damaged headers; for a user each of them means "bad file".
        raise InputError(f"{path}: cannot read NIfTI file ({type(e).__name__}: {e})") from e


def _units(hdr: Any) -> tuple[str, str]:
    """(space, time) unit names; "unknown" for codes nibabel does not know."""
    try:
        return hdr.get_xyzt_units()
    except (KeyError, ValueError):
        return "unknown", "unknown"


def _load_open(
    path: Path, fh: BinaryIO, compressed: bool, nan_policy: str, max_voxels: int
) -> Volume:
    hdr, consumed = _read_header(path, fh)
    # --- shape, checked before anything is allocated
    dim = hdr["dim"]
    n_dim = int(dim[0])
    if not 1 <= n_dim <= 7:
        raise InputError(f"{path}: invalid number of dimensions {n_dim} in the NIfTI header")
    full_shape = tuple(int(d) for d in dim[1 : n_dim + 1])
    shape = check_spatial_shape(full_shape, path, max_voxels)
    n_vox = int(np.prod(full_shape, dtype=object))
    # --- data type and scaling
    try:
        dtype = hdr.get_data_dtype()
    except Exception as e:  # nibabel raises a bare KeyError/HeaderDataError on unknown codes
        raise InputError(f"{path}: unknown NIfTI datatype code {int(hdr['datatype'])}") from e
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise InputError(
            f"{path}: unsupported NIfTI data type {dtype} (only real-valued scalar images)"
        )
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if np.isnan(slope) or slope == 0.0:
        slope, inter = 1.0, 0.0  # NIfTI-1: slope 0 (or unset) means "no scaling"
    elif not np.isfinite(slope) or not np.isfinite(inter):
        raise InputError(f"{path}: non-finite scaling scl_slope={slope}, scl_inter={inter}")
    # --- geometry
    with np.errstate(all="ignore"):
        try:
            affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
        except Exception as e:  # invalid quaternion / negative zooms in nibabel
            raise InputError(f"{path}: cannot compute the affine from the header ({e})") from e
    affine = check_affine(affine, path)
    hdr = hdr.copy()
    space_unit, time_unit = _units(hdr)
    to_mm = _SPACE_TO_MM.get(space_unit, 1.0)
    if to_mm != 1.0:
        affine[:3, :] *= to_mm
        hdr.set_xyzt_units(xyz="mm")
        hdr.set_qform(affine, code=int(hdr["qform_code"]))
        hdr.set_sform(affine, code=int(hdr["sform_code"]))
    # --- data
    offset = int(float(hdr["vox_offset"]))
    flat = _read_data(path, fh, compressed, offset, consumed, dtype, n_vox)
    flat, n_bad = _to_float32(path, flat, slope, inter, nan_policy)
    data = flat.reshape(shape, order="F")
    provenance = [f"load {path}"]
    if n_bad:
        data = check_finite(data, path, nan_policy)
        provenance.append(f"nan_policy=zero: replaced {n_bad} non-finite voxels")
    meta: dict[str, Any] = {
        "source": str(path),
        "voxel_size": voxel_sizes(affine),
        "provenance": provenance,
        "nifti_header": hdr,
        "stored_dtype": str(hdr.get_data_dtype()),
    }
    if len(shape) == 4:
        tr = float(hdr["pixdim"][4])
        if np.isfinite(tr) and tr > 0 and time_unit in _TIME_TO_S:
            meta["tr_s"] = tr * _TIME_TO_S[time_unit]
    meta.update(read_sidecars(path, shape[3] if len(shape) == 4 else 1))
    return Volume(data, affine, meta)


# --------------------------------------------------------------------------- saving


def _descrip(provenance: list[str]) -> bytes:
    # choice: "load <path>" steps keep only the file name; the full path would fill the
    # 80 bytes and hide the processing steps that made this image.
    steps = [f"load {Path(s[5:]).name}" if s.startswith("load ") else str(s) for s in provenance]
    # a file name that is not UTF-8 is recorded as "caf\xe9", never as invalid bytes
    text = printable("; ".join(steps)).encode("utf-8")[:80]
    return text.decode("utf-8", errors="ignore").encode("utf-8")


def _set_tr(hdr: Any, tr_s: float) -> None:
    _, time_unit = _units(hdr)
    factor = _TIME_TO_S.get(time_unit)
    if factor is None or time_unit == "unknown":
        hdr.set_xyzt_units(t="sec")
        factor = 1.0
    hdr["pixdim"][4] = tr_s / factor


def _output_array(volume: Volume, dtype: Any, path: Path) -> np.ndarray:
    data = np.asarray(volume.data)
    if dtype is None:
        return data.astype(np.float32, copy=False)
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise InputError(f"{path}: unknown output dtype {dtype!r}") from e
    if dt.kind == "f":
        with np.errstate(over="ignore"):
            return data.astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        finite = np.isfinite(data).all()
        if (
            finite
            and data.size
            and data.min() >= info.min
            and data.max() <= info.max
            and np.array_equal(data, np.round(data))
        ):
            return data.astype(dt)  # exact integers: stored as is, no scaling
        if not finite:
            raise InputError(f"{path}: cannot save NaN/Inf voxels as {dt}")
        return data  # nibabel picks scl_slope/scl_inter to fit the integer range
    raise InputError(f"{path}: unsupported output dtype {dt} (use a float or integer type)")


def display_range(data: np.ndarray) -> tuple[float, float]:
    """(min, max) of ``data`` (float32-rounded), the written image's ``cal_min/cal_max``."""
    if not data.size:
        return 0.0, 0.0
    return float(np.float32(np.min(data))), float(np.float32(np.max(data)))


def _check_finite_output(data: np.ndarray, path: Path) -> None:
    """Refuse to write an array holding NaN/Inf: every writer goes through here.

    A NaN result (a diverged model, an overflow in float32) would otherwise be saved as a
    valid-looking image and silently poison whatever reads it next.
    """
    if data.dtype.kind in "fc":
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise InputError(
                f"{path}: the result holds {bad} NaN/Inf voxels; not written "
                "(check the model and the input's intensity range)"
            )


def save_nifti(
    volume: Volume, path: str | os.PathLike, *, overwrite: bool = False, dtype: Any = None
) -> Path:
    """Save a Volume as .nii or .nii.gz, atomically, keeping the original header.

    Parameters
    ----------
    volume:
        The image; ``volume.meta["nifti_header"]`` (from :func:`load_nifti`) is kept:
        qform/sform codes, xyzt units, intent, TR (pixdim[4]), dim_info, slice timing.
    path:
        Output file ending in ``.nii`` or ``.nii.gz``; its folder must exist.
    overwrite:
        Replace an existing file; otherwise :class:`~mrenhance.errors.OutputExistsError`.
    dtype:
        On-disk data type; default float32. Integer types store exact integers as they
        are and otherwise get a scl_slope/scl_inter chosen by nibabel.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        A non-NIfTI name, an unusable output path, a non-finite affine, or data holding
        NaN/Inf (never written, whatever the caller).
    """
    import nibabel as nib

    path = Path(path).expanduser()
    if not is_nifti_name(path):
        raise InputError(f"{path}: can only save NIfTI (.nii or .nii.gz)")
    check_output_path(path, overwrite)
    affine = np.asarray(volume.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{path}: the volume's affine is not a finite 4x4 matrix")
    data = _output_array(volume, dtype, path)
    _check_finite_output(data, path)
    src_hdr = volume.meta.get("nifti_header")
    if isinstance(src_hdr, nib.Nifti1Header):  # Nifti2Header is a subclass
        hdr = src_hdr.copy()
        klass = nib.Nifti2Image if isinstance(src_hdr, nib.Nifti2Header) else nib.Nifti1Image
        q_code, s_code = int(hdr["qform_code"]), int(hdr["sform_code"])
        if q_code == 0 and s_code == 0:
            s_code = 2  # choice: never drop the affine; "aligned" is the honest code
        old_spatial = tuple(int(d) for d in hdr["dim"][1:4])
        if old_spatial != tuple(data.shape[:3]):
            # slice timing fields describe the old grid
            hdr["slice_start"], hdr["slice_end"], hdr["slice_code"] = 0, 0, 0
            hdr["slice_duration"] = 0.0
        old_tr = float(hdr["pixdim"][4]) if int(hdr["dim"][0]) >= 4 else 0.0
    else:
        hdr = nib.Nifti1Header()
        klass = nib.Nifti1Image
        q_code = s_code = 1  # choice: scanner anatomical, as dcm2niix writes
        hdr.set_xyzt_units(xyz="mm", t="sec")
        old_tr = 0.0
    if klass is nib.Nifti1Image and max(data.shape) > 32767:
        # NIfTI-1 stores dims as int16; nibabel would write a FreeSurfer-only hack instead.
        hdr = nib.Nifti2Header.from_header(hdr)
        klass = nib.Nifti2Image
    # the display range of the data written (the input's described the old data);
    # choice: min/max, as the image is not clipped on disk either
    hdr["cal_min"], hdr["cal_max"] = display_range(volume.data)
    try:
        hdr.set_data_dtype(data.dtype if dtype is None else np.dtype(dtype))
    except Exception as e:  # noqa: BLE001 - nibabel's HeaderDataError for e.g. float16
        raise InputError(f"{path}: NIfTI cannot store data type {np.dtype(dtype)}") from e
    hdr["scl_slope"], hdr["scl_inter"] = np.nan, np.nan
    provenance = volume.meta.get("provenance")
    own = bytes(hdr["descrip"].tobytes()).rstrip(b"\0").strip()
    # the user's own description is kept; the full provenance is in the JSON sidecar
    # (io.sidecar). Ours (a "load ..." list of steps) is replaced by the new steps.
    if provenance and (not own or own.startswith(b"load ")):
        hdr["descrip"] = _descrip(list(provenance))
    try:
        img = klass(data, None, header=hdr)
        img.set_qform(affine, code=q_code)
        img.set_sform(affine, code=s_code)
        if data.ndim == 4:
            tr_s = volume.meta.get("tr_s")
            if tr_s is not None and np.isfinite(tr_s) and tr_s > 0:
                _set_tr(img.header, float(tr_s))
            elif old_tr > 0:
                img.header["pixdim"][4] = old_tr
    except (ValueError, TypeError, nib.spatialimages.HeaderDataError) as e:
        raise InputError(f"{path}: cannot build a NIfTI header for this volume ({e})") from e
    bvals = volume.meta.get("bvals") if data.ndim == 4 else None
    if bvals is not None and np.size(bvals) == data.shape[3]:
        # a DWI series keeps its gradient table beside it (FSL .bval/.bvec)
        write_sidecars(path, bvals, volume.meta.get("bvecs"), overwrite=overwrite)
    try:
        with atomic_path(path, overwrite) as tmp:
            img.to_filename(str(tmp))
    except InputError:
        raise
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from e
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: cannot write NIfTI ({e})") from e
    return path
