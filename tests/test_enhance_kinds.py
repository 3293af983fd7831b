"""``mrenhance.enhance`` takes a path, a Volume, an array (+ affine) or a tensor and returns
the same kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mrenhance
from mrenhance import Volume
from mrenhance.errors import InputError
from mrenhance.models import create_model
from mrenhance.models.weights import save_weights


@pytest.fixture
def weights(tmp_path):
    card = {"task": "sr_t1", "inference": {"patch_size": 16, "overlap": 4, "blend": "crop"}}
    return save_weights(create_model("mdcsrn-b2u4", growth=4), tmp_path / "tiny.safetensors", card)


def test_every_input_kind_gives_the_same_numbers_back_in_its_kind(tmp_path, small_brain, weights):
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    vol = Volume(small_brain * 100, affine)
    want = mrenhance.enhance(vol, weights)
    assert isinstance(want, Volume) and want.data.shape == small_brain.shape

    arr = mrenhance.enhance(vol.data, weights, affine=affine)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32
    np.testing.assert_allclose(arr, want.data, rtol=1e-5, atol=1e-4)

    tensor = torch.from_numpy(vol.data)[None, None]  # (1, 1, x, y, z) as MONAI holds it
    out = mrenhance.enhance(tensor, weights, affine=affine)
    assert isinstance(out, torch.Tensor) and out.shape == tensor.shape
    np.testing.assert_allclose(out[0, 0].numpy(), want.data, rtol=1e-5, atol=1e-4)

    src = tmp_path / "t1.nii.gz"
    mrenhance.save(vol, src)
    assert isinstance(mrenhance.enhance(src, weights), Volume)
    path = mrenhance.enhance(src, weights, output=tmp_path / "sr.nii.gz")
    np.testing.assert_allclose(mrenhance.load(path).data, want.data, rtol=1e-5, atol=1e-4)

    with pytest.raises(InputError, match="expected a Volume"):
        mrenhance.enhance([1, 2, 3], weights)
