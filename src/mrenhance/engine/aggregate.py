"""Put tile predictions back into ONE preallocated output: :class:`Aggregator`.

The output grid is ``scale`` times the input grid along each axis: a tile whose kept
region starts at input voxel ``c`` writes from output voxel ``c * scale``. The number of
output channels is the network's, whatever the input had (T frames of a 4D series in, one
map out; one image in, C maps out); it is read from the first prediction unless given.

Modes:

- ``"crop"``: each output voxel is written once, by the tile that owns it
  (:attr:`mrenhance.engine.grid.AxisTiles.crop`); no weight volume.
- ``"average"``: the mean of every tile prediction covering a voxel.
- ``"gaussian"``: a mean weighted by a separable Gaussian over the tile
  (:func:`gaussian_weights`, sigma = tile / 8 as MONAI), which down-weights tile borders.

For the two blends one float32 weight-sum volume is kept on the *input* grid: a tile's
weight is defined per input voxel and shared by the ``prod(scale)`` output voxels it turns
into, so dividing by the weight sum repeated over each block is exact and costs
``1 / prod(scale)`` of the output's memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrenhance.engine.grid import BLEND_MODES, Tile
from mrenhance.errors import InputError

__all__ = ["Aggregator", "gaussian_weights"]

# choice: floor of the Gaussian weights relative to their peak, so a voxel covered only by
# tile corners (volume corners) never divides by an underflowed zero.
_GAUSSIAN_FLOOR = 1e-6


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """Separable Gaussian importance map of shape ``patch_size``, peak 1, floored above 0.

    sigma = ``sigma_scale`` * patch size along each axis (MONAI's default 1/8), centred on
    the patch centre ((p - 1) / 2, symmetric for even sizes).
    """
    weights = np.ones((), dtype=np.float64)
    for p in patch_size:
        centre = (p - 1) / 2.0
        sigma = max(sigma_scale * p, 1e-6)
        g = np.exp(-0.5 * ((np.arange(p) - centre) / sigma) ** 2)
        weights = np.multiply.outer(weights, g)
    weights /= weights.max()
    return np.maximum(weights, _GAUSSIAN_FLOOR).astype(np.float32)


class Aggregator:
    """Accumulates tile predictions into one float32 output of ``shape * scale``.

    Parameters
    ----------
    shape:
        Spatial shape of the *input* grid (x, y, z).
    tile_shape:
        Tile size on the input grid (x, y, z) (1 along the slice axis of a 2D plan); sets
        the Gaussian weights.
    mode:
        ``"crop"``, ``"average"`` or ``"gaussian"``.
    scale:
        Output voxels per input voxel along each axis.
    channels:
        Output channels; ``None``: read from the first prediction.

    Use :meth:`add` once per tile, then :meth:`result`: (X, Y, Z) float32 for one output
    channel, else (X, Y, Z, C) channels last, with X = x * scale_x etc.
    """

    def __init__(
        self,
        shape: Sequence[int],
        tile_shape: Sequence[int],
        *,
        mode: str = "crop",
        scale: Sequence[int] = (1, 1, 1),
        channels: int | None = None,
    ) -> None:
        if mode not in BLEND_MODES:
            raise InputError(f"Aggregator: unknown mode {mode!r}; use one of {BLEND_MODES}")
        self.shape = tuple(int(n) for n in shape)
        self.tile_shape = tuple(int(p) for p in tile_shape)
        self.scale = tuple(int(s) for s in scale)
        if not len(self.shape) == len(self.tile_shape) == len(self.scale) == 3:
            raise InputError("Aggregator: shape, tile_shape and scale need 3 axes each")
        self.mode = mode
        self.out_shape = tuple(n * s for n, s in zip(self.shape, self.scale, strict=True))
        self._data: np.ndarray | None = None
        self._weight_sum: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        if mode == "gaussian":
            self._weights = gaussian_weights(self.tile_shape)
        elif mode == "average":
            self._weights = np.ones(self.tile_shape, dtype=np.float32)
        self.channels: int | None = None
        if channels is not None:
            self._allocate(int(channels))

    def _allocate(self, channels: int) -> None:
        self.channels = channels
        shape = self.out_shape if channels == 1 else (*self.out_shape, channels)
        if self.mode == "crop":
            self._data = np.empty(shape, dtype=np.float32)
        else:
            self._data = np.zeros(shape, dtype=np.float32)
            self._weight_sum = np.zeros(self.shape, dtype=np.float32)

    def add(self, tile: Tile, prediction: np.ndarray) -> None:
        """Write one tile's prediction.

        Parameters
        ----------
        tile:
            Where it goes (:meth:`mrenhance.engine.grid.GridLayout.tiles`).
        prediction:
            (C, px * sx, py * sy, pz * sz) float array: the network's output for the tile.
        """
        expected = tuple(p * s for p, s in zip(self.tile_shape, self.scale, strict=True))
        if prediction.ndim != 4 or tuple(prediction.shape[1:]) != expected:
            raise InputError(
                f"Aggregator: a tile prediction must be (C, {', '.join(map(str, expected))}), "
                f"got {tuple(prediction.shape)}"
            )
        if self._data is None:
            self._allocate(prediction.shape[0])
        if prediction.shape[0] != self.channels:
            raise InputError(
                f"Aggregator: {prediction.shape[0]} channels after {self.channels} before"
            )
        assert self._data is not None
        out_index = tuple(
            slice(lo * s, hi * s) for (lo, hi), s in zip(tile.out, self.scale, strict=True)
        )
        local = tuple(
            slice(lo * s, hi * s) for (lo, hi), s in zip(tile.local, self.scale, strict=True)
        )
        values = np.moveaxis(prediction[(slice(None), *local)], 0, -1)  # channels last
        target = self._data[..., None] if self._data.ndim == 3 else self._data
        if self._weights is None:
            target[out_index] = values
            return
        w = self._weights[tuple(slice(lo, hi) for lo, hi in tile.local)]
        self._weight_sum[tuple(slice(lo, hi) for lo, hi in tile.out)] += w  # type: ignore[index]
        for axis, s in enumerate(self.scale):
            if s > 1:
                w = np.repeat(w, s, axis=axis)
        target[out_index] += values * w[..., None]

    def result(self) -> np.ndarray:
        """The output: (X, Y, Z) for one channel, else (X, Y, Z, C); float32.

        For the blends the weighted sums are divided in place by the weight sum; call once.
        """
        if self._data is None:
            raise InputError("Aggregator: no tile was added")
        if self._weight_sum is not None:
            (x, y, z), (sx, sy, sz) = self.shape, self.scale
            blocks = self._data.view()
            blocks.shape = (x, sx, y, sy, z, sz, -1)  # a view: raises rather than copy
            blocks /= self._weight_sum[:, None, :, None, :, None, None]
            self._weight_sum = None
        return self._data

    @property
    def weight_sum(self) -> np.ndarray | None:
        """The (x, y, z) sum of tile weights so far (blends only; ``None`` for crop)."""
        return self._weight_sum
