"""Data consistency of SR outputs (mrenhance.consistency, SRT1Task.run_network)."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance import consistency as dc
from mrenhance.simulate.kspace import thick_slice, truncate_kspace


def _phantom(shape=(40, 36, 32), seed=0) -> np.ndarray:
    """A head-like image: a smooth random field with a 1/f-ish spectrum inside an ellipsoid."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = sum(gaussian_filter(rng.standard_normal(shape), s) * s for s in (1.0, 2.0, 4.0))
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    head = gaussian_filter((sum(g**2 for g in grid) < 0.7).astype(float), 1.0)
    tissue = 1.0 + 0.4 * field / np.abs(field).max()
    return (0.05 + head * tissue).astype(np.float32)  # a scan's background is not zero


def test_detects_the_truncated_axes_and_nothing_else():
    hr = _phantom()
    lr = truncate_kspace(hr, (2, 2, 1), output="same_grid")
    cuts = dc.detect_kspace_cutoffs(lr)
    assert cuts[2] is None
    for axis in (0, 1):
        n = hr.shape[axis]
        assert cuts[axis] is not None and abs(cuts[axis] - n // 4) <= 1
    assert dc.detect_kspace_cutoffs(hr) == (None, None, None)
    thick = thick_slice(hr, 2, axis=2, profile="gaussian", fwhm_vox=2.0)
    assert dc.detect_kspace_cutoffs(thick)[0:2] == (None, None)


def test_detects_a_truncation_under_noise():
    hr = _phantom()
    lr = truncate_kspace(hr, (2, 1, 1), output="same_grid")
    noisy = lr + np.random.default_rng(1).normal(0, 0.01, lr.shape).astype(np.float32)
    cuts = dc.detect_kspace_cutoffs(noisy)
    assert cuts[0] is not None and cuts[1:] == (None, None)


def test_consistency_never_adds_error_on_a_noise_free_truncation():
    hr = _phantom()
    lr = truncate_kspace(hr, (2, 2, 1), output="same_grid")
    cuts = dc.detect_kspace_cutoffs(lr)
    rng = np.random.default_rng(2)
    guess = (hr + rng.normal(0, 0.05, hr.shape)).astype(np.float32)  # a noisy "network"
    before = float(np.sum((guess - hr) ** 2))
    fixed = dc.kspace_consistency(guess.copy(), lr, cuts)
    after = float(np.sum((fixed - hr) ** 2))
    assert after < before
    # the measured band is the input's
    np.testing.assert_allclose(
        dc.band_project(fixed.copy(), cuts), dc.band_project(lr.copy(), cuts), atol=1e-4
    )
    # with no cut the output is left alone
    same = guess.copy()
    assert dc.kspace_consistency(same, lr, (None, None, None)) is same
    np.testing.assert_array_equal(same, guess)


def test_band_project_in_chunks_equals_one_fft(monkeypatch):
    x = _phantom(seed=3)
    cuts = (7, None, 5)
    mask = np.ones(x.shape, bool)
    for axis, c in enumerate(cuts):
        if c is None:
            continue
        n = x.shape[axis]
        k = np.minimum(np.arange(n), n - np.arange(n))
        shape = [1, 1, 1]
        shape[axis] = n
        mask &= (k < c).reshape(shape)
    expected = np.real(np.fft.ifftn(np.fft.fftn(x) * mask))
    monkeypatch.setattr(dc, "_CHUNK_VOXELS", 200)  # many slabs
    got = dc.band_project(x.copy(), cuts)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    power = dc.axis_power(x, 1)
    np.testing.assert_allclose(power.sum() > 0, True)


def test_find_cliff_needs_a_step_and_a_flat_tail():
    smooth = 10.0 ** (-np.arange(20) / 10.0)  # 1 dB per bin: no cliff
    assert dc.find_cliff(smooth) is None
    cliff = smooth.copy()
    cliff[12:] = 1e-9
    assert dc.find_cliff(cliff) == 12
    sloped = smooth.copy()
    sloped[12:] *= 1e-2 * 10.0 ** (-np.arange(8) / 2.0)  # a step, then still falling 5 dB/bin
    assert dc.find_cliff(sloped) is None


class _AddNoise:
    """A 'network' whose change is pure noise, the same each call (tensors in and out)."""

    def __call__(self, x):
        import torch

        g = torch.Generator().manual_seed(0)
        return x + 0.2 * torch.randn(x.shape, generator=g)


def test_run_network_modes():
    from scipy.ndimage import gaussian_filter

    from mrenhance.engine.grid import GridPlan
    from mrenhance.tasks import sr_t1 as sr
    from mrenhance.tasks.sr_t1 import SRT1Task

    task = SRT1Task()
    plan = GridPlan.from_legacy(48, 0, "crop")
    hr = _phantom()
    lr = truncate_kspace(hr, (2, 2, 1), output="same_grid")

    report: dict = {}
    out = task.run_network(_AddNoise(), lr, plan, consistency="off", report=report)
    assert report == {"mode": "off"} and np.abs(out - lr).max() > 0.1

    report = {}
    out = task.run_network(_AddNoise(), lr, plan, consistency="auto", report=report)
    assert report["mode"] == "kspace" and report["cutoffs"][2] is None
    # the measured band is the input's; only the unmeasured band carries the network's noise
    np.testing.assert_allclose(
        dc.band_project(out.copy(), report["cutoffs"]),
        dc.band_project(lr.copy(), report["cutoffs"]),
        atol=1e-4,
    )

    # a thick-slice input: no k-space cliff, one blurred axis; "auto" and "check" both run
    # the self-check, which sees a network that only adds noise and keeps the input
    thick = np.clip(thick_slice(hr, 2, axis=2, profile="gaussian", fwhm_vox=2.0), 0, None)
    thick = thick.astype(np.float32)
    raw = task.run_network(_AddNoise(), thick, plan, consistency="off")
    for mode in ("auto", "check"):
        report = {}
        out = task.run_network(_AddNoise(), thick, plan, consistency=mode, report=report)
        assert report["mode"] == "self-check" and report["check_axis"] in (0, 1)
        assert report["weight"] < 0.05 and report["check_gain_db"] < 0
        assert ("reason" in report) == (mode == "auto")
        assert np.abs(out - thick).max() < 0.05 * np.abs(raw - thick).max()

    # blurred along two axes (an in-plane blur, no cliff): "auto" keeps the network as is,
    # "check" still checks it
    blur = gaussian_filter(hr, sigma=(0.8, 0.8, 0)).astype(np.float32)
    assert sr.high_resolution_axes(blur)[0] == [2]
    assert not sr.thick_slice_signature(sr.high_resolution_axes(blur)[1])
    report = {}
    out = task.run_network(_AddNoise(), blur, plan, consistency="auto", report=report)
    assert report == {"mode": "none detected"}
    np.testing.assert_array_equal(out, task.run_network(_AddNoise(), blur, plan, consistency="off"))
    report = {}
    task.run_network(_AddNoise(), blur, plan, consistency="check", report=report)
    assert report["mode"] == "self-check"


def _check_case():
    hr = _phantom()
    y = np.clip(thick_slice(hr, 2, axis=2, profile="gaussian", fwhm_vox=2.0), 0, None)
    y = y.astype(np.float32)
    degraded = np.clip(thick_slice(y, 2, axis=0, profile="gaussian", fwhm_vox=2.0), 0, None)
    return y, degraded.astype(np.float32)


def test_self_check_weight_trusts_a_network_as_far_as_it_restores_the_check():
    y, degraded = _check_case()
    r = y - degraded
    assert np.abs(r).max() > 0.05  # the check does degrade the phantom
    cases = {
        "identity": (lambda x: x, 0.0),
        "perfect": (lambda x: x + r, 1.0),
        "half way": (lambda x: x + 0.5 * r, 1.0),  # the blend cannot go beyond the network
        "twice too far": (lambda x: x + 2.0 * r, 0.5),
        "the wrong way": (lambda x: x - r, 0.0),
    }
    for name, (run, expected) in cases.items():
        w, info = dc.self_check_weight(run, y, 0)
        assert w == pytest.approx(expected, abs=1e-3), name
        assert info["check_axis"] == 0 and info["check_blend_gain_db"] >= -1e-6, name
    _, info = dc.self_check_weight(cases["twice too far"][0], y, 0)
    assert info["check_gain_db"] == pytest.approx(0.0, abs=1e-2)  # 2r overshoots: error r
    assert info["check_blend_gain_db"] > 30  # the blend at 0.5 restores it


def test_self_check_weight_only_counts_the_mask_and_leaves_its_input():
    y, degraded = _check_case()
    r = y - degraded
    mask = np.zeros(y.shape, dtype=bool)
    mask[:, :, : y.shape[2] // 2] = True
    keep = y.copy()

    def run(x):  # restores the masked half, ruins the other
        return np.where(mask, x + r, x - 5 * r).astype(np.float32)

    w, _ = dc.self_check_weight(run, y, 0, mask)
    assert w == pytest.approx(1.0, abs=1e-3)
    assert dc.self_check_weight(run, y, 0)[0] < 0.2
    np.testing.assert_array_equal(y, keep)


def test_enhancer_refuses_an_unknown_consistency():
    from mrenhance.enhance_api import Enhancer
    from mrenhance.errors import InputError
    from mrenhance.models import create_model

    with pytest.raises(InputError, match="--consistency"):
        Enhancer(create_model("mdcsrn-b4u4"), "sr_t1", consistency="maybe")


def test_enhance_records_what_consistency_did(tmp_path):
    """enhance(): the default keeps a zero-filled input's band; 'off' is the raw network."""
    from mrenhance.enhance_api import Enhancer, enhance
    from mrenhance.models import create_model
    from mrenhance.volume import Volume

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = create_model("mdcsrn-b2u4", growth=4)
    lr = truncate_kspace(_phantom(), (2, 2, 1), output="same_grid")
    vol = Volume(lr, np.eye(4))
    inference = {"patch_size": 48, "overlap": 0}
    auto = enhance(vol, Enhancer(model, "sr_t1", inference=inference))
    off = enhance(vol, Enhancer(model, "sr_t1", inference=inference, consistency="off"))
    assert auto.meta["consistency"]["mode"] == "kspace"
    assert "consistency=mode:kspace" in auto.meta["provenance"][-1]
    assert off.meta["consistency"] == {"mode": "off"}
    cuts = auto.meta["consistency"]["cutoffs"]
    # scale and clipping aside, the measured band of the default output is the input's
    np.testing.assert_allclose(
        dc.band_project(auto.data.copy(), cuts), dc.band_project(lr.copy(), cuts), atol=2e-3
    )
    assert np.abs(off.data - auto.data).max() > 1e-4


def test_consistency_in_slabs_equals_one_projection(monkeypatch):
    hr = _phantom(seed=5)
    lr = truncate_kspace(hr, (2, 1, 2), output="same_grid")
    guess = (hr + np.random.default_rng(6).normal(0, 0.05, hr.shape)).astype(np.float32)
    cuts = (10, None, 8)
    whole = guess + dc.band_project(lr - guess, cuts)
    monkeypatch.setattr(dc, "_CHUNK_VOXELS", 100)  # slabs along the free axis 1
    got = dc.kspace_consistency(guess.copy(), lr, cuts)
    np.testing.assert_allclose(got, whole, atol=1e-5)


def test_cli_consistency_option(tmp_path, capsys):
    """--consistency off is the raw network; the default records its cut-offs in the sidecar;
    an unknown value is refused with exit code 2 before any work."""
    import nibabel as nib
    import torch

    from mrenhance.cli import main
    from mrenhance.io.sidecar import read_sidecar
    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights

    torch.manual_seed(0)
    card = {"task": "sr_t1", "inference": {"patch_size": 48, "overlap": 0, "blend": "crop"}}
    weights = save_weights(create_model("mdcsrn-b2u4", growth=4), tmp_path / "t.safetensors", card)
    lr = truncate_kspace(_phantom(), (2, 2, 1), output="same_grid") * 500
    src = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(lr.astype(np.float32), np.eye(4)), src)
    before = src.read_bytes()
    run = ["enhance", str(src), "--model", str(weights), "-q", "-o"]
    assert main([*run, str(tmp_path / "auto.nii.gz")]) == 0
    assert main([*run, str(tmp_path / "off.nii.gz"), "--consistency", "off"]) == 0
    auto = np.asarray(nib.load(tmp_path / "auto.nii.gz").dataobj)
    off = np.asarray(nib.load(tmp_path / "off.nii.gz").dataobj)
    assert np.abs(auto - off).max() > 1e-3
    steps = read_sidecar(tmp_path / "auto.nii.gz")["mrenhance"]["provenance"]
    assert any("consistency=mode:kspace,cutoffs:[" in s for s in steps)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*run, str(tmp_path / "x.nii.gz"), "--consistency", "maybe"])
    assert exc.value.code == 2 and not (tmp_path / "x.nii.gz").exists()
    assert src.read_bytes() == before

    # a thick-slice input: "check" records its self-check weight; the input is untouched
    thick = thick_slice(_phantom(), 2, axis=2, profile="gaussian", fwhm_vox=2.0) * 500
    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(np.clip(thick, 0, None).astype(np.float32), np.eye(4)), src)
    before = src.read_bytes()
    run = ["enhance", str(src), "--model", str(weights), "-q", "-o"]
    assert main([*run, str(tmp_path / "check.nii.gz"), "--consistency", "check"]) == 0
    meta = read_sidecar(tmp_path / "check.nii.gz")["mrenhance"]
    assert any("consistency=mode:self-check,weight:" in s for s in meta["provenance"])
    assert src.read_bytes() == before


