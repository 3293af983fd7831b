"""mrenhance: deep-learning enhancement of MR images.

Public API::

    import mrenhance
    vol = mrenhance.load("t1.nii.gz")              # -> Volume
    out = mrenhance.enhance(vol, "mdcsrn-b4u4")    # -> Volume on the same grid
    mrenhance.save(out, "t1_sr.nii.gz")
    mrenhance.list_models()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mrenhance.errors import InputError, MrenhanceError
from mrenhance.volume import Volume

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "MrenhanceError",
    "Volume",
    "__version__",
    "enhance",
    "list_models",
    "load",
    "save",
]

if TYPE_CHECKING:  # pragma: no cover
    import os


def load(path: str | os.PathLike, **kwargs: Any) -> Volume:
    """Load a NIfTI file or a DICOM series folder as a :class:`Volume` (see :mod:`mrenhance.io`)."""
    from mrenhance.io import load as _load

    return _load(path, **kwargs)


def save(volume: Volume, path: str | os.PathLike, **kwargs: Any) -> None:
    """Save a :class:`Volume` as NIfTI atomically, keeping its geometry (:mod:`mrenhance.io`)."""
    from mrenhance.io import save as _save

    _save(volume, path, **kwargs)


def list_models() -> list[Any]:
    """The registered models (see :func:`mrenhance.models.list_models`)."""
    from mrenhance.models import list_models as _list

    return _list()


def enhance(volume: Any, model: str, **kwargs: Any) -> Any:
    """Apply a model to a Volume, a path, a numpy array (+ ``affine=``) or a torch tensor;
    returns the same kind (see :func:`mrenhance.enhance_api.enhance`)."""
    from mrenhance.enhance_api import enhance as _enhance

    return _enhance(volume, model, **kwargs)
