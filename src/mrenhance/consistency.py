"""Data consistency for super-resolved images: keep what the input measured.

An SR network's output should agree with its input wherever the input is a faithful
measurement. For a k-space truncation (a zero-filled input, mDCSRN Sec. 2.6; also a
scanner's "interpolated" reconstruction) that is the measured band: along an axis whose
spectrum falls off a cliff at some frequency and is flat beyond it (zero, or a noise floor),
the frequencies below the cliff were measured. :func:`detect_kspace_cutoffs` finds the cliff
from the input alone; :func:`kspace_consistency` replaces the output's measured band by the
input's (hard data consistency, as the data-consistency layers of Schlemper et al., IEEE
TMI 2018, in the noise-free limit). For a noise-free truncation this can only lower the
error against the truth: the error left is the output's error outside the measured band.

What is not detected: magnitude images of a truncated *zero-background* volume (the MNI
template, skull-stripped data), whose rectified Gibbs lobes fill the unmeasured band to a
few dB below the measured one (measured on the MNI T1: a 4-6 dB step with a falling tail),
and every other degradation (thick slices). Of those, inputs with the signature of thick
slices (one blurred axis) get :func:`self_check_weight`'s blend under the default
``consistency="auto"`` (``tasks.sr_t1.SRT1Task.run_network``); the rest get the network
output as is.

Shapes: (x, y, z) float32 arrays on one grid; frequencies in DFT bins (0 .. n // 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: a cliff of at least this many dB between the last two measured and the first two
#: unmeasured bins (choice: a natural image's spectrum falls 1-4 dB per two bins; a zero-filled
#: band 35-70 dB, a band with added noise at SNR 20 about 9 dB, measured on the real scans of
#: benchmarks/sr_real.py)
MIN_STEP_DB = 6.0
#: the spectrum beyond the cliff must be flat to within this many dB, or half the step
FLAT_DB = 3.0
#: slab of planes per FFT chunk (memory: one chunk of complex64 at a time)
_CHUNK_VOXELS = 1 << 24


def _chunks(n: int, per_plane: int) -> list[slice]:
    step = max(1, _CHUNK_VOXELS // max(per_plane, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _slabs(shape: Sequence[int], axis: int) -> list[tuple[slice, ...]]:
    """Index tuples of slabs of ``shape`` along ``axis``, each about ``_CHUNK_VOXELS``."""
    n = int(shape[axis])
    out = []
    for part in _chunks(n, int(np.prod(shape)) // max(n, 1)):
        index = [slice(None)] * len(shape)
        index[axis] = part
        out.append(tuple(index))
    return out


def axis_power(image: np.ndarray, axis: int) -> np.ndarray:
    """Power spectrum of ``image`` along ``axis``, summed over the other axes.

    image : (x, y, z). Returns (n // 2 + 1,) float64, bin k = |k| cycles per n voxels
    (real FFT along ``axis``, computed in slabs along another axis to bound memory).
    """
    data = np.asarray(image, dtype=np.float32)
    other = next(a for a in range(data.ndim) if a != axis)
    power = np.zeros(data.shape[axis] // 2 + 1)
    sum_axes = tuple(a for a in range(data.ndim) if a != axis)
    for index in _slabs(data.shape, other):
        spectrum = np.fft.rfft(data[index], axis=axis)
        power += (spectrum.real**2 + spectrum.imag**2).sum(axis=sum_axes)
    return power


def find_cliff(power: np.ndarray, *, min_step_db: float = MIN_STEP_DB) -> int | None:
    """The first unmeasured bin of a truncated spectrum, or None when there is no cliff.

    power : (m,) power per bin, bin 0 the mean. A cliff at bin c: the mean level (dB) of
    bins c-2, c-1 exceeds that of bins c, c+1 by >= ``min_step_db``, bins c.. are flat
    to within max(``FLAT_DB``, half the step), and at least three bins lie beyond c (a
    low last bin alone is no truncation). The largest such step wins.
    """
    level = 10.0 * np.log10(np.asarray(power, dtype=np.float64) + 1e-30)
    best, where = 0.0, None
    for c in range(2, level.size - 2):
        inside = level[max(c - 2, 1) : c].mean()
        outside = level[c : c + 2].mean()
        step = inside - outside
        spread = level[c:].max() - level[c:].min()
        if step > best and spread < max(FLAT_DB, 0.5 * step):
            best, where = step, c
    return where if best >= min_step_db else None


def detect_kspace_cutoffs(
    image: np.ndarray, *, min_step_db: float = MIN_STEP_DB, min_size: int = 8
) -> tuple[int | None, ...]:
    """Per axis, the first unmeasured frequency bin of a zero-filled input, or None.

    image : (x, y, z). Axes shorter than ``min_size`` voxels are never called truncated
    (too few bins to tell a cliff from the spectrum's own shape).
    """
    data = np.asarray(image, dtype=np.float32)
    cuts: list[int | None] = []
    for axis in range(data.ndim):
        if data.shape[axis] < min_size:
            cuts.append(None)
            continue
        power = axis_power(data, axis)
        if data.shape[axis] % 2 == 0:
            power = power[:-1]  # the Nyquist bin: one real coefficient, no guide to a cliff
        cuts.append(find_cliff(power, min_step_db=min_step_db))
    return tuple(cuts)


def _lowpass_along(array: np.ndarray, axis: int, cut: int) -> None:
    """In place: keep DFT bins |k| < ``cut`` of ``array`` along ``axis``."""
    other = next(a for a in range(array.ndim) if a != axis)
    n = array.shape[axis]
    drop = [slice(None)] * array.ndim
    drop[axis] = slice(cut, None)
    for index in _slabs(array.shape, other):
        spectrum = np.fft.rfft(array[index], axis=axis)
        spectrum[tuple(drop)] = 0
        array[index] = np.fft.irfft(spectrum, n=n, axis=axis)


def band_project(array: np.ndarray, cuts: Sequence[int | None]) -> np.ndarray:
    """In place and returned: the separable low-pass projection of ``array``.

    Keeps DFT bins |k| < cuts[axis] along every axis with a cut (None: the axis is left
    whole). array : (x, y, z) float32, overwritten.
    """
    for axis, cut in enumerate(cuts):
        if cut is not None:
            _lowpass_along(array, axis, int(cut))
    return array


def kspace_consistency(
    output: np.ndarray, measured: np.ndarray, cuts: Sequence[int | None]
) -> np.ndarray:
    """In place on ``output`` and returned: its measured band replaced by ``measured``'s.

    output = output + P(measured - output), P = :func:`band_project` with ``cuts``. Both
    (x, y, z) float32 on one grid and one intensity scale. With no cut, ``output`` as is.
    """
    if all(c is None for c in cuts):
        return output
    measured = np.asarray(measured, dtype=np.float32)
    free = [a for a, c in enumerate(cuts) if c is None]
    if not free:  # every axis truncated: one volume-sized difference
        difference = measured - output
        output += band_project(difference, cuts)
        return output
    # P acts along the truncated axes only: slabs along an untruncated axis are independent,
    # so the difference never needs more than one slab (a 512^3 volume stays ~2 copies)
    for index in _slabs(output.shape, free[0]):
        difference = measured[index] - output[index]
        output[index] += band_project(difference, cuts)
    return output


#: TV weight of :func:`tv_consistency` on the normalised scale (input / its 99.5th head
#: percentile). Chosen on 16 synthetic validation scans (``simulate.subjects``, 1.5-5 mm
#: voxels, five contrasts, seed 777; never a real scan) under k-space 2x2: mean gain over
#: the input of ``mdcsrn-b4u4-synth`` + TV-DC at 0.01 / 0.02 / 0.04 (20 iterations):
#: +1.05 / +1.03 / +0.88 dB, against +0.56 dB for hard consistency alone (docs/sr_t1.md).
TV_WEIGHT = 0.01
#: iterations of :func:`tv_consistency` (same validation: 10 / 20 / 40 gave +0.97 / +1.05 /
#: +1.08 dB; 20 is the choice for time, ~1.3 s a pass on a 197x233x189 volume)
TV_ITERATIONS = 20


def tv_consistency(
    output: np.ndarray,
    measured: np.ndarray,
    cuts: Sequence[int | None],
    *,
    weight: float = TV_WEIGHT,
    iterations: int = TV_ITERATIONS,
) -> np.ndarray:
    """Total-variation regularised reconstruction of the unmeasured band, from ``output``.

    Compressed sensing with a TV prior (Lustig, Donoho & Pauly, MRM 2007; Block et al.,
    MRM 2007), solved by alternating projections: ``x <- P_dc(TV(x))``, where TV is
    Chambolle's TV denoiser (``skimage.restoration.denoise_tv_chambolle``) at ``weight``
    and P_dc replaces the measured band by ``measured``'s (:func:`kspace_consistency`),
    then clips to >= 0 (a magnitude image). Started from the network output, so the
    network's prior fills the band and TV removes what is not piecewise smooth (the
    network's ringing and texture); every iterate keeps the measured band exactly.

    output, measured : (x, y, z) float32 on one grid, normalised (``weight`` is on that
    scale). cuts : per axis the first unmeasured bin (:func:`detect_kspace_cutoffs`);
    with no cut, ``output`` is returned as is. Returns a new (x, y, z) float32 array;
    neither input is modified. Memory: ~4 volume-sized float32 arrays at a time.
    """
    from skimage.restoration import denoise_tv_chambolle

    if weight <= 0 or iterations < 1:
        raise ValueError(f"tv_consistency: weight {weight} and iterations {iterations} must be > 0")
    x = np.array(output, dtype=np.float32, copy=True)
    if all(c is None for c in cuts):
        return x
    measured = np.asarray(measured, dtype=np.float32)
    for _ in range(int(iterations)):
        x = np.asarray(denoise_tv_chambolle(x, weight=float(weight)), dtype=np.float32)
        kspace_consistency(x, measured, cuts)
        np.clip(x, 0, None, out=x)
    return x


def self_check_weight(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    axis: int,
    mask: np.ndarray | None = None,
    *,
    spacing_vox: int = 2,
    fwhm_vox: float = 2.0,
) -> tuple[float, dict[str, float]]:
    """How much of the network to keep where no measured band is detected (choice, beyond
    the paper): judged on the input's own high-resolution axis.

    The input ``y`` (x, y, z; normalised) is degraded once more along ``axis``, one it keeps
    its high frequencies along (``tasks.sr_t1.high_resolution_axes``), by a thick-slice
    acquisition (Gaussian profile ``fwhm_vox``, one slice every ``spacing_vox`` voxels,
    cubic back to the grid; ``simulate.kspace.thick_slice``): ``y'``. The network ``run``
    restores it, ``f' = run(y')``, and ``y`` is the truth of that check (the idea of SMORE,
    Zhao et al., and of ZSSR: a scan's sharp axes show what its blurred axis lost). The
    blend ``y' + w (f' - y')`` is closest to ``y`` inside ``mask`` at

        w = <f' - y', y - y'> / |f' - y'|^2,   clipped to [0, 1];

    the output is then ``y + w (run(y) - y)``. A network that makes the check worse than its
    input gets 0 (the input, unchanged); one that restores it perfectly gets 1. It assumes
    the network treats the input's own degradation as it treats the check's (the same kind
    of blur, one axis further): the same assumption as the split-half weight of the ASL task
    (``tasks.asl.split_half_weight``), and as blind to a degradation the check does not
    imitate. Cost: one more network pass. Returns ``(w, info)`` with the check's PSNR gain
    in dB (in ``mask``, any data range) of the raw network and of the blend over ``y'``,
    and ``weight_band``: the same weight measured only on the band the check removed (above
    the slices' Nyquist along ``axis``), kept for comparison (docs/sr_t1.md, "Fifth
    attempt": less cautious, and worse on thick slices).
    """
    from mrenhance.simulate.kspace import thick_slice

    y = np.asarray(image, dtype=np.float32)
    m = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    degraded = np.clip(
        thick_slice(y, int(spacing_vox), axis=int(axis), profile="gaussian", fwhm_vox=fwhm_vox),
        0,
        None,
    ).astype(np.float32)
    restored = np.asarray(run(degraded), dtype=np.float32)
    change, lost = restored - degraded, y - degraded
    d = change[m].astype(np.float64)
    r = lost[m].astype(np.float64)
    energy = float((d * d).sum())
    w = float(np.clip((d * r).sum() / energy, 0.0, 1.0)) if energy > 0 else 0.0
    base = float((r * r).mean()) if r.size else 0.0
    # the same weight on the band the check removed only (|k| above the slices' Nyquist
    # along ``axis``): blind to what the network changes along the input's own blurred axes
    cut = 1.0 / (2.0 * float(spacing_vox))
    db = _highpass_along(change, int(axis), cut)[m].astype(np.float64)
    rb = _highpass_along(lost, int(axis), cut)[m].astype(np.float64)
    energy_b = float((db * db).sum())
    w_band = float(np.clip((db * rb).sum() / energy_b, 0.0, 1.0)) if energy_b > 0 else 0.0

    def gain(err: np.ndarray) -> float:
        e = float((err * err).mean()) if err.size else 0.0
        if not (base > 0 and e > 0):
            return 0.0
        return float(10.0 * np.log10(base / e))

    info = {
        "check_axis": int(axis),
        "check_gain_db": round(gain(r - d), 3),
        "check_blend_gain_db": round(gain(r - w * d), 3),
        "weight_whole": round(w, 4),
        "weight_band": round(w_band, 4),
    }
    return w, info


def _highpass_along(array: np.ndarray, axis: int, cut: float) -> np.ndarray:
    """``array`` with its frequencies at or below ``cut`` (cycles/voxel) along ``axis`` removed."""
    n = array.shape[axis]
    spectrum = np.fft.rfft(np.asarray(array, dtype=np.float32), axis=axis)
    keep = np.fft.rfftfreq(n) > cut
    shape = [1] * array.ndim
    shape[axis] = keep.size
    spectrum *= keep.reshape(shape)
    return np.fft.irfft(spectrum, n=n, axis=axis).astype(np.float32)
