"""Building blocks shared by every network: defined once here, reused by the families.

* :func:`conv`, :func:`norm`, :func:`activation`: factories choosing the 2D or 3D layer from
  ``spatial_dims`` so one network definition serves both.
* :class:`DenseBlock`: the DCSRN/mDCSRN dense block (mDCSRN Sec. 2.4, Fig. 1A); the PVS
  network (Jung et al., Sec. 2.1) reuses it with ``order="post"``, ``norm=None``,
  ``activation="relu"``, ``include_input=False``.
* :class:`ResidualBlock`: the SRResNet block (Ledig et al. 2017, Fig. 4) used by our 3D
  SRResNet and the DTI SRGAN generator; with ``norm=None``, ``hidden_channels`` and
  ``dilation`` it is also the wide-activation residual block of the ASL DWAN.

Tensors are (batch, channel, x, y, z) for ``spatial_dims=3`` and (batch, channel, x, y)
for ``spatial_dims=2``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mrenhance.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "DenseBlock",
    "ResidualBlock",
    "activation",
    "conv",
    "norm",
]

#: Names accepted by :func:`norm` (None means no normalisation).
NORMS = ("batch", "layer", "instance", None)
#: Names accepted by :func:`activation` (None means identity).
ACTIVATIONS = ("relu", "elu", "leaky_relu", "prelu", "prelu_channelwise", "sigmoid", "tanh", None)


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    stride: int = 1,
    padding: int | None = None,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """A ``Conv2d`` or ``Conv3d`` with cubic ``kernel_size``.

    ``padding=None`` means "same" for stride 1: ``dilation * (kernel_size - 1) // 2``
    (odd kernels), so stride-1 networks keep the input's size, odd sizes included.
    """
    cls = {2: nn.Conv2d, 3: nn.Conv3d}[_check_dims(spatial_dims)]
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    return cls(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def norm(name: str | None, channels: int, spatial_dims: int = 3) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps.

    ``"batch"``: BatchNorm; ``"layer"``: ``GroupNorm(1, channels)``, i.e. LayerNorm over
    (channel, *spatial) per sample with a per-channel affine, as WGAN-GP suggests for the
    critic (mDCSRN Fig. 1 caption); ``"instance"``: InstanceNorm with affine (choice, so all
    three learn a scale and shift); ``None``: identity.
    """
    dims = _check_dims(spatial_dims)
    if name is None:
        return nn.Identity()
    if name == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    if name == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims](channels, affine=True)
    raise ConfigError(f"unknown norm {name!r} (choose from {NORMS})")


def activation(name: str | None, channels: int = 1, *, negative_slope: float = 0.2) -> nn.Module:
    """An activation layer.

    ``"prelu"`` learns ONE slope shared by all channels (PyTorch's default,
    ``num_parameters=1``); ``"prelu_channelwise"`` learns one slope per channel
    (``num_parameters=channels``). ``"leaky_relu"`` uses ``negative_slope`` (0.2 as in
    SRGAN's discriminator). ``None`` is the identity.
    """
    if name is None:
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(inplace=False)
    if name == "elu":
        return nn.ELU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name == "prelu":
        return nn.PReLU(num_parameters=1)
    if name == "prelu_channelwise":
        return nn.PReLU(num_parameters=channels)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    raise ConfigError(f"unknown activation {name!r} (choose from {ACTIVATIONS})")


