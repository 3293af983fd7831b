"""stU-Net (Veron Vialard et al. 2021, Sec. 3, Fig. 3): raw DSC strips -> a CBV strip.

A (2+1)D encoder over spatio-temporal strips (x, y, t) and a 2D decoder:

- encoder levels of 3D convolutions with kernel (3, 3, t=7), stride 1 (Sec. 3), separated
  by (2, 2, t=4) convolutions with stride (2, 2, 4) that go down (Sec. 3);
- skip connections take the max over time of each encoder level (Sec. 3: "max-pooling
  reduction in the temporal dimension");
- decoder: 2x2 transposed convolutions with stride 2 and 5x5 convolutions (Sec. 3);
- a 1x1 head to the CBV strip.

Choices (the paper leaves widths, depth, strip size and normalisation open): widths
(8, 16, 32) with two convolutions per level (the paper's figure suggests four levels; three
fit our 48-frame CPU sequences: 48 -> 12 -> 3 frames), LeakyReLU(0.1), no normalisation
layer (inputs are already standardised per brain, Sec. 4.2, and a per-strip norm would
remove the absolute level a CBV regression needs). 202,857 parameters at the defaults.

Input layout: (batch, T, x, y), the frames as channels (the engine's tiling feeds a
series' last axis as channels); the network moves them to a third convolution axis.
T and the strip size may be anything: both are padded inside (edge values) to the
multiples the strides need, and the output is cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mrenhance.models.registry import register_model

__all__ = ["STUNet"]


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


@register_model(
    "stunet",
    family="stunet",
    task="dsc",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    description="stU-Net: (2+1)D encoder over DSC strips, 2D decoder, CBV strip out",
    paper="Veron Vialard et al. 2021 (hal-03128610), Sec. 3, Fig. 3",
)
class STUNet(nn.Module):
    """stU-Net; shapes (B, T, X, Y) -> (B, 1, X, Y).

    Parameters
    ----------
    widths : channels per level (the first is the input level).
    convs_per_level : (3, 3, 7) convolutions per encoder level and 5x5 per decoder level.
    temporal_kernel, temporal_stride : 7 and 4 (Sec. 3).
    decoder_kernel : 5 (Sec. 3).
    out_channels : maps predicted (1: CBV).
    """

    def __init__(
        self,
        widths: Sequence[int] = (8, 16, 32),
        convs_per_level: int = 2,
        temporal_kernel: int = 7,
        temporal_stride: int = 4,
        decoder_kernel: int = 5,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError("STUNet: widths needs at least two levels")
        self.levels = len(widths)
        self.temporal_stride = int(temporal_stride)
        kt, pt = int(temporal_kernel), int(temporal_kernel) // 2
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        cin = 1
        for i, w in enumerate(widths):
            layers: list[nn.Module] = []
            for j in range(convs_per_level):
                layers += [
                    nn.Conv3d(cin if j == 0 else w, w, (3, 3, kt), padding=(1, 1, pt)),
                    _act(),
                ]
            self.encoders.append(nn.Sequential(*layers))
            cin = w
            if i < len(widths) - 1:
                self.downs.append(
                    nn.Conv3d(
                        w,
                        widths[i + 1],
                        (2, 2, self.temporal_stride),
                        stride=(2, 2, self.temporal_stride),
                    )
                )
                cin = widths[i + 1]
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        pk = int(decoder_kernel) // 2
        for i in range(len(widths) - 1, 0, -1):
            hi, lo = widths[i], widths[i - 1]
            self.ups.append(nn.ConvTranspose2d(hi, lo, 2, stride=2))
            layers = []
            for j in range(convs_per_level):
                layers += [
                    nn.Conv2d(2 * lo if j == 0 else lo, lo, decoder_kernel, padding=pk),
                    _act(),
                ]
            self.decoders.append(nn.Sequential(*layers))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"STUNet: expected (batch, frames, x, y), got {tuple(x.shape)}")
        _, t, sx, sy = x.shape
        h = x.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, X, Y, T)
        space = 2 ** (self.levels - 1)
        time = self.temporal_stride ** (self.levels - 1)
        px, py, ptime = (-sx) % space, (-sy) % space, (-t) % time
        if px or py or ptime:
            h = F.pad(h, (0, ptime, 0, py, 0, px), mode="replicate")
        skips = []
        for i, enc in enumerate(self.encoders):
            h = enc(h)
            skips.append(h.amax(dim=-1))  # Sec. 3: max over time for the skip
            if i < len(self.downs):
                h = self.downs[i](h)
        y = skips[-1]
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips[:-1]), strict=True):
            y = dec(torch.cat([up(y), skip], dim=1))
        return self.head(y)[:, :, :sx, :sy]
