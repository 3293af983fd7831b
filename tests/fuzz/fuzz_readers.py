"""Fuzz the NIfTI and DICOM readers: only ``mrenhance.errors.InputError`` may escape.

The property, for any bytes written as a ``.nii``, ``.nii.gz`` or ``.dcm`` file (or as one
file of a small DICOM series folder): :func:`mrenhance.io.load` either returns a Volume
with finite float32 (x, y, z[, t]) data and a finite affine, or raises InputError with
one line starting with the path. Anything else (a nibabel/pydicom/numpy/zlib exception, a
multi-line message, NaN data) is a bug, and the harness raises it.

Run with atheris (coverage-guided, libFuzzer), an optional tool::

    .venv/bin/pip install -c constraints.txt atheris        # or: pip install -e ".[fuzz]"
    .venv/bin/python tests/fuzz/fuzz_readers.py -atheris_runs=20000
    .venv/bin/python tests/fuzz/fuzz_readers.py -max_total_time=3600 corpus/   # an hour

Without a corpus folder on the command line the harness starts from its own seeds (a
valid NIfTI-1, NIfTI-2, gzipped NIfTI and DICOM file). Crashes are written by libFuzzer
as ``crash-<sha1>`` files; replay one with ``python tests/fuzz/fuzz_readers.py crash-...``.
The hypothesis tests in ``test_fuzz_readers.py`` use the same :func:`check_file`.
"""

from __future__ import annotations

import atexit
import gzip
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

# choice: 2^24 voxels (64 MiB of float32) caps what one fuzzed header may make the loader
# allocate; the checks are the same as under the default 2^31.
MAX_VOXELS = 1 << 24
FORMATS = (".nii", ".nii.gz", ".dcm", "series")


def _tests_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def nifti_seed(shape: tuple[int, ...] = (6, 7, 5), version: int = 1, dtype=np.int16) -> bytes:
    """A valid small NIfTI-1 (or -2) single file, uncompressed bytes."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, shape).astype(dtype)
    aff = np.diag([1.0, 1.2, 2.0, 1.0])
    aff[:3, 3] = [-3.0, -4.0, -5.0]
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = klass(data, aff)
    img.header.set_xyzt_units("mm", "sec")
    if len(shape) == 4:
        img.header["pixdim"][4] = 2.0
    return img.to_bytes()


def dicom_seed(n_slices: int = 3) -> list[bytes]:
    """The files of a valid small DICOM series (int16, 6x7 pixels), as bytes."""
    if str(_tests_dir()) not in sys.path:
        sys.path.insert(0, str(_tests_dir()))
    from dicom_factory import write_series

    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (7, 6, n_slices)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        paths = write_series(d, data, np.diag([0.9, 0.9, 3.0, 1.0]), shuffle=False)
        return [p.read_bytes() for p in paths]


def _write(folder: Path, data: bytes, fmt: str, series: list[bytes] | None) -> Path:
    if fmt == "series":
        d = folder / "series"
        d.mkdir()
        for i, b in enumerate(series or []):
            (d / f"IM{i:03d}.dcm").write_bytes(b)
        (d / "IM_fuzzed.dcm").write_bytes(data)
        return d
    p = folder / f"input{fmt}"
    p.write_bytes(data)
    return p


def check_file(path: Path) -> str:
    """Load ``path``; return "ok" or "refused"; raise on anything that breaks the promise."""
    from mrenhance.errors import InputError
    from mrenhance.io import load

    try:
        vol = load(path, max_voxels=MAX_VOXELS)
    except InputError as e:
        msg = str(e)
        if "\n" in msg or "\r" in msg:
            raise AssertionError(f"multi-line error message: {msg!r}") from e
        if not msg.startswith(str(path)):
            raise AssertionError(f"the message does not start with the path: {msg!r}") from e
        return "refused"
    data = vol.data
    if data.dtype != np.float32 or data.ndim not in (3, 4) or 0 in data.shape:
        raise AssertionError(f"loaded a bad array: {data.dtype} {data.shape}")
    if not np.isfinite(data).all():
        raise AssertionError("loaded NaN/Inf voxels under nan_policy='error'")
    aff = np.asarray(vol.affine)
    if aff.shape != (4, 4) or not np.isfinite(aff).all():
        raise AssertionError(f"loaded a bad affine: {aff}")
    return "ok"


def check_bytes(data: bytes, fmt: str, series: list[bytes] | None = None) -> str:
    """Write ``data`` as ``fmt`` (see :data:`FORMATS`) in a temp folder and :func:`check_file`."""
    with tempfile.TemporaryDirectory(prefix="mrenhance-fuzz-") as d:
        return check_file(_write(Path(d), data, fmt, series))


# ---------------------------------------------------------------------------- atheris


def _seed_corpus(folder: Path) -> None:
    """One file per format: first byte selects the format, the rest is the file."""
    nii = nifti_seed()
    seeds = {
        "nifti1": b"\x00" + nii,
        "nifti2_4d": b"\x00" + nifti_seed((4, 5, 3, 2), version=2, dtype=np.float32),
        "nifti_gz": b"\x01" + gzip.compress(nii, mtime=0),
        "dicom": b"\x02" + dicom_seed(1)[0],
        "dicom_in_series": b"\x03" + dicom_seed(3)[2],
    }
    for name, blob in seeds.items():
        (folder / name).write_bytes(blob)


def main(argv: list[str]) -> None:  # pragma: no cover - needs atheris
    import atheris

    with atheris.instrument_imports():
        import nibabel  # noqa: F401
        import pydicom  # noqa: F401

        import mrenhance.io  # noqa: F401
        import mrenhance.io.dicom  # noqa: F401
        import mrenhance.io.nifti  # noqa: F401

    series = dicom_seed(3)[:2]  # the fuzzed file joins two good slices

    def one_input(blob: bytes) -> None:
        if not blob:
            return
        fmt = FORMATS[blob[0] % len(FORMATS)]
        check_bytes(blob[1:], fmt, series)

    args = list(argv)
    if not any(os.path.isdir(a) or os.path.isfile(a) for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="mrenhance-fuzz-corpus-"))
        _seed_corpus(corpus)
        args.append(str(corpus))
        atexit.register(shutil.rmtree, corpus, ignore_errors=True)  # Fuzz() exits itself
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, line_buffering=True)
    main(sys.argv)