def _blocks(shape=(40, 36, 32)) -> np.ndarray:
    """A piecewise-constant head: the image TV reconstruction is made for."""
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r2 = sum(g**2 for g in grid)
    slit = (np.abs(grid[0]) < 0.1) * (r2 < 0.3)
    image = 0.05 + 0.6 * (r2 < 0.75) + 0.3 * (r2 < 0.35) - 0.4 * slit
    return image.astype(np.float32)


def test_tv_consistency_keeps_the_band_and_lowers_the_error():
    hr = _blocks()
    lr = truncate_kspace(hr, (2, 2, 1), output="same_grid")
    cuts = dc.detect_kspace_cutoffs(lr)
    assert cuts[0] is not None and cuts[1] is not None
    before = lr.copy()
    out = dc.tv_consistency(lr, lr, cuts)
    np.testing.assert_array_equal(lr, before)  # neither input is modified
    assert out.dtype == np.float32 and out.shape == lr.shape and out.min() >= 0
    # the measured band is the input's (to the clip's effect)
    np.testing.assert_allclose(
        dc.band_project(out.copy(), cuts), dc.band_project(lr.copy(), cuts), atol=2e-3
    )
    err_in = float(np.mean((lr - hr) ** 2))
    err_tv = float(np.mean((out - hr) ** 2))
    assert err_tv < 0.8 * err_in  # Gibbs ringing of a piecewise-constant image removed
    # more iterations do not undo it; no cut: the output as is
    assert np.mean((dc.tv_consistency(lr, lr, cuts, iterations=40) - hr) ** 2) < err_in
    np.testing.assert_array_equal(dc.tv_consistency(hr, lr, (None, None, None)), hr)
    with pytest.raises(ValueError, match="weight"):
        dc.tv_consistency(lr, lr, cuts, weight=0)


