"""DICOM series (a folder, or one multi-frame file) to a :class:`~mrenhance.volume.Volume`.

Geometry follows the DICOM standard (PS3.3 C.7.6.2.1.1): ImageOrientationPatient holds the
row direction cosine r (direction of increasing column index) and the column direction
cosine c; PixelSpacing is (row spacing, column spacing). The array axes are (column i,
row j, slice k): each slice's ``pixel_array`` (rows, columns) is transposed. Slices are
sorted by their position along the normal r x c, and the affine is

    LPS = [r * PixelSpacing[1] | c * PixelSpacing[0] | (IPP_last - IPP_first) / (n - 1) | IPP_first]

converted to nibabel's RAS+ by negating x and y. Several images at one position make a 4D
series, ordered by TemporalPositionIdentifier, TriggerTime, AcquisitionTime, b-value or
InstanceNumber (the first that tells them apart).

Diffusion: each image's b-value and gradient direction come from the first of (1) the
standard DiffusionBValue (0018,9087) / DiffusionGradientOrientation (0018,9089), for
enhanced multi-frame files in MRDiffusionSequence; (2) Siemens' private elements
(0019,100C) B_value / (0019,100E) DiffusionGradientDirection; (3) the Siemens CSA image
header (0029,1010, read with nibabel's ``nicom.csareader``): ``B_value``,
``DiffusionGradientDirection``, or the principal eigenvector of ``B_matrix`` when only that
is there. (2) and (3) fill in for each other field by field; where both hold a value and
they differ, (2) is used with a warning. All directions are in the patient frame (LPS) and
rotated into the image frame in one place, :func:`_fsl_bvecs`. The images of one volume
must agree on the b-value and direction, and no volume of a DWI series may lack a b-value
(:func:`_check_volume_diffusion`).

Every problem (not DICOM, two series, a Siemens mosaic, missing or unevenly spaced
slices, mixed geometry, no pixel data, undecodable pixels) raises one
:class:`~mrenhance.errors.InputError` line that starts with the offending file. A Siemens
CSA header that cannot be parsed is ignored (noted in the provenance) unless it leaves an
image of a DWI series without its b-value.

Siemens mosaics (ImageType MOSAIC, or NumberOfImagesInMosaic > 1 in the CSA image header
or in (0019,100A)) are refused, not split; the error says to convert them with dcm2niix
(:func:`_refuse_mosaic` says why).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.io.validate import (
    check_affine,
    check_finite,
    check_nan_policy,
    check_spatial_shape,
    count_nonfinite,
    one_line_error,
)
from mrenhance.volume import Volume, voxel_sizes

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# choice: images closer than 0.01 mm along the normal are at the same slice position;
# real slice spacings are >= 0.1 mm and DS strings carry far more precision than that.
_SAME_POSITION_MM = 0.01
# Spacing check: |step - median| <= 0.01 mm + 1% of the median (numpy.isclose style).
_SPACING_ATOL_MM = 0.01
_SPACING_RTOL = 0.01
_GEOMETRY_TOL = 1e-4


@dataclass
class _Frame:
    """One 2D image: a single-frame file or one frame of a multi-frame file."""

    file: Path
    ds: Any
    frame: int | None  # index inside a multi-frame file
    iop: np.ndarray  # (6,) row cosine, column cosine (LPS)
    ipp: np.ndarray  # (3,) mm (LPS)
    spacing: tuple[float, float]  # PixelSpacing: (between rows, between columns) mm
    rows: int
    cols: int
    slope: float = 1.0
    inter: float = 0.0
    thickness: float | None = None
    spacing_between: float | None = None
    temporal_index: float | None = None
    trigger_ms: float | None = None
    acq_time: tuple[int | None, float] | None = None  # (date ordinal or None, seconds)
    bval: float | None = None
    bvec_lps: np.ndarray | None = None
    instance: int | None = None
    pos: float = 0.0  # position along the slice normal, mm
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Path, then the frame number for multi-frame files: the start of an error line."""
        return f"{self.file}" if self.frame is None else f"{self.file}: frame {self.frame + 1}"


def _err(frame: _Frame, problem: str) -> InputError:
    return InputError(f"{frame.label}: {problem}")


# --------------------------------------------------------------------------- small parsers


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="ignore").strip("\x00 ")
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        if isinstance(value, bytes):  # an FD/DS value read without its VR
            if len(value) == 8 * n:
                arr = np.frombuffer(value, dtype="<f8").astype(np.float64)
            else:
                arr = np.array(value.decode("ascii").strip("\x00 ").split("\\"), np.float64)
        elif isinstance(value, str | int | float):
            arr = np.array([value], dtype=np.float64)
        else:
            arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) else None


def _parse_tm(value: Any) -> float | None:
    """DICOM TM ('HHMMSS.FFFFFF', also 'HH:MM:SS') to seconds since midnight."""
    if value is None:
        return None
    s = str(value).strip().replace(":", "")
    if not s:
        return None
    try:
        main, _, frac = s.partition(".")
        hh = int(main[0:2])
        mm = int(main[2:4]) if len(main) >= 4 else 0
        ss = int(main[4:6]) if len(main) >= 6 else 0
        return hh * 3600 + mm * 60 + ss + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None


def _parse_da(value: Any) -> int | None:
    s = str(value).strip() if value is not None else ""
    try:
        return _dt.date(int(s[0:4]), int(s[4:6]), int(s[6:8])).toordinal() if s else None
    except ValueError:
        return None


def _parse_dt(value: Any) -> tuple[int | None, float] | None:
    """DICOM DT ('YYYYMMDDHHMMSS.FFFFFF&ZZXX') to (date ordinal, seconds of the day)."""
    if value is None:
        return None
    s = str(value).strip()
    for sign in "+-":
        if sign in s[8:]:
            s = s[: 8 + s[8:].index(sign)]
    if len(s) < 8:
        return None
    day = _parse_da(s[:8])
    sec = _parse_tm(s[8:]) if len(s) > 8 else 0.0
    return None if day is None or sec is None else (day, sec)


