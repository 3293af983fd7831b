"""Aggregator: one preallocated output; crop, average and gaussian; scaled outputs; channels."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.engine.aggregate import Aggregator, gaussian_weights
from mrenhance.engine.grid import GridPlan, Tile
from mrenhance.errors import InputError


def _run(plan: GridPlan, shape, predict) -> Aggregator:
    agg = Aggregator(shape, plan.tile_shape, mode=plan.blend, scale=plan.scale)
    for tile in plan.layout(shape).tiles():
        agg.add(tile, predict(tile))
    return agg


@pytest.mark.parametrize("blend", ["average", "gaussian"])
def test_weight_sum_is_the_sum_of_every_tiles_weights(blend):
    shape = (17, 9, 13)
    plan = GridPlan(patch=(6, 5, 7), overlap=(3, 1, 4), blend=blend)
    w = gaussian_weights(plan.tile_shape) if blend == "gaussian" else np.ones(plan.tile_shape)
    expected = np.zeros(shape)
    for tile in plan.layout(shape).tiles():
        expected[tuple(slice(lo, hi) for lo, hi in tile.out)] += w[
            tuple(slice(lo, hi) for lo, hi in tile.local)
        ]
    agg = _run(plan, shape, lambda t: np.ones((1, *plan.tile_shape), np.float32))
    np.testing.assert_allclose(agg.weight_sum, expected, rtol=1e-6)
    np.testing.assert_allclose(agg.result(), 1.0, rtol=1e-6)  # normalised: a weighted mean


def test_average_is_the_mean_of_the_covering_tiles():
    shape, plan = (10, 1, 1), GridPlan(patch=(6, 1, 1), overlap=(2, 0, 0), blend="average")
    # tiles at x = 0 and 4 predict their own index: voxels 4, 5 are covered by both
    values = iter([0.0, 1.0])
    agg = _run(plan, shape, lambda t: np.full((1, 6, 1, 1), next(values), np.float32))
    np.testing.assert_allclose(agg.result()[:, 0, 0], [0, 0, 0, 0, 0.5, 0.5, 1, 1, 1, 1])


def test_a_tile_at_input_corner_c_writes_output_corner_c_times_scale():
    agg = Aggregator((8, 6, 4), (2, 3, 4), mode="crop", scale=(4, 2, 1), channels=3)
    tile = Tile(start=(5, 3, 0), out=((5, 7), (3, 6), (0, 4)), local=((0, 2), (0, 3), (0, 4)))
    pred = np.arange(3 * 8 * 6 * 4, dtype=np.float32).reshape(3, 8, 6, 4)
    agg.add(tile, pred)
    out = agg.result()
    assert out.shape == (32, 12, 4, 3)
    np.testing.assert_array_equal(out[20:28, 6:12, 0:4], np.moveaxis(pred, 0, -1))


def test_crop_keeps_only_the_tiles_own_region_and_channels_can_change():
    shape = (12, 7, 5)
    plan = GridPlan(patch=(6, 7, 5), overlap=(2, 0, 0), scale=(2, 1, 1))
    x = np.arange(24, dtype=np.float32)  # output x coordinate

    def predict(tile):  # 8 frames in would not matter: 2 maps out, both the x coordinate
        lo = tile.start[0] * 2
        return np.broadcast_to(x[lo : lo + 12, None, None], (2, 12, 7, 5)).copy()

    out = _run(plan, shape, predict).result()
    assert out.shape == (24, 7, 5, 2)
    np.testing.assert_array_equal(out[:, 0, 0, 1], x)


def test_bad_predictions_are_input_errors():
    agg = Aggregator((4, 4, 4), (4, 4, 4))
    tile = Tile((0, 0, 0), ((0, 4),) * 3, ((0, 4),) * 3)
    with pytest.raises(InputError, match=r"\(C, 4, 4, 4\)"):
        agg.add(tile, np.zeros((1, 4, 4, 2), np.float32))
    agg.add(tile, np.zeros((1, 4, 4, 4), np.float32))
    with pytest.raises(InputError, match="channels"):
        agg.add(tile, np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(InputError, match="no tile"):
        Aggregator((4, 4, 4), (4, 4, 4)).result()
    with pytest.raises(InputError, match="mode"):
        Aggregator((4, 4, 4), (4, 4, 4), mode="max")