def test_run_network_tv_mode_and_refusal_for_other_tasks():
    from mrenhance.engine.grid import GridPlan
    from mrenhance.enhance_api import Enhancer
    from mrenhance.errors import InputError
    from mrenhance.models import create_model
    from mrenhance.tasks.sr_t1 import SRT1Task

    task = SRT1Task()
    plan = GridPlan.from_legacy(48, 0, "crop")
    hr = _blocks()
    lr = truncate_kspace(hr, (2, 2, 1), output="same_grid")
    report: dict = {}
    tv = task.run_network(_AddNoise(), lr, plan, consistency="tv", report=report)
    assert report["mode"] == "kspace+tv" and report["tv_iterations"] == dc.TV_ITERATIONS
    hard = task.run_network(_AddNoise(), lr, plan, consistency="auto")
    # TV removes the network's noise in the unmeasured band; both keep the measured band
    assert np.mean((tv - hr) ** 2) < 0.5 * np.mean((hard - hr) ** 2)
    thick = np.clip(thick_slice(hr, 2, axis=2, profile="gaussian", fwhm_vox=2.0), 0, None)
    report = {}
    task.run_network(_AddNoise(), thick, plan, consistency="tv", report=report)
    assert report["mode"] == "self-check"  # no band to refine: as "auto"
    for mode in ("tv", "check"):
        with pytest.raises(InputError, match=f"--consistency {mode}"):
            Enhancer(create_model("dwan", channels=4, wide=8), "asl", consistency=mode)