# --------------------------------------------------------------------------- reading files


def _read(path: Path, *, strict: bool) -> Any | None:
    """Read a DICOM file's header (pixel data deferred); None if it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=False, defer_size="4 KB")
            _convert_all(ds)
            return ds
    except InvalidDicomError as e:
        if strict:
            raise InputError(f"{path}: not a DICOM file (no DICM preamble)") from e
        return None
    except PermissionError as e:
        raise InputError(f"{path}: cannot read file (permission denied)") from e
    except MemoryError as e:
        raise InputError(f"{path}: not enough memory to read this DICOM file") from e
    except Exception as e:  # noqa: BLE001
        # choice: pydicom parses untrusted bytes and can raise almost anything (EOFError,
        # struct.error, KeyError, ...); for a user every one of them means "bad file".
        raise InputError(f"{path}: cannot read DICOM file ({type(e).__name__}: {e})") from e


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _convert_all(ds: Any) -> None:
    """Parse every header element now (pixel data stays deferred).

    pydicom converts raw elements lazily, on first access; a damaged element would then
    raise deep inside the geometry code. Converting here puts every header problem inside
    :func:`_read`'s error handling, where it is reported with the file name.
    """
    for tag in list(ds.keys()):
        if tag in _PIXEL_TAGS:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                _convert_all(item)


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _item(seq_owner: Any, keyword: str) -> Any | None:
    """First item of sequence ``keyword`` in ``seq_owner``, or None."""
    if seq_owner is None or keyword not in seq_owner:
        return None
    seq = seq_owner[keyword].value
    return seq[0] if seq else None


def _get(dsets: list[Any], seq_keyword: str | None, keyword: str) -> Any | None:
    """Value of ``keyword`` from the first dataset (or its ``seq_keyword`` item) holding it."""
    for ds in dsets:
        owner = ds if seq_keyword is None else _item(ds, seq_keyword)
        if owner is not None and keyword in owner:
            value = owner[keyword].value
            if value is not None and value != "":
                return value
    return None


@dataclass
class _Siemens:
    """Diffusion values from Siemens' private data of one file, and what went wrong there."""

    bval: float | None = None
    bvec: np.ndarray | None = None  # (3,) LPS
    csa_problem: str | None = None  # why the CSA image header could not be read
    disagreement: str | None = None  # how (0019,100C/100E) and the CSA header differ


_SIEMENS_MR_CREATOR = "SIEMENS MR HEADER"
_SIEMENS_CSA_CREATOR = "SIEMENS CSA HEADER"
# choice: b-values and direction components closer than this agree; the CSA header holds
# decimal strings (about 8 digits), (0019,100E) doubles, (0019,100C) an integer string.
_SIEMENS_B_RTOL = 1e-3
_SIEMENS_DIRECTION_ATOL = 1e-3
# choice: a B_matrix gives a direction only when one eigenvalue holds >= 90 % of its trace
# (a diffusion-weighted image along one gradient, plus small imaging-gradient terms); a
# trace-weighted or isotropic image has no direction.
_B_MATRIX_DOMINANCE = 0.9


def _siemens_private(ds: Any) -> tuple[float | None, np.ndarray | None]:
    """b-value and gradient direction (LPS) from Siemens' private elements (0019,100C),
    (0019,100E) of the "SIEMENS MR HEADER" block: ordinary DICOM elements, not CSA."""
    try:
        block = ds.private_block(0x0019, _SIEMENS_MR_CREATOR)
    except (KeyError, ValueError):
        return None, None
    bval = _float(block[0x0C].value) if block.get_tag(0x0C) in ds else None
    bvec = _floats(block[0x0E].value, 3) if block.get_tag(0x0E) in ds else None
    return bval, bvec


