"""The :class:`Volume`: the one currency between loading, simulation, models and saving."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import InputError


def voxel_sizes(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the column norms of the affine's 3x3 part."""
    a = np.asarray(affine, dtype=np.float64)
    return tuple(float(v) for v in np.sqrt((a[:3, :3] ** 2).sum(axis=0)))


def orientation_code(affine: np.ndarray) -> str:
    """Three-letter orientation code (e.g. ``"RAS"``) of the array axes, via nibabel."""
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(np.asarray(affine, dtype=np.float64)))


#: Meta entries passed on by reference, never copied: the input file's headers (read only).
_SHARED_META = ("nifti_header", "dicom_header")


@dataclass
class Volume:
    """An image with its geometry.

    Attributes
    ----------
    data:
        float32 array of shape (x, y, z) or (x, y, z, t|c), in voxel order as nibabel loads it.
    affine:
        (4, 4) float64 voxel-to-world (RAS+, mm) matrix.
    meta:
        Small metadata dict: ``voxel_size`` (mm), ``source`` (path or sample name),
        ``provenance`` (list of processing steps), and for 4D data ``bvals``/``bvecs`` or
        ``times_s``. ``nifti_header`` (a NIfTI input) and ``dicom_header`` (the first
        header of a DICOM input, pixel data removed) hold what saving keeps or derives from;
        ``stored_dtype`` names the input's on-disk data type (``"int16"``, ...).
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.data.ndim not in (3, 4):
            raise InputError(
                f"{self.meta.get('source', 'volume')}: expected a 3D or 4D image, "
                f"got shape {tuple(self.data.shape)}"
            )
        if self.affine.shape != (4, 4):
            raise InputError(f"affine must be 4x4, got shape {self.affine.shape}")
        self.meta.setdefault("voxel_size", voxel_sizes(self.affine))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return voxel_sizes(self.affine)

    @property
    def orientation(self) -> str:
        return orientation_code(self.affine)

    def with_data(self, data: np.ndarray, step: str | None = None) -> Volume:
        """A new Volume on the same grid holding ``data``; ``step`` is appended to provenance."""
        meta = copy.deepcopy({k: v for k, v in self.meta.items() if k not in _SHARED_META})
        meta.update({k: self.meta[k] for k in _SHARED_META if k in self.meta})
        if step:
            meta["provenance"] = [*meta.get("provenance", []), step]
        return Volume(np.asarray(data, dtype=np.float32), self.affine.copy(), meta)

    def copy(self) -> Volume:
        return self.with_data(self.data.copy())

    def crop(self, box: tuple[slice, ...], step: str | None = None) -> Volume:
        """The sub-volume ``data[box]`` with its affine shifted so world positions are kept.

        ``box`` holds one slice (step 1) per spatial axis.
        """
        starts = np.array([s.start or 0 for s in box[:3]] + [0] * (3 - len(box[:3])), float)
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, :3] @ starts + self.affine[:3, 3]
        out = self.with_data(self.data[box], step=step or f"crop {_box_str(box)}")
        out.affine = affine
        return out


def _box_str(box: tuple[slice, ...]) -> str:
    return "[" + ", ".join(f"{s.start or 0}:{'' if s.stop is None else s.stop}" for s in box) + "]"
