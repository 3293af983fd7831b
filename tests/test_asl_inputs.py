"""ASL inputs: raw series without volume types, separate M0 scans (BIDS), ``asl-simulate``.

Each of these was a gap: a raw label/control series with no aslcontext.tsv was read as
per-pair CBF maps (exit 0, ~7 ml/100 g/min), a BIDS ``*_m0scan.nii.gz`` was ignored by
``enhance``, and ``asl-simulate`` simulated absurd option values and refused an existing
sub-02 only after writing all of sub-01.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mrenhance.cli import main
from mrenhance.errors import InputError
from mrenhance.io import load, save
from mrenhance.io.bids_asl import read_bids_asl, write_bids_asl
from mrenhance.simulate import asl as A
from mrenhance.tasks import _asl_cli, get_task
from mrenhance.tasks import asl as T
from mrenhance.volume import Volume

TASK = get_task("asl")
AFFINE = np.diag([3.0, 3.0, 5.0, 1.0])
SHAPE = (40, 44, 6)
PREFIX = "mrenhance: error: "


def _head(shape=SHAPE):
    """M0 (a PD-like head: CSF 1.0, GM 0.8, WM 0.7, 0 outside) and the true CBF (GM 60,
    WM 22), both (x, y, z) float32."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    r = np.hypot((x - shape[0] / 2) / (shape[0] / 2 - 2), (y - shape[1] / 2) / (shape[1] / 2 - 2))
    m0 = np.select([r < 0.55, r < 0.9, r < 1.0], [0.7, 0.8, 1.0], 0.0)
    cbf = np.select([r < 0.55, r < 0.9], [22.0, 60.0], 0.0)
    rep = (1, 1, shape[2])
    return np.tile(m0[..., None], rep).astype(np.float32), np.tile(cbf[..., None], rep)


def _pcasl(rng, n_pairs=10, *, scale=1.0, saturation=1.0, noise=A.CALIBRATED_THERMAL_NOISE):
    """A raw pCASL series as :mod:`mrenhance.simulate.asl` models one (white-paper signal,
    thermal noise ``noise`` x the GM M0 per image): (x, y, z, 2 n) control, label, ...

    ``saturation`` scales the images' tissue signal (a short TR or background
    suppression), not M0: the control images then do not stand for M0. Returns (images,
    M0 (x, y, z), true CBF (x, y, z)).
    """
    m0, cbf = _head()
    m0 = m0 * np.float32(scale)
    dm = A.difference_from_cbf(cbf, m0, A.AslProtocol(), 1.5)
    sigma = noise * 0.8 * scale
    frames = []
    for _ in range(n_pairs):
        frames.append(saturation * m0 + rng.normal(0, sigma, m0.shape))
        frames.append(saturation * m0 - dm + rng.normal(0, sigma, m0.shape))
    return np.stack(frames, -1).astype(np.float32), m0, cbf


def _per_pair_cbf(rng, n_pairs=10):
    images, _, _ = _pcasl(rng, n_pairs)
    return A.quantify_pairs(images[..., 0::2], images[..., 1::2], A.AslProtocol(), pld_s=1.5)


def _tiny_dwan_weights(path):
    import torch

    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights

    torch.manual_seed(0)
    model = create_model("dwan", channels=4, wide=8)
    card = {"task": "asl", "preprocessing": TASK.preprocessing({}, []),
            "inference": dict(T.INFERENCE)}  # fmt: skip
    return save_weights(model, path, card)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return _tiny_dwan_weights(tmp_path_factory.mktemp("w") / "tiny-dwan.safetensors")


def _cli(argv, capsys):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


