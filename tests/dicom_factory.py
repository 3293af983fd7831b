"""Build small DICOM series in tests, with geometry taken from a NIfTI-style affine.

The same geometry rules as :mod:`mrenhance.io.dicom`, written the other way round: for a
RAS+ affine A, the DICOM patient (LPS) matrix is M = diag(-1, -1, 1, 1) @ A; array axis
0 (column index) runs along M[:3, 0], axis 1 (row index) along M[:3, 1], slice k sits at
IPP = M[:3, 3] + k * M[:3, 2]. Each slice is stored as ``data[:, :, k].T`` (rows, cols).

Meant for building good and bad inputs: ``skip`` leaves files out, ``edit`` changes any
dataset before it is written (delete PixelData, change IOP, add private tags, ...);
:func:`add_siemens_csa` adds a Siemens CSA image header (:func:`csa2_header` writes one).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ds_str(x: float) -> str:
    """A DS string (at most 16 characters) as precise as it can be."""
    for digits in range(12, 0, -1):
        s = f"{x:.{digits}g}"
        if len(s) <= 16:
            return s
    raise ValueError(x)


def geometry(affine: np.ndarray) -> dict[str, Any]:
    """DICOM geometry of a RAS+ affine: IOP (6,), PixelSpacing (2,), step and origin (LPS)."""
    m = LPS @ np.asarray(affine, dtype=np.float64)
    col_vec, row_vec, step = m[:3, 0], m[:3, 1], m[:3, 2]
    dx, dy = np.linalg.norm(col_vec), np.linalg.norm(row_vec)
    return {
        "iop": np.concatenate([col_vec / dx, row_vec / dy]),
        "pixel_spacing": np.array([dy, dx]),  # (between rows, between columns)
        "step": step,
        "origin": m[:3, 3],
        "thickness": float(abs(np.cross(col_vec / dx, row_vec / dy) @ step)),
    }


def _stored(data: np.ndarray, rescale: tuple[float, float], dtype: Any) -> np.ndarray:
    slope, inter = rescale
    stored = np.round((np.asarray(data, np.float64) - inter) / slope)
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"data do not fit {np.dtype(dtype)} with rescale {rescale}")
    return stored.astype(dtype)


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = UID(sop_class)
    fm.MediaStorageSOPInstanceUID = UID(sop_uid)
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    return fm


def _base(sop_class: str, series_uid: str, study_uid: str, **kw: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = _file_meta(sop_class, ds.SOPInstanceUID)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = kw.get("frame_of_reference_uid") or generate_uid()
    ds.Modality = kw.get("modality", "MR")
    ds.SeriesDescription = kw.get("series_description", "factory series")
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "phantom"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240102"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    """``stored``: (rows, cols) or (frames, rows, cols) integer array."""
    ds.Rows, ds.Columns = stored.shape[-2:]
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder("<")).tobytes()


def _tm(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def write_series(
    folder: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    series_uid: str | None = None,
    rescale: tuple[float, float] = (1.0, 0.0),
    times: Iterable[float] | None = None,
    bvals: Iterable[float] | None = None,
    bvecs: np.ndarray | None = None,
    stored_dtype: Any = np.int16,
    tr_ms: float | None = 2000.0,
    modality: str = "MR",
    series_description: str = "factory series",
    shuffle: bool = True,
    seed: int = 0,
    skip: Iterable[tuple[int, int]] = (),
    edit: Callable[[Dataset, int, int], None] | None = None,
    prefix: str = "IM",
    time_tags: bool = True,
) -> list[Path]:
    """Write a classic single-frame MR series, one file per slice and volume.

    Parameters
    ----------
    folder:
        Existing output folder.
    data:
        (x, y, z) or (x, y, z, t) physical values; stored as
        ``round((data - intercept) / slope)`` in ``stored_dtype``.
    affine:
        (4, 4) RAS+ voxel-to-world matrix of ``data``.
    rescale:
        (RescaleSlope, RescaleIntercept).
    times:
        (t,) seconds of each volume: AcquisitionTime (plus 10 ms per slice, like real
        slice timing) and TemporalPositionIdentifier.
    bvals, bvecs:
        (t,) b-values and (t, 3) gradient directions in the DICOM patient frame (LPS):
        DiffusionBValue (0018,9087) and DiffusionGradientOrientation (0018,9089).
    shuffle:
        Name the files in a random order, so that file order says nothing about geometry.
    skip:
        (k, t) pairs of slices not to write.
    edit:
        Called as ``edit(ds, k, t)`` before each file is saved.
    time_tags:
        Write AcquisitionTime/TemporalPositionIdentifier/InstanceNumber (turn off to build
        a 4D series whose volumes cannot be told apart).

    Returns
    -------
    list of Path
        Written files in (t, k) order.
    """
    folder = Path(folder)
    data = np.asarray(data)
    vol4 = data if data.ndim == 4 else data[..., None]
    nx, ny, nz, nt = vol4.shape
    geo = geometry(affine)
    stored = _stored(vol4, rescale, stored_dtype)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    times = None if times is None else [float(t) for t in times]
    bvals = None if bvals is None else [float(b) for b in bvals]
    skip = {tuple(s) for s in skip}
    order = np.random.default_rng(seed).permutation(nz * nt) if shuffle else np.arange(nz * nt)
    paths = []
    for t in range(nt):
        for k in range(nz):
            idx = t * nz + k
            if (k, t) in skip:
                continue
            ds = _base(
                MRImageStorage,
                series_uid,
                study_uid,
                modality=modality,
                series_description=series_description,
                frame_of_reference_uid=frame_uid,
            )
            ds.ImageOrientationPatient = [_ds_str(v) for v in geo["iop"]]
            ds.ImagePositionPatient = [_ds_str(v) for v in geo["origin"] + k * geo["step"]]
            ds.PixelSpacing = [_ds_str(v) for v in geo["pixel_spacing"]]
            ds.SliceThickness = _ds_str(geo["thickness"])
            ds.SpacingBetweenSlices = _ds_str(float(np.linalg.norm(geo["step"])))
            ds.RescaleSlope = _ds_str(rescale[0])
            ds.RescaleIntercept = _ds_str(rescale[1])
            if tr_ms is not None:
                ds.RepetitionTime = _ds_str(tr_ms)
            if time_tags:
                ds.InstanceNumber = idx + 1
                ds.AcquisitionNumber = t + 1
                base_s = 10 * 3600.0
                t_s = times[t] if times is not None else t * (tr_ms or 1000.0) / 1000.0
                ds.AcquisitionTime = _tm(base_s + t_s + 0.01 * k)
                if nt > 1 and bvals is None:
                    ds.TemporalPositionIdentifier = t + 1
                    ds.NumberOfTemporalPositions = nt
            if bvals is not None:
                ds.DiffusionBValue = bvals[t]
                if bvecs is not None and bvals[t] > 0:
                    ds.DiffusionGradientOrientation = [float(v) for v in bvecs[t]]
            _set_pixels(ds, stored[:, :, k, t].T)
            if edit is not None:
                edit(ds, k, t)
            path = folder / f"{prefix}{int(order[idx]):05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def write_multiframe(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    series_uid: str | None = None,
    rescale: tuple[float, float] = (1.0, 0.0),
    times: Iterable[float] | None = None,
    bvals: Iterable[float] | None = None,
    bvecs: np.ndarray | None = None,
    stored_dtype: Any = np.int16,
    tr_ms: float | None = 2000.0,
    per_frame_geometry: bool = False,
    shuffle_frames: bool = False,
    seed: int = 0,
    edit: Callable[[Dataset], None] | None = None,
) -> Path:
    """Write an Enhanced MR Image Storage multi-frame file.

    Geometry goes in the functional groups: PlanePositionSequence per frame;
    PlaneOrientationSequence, PixelMeasuresSequence and PixelValueTransformationSequence in
    the shared groups, or per frame with ``per_frame_geometry``. ``times`` go into
    FrameContentSequence (TemporalPositionIndex, FrameAcquisitionDateTime), ``bvals`` and
    ``bvecs`` (LPS) into MRDiffusionSequence. ``shuffle_frames`` stores the frames in a
    random order. ``edit(ds)`` is called before saving.
    """
    path = Path(path)
    data = np.asarray(data)
    vol4 = data if data.ndim == 4 else data[..., None]
    nx, ny, nz, nt = vol4.shape
    geo = geometry(affine)
    stored = _stored(vol4, rescale, stored_dtype)
    ds = _base(EnhancedMRImageStorage, series_uid or generate_uid(), generate_uid())
    times = None if times is None else [float(t) for t in times]
    bvals = None if bvals is None else [float(b) for b in bvals]

    def measures() -> Dataset:
        m = Dataset()
        m.PixelSpacing = [_ds_str(v) for v in geo["pixel_spacing"]]
        m.SliceThickness = _ds_str(geo["thickness"])
        m.SpacingBetweenSlices = _ds_str(float(np.linalg.norm(geo["step"])))
        return m

    def orientation() -> Dataset:
        o = Dataset()
        o.ImageOrientationPatient = [_ds_str(v) for v in geo["iop"]]
        return o

    def transform() -> Dataset:
        p = Dataset()
        p.RescaleSlope = _ds_str(rescale[0])
        p.RescaleIntercept = _ds_str(rescale[1])
        p.RescaleType = "US"
        return p

    shared = Dataset()
    if not per_frame_geometry:
        shared.PixelMeasuresSequence = Sequence([measures()])
        shared.PlaneOrientationSequence = Sequence([orientation()])
        shared.PixelValueTransformationSequence = Sequence([transform()])
    if tr_ms is not None:
        timing = Dataset()
        timing.RepetitionTime = tr_ms
        shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    pairs = [(k, t) for t in range(nt) for k in range(nz)]
    if shuffle_frames:
        pairs = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))]
    per_frame, frames = [], []
    for k, t in pairs:
        f = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [_ds_str(v) for v in geo["origin"] + k * geo["step"]]
        f.PlanePositionSequence = Sequence([pos])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        content.DimensionIndexValues = [t + 1, k + 1]
        if times is not None:
            content.TemporalPositionIndex = t + 1
            sec = 10 * 3600.0 + times[t] + 0.01 * k
            content.FrameAcquisitionDateTime = "20240102" + _tm(sec)
        f.FrameContentSequence = Sequence([content])
        if bvals is not None:
            d = Dataset()
            d.DiffusionBValue = bvals[t]
            d.DiffusionDirectionality = "DIRECTIONAL" if bvals[t] > 0 else "NONE"
            if bvecs is not None and bvals[t] > 0:
                g = Dataset()
                g.DiffusionGradientOrientation = [float(v) for v in bvecs[t]]
                d.DiffusionGradientDirectionSequence = Sequence([g])
            f.MRDiffusionSequence = Sequence([d])
        if per_frame_geometry:
            f.PixelMeasuresSequence = Sequence([measures()])
            f.PlaneOrientationSequence = Sequence([orientation()])
            f.PixelValueTransformationSequence = Sequence([transform()])
        per_frame.append(f)
        frames.append(stored[:, :, k, t].T)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.NumberOfFrames = len(frames)
    ds.InstanceNumber = 1
    _set_pixels(ds, np.stack(frames))
    if edit is not None:
        edit(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


def csa2_header(tags: dict[str, tuple[str, int, list[Any]]]) -> bytes:
    """A Siemens CSA2 ("SV10") header holding ``tags``: name -> (VR, VM, values).

    The layout nibabel's ``nicom.csareader.read`` parses, as in scanner headers: "SV10",
    4 unused bytes, uint32 number of tags and 77; per tag: the name (64 bytes,
    NUL-terminated), int32 VM, VR (4 bytes), int32 SyngoDT, int32 number of items and 77
    (205 for an empty tag); per item: int32 (length, length, 77, length), then the value as
    a NUL-terminated ASCII string padded to 4 bytes. Tags with values list at least 6 items
    (empty ones after the values); a tag without values (a b = 0 image's
    DiffusionGradientDirection) has none.
    """
    out = [b"SV10", b"\x04\x03\x02\x01", struct.pack("<2I", len(tags), 77)]
    for name, (vr, vm, values) in tags.items():
        items = [
            (f"{v:.8f}" if isinstance(v, float) else str(v)).encode() + b"\x00" for v in values
        ]
        if items:
            items += [b""] * max(0, 6 - len(items))
        out.append(
            struct.pack(
                "<64si4s3i",
                name.encode(),
                vm,
                vr.encode(),
                4 if vr == "FD" else 6,
                len(items),
                77 if items else 205,
            )
        )
        for item in items:
            out.append(struct.pack("<4i", len(item), len(item), 77, len(item)))
            out.append(item + b"\x00" * (-len(item) % 4))
    return b"".join(out)


def add_siemens_csa(
    ds: Dataset,
    *,
    b_value: float | None = None,
    gradient: Iterable[float] | None = None,
    b_matrix: Iterable[float] | None = None,
    blob: bytes | None = None,
) -> None:
    """Put a CSA image header in (0029,1010) under private creator "SIEMENS CSA HEADER".

    ``b_value`` (s/mm^2, written as IS), ``gradient`` (3,) DiffusionGradientDirection and
    ``b_matrix`` (6,) upper triangle (bxx, bxy, bxz, byy, byz, bzz), both in the patient
    frame (LPS); None leaves a tag out (``gradient=()`` writes it without values, as for
    b = 0). ``blob`` replaces the whole header by these bytes (damaged headers).
    """
    if blob is None:
        tags: dict[str, tuple[str, int, list[Any]]] = {"ProtocolSliceNumber": ("IS", 1, [0])}
        if b_value is not None:
            tags["B_value"] = ("IS", 1, [int(round(b_value))])
        if gradient is not None:
            tags["DiffusionGradientDirection"] = ("FD", 3, [float(v) for v in gradient])
        if b_matrix is not None:
            tags["B_matrix"] = ("FD", 6, [float(v) for v in b_matrix])
        blob = csa2_header(tags)
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x08, "CS", "IMAGE NUM 4")
    block.add_new(0x09, "LO", "20100114")
    block.add_new(0x10, "OB", blob)
