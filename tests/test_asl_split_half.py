"""ASL ``enhance`` judges its network on the series' own repeats (split-half weight)."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.enhance_api import Enhancer
from mrenhance.tasks import asl as T
from mrenhance.volume import Volume

#: a 2 mm grid: the training pixel size, so prepare / restore do not resample
AFFINE = np.diag([2.0, 2.0, 6.0, 1.0])


def _halves(rng, shape=(30, 30, 4), noise=10.0):
    x = np.linspace(-1, 1, shape[0])[:, None, None]
    signal = np.broadcast_to(40 + 20 * np.sign(x), shape).astype(np.float64)
    a = signal + rng.normal(0, noise, shape)
    b = signal + rng.normal(0, noise, shape)
    return signal, a, b


def test_weight_keeps_a_good_network_and_drops_a_harmful_one():
    rng = np.random.default_rng(0)
    signal, a, b = _halves(rng)
    mask = np.ones(a.shape, bool)
    assert T.split_half_weight(signal, a, signal, b, mask) > 0.9  # an oracle denoiser
    # erases the contrast (variance 400) of halves with noise variance 25: w ~ 25 / 425
    _, a5, b5 = _halves(rng, noise=5.0)
    flat = np.full(a.shape, signal.mean())
    assert T.split_half_weight(flat, a5, flat, b5, mask) < 0.1
    assert T.split_half_weight(a, a, b, b, mask) == 1.0  # changes nothing
    half = 0.5 * (signal + a), 0.5 * (signal + b)  # halfway to the truth
    w = T.split_half_weight(half[0], a, half[1], b, mask)
    assert 0.9 < w <= 1.0

    # the weight minimises the cross-prediction error
    def err(v):
        return ((v * half[0] + (1 - v) * a - b) ** 2).sum() + (
            (v * half[1] + (1 - v) * b - a) ** 2
        ).sum()

    assert err(w) <= min(err(max(w - 0.05, 0)), err(min(w + 0.05, 1))) + 1e-6


def _series(n_pairs=8, seed=0):
    rng = np.random.default_rng(seed)
    shape = (48, 56, 5)
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    r = np.hypot((x - 24) / 20, (y - 28) / 24)
    cbf = np.select([r < 0.5, r < 1.0], [22.0, 60.0], 0.0)[..., None].repeat(shape[2], -1)
    pairs = cbf[..., None] + rng.normal(0, 25, (*shape, n_pairs)) * (cbf[..., None] > 0)
    return Volume(pairs.astype(np.float32), AFFINE, {"source": "pairs", "asl_order": "cbf"}), cbf


@pytest.fixture(scope="module")
def shipped():
    return Enhancer.from_weights("dwan-asl-lfn")


def test_enhance_of_a_series_blends_network_and_mean_by_the_split_half_weight(shipped):
    series, _ = _series()
    auto = shipped(series)
    info = auto.meta["consistency"]
    assert info["mode"] == "split-half" and info["pairs"] == 8 and 0 <= info["weight"] <= 1
    off = Enhancer.from_weights("dwan-asl-lfn", consistency="off")(series)
    assert "split-half" not in str(off.meta.get("consistency"))
    mean = series.data.mean(axis=-1)
    w = info["weight"]
    np.testing.assert_allclose(auto.data, w * off.data + (1 - w) * mean, atol=2e-3 * 60)
    assert "consistency=mode:split-half" in auto.meta["provenance"][-1]
    assert series.data.shape == (48, 56, 5, 8)  # the input is untouched


def test_a_3d_map_and_a_short_series_get_the_network_as_is(shipped):
    series, _ = _series(n_pairs=3)
    mean = Volume(series.data.mean(axis=-1), AFFINE, {"source": "mean"})
    out3d = shipped(mean)
    assert out3d.meta["consistency"]["mode"].startswith("none")
    short = shipped(series)
    assert short.meta["consistency"]["mode"] == "off"  # 3 pairs: too few to split
    np.testing.assert_allclose(short.data, out3d.data, atol=1e-4)


def test_a_network_that_erases_contrast_falls_back_towards_the_mean(shipped):
    series, cbf = _series(n_pairs=10, seed=1)

    class Flatten:  # a "network" that outputs a constant: it destroys the data
        def __init__(self, net):
            self.net = net

        def __call__(self, x):
            return x.mean(dim=(-1, -2), keepdim=True).expand_as(x)

        def __getattr__(self, k):
            return getattr(self.net, k)

    bad = shipped.with_model(Flatten(shipped.net))
    out = bad(series)
    assert out.meta["consistency"]["weight"] < 0.3
    mean = series.data.mean(axis=-1)
    brain = cbf > 0
    err_out = np.abs(out.data - cbf)[brain].mean()
    raw = Enhancer.from_weights("dwan-asl-lfn", consistency="off").with_model(Flatten(shipped.net))
    err_raw = np.abs(raw(series).data - cbf)[brain].mean()
    assert err_out < 0.6 * err_raw
    assert err_out < 1.1 * np.abs(mean - cbf)[brain].mean()
