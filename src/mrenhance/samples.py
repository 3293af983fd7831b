"""Offline sample data: real images shipped inside installed Python packages.

Nothing here downloads or touches the network: files are found through
``importlib.util.find_spec(package)`` (which does not import the package) and read with
nibabel/numpy. A missing package raises :class:`~mrenhance.errors.InputError` saying what
to install.

=================== =================================================================
name                what
=================== =================================================================
mni_t1              nilearn's MNI152 2009a symmetric T1 template, 197x233x189, 1 mm,
                    skull-stripped, raw uint8 values 0-255 as float32
mni_tissue          its GM and WM probability maps (uint8 / 255) and a derived CSF map
mni_brain_mask      binary_fill_holes(T1 > 0), as float32 0/1
asldro_ground_truth asldro's ground-truth brain on the same grid: CBF, ATT, T1, T2, T2*,
                    M0, tissue labels (1.5 T or 3 T)
dipy_small_64d      dipy's small_64D DWI: 10x10x10x65, 2 mm, b = 0 and 64 directions
                    at b ~ 1000
dipy_s0_10slices    dipy's S0_10slices: a real b = 0 image, 128x128x10, 2 mm in-plane
=================== =================================================================

Arrays are read once per process (``functools.lru_cache``, about 250 MB for all of them;
:func:`clear_cache` frees it) and every call returns fresh copies.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.volume import Volume

_NILEARN_DATA = "datasets/data"
_MNI_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
_MNI_GM = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
_MNI_WM = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"
_ASLDRO_FILES = {"3T": "hrgt_icbm_2009a_nls_3t", "1.5T": "hrgt_icbm_2009a_nls_1.5t"}
ASLDRO_QUANTITIES = (
    "perfusion_rate",
    "transit_time",
    "t1",
    "t2",
    "t2_star",
    "m0",
    "seg_label",
)


def _package_dir(package: str, sample: str) -> Path:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise InputError(f"sample '{sample}' needs the package {package}: pip install {package}")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(str(spec.origin)).parent


def _package_file(package: str, relative: str, sample: str) -> Path:
    path = _package_dir(package, sample) / relative
    if not path.is_file():
        raise InputError(
            f"{path}: sample '{sample}' expects this file in the installed {package}; "
            f"reinstall it (pip install --force-reinstall {package})"
        )
    return path


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.cache
def _load_nifti(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 data, float64 affine) of a NIfTI file, cached and read-only."""
    import nibabel as nib

    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    return _read_only(data), _read_only(np.asarray(img.affine, dtype=np.float64))


def _volume(
    data: np.ndarray, affine: np.ndarray, name: str, provenance: str, **meta: Any
) -> Volume:
    return Volume(
        np.array(data, dtype=np.float32, copy=True),
        np.array(affine, dtype=np.float64, copy=True),
        {"source": f"sample:{name}", "provenance": [provenance], **meta},
    )


def _nilearn_file(filename: str, sample: str) -> Path:
    return _package_file("nilearn", f"{_NILEARN_DATA}/{filename}", sample)


def _provenance(package: str, path: Path) -> str:
    return f"read {path.name} shipped with {package} {_package_version(package)}"


def mni_t1() -> Volume:
    """nilearn's MNI152 2009a (ICBM 2009a nonlinear symmetric) T1 template.

    Returns
    -------
    Volume (197, 233, 189), 1 mm isotropic RAS, skull-stripped (background 0); the file's
    uint8 values 0-255 as float32 (not rescaled).
    """
    path = _nilearn_file(_MNI_T1, "mni_t1")
    data, affine = _load_nifti(str(path))
    return _volume(data, affine, "mni_t1", _provenance("nilearn", path))


@functools.cache
def _mni_mask_array(t1_path: str) -> np.ndarray:
    from scipy.ndimage import binary_fill_holes

    t1, _ = _load_nifti(t1_path)
    return _read_only(binary_fill_holes(t1 > 0))


