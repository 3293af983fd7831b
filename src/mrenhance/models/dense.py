"""DCSRN and mDCSRN: multi-level densely connected super-resolution networks.

Chen et al., "Efficient and Accurate MRI Super-Resolution using a GAN and 3D Multi-Level
Densely Connected Network", MICCAI 2018 (Sec. 2.4, Fig. 1B, Sec. 3.2, Table 1).
"""

from __future__ import annotations

import torch
from torch import nn

from mrenhance.errors import ConfigError
from mrenhance.models.blocks import DenseBlock, conv, setup_global_residual
from mrenhance.models.registry import register_model

__all__ = ["MDCSRN"]

_PAPER = "Chen et al. 2018, mDCSRN (MICCAI), Sec. 2.4, Fig. 1B, Table 1"


def _register(name: str, blocks: int, units: int, description: str):
    return register_model(
        name,
        family="mdcsrn",
        task="sr_t1",
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        description=description,
        paper=_PAPER,
        blocks=blocks,
        units=units,
    )


@_register("dcsrn-b1u8", 1, 8, "DCSRN: one 8-unit DenseBlock, k=16 (0.307M parameters)")
@_register("mdcsrn-b2u4", 2, 4, "mDCSRN: 2 DenseBlocks x 4 units, k=16 (0.200M parameters)")
@_register("mdcsrn-b3u4", 3, 4, "mDCSRN: 3 DenseBlocks x 4 units, k=16 (0.304M parameters)")
@_register("mdcsrn-b4u4", 4, 4, "mDCSRN: 4 DenseBlocks x 4 units, k=16 (0.412M parameters)")
class MDCSRN(nn.Module):
    """Multi-level densely connected SR network (mDCSRN Sec. 2.4, Fig. 1B; DCSRN if blocks=1).

    The input is the LR image already interpolated onto the HR grid (Sec. 2.6), so the
    network is stride 1 throughout and the output has the input's size (odd sizes too).

    Layout (k = ``growth``)::

        f0 = conv0(x)                                  # 3^3 conv, in -> 2k
        b1 = DenseBlock(f0)                            # 2k -> 2k + units*k
        bi = DenseBlock(compressor_i(cat[f0, b1..b(i-1)]))   # 1^3 conv -> 2k, i >= 2
        y  = reconstruction(cat[f0, b1..bn])           # 1^3 conv -> out

    Each DenseBlock unit is BatchNorm -> ELU -> 3^3 conv (DCSRN); all convs have a bias.
    Parameter counts at k=16: b1u8 306,753; b2u4 199,809; b3u4 304,385; b4u4 412,033
    (Table 1: 0.307M, 0.200M, 0.304M, 0.412M).

    Choices where the paper is ambiguous:

    * compressors and the reconstruction layer also see the first conv's output f0
      ("direct access to all former layers including the input"); this reproduces all four
      parameter counts of Table 1;
    * a DenseBlock's output includes its own input (DenseNet), so a later block's output
      carries its compressed 2k maps on to the reconstruction layer;
    * compressors and the reconstruction layer are plain convs (no norm, no activation);
    * ``global_residual=True`` adds the input to the output and zero-initialises the
      reconstruction layer, so training starts from the identity (no parameters; our option
      for short CPU-budget training, the paper's default is False).

    Parameters
    ----------
    in_channels, out_channels : int
        Image channels (1 for a T1w image).
    growth : int
        Growth rate k (16, Sec. 3.2).
    blocks : int
        Number of DenseBlocks (b).
    units : int
        Units per DenseBlock (u).
    spatial_dims : int
        3 (paper) or 2.
    global_residual : bool
        Predict the residual to the input instead of the image.

    Shapes: (batch, in_channels, *spatial) -> (batch, out_channels, *spatial).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        growth: int = 16,
        blocks: int = 4,
        units: int = 4,
        spatial_dims: int = 3,
        global_residual: bool = False,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ConfigError(f"MDCSRN needs blocks >= 1, got {blocks}")
        width = 2 * growth  # Fig. 1 caption: first conv outputs 2k maps; compressors shrink to 2k
        self.conv0 = conv(spatial_dims, in_channels, width, 3)
        self.blocks = nn.ModuleList()
        self.compressors = nn.ModuleList()
        seen = width  # channels of cat[f0, b1, ..., b(i-1)]
        for i in range(blocks):
            if i > 0:
                self.compressors.append(conv(spatial_dims, seen, width, 1))
            block = DenseBlock(width, growth, units, spatial_dims, norm="batch", activation="elu")
            self.blocks.append(block)
            seen += block.out_channels
        self.reconstruction = conv(spatial_dims, seen, out_channels, 1)
        self.global_residual = setup_global_residual(
            "MDCSRN", global_residual, in_channels, out_channels, self.reconstruction
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.conv0(x)]
        for i, block in enumerate(self.blocks):
            inp = features[0] if i == 0 else self.compressors[i - 1](torch.cat(features, dim=1))
            features.append(block(inp))
        y = self.reconstruction(torch.cat(features, dim=1))
        return y + x if self.global_residual else y