@pytest.mark.parametrize(
    ("fractions", "thick"),
    [
        ((0.05, 0.04, 0.005), True),  # one axis lost its high frequencies
        ((0.05, 0.05, 0.025), True),  # at the ratio: thick
        ((0.05, 0.04, 0.03), False),  # three similar axes (isotropic)
        ((0.006, 0.005, 0.04), False),  # two blurred axes (an in-plane truncation)
        ((0.0, 0.0, 0.0), False),  # no high frequencies anywhere
    ],
)
def test_thick_slice_signature(fractions, thick):
    from mrenhance.tasks.sr_t1 import thick_slice_signature

    assert thick_slice_signature(fractions) is thick


def test_enhance_with_an_enhancer_refuses_options_it_would_ignore():
    """An Enhancer owns its consistency, precision and tiling: enhance() must not silently
    drop a different value given next to it."""
    from mrenhance import Volume
    from mrenhance.enhance_api import Enhancer, enhance
    from mrenhance.errors import InputError
    from mrenhance.models import create_model

    enhancer = Enhancer(create_model("mdcsrn-b2u4", growth=4).eval(), "sr_t1")
    vol = Volume(_phantom((20, 18, 16)))
    for option in ({"consistency": "off"}, {"precision": "bf16"}, {"patch_size": 16}):
        with pytest.raises(InputError, match=f"{next(iter(option))} would be ignored"):
            enhance(vol, enhancer, **option)
    default = enhance(vol, enhancer, consistency="auto", precision="fp32")  # the defaults
    assert default.data.shape == vol.data.shape