def mni_brain_mask() -> Volume:
    """Brain mask of the MNI152 2009a template: ``binary_fill_holes(T1 > 0)``.

    The shipped T1 is skull-stripped with a zero background, so its support is the
    intracranial brain including the ventricles and sulcal CSF (about 1.89 L); filling holes
    guards against isolated zero voxels inside (there are none in the file nilearn 0.14 ships).
    The GM/WM maps of :func:`mni_tissue` put a little probability outside this mask
    (about 1 % of the GM total, each value <= 0.5): the partial-volume rim that the
    skull-stripping removed.

    Returns
    -------
    Volume (197, 233, 189), float32 values 0 and 1.
    """
    path = _nilearn_file(_MNI_T1, "mni_brain_mask")
    _, affine = _load_nifti(str(path))
    mask = _mni_mask_array(str(path)).astype(np.float32)
    return _volume(
        mask, affine, "mni_brain_mask", _provenance("nilearn", path) + "; fill_holes(T1 > 0)"
    )


def mni_tissue() -> dict[str, Volume]:
    """Tissue probability maps of the MNI152 2009a template.

    ``"gm"`` and ``"wm"`` are nilearn's maps (uint8 / 255, as nilearn's own loaders scale
    them). ``"csf"`` is derived: inside :func:`mni_brain_mask`,
    ``clip(1 - gm - wm, 0, 1)``, and 0 outside; so gm + wm + csf = 1 inside the mask
    (gm + wm never exceeds 1 in the shipped maps). GM and WM are returned as shipped, also
    outside the mask.

    Returns
    -------
    dict with keys ``"gm"``, ``"wm"``, ``"csf"``: Volumes (197, 233, 189), float32 in [0, 1].
    """
    gm_path = _nilearn_file(_MNI_GM, "mni_tissue")
    wm_path = _nilearn_file(_MNI_WM, "mni_tissue")
    t1_path = _nilearn_file(_MNI_T1, "mni_tissue")
    gm, affine = _load_nifti(str(gm_path))
    wm, _ = _load_nifti(str(wm_path))
    gm = gm / np.float32(255.0)
    wm = wm / np.float32(255.0)
    # CSF is not shipped: what the brain mask holds beyond GM and WM is CSF.
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * _mni_mask_array(str(t1_path))
    return {
        "gm": _volume(
            gm, affine, "mni_tissue", _provenance("nilearn", gm_path) + " / 255", tissue="gm"
        ),
        "wm": _volume(
            wm, affine, "mni_tissue", _provenance("nilearn", wm_path) + " / 255", tissue="wm"
        ),
        "csf": _volume(
            csf,
            affine,
            "mni_tissue",
            "derived: mni_brain_mask * clip(1 - gm - wm, 0, 1)",
            tissue="csf",
        ),
    }


def _read_5d_blocks(path: Path, img: Any) -> list[np.ndarray]:
    """The (x, y, z) blocks of a (x, y, z, 1, q) NIfTI as float32, read in one pass.

    nibabel's ``img.dataobj`` would hold the whole float64 file (~490 MB) at once, and
    slicing it per quantity decompresses the gzip stream again each time; the blocks are
    contiguous on disk (Fortran order, quantity slowest), so we stream them.
    """
    from nibabel.openers import Opener

    spatial = img.shape[:3]
    count = int(np.prod(spatial))
    dtype = img.header.get_data_dtype()
    slope = img.dataobj.slope
    inter = img.dataobj.inter
    blocks = []
    with Opener(str(path), "rb") as f:
        f.seek(int(img.dataobj.offset))
        for _ in range(img.shape[4]):
            raw = f.read(count * dtype.itemsize)
            arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(spatial, order="F")
            blocks.append((arr * slope + inter).astype(np.float32))
    return blocks


def _asldro_files(field_strength: str) -> tuple[Path, Path]:
    stem = _ASLDRO_FILES[field_strength]
    path = _package_file("asldro", f"data/{stem}.nii.gz", "asldro_ground_truth")
    sidecar = _package_file("asldro", f"data/{stem}.json", "asldro_ground_truth")
    return path, sidecar


