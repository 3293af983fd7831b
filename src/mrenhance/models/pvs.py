"""DCNN6+SC+B and its Table 1 ablations (Jung et al. 2019), and 3D SRCNN 9-5-5.

Jung, Zong, Lin, Shen, Park, "Enhancement of perivascular spaces using a very deep 3D
dense network", MICCAI 2019 workshops. Sec. 2.1, Fig. 1; Table 1 for the ablations.

DCNN6+SC+B (39 convolutions, ReLU behind each, no BatchNorm)::

    f0 = ReLU(conv0(x))                               # Conv3d 1 -> 8, 3^3
    n_i = DenseBlock_i(h_(i-1)), h_0 = f0             # 6 units Conv3d(8j -> 8, 3^3) + ReLU,
                                                      # 48 new maps, no block input in them
    h_i = last 8 maps of n_i                          # "the 8 feature maps generated from the
                                                      #  last layer are used as the input of
                                                      #  the next dense block"
    b = ReLU(bottleneck(cat[f0, n_1..n_6]))           # Conv3d 296 -> 16, 1^3
    y = prediction(b)                                 # Conv3d 16 -> 1, 3^3 (choice: kernel)

223,425 parameters, receptive field 77^3 voxels (radius 38). The dense block is the one of
mDCSRN (:class:`mrenhance.models.blocks.DenseBlock`) with ``order="post"``, ``norm=None``,
``activation="relu"``, ``include_input=False``.

Ablations from the same class: ``skip=False`` (no SC: only the last block's 48 maps go on)
and ``bottleneck=False`` (no B: the prediction conv sees the maps directly), ``blocks`` 1,
2, 4, 6. "DCNN" (Chen et al. 2018's one-block network, modified "to be comparable") is
``blocks=1`` with skip and bottleneck (choice: the paper gives no layout). Weights: He
normal initialisation, biases 0 (Sec. 2.2).
"""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.errors import ConfigError
from mrenhance.models.blocks import DenseBlock, conv
from mrenhance.models.registry import register_model

__all__ = ["DCNN", "SRCNN3D"]

_PAPER = "Jung et al. 2019, PVS enhancement (MICCAI-W), Sec. 2.1, Fig. 1, Table 1"


def he_init_(module: nn.Module) -> nn.Module:
    """He (Kaiming) normal weights for ReLU, zero biases (Sec. 2.2 [17]); returns module."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _register(name: str, blocks: int, skip: bool, bottleneck: bool, description: str):
    return register_model(
        name,
        family="dcnn-pvs",
        task="pvs",
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        description=description,
        paper=_PAPER,
        blocks=blocks,
        skip=skip,
        bottleneck=bottleneck,
    )


@_register("dcnn6-sc-b", 6, True, True, "DCNN6+SC+B: 6 dense blocks, skips, bottleneck (0.223M)")
@_register("dcnn6-sc", 6, True, False, "DCNN6+SC: 6 dense blocks with skips, no bottleneck")
@_register("dcnn6", 6, False, False, "DCNN6: 6 dense blocks, no skips, no bottleneck")
@_register("dcnn4-sc-b", 4, True, True, "DCNN4+SC+B: 4 dense blocks, skips, bottleneck")
@_register("dcnn2-sc-b", 2, True, True, "DCNN2+SC+B: 2 dense blocks, skips, bottleneck")
@_register("dcnn1", 1, True, True, "DCNN: one dense block (Chen et al. 2018 as in Table 1)")
class DCNN(nn.Module):
    """The PVS dense network and its ablations (module docstring).

    Parameters
    ----------
    blocks : dense blocks (6).
    units : convolutions per block (6).
    growth : maps per convolution, also conv0's width (8).
    skip : SC, concatenate f0 and every block's new maps for the output layers.
    bottleneck : B, a 1^3 conv to ``bottleneck_channels`` + ReLU before the prediction.
    bottleneck_channels : 16.
    prediction_kernel : 3 (choice: Fig. 1 does not state it).
    spatial_dims : 3 (paper) or 2.

    Shapes: (batch, in_channels, *spatial) -> (batch, out_channels, *spatial).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        blocks: int = 6,
        units: int = 6,
        growth: int = 8,
        skip: bool = True,
        bottleneck: bool = True,
        bottleneck_channels: int = 16,
        prediction_kernel: int = 3,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ConfigError(f"DCNN needs blocks >= 1, got {blocks}")
        self.growth = growth
        self.skip = skip
        self.conv0 = conv(spatial_dims, in_channels, growth, 3)
        self.blocks = nn.ModuleList(
            DenseBlock(
                growth,
                growth,
                units,
                spatial_dims,
                norm=None,
                activation="relu",
                order="post",
                include_input=False,
            )
            for _ in range(blocks)
        )
        block_out = units * growth
        features = growth + blocks * block_out if skip else block_out
        self.bottleneck = (
            conv(spatial_dims, features, bottleneck_channels, 1) if bottleneck else None
        )
        pred_in = bottleneck_channels if bottleneck else features
        self.prediction = conv(spatial_dims, pred_in, out_channels, prediction_kernel)
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = torch.relu(self.conv0(x))
        maps = [f0]
        h = f0
        for block in self.blocks:
            new = block(h)
            maps.append(new)
            h = new[:, -self.growth :]
        z = torch.cat(maps, dim=1) if self.skip else maps[-1]
        if self.bottleneck is not None:
            z = torch.relu(self.bottleneck(z))
        return self.prediction(z)


@register_model(
    "srcnn3d",
    family="srcnn",
    task="pvs",
    spatial_dims=3,
    in_channels=1,
    out_channels=1,
    description="3D SRCNN 9-5-5, 64/32 filters (Dong et al. 2016 in 3D, as in Table 1)",
    paper="Dong et al. 2016 (TPAMI) made 3D in Jung et al. 2019, Sec. 3.1",
)
class SRCNN3D(nn.Module):
    """3D SRCNN: Conv 9^3 -> 64, ReLU, Conv 5^3 -> 32, ReLU, Conv 5^3 -> 1 ("same" padding).

    306,753 parameters, receptive field 17^3 (radius 8). Kernel sizes 9-5-5 as the PVS paper
    states; the filters 64/32 are SRCNN's. He initialisation (choice: as the DCNNs).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        filters: tuple[int, int] = (64, 32),
        kernels: tuple[int, int, int] = (9, 5, 5),
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        f1, f2 = (int(f) for f in filters)
        k1, k2, k3 = (int(k) for k in kernels)
        self.body = nn.Sequential(
            conv(spatial_dims, in_channels, f1, k1),
            nn.ReLU(),
            conv(spatial_dims, f1, f2, k2),
            nn.ReLU(),
            conv(spatial_dims, f2, out_channels, k3),
        )
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
