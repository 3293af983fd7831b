"""Property tests: mutated NIfTI headers, DICOM elements and raw bytes never escape as
anything but ``InputError`` (one line, starting with the path), and what loads is sane.

The harness is :func:`fuzz_readers.check_bytes`, shared with the atheris script. Examples
per test: ``MRENHANCE_FUZZ_EXAMPLES`` (default 60; derandomized, so CI is repeatable). If
``MRENHANCE_FUZZ_COUNTS`` names a file, the number of files checked is added to it.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fuzz_readers import FORMATS, check_bytes, dicom_seed, nifti_seed
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

# pydicom warns about each invalid value the fuzzer writes; that is the point here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

EXAMPLES = int(os.environ.get("MRENHANCE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
OUTCOMES: Counter[str] = Counter()

NII = nifti_seed()
NII_4D_V2 = nifti_seed((4, 5, 3, 2), version=2, dtype=np.float32)
DCM = dicom_seed(3)

# NIfTI-1 header fields: name -> (byte offset, struct format)
FIELDS: dict[str, tuple[int, str]] = {
    "sizeof_hdr": (0, "i"),
    "dim_info": (39, "B"),
    **{f"dim{i}": (40 + 2 * i, "h") for i in range(8)},
    "intent_code": (68, "h"),
    "datatype": (70, "h"),
    "bitpix": (72, "h"),
    "slice_start": (74, "h"),
    **{f"pixdim{i}": (76 + 4 * i, "f") for i in range(8)},
    "vox_offset": (108, "f"),
    "scl_slope": (112, "f"),
    "scl_inter": (116, "f"),
    "slice_end": (120, "h"),
    "slice_code": (122, "B"),
    "xyzt_units": (123, "B"),
    "slice_duration": (132, "f"),
    "qform_code": (252, "h"),
    "sform_code": (254, "h"),
    **{f"quatern{i}": (256 + 4 * i, "f") for i in range(6)},
    **{f"srow{i}": (280 + 4 * i, "f") for i in range(12)},
    "magic": (344, "4s"),
    "extension": (348, "B"),
}


def _value(fmt: str) -> st.SearchStrategy:
    if fmt == "f":
        specials = st.sampled_from([0.0, -1.0, 1e-30, 1e30, 3.4e38, float("nan"), float("inf")])
        return st.one_of(specials, st.floats(width=32))
    if fmt == "4s":
        return st.sampled_from([b"n+1\x00", b"ni1\x00", b"n+2\x00", b"\x00\x00\x00\x00"])
    lo, hi = {"i": (-(2**31), 2**31 - 1), "h": (-(2**15), 2**15 - 1), "B": (0, 255)}[fmt]
    specials = st.sampled_from([v for v in (lo, hi, 0, 1, -1, 7, 8, 16, 348, 540) if lo <= v <= hi])
    return st.one_of(specials, st.integers(lo, hi))


@st.composite
def header_edits(draw) -> list[tuple[int, bytes]]:
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4, unique=True))
    edits = []
    for name in names:
        offset, fmt = FIELDS[name]
        edits.append((offset, struct.pack("<" + fmt, draw(_value(fmt)))))
    return edits


def _apply(blob: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    raw = bytearray(blob)
    for offset, value in edits:
        raw[offset : offset + len(value)] = value
    return bytes(raw)


def _check(data: bytes, fmt: str) -> None:
    OUTCOMES[check_bytes(data, fmt, DCM[:2])] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    path = os.environ.get("MRENHANCE_FUZZ_COUNTS")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{sum(OUTCOMES.values())} {OUTCOMES['ok']} {OUTCOMES['refused']}\n")


# ---------------------------------------------------------------------------- NIfTI


def test_seeds_load():
    for blob, fmt in ((NII, ".nii"), (gzip.compress(NII), ".nii.gz"), (NII_4D_V2, ".nii")):
        assert check_bytes(blob, fmt) == "ok"
    assert check_bytes(DCM[0], ".dcm") == "ok"
    assert check_bytes(DCM[2], "series", DCM[:2]) == "ok"


@FUZZ
@given(edits=header_edits(), compress=st.booleans())
def test_nifti_with_mutated_header_fields(edits: list[tuple[int, bytes]], compress: bool):
    blob = _apply(NII, edits)
    _check(gzip.compress(blob, mtime=0) if compress else blob, ".nii.gz" if compress else ".nii")


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, len(NII_4D_V2) - 1), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, len(NII_4D_V2))),
)
def test_nifti2_with_mutated_bytes(flips: list[tuple[int, int]], cut: int | None):
    blob = _apply(NII_4D_V2, [(o, bytes([v])) for o, v in flips])
    _check(blob if cut is None else blob[:cut], ".nii")


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 2000)),
)
def test_gzipped_nifti_with_mutated_compressed_bytes(flips: list[tuple[int, int]], cut):
    gz = gzip.compress(NII, mtime=0)
    blob = _apply(gz, [(o % len(gz), bytes([v])) for o, v in flips])
    _check(blob if cut is None else blob[: cut % (len(gz) + 1)], ".nii.gz")


# ---------------------------------------------------------------------------- DICOM

_DICOM_VALUES: dict[str, st.SearchStrategy] = {
    "Rows": st.integers(0, 65535),
    "Columns": st.integers(0, 65535),
    "BitsAllocated": st.sampled_from([0, 1, 7, 8, 12, 16, 32, 64]),
    "BitsStored": st.integers(0, 64),
    "HighBit": st.integers(0, 64),
    "PixelRepresentation": st.integers(0, 3),
    "SamplesPerPixel": st.integers(0, 4),
    "NumberOfFrames": st.sampled_from(["0", "1", "2", "-1", "1e9", "x"]),
    "ImagePositionPatient": st.lists(
        st.sampled_from(["0", "1e30", "nan", "-5.5", "inf", "x", ""]), min_size=0, max_size=4
    ),
    "ImageOrientationPatient": st.lists(
        st.sampled_from(["0", "1", "-1", "0.5", "nan", "1e300", ""]), min_size=0, max_size=7
    ),
    "PixelSpacing": st.lists(
        st.sampled_from(["0", "1", "-1", "nan", "1e-40", "x"]), min_size=0, max_size=3
    ),
    "SliceThickness": st.sampled_from(["0", "-3", "nan", "", "1e400"]),
    "RescaleSlope": st.sampled_from(["0", "1e38", "1e300", "nan", "-inf", "x"]),
    "RescaleIntercept": st.sampled_from(["0", "1e38", "nan", "inf", "x"]),
    "PhotometricInterpretation": st.sampled_from(["MONOCHROME1", "RGB", "PALETTE COLOR", ""]),
    "SeriesInstanceUID": st.sampled_from(["1.2.3", "", "x" * 64]),
    "SOPInstanceUID": st.sampled_from(["1.2.3", ""]),
    "PixelData": st.integers(0, 84),  # keep this many bytes
}


@st.composite
def dicom_edits(draw) -> list[tuple[str, object]]:
    names = draw(st.lists(st.sampled_from(sorted(_DICOM_VALUES)), min_size=1, max_size=3))
    return [(n, draw(_DICOM_VALUES[n])) for n in names]


def _raw_value(vr: str, value: object) -> bytes:
    """The element's bytes as a file would hold them, valid for its VR or not."""
    if vr == "US":
        return struct.pack("<H", int(value))  # type: ignore[call-overload]
    text = "\\".join(value) if isinstance(value, list) else str(value)
    raw = text.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def _edited_dicom(blob: bytes, edits: list[tuple[str, object]]) -> bytes:
    """The file with each element replaced by raw bytes (pydicom would refuse to write
    e.g. DS "x" through the normal setters, so the elements are stored undecoded)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    ds = pydicom.dcmread(io.BytesIO(blob))
    for name, value in edits:
        if name == "PixelData":
            ds.PixelData = ds.PixelData[: int(value)]  # type: ignore[index, call-overload]
            continue
        tag = tag_for_keyword(name)
        vr = dictionary_VR(tag)
        raw = _raw_value(vr, value)
        ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)  # noqa: SLF001
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception:  # noqa: BLE001 - a value pydicom cannot write at all
        reject()
    return out.getvalue()


@FUZZ
@given(edits=dicom_edits(), in_series=st.booleans())
def test_dicom_with_mutated_elements(edits: list[tuple[str, object]], in_series: bool):
    blob = _edited_dicom(DCM[2], edits)
    _check(blob, "series" if in_series else ".dcm")


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, len(DCM[2]) - 1), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, len(DCM[2]))),
    in_series=st.booleans(),
)
def test_dicom_with_mutated_bytes(flips: list[tuple[int, int]], cut, in_series: bool):
    blob = _apply(DCM[2], [(o, bytes([v])) for o, v in flips])
    _check(blob if cut is None else blob[:cut], "series" if in_series else ".dcm")


@FUZZ
@given(data=st.binary(max_size=1200), fmt=st.sampled_from(FORMATS))
def test_arbitrary_bytes(data: bytes, fmt: str):
    _check(data, fmt)


def test_the_harness_catches_an_escaping_exception(tmp_path: Path, monkeypatch):
    """The property can fail: a loader bug that raises ValueError is not swallowed."""
    import mrenhance.io as mio

    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(mio, "load", broken)
    with pytest.raises(ValueError, match="boom"):
        check_bytes(NII, ".nii")
