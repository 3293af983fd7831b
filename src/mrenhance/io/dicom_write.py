"""A :class:`~mrenhance.volume.Volume` to a new DICOM MR series: one file per slice.

The geometry is the reader's (:mod:`mrenhance.io.dicom`) the other way round: for the
RAS+ affine A, the patient (LPS) matrix is M = diag(-1, -1, 1, 1) @ A; array axis 0 (the
column index) runs along M[:, 0], axis 1 (the row index) along M[:, 1], and slice k sits at
ImagePositionPatient = M[:, 3] + k M[:, 2]. ImageOrientationPatient, PixelSpacing,
SliceThickness and SpacingBetweenSlices are computed from the output's own affine, so an
output on another grid (super-resolution, ``--resample``) is placed where it is.

A derived series (the input was DICOM, ``meta["dicom_header"]``) keeps the patient, study,
frame of reference, equipment and acquisition attributes of its input and gets a new
SeriesInstanceUID, new SOPInstanceUIDs, ImageType ``DERIVED\\SECONDARY``, a SeriesDescription
naming the model and SeriesNumber + 1000. Without a DICOM input (a NIfTI file) a minimal
valid MR series is written: new study and frame-of-reference UIDs, empty patient fields.

Pixel data are 16-bit integers (uint16 when the image is >= 0, else int16) with one
RescaleSlope for the series and RescaleIntercept 0: zero stays exactly zero and every value
is within slope / 2 of the float image (an image of whole numbers that fits is stored as it
is, slope 1).
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.io.atomic import atomic_folder, check_output_folder
from mrenhance.io.validate import count_nonfinite
from mrenhance.volume import Volume

__all__ = ["dicom_geometry", "rescale_16bit", "save_dicom"]

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORTHOGONAL_TOL = 1e-4  # |cos| between the in-plane axes; DICOM has no sheared pixels
SERIES_NUMBER_OFFSET = 1000  # choice: the scanners' convention for derived series

#: Attributes a derived series copies from its input's first header, when present.
COPIED = (
    # SOP common, patient, study
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID",
    "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
    # series and frame of reference (same patient space: the geometry is in it)
    "BodyPartExamined", "PatientPosition", "ProtocolName", "Laterality",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # equipment that acquired the data
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "InstitutionAddress",
    "StationName", "InstitutionalDepartmentName", "DeviceSerialNumber",
    # MR acquisition (the contrast of the data, not its grid)
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "SequenceName", "RepetitionTime", "EchoTime", "EchoTrainLength", "InversionTime",
    "FlipAngle", "MagneticFieldStrength", "ImagingFrequency", "ImagedNucleus",
    "NumberOfAverages", "EchoNumbers", "ReceiveCoilName", "TransmitCoilName",
    "AcquisitionDate", "AcquisitionTime",
)  # fmt: skip
#: Type 1 / type 2 attributes of the MR Image IOD and their value when the input has none.
_REQUIRED = {
    "PatientName": "", "PatientID": "", "PatientBirthDate": "", "PatientSex": "",
    "StudyDate": None, "StudyTime": None, "ReferringPhysicianName": "", "StudyID": "",
    "AccessionNumber": "", "PositionReferenceIndicator": "", "Manufacturer": "",
    "ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "",
    "MRAcquisitionType": "", "EchoTime": "", "EchoTrainLength": "",
}  # fmt: skip


def _ds(x: float) -> str:
    """A DS string (at most 16 characters)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(x) + 0.0)  # no "-0"


def dicom_geometry(affine: np.ndarray, n_slices: int, source: Any = "volume") -> dict[str, Any]:
    """DICOM geometry of a RAS+ affine for ``n_slices`` slices (all vectors LPS, mm).

    Returns ``iop`` (6,), ``pixel_spacing`` (between rows, between columns), ``origin``
    (IPP of slice 0), ``step`` (3,), ``normal`` (r x c), ``thickness`` (the slice step
    along the normal) and ``flip``: True when the slices run against the normal, in which
    case the caller writes them in reverse (``origin`` and ``step`` already are), so the
    positions increase along the normal as readers expect. Refuses a grid whose in-plane
    axes are not perpendicular: a DICOM pixel is a rectangle.
    """
    m = _LPS @ np.asarray(affine, dtype=np.float64)
    col_vec, row_vec, step, origin = m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3]
    dx, dy = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    r, c = col_vec / dx, row_vec / dy
    if abs(float(r @ c)) > _ORTHOGONAL_TOL:
        raise InputError(
            f"{source}: the image's first two axes are not perpendicular (a sheared affine); "
            "a DICOM image cannot hold that grid (write NIfTI)"
        )
    normal = np.cross(r, c)
    flip = bool(step @ normal < 0)
    if flip:
        origin = origin + (n_slices - 1) * step
        step = -step
    return {
        "iop": np.concatenate([r, c]),
        "pixel_spacing": (dy, dx),
        "origin": origin,
        "step": step,
        "normal": normal,
        "thickness": float(step @ normal),
        "flip": flip,
    }


