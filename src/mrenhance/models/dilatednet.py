"""DilatedNet: the ASL paper's second comparison network (Sec. 2.3, Kim et al. 2018 [6])."""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.models.blocks import conv
from mrenhance.models.registry import register_model

__all__ = ["DilatedNet"]


@register_model(
    "dilatednet-asl",
    family="dilatednet",
    task="asl",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    description="2D dilated conv stack (eight 3x3 convs dilated 1, 1-2-4-8-4-2, 1; 64 "
    "channels), residual output (222,785 parameters)",
    paper="Xie et al. 2020 Sec. 2.3 comparison; Kim et al., Radiology 2018 [6] style",
)
class DilatedNet(nn.Module):
    """A plain stack of dilated 3x3 convolutions with residual learning (Sec. 2.3, [6]).

    Kim et al. (Radiology 2018) denoise ASL with a CNN of dilated convolutions; the DWAN
    paper gives no sizes. Our reading (choices): 3x3 conv 1 -> 64 + ReLU, six 3x3 convs
    64 -> 64 + ReLU with dilations 1, 2, 4, 8, 4, 2, a 3x3 conv 64 -> 1 (the first and last
    convs undilated), and the input added (residual). No BatchNorm (Sec. 2.3). Receptive
    field 47 x 47 pixels: radius 1 + (1 + 2 + 4 + 8 + 4 + 2) + 1 = 23 (tested).

    Parameter count at the defaults: 640 + 6 x 36,928 + 577 = **222,785**.

    Shapes: (batch, 1, x, y) -> (batch, 1, x, y).
    """

    def __init__(
        self,
        channels: int = 64,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 4, 2),
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 2,
        residual: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv(spatial_dims, in_channels, channels, 3), nn.ReLU()]
        for d in dilations:
            layers += [conv(spatial_dims, channels, channels, 3, dilation=int(d)), nn.ReLU()]
        layers.append(conv(spatial_dims, channels, out_channels, 3))
        self.body = nn.Sequential(*layers)
        self.residual = residual and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.residual else y