# ---------------------------------------------------------------- 1. raw series, no context
@pytest.mark.parametrize(
    "what",
    ["10 pairs", "1 pair", "x 1000", "label first", "m0 first", "background suppressed"],
)
def test_raw_label_control_series_without_volume_types_is_refused(what):
    rng = np.random.default_rng(0)
    images, m0, _ = _pcasl(rng, 1 if what == "1 pair" else 10)
    data = {
        "x 1000": images * 1000,
        "label first": images[..., 1:-1],
        "m0 first": np.concatenate([m0[..., None], images], axis=-1),
        "background suppressed": images - 0.85 * m0[..., None],  # tissue at 15 % of M0
    }.get(what, images)
    assert T.looks_like_label_control(data)
    vol = Volume(data, AFFINE, {"source": "series.nii.gz"})
    with pytest.raises(InputError) as err:
        TASK.check_input(vol)
    msg = str(err.value)
    assert msg.startswith("series.nii.gz: this 4D series looks like label/control images")
    assert "aslcontext.tsv" in msg and "--asl-order" in msg and "\n" not in msg
    with pytest.raises(InputError, match="looks like label/control"):
        TASK.cbf_map(vol)  # the API's direct route is refused too


@pytest.mark.parametrize("n_pairs", [2, 10, 40])
def test_a_per_pair_cbf_series_is_still_accepted(n_pairs):
    rng = np.random.default_rng(1)
    cbf = _per_pair_cbf(rng, n_pairs)
    stats = T.series_statistics(cbf)
    assert stats["step"] > 0.5 and stats["correlation"] < 0.3  # far from the thresholds
    vol = Volume(cbf, AFFINE, {"source": "pairs.nii.gz"})
    TASK.check_input(vol)
    np.testing.assert_allclose(TASK.cbf_map(vol), cbf.mean(-1), atol=1e-4)
    _, truth = _head()
    gm = truth == 60
    assert np.mean(TASK.cbf_map(vol)[gm]) == pytest.approx(60, rel=0.15)


def test_cbf_like_series_without_negatives_or_smoothed_are_accepted():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    cbf = _per_pair_cbf(rng, 10)
    for data in (
        np.maximum(cbf, 0),  # clipped at 0 by some pipeline
        gaussian_filter(cbf, (2, 2, 0.5, 0)),  # smoothed maps
        rng.normal(50, 10, (40, 40, 4, 6)),  # a per-pair SNR of 5, no value < 0
    ):
        assert not T.looks_like_label_control(data), T.series_statistics(data)
        TASK.check_input(Volume(data.astype(np.float32), AFFINE, {}))


def test_a_volume_type_says_what_the_series_is_whatever_it_looks_like():
    rng = np.random.default_rng(3)
    images, _, truth = _pcasl(rng, 10)
    ordered = Volume(images, AFFINE, {"asl_order": "control,label"})
    TASK.check_input(ordered)
    gm = truth == 60
    assert np.mean(TASK.cbf_map(ordered)[gm]) == pytest.approx(60, rel=0.1)
    context = Volume(images, AFFINE, {"aslcontext": ["control", "label"] * 10})
    np.testing.assert_allclose(TASK.cbf_map(context), TASK.cbf_map(ordered))
    # repeats of one high-SNR map look like raw images: --asl-order cbf accepts them
    repeats = np.repeat(truth[..., None], 4, axis=-1).astype(np.float32) + 1.0
    repeats += rng.normal(0, 0.5, repeats.shape).astype(np.float32)
    with pytest.raises(InputError, match="cbf if these are CBF maps"):
        TASK.check_input(Volume(repeats, AFFINE, {}))
    TASK.check_input(Volume(repeats, AFFINE, {"asl_order": "cbf"}))


def test_one_volume_or_an_empty_series_is_not_judged():
    assert T.series_statistics(np.ones((8, 8, 2, 1), np.float32)) is None
    assert T.series_statistics(np.zeros((8, 8, 2, 4), np.float32)) is None
    assert not T.looks_like_label_control(-np.ones((20, 20, 2, 4), np.float32))