@functools.cache
def _load_asldro(path: Path, sidecar: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict, str]:
    import nibabel as nib

    info = json.loads(sidecar.read_text())
    quantities = list(info.get("quantities", []))
    img = nib.load(str(path))
    # The file is 5D (x, y, z, 1, quantity), float64, in the order of the JSON's
    # "quantities" (asldro.filters.ground_truth_loader indexes image[..., i] the same way).
    if img.ndim != 5 or img.shape[4] != len(quantities) or img.shape[3] != 1:
        raise InputError(
            f"{path}: expected (x, y, z, 1, {len(quantities)}) for the quantities "
            f"{quantities}, got shape {img.shape}"
        )
    missing = set(ASLDRO_QUANTITIES) - set(quantities)
    if missing:
        raise InputError(f"{sidecar}: quantities {sorted(missing)} are missing")
    maps = {}
    for name, arr in zip(quantities, _read_5d_blocks(path, img), strict=True):
        if name == "seg_label":
            arr = np.rint(arr)  # labels are integers stored as floats (asldro rounds too)
        maps[name] = _read_only(arr)
    return maps, _read_only(np.asarray(img.affine, dtype=np.float64)), info, str(path)


def asldro_ground_truth(field_strength: str = "3T") -> dict[str, Volume]:
    """asldro's high-resolution ground-truth brain (ICBM 2009a, same grid as :func:`mni_t1`).

    Parameters
    ----------
    field_strength:
        ``"3T"`` or ``"1.5T"`` (relaxation times differ).

    Returns
    -------
    dict of Volumes (197, 233, 189) float32, keyed by quantity:

    ``perfusion_rate``
        CBF in ml/100g/min (GM 60, WM 20, CSF 0 in the 3 T file).
    ``transit_time``
        arterial transit time in s (GM 0.8, WM 1.2; CSF holds 1000, asldro's "never").
    ``t1``, ``t2``, ``t2_star``
        relaxation times in s.
    ``m0``
        equilibrium magnetisation, arbitrary units.
    ``seg_label``
        tissue labels: 0 background, 1 grey matter, 2 white matter, 3 CSF (from the JSON's
        ``"segmentation"``).

    Each Volume's meta has ``quantity``, ``units``, ``field_strength_t``, and the JSON's
    ``parameters`` (``lambda_blood_brain``, ``t1_arterial_blood`` in s); ``seg_label`` also
    has ``segmentation`` (name -> label).
    """
    if field_strength not in _ASLDRO_FILES:
        raise InputError(
            f"asldro_ground_truth: field_strength must be one of {', '.join(_ASLDRO_FILES)}; "
            f"got {field_strength!r}"
        )
    maps, affine, info, path = _load_asldro(*_asldro_files(field_strength))
    parameters = dict(info.get("parameters", {}))
    units = dict(zip(info["quantities"], info.get("units", [""] * len(maps)), strict=False))
    out = {}
    for name, arr in maps.items():
        meta: dict[str, Any] = {
            "quantity": name,
            "units": units.get(name, ""),
            "field_strength_t": parameters.get("magnetic_field_strength"),
            "parameters": dict(parameters),
        }
        if name == "seg_label":
            meta["segmentation"] = dict(info.get("segmentation", {}))
        out[name] = _volume(
            arr,
            affine,
            "asldro_ground_truth",
            f"{_provenance('asldro', Path(path))}: quantity {name}",
            **meta,
        )
    return out


def _small_64d_files() -> tuple[Path, Path, Path]:
    base = "data/files/small_64D"
    return tuple(  # type: ignore[return-value]
        _package_file("dipy", f"{base}{ext}", "dipy_small_64d")
        for ext in (".nii", ".bval", ".bvec")
    )


