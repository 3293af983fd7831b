"""Model size and compute: parameter counts and multiply-accumulates per voxel."""

from __future__ import annotations

from fractions import Fraction
from math import prod

import torch
from torch import nn

__all__ = ["count_parameters", "macs_per_voxel"]


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (every learnable scalar; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def macs_per_voxel(
    model: nn.Module,
    spatial_dims: int = 3,
    *,
    size: int = 12,
    in_channels: int | None = None,
) -> int:
    """Multiply-accumulates of the conv and linear layers per output voxel of the network.

    A forward pass on a zero tensor of shape (1, in_channels, size, ..., size) is observed
    with hooks. A convolution costs ``Cin / groups * Cout * prod(kernel)`` MACs per voxel
    it outputs (a transposed convolution the same per voxel it reads); a linear layer
    ``in * out`` per call. The sum is divided by the number of voxels of the network's
    output (for a stride-1 "same" network, the MACs of one output voxel, independent of
    ``size``); for a network whose output has no spatial axes (a critic, (batch, 1)) it
    is divided by the input voxels instead. Biases, norms and activations are not counted.

    mdcsrn-b4u4 gives 409,856 (the weights of its convs, as for every stride-1 network).
    The "#ops" of mDCSRN Tables 1-2 are about 4.08x these MACs for all six networks
    (b4u4: 1.672M); the paper does not define its #ops, so we report MACs.

    Parameters
    ----------
    model : torch.nn.Module
        The network; evaluated in eval mode under ``torch.no_grad`` and restored after.
    spatial_dims : int
        2 or 3.
    size : int
        Edge of the probe input in voxels.
    in_channels : int or None
        Input channels; None takes ``in_channels`` of the first conv layer.

    Returns
    -------
    int
        MACs per voxel, rounded to the nearest integer.
    """
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    transposed = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    if in_channels is None:
        first = next((m for m in model.modules() if isinstance(m, convs + transposed)), None)
        if first is None:
            raise ValueError("macs_per_voxel: the model has no conv layer; pass in_channels")
        in_channels = first.in_channels
    total = Fraction(0)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            rows = output.numel() // module.out_features
            total += rows * module.in_features * module.out_features
            return
        per_voxel = module.weight.numel()  # Cout * Cin / groups * prod(k) (either layout)
        voxels = inputs[0] if isinstance(module, transposed) else output
        total += per_voxel * prod(voxels.shape[2:]) * voxels.shape[0]

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, convs + transposed + (nn.Linear,))
    ]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros((1, in_channels) + (size,) * spatial_dims, device=device)
        with torch.no_grad():
            y = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    voxels = prod(y.shape[2:]) if y.dim() == 2 + spatial_dims else size**spatial_dims
    return round(total / voxels)
