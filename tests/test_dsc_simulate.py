"""DSC forward model with truth (simulate/dsc.py) and the paper's low-dose Eq. 1."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.errors import InputError
from mrenhance.simulate import dsc as D


@pytest.fixture(scope="module")
def subject():
    from mrenhance.simulate import subjects as S

    return S.draw_subject(np.random.default_rng(3), voxel_mm=4.0, lesions=("tumour",))


def _slab(subject, n=4):
    zc = int(np.argwhere(subject.lesion_masks["tumour"]).mean(axis=0)[2])
    return (zc - n // 2, zc - n // 2 + n)


def test_gamma_variate_peaks_where_and_as_high_as_asked():
    t = np.arange(0, 40, 0.01)
    g = D.gamma_variate(t, arrival_s=10, alpha=3, beta_s=1.5, peak=7.0)
    assert g.max() == pytest.approx(7.0, rel=1e-4)
    assert t[g.argmax()] == pytest.approx(10 + 3 * 1.5, abs=0.02)
    assert np.all(g[t <= 10] == 0)


def test_tissue_curves_hold_the_cbv_by_area_ratio():
    p = D.DSCProtocol(n_frames=90)
    h = p.tr_s / 10
    aif = D.arterial_input_function(np.arange(900) * h, p)
    cbv = np.array([2.0, 4.0, 9.0])  # ml/100 g
    cbf = np.array([25.0, 60.0, 110.0])  # ml/100 g/min
    conc = D.tissue_concentration(aif, h, cbf / 6000, cbv / cbf * 60, delay_s=1.0)
    np.testing.assert_allclose(100 * conc.sum(1) / aif.sum(), cbv, rtol=2e-3)
    # the residue's value at 0 is 1: the initial slope is CBF * AIF
    assert conc[:, 0].max() == 0


def test_simulated_series_has_its_truth(subject):
    sim = D.simulate_dsc(subject, np.random.default_rng(0), z_range=_slab(subject))
    x, y, z, t = sim.signal.shape
    assert (z, t) == (4, 60) and sim.cbv.shape == (x, y, z)
    gm = subject.fractions["gm"][..., slice(*_slab(subject))] > 0.9
    wm = subject.fractions["wm"][..., slice(*_slab(subject))] > 0.9
    assert 3.0 < np.median(sim.cbv[gm]) < 5.0 and 1.5 < np.median(sim.cbv[wm]) < 2.5
    assert 45 < np.median(sim.cbf[gm]) < 75 and 18 < np.median(sim.cbf[wm]) < 32
    flow = sim.cbf > 0
    np.testing.assert_allclose(sim.mtt[flow], 60 * sim.cbv[flow] / sim.cbf[flow], rtol=1e-4)
    rim = sim.masks["enhancing"]
    assert rim.any() and sim.cbv[rim].mean() > 1.5 * np.median(sim.cbv[gm])
    assert sim.aif_mask.any() and not (sim.aif_mask & ~sim.brain_mask).any()
    # the noise matches the requested baseline SNR
    base = sim.signal[sim.brain_mask][:, :8]
    noise = (base - base.mean(axis=1, keepdims=True)).std() * np.sqrt(8 / 7)
    assert noise == pytest.approx(sim.s0[sim.brain_mask].mean() / 40.0, rel=0.1)
    vol = sim.volume()
    assert vol.meta["tr_s"] == 1.0 and vol.data.shape == sim.signal.shape


def test_same_seed_same_series(subject):
    a = D.simulate_dsc(subject, np.random.default_rng(5), z_range=_slab(subject, 2))
    b = D.simulate_dsc(subject, np.random.default_rng(5), z_range=_slab(subject, 2))
    assert np.array_equal(a.signal, b.signal) and np.array_equal(a.cbv, b.cbv)


def test_eq1_is_exact_for_a_linear_signal_and_identity_at_full_dose():
    t = np.arange(60.0)
    conc = D.gamma_variate(t, arrival_s=10, alpha=3, beta_s=3.0, peak=1.0)
    s = 100 - 20 * conc  # the paper's linear model, slow dynamics, no noise
    for d in (0.5, 0.25):
        sd = D.low_dose_eq1(s, d, window=3, n_baseline=5)
        # the local mean smooths the bolus a little: 2.5 % of the drop with a 3-frame window
        np.testing.assert_allclose(sd, 100 - 20 * d * conc, atol=0.5)
    np.testing.assert_allclose(D.low_dose_eq1(s, 1.0), s, atol=1e-4)
    with pytest.raises(InputError, match="dose"):
        D.low_dose_eq1(s, 1.5)


def test_eq1_misses_the_exponential_where_the_signal_drop_is_large(subject):
    """Eq. 1 assumes S linear in C; with S0 exp(-TE r2* C) the error grows with the drop."""
    rng = np.random.default_rng(1)
    slab = _slab(subject)
    p = D.DSCProtocol(snr=None)
    full = D.simulate_dsc(subject, rng, p, z_range=slab)
    truth = {"cbv": full.cbv, "cbf": full.cbf, "delay_s": full.delay_s}
    from dataclasses import replace

    low = D.simulate_dsc(subject, rng, replace(p, dose=0.25), z_range=slab, truth=truth)
    eq1 = D.low_dose_eq1(full.signal, 0.25, window=1)
    err = np.abs(eq1 - low.signal).max(axis=-1) / np.maximum(full.s0, 1e-6)
    wm = subject.fractions["wm"][..., slice(*slab)] > 0.9
    rim = full.masks["enhancing"]
    assert np.median(err[rim]) > 2 * np.median(err[wm])
    assert np.median(err[full.aif_mask]) > np.median(err[wm])


def _fwhm_s(curve, h_s):
    return float(np.count_nonzero(curve >= 0.5 * curve.max()) * h_s)


def test_dispersion_lowers_delays_and_widens_the_aif_but_keeps_its_area():
    h = 0.1
    t = np.arange(900) * h
    aif = D.arterial_input_function(t, D.DSCProtocol(n_frames=90))
    np.testing.assert_array_equal(D.dispersed_aif(aif, h, 0.0), aif)
    previous = aif
    for tau in (1.0, 2.0, 4.0):  # each longer time constant disperses more
        local = D.dispersed_aif(aif, h, tau)
        assert local.max() < 0.95 * previous.max()
        assert t[local.argmax()] > t[previous.argmax()] + 0.5
        assert _fwhm_s(local, h) > _fwhm_s(previous, h) + 0.3
        assert local.sum() == pytest.approx(aif.sum(), rel=0.02)  # a unit-area kernel
        previous = local


def test_recirculation_adds_a_later_wider_pass_of_its_share_of_the_area():
    from dataclasses import replace

    h = 0.1
    t = np.arange(900) * h
    p = D.DSCProtocol(n_frames=90)  # recirculation 0.15 of the area, 8 s after the arrival
    first = D.arterial_input_function(t, replace(p, recirculation_fraction=0.0))
    second = D.arterial_input_function(t, p) - first
    assert np.all(second[t <= p.arrival_s + p.recirculation_delay_s] == 0)
    assert second.sum() == pytest.approx(p.recirculation_fraction * first.sum(), rel=0.01)
    # its peak: arrival + delay + alpha * (2 beta), twice as wide as the first pass
    assert t[second.argmax()] == pytest.approx(10 + 8 + 3 * 3.0, abs=0.2)
    assert _fwhm_s(second, h) == pytest.approx(2 * _fwhm_s(first, h), rel=0.05)
    assert t[first.argmax()] == pytest.approx(14.5, abs=0.1) and first.max() == 8.0

    # at the default 8 s it is a shoulder on the first pass's tail (DSCProtocol); a later
    # recirculation is a second bump: the curve falls, rises again by > 30 %, falls
    def dips(curve):
        return np.flatnonzero((np.diff(curve[:-1]) < 0) & (np.diff(curve[1:]) >= 0)) + 1

    assert dips(first + second).size == 0
    late = D.arterial_input_function(t, replace(p, recirculation_delay_s=12.0))
    (dip,) = dips(late)
    assert 20 < t[dip] < 30 and late[dip:].max() > 1.3 * late[dip]
