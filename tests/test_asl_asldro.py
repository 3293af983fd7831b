"""ASLDRO's BIDS output (an independent simulator, the ``asldro`` package) read and enhanced."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jsonschema")  # asldro's pipeline needs it (the dev extra installs it)
pytest.importorskip("asldro")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dro():
    """One small ASLDRO run: M0 + 3 pCASL pairs, 32 x 32 x 10, image SNR 200."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import asl_asldro as B
    import nibabel as nib

    params = B.asldro_params(0, 0.0, 0.0, 0.0, 200.0)
    n_pairs = 3
    for s in params["image_series"]:
        p = s["series_parameters"]
        p["acq_matrix"] = [32, 32, 10]
        if s["series_type"] == "asl":
            n = 1 + 2 * n_pairs
            p["asl_context"] = " ".join(["m0scan"] + ["control", "label"] * n_pairs)
            p["echo_time"], p["repetition_time"] = [0.01] * n, [10.0] + [4.0] * (n - 1)
            for k in ("rot_x", "rot_y", "rot_z", "transl_x", "transl_y", "transl_z"):
                p[k] = [0.0] * n
    with tempfile.TemporaryDirectory() as tmp:
        asl, cbf, seg = B.run_asldro(params, Path(tmp))
        yield {
            "asl": asl.read_bytes(),
            "context": (
                asl.parent / asl.name.replace("_asl.nii.gz", "_aslcontext.tsv")
            ).read_text(),
            "sidecar": asl.with_name(asl.name.replace(".nii.gz", ".json")).read_text(),
            "truth": np.asarray(nib.load(cbf).dataobj, np.float32),
            "seg": np.asarray(nib.load(seg).dataobj).astype(int),
        }


def _write(dro, folder: Path) -> Path:
    path = folder / "sub-01_asl.nii.gz"
    path.write_bytes(dro["asl"])
    (folder / "sub-01_aslcontext.tsv").write_text(dro["context"])
    (folder / "sub-01_asl.json").write_text(dro["sidecar"])
    return path


def test_asldro_series_is_read_with_its_context_timing_and_m0(dro, tmp_path):
    from mrenhance.io import load
    from mrenhance.tasks import asl as T
    from mrenhance.tasks import get_task

    volume = load(_write(dro, tmp_path))
    assert T.asl_context(volume) == ["m0scan"] + ["control", "label"] * 3
    how, _ = T.asl_m0(volume, T.asl_context(volume))
    assert how == "included"  # the series' own m0scan volume
    cbf = get_task("asl").cbf_map(volume)
    gm, wm = dro["seg"] == 1, dro["seg"] == 2
    # CBF quantified from ASLDRO's signal (its general kinetic model, with transit times)
    # by the white-paper formula: GM within 35 % of the truth, GM above WM
    ratio = float(np.mean(cbf[gm]) / np.mean(dro["truth"][gm]))
    assert 0.65 < ratio < 1.35, ratio
    assert np.mean(cbf[gm]) > 1.5 * np.mean(cbf[wm])


def test_mrenhance_enhance_writes_a_cbf_map_on_the_asldro_grid(dro, tmp_path):
    import nibabel as nib

    from mrenhance.cli import main

    src = _write(dro, tmp_path)
    before = src.read_bytes()
    out = tmp_path / "cbf_dn.nii.gz"
    assert main(["-q", "enhance", str(src), "-o", str(out), "--model", "dwan-asl-lfn"]) == 0
    img, ref = nib.load(out), nib.load(src)
    assert img.shape == ref.shape[:3]
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    assert np.isfinite(img.get_fdata()).all()
    assert src.read_bytes() == before  # the input is untouched


def test_card_quotes_the_committed_asldro_benchmark():
    import json
    import re

    from mrenhance.models.weights import read_card, resolve_weights

    payload = json.loads((ROOT / "benchmarks/results/asl_asldro.json").read_text())
    card = read_card(resolve_weights("dwan-asl-lfn"))
    label = next(k for k, v in payload["provenance"]["sha256"].items() if v == card.sha256)
    rows = {(r["snr_level"], r["method"]): r for r in payload["rows"]}
    (text,) = [t for t in card.limitations if t.startswith("Independent data")]
    found = re.findall(
        r"([0-9.]+) vs ([0-9.]+) dB against the true CBF at image SNR (\d+)|"
        r"([0-9.]+) vs ([0-9.]+) dB at SNR (\d+)",
        text,
    )
    pairs = [(float(a or d), float(b or e), float(c or f)) for a, b, c, d, e, f in found]
    assert len(pairs) == 2
    for net, inp, snr in pairs:
        assert net == pytest.approx(rows[(snr, label)]["psnr_truth"], abs=0.05)
        assert inp == pytest.approx(rows[(snr, "mean of 10 pairs (input)")]["psnr_truth"], abs=0.05)
