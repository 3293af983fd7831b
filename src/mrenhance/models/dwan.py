"""DWAN: the dilated wide activation network of the ASL denoising paper (Xie et al. 2020).

Sec. 2.2 and Fig. 1 of "A Learning-from-noise Dilated Wide Activation Network for denoising
Arterial Spin Labeling (ASL) Perfusion Images"; first proposed in Xie et al., MRI 2020 [18].
"""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.models.blocks import ResidualBlock, conv
from mrenhance.models.registry import register_model

__all__ = ["DWAN"]


@register_model(
    "dwan",
    family="dwan",
    task="asl",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    description="2D dilated wide activation network, local + dilated global pathway "
    "(592,011 parameters)",
    paper="Xie et al. 2020 (ASLDN-LFN), Sec. 2.2, Fig. 1",
)
class DWAN(nn.Module):
    """Dilated Wide Activation Network (Sec. 2.2, Fig. 1), 2D, no BatchNorm (Sec. 2.3).

    Layers (``channels`` C = 32, ``wide`` W = 128):

    * head: 3x3 conv 1 -> C + ReLU;
    * local pathway: 4 wide-activation residual blocks ``x + conv3x3(W -> C)(ReLU(conv3x3
      (C -> W)(x)))`` (:class:`~mrenhance.models.blocks.ResidualBlock` with ``norm=None``,
      ``hidden_channels=W``);
    * global pathway: the same 4 blocks, their first (C -> W) conv dilated 2, 4, 8, 16;
    * both pathways start from the head's output; their outputs are concatenated (2C) and a
      3x3 conv 2C -> 1 gives the prediction, to which a 3x3 conv 1 -> 1 of the input is
      added.

    Parameter count at the defaults: head 320 + 8 blocks x 73,888 + fusion 577 + input
    conv 10 = **592,011**. Receptive field: 73 x 73 pixels (radius 36 through the global
    pathway: 1 + (3 + 5 + 9 + 17) + 1; the local pathway sees radius 10).

    Where Fig. 1 is ambiguous, our reading:

    * the two pathways are parallel (the caption: "fed to both"), not chained;
    * "with additional input from the input image with 3x3x1 convolution": the input's
      3x3 conv is *added* to the fused prediction (a learnt global skip), not concatenated;
    * no activation after the fusion conv or in the skip (the output is a CBF map, which
      may legitimately be small or negative where noisy);
    * the head has a ReLU, as every other "conv" box of the figure is followed by one; the
      blocks have exactly one activation each, between their two convs (Sec. 2.2: "two
      convolutional layers ... and one activation function layer");
    * all convs have a bias and "same" padding (Keras defaults of the paper's code).

    Parameters
    ----------
    channels, wide : int
        Feature widths C and W (32, 128).
    dilations : tuple of int
        Dilation of each global block's first conv (2, 4, 8, 16).
    in_channels, out_channels : int
        Image channels (1).
    spatial_dims : int
        2 (paper); 3 builds the same network in 3D.

    Shapes: (batch, in_channels, x, y) -> (batch, out_channels, x, y), any size.
    """

    def __init__(
        self,
        channels: int = 32,
        wide: int = 128,
        dilations: tuple[int, ...] = (2, 4, 8, 16),
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()

        def block(dilation: int) -> nn.Module:
            return ResidualBlock(
                channels,
                3,
                spatial_dims,
                norm=None,
                activation="relu",
                hidden_channels=wide,
                dilation=dilation,
            )

        self.head = nn.Sequential(conv(spatial_dims, in_channels, channels, 3), nn.ReLU())
        self.local_path = nn.Sequential(*[block(1) for _ in dilations])
        self.global_path = nn.Sequential(*[block(int(d)) for d in dilations])
        self.fuse = conv(spatial_dims, 2 * channels, out_channels, 3)
        self.skip = conv(spatial_dims, in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        features = torch.cat([self.local_path(h), self.global_path(h)], dim=1)
        return self.fuse(features) + self.skip(x)
