"""Detection scores of a map against true objects, as the VALDO challenge scores PVS.

Sudre et al., "Where is VALDO? VAscular Lesions Detection and segmentatiOn challenge at
MICCAI 2021" (Med. Image Anal. 2024): PVS are scored by voxel Dice, cluster-level F1
(a predicted cluster is a true positive when it touches a true object, a true object is
found when a predicted cluster touches it), the absolute difference in count and in volume.
We add the ROC AUC of the continuous map as a voxel detector (threshold-free).

All functions are pure: (x, y, z) arrays in, numbers out. ``domain`` restricts every score
to the voxels where objects may be (e.g. WM and basal ganglia).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "best_threshold",
    "cluster_scores",
    "detection_scores",
    "radius_recall",
    "roc_auc",
    "voxel_dice",
]

CONNECTIVITY_26 = np.ones((3, 3, 3), bool)


def roc_auc(score: np.ndarray, truth: np.ndarray, domain: np.ndarray | None = None) -> float:
    """Area under the ROC curve of ``score`` as a detector of ``truth`` (Mann-Whitney U,
    ties counted half). NaN when the domain holds only one class."""
    from scipy.stats import rankdata

    m = np.ones(truth.shape, bool) if domain is None else np.asarray(domain, bool)
    s = np.asarray(score, np.float64)[m]
    t = np.asarray(truth, bool)[m]
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def voxel_dice(pred: np.ndarray, truth: np.ndarray, domain: np.ndarray | None = None) -> float:
    """2 |P & T| / (|P| + |T|) within ``domain`` (1.0 when both are empty)."""
    m = np.ones(truth.shape, bool) if domain is None else np.asarray(domain, bool)
    p, t = np.asarray(pred, bool) & m, np.asarray(truth, bool) & m
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def cluster_scores(
    pred: np.ndarray,
    instances: np.ndarray,
    domain: np.ndarray | None = None,
    *,
    voxel_mm3: float = 1.0,
) -> dict[str, float]:
    """Cluster-level precision, recall, F1 and count / volume differences.

    pred : (x, y, z) bool prediction; its 26-connected components are the clusters.
    instances : (x, y, z) int, 0 background, k > 0 the true objects.
    Returns ``precision``, ``recall``, ``f1``, ``n_pred``, ``n_true``, ``count_diff``
    (|n_pred - n_true|), ``volume_diff_mm3`` (| |P| - |T| | x voxel volume).
    """
    from scipy import ndimage

    m = np.ones(instances.shape, bool) if domain is None else np.asarray(domain, bool)
    p = np.asarray(pred, bool) & m
    inst = np.where(m, instances, 0)
    labels, n_pred = ndimage.label(p, structure=CONNECTIVITY_26)
    true_ids = np.unique(inst[inst > 0])
    n_true = len(true_ids)
    hit = p & (inst > 0)
    tp_clusters = len(np.unique(labels[hit]))
    found = len(np.unique(inst[hit]))
    precision = tp_clusters / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = found / n_true if n_true else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_pred": float(n_pred),
        "n_true": float(n_true),
        "count_diff": float(abs(n_pred - n_true)),
        "volume_diff_mm3": abs(float(p.sum()) - float((inst > 0).sum())) * voxel_mm3,
    }


def radius_recall(
    pred: np.ndarray,
    instances: np.ndarray,
    radii_mm: Sequence[float],
    bins_mm: Sequence[float],
    domain: np.ndarray | None = None,
) -> dict[str, float]:
    """Share of true objects touched by ``pred``, per radius bin ``[b_i, b_(i+1))``.

    radii_mm : radius of object k at index k - 1. Keys ``"r<lo>-<hi>"``; NaN for an empty bin.
    """
    m = np.ones(instances.shape, bool) if domain is None else np.asarray(domain, bool)
    inst = np.where(m, instances, 0)
    present = np.unique(inst[inst > 0])
    found = set(np.unique(inst[np.asarray(pred, bool) & (inst > 0)]).tolist())
    radii = np.asarray(radii_mm, float)
    out = {}
    for lo, hi in zip(bins_mm[:-1], bins_mm[1:], strict=True):
        ids = [
            k
            for k in present
            if lo <= radii[k - 1] < hi or (hi == bins_mm[-1] and radii[k - 1] == hi)
        ]
        key = f"r{lo:g}-{hi:g}"
        out[key] = float(np.mean([k in found for k in ids])) if ids else float("nan")
    return out


def best_threshold(
    scores: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    domains: Sequence[np.ndarray],
) -> float:
    """The threshold ``t`` (predict ``score >= t``) maximising the pooled voxel Dice.

    Exact over every distinct in-domain score: for the ``k`` highest voxels Dice is
    ``2 TP_k / (k + |T|)``, evaluated for all ``k`` in one pass over the sorted scores.
    """
    # the scores' own dtype: a float32 threshold of float64 scores could miss a voxel
    s = np.concatenate([np.asarray(a)[d] for a, d in zip(scores, domains, strict=True)])
    t = np.concatenate([np.asarray(a, bool)[d] for a, d in zip(truths, domains, strict=True)])
    if s.size == 0:
        return float("inf")
    order = np.argsort(-s, kind="stable")
    s_desc, t_desc = s[order], t[order]
    k = np.arange(1, s.size + 1)
    dice = 2.0 * np.cumsum(t_desc) / (k + int(t.sum()))
    # only cut between distinct values: ties are all in or all out
    cut = np.ones(s.size, bool)
    cut[:-1] = s_desc[:-1] != s_desc[1:]
    dice[~cut] = -1.0
    return float(s_desc[int(np.argmax(dice))])


def detection_scores(
    score: np.ndarray,
    threshold: float,
    instances: np.ndarray,
    domain: np.ndarray,
    *,
    voxel_mm3: float,
) -> dict[str, Any]:
    """AUC of ``score``, and Dice + cluster scores of ``score >= threshold`` in ``domain``."""
    truth = instances > 0
    pred = (score >= threshold) & domain
    out = {"auc": roc_auc(score, truth, domain), "dice": voxel_dice(pred, truth, domain)}
    out.update(cluster_scores(pred, instances, domain, voxel_mm3=voxel_mm3))
    return out