def rescale_16bit(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(stored, slope, intercept)``: ``data`` as 16-bit integers with its rescale.

    uint16 when ``data >= 0``, else int16; intercept 0 and the smallest slope (as written
    in a DS string) that fits the largest magnitude, so ``stored * slope`` is within
    ``slope / 2`` of ``data``. Whole numbers that fit are stored as they are (slope 1).
    """
    data = np.asarray(data, dtype=np.float64)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    dtype = np.dtype(np.uint16 if lo >= 0 else np.int16)
    info = np.iinfo(dtype)
    if lo >= info.min and hi <= info.max and np.array_equal(data, np.round(data)):
        return data.astype(dtype), 1.0, 0.0
    span = max(hi, -lo)
    slope = float(_ds(span / info.max)) if span > 0 else 1.0
    while span / slope > info.max + 0.5:  # the DS string rounded the slope down
        slope = float(_ds(slope * (1 + 1e-9)))
    stored = np.clip(np.rint(data / slope), info.min, info.max).astype(dtype)
    return stored, slope, 0.0


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def _tm(seconds: float) -> str:
    seconds = seconds % 86400.0
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def _tm_seconds(value: Any) -> float | None:
    from mrenhance.io.dicom import _parse_tm

    return _parse_tm(value)


def _lps_gradients(bvecs_fsl: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs (N, 3) (image frame) -> patient LPS directions: the reader's inverse."""
    vox = np.array(bvecs_fsl, dtype=np.float64)
    if np.linalg.det(affine[:3, :3]) > 0:
        vox[:, 0] = -vox[:, 0]
    m = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return (m @ vox.T).T * np.array([-1.0, -1.0, 1.0]) + 0.0


def _series_description(volume: Volume, template: Any, description: str | None) -> str:
    if description is None:
        original = str(template.get("SeriesDescription", "") or "") if template else ""
        if not original and volume.meta.get("source"):
            name = Path(str(volume.meta["source"])).name
            original = name.removesuffix(".gz").removesuffix(".nii")
        model = (volume.meta.get("model_card") or {}).get("name")
        description = " ".join(p for p in (original, "mrenhance", model) if p)
    return description[:64]  # LO


def _base_dataset(volume: Volume, template: Any, description: str | None) -> Any:
    """The attributes every file of the new series shares."""
    from pydicom.dataset import Dataset
    from pydicom.uid import MRImageStorage, generate_uid

    from mrenhance import __version__

    ds = Dataset()
    if template is not None:
        for keyword in COPIED:
            if keyword in template:
                ds[keyword] = copy.deepcopy(template[keyword])
    today, now = _now()
    for keyword, value in _REQUIRED.items():
        if keyword not in ds:
            setattr(ds, keyword, value if value is not None else
                    (today if keyword.endswith("Date") else now))  # fmt: skip
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = generate_uid()
    ds.SOPClassUID = MRImageStorage
    ds.Modality = "MR"
    ds.SeriesInstanceUID = generate_uid()
    number = _series_number(template)
    ds.SeriesNumber = number
    ds.SeriesDescription = _series_description(volume, template, description)
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = today
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now
    ds.ImageType = ["DERIVED", "SECONDARY"]
    steps = [str(s) for s in volume.meta.get("provenance", [])]
    ds.DerivationDescription = f"mrenhance {__version__}: {'; '.join(steps)}"[:1024]
    tr_s = volume.meta.get("tr_s")
    if tr_s is not None and np.isfinite(tr_s) and tr_s > 0:
        ds.RepetitionTime = _ds(1000.0 * float(tr_s))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def _series_number(template: Any) -> int:
    try:
        original = int(template.SeriesNumber) if template is not None else None
    except (AttributeError, TypeError, ValueError):
        original = None
    if original is None:
        return SERIES_NUMBER_OFFSET if template is not None else 1
    return min(original + SERIES_NUMBER_OFFSET, 2**31 - 1)


def save_dicom(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    overwrite: bool = False,
    description: str | None = None,
) -> Path:
    """Write ``volume`` as a new MR series into ``folder``, one file per slice, atomically.

    Parameters
    ----------
    volume:
        (x, y, z) or (x, y, z, t) float image, RAS+ affine; ``meta["dicom_header"]`` (a
        DICOM input's) makes it a derived series of that input, see the module docstring.
        A 4D image gets TemporalPositionIdentifier per volume, its ``times_s`` as
        AcquisitionTime, its ``bvals``/``bvecs`` as DiffusionBValue and
        DiffusionGradientOrientation.
    folder:
        The series folder (``IM00001.dcm``, ... in volume-then-slice order); must not
        exist, or with ``overwrite`` be a folder of ``*.dcm`` files only. Its parent must
        exist. Written as a temporary folder renamed at the end (nothing is left on error).
    description:
        SeriesDescription (default: the input's, then ``mrenhance <model>``).

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder).expanduser()
    check_output_folder(folder, overwrite)
    data = np.asarray(volume.data, dtype=np.float32)
    bad = count_nonfinite(data)
    if bad:
        raise InputError(
            f"{folder}: the result holds {bad} NaN/Inf voxels; not written "
            "(check the model and the input's intensity range)"
        )
    affine = np.asarray(volume.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{folder}: the volume's affine is not a finite 4x4 matrix")
    vol4 = data if data.ndim == 4 else data[..., None]
    nx, ny, nz, nt = vol4.shape
    if max(nx, ny) > 65535:
        raise InputError(f"{folder}: {nx}x{ny} pixels per slice: more than DICOM's 65535")
    geo = dicom_geometry(affine, nz, folder)
    if geo["flip"]:
        vol4 = vol4[:, :, ::-1]
    stored, slope, inter = rescale_16bit(vol4)
    template = volume.meta.get("dicom_header")
    base = _base_dataset(volume, template, description)
    base.Rows, base.Columns = ny, nx
    base.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    base.RescaleSlope, base.RescaleIntercept = _ds(slope), _ds(inter)
    lo, hi = float(vol4.min()), float(vol4.max())
    # the display window of the whole range; its width >= 1 (PS3.3 C.11.2.1.2)
    base.WindowCenter, base.WindowWidth = _ds((lo + hi) / 2), _ds(max(hi - lo, 1.0))
    base.ImageOrientationPatient = [_ds(v) for v in geo["iop"]]
    base.PixelSpacing = [_ds(v) for v in geo["pixel_spacing"]]
    same_grid = template is not None and _same_grid(volume)
    thickness = template.get("SliceThickness") if same_grid else None
    base.SliceThickness = thickness if thickness not in (None, "") else _ds(geo["thickness"])
    base.SpacingBetweenSlices = _ds(float(np.linalg.norm(geo["step"])))
    times = volume.meta.get("times_s") if nt > 1 else None
    bvals = volume.meta.get("bvals") if nt > 1 else None
    bvecs = volume.meta.get("bvecs") if bvals is not None else None
    if times is not None and np.size(times) != nt:
        times = None
    if bvals is not None and np.size(bvals) != nt:
        bvals = bvecs = None
    g_lps = _lps_gradients(np.asarray(bvecs), affine) if bvecs is not None else None
    start = _tm_seconds(base.get("AcquisitionTime")) or 0.0
    if nt > 1:
        base.NumberOfTemporalPositions = nt
    with atomic_folder(folder, overwrite) as tmp:
        n = 0
        for t in range(nt):
            for k in range(nz):
                n += 1
                ds = copy.deepcopy(base)
                ds.SOPInstanceUID = generate_uid()
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID = ds.SOPClassUID
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds.file_meta = meta
                ds.InstanceNumber = n
                position = geo["origin"] + k * geo["step"]
                ds.ImagePositionPatient = [_ds(v) for v in position]
                ds.SliceLocation = _ds(float(position @ geo["normal"]))
                if nt > 1:
                    ds.TemporalPositionIdentifier = t + 1
                    ds.AcquisitionNumber = t + 1
                if times is not None:
                    ds.AcquisitionTime = _tm(start + float(np.asarray(times)[t]))
                if bvals is not None:
                    b = float(np.asarray(bvals)[t])
                    ds.DiffusionBValue = b
                    if g_lps is not None and b > 0:
                        ds.DiffusionGradientOrientation = [float(v) for v in g_lps[t]]
                pixels = np.ascontiguousarray(stored[:, :, k, t].T)
                ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
                ds.save_as(tmp / f"IM{n:05d}.dcm", enforce_file_format=True)
    return folder


def _same_grid(volume: Volume) -> bool:
    """Whether ``volume`` lies on its DICOM input's grid (then SliceThickness is kept)."""
    grid = volume.meta.get("dicom_grid")
    if grid is None:
        return False
    shape, affine = grid
    return tuple(shape) == tuple(volume.shape[:3]) and np.allclose(affine, volume.affine, atol=1e-4)
