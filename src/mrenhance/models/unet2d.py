"""2D U-Net without BatchNorm: the ASL paper's first comparison network (Sec. 2.3, [20])."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrenhance.models.blocks import conv
from mrenhance.models.registry import register_model

__all__ = ["UNet2D"]


def _double_conv(spatial_dims: int, cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        conv(spatial_dims, cin, cout, 3),
        nn.ReLU(),
        conv(spatial_dims, cout, cout, 3),
        nn.ReLU(),
    )


@register_model(
    "unet2d-asl",
    family="unet",
    task="asl",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    description="2D U-Net, 4 levels (32-256 channels), no BatchNorm, residual output "
    "(1,925,025 parameters)",
    paper="Xie et al. 2020 Sec. 2.3 comparison; U-Net as in Xu et al. 2017 [20]",
)
class UNet2D(nn.Module):
    """A 4-level 2D U-Net, BatchNorm removed (Sec. 2.3), with a residual output.

    The paper names "U-Net [20]" (Xu et al. 2017, low-dose PET) without its sizes. Our
    reading (choices): 4 resolution levels of ``base * 2**l`` channels (32, 64, 128, 256),
    two 3x3 conv + ReLU per level, 2x2 max-pooling down, 2x2 transposed conv up, skip
    concatenation, a 1x1 conv to one channel, and the input added to the output (residual
    learning, as Xu et al.). The input is padded (reflect) to a multiple of 8 and the
    output cropped back, so any slice size works.

    Parameter count at the defaults: encoder 9,568 + 55,424 + 221,440 + 885,248; up-convs
    131,200 + 32,832 + 8,224; decoder 442,624 + 110,720 + 27,712; 1x1 out 33: **1,925,025**
    (with ``levels=4, base=32``).

    Shapes: (batch, 1, x, y) -> (batch, 1, x, y).
    """

    def __init__(
        self,
        base: int = 32,
        levels: int = 4,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 2,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("UNet2D is 2D")
        widths = [base * 2**level for level in range(levels)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_double_conv(2, cin, w))
            cin = w
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(w * 2, w, 2, stride=2))
            self.dec.append(_double_conv(2, w * 2, w))
        self.out = nn.Conv2d(widths[0], out_channels, 1)
        self.levels = levels
        self.residual = residual and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2 ** (self.levels - 1)
        nx, ny = x.shape[-2:]
        px, py = (-nx) % m, (-ny) % m
        mode = "reflect" if min(nx, ny) > max(px, py) else "replicate"
        h = F.pad(x, (0, py, 0, px), mode=mode) if px or py else x
        skips = []
        for k, block in enumerate(self.down):
            h = block(h)
            if k < self.levels - 1:
                skips.append(h)
                h = F.max_pool2d(h, 2)
        for up, dec in zip(self.up, self.dec, strict=True):
            h = dec(torch.cat([up(h), skips.pop()], dim=1))
        y = self.out(h)[..., :nx, :ny]
        return y + x if self.residual else y
