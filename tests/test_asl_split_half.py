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
    assert T.split_half_weight(signal, a, signal, b, mask) > 0.95  # an oracle denoiser
    # erases the contrast (energy 400 per voxel) of a mean with noise 25 / 2: w ~ 12.5 / 412.5
    _, a5, b5 = _halves(rng, noise=5.0)
    flat = np.full(a.shape, signal.mean())
    assert T.split_half_weight(flat, a5, flat, b5, mask) < 0.08
    assert T.split_half_weight(a, a, b, b, mask) < 0.1  # the identity: nothing to gain
    assert T.split_half_weight(a, a, a, a, mask) == 1.0  # identical halves: no noise seen


@pytest.mark.parametrize("noise", [3.0, 10.0, 30.0])
def test_the_weighted_mean_is_near_the_better_of_network_and_mean(noise):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    signal, a, b = _halves(rng, shape=(64, 64, 4), noise=noise)
    mask = np.ones(a.shape, bool)

    def net(x):  # a linear smoother: good at high noise, harmful at low noise
        return gaussian_filter(x, (2.0, 2.0, 0.0))

    w = T.split_half_weight(net(a), a, net(b), b, mask)
    mean = 0.5 * (a + b)

    def mse(x):
        return float(((x - signal) ** 2).mean())

    blended = mse(w * net(mean) + (1 - w) * mean)
    assert blended <= 1.05 * min(mse(mean), mse(net(mean)))
    if noise >= 30:
        assert w > 0.7
    if noise <= 3:
        assert w < 0.3


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


def test_card_quotes_the_committed_split_half_benchmark():
    import json
    import re
    from pathlib import Path

    from mrenhance.models.weights import read_card, resolve_weights

    root = Path(__file__).resolve().parents[1]
    payload = json.loads((root / "benchmarks/results/asl_split_half.json").read_text())
    card = read_card(resolve_weights("dwan-asl-lfn"))
    label = next(k for k, v in payload["provenance"]["sha256"].items() if v == card.sha256)
    rows = {r["method"]: r for r in payload["rows"]}
    (text,) = [t for t in card.limitations if t.startswith("Independent data")]
    (cost,) = re.findall(r"the weight costs ([0-9.]+) dB against the truth", text)
    measured = rows[f"{label} (raw network)"]["psnr_truth"] - rows[label]["psnr_truth"]
    assert float(cost) == pytest.approx(measured, abs=0.05)


def test_after_adaptation_on_the_same_pairs_the_weight_is_marked_optimistic():
    from mrenhance.enhance_api import enhance

    series, _ = _series(n_pairs=8, seed=2)
    out = enhance(series, "dwan-asl-lfn", adapt_steps=2)
    info = out.meta["consistency"]
    assert info["mode"] == "split-half" and "optimistic" in info["note"]
    plain = enhance(series, "dwan-asl-lfn")
    assert "note" not in plain.meta["consistency"]


def test_enhance_cli_prints_the_split_half_weight(tmp_path, capsys):
    from mrenhance.cli import main
    from mrenhance.io import save

    series, _ = _series(n_pairs=6, seed=3)
    src = tmp_path / "pairs.nii.gz"
    save(series, src)
    capsys.readouterr()
    rc = main(["enhance", str(src), "-o", str(tmp_path / "out.nii.gz"), "--model",
               "dwan-asl-lfn", "--asl-order", "cbf"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "split-half weight" in out and "6-pair mean" in out
