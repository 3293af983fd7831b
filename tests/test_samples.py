"""Offline sample data read from installed packages (each MNI-grid load takes ~1 s once)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from mrenhance import samples
from mrenhance.errors import InputError

MNI_SHAPE = (197, 233, 189)
MNI_AFFINE = np.array(
    [[1.0, 0, 0, -98], [0, 1.0, 0, -134], [0, 0, 1.0, -72], [0, 0, 0, 1]], dtype=np.float64
)


@pytest.fixture(scope="module", autouse=True)
def _free_the_sample_cache():
    """The cached arrays take ~0.8 GB after this module; give them back."""
    yield
    samples.clear_cache()


def test_mni_t1_is_the_raw_template_on_its_grid() -> None:
    vol = samples.mni_t1()
    assert vol.shape == MNI_SHAPE
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.affine, MNI_AFFINE)
    assert vol.meta["source"] == "sample:mni_t1"
    assert "nilearn" in vol.meta["provenance"][0]
    assert vol.data.min() == 0 and vol.data.max() == 255
    assert np.array_equal(vol.data, np.round(vol.data))  # uint8 values, not rescaled
    assert vol.data[0, 0, 0] == 0 and vol.data[98, 120, 90] > 0  # stripped; brain centre


def test_samples_return_copies_of_the_cache() -> None:
    first = samples.mni_t1()
    first.data[:] = -1.0
    second = samples.mni_t1()
    assert second.data.max() == 255
    assert second.data.flags.writeable


def test_brain_mask_is_binary_filled_t1_support() -> None:
    mask = samples.mni_brain_mask().data
    t1 = samples.mni_t1().data
    assert mask.shape == MNI_SHAPE
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert np.all(mask[t1 > 0] == 1)
    assert 1.5e6 < mask.sum() < 2.2e6  # ~1.9 L of 1 mm voxels


def test_tissue_maps_are_probabilities_and_csf_completes_them_in_the_mask() -> None:
    tissue = samples.mni_tissue()
    assert set(tissue) == {"gm", "wm", "csf"}
    for name, vol in tissue.items():
        assert vol.shape == MNI_SHAPE, name
        assert vol.data.min() >= 0.0 and vol.data.max() <= 1.0, name
        np.testing.assert_array_equal(vol.affine, MNI_AFFINE)
    mask = samples.mni_brain_mask().data > 0
    gm, wm, csf = (tissue[k].data for k in ("gm", "wm", "csf"))
    np.testing.assert_allclose((gm + wm + csf)[mask], 1.0, atol=1e-6)
    assert np.all(csf[~mask] == 0)
    # plausible volumes in litres: GM > WM > CSF
    assert 0.8e6 < gm[mask].sum() < 1.2e6 and 0.5e6 < wm[mask].sum() < 0.8e6
    assert 0.1e6 < csf.sum() < 0.4e6


def test_asldro_ground_truth_maps_and_labels() -> None:
    gt = samples.asldro_ground_truth("3T")
    assert set(gt) == set(samples.ASLDRO_QUANTITIES)
    for name, vol in gt.items():
        assert vol.shape == MNI_SHAPE, name
        np.testing.assert_array_equal(vol.affine, MNI_AFFINE)
    seg = gt["seg_label"]
    assert set(np.unique(seg.data)) == {0.0, 1.0, 2.0, 3.0}
    assert seg.meta["segmentation"] == {"grey_matter": 1, "white_matter": 2, "csf": 3}
    gm, wm = seg.data == 1, seg.data == 2
    cbf = gt["perfusion_rate"]
    assert cbf.meta["units"] == "ml/100g/min"
    assert np.median(cbf.data[gm]) == 60 and np.median(cbf.data[wm]) == 20
    assert gt["t1"].meta["units"] == "s" and gt["t1"].meta["field_strength_t"] == 3
    assert 1.0 < np.median(gt["t1"].data[gm]) < 2.0  # GM T1 at 3 T in seconds
    assert gt["t2_star"].data.max() < gt["t2"].data.max()


def test_asldro_field_strengths_differ_and_bad_ones_are_refused() -> None:
    t1_3t = samples.asldro_ground_truth("3T")["t1"]
    t1_15t = samples.asldro_ground_truth("1.5T")["t1"]
    assert t1_15t.meta["field_strength_t"] == 1.5
    assert t1_15t.data.max() <= t1_3t.data.max()
    assert not np.array_equal(t1_3t.data, t1_15t.data)
    with pytest.raises(InputError, match="field_strength"):
        samples.asldro_ground_truth("7T")


def test_dipy_small_64d_with_its_gradient_table() -> None:
    vol = samples.dipy_small_64d()
    assert vol.shape == (10, 10, 10, 65)
    assert vol.voxel_size == pytest.approx((2.0, 2.0, 2.0), abs=1e-6)
    bvals, bvecs = vol.meta["bvals"], vol.meta["bvecs"]
    assert bvals.shape == (65,) and bvecs.shape == (65, 3)
    assert bvals[0] == 0 and np.all(np.abs(bvals[1:] - 1000) < 20)
    np.testing.assert_array_equal(bvecs[0], 0.0)
    np.testing.assert_allclose(np.linalg.norm(bvecs[1:], axis=1), 1.0, atol=1e-4)
    # diffusion weighting attenuates the signal
    assert vol.data[..., 1:].mean() < vol.data[..., 0].mean()


def test_list_and_load_samples() -> None:
    listing = samples.list_samples()
    assert set(listing) == {
        "mni_t1",
        "mni_tissue",
        "mni_brain_mask",
        "asldro_ground_truth",
        "dipy_small_64d",
        "dipy_s0_10slices",
    }
    assert all(isinstance(d, str) and "\n" not in d for d in listing.values())
    assert samples.load_sample("dipy_small_64d").shape == (10, 10, 10, 65)
    assert samples.load_sample("dipy_s0_10slices").shape == (128, 128, 10, 1)
    assert samples.load_sample("asldro_ground_truth", field_strength="1.5T")["t1"].shape == (
        MNI_SHAPE
    )
    with pytest.raises(InputError, match="unknown sample 'brainweb'"):
        samples.load_sample("brainweb")


@pytest.mark.parametrize(
    "loader,package,name",
    [
        (samples.mni_t1, "nilearn", "mni_t1"),
        (samples.mni_tissue, "nilearn", "mni_tissue"),
        (samples.asldro_ground_truth, "asldro", "asldro_ground_truth"),
        (samples.dipy_small_64d, "dipy", "dipy_small_64d"),
    ],
)
def test_a_missing_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, loader, package: str, name: str
) -> None:
    real = importlib.util.find_spec

    def fake(pkg: str, *args, **kwargs):
        return None if pkg == package else real(pkg, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(InputError) as err:
        loader()
    assert str(err.value) == f"sample '{name}' needs the package {package}: pip install {package}"


def test_loading_samples_imports_none_of_the_source_packages() -> None:
    # Their fetchers can reach the network; we only read the files they ship.
    code = (
        "import sys\n"
        "from mrenhance import samples\n"
        "samples.dipy_small_64d(); samples.mni_brain_mask()\n"
        "print(sorted(p for p in ('nilearn', 'dipy', 'asldro') if p in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