def test_enhance_cli_refuses_a_raw_series_and_accepts_it_with_an_order(tmp_path, weights, capsys):
    rng = np.random.default_rng(4)
    images, _, _ = _pcasl(rng, 6)
    src = save(Volume(images, AFFINE, {}), tmp_path / "series.nii.gz")
    before = _digest(src)
    out = tmp_path / "out.nii.gz"
    rc, stdout, err = _cli(["enhance", src, "-o", out, "--model", weights, "-q"], capsys)
    assert rc == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith(PREFIX + str(src))
    assert "looks like label/control images" in err and "--asl-order" in err
    assert not out.exists() and _digest(src) == before
    assert _tree(tmp_path) == ["series.nii.gz"]
    rc, _, err = _cli(["enhance", src, "-o", out, "--model", weights, "-q",
                       "--asl-order", "control,label"], capsys)  # fmt: skip
    assert rc == 0, err
    pairs = save(Volume(_per_pair_cbf(rng, 6), AFFINE, {}), tmp_path / "pairs.nii.gz")
    rc, _, err = _cli(["enhance", pairs, "-o", tmp_path / "p_dn.nii.gz", "--model", weights,
                       "-q"], capsys)  # fmt: skip
    assert rc == 0, err
    assert load(tmp_path / "p_dn.nii.gz").shape == SHAPE


@pytest.fixture(scope="module")
def simulated():
    return A.simulate_asl_subject([0, 0], keep_series=True)


@pytest.mark.slow
def test_a_simulated_subject_raw_refused_and_its_per_pair_cbf_accepted(simulated):
    series = simulated.series
    raw = series.images
    assert T.looks_like_label_control(raw)
    assert T.looks_like_label_control(raw[..., :2])
    assert T.looks_like_label_control(raw - 0.9 * series.m0scan[..., None])  # suppressed
    cbf = A.quantify_pairs(series.control, series.label, series.protocol)
    for n in (2, 10, 40):
        assert not T.looks_like_label_control(cbf[..., :n]), T.series_statistics(cbf[..., :n])
    TASK.check_input(Volume(cbf, series.affine, {}))
    with pytest.raises(InputError, match="looks like label/control"):
        TASK.check_input(Volume(raw, series.affine, {"source": "sub-01.nii.gz"}))


# ---------------------------------------------------------------- 3. separate M0 (BIDS)
def _bids(folder, *, saturation=0.5, m0=True, n_pairs=4, sidecar=None):
    """A BIDS ASL folder (write_bids_asl) whose control images are ``saturation`` x M0,
    with (``m0``) a separate ``sub-01_m0scan.nii.gz`` of the true M0; ``sidecar`` entries
    are merged into ``sub-01_asl.json`` (None values removed)."""
    rng = np.random.default_rng(5)
    images, m0_map, truth = _pcasl(rng, n_pairs, scale=1000.0, saturation=saturation,
                                   noise=0.0005)  # fmt: skip
    paths = write_bids_asl(folder, "01", images, AFFINE, m0_map if m0 else None)
    if sidecar:
        doc = json.loads(paths["asl_json"].read_text())
        doc.update(sidecar)
        doc = {k: v for k, v in doc.items() if v is not None}
        paths["asl_json"].write_text(json.dumps(doc))
    return paths, truth


def _gm_cbf(cbf, truth):
    return float(np.median(cbf[truth == 60]))


def test_enhance_reads_the_separate_m0_scan_beside_a_bids_series(tmp_path):
    paths, truth = _bids(tmp_path)
    vol = load(paths["asl"])  # what enhance reads
    assert vol.meta["asl"]["M0Type"] == "Separate" and vol.meta["m0scan_path"]
    TASK.check_input(vol)
    # the control images are half of M0: as M0 they would double the CBF (120)
    assert _gm_cbf(TASK.cbf_map(vol), truth) == pytest.approx(60, rel=0.03)
    # the same maps as read_bids_asl's self-contained series (the M0 appended)
    np.testing.assert_allclose(TASK.cbf_map(read_bids_asl(paths["asl"])), TASK.cbf_map(vol),
                               rtol=1e-5, atol=1e-3)  # fmt: skip