class DenseBlock(nn.Module):
    """A DenseNet block without pooling (mDCSRN Sec. 2.4, Fig. 1A; DCSRN, Chen et al. 2018).

    Unit ``j`` (0-based) sees the block input and the ``j * growth`` maps made so far and
    adds ``growth`` new maps. With ``order="pre"`` (DCSRN, default) a unit is
    norm -> activation -> conv; with ``order="post"`` it is conv -> norm -> activation
    (the PVS network: "a ReLU layer is connected behind each convolution").

    Parameters
    ----------
    in_channels : int
        Channels of the block input.
    growth : int
        New maps per unit, ``k`` (16 in mDCSRN Sec. 3.2).
    units : int
        Number of units (4 in b4u4, 8 in DCSRN b1u8).
    spatial_dims : int
        2 or 3.
    norm : str or None
        See :func:`norm`; ``"batch"`` in DCSRN.
    activation : str or None
        See :func:`activation`; ``"elu"`` in DCSRN.
    order : {"pre", "post"}
        Where norm and activation sit relative to the conv.
    include_input : bool
        True (DenseNet, mDCSRN): output = cat[block input, all new maps], ``in_channels +
        units * growth`` channels. False (PVS network): only the ``units * growth`` new maps.
    kernel_size : int
        Cubic kernel size (3 in both papers); convs have a bias and "same" padding.

    Shapes: input (batch, in_channels, *spatial) -> (batch, out_channels, *spatial).
    """

    def __init__(
        self,
        in_channels: int,
        growth: int,
        units: int,
        spatial_dims: int = 3,
        norm: str | None = "batch",
        activation: str | None = "elu",
        *,
        order: Literal["pre", "post"] = "pre",
        include_input: bool = True,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if order not in ("pre", "post"):
            raise ConfigError(f"DenseBlock order must be 'pre' or 'post', got {order!r}")
        if units < 1 or growth < 1:
            raise ConfigError(f"DenseBlock needs units >= 1 and growth >= 1, got {units}, {growth}")
        self.in_channels = in_channels
        self.growth = growth
        self.include_input = include_input
        self.out_channels = (in_channels if include_input else 0) + units * growth
        self.units = nn.ModuleList()
        for j in range(units):
            cin = in_channels + j * growth
            if order == "pre":
                layers = [
                    _norm(norm, cin, spatial_dims),
                    _activation(activation, cin),
                    conv(spatial_dims, cin, growth, kernel_size),
                ]
            else:
                layers = [
                    conv(spatial_dims, cin, growth, kernel_size),
                    _norm(norm, growth, spatial_dims),
                    _activation(activation, growth),
                ]
            self.units.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for unit in self.units:
            features.append(unit(torch.cat(features, dim=1)))
        return torch.cat(features if self.include_input else features[1:], dim=1)


class ResidualBlock(nn.Module):
    """conv -> norm -> act -> conv -> norm, plus the input (SRGAN, Ledig et al. 2017, Fig. 4).

    The SRResNet residual block (mDCSRN Sec. 3.2 compares a 3D SRResNet; the DTI paper's
    generator stacks 16 of them). With ``norm=None``, ``hidden_channels`` wider than
    ``channels`` and a ``dilation`` on the first conv it is the wide-activation residual
    block of the ASL DWAN (Fig. 1 there: 3x3x128 then 3x3x32 with one activation).

    Parameters
    ----------
    channels : int
        Input and output channels.
    kernel_size : int
        Cubic kernel size of both convs (3).
    spatial_dims : int
        2 or 3.
    norm : str or None
        See :func:`norm`; ``"batch"`` in SRResNet.
    activation : str or None
        See :func:`activation`; ``"prelu"`` (one shared slope) in our SRResNet.
    hidden_channels : int or None
        Channels between the two convs; None means ``channels``.
    dilation : int
        Dilation of the first conv (1 = ordinary conv).

    Shapes: (batch, channels, *spatial) -> same.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        spatial_dims: int = 3,
        norm: str | None = "batch",
        activation: str | None = "prelu",
        *,
        hidden_channels: int | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        hidden = channels if hidden_channels is None else hidden_channels
        self.body = nn.Sequential(
            conv(spatial_dims, channels, hidden, kernel_size, dilation=dilation),
            _norm(norm, hidden, spatial_dims),
            _activation(activation, hidden),
            conv(spatial_dims, hidden, channels, kernel_size),
            _norm(norm, channels, spatial_dims),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# the factories are shadowed by same-named constructor arguments inside the classes
_norm = norm
_activation = activation


def zero_init_(layer: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias in place; returns it.

    Used for the last layer of a generator with ``global_residual=True`` so that the network
    starts as the identity (output = input) and learns only a correction. choice: the SR
    papers are silent on initialisation; this makes short (CPU-budget) training start from
    the input's quality instead of from noise, and is applied to every SR generator alike.
    """
    for name in ("weight", "bias"):
        tensor = getattr(layer, name, None)
        if tensor is not None:
            nn.init.zeros_(tensor)
    return layer


def setup_global_residual(
    model_name: str, enabled: bool, in_channels: int, out_channels: int, last: nn.Module
) -> bool:
    """Check and prepare a generator's ``global_residual`` option; returns ``enabled``.

    The output becomes input + network(input), so it needs as many output as input
    channels; the last layer is zero-initialised (:func:`zero_init_`) so the network starts
    as the identity.
    """
    if enabled and in_channels != out_channels:
        raise ConfigError(f"{model_name} global_residual needs in_channels == out_channels")
    if enabled:
        zero_init_(last)
    return enabled