def _csa_module() -> Any:
    """nibabel's CSA parser. Importing ``nibabel.nicom`` warns that nibabel's *DICOM
    readers* are experimental; we use only its CSA header parser, so that warning is not
    about the user's data and is dropped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The DICOM readers are highly experimental")
        from nibabel.nicom import csareader
    return csareader


def _b_matrix_direction(upper: Any) -> np.ndarray | None:
    """Unit gradient direction (LPS) from a CSA ``B_matrix`` (bxx, bxy, bxz, byy, byz, bzz),
    or None without one dominant direction. B = b g g^T, so g is its principal eigenvector;
    its sign is arbitrary (choice: the largest component is made positive)."""
    v = _floats(upper, 6)
    if v is None:
        return None
    w, vecs = np.linalg.eigh(v[[0, 1, 2, 1, 3, 4, 2, 4, 5]].reshape(3, 3))
    if not w[-1] > 0 or w[-1] < _B_MATRIX_DOMINANCE * w.sum():
        return None
    g = vecs[:, -1]
    return g if g[np.argmax(np.abs(g))] > 0 else -g


def _csa_image_header(ds: Any) -> tuple[dict | None, str | None]:
    """The Siemens CSA image header (0029,xx10 of the "SIEMENS CSA HEADER" block) as parsed
    by nibabel, or None where there is none; and why it could not be parsed (or None)."""
    try:
        block = ds.private_block(0x0029, _SIEMENS_CSA_CREATOR)
    except (KeyError, ValueError):
        return None, None
    elem = ds.get(block.get_tag(0x10))
    if elem is None or not elem.value:  # absent, or emptied by an anonymiser: no header
        return None, None
    try:
        return _csa_module().get_csa_header(ds, "image"), None
    except Exception as e:  # noqa: BLE001
        # choice: nibabel parses an opaque vendor blob and raises what it meets (CSAReadError,
        # struct.error, AssertionError, ValueError); each one means "unreadable header".
        return None, f"{type(e).__name__}: {e}"


def _csa_diffusion(header: dict | None) -> tuple[float | None, np.ndarray | None]:
    """b-value and gradient direction (LPS) from a parsed CSA image header (or None).

    ``B_value`` and ``DiffusionGradientDirection``; without the latter, the principal
    eigenvector of ``B_matrix`` (see :func:`_b_matrix_direction`). b = 0 images usually
    carry ``B_value`` 0 and no direction."""
    if header is None:
        return None, None
    csa = _csa_module()
    fields = {}
    for name, n in (("B_value", 1), ("DiffusionGradientDirection", 3), ("B_matrix", 6)):
        try:
            fields[name] = (
                csa.get_scalar(header, name) if n == 1 else csa.get_vector(header, name, n)
            )
        except ValueError:  # a vector of another length: that field is unusable
            fields[name] = None
    bval = _float(fields["B_value"])
    bvec = _floats(fields["DiffusionGradientDirection"], 3)
    if bvec is None and fields["B_matrix"] is not None and (bval or 0.0) > 0:
        bvec = _b_matrix_direction(fields["B_matrix"])
    return bval, bvec


def _siemens_diffusion(ds: Any, csa_header: dict | None, csa_problem: str | None) -> _Siemens:
    """b-value and gradient direction (LPS) from Siemens' private data.

    (0019,100C) B_value and (0019,100E) DiffusionGradientDirection first, then the CSA
    image header's ``B_value`` and ``DiffusionGradientDirection`` (or ``B_matrix``) for what
    0019 lacks. Where both hold a value and they differ (b by more than 0.1 %, a direction
    component of a b > 0 image by more than 1e-3), the 0019 value is kept (choice: it is
    first in our precedence and an ordinary typed element, the direction in full double
    precision) and ``disagreement`` says so. ``csa_header`` and ``csa_problem`` come from
    :func:`_csa_image_header`: a header nibabel cannot parse gives no values and its reason
    in ``csa_problem``; :func:`_check_siemens` decides whether that matters.
    """
    bval19, bvec19 = _siemens_private(ds)
    bval_csa, bvec_csa = _csa_diffusion(csa_header)
    out = _Siemens(
        bval=bval19 if bval19 is not None else bval_csa,
        bvec=bvec19 if bvec19 is not None else bvec_csa,
        csa_problem=csa_problem,
    )
    if bval19 is not None and bval_csa is not None:
        if abs(bval19 - bval_csa) > _SIEMENS_B_RTOL * max(1.0, abs(bval19)):
            out.disagreement = f"b-value {bval19:g} in (0019,100C), {bval_csa:g} in CSA B_value"
    if out.disagreement is None and bvec19 is not None and bvec_csa is not None:
        if (out.bval or 0.0) > 0 and np.max(np.abs(bvec19 - bvec_csa)) > _SIEMENS_DIRECTION_ATOL:
            out.disagreement = (
                f"gradient {np.round(bvec19, 4).tolist()} in (0019,100E), "
                f"{np.round(bvec_csa, 4).tolist()} in CSA DiffusionGradientDirection"
            )
    return out


def _refuse_mosaic(path: Path, ds: Any, csa_header: dict | None) -> None:
    """Refuse a Siemens mosaic: several slices tiled into one 2D image.

    A mosaic is recognised by ImageType MOSAIC, or by NumberOfImagesInMosaic > 1 in the
    CSA image header (nibabel's ``get_n_mosaic``) or in (0019,100A) of the "SIEMENS MR
    HEADER" block, so one whose ImageType was rewritten is caught too. Read as an ordinary
    image it would be one big slice with a wrong affine.

    choice: refused rather than split. Splitting needs the tile count, a correction of
    ImagePositionPatient (it is the corner of the whole mosaic, not of the first tile), the
    slice direction and spacing from the CSA header and Siemens' tile order; dcm2niix does
    all that and is validated on scanner data, so the user is sent there.
    """
    image_type = [str(v).strip().upper() for v in (ds.get("ImageType") or [])]
    counts = []
    if csa_header is not None:
        try:
            counts.append(_float(_csa_module().get_n_mosaic(csa_header)))
        except Exception:  # noqa: BLE001 - a damaged field says nothing either way
            pass
    try:
        block = ds.private_block(0x0019, _SIEMENS_MR_CREATOR)
        if block.get_tag(0x0A) in ds:
            counts.append(_float(block[0x0A].value))
    except (KeyError, ValueError):
        pass
    n_tiles = max((int(n) for n in counts if n is not None and n > 1), default=None)
    if "MOSAIC" not in image_type and n_tiles is None:
        return
    what = f"{n_tiles} slices" if n_tiles else "slices"
    raise InputError(
        f"{path}: Siemens mosaic image ({what} tiled in one {ds.get('Rows')}x"
        f"{ds.get('Columns')} image), which mrenhance does not split; convert the series to "
        f"NIfTI with dcm2niix first (dcm2niix -z y -o OUTDIR {path.parent}) and pass the .nii.gz"
    )


def _frames_of(path: Path, ds: Any, max_voxels: int) -> list[_Frame]:
    """Turn one dataset into its 2D frames with everything needed to place them."""
    if "SamplesPerPixel" in ds and int(ds.SamplesPerPixel) != 1:
        raise InputError(f"{path}: colour images are not supported (SamplesPerPixel > 1)")
    n_frames = int(_float(ds.get("NumberOfFrames")) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    multi = n_frames > 1 or per_frame is not None
    if multi and per_frame is not None and len(per_frame) != n_frames:
        raise InputError(
            f"{path}: {len(per_frame)} per-frame functional groups for {n_frames} frames"
        )
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise InputError(f"{path}: missing Rows/Columns")
    if n_frames < 1 or n_frames * int(rows) * int(cols) > max_voxels:
        raise InputError(
            f"{path}: {n_frames} frames of {rows}x{cols} pixels: more than the limit of "
            f"{max_voxels} voxels (max_voxels) or no frames"
        )
    csa_header, csa_problem = _csa_image_header(ds)
    _refuse_mosaic(path, ds, csa_header)
    top_bval = _float(_get([ds], None, "DiffusionBValue"))
    top_bvec = _floats(_get([ds], None, "DiffusionGradientOrientation"), 3)
    if top_bval is None and top_bvec is None and "MRDiffusionSequence" in ds:
        top_bval = _float(_get([ds], "MRDiffusionSequence", "DiffusionBValue"))
        grad = _item(_item(ds, "MRDiffusionSequence"), "DiffusionGradientDirectionSequence")
        top_bvec = _floats(_get([grad] if grad else [], None, "DiffusionGradientOrientation"), 3)
    siemens = None
    if top_bval is None and top_bvec is None:
        siemens = _siemens_diffusion(ds, csa_header, csa_problem)
        top_bval, top_bvec = siemens.bval, siemens.bvec
    top_time = _parse_dt(ds.get("AcquisitionDateTime"))
    if top_time is None and ds.get("AcquisitionTime"):
        tm = _parse_tm(ds.get("AcquisitionTime"))
        top_time = None if tm is None else (_parse_da(ds.get("AcquisitionDate")), tm)
    frames = []
    for i in range(n_frames):
        pf = per_frame[i] if per_frame is not None else None
        groups = [g for g in (pf, shared) if g is not None]

        def fg(seq: str, key: str, groups=groups) -> Any:
            value = _get(groups, seq, key)
            return value if value is not None else _get([ds], None, key)

        fr = _Frame(
            file=path,
            ds=ds,
            frame=i if multi else None,
            iop=_floats(fg("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            ipp=_floats(fg("PlanePositionSequence", "ImagePositionPatient"), 3),
            spacing=_floats(fg("PixelMeasuresSequence", "PixelSpacing"), 2),
            rows=int(rows),
            cols=int(cols),
        )
        for name, value in (("ImageOrientationPatient", fr.iop), ("ImagePositionPatient", fr.ipp),
                            ("PixelSpacing", fr.spacing)):  # fmt: skip
            if value is None or not np.all(np.isfinite(value)):
                raise _err(fr, f"missing or invalid {name} (cannot place the image)")
        fr.spacing = (float(fr.spacing[0]), float(fr.spacing[1]))
        if min(fr.spacing) <= 0:
            raise _err(fr, f"PixelSpacing {fr.spacing} must be positive")
        slope = _float(fg("PixelValueTransformationSequence", "RescaleSlope"))
        inter = _float(fg("PixelValueTransformationSequence", "RescaleIntercept"))
        if fg("PixelValueTransformationSequence", "RescaleSlope") is not None and slope is None:
            raise _err(fr, "RescaleSlope is not a finite number")
        if fg("PixelValueTransformationSequence", "RescaleIntercept") is not None and inter is None:
            raise _err(fr, "RescaleIntercept is not a finite number")
        fr.slope = 1.0 if slope is None else slope
        fr.inter = 0.0 if inter is None else inter
        fr.thickness = _float(fg("PixelMeasuresSequence", "SliceThickness"))
        fr.spacing_between = _float(fg("PixelMeasuresSequence", "SpacingBetweenSlices"))
        if multi:
            fr.temporal_index = _float(
                _get(groups, "FrameContentSequence", "TemporalPositionIndex")
            )
            fr.trigger_ms = _float(
                _get(groups, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime")
            )
            fr.acq_time = _parse_dt(
                _get(groups, "FrameContentSequence", "FrameAcquisitionDateTime")
            )
            diff = [d for d in (_item(g, "MRDiffusionSequence") for g in groups) if d is not None]
            fr.bval = _float(_get(diff, None, "DiffusionBValue"))
            fr.bvec_lps = _floats(
                _get(
                    [
                        x
                        for x in (_item(d, "DiffusionGradientDirectionSequence") for d in diff)
                        if x
                    ],
                    None,
                    "DiffusionGradientOrientation",
                ),
                3,
            )
        if fr.temporal_index is None:
            fr.temporal_index = _float(ds.get("TemporalPositionIdentifier"))
        if fr.trigger_ms is None:
            fr.trigger_ms = _float(ds.get("TriggerTime"))
        if fr.acq_time is None:
            fr.acq_time = top_time
        if fr.bval is None and fr.bvec_lps is None:
            fr.bval, fr.bvec_lps = top_bval, top_bvec
            if siemens is not None:
                fr.extra["siemens"] = siemens
        fr.instance = int(_float(ds.get("InstanceNumber")) or 0) or None
        frames.append(fr)
    return frames


# --------------------------------------------------------------------------- geometry


def _check_same_modality(dsets: list[tuple[Path, Any]]) -> None:
    """All files of one series share their Modality (MR, CT, ...), naming two that differ.

    Matrix, pixel spacing and orientation are compared frame by frame in
    :func:`_check_same_geometry`."""
    ref_file, ref = dsets[0]
    want = str(ref.get("Modality", "") or "")
    for f, ds in dsets[1:]:
        got = str(ds.get("Modality", "") or "")
        if got != want:
            raise InputError(
                f"{f}: modality {got or 'missing'!r} differs from {ref_file} "
                f"({want or 'missing'!r}): files of two kinds of scan in one series"
            )


def _check_same_geometry(frames: list[_Frame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All frames share orientation, matrix and pixel spacing; return unit r, c, n."""
    ref = frames[0]
    r, c = ref.iop[:3], ref.iop[3:]
    if (
        abs(np.linalg.norm(r) - 1) > 1e-3
        or abs(np.linalg.norm(c) - 1) > 1e-3
        or abs(float(r @ c)) > 1e-3
    ):
        raise _err(ref, f"ImageOrientationPatient {ref.iop.tolist()} is not two unit vectors")
    for fr in frames[1:]:
        if np.max(np.abs(fr.iop - ref.iop)) > _GEOMETRY_TOL:
            raise _err(
                fr,
                f"image orientation {fr.iop.round(4).tolist()} differs from "
                f"{ref.label} ({ref.iop.round(4).tolist()}): mixed orientations in one series",
            )
        if (fr.rows, fr.cols) != (ref.rows, ref.cols):
            raise _err(
                fr,
                f"matrix {fr.rows}x{fr.cols} differs from {ref.label} ({ref.rows}x{ref.cols})",
            )
        if not np.allclose(fr.spacing, ref.spacing, rtol=_GEOMETRY_TOL, atol=0):
            raise _err(fr, f"PixelSpacing {fr.spacing} differs from {ref.label} ({ref.spacing})")
    r = r / np.linalg.norm(r)
    c = c / np.linalg.norm(c)
    n = np.cross(r, c)
    return r, c, n / np.linalg.norm(n)


def _group_positions(frames: list[_Frame], normal: np.ndarray) -> list[list[_Frame]]:
    """Frames grouped by slice position along ``normal``, groups in increasing position."""
    for fr in frames:
        fr.pos = float(fr.ipp @ normal)
    ordered = sorted(frames, key=lambda f: f.pos)
    groups: list[list[_Frame]] = [[ordered[0]]]
    for fr in ordered[1:]:
        if fr.pos - groups[-1][0].pos <= _SAME_POSITION_MM:
            groups[-1].append(fr)
        else:
            groups.append([fr])
    for g in groups:
        for fr in g[1:]:
            if np.max(np.abs(fr.ipp - g[0].ipp)) > _SAME_POSITION_MM:
                raise _err(
                    fr,
                    f"at the slice position of {g[0].label} but shifted in-plane "
                    f"({fr.ipp.round(3).tolist()} vs {g[0].ipp.round(3).tolist()})",
                )
    return groups


def _check_spacing(groups: list[list[_Frame]]) -> np.ndarray:
    """Even slice spacing along the stack; return the slice step vector (LPS, mm)."""
    first, last = groups[0][0], groups[-1][0]
    n = len(groups)
    if n < 2:
        return np.zeros(3)
    pos = np.array([g[0].pos for g in groups])
    steps = np.diff(pos)
    median = float(np.median(steps))
    tol = _SPACING_ATOL_MM + _SPACING_RTOL * abs(median)
    # choice: the reference spacing is the most common step (ties: the smaller), which is
    # the median for any real series but stays right for 3-4 slices with one missing.
    support = [int(np.sum(np.abs(steps - d) <= tol)) for d in steps]
    ref = float(min(steps[np.array(support) == max(support)]))
    tol = _SPACING_ATOL_MM + _SPACING_RTOL * ref
    for k, d in enumerate(steps):
        if abs(d - ref) > tol:
            ratio = d / ref
            what = (
                f"{round(ratio) - 1} missing slice(s)?"
                if ratio > 1.5 and abs(ratio - round(ratio)) * ref <= tol
                else "uneven spacing"
            )
            raise _err(
                groups[k + 1][0],
                f"slice spacing {d:.4g} mm from {groups[k][0].label} where the series has "
                f"{ref:.4g} mm ({what})",
            )
    step = (last.ipp - first.ipp) / (n - 1)
    for k, g in enumerate(groups):
        off = np.linalg.norm(g[0].ipp - (first.ipp + k * step))
        if off > tol:
            raise _err(
                g[0], f"slice is {off:.3g} mm off the line through the other slice positions"
            )
    return step


_ORDER_KEYS = (
    ("TemporalPositionIdentifier", lambda f: f.temporal_index),
    ("TriggerTime", lambda f: f.trigger_ms),
    ("AcquisitionTime", lambda f: None if f.acq_time is None else f.acq_time[1]),
    (
        "b-value",
        lambda f: (
            None if f.bval is None else (round(f.bval, 3), *np.round(_bvec_or_zero(f), 4).tolist())
        ),
    ),
    ("InstanceNumber", lambda f: f.instance),
    ("frame number", lambda f: f.frame),
)


def _bvec_or_zero(fr: _Frame) -> np.ndarray:
    return np.zeros(3) if fr.bvec_lps is None else fr.bvec_lps


def _acq_seconds_with_date(f: _Frame) -> float:
    return f.acq_time[0] * 86400.0 + f.acq_time[1]


def _order_volumes(groups: list[list[_Frame]], where: str) -> tuple[str, list[list[_Frame]]]:
    """Order each position's frames in time; return the key used and the groups sorted."""
    use_date = all(f.acq_time is not None and f.acq_time[0] is not None for g in groups for f in g)
    for name, key in _ORDER_KEYS:
        if name == "AcquisitionTime" and use_date:
            key = _acq_seconds_with_date
        values = [[key(f) for f in g] for g in groups]
        if any(v is None for vs in values for v in vs):
            continue
        if all(len(set(vs)) == len(vs) for vs in values):
            ordered = [
                [f for _, f in sorted(zip(vs, g, strict=True), key=lambda p: p[0])]
                for vs, g in zip(values, groups, strict=True)
            ]
            return name, ordered
    raise InputError(
        f"{where}: {len(groups[0])} images at each slice position but no "
        "TemporalPositionIdentifier, TriggerTime, AcquisitionTime, b-value or InstanceNumber "
        "tells them apart"
    )


def _fsl_bvecs(g_lps: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Gradient directions (N, 3) in DICOM patient LPS -> FSL convention (image frame).

    FSL bvecs are along the voxel axes, with x negated when the affine's determinant is
    positive (FSL treats images as radiological); this is what dcm2niix writes.
    """
    g_ras = g_lps * np.array([-1.0, -1.0, 1.0])
    m = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    vox = np.linalg.solve(m, g_ras.T).T
    norms = np.linalg.norm(vox, axis=1, keepdims=True)
    vox = np.where(norms > 1e-6, vox / np.where(norms > 1e-6, norms, 1.0), 0.0)
    if np.linalg.det(affine[:3, :3]) > 0:
        vox[:, 0] = -vox[:, 0]
    return vox + 0.0  # no negative zeros


# --------------------------------------------------------------------------- entry point


def _collect(path: Path) -> tuple[list[tuple[Path, Any]], list[str]]:
    """Read the DICOM files of a folder (or the one file); notes for provenance."""
    notes: list[str] = []
    if path.is_file():
        return [(path, _read(path, strict=True))], notes
    try:
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except PermissionError as e:
        raise InputError(f"{path}: cannot list folder (permission denied)") from e
    except OSError as e:
        raise InputError(f"{path}: cannot list folder ({e.strerror or e})") from e
    files = [p for p in entries if p.is_file()]
    out, skipped = [], []
    for f in files:
        strict = f.suffix.lower() in DICOM_SUFFIXES
        ds = _read(f, strict=strict)
        if ds is None:
            skipped.append(f)
        elif str(ds.get("SOPClassUID", "")) == _DICOMDIR_SOP_CLASS or f.name == "DICOMDIR":
            skipped.append(f)
        else:
            out.append((f, ds))
    if not out:
        n_nifti = sum(1 for f in files if f.name.endswith((".nii", ".nii.gz")))
        hint = ""
        if n_nifti:
            hint = f"; it holds {n_nifti} NIfTI file(s): pass one of them"
        elif len(files) < len(entries):
            hint = f"; it holds {len(entries) - len(files)} subfolder(s): point at a series folder"
        raise InputError(f"{path}: no DICOM files found ({len(files)} other files{hint})")
    if skipped:
        notes.append(
            f"skipped {len(skipped)} non-image files: {', '.join(p.name for p in skipped[:5])}"
        )
    return out, notes


def _select_series(
    path: Path, dsets: list[tuple[Path, Any]], series_uid: str | None
) -> list[tuple[Path, Any]]:
    by_uid: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for f, ds in dsets:
        by_uid[str(ds.get("SeriesInstanceUID", ""))].append((f, ds))
    if series_uid is not None:
        if series_uid not in by_uid:
            raise InputError(f"{path}: no series with SeriesInstanceUID {series_uid}")
        return by_uid[series_uid]
    if len(by_uid) > 1:
        desc = "; ".join(
            f"{uid or '(no UID)'} '{items[0][1].get('SeriesDescription', '')}' {len(items)} files"
            for uid, items in sorted(by_uid.items(), key=lambda kv: -len(kv[1]))
        )
        raise InputError(
            f"{path}: {len(by_uid)} DICOM series in one folder ({desc}); "
            "put each series in its own folder"
        )
    return next(iter(by_uid.values()))


def _pixels(fr: _Frame, cache: dict[Path, np.ndarray]) -> np.ndarray:
    """The stored (rows, cols) values of one frame, decoded once per file."""
    if fr.file not in cache:
        cache.clear()  # one file at a time: frames are read file by file
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = np.asarray(fr.ds.pixel_array)
        except MemoryError as e:
            raise InputError(f"{fr.file}: not enough memory to decode the pixel data") from e
        except Exception as e:  # noqa: BLE001 - decoders raise anything; see _read
            ts = getattr(getattr(fr.ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(ts, "name", ts)
            raise InputError(
                f"{fr.file}: cannot decode pixel data (transfer syntax {name}; "
                f"{type(e).__name__}: {e})"
            ) from e
        n_frames = int(_float(fr.ds.get("NumberOfFrames")) or 1)
        expected = (fr.rows, fr.cols) if fr.frame is None else (n_frames, fr.rows, fr.cols)
        if fr.frame is not None and arr.shape == (fr.rows, fr.cols) and n_frames == 1:
            arr = arr[None]
        if arr.shape != expected:
            raise InputError(
                f"{fr.file}: pixel data shape {arr.shape} does not match Rows/Columns/"
                f"NumberOfFrames {expected}"
            )
        cache[fr.file] = arr
    arr = cache[fr.file]
    return arr if fr.frame is None else arr[fr.frame]


def load_dicom(
    path: str | os.PathLike,
    *,
    nan_policy: str = "error",
    max_voxels: int = 2**31,
    series_uid: str | None = None,
) -> Volume:
    """Load one DICOM series (a folder of files, or one file) as a Volume.

    Parameters
    ----------
    path:
        A folder holding the files of one series (other non-DICOM files are skipped; a
        non-DICOM ``*.dcm`` is an error), or one DICOM file, typically an Enhanced MR
        multi-frame file.
    nan_policy:
        ``"error"`` or ``"zero"`` for NaN/Inf voxels (float pixel data only).
    max_voxels:
        Refuse series with more voxels, checked before pixel data are decoded.
    series_uid:
        Pick this SeriesInstanceUID when the folder holds several series.

    Returns
    -------
    Volume
        ``data``: float32 (columns, rows, slices[, t]) after RescaleSlope/Intercept;
        ``affine``: RAS+ mm; ``meta``: ``source``, ``voxel_size``, ``provenance``,
        ``modality``, ``series_description``, ``series_uid``, ``stored_dtype`` (of the
        pixel data, e.g. ``"int16"``), ``dicom_header`` (the first file's dataset without
        its pixel data), ``dicom_grid`` ((x, y, z) shape, affine: the series' own grid),
        ``tr_s`` (RepetitionTime), ``te_s`` (EchoTime, or the enhanced multi-frame
        EffectiveEchoTime; s),
        and for 4D series ``times_s`` (t,) seconds from the first volume (for cardiac
        series ordered by TriggerTime: the trigger delays in s), or ``bvals``
        (t,) s/mm^2 and ``bvecs`` (t, 3) in FSL convention (image frame, x negated when
        det(affine) > 0; zero for b = 0 or when the direction is unknown), from standard
        tags, Siemens (0019,100C/100E) or the Siemens CSA image header (module docstring).
    """
    path = Path(path).expanduser()
    try:
        return _load_checked(path, nan_policy, max_voxels, series_uid)
    except InputError as e:
        raise one_line_error(e) from e.__cause__


def _load_checked(path: Path, nan_policy: str, max_voxels: int, series_uid: str | None) -> Volume:
    check_nan_policy(nan_policy, path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        return _load(path, nan_policy, max_voxels, series_uid)
    except InputError:
        raise
    except MemoryError as e:
        raise InputError(f"{path}: not enough memory to load this series") from e
    except Exception as e:  # noqa: BLE001
        # choice: a last safety net; every known problem is reported above with the
        # offending file, anything else still must not reach a batch job as a traceback.
        raise InputError(f"{path}: cannot load DICOM ({type(e).__name__}: {e})") from e


def _load(path: Path, nan_policy: str, max_voxels: int, series_uid: str | None) -> Volume:
    dsets, notes = _collect(path)
    dsets = _select_series(path, dsets, series_uid)
    _check_same_modality(dsets)
    seen: dict[str, Path] = {}
    for f, ds in dsets:
        sop = str(ds.get("SOPInstanceUID", ""))
        if sop and sop in seen:
            raise InputError(f"{f}: same SOPInstanceUID as {seen[sop]} (duplicate file)")
        seen[sop] = f
        if not _has_pixels(ds):
            raise InputError(f"{f}: no pixel data (not an image, or a damaged file)")
    frames = [fr for f, ds in dsets for fr in _frames_of(f, ds, max_voxels)]
    _check_siemens(frames, path, notes)
    r, c, normal = _check_same_geometry(frames)
    groups = _group_positions(frames, normal)
    counts = Counter(len(g) for g in groups)
    n_t = counts.most_common(1)[0][0]
    for g in groups:
        if len(g) != n_t:
            raise _err(
                g[0],
                f"{len(g)} images at slice position {g[0].pos:.4g} mm but {n_t} at most "
                "others (incomplete 4D series or duplicate files?)",
            )
    ref = frames[0]
    n_z = len(groups)
    shape = check_spatial_shape((ref.cols, ref.rows, n_z, n_t), path, max_voxels)
    step = _check_spacing(groups)
    if n_z == 1:
        thick = ref.spacing_between or ref.thickness
        if thick is None or thick <= 0:
            thick = 1.0  # choice: a lone slice without thickness gets 1 mm
            notes.append("single slice without SliceThickness: 1 mm assumed")
        step = normal * thick
    order_key = None
    if n_t > 1:
        order_key, groups = _order_volumes(groups, str(path))
    lps = np.eye(4)
    lps[:3, 0] = r * ref.spacing[1]
    lps[:3, 1] = c * ref.spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = groups[0][0].ipp
    affine = check_affine(_LPS_TO_RAS @ lps, path)

    # Volumes t must agree across slice positions on what they are.
    if n_t > 1 and order_key == "TemporalPositionIdentifier":
        for g in groups[1:]:
            for t, fr in enumerate(g):
                if fr.temporal_index != groups[0][t].temporal_index:
                    raise _err(fr, "TemporalPositionIdentifier differs from other slices")
    has_b = n_t > 1 and any(f.bval is not None for f in frames)
    if has_b:
        _check_volume_diffusion(groups)

    # Pixel data, frame by frame, into a preallocated float32 array.
    data = np.empty((ref.cols, ref.rows, n_z, n_t), dtype=np.float32)
    n_raw_bad = 0
    stored_dtype = None
    cache: dict[Path, np.ndarray] = {}
    by_file = sorted(
        ((k, t, fr) for k, g in enumerate(groups) for t, fr in enumerate(g)),
        key=lambda x: (str(x[2].file), x[2].frame or 0),
    )
    with np.errstate(over="ignore", invalid="ignore"):
        for k, t, fr in by_file:
            stored = _pixels(fr, cache)
            stored_dtype = stored_dtype or str(stored.dtype)
            n_raw_bad += count_nonfinite(stored)
            data[:, :, k, t] = (stored.T.astype(np.float64) * fr.slope + fr.inter).astype(
                np.float32
            )
    cache.clear()
    for _, ds in dsets:  # free decoded pixel data held by pydicom
        for kw in _PIXEL_KEYWORDS:
            if kw in ds:
                del ds[kw]
    n_bad = count_nonfinite(data)
    if n_bad > n_raw_bad:
        raise InputError(
            f"{path}: {n_bad - n_raw_bad} voxels overflow float32 after RescaleSlope/Intercept"
        )
    data = data.reshape(shape)
    provenance = [f"load {path}", *notes]
    if n_bad:
        data = check_finite(data, path, nan_policy)
        provenance.append(f"nan_policy=zero: replaced {n_bad} non-finite voxels")

    ds0 = ref.ds
    meta: dict[str, Any] = {
        "source": str(path),
        "voxel_size": voxel_sizes(affine),
        "provenance": provenance,
        "modality": str(ds0.get("Modality", "")),
        "series_description": str(ds0.get("SeriesDescription", "")),
        "series_uid": str(ds0.get("SeriesInstanceUID", "")),
        "stored_dtype": stored_dtype,
        # what a derived DICOM series copies (patient, study, acquisition): io.dicom_write
        "dicom_header": ds0,
        "dicom_grid": (tuple(int(n) for n in shape[:3]), affine.copy()),
    }
    tr_ms = _float(_get([ds0], None, "RepetitionTime"))
    if tr_ms is None:
        shared = _item(ds0, "SharedFunctionalGroupsSequence")
        tr_ms = _float(_get([shared] if shared else [], "MRTimingAndRelatedParametersSequence",
                            "RepetitionTime"))  # fmt: skip
    if tr_ms is not None and tr_ms > 0:
        meta["tr_s"] = tr_ms / 1000.0
    te_ms = _float(_get([ds0], None, "EchoTime"))
    if te_ms is None:
        shared = _item(ds0, "SharedFunctionalGroupsSequence")
        te_ms = _float(_get([shared] if shared else [], "MREchoSequence",
                            "EffectiveEchoTime"))  # fmt: skip
    if te_ms is not None and np.isfinite(te_ms) and te_ms > 0:
        meta["te_s"] = te_ms / 1000.0
    if n_t > 1:
        if has_b:
            meta["bvals"] = np.array([g.bval for g in groups[0]], dtype=np.float64)
            g_lps = np.array([_bvec_or_zero(f) for f in groups[0]], dtype=np.float64)
            g_lps[meta["bvals"] == 0] = 0.0
            meta["bvecs"] = _fsl_bvecs(g_lps, affine)
        times = _volume_times(groups, order_key)
        if times is not None:
            meta["times_s"] = times
    return Volume(data, affine, meta)


# choice: the images of one volume agree on the b-value within 0.1 % (at least 1e-3
# s/mm^2) and on each direction component within 1e-3, the tolerances by which 0019 and
# CSA values must agree (_SIEMENS_B_RTOL, _SIEMENS_DIRECTION_ATOL).
_VOLUME_B_RTOL = _SIEMENS_B_RTOL
_VOLUME_DIRECTION_ATOL = _SIEMENS_DIRECTION_ATOL


def _direction_str(g: np.ndarray) -> str:
    return str(np.round(g, 4).tolist())


def _check_volume_diffusion(groups: list[list[_Frame]]) -> None:
    """Each volume t of a DWI series (some image has a b-value) has one b-value and, where
    b > 0, one gradient direction, in all of its images.

    ``groups``: per slice position, that position's images in volume order. A volume none
    of whose images has a b-value (in no tag we read) is refused, naming its first file:
    it would silently become b = 0. One whose images differ in b-value or direction, or
    where some lack the b-value or direction that others have, is refused naming the first
    image that differs (the table is taken from one image per volume). A b > 0 volume with
    no direction in any image (a trace-weighted image) keeps a zero direction. choice: g
    and -g agree: they are the same diffusion weighting (B = b g g^T), and a direction
    from a ``B_matrix`` has an arbitrary sign.
    """
    n_t = len(groups[0])
    for t in range(n_t):
        images = [g[t] for g in groups]
        known = [fr for fr in images if fr.bval is not None]
        if not known:
            first = min(images, key=lambda fr: (str(fr.file), fr.frame or 0))
            raise _err(
                first,
                f"none of the {len(images)} image(s) of volume {t + 1} of {n_t} has a b-value "
                "(DiffusionBValue, Siemens (0019,100C) or CSA B_value), while other volumes "
                "have one; it would silently become b = 0",
            )
        ref = known[0]
        for fr in images:
            if fr.bval is None:
                raise _err(fr, f"no b-value, while {ref.label} of the same volume has {ref.bval:g}")
            if abs(fr.bval - ref.bval) > _VOLUME_B_RTOL * max(1.0, ref.bval):
                raise _err(fr, f"b-value {fr.bval:g} differs from {ref.label} ({ref.bval:g})")
        directed = [fr for fr in images if fr.bvec_lps is not None]
        if ref.bval <= 0 or not directed:
            continue  # b = 0: no direction is used
        g_ref = directed[0]
        for fr in images:
            if fr.bvec_lps is None:
                raise _err(
                    fr,
                    f"no gradient direction, while {g_ref.label} of the same volume has "
                    f"{_direction_str(g_ref.bvec_lps)} (b = {ref.bval:g})",
                )
            off = min(
                np.max(np.abs(fr.bvec_lps - g_ref.bvec_lps)),
                np.max(np.abs(fr.bvec_lps + g_ref.bvec_lps)),
            )
            if off > _VOLUME_DIRECTION_ATOL:
                raise _err(
                    fr,
                    f"gradient direction {_direction_str(fr.bvec_lps)} differs from "
                    f"{g_ref.label} ({_direction_str(g_ref.bvec_lps)}) in the same volume "
                    f"(b = {ref.bval:g})",
                )


def _check_siemens(frames: list[_Frame], path: Path, notes: list[str]) -> None:
    """Act on what :func:`_siemens_diffusion` found, once per series.

    An unreadable CSA image header is an error only where it leaves an image without a
    b-value while others of the series have one (the image would silently become b = 0);
    otherwise the header holds nothing we need and it is noted in the provenance. 0019
    and CSA values that disagree: the 0019 values are used, with one warning
    (:func:`mrenhance.logs.warn_user`) and a provenance note naming the first file.
    """
    found = [(fr, fr.extra["siemens"]) for fr in frames if "siemens" in fr.extra]
    unreadable = [(fr, s) for fr, s in found if s.csa_problem is not None]
    if unreadable:
        if any(fr.bval is not None for fr in frames):
            for fr, s in unreadable:
                if fr.bval is None:
                    raise _err(
                        fr,
                        f"Siemens CSA image header (0029,1010) is unreadable ({s.csa_problem}) "
                        "and no other element gives this image's b-value, while other images "
                        "of the series have one",
                    )
        fr, s = unreadable[0]
        notes.append(
            f"Siemens CSA image header unreadable in {len(unreadable)} image(s), not used "
            f"(first: {fr.label}: {s.csa_problem})"
        )
    disagree = [(fr, s) for fr, s in found if s.disagreement is not None]
    if disagree:
        from mrenhance.logs import warn_user

        fr, s = disagree[0]
        line = (
            f"{path}: Siemens (0019,100C/100E) and CSA header diffusion values disagree in "
            f"{len(disagree)} image(s) (first: {fr.label}: {s.disagreement}); "
            "using (0019,100C/100E)"
        )
        warn_user(line)
        notes.append(line)


def _volume_times(groups: list[list[_Frame]], order_key: str | None) -> np.ndarray | None:
    """Start time of each volume (earliest of its slices) in s from the first volume."""
    n_t = len(groups[0])
    if order_key == "TriggerTime":
        t = np.array([min(g[i].trigger_ms for g in groups) for i in range(n_t)]) / 1000.0
        return t
    if all(f.acq_time is not None for g in groups for f in g):
        use_date = all(f.acq_time[0] is not None for g in groups for f in g)

        def sec(f: _Frame) -> float:
            return (f.acq_time[0] * 86400.0 if use_date else 0.0) + f.acq_time[1]

        t = np.array([min(sec(g[i]) for g in groups) for i in range(n_t)])
        return t - t[0]
    return None