def test_enhance_cli_on_a_bids_series_uses_its_m0_scan(tmp_path, weights, capsys):
    from mrenhance.enhance_api import Enhancer

    paths, truth = _bids(tmp_path / "bids")
    before = {p: _digest(p) for p in paths.values()}
    out = tmp_path / "cbf_dn.nii.gz"
    argv = ["enhance", paths["asl"], "-o", out, "--model", weights, "-q", "--consistency", "off"]
    rc, _, err = _cli(argv, capsys)
    assert rc == 0, err
    assert {p: _digest(p) for p in paths.values()} == before
    # the raw network on the CBF map quantified with the true M0 gives the same output
    images = load(paths["asl"]).data
    m0 = load(paths["m0scan"]).data
    diff = images[..., 0::2] - images[..., 1::2]
    cbf = A.cbf_from_difference(diff, m0[..., None], A.AslProtocol(), 1.5).mean(-1)
    expected = Enhancer.from_weights(weights)(Volume(cbf, AFFINE, {}))
    np.testing.assert_allclose(load(out).data, expected.data, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize(
    "sidecar,expect",
    [
        ({"M0Type": "Separate"}, "M0Type is Separate but no *_m0scan.nii[.gz] lies beside it"),
        ({"M0Type": "Included"}, "M0Type is Included but the aslcontext lists no m0scan"),
        ({"M0Type": "Estimate"}, "M0Type is Estimate but M0Estimate None is not a number > 0"),
        ({"M0Type": "Estimate", "M0Estimate": -3}, "M0Estimate -3 is not a number > 0"),
        ({"M0Type": "separately"}, "M0Type 'separately': expected one of Separate, Included"),
        ({"M0Type": "Absent", "BackgroundSuppression": True},
         "background-suppressed control images cannot stand for M0"),
    ],
)  # fmt: skip
def test_a_needed_m0_that_is_missing_is_refused_in_one_line(tmp_path, sidecar, expect):
    paths, _ = _bids(tmp_path, m0=False, sidecar=sidecar)
    vol = load(paths["asl"])
    with pytest.raises(InputError) as err:
        TASK.check_input(vol)
    assert expect in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(paths["asl"]))


def test_enhance_cli_refuses_a_separate_m0_that_is_missing(tmp_path, weights, capsys):
    paths, _ = _bids(tmp_path / "bids")
    paths["m0scan"].unlink()
    before = _tree(tmp_path)
    out = tmp_path / "out.nii.gz"
    rc, stdout, err = _cli(["enhance", paths["asl"], "-o", out, "--model", weights, "-q"], capsys)
    assert rc == 2 and stdout == "" and err.count("\n") == 1
    assert "M0Type is Separate but no" in err and not out.exists()
    assert _tree(tmp_path) == before


def test_m0_estimate_absent_and_no_m0type(tmp_path):
    paths, truth = _bids(tmp_path / "estimate", m0=False,
                         sidecar={"M0Type": "Estimate", "M0Estimate": 400.0})  # fmt: skip
    # the GM M0 is 800: an estimate of half of it doubles the CBF
    assert _gm_cbf(TASK.cbf_map(load(paths["asl"])), truth) == pytest.approx(120, rel=0.03)
    # Absent: each control image is M0, whatever m0scan file lies beside it (the sidecar
    # says it is not this series'): the control images are M0 / 2 here, so CBF doubles
    paths, truth = _bids(tmp_path / "absent", sidecar={"M0Type": "Absent"})
    assert _gm_cbf(TASK.cbf_map(load(paths["asl"])), truth) == pytest.approx(120, rel=0.03)
    # no M0Type (a hand-made folder): the m0scan file beside it is used
    paths, truth = _bids(tmp_path / "none", sidecar={"M0Type": None})
    assert "M0Type" not in load(paths["asl"]).meta["asl"]
    assert _gm_cbf(TASK.cbf_map(load(paths["asl"])), truth) == pytest.approx(60, rel=0.03)


