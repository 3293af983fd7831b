"""Inference-only equivalents of trained networks: same outputs, less memory, less glue.

:func:`for_inference` turns a trained network into a module that computes the same
function (to float rounding) for whole-volume inference, and returns any network it has
no rewrite for unchanged. The rewrite for mDCSRN/DCSRN (:class:`FusedMDCSRN`):

* **no concatenation copies**: each DenseBlock's units write their ``growth`` new maps into
  one preallocated channel buffer (eager PyTorch copies the growing stack with ``torch.cat``
  at every unit: ``units`` copies of up to ``in + (units - 1) * growth`` channels);
* **fused normalisation + activation**: eval-mode BatchNorm is a per-channel affine, applied
  with one ``addcmul`` into a reused scratch buffer, then ELU in place;
* **incremental 1^3 convolutions**: the compressors and the reconstruction layer are 1^3
  convolutions over ``cat[f0, b1, ..., bi]``; a 1^3 convolution of a concatenation is the
  sum of 1^3 convolutions of its pieces, so each block's output is folded into running
  sums as soon as it exists and freed. The full ``cat`` (416 channels for b4u4) never
  exists; peak memory holds one block buffer, its scratch and the running sums.

Measured effect: ``benchmarks/bench_inference.py`` (time and peak RSS per tile) and
``docs/performance.md``. Equality with the eager network is tested to 1e-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrenhance.models.blocks import DenseBlock

__all__ = ["FusedMDCSRN", "for_inference"]


def _bn_affine(bn: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm (or identity) over ``channels``."""
    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
        inv = torch.rsqrt(bn.running_var + bn.eps)
        scale = bn.weight * inv if bn.affine else inv
        shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
        return scale.detach().clone(), shift.detach().clone()
    if isinstance(bn, nn.Identity):
        return torch.ones(channels), torch.zeros(channels)
    raise TypeError(f"no fused form for {type(bn).__name__}")


class FusedMDCSRN(nn.Module):
    """The function of a trained :class:`mrenhance.models.dense.MDCSRN`, for inference only.

    Built from the trained network (weights copied, BatchNorm folded to scale/shift); see
    the module docstring for what changes. Shapes as MDCSRN: (B, C_in, *spatial) ->
    (B, C_out, *spatial); the batch is run one sample at a time (channel slices of one
    sample are contiguous, so no conv input is copied).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.global_residual = bool(model.global_residual)
        self.spatial_dims = model.conv0.weight.dim() - 2
        self._conv1x1 = F.conv3d if self.spatial_dims == 3 else F.conv2d
        self.conv0 = model.conv0
        width = model.conv0.out_channels
        n = len(model.blocks)
        self.units_conv = nn.ModuleList()
        scales, shifts, self.unit_channels, self.block_channels = [], [], [], []
        for block in model.blocks:
            if not isinstance(block, DenseBlock) or not block.include_input:
                raise TypeError("FusedMDCSRN needs DenseBlocks that include their input")
            channels = []
            for unit in block.units:
                bn, act, cv = unit[0], unit[1], unit[2]
                if not isinstance(act, nn.ELU) or not isinstance(cv, nn.modules.conv._ConvNd):
                    raise TypeError("FusedMDCSRN needs BatchNorm -> ELU -> conv units")
                s, t = _bn_affine(bn, cv.in_channels)
                scales.append(s)
                shifts.append(t)
                channels.append(cv.in_channels)
                self.units_conv.append(cv)
            self.unit_channels.append(channels)
            self.block_channels.append(block.out_channels)
        shape = (1, -1) + (1,) * self.spatial_dims
        for i, (s, t) in enumerate(zip(scales, shifts, strict=True)):
            self.register_buffer(f"scale{i}", s.reshape(shape))
            self.register_buffer(f"shift{i}", t.reshape(shape))
        self.growth = model.blocks[0].growth
        # the 1^3 layers split by the piece of cat[f0, b1, ..., bn] each column block reads
        pieces = [width, *self.block_channels]
        offsets = [0]
        for p in pieces:
            offsets.append(offsets[-1] + p)
        self.offsets = offsets
        for m, layer in enumerate([*model.compressors, model.reconstruction]):
            w = layer.weight.detach()
            self.register_buffer(f"bias_l{m}", layer.bias.detach().clone())
            for piece in range(len(pieces)):
                if piece > m + 1:  # layer m (before block m+1) reads pieces 0..m+1 only
                    continue
                a, b = offsets[piece], offsets[piece + 1]
                self.register_buffer(f"w_l{m}_p{piece}", w[:, a:b].contiguous().clone())
        self.n_blocks = n
        self.out_channels = model.reconstruction.out_channels

    def _partial(self, m: int, piece: int, x: torch.Tensor) -> torch.Tensor:
        return self._conv1x1(x, getattr(self, f"w_l{m}_p{piece}"))

    @torch.no_grad()
    def _one(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_blocks
        f0 = self.conv0(x)
        # running sums: compressor m (m = 0..n-2, before block m+1) and the reconstruction
        # (m = n-1), each started from its bias and f0's contribution
        sums = []
        for m in range(n):
            bias = getattr(self, f"bias_l{m}").reshape((1, -1) + (1,) * self.spatial_dims)
            sums.append(self._partial(m, 0, f0).add_(bias))
        inp = f0
        unit = 0
        for i in range(n):
            if i > 0:
                inp = sums[i - 1]
                sums[i - 1] = None  # type: ignore[call-overload]  # complete; freed below
            spatial = inp.shape[2:]
            buf = inp.new_empty((1, self.block_channels[i], *spatial))
            c_in = inp.shape[1]
            buf[:, :c_in] = inp
            del inp
            scratch = buf.new_empty((1, self.block_channels[i] - self.growth, *spatial))
            for c in self.unit_channels[i]:
                work = scratch[:, :c]
                torch.addcmul(
                    getattr(self, f"shift{unit}"),
                    buf[:, :c],
                    getattr(self, f"scale{unit}"),
                    out=work,
                )
                F.elu(work, inplace=True)
                buf[:, c : c + self.growth] = self.units_conv[unit](work)
                unit += 1
            del scratch
            for m in range(i, n):  # this block is piece i + 1 of the layers after it
                sums[m].add_(self._partial(m, i + 1, buf))
            del buf
        y = sums[n - 1]
        return y.add_(x) if self.global_residual else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return self._one(x)
        return torch.cat([self._one(x[b : b + 1]) for b in range(x.shape[0])], dim=0)


def for_inference(model: nn.Module) -> nn.Module:
    """An inference-only module computing the same function as ``model`` (eval mode).

    mDCSRN/DCSRN (registry family ``mdcsrn``) become :class:`FusedMDCSRN`; any other
    network is returned unchanged. The result keeps ``mrenhance_name``/``mrenhance_config``
    so provenance still names the trained architecture.
    """
    from mrenhance.models.dense import MDCSRN

    if isinstance(model, MDCSRN) and not model.training:
        fused = FusedMDCSRN(model).to(next(model.parameters()).device).eval()
        for attr in ("mrenhance_name", "mrenhance_config"):
            if hasattr(model, attr):
                setattr(fused, attr, getattr(model, attr))
        return fused
    return model
