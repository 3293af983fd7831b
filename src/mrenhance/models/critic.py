"""The SRGAN discriminator as a WGAN-GP critic (mDCSRN Fig. 1C, Sec. 2.2, 2.5)."""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.models.blocks import activation, conv, norm
from mrenhance.models.registry import register_model

__all__ = ["SRGANCritic"]

# Ledig et al. 2017, Fig. 4: (channel multiple of base, stride) of the 7 conv blocks
_BLOCKS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))


@register_model(
    "wgan-critic3d",
    family="srgan-critic",
    task="sr_t1",
    spatial_dims=3,
    in_channels=1,
    out_channels=1,
    description="3D SRGAN discriminator with LayerNorm, no sigmoid: WGAN-GP critic",
    paper="Ledig et al. 2017 Fig. 4; Chen et al. 2018 mDCSRN Fig. 1C, Sec. 2.5 (WGAN-GP)",
    role="critic",
)
class SRGANCritic(nn.Module):
    """SRGAN discriminator used as a Wasserstein critic (mDCSRN Fig. 1C and caption, Sec. 2.5).

    "The D is identical to SRGAN except BatchNorm is replaced by LayerNorm, suggested by
    WGAN-GP." Layers (b = ``base``): k3 conv in -> b + LeakyReLU(0.2); seven blocks of k3
    conv + norm + LeakyReLU(0.2) with widths b, 2b, 2b, 4b, 4b, 8b, 8b and strides
    2, 1, 2, 1, 2, 1, 2; global average pooling; dense 8b -> 16b + LeakyReLU(0.2); dense
    16b -> 1. The output is a raw score (no sigmoid), as a WGAN critic needs (Eq. 5).

    Choices where the paper is silent or the SRGAN design does not carry over:

    * global average pooling before the dense layers, so any patch size works (SRGAN
      flattens a fixed 96x96 feature map);
    * the first dense layer has 16b units (1024 at b = 64, as in SRGAN), so a slimmer
      critic for CPU runs (small ``base``) shrinks throughout;
    * "layer" norm is ``GroupNorm(1, C)``: per-sample normalisation over channels and space
      with a per-channel affine (WGAN-GP's layer normalisation); ``norm="batch"`` gives the
      SRGAN discriminator of the DTI paper (apply a sigmoid in its loss);
    * all convs have a bias; padding 1 ("same" for stride 1, halving for stride 2).

    Parameters
    ----------
    in_channels : int
        Image channels.
    base : int
        Width of the first conv (64 in SRGAN).
    spatial_dims : int
        3 (paper) or 2.
    norm : str or None
        "layer" (WGAN-GP), "batch" (SRGAN), "instance" or None.

    Shapes: (batch, in_channels, *spatial), any spatial size >= 1 -> (batch, 1).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base: int = 64,
        spatial_dims: int = 3,
        norm: str | None = "layer",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            conv(spatial_dims, in_channels, base, 3, padding=1),
            activation("leaky_relu"),
        ]
        cin = base
        for mult, stride in _BLOCKS:
            cout = base * mult
            layers += [
                conv(spatial_dims, cin, cout, 3, stride=stride, padding=1),
                _norm(norm, cout, spatial_dims),
                activation("leaky_relu"),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[spatial_dims](1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin, 16 * base),
            activation("leaky_relu"),
            nn.Linear(16 * base, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


_norm = norm  # the factory is shadowed by the constructor argument of the same name
