import numpy as np
import pytest

from mrenhance import Volume
from mrenhance.errors import InputError


def test_volume_keeps_float32_and_voxel_size(oblique_affine):
    vol = Volume(np.zeros((4, 5, 6), dtype=np.int16), oblique_affine)
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.voxel_size, (0.9, 1.1, 2.5), atol=1e-9)


def test_volume_refuses_2d():
    with pytest.raises(InputError, match="expected a 3D or 4D image"):
        Volume(np.zeros((4, 5)))


def test_with_data_appends_provenance():
    vol = Volume(np.zeros((2, 2, 2)), meta={"provenance": ["load"]})
    out = vol.with_data(np.ones((2, 2, 2)), step="scale")
    assert out.meta["provenance"] == ["load", "scale"]
    assert vol.meta["provenance"] == ["load"]