def test_a_deltam_series_is_quantified_with_its_separate_m0(tmp_path):
    paths, truth = _bids(tmp_path)
    images = load(paths["asl"]).data
    deltam = images[..., 0::2] - images[..., 1::2]
    src = save(Volume(deltam, AFFINE, {}), tmp_path / "sub-02_asl.nii.gz")
    (tmp_path / "sub-02_aslcontext.tsv").write_text("volume_type\n" + "deltam\n" * 4)
    (tmp_path / "sub-02_asl.json").write_text(json.dumps({"M0Type": "Separate"}))
    save(load(paths["m0scan"]), tmp_path / "sub-02_m0scan.nii.gz")
    assert _gm_cbf(TASK.cbf_map(load(src)), truth) == pytest.approx(60, rel=0.03)


def test_an_m0_scan_on_another_grid_is_refused(tmp_path):
    paths, _ = _bids(tmp_path)
    m0 = load(paths["m0scan"])
    shifted = AFFINE.copy()
    shifted[0, 3] += 6.0
    save(Volume(m0.data, shifted, {}), paths["m0scan"], overwrite=True)
    with pytest.raises(InputError, match="M0 scan is on another grid"):
        TASK.check_input(load(paths["asl"]))


# ---------------------------------------------------------------- 2. asl-simulate
def _tiny_subject(seed, *, name, outlier_fraction, thermal_noise, keep_series):
    """A stand-in for simulate_asl_subject (the template alone takes ~12 s): the same
    fields, a 2-pair series on a 24 x 24 x 4 grid and 8 x 8 x 4 'MNI' maps."""
    rng = np.random.default_rng(seed)
    p = A.AslProtocol(n_pairs=2, matrix=(24, 24, 4))
    m0 = np.full(p.matrix, 800.0, np.float32)
    images = np.stack([m0 + rng.normal(0, 4, m0.shape) for _ in range(4)], -1)
    series = SimpleNamespace(images=images.astype(np.float32), affine=np.diag([3.4, 3.4, 6, 1]),
                             m0scan=m0, protocol=p)  # fmt: skip
    maps = np.full((8, 8, 4), 60.0, np.float32)
    return SimpleNamespace(series=series, truth=maps, input_10=maps, pseudo_gold=maps,
                           affine=np.diag([2.0, 2, 2, 1]), keep=np.ones((2, 4), bool),
                           name=name)  # fmt: skip


@pytest.fixture
def tiny_simulation(monkeypatch):
    calls = []

    def fake(seed, **kw):
        calls.append(seed)
        return _tiny_subject(seed, **kw)

    monkeypatch.setattr(A, "simulate_asl_subject", fake)
    return calls


def test_asl_simulate_writes_exactly_its_planned_outputs(tmp_path, tiny_simulation, capsys):
    out = tmp_path / "bids"
    rc, stdout, err = _cli(["asl-simulate", "-o", out, "--subjects", "2", "--seed", "3"], capsys)
    assert rc == 0, err
    assert tiny_simulation == [[3, 0], [3, 1]]
    written = sorted(str(p) for p in out.rglob("*") if p.is_file())
    assert written == sorted(str(p) for p in _asl_cli.output_paths(out, 2))
    assert "wrote 2 subject(s)" in stdout
    vol = load(out / "sub-02" / "perf" / "sub-02_asl.nii.gz")
    assert vol.meta["aslcontext"] == ["control", "label"] * 2
    assert vol.meta["asl"]["M0Type"] == "Separate" and vol.meta["m0scan_path"]


