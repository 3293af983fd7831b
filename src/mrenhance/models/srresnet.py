"""3D SRResNet baseline (Ledig et al., CVPR 2017), as compared in mDCSRN Sec. 3.2, Table 2."""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.models.blocks import ResidualBlock, activation, conv, norm, setup_global_residual
from mrenhance.models.registry import register_model

__all__ = ["SRResNet3D"]


@register_model(
    "srresnet3d",
    family="srresnet",
    task="sr_t1",
    spatial_dims=3,
    in_channels=1,
    out_channels=1,
    description="3D SRResNet baseline, 8 residual blocks, no upsampling (1,976,714 parameters)",
    paper="Ledig et al. 2017 SRResNet; 3D as in Chen et al. 2018 mDCSRN Sec. 3.2, Table 2",
)
class SRResNet3D(nn.Module):
    """SRResNet extended to 3D (mDCSRN Sec. 3.2; Ledig et al. 2017, Fig. 4 generator).

    Layers: 9^3 conv in -> C + PReLU; ``n_blocks`` residual blocks (3^3 conv, BN, PReLU,
    3^3 conv, BN, skip; :class:`~mrenhance.models.blocks.ResidualBlock`); 3^3 conv + BN plus
    a global skip from the first PReLU's output; 9^3 conv C -> out.

    Parameter count: 1,976,714 at the defaults, 1.4% below Table 2's 2.005M; the paper does
    not say what the remaining ~28k parameters are, and we do not guess.

    Choices where the paper is silent:

    * 8 residual blocks (Ledig et al. use 16; 16 would give 3.75M, far from Table 2's 2.005M);
    * every PReLU learns ONE slope shared by all channels (``nn.PReLU()``, 9 slopes in all):
      this is the parameterisation that gives exactly 1,976,714; one slope per channel
      would give 1,977,281;
    * no upsampling (pixel-shuffle) layers: the input is the LR image already interpolated
      onto the HR grid (Sec. 2.6), so the output has the input's size;
    * all convs have a bias (TensorFlow's default in the paper's implementation).

    Parameters
    ----------
    channels : int
        Feature width C (64).
    n_blocks : int
        Number of residual blocks.
    in_channels, out_channels : int
        Image channels.
    spatial_dims : int
        3 (paper) or 2.
    global_residual : bool
        Our option (not the paper's): add the input to the output, last layer zero-initialised.

    Shapes: (batch, in_channels, *spatial) -> (batch, out_channels, *spatial).
    """

    def __init__(
        self,
        channels: int = 64,
        n_blocks: int = 8,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 3,
        global_residual: bool = False,
    ) -> None:
        super().__init__()
        self.head = nn.Sequential(
            conv(spatial_dims, in_channels, channels, 9), activation("prelu", channels)
        )
        self.body = nn.Sequential(
            *[
                ResidualBlock(channels, 3, spatial_dims, norm="batch", activation="prelu")
                for _ in range(n_blocks)
            ],
            conv(spatial_dims, channels, channels, 3),
            norm("batch", channels, spatial_dims),
        )
        self.tail = conv(spatial_dims, channels, out_channels, 9)
        self.global_residual = setup_global_residual(
            "SRResNet3D", global_residual, in_channels, out_channels, self.tail
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        y = self.tail(h + self.body(h))
        return y + x if self.global_residual else y
