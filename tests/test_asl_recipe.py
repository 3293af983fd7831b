"""The ASL recipe and the paper's sets: its values, both switches trained, segments, tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrenhance.config import load_recipe
from mrenhance.errors import ConfigError
from mrenhance.simulate import asl as A
from mrenhance.tasks import asl as T
from mrenhance.tasks import get_task

TASK = get_task("asl")


def test_recipe_holds_the_papers_defaults():
    r = load_recipe("asl_dwan")
    assert r.task == "asl" and r.model["name"] == "dwan"  # Sec. 2.2
    cfg = TASK.data_config(r.data)
    assert cfg["target"] == "lfn" and cfg["lfn_pairs"] == [[0, 1], [2, 3]]  # Sec. 2.3
    assert r.train.loss == "l1" and r.train.optimizer == "adam"  # Sec. 2.1, 2.3
    assert r.train.lr == pytest.approx(1e-3) and r.train.batch_size == 64  # Sec. 2.3


def test_paper_slices_and_sets():
    assert A.PAPER_SLICES == tuple(range(36, 61, 3))  # axial 36 to 60, every third
    assert A.SNR_SLICE == 50


def test_segments_are_the_means_of_consecutive_tens_and_the_gold_is_cleaned_and_smoothed():
    s = A.simulate_asl_subject([9, 9, 1], keep_series=True)
    p = s.series.protocol
    assert p.n_pairs == 40
    cbf = A.quantify_pairs(s.series.control, s.series.label, p)  # (x, y, z, 40)
    for k in range(4):  # pairs 1-10, 11-20, 21-30, 31-40
        mean = cbf[..., 10 * k : 10 * (k + 1)].mean(axis=-1)
        expected = A.to_mni(mean, s.series.affine, s.affine)
        np.testing.assert_allclose(s.segments[k], expected, atol=1e-3)
    assert np.array_equal(s.input_10, s.segments[0])
    # the pseudo gold: the 40-pair mean over the kept (slice, pair)s, then FWHM 3 mm
    keep = s.keep.T[None, None].astype(np.float32)
    cleaned = (cbf * keep).sum(axis=-1) / np.maximum(keep.sum(axis=-1), 1.0)
    gold = A.gaussian_fwhm(A.to_mni(cleaned, s.series.affine, s.affine), 3.0, (2, 2, 2))
    np.testing.assert_allclose(s.pseudo_gold, gold, atol=1e-3)
    # and cleaning matters: the plain 40-pair mean differs where spikes were planted
    plain = A.gaussian_fwhm(A.to_mni(cbf.mean(axis=-1), s.series.affine, s.affine), 3.0, (2,) * 3)
    if s.planted.any():
        assert np.abs(plain - s.pseudo_gold).max() > 1.0


def test_lfn_pairs_are_only_the_recipes_segment_pairs_and_their_reverses():
    rng = np.random.default_rng(0)
    shape = (91, 109, len(T.STORED_SLICES))
    # each segment a constant map: a patch names its segment by its value
    segments = np.stack([np.full(shape, 10.0 * (k + 1), np.float32) for k in range(4)])
    case = T.AslCase(
        name="c",
        segments=segments,
        pseudo_gold=np.full(shape, 99.0, np.float32),
        truth=np.full(shape, 99.0, np.float32),
        gm=np.ones(shape, np.float32),
        wm=np.zeros(shape, np.float32),
        brain=np.ones(shape, bool),
        territory=np.zeros(shape, bool),
        affine=np.diag([2.0, 2.0, 2.0, 1.0]),
    )
    del rng
    seen = set()
    ds = T.AslSliceDataset([case], (16, 16), target="lfn", seed=1)
    for i in range(200):
        item = ds[i]
        a = round(float(item["inputs"].mean()) * T.CBF_SCALE / 10) - 1
        b = round(float(item["target"].mean()) * T.CBF_SCALE / 10) - 1
        seen.add((a, b))
    assert seen == {(0, 1), (1, 0), (2, 3), (3, 2)}
    one_way = T.AslSliceDataset([case], (16, 16), target="lfn", symmetric=False, seed=1)
    assert {
        (
            round(float(one_way[i]["inputs"].mean()) * T.CBF_SCALE / 10) - 1,
            round(float(one_way[i]["target"].mean()) * T.CBF_SCALE / 10) - 1,
        )
        for i in range(100)
    } == {(0, 1), (2, 3)}


def _constant_case(value: float = 50.0) -> T.AslCase:
    shape = (91, 109, len(T.STORED_SLICES))
    full = np.full(shape, value, np.float32)
    return T.AslCase(
        name="c",
        segments=np.stack([full] * 4),
        pseudo_gold=full,
        truth=full,
        gm=np.ones(shape, np.float32),
        wm=np.zeros(shape, np.float32),
        brain=np.ones(shape, bool),
        territory=np.zeros(shape, bool),
        affine=np.diag([2.0, 2.0, 2.0, 1.0]),
    )


def test_recipe_blobs_scale_input_and_target_alike_and_flip_only_draws_as_before():
    case = _constant_case()
    plain = T.AslSliceDataset([case], (32, 32), seed=3)
    assert T._extra_augment({"flip": True}, "recipe") is None  # same draws as before
    aug = T._extra_augment(
        {"flip": True, "blobs": {"count": [1, 2], "factor": [3, 6], "radius": [3, 6]}}, "recipe"
    )
    blobs = T.AslSliceDataset([case], (32, 32), seed=3, augment=aug)
    hot = 0
    for i in range(20):
        a, b = plain[i], blobs[i]
        np.testing.assert_allclose(a["inputs"], 0.5)
        np.testing.assert_allclose(b["inputs"], b["target"])  # one field on both
        assert b["inputs"].min() >= 0.5 - 1e-5 and b["inputs"].max() <= 0.5 * 36 + 1e-3
        hot += b["inputs"].max() >= 1.4  # a blob of gain >= 3 inside this patch
    assert hot >= 5
    with pytest.raises(ConfigError, match="data.augment.blobs"):
        T._extra_augment({"blobs": {"count": [2, 1]}}, "recipe")
    with pytest.raises(ConfigError, match="unknown"):
        TASK.training_data({**load_recipe("asl_dwan").data, "augment": {"rotate": 3}}, (32, 32))


def _noisy_case(noise: float, seed: int = 0) -> T.AslCase:
    rng = np.random.default_rng(seed)
    shape = (91, 109, len(T.STORED_SLICES))
    x, y = np.meshgrid(np.arange(91), np.arange(109), indexing="ij")
    gm = (((x // 8 + y // 8) % 2) == 0)[..., None] * np.ones(shape, np.float32)
    truth = (20 + 40 * gm + 0.5 * ((x + y) % 2)[..., None]).astype(np.float32)
    segments = truth[None] + rng.normal(0, noise, (4, *shape)).astype(np.float32)
    return T.AslCase(
        name="n",
        segments=segments,
        pseudo_gold=truth,
        truth=truth,
        gm=gm,
        wm=1 - gm,
        brain=np.ones(shape, bool),
        territory=np.zeros(shape, bool),
        affine=np.diag([2.0, 2.0, 2.0, 1.0]),
    )


def test_best_gaussian_fwhm_follows_the_noise():
    clean, _ = T.best_gaussian_fwhm([_noisy_case(0.0)])
    noisy, scores = T.best_gaussian_fwhm([_noisy_case(40.0)])
    assert clean == 2.0  # no noise: the least smoothing is best
    assert noisy > 2.0 and scores[noisy] == max(scores.values())
    assert set(scores) == {2.0, 3.0, 4.0, 5.0, 6.0, 8.0}


def test_best_strength_is_the_grid_point_with_the_best_psnr():
    case = _noisy_case(20.0)

    def denoise(x, k):  # a toy denoiser whose best strength is 4 by construction
        return case.truth + (x - case.truth) * abs(k - 4.0) / 4.0

    assert T.best_strength([case], denoise) == 4.0


@pytest.mark.slow
def test_recipe_trains_with_the_asldn_and_l2_switches(tmp_path):
    from mrenhance.training import train_recipe

    tiny = [
        "data.target=asldn",
        "train.loss=l2",
        "model.name=dilatednet-asl",
        "train.steps=2",
        "train.batch_size=2",
        "train.patch_size=[32,32]",
        "train.val_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "data.subjects={train: 1, validation: 1, test: 0}",
    ]
    summary = train_recipe("asl_dwan", tiny, run_dir=tmp_path / "run", progress=False)
    card = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["supervised"]["steps"] == 2 and card["training"]["steps"] == 2
    assert card["architecture"]["name"] == "dilatednet-asl"
    assert card["training"]["stage"] == "supervised (L2)"
    assert "data.target=asldn" in card["training"]["overrides"]


def test_validation_scores_lfn_against_the_other_thirty_pairs_and_asldn_the_gold():
    case = _noisy_case(10.0)
    ref = T.validation_reference(case, "lfn")
    np.testing.assert_allclose(ref, case.segments[1:].mean(axis=0), rtol=1e-6)
    assert not np.allclose(ref, case.segments[0])  # never the input's own pairs
    assert T.validation_reference(case, "asldn") is case.pseudo_gold


def test_noise_scale_varies_only_the_training_subjects_noise():
    cfg = TASK.data_config(load_recipe("asl_dwan").data)
    assert cfg["noise_scale"] is None  # off in the recipe (docs/asl.md)
    factors = [T.noise_factor(T.subject_seed(0, "train", i), [0.2, 1.5]) for i in range(40)]
    assert all(0.2 <= f <= 1.5 for f in factors) and max(factors) / min(factors) > 3
    assert factors == [T.noise_factor(T.subject_seed(0, "train", i), [0.2, 1.5]) for i in range(40)]
    assert T.noise_factor([0, 0, 1], None) == 1.0 and T.noise_factor([0, 0, 1], []) == 1.0
    for bad in ([0.0, 1.0], [2.0, 1.0], [1.0], "x", [True, 2.0]):
        with pytest.raises(ConfigError, match="noise_scale"):
            TASK.data_config({**load_recipe("asl_dwan").data, "noise_scale": bad})


def test_noise_scale_reaches_the_simulated_training_subjects():
    base = {
        **TASK.data_config(load_recipe("asl_dwan").data),
        "subjects": {"train": 1, "validation": 1, "test": 0},
        "outlier_fraction": 0.0,
    }
    quiet = {**base, "noise_scale": [0.25, 0.25]}
    loud = {**base, "noise_scale": None}

    def noise(case):
        b = case.brain
        return float(np.std((case.segments[0] - case.segments[1])[b]))

    (a,), (b,) = T.load_cases(quiet, "train"), T.load_cases(loud, "train")
    assert noise(a) < 0.5 * noise(b)  # thermal noise x 0.25 (physiological noise stays)
    np.testing.assert_allclose(a.truth, b.truth)  # same subject
    (va,), (vb,) = T.load_cases(quiet, "validation"), T.load_cases(loud, "validation")
    np.testing.assert_array_equal(va.segments, vb.segments)  # validation keeps the noise