@pytest.mark.parametrize(
    "extra,expect",
    [
        (["--outlier-fraction", "1.5"], "--outlier-fraction 1.5: must be in [0, 1]"),
        (["--outlier-fraction", "-0.5"], "--outlier-fraction -0.5: must be in [0, 1]"),
        (["--outlier-fraction", "nan"], "--outlier-fraction nan: must be in [0, 1]"),
        (["--thermal-noise", "1"], "--thermal-noise 1: must be in [0, 1)"),
        (["--thermal-noise", "inf"], "--thermal-noise inf: must be in [0, 1)"),
        (["--thermal-noise", "-0.01"], "--thermal-noise -0.01: must be in [0, 1)"),
        (["--subjects", "0"], "--subjects 0: must be in 1..999"),
        (["--subjects", "-2"], "--subjects -2: must be in 1..999"),
        (["--subjects", "1000"], "--subjects 1000: must be in 1..999"),
        (["--seed", "-1"], "--seed -1: must be >= 0"),
    ],
)
def test_asl_simulate_refuses_absurd_values_before_any_work(
    tmp_path, tiny_simulation, capsys, extra, expect
):
    out = tmp_path / "bids"
    rc, stdout, err = _cli(["asl-simulate", "-o", out, *extra], capsys)
    assert rc == 2 and stdout == "" and err == f"{PREFIX}{expect}\n"
    assert tiny_simulation == [] and _tree(tmp_path) == []


def test_asl_simulate_refuses_an_existing_later_subject_before_writing_any(
    tmp_path, tiny_simulation, capsys
):
    out = tmp_path / "bids"
    existing = out / "derivatives" / "truth" / "sub-02" / "sub-02_cbf_truth.nii.gz"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"mine")
    before = _tree(tmp_path)
    rc, _, err = _cli(["asl-simulate", "-o", out, "--subjects", "2"], capsys)
    assert rc == 2 and err == f"{PREFIX}{existing}: output exists (use --overwrite to replace it)\n"
    assert tiny_simulation == [] and _tree(tmp_path) == before
    assert existing.read_bytes() == b"mine"
    rc, _, err = _cli(["asl-simulate", "-o", out, "--subjects", "2", "--overwrite"], capsys)
    assert rc == 0, err
    assert existing.read_bytes() != b"mine"


@pytest.mark.parametrize("where", ["output", "subject folder"])
def test_asl_simulate_refuses_a_file_where_a_folder_goes(tmp_path, tiny_simulation, capsys, where):
    out = tmp_path / "bids"
    blocker = out if where == "output" else out / "sub-01"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    before = _tree(tmp_path)
    rc, _, err = _cli(["asl-simulate", "-o", out], capsys)
    assert rc == 2 and f"{blocker}: exists and is not a folder" in err and err.count("\n") == 1
    assert tiny_simulation == [] and _tree(tmp_path) == before


def test_asl_simulate_checks_run_before_the_simulation_in_run(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("simulated before the options were checked")

    monkeypatch.setattr(A, "simulate_asl_subject", boom)
    args = argparse.Namespace(output=str(tmp_path / "b"), subjects=1, seed=0, quiet=True,
                              outlier_fraction=2.0, thermal_noise=0.005,
                              overwrite=False)  # fmt: skip
    with pytest.raises(InputError, match="--outlier-fraction 2: must be in"):
        _asl_cli.run(args)


@pytest.mark.slow
def test_asl_simulate_end_to_end_one_real_subject(tmp_path, capsys):
    out = tmp_path / "bids"
    rc, _, err = _cli(["asl-simulate", "-o", out, "-q"], capsys)
    assert rc == 0, err
    written = sorted(str(p) for p in out.rglob("*") if p.is_file())
    assert written == sorted(str(p) for p in _asl_cli.output_paths(out, 1))
    vol = load(out / "sub-01" / "perf" / "sub-01_asl.nii.gz")
    TASK.check_input(vol)  # M0Type Separate, its m0scan beside it
    cbf = TASK.cbf_map(vol)
    head = cbf != 0
    assert 20 < float(np.median(cbf[head])) < 80
