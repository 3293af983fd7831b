"""DSC perfusion sequences with a known truth, and the stU-Net paper's low-dose simulation.

The indicator-dilution model on a synthetic subject (:mod:`mrenhance.simulate.subjects`):

- per-tissue CBV (ml/100 g) and CBF (ml/100 g/min) with a smooth spatial variation, so
  MTT = CBV / CBF (s) varies too; tumours (enhancing rim with raised CBV, necrotic core,
  oedema) keep their masks;
- an arterial input function (AIF, mM): a gamma variate plus a recirculation gamma variate
  (:func:`arterial_input_function`), seen by each voxel after an arrival delay and an
  optional exponential dispersion;
- tissue concentration ``C(t) = CBF * (AIF conv R)(t)`` with the exponential residue
  ``R(t) = exp(-t / MTT)``, computed on a 10x finer time grid, then sampled every TR;
- ``Delta R2*(t) = r2* * C(t)`` (optionally minus a T1-leakage term in the enhancing rim,
  the Boxerman-Schmainda-Weisskoff form), signal ``S(t) = S0 * exp(-TE * Delta R2*(t))``
  plus Gaussian noise at a chosen baseline SNR.

Units: CBV ml/100 g (GM ~4), CBF ml/100 g/min (GM ~60), MTT and times in s, concentrations
in mM. Tissue density and the large/small-vessel haematocrit ratio are both taken as 1
(choice), so ``CBV = 100 * int C / int AIF`` and ``CBF = 6000 * max(CBF R)`` exactly.

:func:`low_dose_eq1` is the paper's Eq. 1 (Veron Vialard et al. 2021, Sec. 2);
:func:`simulate_dsc` with ``dose=d`` is the physical low-dose acquisition it approximates
(the concentration scaled by d, the exponential signal model deciding the signal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = [
    "BASELINE_SIGNAL",
    "TISSUE_PERFUSION",
    "DSCProtocol",
    "DSCSimulation",
    "arterial_input_function",
    "dispersed_aif",
    "exponential_filter",
    "gamma_variate",
    "low_dose_eq1",
    "perfusion_maps",
    "simulate_dsc",
    "tissue_concentration",
]

#: (CBV ml/100 g, CBF ml/100 g/min) per tissue. GM/WM: the issue's values, in the range of
#: PET/DSC literature (e.g. Leenders et al. 1990: GM CBV ~4-5, CBF ~50-60). Tumour rim:
#: raised CBV (high-grade glioma rCBV ~2-3 x GM; choice), necrosis: almost no perfusion,
#: oedema: slightly below WM (choice). MTT = CBV / CBF: GM 4.0 s, WM 4.8 s, rim 4.9 s.
TISSUE_PERFUSION: dict[str, tuple[float, float]] = {
    "gm": (4.0, 60.0),
    "wm": (2.0, 25.0),
    "csf": (0.0, 0.0),
    "skull": (0.0, 0.0),
    "scalp": (0.0, 0.0),
    "necrosis": (0.4, 4.0),
    "enhancing": (9.0, 110.0),
    "oedema": (1.6, 20.0),
    "infarct": (1.0, 8.0),
}

#: Baseline (pre-contrast) signal of a T2*-weighted GRE-EPI, relative to GM (choice: CSF's
#: long T2* makes it brightest; fat-suppressed scalp and bone are dark; lesions T2*-long).
BASELINE_SIGNAL: dict[str, float] = {
    "gm": 1.0,
    "wm": 0.85,
    "csf": 1.5,
    "skull": 0.02,
    "scalp": 0.1,
    "necrosis": 1.4,
    "enhancing": 1.1,
    "oedema": 1.2,
    "infarct": 1.2,
}


@dataclass(frozen=True)
class DSCProtocol:
    """Acquisition and contrast parameters of one simulated DSC series.

    tr_s : frame interval (s); the paper's sequences sample about every second (Sec. 2).
    te_s : echo time (s); 30 ms is typical of GRE-EPI DSC at 3 T (choice).
    n_frames : time frames.
    dose : fraction of the standard 0.1 mmol/kg dose (the AIF scales with it).
    snr : baseline SNR, mean brain S0 / noise sigma (choice: 40, a clinical EPI order).
    r2star_per_mm_s : transverse relaxivity in tissue, s^-1 mM^-1 (choice: 87, a 3 T value;
        gives a ~40 % GM signal drop at full dose).
    aif_peak_mm : first-pass AIF peak at full dose (choice: 8 mM).
    arrival_s, alpha, beta_s : gamma variate of the first pass (arrival 10 s so ~10 baseline
        frames; alpha 3, beta 1.5 s: a ~4 s FWHM bolus, as Wu et al. 2003's simulations).
    recirculation_fraction, recirculation_delay_s : a second, wider gamma variate holding this
        share of the first pass's area, this much later (choice: 0.15, 8 s). At 8 s it
        starts on the first pass's tail (still ~55 % of the peak) and shows as a shoulder
        peaking ~17 s after the arrival; from ~10 s on the curve dips between two peaks.
    delay_range_s : tissue arrival delay after the AIF, a smooth field spanning this range.
    dispersion_s : time constant of the exponential dispersion of each voxel's AIF (0: none).
    variation : std of the log of the smooth CBV and CBF fields (choice: 0.15).
    variation_fwhm_mm : smoothness of those fields.
    leakage_k2_per_s : T1 leakage of the enhancing rim, s^-1: its Delta R2* is lowered by
        this times the running integral of its own Delta R2* (0: no leakage; 0.02 is
        visible). The BSW fit (:func:`mrenhance.baselines.perfusion.bsw_leakage_correction`)
        measures K2 against the reference curve's integral instead, so it reads about K1
        (the rim's curve over the reference) times this value.
    artery_blood_fraction : peak arterial blood fraction of the AIF voxels (partial volume of
        a ~1 mm artery in a 3 mm voxel; choice 0.05 keeps their peak signal above noise).
    """

    tr_s: float = 1.0
    te_s: float = 0.03
    n_frames: int = 60
    dose: float = 1.0
    snr: float = 40.0
    r2star_per_mm_s: float = 87.0
    aif_peak_mm: float = 8.0
    arrival_s: float = 10.0
    alpha: float = 3.0
    beta_s: float = 1.5
    recirculation_fraction: float = 0.15
    recirculation_delay_s: float = 8.0
    delay_range_s: tuple[float, float] = (0.0, 1.5)
    dispersion_s: float = 0.0
    variation: float = 0.15
    variation_fwhm_mm: float = 20.0
    leakage_k2_per_s: float = 0.0
    artery_blood_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.tr_s <= 0 or self.te_s <= 0:
            raise InputError(
                f"DSCProtocol: tr_s and te_s must be > 0, got {self.tr_s}, {self.te_s}"
            )
        if self.n_frames < 10:
            raise InputError(f"DSCProtocol: n_frames must be >= 10, got {self.n_frames}")
        if not 0 < self.dose <= 1.5:
            raise InputError(f"DSCProtocol: dose must be in (0, 1.5], got {self.dose}")
        if self.snr is not None and self.snr <= 0:
            raise InputError(f"DSCProtocol: snr must be > 0 or None, got {self.snr}")

    @property
    def times_s(self) -> np.ndarray:
        """(n_frames,) acquisition times, s (frame 0 at t = 0)."""
        return np.arange(self.n_frames, dtype=np.float64) * self.tr_s


def gamma_variate(
    t_s: np.ndarray, *, arrival_s: float, alpha: float, beta_s: float, peak: float = 1.0
) -> np.ndarray:
    """``peak * ((t - t0) / (alpha beta))^alpha * exp(alpha - (t - t0) / beta)`` for t > t0.

    The maximum, ``peak``, sits at ``t0 + alpha * beta``. t_s: (n,) s. Returns (n,) float64.
    """
    t = np.asarray(t_s, dtype=np.float64) - arrival_s
    out = np.zeros_like(t)
    pos = t > 0
    x = t[pos] / (alpha * beta_s)
    out[pos] = peak * x**alpha * np.exp(alpha * (1.0 - x))
    return out


def arterial_input_function(t_s: np.ndarray, protocol: DSCProtocol | None = None) -> np.ndarray:
    """The arterial concentration (mM) at times ``t_s`` (s): first pass + recirculation.

    Scaled by ``protocol.dose`` (the concentration is proportional to the dose).
    """
    p = protocol or DSCProtocol()
    first = gamma_variate(t_s, arrival_s=p.arrival_s, alpha=p.alpha, beta_s=p.beta_s, peak=1.0)
    # the recirculation: same shape, twice as wide, area = fraction x the first pass's area
    wide = 2.0 * p.beta_s
    second = gamma_variate(
        t_s, arrival_s=p.arrival_s + p.recirculation_delay_s, alpha=p.alpha, beta_s=wide
    )
    second *= p.recirculation_fraction * p.beta_s / wide  # area of a gamma variate ~ peak*beta
    return (p.aif_peak_mm * p.dose * (first + second)).astype(np.float64)


def exponential_filter(x: np.ndarray, h_s: float, tau_s: np.ndarray | float) -> np.ndarray:
    """``y(t) = int_0^t x(s) exp(-(t - s) / tau) ds`` on a uniform grid of step ``h_s``.

    x : (..., n) samples. tau_s : scalar or (...) time constants, s (> 0). Exact for x
    piecewise linear between samples (the trapezoid-exponential recursion). Returns (..., n).
    """
    x = np.asarray(x, dtype=np.float64)
    tau = np.broadcast_to(np.asarray(tau_s, dtype=np.float64), x.shape[:-1])
    tau = np.maximum(tau, 1e-6)
    a = np.exp(-h_s / tau)
    # weights of x[n-1] and x[n] for a linear x between samples
    w1 = tau - tau * (1 - a) * tau / h_s
    w0 = tau * (1 - a) * tau / h_s - tau * a
    y = np.zeros_like(x)
    for n in range(1, x.shape[-1]):
        y[..., n] = a * y[..., n - 1] + w0 * x[..., n - 1] + w1 * x[..., n]
    return y


def dispersed_aif(aif_fine: np.ndarray, h_s: float, dispersion_s: float) -> np.ndarray:
    """The AIF after the vessels between the measured artery and a voxel: convolved with
    ``exp(-t / dispersion) / dispersion`` (unit area; ``dispersion_s`` 0: unchanged).

    aif_fine : (n,) mM on a grid of step ``h_s``. Returns (n,) float64.
    """
    aif = np.asarray(aif_fine, dtype=np.float64)
    if dispersion_s <= 0:
        return aif
    return exponential_filter(aif[None], h_s, dispersion_s)[0] / dispersion_s


def tissue_concentration(
    aif_fine: np.ndarray,
    h_s: float,
    cbf_per_s: np.ndarray,
    mtt_s: np.ndarray,
    *,
    delay_s: np.ndarray | float = 0.0,
    dispersion_s: float = 0.0,
) -> np.ndarray:
    """``C(t) = CBF * (AIF_local conv exp(-t / MTT))(t)`` for N voxels on a fine grid.

    aif_fine : (n,) mM on a grid of step ``h_s``. cbf_per_s, mtt_s, delay_s : (N,) (CBF as a
    fraction per s: ml/100 g/min / 6000). The local AIF is the AIF dispersed
    (:func:`dispersed_aif`) and delayed by ``delay_s`` (linear interpolation).
    Returns (N, n) mM.
    """
    cbf = np.asarray(cbf_per_s, dtype=np.float64).reshape(-1)
    mtt = np.asarray(mtt_s, dtype=np.float64).reshape(-1)
    aif = dispersed_aif(aif_fine, h_s, dispersion_s)
    conc = cbf[:, None] * exponential_filter(np.broadcast_to(aif, (cbf.size, aif.size)), h_s, mtt)
    delay = np.broadcast_to(np.asarray(delay_s, dtype=np.float64).reshape(-1), cbf.shape)
    if np.any(delay != 0):
        pos = np.arange(aif.size)[None, :] - delay[:, None] / h_s
        lo = np.clip(np.floor(pos).astype(np.int64), 0, aif.size - 1)
        hi = np.clip(lo + 1, 0, aif.size - 1)
        frac = np.clip(pos - np.floor(pos), 0, 1)
        rows = np.arange(cbf.size)[:, None]
        shifted = (1 - frac) * conc[rows, lo] + frac * conc[rows, hi]
        conc = np.where(pos < 0, 0.0, shifted)
    return conc


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], sigma_vox: float) -> np.ndarray:
    """A unit-std smooth Gaussian random field (Gaussian-filtered white noise)."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal(tuple(shape)), sigma_vox, mode="reflect")
    return ((f - f.mean()) / max(f.std(), 1e-12)).astype(np.float64)


def perfusion_maps(
    fractions: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    *,
    voxel_mm: float,
    variation: float = 0.15,
    variation_fwhm_mm: float = 20.0,
    table: Mapping[str, tuple[float, float]] = TISSUE_PERFUSION,
) -> tuple[np.ndarray, np.ndarray]:
    """True CBV (ml/100 g) and CBF (ml/100 g/min) maps: partial-volume mix of the tissue
    values times smooth lognormal fields (independent for CBV and CBF, so MTT varies).

    fractions : tissue -> (x, y, z) volume fractions. Returns two (x, y, z) float64 maps.
    """
    shape = next(iter(fractions.values())).shape
    cbv = np.zeros(shape)
    cbf = np.zeros(shape)
    for name, frac in fractions.items():
        v, f = table.get(name, (0.0, 0.0))
        cbv += v * frac
        cbf += f * frac
    sigma = variation_fwhm_mm / 2.355 / voxel_mm
    if variation > 0:
        cbv *= np.exp(variation * _smooth_field(rng, shape, sigma))
        cbf *= np.exp(variation * _smooth_field(rng, shape, sigma))
    return cbv, cbf


@dataclass
class DSCSimulation:
    """One simulated DSC series and its truth.

    signal : (x, y, z, t) float32, the series (arbitrary units, GM baseline ~1).
    times_s : (t,) s. protocol : the :class:`DSCProtocol`.
    cbv, cbf, mtt : (x, y, z) float32 true maps (ml/100 g, ml/100 g/min, s; 0 where no flow).
    delay_s : (x, y, z) tissue arrival delay after the AIF.
    aif : (t,) mM, the arterial concentration (undelayed) at the acquisition times.
    aif_mask : (x, y, z) bool, the arterial voxels. brain_mask : (x, y, z) bool.
    masks : "tumour", "enhancing", "necrosis", "oedema" -> (x, y, z) bool (may be empty).
    s0 : (x, y, z) baseline signal. noise_sigma : Gaussian noise std (0 if noiseless).
    delta_r2star : (x, y, z, t) float32 true Delta R2* (s^-1), or None (``keep_truth=False``).
    affine : (4, 4) voxel -> mm.
    """

    signal: np.ndarray
    times_s: np.ndarray
    protocol: DSCProtocol
    cbv: np.ndarray
    cbf: np.ndarray
    mtt: np.ndarray
    delay_s: np.ndarray
    aif: np.ndarray
    aif_mask: np.ndarray
    brain_mask: np.ndarray
    masks: dict[str, np.ndarray]
    s0: np.ndarray
    noise_sigma: float
    affine: np.ndarray
    delta_r2star: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def volume(self, source: str = "simulated DSC"):
        """The series as a :class:`~mrenhance.volume.Volume` with its timing metadata."""
        from mrenhance.volume import Volume

        meta = {
            "source": source,
            "tr_s": float(self.protocol.tr_s),
            "te_s": float(self.protocol.te_s),
            "times_s": np.asarray(self.times_s, dtype=np.float64),
            "dose": float(self.protocol.dose),
        }
        return Volume(self.signal.astype(np.float32), self.affine.copy(), meta)


def _artery_fraction(brain: np.ndarray, peak: float) -> np.ndarray:
    """Two vertical arteries (along z) in the lateral sulci, blood fraction ramped over
    ~1.5 voxels (choice: the subject generator has no vessel tree)."""
    shape = brain.shape
    coords = np.argwhere(brain)
    if coords.size == 0:
        return np.zeros(shape)
    lo, hi = coords.min(0), coords.max(0)
    cx, cy = (lo[:2] + hi[:2]) / 2.0
    half_x, half_y = (hi[0] - lo[0]) / 2.0, (hi[1] - lo[1]) / 2.0
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    frac2d = np.zeros(shape[:2])
    for side in (-1, 1):
        ax, ay = cx + side * 0.42 * half_x, cy + 0.12 * half_y
        r = np.hypot(x - ax, y - ay)
        frac2d = np.maximum(frac2d, np.clip(1.0 - r / 1.5, 0, 1))
    return peak * frac2d[:, :, None] * brain.astype(np.float64)


def simulate_dsc(
    subject: Any,
    rng: np.random.Generator,
    protocol: DSCProtocol | None = None,
    *,
    z_range: tuple[int, int] | None = None,
    truth: Mapping[str, np.ndarray] | None = None,
    noise: np.ndarray | None = None,
    keep_truth: bool = False,
    oversample: int = 10,
) -> DSCSimulation:
    """Simulate a DSC series of ``subject`` (a :class:`~mrenhance.simulate.subjects.Subject`).

    Parameters
    ----------
    subject : its ``fractions``, ``brain_mask``, ``lesion_masks`` and ``affine`` are used.
    rng : draws the smooth CBV/CBF/delay fields and the noise (the only randomness).
    protocol : acquisition and contrast; default :class:`DSCProtocol`.
    z_range : simulate only axial slices [z0, z1) (the affine is shifted accordingly).
    truth : reuse ``{"cbv", "cbf", "delay_s"}`` maps (the same subject at another dose).
    noise : reuse a (x, y, z, t) unit-normal noise draw (scaled by the noise sigma), so two
        doses of one subject differ only by the contrast.
    keep_truth : keep the (x, y, z, t) true Delta R2* in the result.
    oversample : fine time steps per TR for the convolution.

    Returns
    -------
    :class:`DSCSimulation`.
    """
    p = protocol or DSCProtocol()
    z0, z1 = z_range if z_range is not None else (0, subject.brain_mask.shape[2])
    sl = (slice(None), slice(None), slice(z0, z1))
    fractions = {k: np.asarray(v[sl], dtype=np.float64) for k, v in subject.fractions.items()}
    brain = np.asarray(subject.brain_mask[sl], dtype=bool)
    affine = np.asarray(subject.affine, dtype=np.float64).copy()
    affine[:3, 3] += affine[:3, 2] * z0
    voxel_mm = float(np.linalg.norm(affine[:3, 0]))
    shape = brain.shape

    if truth is None:
        cbv, cbf = perfusion_maps(
            fractions,
            rng,
            voxel_mm=voxel_mm,
            variation=p.variation,
            variation_fwhm_mm=p.variation_fwhm_mm,
        )
        field01 = _smooth_field(rng, shape, p.variation_fwhm_mm / 2.355 / voxel_mm)
        field01 = (field01 - field01.min()) / max(np.ptp(field01), 1e-12)
        d0, d1 = p.delay_range_s
        delay = d0 + (d1 - d0) * field01
    else:
        cbv = np.asarray(truth["cbv"], dtype=np.float64)
        cbf = np.asarray(truth["cbf"], dtype=np.float64)
        delay = np.asarray(truth["delay_s"], dtype=np.float64)
    flow = cbf > 1e-6
    mtt = np.where(flow, cbv / np.maximum(cbf, 1e-12) * 60.0, 0.0)  # s

    # fine time grid, then sample every TR
    h = p.tr_s / oversample
    t_fine = np.arange(p.n_frames * oversample) * h
    aif_fine = arterial_input_function(t_fine, p)
    idx = np.flatnonzero(flow.ravel())
    conc = np.zeros((brain.size, p.n_frames))
    if idx.size:
        c = tissue_concentration(
            aif_fine,
            h,
            cbf.ravel()[idx] / 6000.0,
            mtt.ravel()[idx],
            delay_s=delay.ravel()[idx],
            dispersion_s=p.dispersion_s,
        )
        conc[idx] = c[:, ::oversample]
    aif = aif_fine[::oversample]
    artery = _artery_fraction(brain, p.artery_blood_fraction).ravel()
    conc = (1 - artery[:, None]) * conc + artery[:, None] * aif[None, :]
    dr2 = p.r2star_per_mm_s * conc

    masks = {
        k: np.asarray(subject.lesion_masks[k][sl], dtype=bool)
        for k in ("tumour", "enhancing", "necrosis", "oedema")
        if k in subject.lesion_masks
    }
    if p.leakage_k2_per_s > 0 and "enhancing" in masks:
        leak = masks["enhancing"].ravel()
        # BSW: T1-dominant leakage lowers the apparent Delta R2* by K2 * int_0^t Delta R2*
        cum = np.cumsum(dr2[leak], axis=1) * p.tr_s
        dr2[leak] = dr2[leak] - p.leakage_k2_per_s * cum

    s0 = np.zeros(shape)
    for name, frac in fractions.items():
        s0 += BASELINE_SIGNAL.get(name, 0.0) * frac
    signal = s0.reshape(-1, 1) * np.exp(-p.te_s * dr2)
    sigma = 0.0
    if p.snr is not None:
        sigma = float(s0[brain].mean() / p.snr) if brain.any() else 0.0
        draw = noise if noise is not None else rng.standard_normal((*shape, p.n_frames))
        signal = signal + sigma * np.asarray(draw).reshape(-1, p.n_frames)
    return DSCSimulation(
        signal=signal.reshape(*shape, p.n_frames).astype(np.float32),
        times_s=p.times_s,
        protocol=p,
        cbv=cbv.astype(np.float32),
        cbf=cbf.astype(np.float32),
        mtt=mtt.astype(np.float32),
        delay_s=delay.astype(np.float32),
        aif=aif,
        aif_mask=(artery.reshape(shape) > 0.5 * p.artery_blood_fraction),
        brain_mask=brain,
        masks=masks,
        s0=s0.astype(np.float32),
        noise_sigma=sigma,
        affine=affine,
        delta_r2star=dr2.reshape(*shape, p.n_frames).astype(np.float32) if keep_truth else None,
    )


def low_dose_eq1(
    signal: np.ndarray,
    dose: float,
    *,
    window: int = 5,
    n_baseline: int = 5,
) -> np.ndarray:
    """The paper's Eq. 1: ``S_d(t) = S(t) - (1 - d) * (mean_w S(t) - S(0))``.

    signal : (..., t) float, the full-dose series. dose : d in [0, 1]. window : frames of
    the centred local temporal mean (edges: nearest). n_baseline : frames averaged into S(0)
    (the pre-bolus frames). Keeps the full-dose noise; assumes the signal is linear in the
    concentration (Sec. 2), which the exponential signal model breaks at large signal drops.
    Returns (..., t) float32.
    """
    from scipy.ndimage import uniform_filter1d

    if not 0 <= dose <= 1:
        raise InputError(f"low_dose_eq1: dose must be in [0, 1], got {dose}")
    s = np.asarray(signal, dtype=np.float32)
    if window < 1 or n_baseline < 1 or n_baseline > s.shape[-1]:
        raise InputError(f"low_dose_eq1: bad window {window} or n_baseline {n_baseline}")
    local = uniform_filter1d(s, size=int(window), axis=-1, mode="nearest")
    s0 = s[..., :n_baseline].mean(axis=-1, keepdims=True)
    return (s - (1.0 - dose) * (local - s0)).astype(np.float32)
