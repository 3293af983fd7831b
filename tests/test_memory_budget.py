"""The default activation budget next to huge volumes, and the CLI's in-place normalisation."""

from __future__ import annotations

import numpy as np

from mrenhance.enhance_api import MIN_BUDGET, SHARED_BUDGET, Enhancer, volume_budget


def test_volume_budget_keeps_whole_brains_and_shrinks_for_huge_volumes():
    full = 1.5 * 2**30
    assert volume_budget((197, 233, 189)) == full  # the MNI volume: as before
    assert volume_budget((320, 320, 256)) == full
    assert volume_budget((512, 512, 512)) == SHARED_BUDGET - 2 * 4 * 512**3  # 0.75 GiB
    assert volume_budget((1024, 1024, 512)) == MIN_BUDGET


def test_a_given_max_memory_is_kept_and_the_default_shrinks():
    from mrenhance.models import create_model

    net = create_model("mdcsrn-b2u4", growth=4)
    default = Enhancer(net, "sr_t1", inference={"tiling": "exact"})
    given = Enhancer(net, "sr_t1", inference={"tiling": "exact"}, max_memory=4 * 2**30)
    assert not default.max_memory_given and given.max_memory_given
    shape = (512, 512, 512)
    a, b = default.plan_for(shape), given.plan_for(shape)
    assert np.prod(a.patch) < np.prod(b.patch)  # smaller tiles under the shrunk budget


def test_prepare_in_place_only_when_asked_and_only_on_its_own_array():
    from mrenhance.tasks.sr_t1 import SRT1Task
    from mrenhance.volume import Volume

    task = SRT1Task()
    data = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32) * 100
    keep = data.copy()
    vol = Volume(data, np.eye(4))
    array, ctx = task.prepare(vol, None)
    np.testing.assert_array_equal(vol.data, keep)  # enhance()'s caller keeps its data
    same, _ = task.prepare(vol, None, scale=ctx["scale"], inplace=True)
    assert np.shares_memory(same, vol.data)
    np.testing.assert_allclose(same, array, rtol=1e-6)
    view = Volume(keep[:, :, :8], np.eye(4))  # a view is never divided in place
    out, _ = task.prepare(view, None, inplace=True)
    assert not np.shares_memory(out, keep)


def test_the_cli_normalises_its_own_loaded_input_in_place(tmp_path, monkeypatch):
    import nibabel as nib
    import torch

    from mrenhance.cli import main
    from mrenhance.models import create_model
    from mrenhance.models.weights import save_weights
    from mrenhance.tasks import sr_t1

    torch.manual_seed(0)
    card = {"task": "sr_t1", "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"}}
    w = save_weights(create_model("mdcsrn-b2u4", growth=4), tmp_path / "t.safetensors", card)
    src = tmp_path / "in.nii"
    img = np.random.default_rng(1).random((20, 18, 12)).astype(np.float32) * 100
    nib.save(nib.Nifti1Image(img, np.eye(4)), src)
    before = src.read_bytes()
    seen = []
    real = sr_t1.SRT1Task.prepare

    def spy(self, volume, card=None, *, scale=None, inplace=False):
        seen.append(inplace)
        return real(self, volume, card, scale=scale, inplace=inplace)

    monkeypatch.setattr(sr_t1.SRT1Task, "prepare", spy)
    assert main(["enhance", str(src), "-o", str(tmp_path / "o.nii"), "--model", str(w), "-q"]) == 0
    assert seen == [True] and src.read_bytes() == before  # the file is never touched
    out = tmp_path / "r.nii"
    report = tmp_path / "rep"
    args = ["enhance", str(src), "-o", str(out), "--model", str(w), "-q", "--report", str(report)]
    assert main(args) == 0
    assert seen[-1] is False  # the report shows the input: it is kept
