"""Self-supervised adaptation (``enhance --adapt``): a tuned copy, the input untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.cli import main
from mrenhance.engine.adapt import adapt_enhancer, self_supervised_loss
from mrenhance.enhance_api import Enhancer, enhance
from mrenhance.io import load, save
from mrenhance.models import create_model
from mrenhance.models.card import Normalisation
from mrenhance.models.weights import save_weights
from mrenhance.tasks.sr_t1 import high_resolution_axes

INFERENCE = {"patch_size": 16, "overlap": 4, "blend": "crop"}


@pytest.fixture
def tiny_enhancer():
    import torch

    torch.manual_seed(0)
    model = create_model("mdcsrn-b2u4", growth=4, global_residual=True).eval()
    return Enhancer(model, "sr_t1", normalisation=Normalisation(), inference=INFERENCE)


@pytest.fixture
def scan(small_brain):
    from mrenhance.simulate.kspace import truncate_kspace

    return Volume(truncate_kspace(small_brain * 100, (2, 2, 1)), np.diag([2.0, 2.0, 2.0, 1.0]))


def test_a_few_steps_reduce_the_self_supervised_loss(tiny_enhancer, scan):
    adapted = adapt_enhancer(tiny_enhancer, scan, steps=15, lr=1e-3, patch_size=12)
    info = adapted.adaptation
    assert info["steps"] == 15 and info["seconds"] > 0
    assert info["loss_after"] < info["loss_before"]
    assert info["high_resolution_axes"] == [2]  # k-space truncated along x and y
    # the original network is untouched: its loss is still the "before" value
    pairs = tiny_enhancer.task.adaptation_pairs(
        scan, tiny_enhancer.normalisation, np.random.default_rng([0, 0])
    )
    assert self_supervised_loss(tiny_enhancer.model, pairs, patch_size=12) == pytest.approx(
        info["loss_before"], rel=1e-5
    )


def test_zero_steps_equal_no_adaptation(tiny_enhancer, scan):
    plain = enhance(scan, tiny_enhancer)
    zero = adapt_enhancer(tiny_enhancer, scan, steps=0)(scan)
    np.testing.assert_array_equal(plain.data, zero.data)
    assert "adapted(steps=0" in zero.meta["provenance"][-1]


def test_high_resolution_axes_finds_the_thick_slice_axis(small_brain):
    from mrenhance.simulate.kspace import thick_slice

    axes, _ = high_resolution_axes(thick_slice(small_brain, 3, axis=1, fwhm_vox=3.0))
    assert 1 not in axes


def test_cli_adapt_leaves_the_input_file_byte_identical(tmp_path, scan):
    model = create_model("mdcsrn-b2u4", growth=4, global_residual=True)
    weights = save_weights(
        model, tmp_path / "tiny.safetensors", {"task": "sr_t1", "inference": INFERENCE}
    )
    src = tmp_path / "in.nii.gz"
    save(scan, src)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "out.nii.gz"
    summary = tmp_path / "s.json"
    argv = ["enhance", str(src), "-o", str(out), "--model", str(weights), "-q"]
    assert main([*argv, "--adapt", "--adapt-steps", "2", "--summary", str(summary)]) == 0
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    result = load(out)
    assert result.shape == scan.shape
    np.testing.assert_allclose(result.affine, scan.affine)
    import json

    row = json.loads(summary.read_text())["results"][0]
    assert row["adaptation"]["steps"] == 2
    assert main([*argv, "--overwrite", "--adapt-steps", "-1"]) == 2


def _slice_coded_pairs():
    """One (20, 24, 6) pair whose voxel values say their slice: 1000 z + in-plane index."""
    from mrenhance.engine.adapt import AdaptationPairs

    x, y, z = np.meshgrid(np.arange(20), np.arange(24), np.arange(6), indexing="ij")
    arr = (1000.0 * z + 24 * x + y).astype(np.float32)
    return AdaptationPairs(inputs=[arr], targets=[arr + 0.5], patch_size=(8, 10))


@pytest.mark.parametrize(("slice_axis", "shape"), [(2, (8, 10)), (0, (8, 6))])
def test_a_2d_network_adapts_on_2d_patches_of_one_slice(slice_axis, shape):
    from mrenhance.engine.adapt import _draw_batch

    pairs = _slice_coded_pairs()
    x, y = _draw_batch(pairs, (8, 10), 5, np.random.default_rng(0), slice_axis)
    assert x.shape == y.shape == (5, 1, *shape)  # clipped to the (24, 6) sagittal slices
    np.testing.assert_array_equal(y, x + 0.5)  # input and target from the same box
    arr = pairs.inputs[0]
    for patch in x[:, 0]:
        if slice_axis == 2:  # every value of a patch lies in one axial slice
            assert len(set((patch // 1000).ravel().tolist())) == 1
        else:  # a sagittal slice: one in-plane x index
            assert len({int(v) % 1000 // 24 for v in patch.ravel()}) == 1
        assert np.isin(patch, arr).all()


def test_adapt_enhancer_tunes_a_2d_network_with_the_tasks_patch():
    import torch

    from mrenhance.errors import InputError

    torch.manual_seed(0)
    model = create_model("dwan", channels=4, wide=8).eval()
    enhancer = Enhancer(model, "asl", inference={"patch_size": [32, 32], "overlap": 8})
    pairs = _slice_coded_pairs()
    pairs.inputs = [a / 6000.0 for a in pairs.inputs]
    pairs.targets = [a / 6000.0 for a in pairs.inputs]
    adapted = adapt_enhancer(enhancer, None, steps=3, lr=1e-3, pairs=pairs)
    assert adapted.adaptation["patch_size"] == [8, 10] and adapted.adaptation["steps"] == 3
    changed = [not torch.equal(a, b) for a, b in zip(model.parameters(),
               adapted.model.parameters(), strict=True)]  # fmt: skip
    assert any(changed)
    with pytest.raises(InputError, match="a 2D network needs 2 sizes"):
        adapt_enhancer(enhancer, None, steps=1, patch_size=(8, 8, 8), pairs=pairs)


def test_the_adapted_copy_keeps_exact_tiling_and_the_options():
    """adapt_enhancer's copy tiles like the original (it fell back to fixed 64^3 tiles)."""
    import torch

    torch.manual_seed(0)
    net = create_model("mdcsrn-b2u4", growth=4)
    base = Enhancer(net, "sr_t1", inference={"tiling": "exact"}, consistency="off",
                    max_memory=2**28)  # fmt: skip
    assert base.exact
    vol = Volume(np.random.default_rng(0).random((20, 18, 16)).astype(np.float32), np.eye(4))
    copy = adapt_enhancer(base, vol, steps=1, patch_size=8)
    assert copy.exact and copy.plan == base.plan
    assert copy.consistency == "off" and copy.max_memory == base.max_memory
