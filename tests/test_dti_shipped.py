"""The shipped ``srresnet-dwi-x4`` end to end through the CLI: `enhance` a 4D DWI, then `dti`."""

from __future__ import annotations

import numpy as np
import pytest

from mrenhance.cli import main
from mrenhance.io import load, save
from mrenhance.volume import Volume

BVALS = np.array([0.0, 1000, 1000, 1000, 1000, 1000, 1000])
BVECS = np.array(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0], [0, 0.6, 0.8], [0.8, 0, 0.6]]
)


def _lr_series(rng: np.random.Generator) -> Volume:
    """An 8 mm in-plane (8, 8, 3, 7) series: a brain-like disc with an x-oriented tensor."""
    d = np.diag([1.5e-3, 0.4e-3, 0.4e-3])
    attenuation = np.exp(-BVALS * np.einsum("ni,ij,nj->n", BVECS, d, BVECS))
    x, y = np.meshgrid(np.arange(8) - 3.5, np.arange(8) - 3.5, indexing="ij")
    s0 = np.where(x**2 + y**2 < 12, 400.0, 20.0)[..., None].repeat(3, axis=2)
    noise = 1 + 0.02 * rng.standard_normal((8, 8, 3, 7))
    affine = np.array([[8.0, 0, 0, -30], [0, 8, 0, -40], [0, 0, 2, 10], [0, 0, 0, 1]])
    data = (s0[..., None] * attenuation * noise).astype(np.float32)
    return Volume(data, affine, {"bvals": BVALS, "bvecs": BVECS})


def test_shipped_srresnet_super_resolves_a_dwi_series_and_dti_maps_it(tmp_path, rng):
    lr = _lr_series(rng)
    save(lr, tmp_path / "dwi.nii.gz")
    out = tmp_path / "dwi_sr.nii.gz"
    args = ["enhance", str(tmp_path / "dwi.nii.gz"), "-o", str(out)]
    assert main([*args, "--model", "srresnet-dwi-x4", "--device", "cpu", "-q"]) == 0
    sr = load(out)
    assert sr.shape == (32, 32, 3, 7)  # 4x in-plane, every slice of every volume
    np.testing.assert_allclose(sr.voxel_size[:3], (2.0, 2.0, 2.0), rtol=1e-6)
    # same field of view: the first voxel's corner stays where the input's was
    corner = lr.affine @ [-0.5, -0.5, -0.5, 1]
    np.testing.assert_allclose(sr.affine @ [-0.5, -0.5, -0.5, 1], corner, atol=1e-5)
    np.testing.assert_allclose(sr.meta["bvals"], BVALS)
    np.testing.assert_allclose(sr.meta["bvecs"], BVECS, atol=1e-6)
    assert (tmp_path / "dwi_sr.bval").is_file() and (tmp_path / "dwi_sr.bvec").is_file()
    data = np.asarray(sr.data)
    assert np.isfinite(data).all()
    # intensities stay in the input's units: the disc's b0 near 400, not a normalised 1
    assert 200 < np.median(data[12:20, 12:20, :, 0]) < 600
    maps = tmp_path / "maps"
    assert main(["dti", str(out), "-o", str(maps), "-q"]) == 0
    for name, shape in (("fa", (32, 32, 3)), ("md", (32, 32, 3)), ("v1", (32, 32, 3, 3))):
        assert load(maps / f"{name}.nii.gz").shape == shape
    assert load(maps / "cfa.nii.gz").shape == (32, 32, 3, 3)
    fa = load(maps / "fa.nii.gz").data
    assert np.isfinite(fa).all() and 0 <= fa.min() and fa.max() <= 1
    # the disc's tensor survives: FA of diag(1.5, 0.4, 0.4) is 0.66, MD 0.77e-3, V1 along x
    # (measured on the SR output: FA 0.69, MD 0.80e-3, |V1 x| 0.999)
    centre = (slice(12, 20), slice(12, 20))
    assert 0.5 < np.median(fa[centre]) < 0.85
    md = load(maps / "md.nii.gz").data
    assert 0.6e-3 < np.median(md[centre]) < 1.0e-3
    assert np.median(np.abs(load(maps / "v1.nii.gz").data[centre][..., 0])) > 0.9


@pytest.mark.slow
def test_demo_dti_section_runs_both_shipped_networks(tmp_path, monkeypatch):
    """`make demo`'s DTI section: bicubic, then every shipped DTI network (SRResNet before
    SRGAN), each with its metrics row and FA map, in the report (a small subject here)."""
    from mrenhance.demo import run_demo
    from mrenhance.models.weights import list_shipped_weights
    from mrenhance.tasks import dti

    monkeypatch.setitem(dti.DATA_DEFAULTS, "shape", [32, 32, 4])
    monkeypatch.setitem(dti.DATA_DEFAULTS, "test_slices", 2)
    shipped = sorted(c.name for c in list_shipped_weights() if c.task == "dti")
    assert shipped == ["srgan-dwi-x4", "srresnet-dwi-x4"]
    result = run_demo(tmp_path / "demo", tasks=["dti"], echo=False, device="cpu")
    section = result["sections"]["dti"]
    methods = [r["method"] for r in section["table_rows"]]
    assert methods == ["bicubic", "srresnet-dwi-x4", "srgan-dwi-x4"]
    for row in section["table_rows"]:
        assert np.isfinite(row["psnr"]) and np.isfinite(row["fa_mae_wm"]), row["method"]
    names = {p.name for p in section["files"].values()}
    assert {"fa_srresnet-dwi-x4.nii.gz", "fa_srgan-dwi-x4.nii.gz", "fa_hr.nii.gz"} <= names
    html = result["html"].read_text(encoding="utf-8")
    assert "srresnet-dwi-x4" in html and "srgan-dwi-x4" in html
    assert (tmp_path / "demo" / "dti" / "figure.png").is_file()
