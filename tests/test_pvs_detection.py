"""VALDO-style detection scores (mrenhance.detection) on hand-made volumes."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance import detection as D


def _two_objects():
    inst = np.zeros((12, 12, 12), np.int32)
    inst[2:4, 2:4, 2:8] = 1
    inst[8:10, 8:10, 3:6] = 2
    return inst


def test_auc_is_one_for_a_separating_score_and_half_for_noise(rng):
    inst = _two_objects()
    assert D.roc_auc((inst > 0).astype(float), inst > 0) == 1.0
    noise = rng.random(inst.shape)
    assert D.roc_auc(noise, inst > 0) == pytest.approx(0.5, abs=0.1)
    assert np.isnan(D.roc_auc(noise, np.zeros(inst.shape, bool)))


def test_cluster_scores_count_touching_clusters():
    inst = _two_objects()
    pred = np.zeros(inst.shape, bool)
    pred[2, 2, 4] = True  # touches object 1 with one voxel
    pred[6, 0, 0] = True  # a false positive cluster
    s = D.cluster_scores(pred, inst, voxel_mm3=0.125)
    assert s["n_pred"] == 2 and s["n_true"] == 2
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == pytest.approx(0.5)
    assert s["count_diff"] == 0
    assert s["volume_diff_mm3"] == pytest.approx((36 - 2) * 0.125)
    assert D.voxel_dice(pred, inst > 0) == pytest.approx(2 * 1 / (2 + 36))


def test_domain_restricts_objects_and_predictions():
    inst = _two_objects()
    domain = np.zeros(inst.shape, bool)
    domain[:6] = True  # object 1 only
    s = D.cluster_scores(inst > 0, inst, domain)
    assert s["n_true"] == 1 and s["f1"] == 1.0


def test_best_threshold_separates_when_it_can(rng):
    inst = _two_objects()
    score = rng.random(inst.shape) * 0.5 + (inst > 0)
    t = D.best_threshold([score], [inst > 0], [np.ones(inst.shape, bool)])
    assert 0.5 < t <= 1.5  # between the noise (< 0.5) and the objects (>= 1)
    assert D.voxel_dice(score >= t, inst > 0) == 1.0


def test_radius_recall_bins_by_the_tube_radius():
    inst = _two_objects()
    pred = inst == 2
    out = D.radius_recall(pred, inst, [0.3, 1.2], (0.25, 0.5, 1.0, 1.5))
    assert out["r0.25-0.5"] == 0.0 and out["r1-1.5"] == 1.0 and np.isnan(out["r0.5-1"])
