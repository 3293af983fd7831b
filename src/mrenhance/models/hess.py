"""A Hess et al. (2018) style network for DSC -> CBV, the stU-Net paper's comparison [8].

Our reading of Hess et al., "Synthetic perfusion maps: imaging perfusion deficits in
DSC-MRI with deep learning" (MICCAI BrainLes 2018), as the stU-Net paper summarises it
(Sec. 1): a *sequence encoder* of 1D convolutions over time, applied to every voxel on its
own, followed by a *spatial correlation* module of 2D convolutions. Widths, depth and the
temporal reduction are our choices: three temporal convolutions (kernel 7, 16 channels,
the last two with stride 2), a max over the remaining time, then four 3x3 2D convolutions
(32 channels) and a 1x1 head. Same input layout as :class:`mrenhance.models.stunet.STUNet`:
(batch, T, x, y) -> (batch, 1, x, y).
"""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.models.registry import register_model

__all__ = ["HessPerfusionNet"]


@register_model(
    "hess-perfusion",
    family="hess",
    task="dsc",
    spatial_dims=2,
    in_channels=1,
    out_channels=1,
    description="Hess et al. 2018 style: per-voxel temporal 1D encoder + 2D spatial network",
    paper="Hess et al. 2018 (MICCAI BrainLes), as read by Veron Vialard et al. 2021 [8]",
)
class HessPerfusionNet(nn.Module):
    """Temporal 1D encoder (per voxel) + 2D spatial network; (B, T, X, Y) -> (B, 1, X, Y).

    Parameters
    ----------
    temporal_width, temporal_layers, temporal_kernel : the sequence encoder.
    spatial_width, spatial_layers : the 2D module (3x3 convolutions).
    """

    def __init__(
        self,
        temporal_width: int = 16,
        temporal_layers: int = 3,
        temporal_kernel: int = 7,
        spatial_width: int = 32,
        spatial_layers: int = 4,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i in range(temporal_layers):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv1d(
                    cin,
                    temporal_width,
                    temporal_kernel,
                    stride=stride,
                    padding=temporal_kernel // 2,
                ),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            cin = temporal_width
        self.temporal = nn.Sequential(*layers)
        spatial: list[nn.Module] = []
        cin = temporal_width
        for _ in range(spatial_layers):
            spatial += [
                nn.Conv2d(cin, spatial_width, 3, padding=1),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            cin = spatial_width
        self.spatial = nn.Sequential(*spatial)
        self.head = nn.Conv2d(cin, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(
                f"HessPerfusionNet: expected (batch, frames, x, y), got {tuple(x.shape)}"
            )
        b, t, sx, sy = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b * sx * sy, 1, t)  # every voxel on its own
        feat = self.temporal(seq).amax(dim=-1)  # (B*X*Y, C)
        feat = feat.reshape(b, sx, sy, -1).permute(0, 3, 1, 2)
        return self.head(self.spatial(feat))
