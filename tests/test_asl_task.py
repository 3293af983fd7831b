"""The ASL task: training pairs, prepare/restore on any grid, 4D series, metrics, BIDS, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrenhance.errors import ConfigError, InputError
from mrenhance.simulate import asl as A
from mrenhance.tasks import asl as T
from mrenhance.tasks import get_task
from mrenhance.volume import Volume

TASK = get_task("asl")


def _case(rng: np.random.Generator, name: str = "c") -> T.AslCase:
    """A fabricated case: a GM disc with WM inside, noisy segments around the truth."""
    nx, ny, nz = 91, 109, len(T.STORED_SLICES)
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    r = np.hypot(x - 45, y - 54)
    gm2 = ((r < 35) & (r > 22)).astype(np.float32)
    wm2 = (r <= 22).astype(np.float32)
    gm = np.repeat(gm2[..., None], nz, axis=2)
    wm = np.repeat(wm2[..., None], nz, axis=2)
    truth = ((60 * gm + 22 * wm) * (1 + 0.05 * np.sin(x / 7.0))[..., None]).astype(np.float32)
    segments = truth[None] + rng.normal(0, 15, (4, nx, ny, nz)).astype(np.float32)
    return T.AslCase(
        name=name,
        segments=segments,
        pseudo_gold=truth + rng.normal(0, 4, truth.shape).astype(np.float32),
        truth=truth,
        gm=gm,
        wm=wm,
        brain=(gm + wm) > 0,
        territory=np.zeros_like(gm, dtype=bool),
        affine=np.diag([2.0, 2.0, 2.0, 1.0]),
    )


def test_data_config_refuses_a_bad_target():
    with pytest.raises(ConfigError, match="data.target"):
        TASK.data_config({"target": "clean"}, "r.yaml")


def test_lfn_samples_pair_two_noisy_segments_and_asldn_the_pseudo_gold():
    rng = np.random.default_rng(0)
    case = _case(rng)
    lfn = T.AslSliceDataset([case], (32, 32), target="lfn", flip=False, seed=3)
    item = lfn[5]
    assert item["inputs"].shape == (1, 32, 32) and item["target"].shape == (1, 32, 32)
    assert np.array_equal(lfn[5]["inputs"], item["inputs"])  # deterministic in i
    # every LFN target is one of the case's noisy segments, never the pseudo gold
    found = set()
    for i in range(40):
        it = lfn[i]
        t = it["target"][0] * T.CBF_SCALE
        hits = [
            k
            for k in range(4)
            if np.isclose(case.segments[k], 0).size and _contains(case.segments[k], t)
        ]
        assert len(hits) == 1
        found.add(hits[0])
        assert not _contains(case.segments[hits[0]], it["inputs"][0] * T.CBF_SCALE)
    assert found == {0, 1, 2, 3}  # re-drawn among 1->2, 3->4 and reverses
    asldn = T.AslSliceDataset([case], (32, 32), target="asldn", flip=False, seed=3)
    assert _contains(case.pseudo_gold, asldn[0]["target"][0] * T.CBF_SCALE)


def _contains(volume: np.ndarray, patch: np.ndarray) -> bool:
    a, b = patch.shape
    for z in range(volume.shape[2]):
        sl = volume[:, :, z]
        hit = np.argwhere(np.isclose(sl, patch[0, 0], atol=1e-3))
        for cx, cy in hit:
            if cx + a <= sl.shape[0] and cy + b <= sl.shape[1]:
                if np.allclose(sl[cx : cx + a, cy : cy + b], patch, atol=1e-3):
                    return True
    return False


def test_prepare_resamples_to_2mm_ras_and_restore_gives_the_input_grid():
    x, y, _ = np.meshgrid(np.linspace(0, 3, 100), np.linspace(0, 3, 80), range(12), indexing="ij")
    cbf = (60 + 40 * np.sin(x) * np.cos(y)).astype(np.float32)
    cbf[40:56, 30:46, 3] = 250.0  # high CBF (a hyperperfused region) must not be clipped
    affine = np.array([[0, -1.5, 0, 10], [-1.0, 0, 0, 20], [0, 0, 4, 0], [0, 0, 0, 1]])
    vol = Volume(cbf, affine, {"source": "lps.nii.gz"})
    array, ctx = TASK.prepare(vol, None)
    assert array.shape == (60, 50, 12)  # R: 80 x 1.5 mm, A: 100 x 1 mm at 2 mm pixels
    assert array.max() * T.CBF_SCALE == pytest.approx(250.0, rel=0.01)  # divided, not clipped
    out = TASK.restore(array, ctx, vol)
    assert out.shape == cbf.shape and np.array_equal(out.affine, affine)
    smooth = np.ones_like(cbf, bool)
    smooth[36:60, 26:50, 3] = False  # away from the block's edges
    assert np.abs(out.data - cbf)[smooth].max() < 3.0
    assert out.data[44:52, 34:42, 3].min() == pytest.approx(250.0, rel=0.01)


def test_a_4d_series_of_per_pair_cbf_is_averaged():
    rng = np.random.default_rng(2)
    series = rng.normal(50, 10, (40, 40, 4, 6)).astype(np.float32)
    vol = Volume(series, np.diag([2.0, 2.0, 5.0, 1.0]), {"source": "pairs.nii.gz"})
    array, ctx = TASK.prepare(vol, None)
    assert np.allclose(array * T.CBF_SCALE, series.mean(-1), atol=1e-3)
    assert TASK.restore(array, ctx, vol).shape == (40, 40, 4)


def _label_control(rng, order=("control", "label"), n=6, cbf=60.0):
    p = A.AslProtocol(matrix=(40, 40, 4))
    m0 = np.full((40, 40, 4), 1000.0, np.float32)
    dm = A.difference_from_cbf(np.full_like(m0, cbf), m0, p, 1.5)
    frames = []
    for _ in range(n):
        c = m0 + rng.normal(0, 0.5, m0.shape)
        lab = m0 - dm + rng.normal(0, 0.5, m0.shape)
        frames += [c, lab] if order[0] == "control" else [lab, c]
    return np.stack(frames, -1).astype(np.float32)


def test_label_control_series_with_a_context_or_an_order_are_quantified():
    rng = np.random.default_rng(3)
    data = _label_control(rng)
    sidecar = {"PostLabelingDelay": 1.5, "LabelingDuration": 1.5}
    vol = Volume(data, np.diag([3.0, 3.0, 5.0, 1.0]), {"asl": sidecar})
    vol.meta["aslcontext"] = ["control", "label"] * 6
    assert np.median(TASK.cbf_map(vol)) == pytest.approx(60.0, rel=0.05)
    swapped = Volume(_label_control(rng, ("label", "control")), vol.affine, {"asl": sidecar})
    swapped.meta["asl_order"] = "label,control"
    assert np.median(TASK.cbf_map(swapped)) == pytest.approx(60.0, rel=0.05)
    swapped.meta["asl_order"] = "label,control,label"
    with pytest.raises(InputError, match="asl-order"):
        TASK.check_input(swapped)


def test_adaptation_pairs_split_the_repeats_into_disjoint_halves():
    from mrenhance.engine.adapt import AdaptationPairs

    rng = np.random.default_rng(4)
    vol = Volume(_label_control(rng, n=8), np.diag([2.0, 2.0, 5.0, 1.0]), {})
    vol.meta["aslcontext"] = ["control", "label"] * 8
    pairs = TASK.adaptation_pairs(vol, None, np.random.default_rng(0), n_splits=3)
    assert isinstance(pairs, AdaptationPairs) and pairs.loss == "l1"
    assert len(pairs.inputs) == len(pairs.targets) == len(pairs.masks) == 6  # + reverses
    prepared, _ = TASK.prepare(vol, None)
    for k, split in enumerate(pairs.info["splits"]):
        assert not set(split["input_pairs"]) & set(split["target_pairs"])
        assert len(split["input_pairs"]) == len(split["target_pairs"]) == 4
        x, y = pairs.inputs[k], pairs.targets[k]
        assert x.shape == y.shape == pairs.masks[k].shape == prepared.shape
        # the two halves average to the whole series' mean CBF: the inference input
        assert np.allclose((x + y) / 2, prepared, atol=1e-4)
        assert pairs.inputs[3 + k] is y and pairs.targets[3 + k] is x
    with pytest.raises(InputError, match="4D"):
        TASK.adaptation_pairs(Volume(prepared, np.diag([2.0, 2.0, 5.0, 1.0])), None)
    # the training augmentation: flips and blobs, one transform on input and target
    x = np.full((1, 48, 48), 0.5, np.float32)
    gains = []
    for seed in range(12):
        xa, ya = pairs.augment(x, 2 * x, np.random.default_rng(seed))
        np.testing.assert_allclose(ya, 2 * xa, rtol=1e-6)
        gains.append(float(xa.max() / 0.5))
    assert max(gains) > 1.5  # a hot blob in some patches


def test_adaptation_patches_centre_in_the_brain_despite_an_outlier_pair():
    rng = np.random.default_rng(5)
    series = np.zeros((48, 48, 4, 6), np.float32)
    series[8:40, 8:40] = rng.normal(60, 10, (32, 32, 4, 6))
    series[:, :20, 1, 2] = 3000.0  # a motion spike in one slice of pair 3, off the brain
    vol = Volume(series, np.diag([2.0, 2.0, 5.0, 1.0]), {"asl_order": "cbf"})
    mask = TASK.adaptation_pairs(vol, None, np.random.default_rng(0)).masks[0]
    brain = np.zeros(mask.shape, bool)
    brain[8:40, 8:40] = True
    assert mask[brain].mean() > 0.9 and not mask[~brain].any()


def _tiny_dwan_weights(path):
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights

    torch.manual_seed(0)
    model = create_model("dwan", channels=4, wide=8)
    card = {
        "task": "asl",
        "preprocessing": TASK.preprocessing({}, []),
        "inference": dict(T.INFERENCE),
    }
    return save_weights(model, path, card)


def test_enhance_cli_adapt_on_a_label_control_series(tmp_path):
    import hashlib

    from mrenhance.cli import main
    from mrenhance.io import load, save

    weights = _tiny_dwan_weights(tmp_path / "tiny-dwan.safetensors")
    series = Volume(_label_control(np.random.default_rng(10), n=6), np.diag([3.0, 3.0, 5.0, 1.0]))
    src = tmp_path / "series.nii.gz"
    save(series, src)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    base = ["enhance", str(src), "--model", str(weights), "--asl-order", "control,label", "-q"]

    def run(name, *extra):
        out = tmp_path / f"{name}.nii.gz"
        summary = tmp_path / f"{name}.json"
        assert main([*base, "-o", str(out), "--summary", str(summary), *extra]) == 0
        return load(out), json.loads(summary.read_text())["results"][0]

    plain, _ = run("plain")
    adapted, row = run("adapted", "--adapt-steps", "4")
    zero, _ = run("zero", "--adapt", "--adapt-steps", "0")
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert adapted.shape == plain.shape == (40, 40, 4)
    np.testing.assert_allclose(adapted.affine, series.affine)
    assert np.abs(adapted.data - plain.data).max() > 1e-3  # the tuned copy ran
    np.testing.assert_array_equal(zero.data, plain.data)
    info = row["adaptation"]
    assert info["steps"] == 4 and info["n_pairs"] == 6 and info["pairs_per_half"] == 3
    assert info["patch_size"] == [48, 48]  # 2D patches of the 2 mm slices (60 x 60)


def test_enhance_api_adapt_leaves_the_network_and_the_input_untouched(tmp_path):
    import torch

    from mrenhance.engine.adapt import adapt_enhancer
    from mrenhance.enhance_api import Enhancer, enhance

    enhancer = Enhancer.from_weights(_tiny_dwan_weights(tmp_path / "tiny.safetensors"))
    weights = {k: v.clone() for k, v in enhancer.model.state_dict().items()}
    rng = np.random.default_rng(11)
    series = Volume(rng.normal(50, 10, (40, 40, 4, 6)).astype(np.float32),
                    np.diag([3.0, 3.0, 5.0, 1.0]), {"source": "pairs.nii.gz"})  # fmt: skip
    data = series.data.copy()
    plain = enhance(series, enhancer)
    adapted = enhance(series, enhancer, adapt_steps=3, adapt_seed=1)
    assert adapted.meta["adaptation"]["steps"] == 3
    assert "adapted(steps=3" in adapted.meta["provenance"][-1]
    assert np.abs(adapted.data - plain.data).max() > 1e-3
    again = enhance(series, enhancer, adapt_steps=3, adapt_seed=1)
    np.testing.assert_array_equal(again.data, adapted.data)  # seeded: reproducible
    zero = adapt_enhancer(enhancer, series, steps=0)(series)
    np.testing.assert_array_equal(zero.data, plain.data)
    np.testing.assert_array_equal(series.data, data)
    for k, v in enhancer.model.state_dict().items():
        assert torch.equal(v, weights[k]), k


def test_metrics_rank_the_truth_above_the_noisy_input():
    rng = np.random.default_rng(5)
    cases = [_case(rng, f"c{i}") for i in range(3)]
    rows = T.evaluate_cases({"input": lambda c: c.input_10, "truth": lambda c: c.truth}, cases)
    by = {r["method"]: r for r in rows}
    assert by["truth"]["psnr_truth"] == float("inf") or by["truth"]["psnr_truth"] > 60
    assert by["truth"]["psnr"] > by["input"]["psnr"]
    assert by["truth"]["snr"] > by["input"]["snr"]
    assert by["truth"]["gm_wm_contrast"] == pytest.approx(60 / 22, rel=0.02)
    assert {"psnr_std", "ssim_truth", "corr_mean", "n_subjects"} <= set(by["input"])


def test_correlation_maps_are_written(tmp_path):
    rng = np.random.default_rng(6)
    cases = [_case(rng, f"c{i}") for i in range(3)]
    for i, c in enumerate(cases):  # subjects differ in global CBF
        c.pseudo_gold *= 1 + 0.3 * i
        c.segments *= 1 + 0.3 * i
    rows = T.evaluate_cases({"input": lambda c: c.input_10}, cases, correlation_out=tmp_path)
    assert (tmp_path / "input_corr.nii.gz").is_file() and (tmp_path / "input_corr.png").is_file()
    assert rows[0]["corr_mean"] > 0.3


def test_baselines_denoise_a_noisy_map():
    rng = np.random.default_rng(7)
    case = _case(rng)
    methods = T.baseline_methods(4.0, bm3d=False)
    assert {"mean of 10 pairs (input)", "non-local means (h x1)"} <= set(methods)
    rows = {r["method"]: r for r in T.evaluate_cases(methods, [case])}
    assert rows["gaussian FWHM 4 mm"]["psnr_truth"] > rows["mean of 10 pairs (input)"]["psnr_truth"]


def test_bm3d_is_optional():
    from mrenhance.baselines import denoise as D

    if not D.has_bm3d():
        with pytest.raises(InputError, match="bm3d"):
            D.bm3d_denoise(np.zeros((8, 8), np.float32))
    else:
        noisy = np.random.default_rng(0).normal(50, 5, (32, 32)).astype(np.float32)
        assert D.bm3d_denoise(noisy).std() < noisy.std()


def test_bids_asl_round_trip(tmp_path):
    from mrenhance.io import load
    from mrenhance.io.bids_asl import read_bids_asl, write_bids_asl

    rng = np.random.default_rng(8)
    data = _label_control(rng, n=4)
    m0 = np.full(data.shape[:3], 1000.0, np.float32)
    paths = write_bids_asl(tmp_path, "01", data, np.diag([3.4, 3.4, 6.0, 1.0]), m0,
                           slice_timing_s=[0.0, 0.035, 0.07, 0.105])  # fmt: skip
    assert paths["asl"].name == "sub-01_asl.nii.gz" and paths["m0scan"].is_file()
    side = json.loads(paths["asl_json"].read_text())
    assert side["ArterialSpinLabelingType"] == "PCASL" and side["M0Type"] == "Separate"
    vol = load(paths["asl"])
    assert vol.meta["aslcontext"] == ["control", "label"] * 4
    assert vol.meta["asl"]["PostLabelingDelay"] == 1.5
    full = read_bids_asl(paths["asl"])
    assert full.data.shape[3] == 9 and full.meta["aslcontext"][-1] == "m0scan"
    # with slice timing, later slices are quantified with a longer PLD: the simulated
    # difference used one PLD, so their CBF comes out higher
    per_slice = np.median(TASK.cbf_map(full), axis=(0, 1))
    assert np.all(np.diff(per_slice) > 0)


def test_enhance_cli_on_a_3d_map_and_a_bids_series(tmp_path):
    from mrenhance.cli import main
    from mrenhance.io import load, save
    from mrenhance.io.bids_asl import write_bids_asl

    weights = _tiny_dwan_weights(tmp_path / "tiny-dwan.safetensors")
    rng = np.random.default_rng(9)
    cbf = rng.normal(50, 10, (40, 48, 5)).astype(np.float32)
    affine = np.diag([3.0, 3.0, 5.0, 1.0])
    save(Volume(cbf, affine, {}), tmp_path / "cbf.nii.gz")
    out = tmp_path / "cbf_dn.nii.gz"
    assert main(["enhance", str(tmp_path / "cbf.nii.gz"), "-o", str(out), "--model",
                 str(weights), "-q"]) == 0  # fmt: skip
    result = load(out)
    assert result.shape == cbf.shape and np.allclose(result.affine, affine)
    paths = write_bids_asl(tmp_path / "bids", "01", _label_control(rng, n=4), affine, None)
    out4 = tmp_path / "series_dn.nii.gz"
    assert main(["enhance", str(paths["asl"]), "-o", str(out4), "--model", str(weights),
                 "-q"]) == 0  # fmt: skip
    assert load(out4).shape == (40, 40, 4)


@pytest.mark.slow
def test_demo_section_writes_its_maps_metrics_row_and_figure(tmp_path, monkeypatch):
    from mrenhance.demo import run_demo
    from mrenhance.io import load

    simulated = []
    simulate = A.simulate_asl_subject

    def recording(*args, **kwargs):
        simulated.append(simulate(*args, **kwargs))
        return simulated[-1]

    monkeypatch.setattr(A, "simulate_asl_subject", recording)
    result = run_demo(tmp_path / "demo", networks=False, echo=False, tasks=["asl"])
    section = result["sections"]["asl"]
    rows = {r["method"]: r for r in section["table_rows"]}
    assert set(rows) == {"mean of 10 pairs (input)", "gaussian FWHM 4 mm"}
    # one subject, simulated at the calibrated noise; its row holds the paper's metrics
    (subject,) = simulated
    assert subject.params["thermal_noise"] == A.CALIBRATED_THERMAL_NOISE
    data_in = rows["mean of 10 pairs (input)"]
    assert data_in["snr"] == pytest.approx(A.pseudo_gold_snr(subject, subject.input_10), 1e-5)
    assert rows["gaussian FWHM 4 mm"]["snr"] > data_in["snr"]  # smoothing trades detail for SNR
    folder = tmp_path / "demo" / "asl"
    stored = json.loads((folder / "metrics.json").read_text())
    assert [r["method"] for r in stored["rows"]] == list(rows)
    assert stored["rows"][0]["psnr_truth"] == pytest.approx(data_in["psnr_truth"])
    assert result["figure"] == folder / "figure.png"
    assert result["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in section["files"].values()} == {
        "mean_of_10_pairs.nii.gz",
        "gaussian_FWHM_4_mm.nii.gz",
        "pseudo_gold.nii.gz",
        "truth.nii.gz",
    }
    truth = load(section["files"]["truth"])
    assert truth.shape == (*A.MNI_SHAPE[:2], len(T.STORED_SLICES))
    np.testing.assert_allclose(truth.data[:, :, T.STORED_SLICES.index(A.SNR_SLICE)],
                               subject.truth[:, :, A.SNR_SLICE], atol=1e-4)  # fmt: skip
    assert "ASL CBF denoising" in result["html"].read_text(encoding="utf-8")


def test_splits_never_share_a_subject():
    from mrenhance.tasks.asl import subject_seed

    seeds = {
        split: {tuple(subject_seed(0, split, i)) for i in range(300)}
        for split in ("train", "validation", "test")
    }
    assert not seeds["train"] & seeds["validation"]
    assert not seeds["train"] & seeds["test"]
    assert not seeds["validation"] & seeds["test"]
    assert len(seeds["train"]) == 300  # every index its own subject
