"""3D FSRCNN baseline (Dong et al., ECCV 2016), as compared in mDCSRN Sec. 3.2 and Table 2."""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.models.blocks import activation, conv, setup_global_residual
from mrenhance.models.registry import register_model

__all__ = ["FSRCNN3D"]


@register_model(
    "fsrcnn3d",
    family="fsrcnn",
    task="sr_t1",
    spatial_dims=3,
    in_channels=1,
    out_channels=1,
    description="3D FSRCNN baseline on the interpolated input (65,065 parameters)",
    paper="Dong et al. 2016 FSRCNN; 3D as in Chen et al. 2018 mDCSRN Sec. 2.3, 3.2, Table 2",
)
class FSRCNN3D(nn.Module):
    """FSRCNN extended to 3D (mDCSRN Sec. 3.2: "the same hyper-parameters according to 2D
    FSRCNN", "extended the 2D convolution to 3D"; d=56, s=12, m=4).

    Layers: feature extraction 5^3 conv in -> d; shrinking 1^3 d -> s; ``m`` mapping 3^3
    convs s -> s; expanding 1^3 s -> d; each followed by a PReLU with one slope per channel
    (FSRCNN's PReLU); reconstruction 9^3 conv d -> out. 65,065 parameters at the defaults
    (Sec. 2.3: "its 3D version has 65,000"; Table 2: 0.064M).

    Choices: FSRCNN ends with a strided deconvolution that upsamples; here the input is the
    LR image already interpolated onto the HR grid (Sec. 2.6), so the last layer is a
    stride-1 9^3 conv with "same" padding and the output has the input's size.

    Parameters
    ----------
    d, s, m : int
        Feature width, shrunk width and number of mapping layers.
    in_channels, out_channels : int
        Image channels.
    spatial_dims : int
        3 (paper) or 2 (the original 2D FSRCNN layout, without upsampling).
    global_residual : bool
        Our option (not the paper's): add the input to the output, last layer zero-initialised.

    Shapes: (batch, in_channels, *spatial) -> (batch, out_channels, *spatial).
    """

    def __init__(
        self,
        d: int = 56,
        s: int = 12,
        m: int = 4,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 3,
        global_residual: bool = False,
    ) -> None:
        super().__init__()

        def stage(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [conv(spatial_dims, cin, cout, k), activation("prelu_channelwise", cout)]

        layers = stage(in_channels, d, 5) + stage(d, s, 1)
        for _ in range(m):
            layers += stage(s, s, 3)
        layers += stage(s, d, 1)
        self.features = nn.Sequential(*layers)
        self.reconstruction = conv(spatial_dims, d, out_channels, 9)
        self.global_residual = setup_global_residual(
            "FSRCNN3D", global_residual, in_channels, out_channels, self.reconstruction
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reconstruction(self.features(x))
        return y + x if self.global_residual else y
