"""Smooth random fields on axis-aligned grids: cubic B-splines evaluated separably.

A field is a set of B-spline coefficients on a coarse lattice in world millimetres
(:class:`Lattice`). Evaluating it on an axis-aligned grid of voxel centres is a product of
three small basis matrices, one per axis (``field = C x1 Bx x2 By x3 Bz``), which costs a few
matrix products instead of a 64-tap interpolation per voxel. The value at a point depends
only on the coefficients and the point, so a patch evaluated alone equals the same crop of
the whole grid: this is what lets :mod:`mrenhance.simulate.subjects` draw patches without
building whole subjects.

Used for elastic displacements, sub-tissue texture, bias fields and skull thickness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Var of a cubic B-spline sum with iid N(0, 1) coefficients, averaged over a knot interval:
# int_0^1 sum_k B3(t - k)^2 dt = B7(0) = 151/315 per axis.
_BSPLINE_MEAN_VARIANCE_1D = 151.0 / 315.0


@dataclass(frozen=True)
class Lattice:
    """A cubic B-spline control lattice covering a world box.

    ``origin_mm`` is the world position of the *second* control point along each axis
    (index 1), so a point at ``origin_mm + t * spacing_mm`` with ``0 <= t <= shape - 3`` has
    all four of its supporting control points inside the lattice.
    """

    origin_mm: tuple[float, float, float]
    spacing_mm: float
    shape: tuple[int, int, int]

    @classmethod
    def covering(cls, lo_mm: Sequence[float], hi_mm: Sequence[float], spacing_mm: float):
        """The lattice with knots every ``spacing_mm`` whose support covers [lo, hi] per axis."""
        lo = np.asarray(lo_mm, dtype=np.float64)
        hi = np.asarray(hi_mm, dtype=np.float64)
        n = np.ceil((hi - lo) / spacing_mm).astype(int) + 4  # 1 below, 2 above, + endpoint
        return cls(tuple(float(v) for v in lo), float(spacing_mm), tuple(int(v) for v in n))


def bspline_basis(positions: np.ndarray, n_ctrl: int) -> np.ndarray:
    """Cubic B-spline weights of control points at lattice positions.

    Parameters
    ----------
    positions:
        (n,) positions in lattice units (control point ``k`` sits at ``k - 1``).
        Positions are clipped to the lattice's support ``[0, n_ctrl - 3]``: beyond it the
        field is held at its edge value (points outside the box a lattice was built for).
    n_ctrl:
        Number of control points along the axis.

    Returns
    -------
    (n, n_ctrl) float64; each row has 4 non-zero weights summing to 1.
    """
    t = np.clip(np.asarray(positions, dtype=np.float64), 0.0, n_ctrl - 3.0)
    base = np.minimum(np.floor(t), n_ctrl - 4).astype(int)  # knot interval
    u = t - base
    weights = np.stack(
        [
            (1 - u) ** 3 / 6,
            (3 * u**3 - 6 * u**2 + 4) / 6,
            (-3 * u**3 + 3 * u**2 + 3 * u + 1) / 6,
            u**3 / 6,
        ],
        axis=1,
    )
    basis = np.zeros((t.size, n_ctrl), dtype=np.float64)
    rows = np.arange(t.size)[:, None]
    basis[rows, base[:, None] + np.arange(4)] = weights
    return basis


def evaluate_field(
    coefficients: np.ndarray, lattice: Lattice, axes_mm: Sequence[np.ndarray]
) -> np.ndarray:
    """Evaluate B-spline coefficients on the grid spanned by three coordinate vectors.

    Parameters
    ----------
    coefficients:
        (..., cx, cy, cz) coefficients, ``lattice.shape`` in the last three axes; leading axes
        are components (e.g. 3 for a displacement field).
    lattice:
        Where the coefficients sit.
    axes_mm:
        Three (n_x,), (n_y,), (n_z,) world coordinates (mm) of the grid's voxel centres.

    Returns
    -------
    (..., n_x, n_y, n_z) float32.
    """
    coefficients = np.asarray(coefficients)
    if coefficients.shape[-3:] != lattice.shape:
        raise ValueError(f"coefficients {coefficients.shape} do not end in {lattice.shape}")
    bases, window = [], [slice(None)] * (coefficients.ndim - 3)
    for axis, coords in enumerate(axes_mm):
        pos = (np.asarray(coords, dtype=np.float64) - lattice.origin_mm[axis]) / lattice.spacing_mm
        basis = bspline_basis(pos, lattice.shape[axis])
        # only the control points that touch these coordinates (a patch needs a few)
        used = np.flatnonzero(basis.any(axis=0))
        lo, hi = int(used[0]), int(used[-1]) + 1
        bases.append(basis[:, lo:hi].astype(np.float32))
        window.append(slice(lo, hi))
    out = coefficients[tuple(window)].astype(np.float32)
    for axis, basis in enumerate(bases):
        # contract the lattice axis with the basis, keeping the axis order
        moved = np.tensordot(out, basis, axes=([out.ndim - 3 + axis], [1]))
        out = np.moveaxis(moved, -1, -3 + axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def random_coefficients(
    rng: np.random.Generator, lattice: Lattice, n_components: int | None = None
) -> np.ndarray:
    """iid normal coefficients scaled so the field has unit standard deviation on average.

    Parameters
    ----------
    rng:
        The only source of randomness.
    lattice:
        The lattice to draw for.
    n_components:
        None for a scalar field (coefficients ``lattice.shape``), else
        ``(n_components, *lattice.shape)``.

    Returns
    -------
    float32 coefficients; the evaluated field's per-voxel standard deviation over draws is
    1 on average over a knot cell (between about 0.94 and 1.07 with the position).
    """
    shape = lattice.shape if n_components is None else (n_components, *lattice.shape)
    # field variance = coefficient variance * (per-axis mean variance)^3
    scale = _BSPLINE_MEAN_VARIANCE_1D**-1.5
    return (rng.standard_normal(shape) * scale).astype(np.float32)