@functools.cache
def _load_small_64d(
    nii: Path, bval: Path, bvec: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    data, affine = _load_nifti(str(nii))
    bvals = np.loadtxt(bval, dtype=np.float64).reshape(-1)
    bvecs = np.loadtxt(bvec, dtype=np.float64)
    if bvecs.shape == (3, bvals.size):  # FSL layout (3, n); dipy ships (n, 3)
        bvecs = bvecs.T
    # The file has NaN for the b=0 direction; a zero vector is the usual convention.
    bvecs = np.nan_to_num(bvecs, nan=0.0)
    if data.shape[3:] != bvals.shape or bvecs.shape != (bvals.size, 3):
        raise InputError(
            f"{nii}: {data.shape[3:]} volumes but {bvals.shape} b-values, bvecs {bvecs.shape}"
        )
    return data, affine, _read_only(bvals), _read_only(bvecs), str(nii)


def dipy_small_64d() -> Volume:
    """dipy's ``small_64D`` diffusion-weighted set, read from the files dipy ships.

    Returns
    -------
    Volume (10, 10, 10, 65) float32, 2 mm voxels, oblique affine; ``meta["bvals"]`` (65,)
    in s/mm^2 (one b = 0, then 64 at ~987-1003) and ``meta["bvecs"]`` (65, 3) unit vectors
    as shipped (the b = 0 row, NaN in the file, set to 0).
    """
    data, affine, bvals, bvecs, path = _load_small_64d(*_small_64d_files())
    return _volume(
        data,
        affine,
        "dipy_small_64d",
        _provenance("dipy", Path(path)) + " with .bval/.bvec",
        bvals=bvals.copy(),
        bvecs=bvecs.copy(),
    )


def dipy_s0_10slices() -> Volume:
    """dipy's ``S0_10slices``: a real b = 0 image, read from the file dipy ships.

    Returns
    -------
    Volume (128, 128, 10, 1) float32 (2 mm in-plane), ``meta["bvals"]`` = [0] and
    ``meta["bvecs"]`` = [[0, 0, 0]]: a one-volume DWI series.
    """
    path = _package_file("dipy", "data/files/S0_10slices.nii.gz", "dipy_s0_10slices")
    data, affine = _load_nifti(str(path))
    data = data if data.ndim == 4 else data[..., None]
    return _volume(
        data,
        affine,
        "dipy_s0_10slices",
        _provenance("dipy", path),
        bvals=np.zeros(1),
        bvecs=np.zeros((1, 3)),
    )


_SAMPLES: dict[str, tuple[Callable[..., Any], str]] = {
    "mni_t1": (mni_t1, "MNI152 2009a T1 template, 197x233x189, 1 mm, skull-stripped (nilearn)"),
    "mni_tissue": (mni_tissue, "MNI152 2009a GM/WM probability maps and derived CSF (nilearn)"),
    "mni_brain_mask": (mni_brain_mask, "MNI152 2009a brain mask: filled T1 > 0 (nilearn)"),
    "asldro_ground_truth": (
        asldro_ground_truth,
        "ASL ground-truth brain: CBF, ATT, T1, T2, T2*, M0, GM/WM/CSF labels (asldro)",
    ),
    "dipy_small_64d": (dipy_small_64d, "DWI 10x10x10x65, b=0 + 64 directions at b~1000 (dipy)"),
    "dipy_s0_10slices": (dipy_s0_10slices, "real b=0 image 128x128x10, 2 mm in-plane (dipy)"),
}


def list_samples() -> dict[str, str]:
    """Sample name -> one-line description."""
    return {name: description for name, (_, description) in _SAMPLES.items()}


def load_sample(name: str, **kwargs: Any) -> Volume | dict[str, Volume]:
    """Load a sample by name (see :func:`list_samples`); ``kwargs`` go to its loader."""
    if name not in _SAMPLES:
        raise InputError(f"unknown sample {name!r}; available: {', '.join(_SAMPLES)}")
    return _SAMPLES[name][0](**kwargs)


def clear_cache() -> None:
    """Free the cached sample arrays."""
    for cached in (_load_nifti, _mni_mask_array, _load_asldro, _load_small_64d):
        cached.cache_clear()
