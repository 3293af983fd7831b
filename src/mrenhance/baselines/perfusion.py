"""Classical DSC perfusion: signal -> Delta R2* -> AIF -> CBV, CBF, MTT, Tmax.

The stU-Net paper's reference maps come from an SVD pipeline (Verbena, Sec. 4.2); this is
ours, vectorised over voxels:

- :func:`signal_to_delta_r2star`: ``Delta R2*(t) = -ln(S(t) / S0) / TE`` (proportional to
  the concentration; the relaxivity cancels in every ratio below);
- :func:`automatic_aif_mask` (a documented rule: early, high, narrow first passes) or a
  given AIF mask, averaged into one arterial curve (:func:`aif_from_mask`);
- :func:`cbv_area_ratio`: ``CBV = 100 * int C / int AIF`` (ml/100 g);
- :func:`svd_deconvolve`: ``C = dt * A(AIF) (CBF R)`` solved by truncated SVD; ``"ssvd"``
  (lower-triangular Toeplitz A, Ostergaard et al. 1996), ``"csvd"`` (block-circulant A on
  zero-padded curves, Wu et al. 2003: insensitive to tracer delay) and ``"osvd"`` (cSVD with
  a per-voxel threshold: the smallest whose residue has an oscillation index below
  ``oi_max``, Wu et al. 2003). CBF = 6000 * max R (ml/100 g/min), Tmax = argmax R * dt,
  MTT = 60 * CBV / CBF (s);
- :func:`bsw_leakage_correction`: Boxerman-Schmainda-Weisskoff (AJNR 2006) fit
  ``Delta R2*(t) = K1 ref(t) - K2 int_0^t ref`` and correction ``+ K2 int_0^t ref``;
- :func:`perfusion_maps_from_signal`: all of it on a (x, y, z, t) series.

Tissue density and the haematocrit ratio are 1 (as in :mod:`mrenhance.simulate.dsc`).
Absolute CBV/CBF scale with 1 / (blood fraction of the AIF voxels): partial volume in the
arteries is not corrected (as in most clinical pipelines; relative maps are unaffected).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = [
    "DECONVOLUTION_METHODS",
    "PerfusionMaps",
    "aif_from_mask",
    "automatic_aif_mask",
    "bolus_arrival_frame",
    "bsw_leakage_correction",
    "cbv_area_ratio",
    "convolution_matrix",
    "oscillation_index",
    "perfusion_maps_from_signal",
    "signal_to_delta_r2star",
    "svd_deconvolve",
]

DECONVOLUTION_METHODS = ("ssvd", "csvd", "osvd")
#: Default truncation thresholds (fraction of the largest singular value): 0.2 for sSVD
#: (Ostergaard et al. 1996), 0.1 for cSVD (choice; Wu et al. 2003 tune it to the SNR);
#: oSVD searches :data:`OSVD_THRESHOLDS` for the first residue with OI < 0.095 (Wu 2003).
DEFAULT_THRESHOLD = {"ssvd": 0.2, "csvd": 0.1, "osvd": 0.1}
# choice: 14 levels, denser where noiseless data need them (0.001-0.01) and at the usual
# 0.05-0.2 of noisy data; Wu et al. 2003 step the threshold finely, which costs time only
OSVD_THRESHOLDS = (
    *(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05),
    *(0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
)
OI_MAX = 0.095


def bolus_arrival_frame(curve: np.ndarray, *, skip: int = 1, k_sigma: float = 4.0) -> int:
    """First frame where the mean signal ``curve`` (t,) falls ``k_sigma`` baseline stds below
    the running baseline (frames after ``skip``); the frames before it are the baseline.
    Returns an index >= skip + 2 (at least two baseline frames)."""
    c = np.asarray(curve, dtype=np.float64)
    for n in range(skip + 3, c.size):
        base = c[skip:n]
        sd = max(base.std(), 1e-3 * abs(base.mean()) + 1e-12)
        if c[n] < base.mean() - k_sigma * sd:
            return max(skip + 2, n - 1)
    return max(skip + 2, min(c.size // 4, 10))


def signal_to_delta_r2star(
    signal: np.ndarray, te_s: float, baseline: tuple[int, int] = (1, 8)
) -> np.ndarray:
    """``Delta R2*(t) = -ln(S(t) / S0) / TE`` (s^-1); S0 = mean over frames [b0, b1).

    signal : (..., t). Signals <= 0 (noise) are floored at 1e-3 S0. Voxels with S0 <= 0 get 0.
    Returns (..., t) float32.
    """
    s = np.asarray(signal, dtype=np.float32)
    b0, b1 = baseline
    if not 0 <= b0 < b1 <= s.shape[-1]:
        raise InputError(f"signal_to_delta_r2star: bad baseline frames {baseline}")
    s0 = s[..., b0:b1].mean(axis=-1, keepdims=True)
    ok = s0 > 0
    ratio = np.where(ok, np.maximum(s, 1e-3 * s0) / np.where(ok, s0, 1), 1.0)
    return (-np.log(ratio) / np.float32(te_s)).astype(np.float32)


def automatic_aif_mask(
    conc: np.ndarray,
    brain_mask: np.ndarray,
    *,
    n_voxels: int = 10,
    peak_percentile: float = 95.0,
) -> np.ndarray:
    """Arterial voxels found from the concentration curves: early, high, narrow peaks.

    The rule (ours; in the spirit of Mouridsen et al. 2006 and Peruzzo et al. 2011):

    1. candidates: brain voxels whose peak is at or above the ``peak_percentile`` of the
       brain's peaks and whose curve is back below half its peak by the last frame;
    2. keep the candidates whose time to peak is at most the candidates' median (early);
    3. rank them by peak / FWHM (frames above half the peak) and keep ``n_voxels``.

    conc : (x, y, z, t). brain_mask : (x, y, z) bool. Returns (x, y, z) bool.
    """
    brain = np.asarray(brain_mask, dtype=bool)
    if not brain.any():
        raise InputError("automatic_aif_mask: the brain mask is empty")
    curves = np.asarray(conc, dtype=np.float32)[brain]
    peak = curves.max(axis=1)
    ttp = curves.argmax(axis=1)
    half = curves >= 0.5 * peak[:, None]
    fwhm = half.sum(axis=1)
    back = curves[:, -1] < 0.5 * peak
    cand = (peak >= np.percentile(peak, peak_percentile)) & back & (peak > 0)
    if not cand.any():
        cand = peak >= np.percentile(peak, peak_percentile)
    early = cand & (ttp <= np.median(ttp[cand]))
    score = np.where(early, peak / np.maximum(fwhm, 1), -np.inf)
    order = np.argsort(-score)[: max(1, int(n_voxels))]
    order = order[np.isfinite(score[order])]
    flat = np.zeros(curves.shape[0], dtype=bool)
    flat[order] = True
    out = np.zeros(brain.shape, dtype=bool)
    out[brain] = flat
    return out


def aif_from_mask(conc: np.ndarray, aif_mask: np.ndarray) -> np.ndarray:
    """The mean concentration curve (t,) over ``aif_mask`` (x, y, z) of ``conc`` (x, y, z, t)."""
    mask = np.asarray(aif_mask, dtype=bool)
    if mask.shape != conc.shape[:3]:
        raise InputError(f"AIF mask shape {mask.shape} does not match the series {conc.shape[:3]}")
    if not mask.any():
        raise InputError("the AIF mask is empty")
    return np.asarray(conc, dtype=np.float64)[mask].mean(axis=0)


def cbv_area_ratio(conc: np.ndarray, aif: np.ndarray) -> np.ndarray:
    """``CBV = 100 * sum C / sum AIF`` (ml/100 g): conc (..., t), aif (t,). Returns (...)."""
    area = float(np.sum(aif))
    if not area > 0:
        raise InputError("cbv_area_ratio: the AIF has no positive area")
    return (100.0 * np.asarray(conc, dtype=np.float64).sum(axis=-1) / area).astype(np.float32)


def convolution_matrix(aif: np.ndarray, dt_s: float, method: str) -> np.ndarray:
    """``dt * A``: (t, t) lower-triangular Toeplitz ("ssvd") or (2t, 2t) block-circulant of
    the zero-padded AIF ("csvd", "osvd"). aif : (t,)."""
    a = np.asarray(aif, dtype=np.float64)
    n = a.size
    # choice: the AIF weighted as (a[k-1] + 4 a[k] + a[k+1]) / 6, the exact convolution of two
    # piecewise-linear curves at the samples (as the DSC-MRI toolbox of Peruzzo et al.); the
    # plain a[k] overestimates the short-MTT residue's blur at ~1 s sampling
    a = np.concatenate([[0.0], a, [0.0]])
    a = (a[:-2] + 4 * a[1:-1] + a[2:]) / 6.0
    if method == "ssvd":
        idx = np.arange(n)[:, None] - np.arange(n)[None, :]
        return dt_s * np.where(idx >= 0, a[np.clip(idx, 0, n - 1)], 0.0)
    if method in ("csvd", "osvd"):
        padded = np.concatenate([a, np.zeros(n)])
        idx = (np.arange(2 * n)[:, None] - np.arange(2 * n)[None, :]) % (2 * n)
        return dt_s * padded[idx]
    raise InputError(f"unknown deconvolution method {method!r}; use one of {DECONVOLUTION_METHODS}")


def oscillation_index(residue: np.ndarray) -> np.ndarray:
    """Wu et al. 2003: ``OI = sum_k |R_k - 2 R_{k-1} + R_{k-2}| / (N max R)``; residue (..., N)."""
    r = np.asarray(residue)
    n = r.shape[-1]
    second = np.abs(r[..., 2:] - 2 * r[..., 1:-1] + r[..., :-2]).sum(axis=-1)
    peak = np.maximum(r.max(axis=-1), 1e-12)
    return second / (n * peak)


def svd_deconvolve(
    conc: np.ndarray,
    aif: np.ndarray,
    dt_s: float,
    *,
    method: str = "osvd",
    threshold: float | None = None,
    oi_max: float = OI_MAX,
    thresholds: tuple[float, ...] = OSVD_THRESHOLDS,
    chunk: int = 65536,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deconvolve N tissue curves by one AIF with a truncated SVD.

    conc : (N, t) concentrations (any unit shared with ``aif``). aif : (t,). dt_s : frame
    interval. Both are cut to start one frame before the AIF's arrival (5 % of its peak).
    threshold : fraction of the largest singular value below which components are dropped
    (default :data:`DEFAULT_THRESHOLD`; ignored by oSVD). oi_max, thresholds : oSVD's
    oscillation-index limit and the thresholds it tries, smallest first (a voxel whose
    residue never falls below ``oi_max`` takes the largest).

    Returns
    -------
    cbf : (N,) ml/100 g/min (6000 * max of CBF R). tmax_s : (N,) time of that maximum, s.
    used_threshold : (N,) the threshold each voxel used.
    """
    if method not in DECONVOLUTION_METHODS:
        raise InputError(
            f"unknown deconvolution method {method!r}; use one of {DECONVOLUTION_METHODS}"
        )
    c = np.asarray(conc, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != np.size(aif):
        raise InputError(f"svd_deconvolve: conc must be (N, {np.size(aif)}), got {c.shape}")
    aif = np.asarray(aif, dtype=np.float64)
    # the frames before the AIF arrives carry no information and make the Toeplitz matrix
    # near-singular: both curves start one frame before the AIF reaches 5 % of its peak
    start = max(0, int(np.argmax(aif >= 0.05 * aif.max())) - 1) if aif.max() > 0 else 0
    c, aif = c[:, start:], aif[start:]
    n_t = c.shape[1]
    a = convolution_matrix(aif, dt_s, method)
    u, s, vt = np.linalg.svd(a)
    v = vt.T
    smax = s.max() if s.size else 0.0
    if not smax > 0:
        raise InputError("svd_deconvolve: the AIF is zero")
    cbf = np.zeros(c.shape[0], np.float32)
    tmax = np.zeros(c.shape[0], np.float32)
    used = np.zeros(c.shape[0], np.float32)
    pad = a.shape[0] - n_t
    # thresholds from the largest down: each keeps the components of the one before plus a
    # few more, so the residues are built up component by component (one matmul in all)
    levels = (
        tuple(sorted(thresholds, reverse=True))
        if method == "osvd"
        else (DEFAULT_THRESHOLD[method] if threshold is None else float(threshold),)
    )
    v32 = v.astype(np.float32)
    winv = (1.0 / s).astype(np.float32)
    for lo in range(0, c.shape[0], chunk):
        block = c[lo : lo + chunk].astype(np.float32)
        if pad:
            block = np.concatenate([block, np.zeros((block.shape[0], pad), np.float32)], axis=1)
        coeff = u.T.astype(np.float32) @ block.T  # (n, M): U^T C, time-major
        r = np.zeros_like(coeff)
        kept = 0
        out_cbf = out_k = out_thr = None
        for thr in levels:
            k = int(np.count_nonzero(s >= thr * smax))
            if k > kept:
                r += v32[:, kept:k] @ (winv[kept:k, None] * coeff[kept:k])
                kept = k
            peak = r.max(axis=0)
            if out_cbf is None:  # the largest threshold: every voxel's fallback
                out_cbf, out_k = peak.copy(), np.full(peak.shape, k)
                out_thr = np.full(peak.shape, thr, np.float32)
            if method != "osvd":
                break
            second = np.diff(r, 2, axis=0)
            np.abs(second, out=second)
            ok = second.sum(axis=0) <= oi_max * r.shape[0] * np.maximum(peak, 1e-12)  # Wu 2003
            out_cbf[ok] = peak[ok]
            out_k[ok] = k
            out_thr[ok] = thr
        # Tmax: the residue of the components each voxel kept, rebuilt once per level
        out_tmax = np.zeros(out_cbf.shape, np.float32)
        for k in np.unique(out_k):
            sel = out_k == k
            rk = v32[:, :k] @ (winv[:k, None] * coeff[:k][:, sel])
            out_tmax[sel] = rk.argmax(axis=0) * np.float32(dt_s)
        cbf[lo : lo + chunk] = 6000.0 * out_cbf
        tmax[lo : lo + chunk] = out_tmax
        used[lo : lo + chunk] = out_thr
    return cbf, tmax, used


def bsw_leakage_correction(
    conc: np.ndarray, reference: np.ndarray, dt_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxerman-Schmainda-Weisskoff leakage correction (AJNR 2006).

    Least squares per voxel of ``Delta R2*(t) = K1 ref(t) - K2 int_0^t ref`` and
    ``corrected = Delta R2* + K2 int_0^t ref``. conc : (N, t). reference : (t,), the mean
    curve of non-enhancing brain. Returns (corrected (N, t), K1 (N,), K2 (N,) in s^-1).
    """
    c = np.asarray(conc, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    cum = np.cumsum(ref) * dt_s
    x = np.stack([ref, -cum], axis=1)  # (t, 2)
    coef, *_ = np.linalg.lstsq(x, c.T, rcond=None)  # (2, N)
    k1, k2 = coef
    corrected = c + k2[:, None] * cum[None, :]
    return corrected.astype(np.float32), k1.astype(np.float32), k2.astype(np.float32)


@dataclass
class PerfusionMaps:
    """What :func:`perfusion_maps_from_signal` returns (all on the series' grid).

    cbv (ml/100 g), cbf (ml/100 g/min), mtt (s), tmax (s): (x, y, z) float32, 0 outside the
    brain. aif : (t,) the arterial Delta R2* curve (s^-1). aif_mask : (x, y, z) bool.
    baseline : the [b0, b1) frames used for S0. k2 : (x, y, z) BSW K2 or None.
    threshold : (x, y, z) the SVD threshold used per voxel.
    """

    cbv: np.ndarray
    cbf: np.ndarray
    mtt: np.ndarray
    tmax: np.ndarray
    aif: np.ndarray
    aif_mask: np.ndarray
    baseline: tuple[int, int]
    threshold: np.ndarray
    k2: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def perfusion_maps_from_signal(
    signal: np.ndarray,
    tr_s: float,
    te_s: float,
    *,
    brain_mask: np.ndarray | None = None,
    aif_mask: np.ndarray | None = None,
    method: str = "osvd",
    threshold: float | None = None,
    oi_max: float = OI_MAX,
    baseline: tuple[int, int] | None = None,
    leakage_correction: bool = False,
    n_aif_voxels: int = 10,
) -> PerfusionMaps:
    """The classical pipeline on a (x, y, z, t) DSC series.

    brain_mask : default an automatic head mask of the mean baseline image
    (:func:`mrenhance.preprocess.head_mask`). aif_mask : the arterial voxels; default
    :func:`automatic_aif_mask`. baseline : frames [b0, b1) for S0; default frame 1 to the
    bolus arrival of the mean brain curve (:func:`bolus_arrival_frame`). method, threshold,
    oi_max : see :func:`svd_deconvolve`. leakage_correction : BSW, with the mean curve of the
    brain voxels whose end-of-series Delta R2* is not negative as the reference.
    """
    s = np.asarray(signal, dtype=np.float32)
    if s.ndim != 4:
        raise InputError(f"perfusion: expected a (x, y, z, t) series, got shape {s.shape}")
    if brain_mask is None:
        from mrenhance.preprocess import head_mask

        brain = head_mask(s[..., : min(5, s.shape[-1])].mean(axis=-1))
    else:
        brain = np.asarray(brain_mask, dtype=bool)
    if not brain.any():
        raise InputError("perfusion: the brain mask is empty")
    if baseline is None:
        arrival = bolus_arrival_frame(s[brain].mean(axis=0))
        baseline = (1, arrival)
    conc = signal_to_delta_r2star(s, te_s, baseline)
    conc[~brain] = 0.0
    if aif_mask is None:
        aif_mask = automatic_aif_mask(conc, brain, n_voxels=n_aif_voxels)
    aif_mask = np.asarray(aif_mask, dtype=bool)
    aif = aif_from_mask(conc, aif_mask)
    curves = conc[brain]
    k2_map = None
    if leakage_correction:
        tail = curves[:, -max(3, s.shape[-1] // 10) :].mean(axis=1)
        reference = curves[tail >= 0].mean(axis=0) if (tail >= 0).any() else curves.mean(axis=0)
        curves, _, k2 = bsw_leakage_correction(curves, reference, tr_s)
        k2_map = np.zeros(brain.shape, np.float32)
        k2_map[brain] = k2
    cbv_v = cbv_area_ratio(curves, aif)
    cbf_v, tmax_v, thr_v = svd_deconvolve(
        curves, aif, tr_s, method=method, threshold=threshold, oi_max=oi_max
    )
    maps = {}
    for name, values in (("cbv", cbv_v), ("cbf", cbf_v), ("tmax", tmax_v), ("thr", thr_v)):
        m = np.zeros(brain.shape, np.float32)
        m[brain] = values
        maps[name] = m
    with np.errstate(divide="ignore", invalid="ignore"):
        mtt = np.where(maps["cbf"] > 0, 60.0 * maps["cbv"] / maps["cbf"], 0.0).astype(np.float32)
    return PerfusionMaps(
        cbv=maps["cbv"],
        cbf=maps["cbf"],
        mtt=mtt,
        tmax=maps["tmax"],
        aif=aif,
        aif_mask=aif_mask,
        baseline=(int(baseline[0]), int(baseline[1])),
        threshold=maps["thr"],
        k2=k2_map,
    )
